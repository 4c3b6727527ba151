//! Test support: the textbook Internet checksum (16 bits at a time in a
//! u32), independent of `checksum`'s 64-bit one, to check against.

/// The complemented one's-complement sum of `pieces` laid end to end.
pub fn sum16(pieces: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = pieces.concat();
    let mut s = 0u32;
    for c in bytes.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}
