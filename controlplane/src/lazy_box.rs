//! A part of a session that most sessions leave empty, kept out of line
//! and only once it holds something.
//!
//! A million sessions each carrying an empty DHCPv6 record or an unused
//! field group inline pay for it a million times: [`LazyBox`] is one
//! pointer until the part is first written, and reads the shared empty
//! value until then. It serializes as the value itself (the empty one
//! when absent), so a snapshot's format is that of the plain field.

use std::collections::VecDeque;
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

/// A queue that is empty between inputs (a PPP link's frames and events
/// to take out, a protocol's actions): one pointer while empty, its
/// buffer given back as soon as the last item is taken, where a
/// `VecDeque` is 32 bytes inline and keeps the buffer it grew. It
/// serializes as the `VecDeque` it stands for.
// The box is the point: one pointer inline instead of the VecDeque's 32
// bytes, for a queue that is empty nearly always.
#[allow(clippy::box_collection)]
pub struct LazyQueue<T>(Option<Box<VecDeque<T>>>);

impl<T> LazyQueue<T> {
    pub fn push_back(&mut self, v: T) {
        self.0.get_or_insert_with(Default::default).push_back(v);
    }

    /// The first item; the buffer goes with the last.
    pub fn pop_front(&mut self) -> Option<T> {
        let q = self.0.as_mut()?;
        let v = q.pop_front();
        if q.is_empty() {
            self.0 = None;
        }
        v
    }

    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|q| q.is_empty())
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.len())
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().flat_map(|q| q.iter())
    }

    /// Whether a buffer is held (an empty queue holds none).
    pub fn is_allocated(&self) -> bool {
        self.0.is_some()
    }
}

impl<T> Default for LazyQueue<T> {
    fn default() -> Self {
        LazyQueue(None)
    }
}

impl<T> Extend<T> for LazyQueue<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        for v in items {
            self.push_back(v);
        }
    }
}

impl<T: Clone> Clone for LazyQueue<T> {
    fn clone(&self) -> Self {
        LazyQueue(self.0.clone())
    }
}

impl<T: PartialEq> PartialEq for LazyQueue<T> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<T: fmt::Debug> fmt::Debug for LazyQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Serialize> Serialize for LazyQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // With its length first, as a VecDeque's (postcard needs it).
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for v in self.iter() {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LazyQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let q = VecDeque::<T>::deserialize(d)?;
        Ok(LazyQueue((!q.is_empty()).then(|| Box::new(q))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_holds_no_buffer_when_empty_and_round_trips_as_a_vecdeque() {
        let mut q: LazyQueue<Vec<u8>> = LazyQueue::default();
        assert!(!q.is_allocated() && q.is_empty());
        q.push_back(vec![1]);
        q.push_back(vec![2, 3]);
        assert_eq!(q.len(), 2);
        let plain: VecDeque<Vec<u8>> = [vec![1], vec![2, 3]].into_iter().collect();
        let bytes = postcard::to_stdvec(&q).expect("encode");
        assert_eq!(bytes, postcard::to_stdvec(&plain).expect("encode"), "the VecDeque's format");
        let mut back: LazyQueue<Vec<u8>> = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, q);
        assert_eq!(back.pop_front(), Some(vec![1]));
        assert!(back.is_allocated());
        assert_eq!(back.pop_front(), Some(vec![2, 3]));
        assert!(!back.is_allocated(), "the buffer went with the last item");
        assert_eq!(back.pop_front(), None);
        let empty: LazyQueue<Vec<u8>> =
            postcard::from_bytes(&postcard::to_stdvec(&VecDeque::<Vec<u8>>::new()).unwrap()).unwrap();
        assert!(!empty.is_allocated());
        assert_eq!(std::mem::size_of::<LazyQueue<Vec<u8>>>(), 8);
    }

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
