//! A part of a session that most sessions leave empty, kept out of line
//! and only once it holds something.
//!
//! A million sessions each carrying an empty DHCPv6 record or an unused
//! field group inline pay for it a million times: [`LazyBox`] is one
//! pointer until the part is first written, and reads the shared empty
//! value until then. It serializes as the value itself (the empty one
//! when absent), so a snapshot's format is that of the plain field.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A type with an empty value that can be shared (a `const`).
pub trait Empty: Default + PartialEq + 'static {
    const EMPTY: &'static Self;
}

/// `T`, boxed once written; [`Empty::EMPTY`] before.
pub struct LazyBox<T: Empty>(Option<Box<T>>);

impl<T: Empty> LazyBox<T> {
    /// Whether the part was ever written (and so takes memory).
    pub fn is_allocated(&self) -> bool {
        self.0.is_some()
    }

    /// Back to empty, giving the memory back.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

impl<T: Empty> Default for LazyBox<T> {
    fn default() -> Self {
        LazyBox(None)
    }
}

impl<T: Empty> Deref for LazyBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_deref().unwrap_or(T::EMPTY)
    }
}

impl<T: Empty> DerefMut for LazyBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }
}

impl<T: Empty> From<T> for LazyBox<T> {
    fn from(v: T) -> Self {
        LazyBox((v != *T::EMPTY).then(|| Box::new(v)))
    }
}

impl<T: Empty + Clone> Clone for LazyBox<T> {
    fn clone(&self) -> Self {
        LazyBox(self.0.clone())
    }
}

impl<T: Empty> PartialEq for LazyBox<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Empty + Eq> Eq for LazyBox<T> {}

impl<T: Empty + fmt::Debug> fmt::Debug for LazyBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: Empty + Serialize> Serialize for LazyBox<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de, T: Empty + Deserialize<'de>> Deserialize<'de> for LazyBox<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(LazyBox::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    struct Part {
        name: Option<Vec<u8>>,
        count: u64,
    }

    impl Empty for Part {
        const EMPTY: &'static Self = &Part { name: None, count: 0 };
    }

    #[test]
    fn reads_empty_until_written_and_round_trips_as_the_plain_value() {
        let mut p: LazyBox<Part> = LazyBox::default();
        assert!(!p.is_allocated());
        assert_eq!(p.count, 0);
        assert!(!p.is_allocated(), "a read allocates nothing");
        p.count += 3;
        p.name = Some(b"x".to_vec());
        assert!(p.is_allocated());

        let plain = Part { name: Some(b"x".to_vec()), count: 3 };
        let bytes = postcard::to_stdvec(&p).expect("encode");
        assert_eq!(bytes, postcard::to_stdvec(&plain).expect("encode"), "the plain field's format");
        let back: LazyBox<Part> = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, p);
        assert_eq!(*back, plain);

        // An empty value comes back unallocated.
        let empty: LazyBox<Part> =
            postcard::from_bytes(&postcard::to_stdvec(&Part::default()).unwrap()).unwrap();
        assert!(!empty.is_allocated());
        p.clear();
        assert_eq!(p, empty);
    }
}
