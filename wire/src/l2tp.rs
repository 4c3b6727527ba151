//! The L2TPv2 header's first word (RFC 2661 §3.1): flag bits and version.
//!
//! ```text
//!  0                   1
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//! |T|L|x|x|S|x|O|P|x|x|x|x|  Ver  |
//! ```
//!
//! The control plane's header codec and the data plane's encapsulation
//! both write this word; the XDP program (C) mirrors the same bits.

/// Flag bits of the first 16-bit word.
pub mod flags {
    /// T: a control message (1) or a data message (0).
    pub const TYPE: u16 = 0x8000;
    /// L: the Length field is present (MUST be set on control messages).
    pub const LENGTH: u16 = 0x4000;
    /// S: the Ns and Nr fields are present.
    pub const SEQUENCE: u16 = 0x0800;
    /// O: the Offset Size field is present.
    pub const OFFSET: u16 = 0x0200;
    /// P: the data message should be preferred in local queues (data only).
    pub const PRIORITY: u16 = 0x0100;
    /// The Ver field.
    pub const VERSION_MASK: u16 = 0x000f;
}

/// The version L2TPv2 speaks (§3.1: Ver MUST be 2; 1 is L2F).
pub const VERSION: u8 = 2;

/// The first word of a data message with no optional fields: version 2,
/// every flag clear.
pub const DATA: u16 = VERSION as u16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_rfc2661_section_3_1() {
        // Bit 0 is the most significant of the word (RFC 2661 numbers bits
        // from the left): T is bit 0, L 1, S 4, O 6, P 7, Ver 12-15.
        let bit = |n: u32| 0x8000u16 >> n;
        assert_eq!(flags::TYPE, bit(0));
        assert_eq!(flags::LENGTH, bit(1));
        assert_eq!(flags::SEQUENCE, bit(4));
        assert_eq!(flags::OFFSET, bit(6));
        assert_eq!(flags::PRIORITY, bit(7));
        assert_eq!(flags::VERSION_MASK, bit(12) | bit(13) | bit(14) | bit(15));
        // No two overlap.
        let all = [
            flags::TYPE,
            flags::LENGTH,
            flags::SEQUENCE,
            flags::OFFSET,
            flags::PRIORITY,
            flags::VERSION_MASK,
        ];
        assert_eq!(
            all.iter().fold(0, |acc, f| acc | f).count_ones(),
            all.iter().map(|f| f.count_ones()).sum()
        );
    }

    #[test]
    fn words_seen_in_the_reference_captures() {
        // testdata/captures/README.md: l2tpns sends data as 0x0002 and PPP
        // control with the priority bit (0x0102); xl2tpd sets the length
        // bit on data (0x4002); a control message is 0xc802 (T, L, S).
        assert_eq!(DATA, 0x0002);
        assert_eq!(DATA | flags::PRIORITY, 0x0102);
        assert_eq!(DATA | flags::LENGTH, 0x4002);
        assert_eq!(flags::TYPE | flags::LENGTH | flags::SEQUENCE | DATA, 0xc802);
        assert_eq!(0xc802 & flags::VERSION_MASK, u16::from(VERSION));
    }
}
