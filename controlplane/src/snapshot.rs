//! Serializing protocol state that holds [`Instant`]s.
//!
//! The cores read no clock: every deadline they keep is an `Instant` the
//! caller handed them. An `Instant` means nothing outside the process that
//! made it, so a snapshot stores each one relative to the moment of the
//! snapshot (nanoseconds, negative for the past), and a restore puts it back
//! relative to the moment of the restore: a timer due in 3 s when the state
//! was written is due 3 s after it is read, whichever process reads it.
//!
//! That moment is given by the caller, never read here:
//! [`with_base`] sets it for the serialization or deserialization it wraps.
//! Serializing an `Instant` outside `with_base` is an error, not a guess.
//!
//! Fields use `#[serde(with = "crate::snapshot::instant")]`, or
//! `crate::snapshot::opt_instant` for `Option<Instant>`.

use std::cell::Cell;
use std::time::Instant;

thread_local! {
    static BASE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` (a serialization or a deserialization) with `now` as the
/// moment every `Instant` is stored relative to.
pub fn with_base<R>(now: Instant, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            BASE.with(|b| b.set(self.0));
        }
    }
    let _restore = Restore(BASE.with(|b| b.replace(Some(now))));
    f()
}

fn base() -> Option<Instant> {
    BASE.with(Cell::get)
}

fn to_offset(t: Instant, base: Instant) -> i64 {
    match t.checked_duration_since(base) {
        Some(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        None => -i64::try_from(base.duration_since(t).as_nanos()).unwrap_or(i64::MAX),
    }
}

fn from_offset(offset: i64, base: Instant) -> Instant {
    let magnitude = std::time::Duration::from_nanos(offset.unsigned_abs());
    if offset >= 0 {
        base.checked_add(magnitude).unwrap_or(base)
    } else {
        // Far in the past of a process that just started may be before
        // the clock's origin: the earliest representable moment will do,
        // since it only ever compares as "long ago".
        base.checked_sub(magnitude).unwrap_or(base)
    }
}

const NO_BASE: &str = "an Instant serialized outside snapshot::with_base";

/// `#[serde(with = "crate::snapshot::instant")]`
pub mod instant {
    use super::*;
    use serde::{de, ser, Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
        let base = base().ok_or_else(|| <S::Error as ser::Error>::custom(NO_BASE))?;
        to_offset(*t, base).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        let base = base().ok_or_else(|| <D::Error as de::Error>::custom(NO_BASE))?;
        Ok(from_offset(i64::deserialize(d)?, base))
    }
}

/// `#[serde(with = "crate::snapshot::opt_instant")]`
pub mod opt_instant {
    use super::*;
    use serde::{de, ser, Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => {
                let base = base().ok_or_else(|| <S::Error as ser::Error>::custom(NO_BASE))?;
                Some(to_offset(*t, base)).serialize(s)
            }
            None => None::<i64>.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Instant>, D::Error> {
        match Option::<i64>::deserialize(d)? {
            Some(o) => {
                let base = base().ok_or_else(|| <D::Error as de::Error>::custom(NO_BASE))?;
                Ok(Some(from_offset(o, base)))
            }
            None => Ok(None),
        }
    }
}

/// A map that remembers which keys were changed (inserted, removed or
/// borrowed mutably) since [`Tracked::take_dirty`] was last called, so the
/// store writes only those records.
///
/// Reads go through `Deref` to the map; every way of changing it is a
/// method here that notes the key first, so a change cannot slip past the
/// store. A borrow that changes nothing is noted too: the record is written
/// again, the same.
#[derive(Debug)]
pub struct Tracked<M: TrackedMap> {
    map: M,
    dirty: std::collections::BTreeSet<M::Key>,
}

/// The maps [`Tracked`] wraps.
pub trait TrackedMap: Default {
    type Key: Ord + Copy;
}

impl<K: Ord + Copy, V> TrackedMap for std::collections::BTreeMap<K, V> {
    type Key = K;
}

impl<K: Ord + Copy + std::hash::Hash + Eq, V> TrackedMap for std::collections::HashMap<K, V> {
    type Key = K;
}

impl<M: TrackedMap> Default for Tracked<M> {
    fn default() -> Self {
        Tracked { map: M::default(), dirty: Default::default() }
    }
}

impl<M: TrackedMap> std::ops::Deref for Tracked<M> {
    type Target = M;
    fn deref(&self) -> &M {
        &self.map
    }
}

impl<M: TrackedMap> Tracked<M> {
    /// A map read back from the store: nothing in it is changed yet.
    pub fn from_map(map: M) -> Self {
        Tracked { map, dirty: Default::default() }
    }

    /// The keys changed since the last call, in order.
    pub fn take_dirty(&mut self) -> std::collections::BTreeSet<M::Key> {
        std::mem::take(&mut self.dirty)
    }

    /// Notes `key` as changed without touching the map.
    pub fn touch(&mut self, key: M::Key) {
        self.dirty.insert(key);
    }

    /// The map, changed without noting anything: for what need not outlive
    /// the process (counter samples between two accounting records).
    pub fn untracked(&mut self) -> &mut M {
        &mut self.map
    }
}

macro_rules! tracked_map_methods {
    ($map:ident, $module:ident $(, $bound:path)*) => {
        impl<K: Ord + Copy $(+ $bound)*, V> Tracked<std::collections::$map<K, V>> {
            pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
                let v = self.map.get_mut(key);
                if v.is_some() {
                    self.dirty.insert(*key);
                }
                v
            }

            pub fn insert(&mut self, key: K, value: V) -> Option<V> {
                self.dirty.insert(key);
                self.map.insert(key, value)
            }

            pub fn remove(&mut self, key: &K) -> Option<V> {
                let v = self.map.remove(key);
                if v.is_some() {
                    self.dirty.insert(*key);
                }
                v
            }

            pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
                let dirty = &mut self.dirty;
                self.map.retain(|k, v| {
                    let kept = keep(k, v);
                    if !kept {
                        dirty.insert(*k);
                    }
                    kept
                });
            }

            /// Every value, each noted as changed.
            pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
                self.dirty.extend(self.map.keys().copied());
                self.map.values_mut()
            }

            /// Every entry, each noted as changed.
            pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
                self.dirty.extend(self.map.keys().copied());
                self.map.iter_mut()
            }

            pub fn entry(&mut self, key: K) -> std::collections::$module::Entry<'_, K, V> {
                self.dirty.insert(key);
                self.map.entry(key)
            }
        }

        impl<K: Ord + Copy $(+ $bound)*, V> FromIterator<(K, V)> for Tracked<std::collections::$map<K, V>> {
            fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
                Tracked::from_map(iter.into_iter().collect())
            }
        }

        impl<'a, K: Ord + Copy $(+ $bound)*, V> IntoIterator for &'a Tracked<std::collections::$map<K, V>> {
            type Item = (&'a K, &'a V);
            type IntoIter = std::collections::$module::Iter<'a, K, V>;
            fn into_iter(self) -> Self::IntoIter {
                self.map.iter()
            }
        }
    };
}

tracked_map_methods!(BTreeMap, btree_map);
tracked_map_methods!(HashMap, hash_map, std::hash::Hash);

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use std::time::Duration;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Timers {
        #[serde(with = "instant")]
        due: Instant,
        #[serde(with = "opt_instant")]
        maybe: Option<Instant>,
        #[serde(with = "opt_instant")]
        none: Option<Instant>,
    }

    #[test]
    fn deadlines_keep_their_distance_from_now() {
        let t0 = Instant::now();
        let s = Timers { due: t0 + Duration::from_secs(3), maybe: Some(t0), none: None };
        let json = with_base(t0 + Duration::from_secs(1), || serde_json::to_string(&s)).unwrap();
        assert_eq!(json, r#"{"due":2000000000,"maybe":-1000000000,"none":null}"#);
        let later = t0 + Duration::from_secs(100);
        let back: Timers = with_base(later, || serde_json::from_str(&json)).unwrap();
        assert_eq!(back.due, later + Duration::from_secs(2));
        assert_eq!(back.maybe, Some(later - Duration::from_secs(1)));
        assert_eq!(back.none, None);
    }

    #[test]
    fn no_base_is_an_error() {
        let t0 = Instant::now();
        let s = Timers { due: t0, maybe: None, none: None };
        assert!(serde_json::to_string(&s).unwrap_err().to_string().contains("with_base"));
    }
}
