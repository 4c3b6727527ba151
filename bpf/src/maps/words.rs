//! Bitmaps over arrays of words that several processes write at once
//! (`lns_fast_slots`, `lns_pool_bits`), and the settle loop that keeps a
//! bit in line with its inputs whatever the other writers do.

use crate::Error;
use crate::MmapArray;

/// Where bit `i` of a bitmap of words (`lns_fast_slots`, `lns_pool_bits`)
/// lies: word and mask.
fn bit_of(i: u32) -> (usize, u64) {
    (i as usize / 64, 1u64 << (i % 64))
}

pub(super) fn bit_set(words: &MmapArray<u64>, i: u32) -> bool {
    let (word, bit) = bit_of(i);
    words.load(word).is_some_and(|w| w & bit != 0)
}

pub(super) fn set_bit(words: &MmapArray<u64>, i: u32, on: bool) {
    let (word, bit) = bit_of(i);
    if on {
        words.fetch_or(word, bit);
    } else {
        words.fetch_and(word, !bit);
    }
}

/// Brings bit `i` in line with `wanted` (which reads the bit's inputs);
/// every change to the inputs is followed by this. Several processes write
/// the maps: after setting the bit, the inputs are read again, and a change
/// meanwhile (whose writer may have read them before this one wrote) goes
/// round again, so the last writer leaves the right bit. A bit that will
/// not settle stays clear: the program then makes its own lookups.
pub(super) fn settle_bit(
    words: &MmapArray<u64>,
    i: u32,
    wanted: impl Fn() -> Result<bool, Error>,
) -> Result<(), Error> {
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
