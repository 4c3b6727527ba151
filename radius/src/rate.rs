//! Subscriber rate limits in RADIUS and in configuration text.
//!
//! - WISPr-Bandwidth-Max-Up and WISPr-Bandwidth-Max-Down (Wi-Fi Alliance
//!   WISPr, vendor 14122, types 7 and 8): integers, bits per second.
//! - A text attribute the operator names (accel-ppp reads Filter-Id so):
//!   `"down/up"`, each a rate. A bare number there is kbit/s, as accel-ppp
//!   reads it; with a suffix (`k`, `M`, `G`) it is bits per second times
//!   the suffix, as in the configuration (`"20M/5M"`).
//!
//! In the configuration a rate is bits per second with an optional
//! suffix: `"512k"`, `"2M"`, `"1.5G"`, `"64000"`.

use crate::attribute::AttributeType;
use crate::error::{Error, Result};
use crate::packet::Repr;

/// The WISPr vendor id (Wi-Fi Alliance).
pub const VENDOR_WISPR: u32 = 14122;
pub const WISPR_BANDWIDTH_MAX_UP: u8 = 7;
pub const WISPR_BANDWIDTH_MAX_DOWN: u8 = 8;

/// Rates a packet sets, bits per second; None: not said. `Some(0)` is no
/// limit (WISPr's 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Toward the subscriber.
    pub down: Option<u64>,
    /// From the subscriber.
    pub up: Option<u64>,
}

impl RateLimits {
    pub fn is_empty(&self) -> bool {
        self.down.is_none() && self.up.is_none()
    }

    /// Reads the WISPr attributes and, when `text` names one, the first
    /// value of that attribute that reads as `"down/up"` (others of the
    /// same type may carry something else, as Filter-Id often does); the
    /// text attribute wins over WISPr. A WISPr value that is not a 4-octet
    /// integer is an error.
    pub fn from_packet(p: &Repr, text: Option<AttributeType>) -> Result<RateLimits> {
        let mut r = RateLimits::default();
        for a in p.vendor_attributes(VENDOR_WISPR) {
            match a.vendor_type {
                WISPR_BANDWIDTH_MAX_UP => r.up = Some(u64::from(a.as_integer()?)),
                WISPR_BANDWIDTH_MAX_DOWN => r.down = Some(u64::from(a.as_integer()?)),
                _ => {}
            }
        }
        if let Some(t) = text {
            let pair = p
                .get_all(t)
                .filter_map(|a| std::str::from_utf8(a.value()).ok())
                .find_map(|s| parse_pair(s).ok());
            if let Some((down, up)) = pair {
                r = RateLimits { down: Some(down), up: Some(up) };
            }
        }
        Ok(r)
    }
}

/// A rate in bits per second: a number (decimals allowed) and an optional
/// `k`, `M` or `G` (powers of 1000; either case).
pub fn parse_rate(s: &str) -> Result<u64> {
    rate_with_default(s, 1)
}

/// `"down/up"` as accel-ppp's Filter-Id: a bare number is kbit/s, a
/// suffixed one as [`parse_rate`].
pub fn parse_pair(s: &str) -> Result<(u64, u64)> {
    let (down, up) = s.trim().split_once('/').ok_or(Error::Malformed("rate pair"))?;
    Ok((rate_with_default(down, 1000)?, rate_with_default(up, 1000)?))
}

fn rate_with_default(s: &str, bare: u64) -> Result<u64> {
    let s = s.trim();
    let bad = Error::Malformed("rate");
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1_000),
        Some((i, 'm' | 'M')) => (&s[..i], 1_000_000),
        Some((i, 'g' | 'G')) => (&s[..i], 1_000_000_000),
        _ => (s, bare),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad);
    }
    if frac.len() > 9 {
        return Err(bad);
    }
    let int: u64 = int.parse().map_err(|_| Error::Malformed("rate"))?;
    let frac_value: u64 =
        if frac.is_empty() { 0 } else { frac.parse().map_err(|_| Error::Malformed("rate"))? };
    let scale = 10u64.pow(frac.len() as u32);
    int.checked_mul(mult)
        .and_then(|v| v.checked_add(frac_value.checked_mul(mult)? / scale))
        .ok_or(Error::Malformed("rate too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::AttributeRepr;
    use crate::packet::Code;
    use crate::vendor::VendorSpecific;

    #[test]
    fn rates_read_with_their_suffixes() {
        assert_eq!(parse_rate("2M").unwrap(), 2_000_000);
        assert_eq!(parse_rate("512k").unwrap(), 512_000);
        assert_eq!(parse_rate("1.5G").unwrap(), 1_500_000_000);
        assert_eq!(parse_rate(" 64000 ").unwrap(), 64_000);
        assert_eq!(parse_rate("0").unwrap(), 0);
        for bad in
            ["", "M", "2X", "-1", "1.2.3", "2 M", "99999999999999999999", "1e6", ".5M", "1.0000000001M"]
        {
            assert!(parse_rate(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pairs_read_as_accel_ppp_does() {
        assert_eq!(parse_pair("1000/500").unwrap(), (1_000_000, 500_000), "bare numbers are kbit/s");
        assert_eq!(parse_pair("20M/5M").unwrap(), (20_000_000, 5_000_000));
        assert!(parse_pair("1000").is_err());
        assert!(parse_pair("a/b").is_err());
    }

    fn packet(attrs: Vec<AttributeRepr>) -> Repr {
        let mut p = Repr::new(Code::AccessAccept, 1);
        p.attributes = attrs;
        p
    }

    fn wispr(t: u8, v: &[u8]) -> AttributeRepr {
        AttributeRepr::vendor_specific(&VendorSpecific::single(VENDOR_WISPR, t, v.to_vec())).unwrap()
    }

    #[test]
    fn wispr_and_a_text_attribute() {
        let p = packet(vec![
            wispr(WISPR_BANDWIDTH_MAX_DOWN, &2_000_000u32.to_be_bytes()),
            wispr(WISPR_BANDWIDTH_MAX_UP, &512_000u32.to_be_bytes()),
            AttributeRepr::new(AttributeType::FILTER_ID, b"acl-web".to_vec()).unwrap(),
            AttributeRepr::new(AttributeType::FILTER_ID, b"4000/1000".to_vec()).unwrap(),
        ]);
        assert_eq!(
            RateLimits::from_packet(&p, None).unwrap(),
            RateLimits { down: Some(2_000_000), up: Some(512_000) }
        );
        assert_eq!(
            RateLimits::from_packet(&p, Some(AttributeType::FILTER_ID)).unwrap(),
            RateLimits { down: Some(4_000_000), up: Some(1_000_000) },
            "the named attribute wins; its values that are no pair are skipped"
        );
        let bad = packet(vec![wispr(WISPR_BANDWIDTH_MAX_DOWN, &[1, 2])]);
        assert!(RateLimits::from_packet(&bad, None).is_err());
        assert!(RateLimits::from_packet(&packet(vec![]), None).unwrap().is_empty());
    }
}
