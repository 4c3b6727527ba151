//! Vendor-Specific (RFC 2865 §5.26): a 4-octet Vendor-Id (SMI network
//! management private enterprise code, high octet zero) followed by
//! vendor data, which the RFC recommends to be a chain of sub-attributes:
//!
//! ```text
//! | Type=26 | Length | Vendor-Id (4) | Vendor-Type | Vendor-Length | Value ...
//! ```
//!
//! Vendors using other layouts (e.g. 2- or 4-octet types) are decoded
//! through [`crate::dictionary`], which knows their `format=`.

use crate::attribute::{AttributeIter, AttributeRepr, AttributeType, MAX_VALUE_LEN};
use crate::error::{Error, Result};

/// One sub-attribute in the RFC 2865 §5.26 recommended format.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VendorAttribute {
    pub vendor_type: u8,
    pub value: Vec<u8>,
}

impl VendorAttribute {
    pub fn new(vendor_type: u8, value: impl Into<Vec<u8>>) -> VendorAttribute {
        VendorAttribute { vendor_type, value: value.into() }
    }

    pub fn as_integer(&self) -> Result<u32> {
        let b: [u8; 4] = self.value.as_slice().try_into().map_err(|_| Error::Malformed("integer"))?;
        Ok(u32::from_be_bytes(b))
    }

    pub fn as_ipv4(&self) -> Result<std::net::Ipv4Addr> {
        let b: [u8; 4] = self.value.as_slice().try_into().map_err(|_| Error::Malformed("IPv4 address"))?;
        Ok(b.into())
    }
}

/// A Vendor-Specific attribute's Value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VendorSpecific {
    pub vendor_id: u32,
    pub attributes: Vec<VendorAttribute>,
}

/// Vendor-Id and the vendor data, without interpreting the data.
pub fn split(value: &[u8]) -> Result<(u32, &[u8])> {
    let id: [u8; 4] = value.get(..4).and_then(|b| b.try_into().ok()).ok_or(Error::Malformed("Vendor-Id"))?;
    let data = value.get(4..).unwrap_or(&[]);
    // RFC 2865 §5.26: "Length >= 7", so at least one octet of data.
    if data.is_empty() {
        return Err(Error::Malformed("Vendor-Specific without data"));
    }
    Ok((u32::from_be_bytes(id), data))
}

impl VendorSpecific {
    pub fn new(vendor_id: u32, attributes: Vec<VendorAttribute>) -> VendorSpecific {
        VendorSpecific { vendor_id, attributes }
    }

    /// One sub-attribute in one Vendor-Specific attribute, the common case.
    pub fn single(vendor_id: u32, vendor_type: u8, value: impl Into<Vec<u8>>) -> VendorSpecific {
        VendorSpecific { vendor_id, attributes: vec![VendorAttribute::new(vendor_type, value)] }
    }

    /// Parse the recommended format; errors on a sub-attribute whose
    /// Vendor-Length is below 2 or overruns the data.
    pub fn parse(value: &[u8]) -> Result<VendorSpecific> {
        let (vendor_id, data) = split(value)?;
        let mut attributes = Vec::new();
        let mut consumed = 0usize;
        for a in AttributeIter::new(data) {
            consumed += usize::from(a.length());
            attributes.push(VendorAttribute { vendor_type: a.typ().0, value: a.value().to_vec() });
        }
        if consumed != data.len() {
            return Err(Error::Malformed("vendor sub-attribute length"));
        }
        Ok(VendorSpecific { vendor_id, attributes })
    }

    pub fn buffer_len(&self) -> usize {
        4 + self.attributes.iter().map(|a| 2 + a.value.len()).sum::<usize>()
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let n = self.buffer_len();
        if n > MAX_VALUE_LEN {
            return Err(Error::ValueTooLong(n));
        }
        if self.attributes.is_empty() {
            return Err(Error::Invalid("Vendor-Specific without sub-attributes"));
        }
        let mut out = Vec::with_capacity(n);
        out.extend_from_slice(&self.vendor_id.to_be_bytes());
        for a in &self.attributes {
            out.push(a.vendor_type);
            out.push((a.value.len() + 2) as u8);
            out.extend_from_slice(&a.value);
        }
        Ok(out)
    }
}

/// Vendor-Specific attributes. Defined here rather than in
/// [`crate::attribute`] so that the generic attribute codec does not depend
/// on this format (this module builds on its iterator).
impl AttributeRepr {
    pub fn vendor_specific(v: &VendorSpecific) -> Result<AttributeRepr> {
        AttributeRepr::new(AttributeType::VENDOR_SPECIFIC, v.to_bytes()?)
    }

    pub fn as_vendor_specific(&self) -> Result<VendorSpecific> {
        if self.typ() != AttributeType::VENDOR_SPECIFIC {
            return Err(Error::Invalid("not a Vendor-Specific attribute"));
        }
        VendorSpecific::parse(self.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::{AttributeRepr, AttributeType};

    #[test]
    fn round_trip_and_malformed() {
        let v = VendorSpecific::new(
            9,
            vec![VendorAttribute::new(1, b"ip:addr-pool=x".to_vec()), VendorAttribute::new(250, vec![])],
        );
        let a = AttributeRepr::vendor_specific(&v).expect("attr");
        assert_eq!(a.typ(), AttributeType::VENDOR_SPECIFIC);
        assert_eq!(&a.value()[..6], &[0, 0, 0, 9, 1, 16]);
        assert_eq!(a.as_vendor_specific(), Ok(v));
        for bad in [
            &[][..],
            &[0, 0, 1],
            &[0, 0, 1, 55],
            &[0, 0, 1, 55, 1],
            &[0, 0, 1, 55, 1, 4, 0],
            &[0, 0, 0, 9, 1, 1],
        ] {
            assert!(VendorSpecific::parse(bad).is_err(), "{bad:?}");
        }
        assert!(VendorSpecific::single(1, 1, vec![0; 248]).to_bytes().is_err());
        assert!(VendorSpecific::single(1, 1, vec![0; 247]).to_bytes().is_ok());
        assert!(VendorSpecific::new(1, vec![]).to_bytes().is_err());
    }
}
