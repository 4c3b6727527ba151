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
