//! Bitmaps over arrays of words that several processes write at once
//! (`lns_fast_slots`, `lns_pool_bits`), and the settle loop that keeps a
//! bit in line with its inputs whatever the other writers do.
//!
//! The protocols over these arrays (here, `fast_slots` and `pool_units`)
//! are written against [`AtomicWords`], which the mmap'd maps implement and
//! so does plain memory (`[AtomicU64]`, `[AtomicU32]`): their unit tests
//! race writer threads over a `Vec` without a kernel.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::MmapArray;

/// An array of words that other writers change at the same moment (other
/// processes mapping the same BPF array, the program). Every operation is
/// sequentially consistent: the settle loop's reread of its inputs must
/// not move before its store of the bit. An index out of range reads
/// `None` and writes nothing.
pub(crate) trait AtomicWords {
    type Word: Copy;
    fn len(&self) -> usize;
    fn load(&self, i: usize) -> Option<Self::Word>;
    fn store(&self, i: usize, v: Self::Word) -> bool;
    fn fetch_or(&self, i: usize, bits: Self::Word) -> Option<Self::Word>;
    fn fetch_and(&self, i: usize, bits: Self::Word) -> Option<Self::Word>;
}

macro_rules! atomic_words {
    ($($word:ty => $atomic:ty),*) => {$(
        impl AtomicWords for MmapArray<$word> {
            type Word = $word;
            fn len(&self) -> usize {
                MmapArray::len(self)
            }
            fn load(&self, i: usize) -> Option<$word> {
                MmapArray::<$word>::load(self, i)
            }
            fn store(&self, i: usize, v: $word) -> bool {
                MmapArray::<$word>::store(self, i, v)
            }
            fn fetch_or(&self, i: usize, bits: $word) -> Option<$word> {
                MmapArray::<$word>::fetch_or(self, i, bits)
            }
            fn fetch_and(&self, i: usize, bits: $word) -> Option<$word> {
                MmapArray::<$word>::fetch_and(self, i, bits)
            }
        }

        impl AtomicWords for [$atomic] {
            type Word = $word;
            fn len(&self) -> usize {
                <[$atomic]>::len(self)
            }
            fn load(&self, i: usize) -> Option<$word> {
                Some(self.get(i)?.load(Ordering::SeqCst))
            }
            fn store(&self, i: usize, v: $word) -> bool {
                self.get(i).map(|a| a.store(v, Ordering::SeqCst)).is_some()
            }
            fn fetch_or(&self, i: usize, bits: $word) -> Option<$word> {
                Some(self.get(i)?.fetch_or(bits, Ordering::SeqCst))
            }
            fn fetch_and(&self, i: usize, bits: $word) -> Option<$word> {
                Some(self.get(i)?.fetch_and(bits, Ordering::SeqCst))
            }
        }
    )*};
}

atomic_words!(u64 => AtomicU64, u32 => AtomicU32);

/// Where bit `i` of a bitmap of words (`lns_fast_slots`, `lns_pool_bits`)
/// lies: word and mask.
fn bit_of(i: u32) -> (usize, u64) {
    (i as usize / 64, 1u64 << (i % 64))
}

pub(super) fn bit_set<W: AtomicWords<Word = u64> + ?Sized>(words: &W, i: u32) -> bool {
    let (word, bit) = bit_of(i);
    words.load(word).is_some_and(|w| w & bit != 0)
}

pub(super) fn set_bit<W: AtomicWords<Word = u64> + ?Sized>(words: &W, i: u32, on: bool) {
    let (word, bit) = bit_of(i);
    if on {
        words.fetch_or(word, bit);
    } else {
        words.fetch_and(word, !bit);
    }
}

/// Bits set in the whole bitmap.
pub(super) fn bits_set<W: AtomicWords<Word = u64> + ?Sized>(words: &W) -> usize {
    (0..words.len()).map(|w| words.load(w).unwrap_or(0).count_ones() as usize).sum()
}

/// Brings bit `i` in line with `wanted` (which reads the bit's inputs);
/// every change to the inputs is followed by this. Several processes write
/// the maps: after setting the bit, the inputs are read again, and a change
/// meanwhile (whose writer may have read them before this one wrote) goes
/// round again, so the last writer leaves the right bit. A bit that will
/// not settle stays clear: the program then makes its own lookups.
pub(super) fn settle_bit<W: AtomicWords<Word = u64> + ?Sized, E>(
    words: &W,
    i: u32,
    wanted: impl Fn() -> Result<bool, E>,
) -> Result<(), E> {
    for _ in 0..64 {
        let want = wanted()?;
        set_bit(words, i, want);
        if wanted()? == want {
            return Ok(());
        }
    }
    set_bit(words, i, false);
    Ok(())
}

/// Plain-memory stand-ins for the maps and a harness that races writer
/// threads over them, for the protocols' tests.
#[cfg(test)]
pub(super) mod testing {
    use std::cell::{Cell, RefCell};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Barrier, Mutex};

    use super::AtomicWords;

    /// splitmix64: seeded, so every writer's choices and pauses are the
    /// same on every run (the schedule around them is the OS's).
    pub struct Rng(Cell<u64>);

    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(Cell::new(seed))
        }

        pub fn next(&self) -> u64 {
            let s = self.0.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            self.0.set(s);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        pub fn below(&self, n: u64) -> u64 {
            self.next() % n
        }

        pub fn coin(&self) -> bool {
            self.next() & 1 == 1
        }
    }

    thread_local! {
        /// The pauses of a writer thread of [`race`]; none elsewhere.
        static PAUSES: RefCell<Option<Rng>> = const { RefCell::new(None) };
    }

    /// Lets the other writers run for a random while. The windows the
    /// protocols must survive (between a writer's read of an input and its
    /// store, between two of its stores) are nanoseconds wide on an
    /// ordinary schedule; a pause at each of them lets the races happen
    /// within a few thousand rounds.
    pub fn pause() {
        PAUSES.with(|p| {
            let Some(rng) = &*p.borrow() else { return };
            match rng.below(4) {
                0 => {}
                1 => std::thread::yield_now(),
                _ => {
                    for _ in 0..rng.below(400) {
                        std::hint::spin_loop();
                    }
                }
            }
        });
    }

    /// An array of atomic words in plain memory that pauses before every
    /// operation, so that a writer's steps inside the protocol interleave
    /// with the others'.
    pub struct Shaky<A>(pub Vec<A>);

    impl<A> Shaky<A> {
        pub fn new(len: usize, zero: impl Fn() -> A) -> Shaky<A> {
            Shaky((0..len).map(|_| zero()).collect())
        }
    }

    impl<A> AtomicWords for Shaky<A>
    where
        [A]: AtomicWords,
    {
        type Word = <[A] as AtomicWords>::Word;
        fn len(&self) -> usize {
            self.0[..].len()
        }
        fn load(&self, i: usize) -> Option<Self::Word> {
            pause();
            self.0[..].load(i)
        }
        fn store(&self, i: usize, v: Self::Word) -> bool {
            pause();
            self.0[..].store(i, v)
        }
        fn fetch_or(&self, i: usize, bits: Self::Word) -> Option<Self::Word> {
            pause();
            self.0[..].fetch_or(i, bits)
        }
        fn fetch_and(&self, i: usize, bits: Self::Word) -> Option<Self::Word> {
            pause();
            self.0[..].fetch_and(i, bits)
        }
    }

    /// Runs `rounds` rounds; in each, `writers` threads call `step(round,
    /// writer, rng)` at once, and when all are done `check(round)` runs
    /// alone (the arrays quiescent) and returns what is wrong, if anything.
    /// Panics with the first failure, naming seed and round.
    pub fn race(
        writers: usize,
        rounds: usize,
        seed: u64,
        step: impl Fn(usize, usize, &Rng) + Sync,
        mut check: impl FnMut(usize) -> Option<String>,
    ) {
        let barrier = Barrier::new(writers + 1);
        let stop = AtomicBool::new(false);
        let failure = Mutex::new(None);
        std::thread::scope(|scope| {
            for w in 0..writers {
                let (barrier, stop, step) = (&barrier, &stop, &step);
                scope.spawn(move || {
                    let seed = seed ^ (w as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
                    let rng = Rng::new(seed);
                    PAUSES.with(|p| *p.borrow_mut() = Some(Rng::new(!seed)));
                    for round in 0..rounds {
                        barrier.wait();
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        step(round, w, &rng);
                        barrier.wait();
                    }
                });
            }
            for round in 0..rounds {
                barrier.wait();
                barrier.wait();
                if let Some(what) = check(round) {
                    *failure.lock().unwrap() = Some(format!("seed {seed:#x}, round {round}: {what}"));
                    stop.store(true, Ordering::SeqCst);
                    // Releases the writers waiting for the next round.
                    barrier.wait();
                    break;
                }
            }
        });
        if let Some(f) = failure.into_inner().unwrap() {
            panic!("{f}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn words(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
    }

    #[test]
    fn bits_land_in_their_word_and_leave_the_others() {
        let w = words(2);
        set_bit(&w[..], 0, true);
        set_bit(&w[..], 63, true);
        set_bit(&w[..], 64, true);
        set_bit(&w[..], 127, true);
        assert_eq!(w[0].load(Ordering::SeqCst), 1 | 1 << 63);
        assert_eq!(w[1].load(Ordering::SeqCst), 1 | 1 << 63);
        set_bit(&w[..], 63, false);
        assert!(bit_set(&w[..], 0) && !bit_set(&w[..], 63) && bit_set(&w[..], 64));
        assert_eq!(bits_set(&w[..]), 3);
        // Past the end: nothing written, nothing set.
        set_bit(&w[..], 128, true);
        assert!(!bit_set(&w[..], 128));
        assert_eq!(bits_set(&w[..]), 3);
    }

    #[test]
    fn settle_follows_the_inputs() {
        let w = words(1);
        settle_bit(&w[..], 5, || Ok::<_, ()>(true)).unwrap();
        assert!(bit_set(&w[..], 5));
        settle_bit(&w[..], 5, || Ok::<_, ()>(false)).unwrap();
        assert!(!bit_set(&w[..], 5));
    }

    #[test]
    fn settle_leaves_clear_a_bit_whose_inputs_never_settle() {
        let w = words(1);
        let flip = Cell::new(false);
        settle_bit(&w[..], 3, || {
            flip.set(!flip.get());
            Ok::<_, ()>(flip.get())
        })
        .unwrap();
        assert!(!bit_set(&w[..], 3));
    }
}
