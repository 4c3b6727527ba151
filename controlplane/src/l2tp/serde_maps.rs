//! serde representations for the state the l2tp cores keep in maps.
//!
//! A snapshot goes through serde_json, whose maps have string keys only:
//! a map keyed by a tuple (`(SocketAddr, TunnelId)`) cannot be written as
//! a JSON object at all. Every map of the cores is therefore stored as a
//! list of (key, value) pairs, whatever the key; the cost is the same, and
//! the format does not depend on which keys serde_json happens to accept.
//!
//! `Instant`s inside maps and queues are stored as [`crate::snapshot`]
//! stores them: relative to the moment given to `snapshot::with_base`.

use serde::de::Deserializer;
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Instant;

/// An `Instant` as `crate::snapshot::instant` writes it.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct At(#[serde(with = "crate::snapshot::instant")] Instant);

/// `#[serde(with = "pairs")]` for `HashMap<K, V>`: a list of `[key, value]`.
pub(crate) mod pairs {
    use super::*;

    pub(crate) fn serialize<K, V, S>(map: &HashMap<K, V>, s: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize,
        V: Serialize,
        S: Serializer,
    {
        let mut seq = s.serialize_seq(Some(map.len()))?;
        for pair in map {
            seq.serialize_element(&pair)?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, K, V, D>(d: D) -> Result<HashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// `#[serde(with = "tracked_pairs")]` for a [`Tracked`] `HashMap<K, V>`:
/// as [`pairs`]; what was changed is the process's, not the state's.
pub(crate) mod tracked_pairs {
    use super::*;
    use crate::snapshot::Tracked;

    pub(crate) fn serialize<K, V, S>(map: &Tracked<HashMap<K, V>>, s: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize + Ord + Copy + Hash,
        V: Serialize,
        S: Serializer,
    {
        pairs::serialize(map, s)
    }

    pub(crate) fn deserialize<'de, K, V, D>(d: D) -> Result<Tracked<HashMap<K, V>>, D::Error>
    where
        K: Deserialize<'de> + Ord + Copy + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Tracked::from_map(pairs::deserialize(d)?))
    }
}

/// `#[serde(with = "instant_values")]` for `HashMap<K, Instant>`.
pub(crate) mod instant_values {
    use super::*;

    pub(crate) fn serialize<K, S>(map: &HashMap<K, Instant>, s: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize,
        S: Serializer,
    {
        let mut seq = s.serialize_seq(Some(map.len()))?;
        for (k, t) in map {
            seq.serialize_element(&(k, At(*t)))?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, K, D>(d: D) -> Result<HashMap<K, Instant>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, At)>::deserialize(d)?.into_iter().map(|(k, t)| (k, t.0)).collect())
    }
}

/// `#[serde(with = "instant_queue")]` for `VecDeque<(Instant, T)>`.
pub(crate) mod instant_queue {
    use super::*;

    pub(crate) fn serialize<T, S>(q: &VecDeque<(Instant, T)>, s: S) -> Result<S::Ok, S::Error>
    where
        T: Serialize,
        S: Serializer,
    {
        let mut seq = s.serialize_seq(Some(q.len()))?;
        for (t, v) in q {
            seq.serialize_element(&(At(*t), v))?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<VecDeque<(Instant, T)>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(At, T)>::deserialize(d)?.into_iter().map(|(t, v)| (t.0, v)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2tp::TunnelId;
    use crate::snapshot::with_base;
    use std::net::SocketAddr;
    use std::time::Duration;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Maps {
        #[serde(with = "pairs")]
        by_peer: HashMap<(SocketAddr, TunnelId), TunnelId>,
        #[serde(with = "instant_values")]
        held: HashMap<u16, Instant>,
        #[serde(with = "instant_queue")]
        order: VecDeque<(Instant, u16)>,
    }

    #[test]
    fn tuple_keys_and_instants_round_trip_through_json() {
        let t0 = Instant::now();
        let peer: SocketAddr = "192.0.2.2:1701".parse().expect("addr");
        let m = Maps {
            by_peer: [((peer, TunnelId(7)), TunnelId(9))].into_iter().collect(),
            held: [(5, t0 + Duration::from_secs(2))].into_iter().collect(),
            order: [(t0 + Duration::from_secs(2), 5)].into_iter().collect(),
        };
        let json = with_base(t0, || serde_json::to_string(&m)).expect("serialize");
        let back: Maps = with_base(t0, || serde_json::from_str(&json)).expect("deserialize");
        assert_eq!(back, m);
    }
}
