//! Attributes (RFC 2865 §5): Type, Length, Value; the attribute types of
//! RFC 2865, 2866, 2867, 2868, 2869, 3162, 3579, 4818, 5176 and 6911; and
//! their data formats (RFC 8044 names them: integer, text, string,
//! ipv4addr, ipv6addr, ipv6prefix, time).
//!
//! ```text
//!  0                   1                   2
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |    Length     |  Value ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::{Error, Result};

mod field {
    pub const TYPE: usize = 0;
    pub const LENGTH: usize = 1;
    pub const VALUE: usize = 2;
}

/// Type and Length octets.
pub const HEADER_LEN: usize = field::VALUE;
/// The longest Value: Length is one octet and counts the header.
pub const MAX_VALUE_LEN: usize = 253;

/// An attribute Type octet.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributeType(pub u8);

macro_rules! attribute_types {
    ($($(#[$m:meta])* $name:ident = $v:expr, $text:expr;)*) => {
        impl AttributeType {
            $($(#[$m])* pub const $name: AttributeType = AttributeType($v);)*

            /// The RFC name, e.g. "User-Name".
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($v => Some($text),)*
                    _ => None,
                }
            }
        }
    };
}

attribute_types! {
    // RFC 2865 §5
    USER_NAME = 1, "User-Name";
    /// RFC 2865 §5.2: hidden with the shared secret, see
    /// [`crate::hiding::hide_user_password`].
    USER_PASSWORD = 2, "User-Password";
    /// RFC 2865 §5.3: CHAP Ident (1) then the 16-octet response.
    CHAP_PASSWORD = 3, "CHAP-Password";
    NAS_IP_ADDRESS = 4, "NAS-IP-Address";
    NAS_PORT = 5, "NAS-Port";
    SERVICE_TYPE = 6, "Service-Type";
    FRAMED_PROTOCOL = 7, "Framed-Protocol";
    FRAMED_IP_ADDRESS = 8, "Framed-IP-Address";
    FRAMED_IP_NETMASK = 9, "Framed-IP-Netmask";
    FRAMED_ROUTING = 10, "Framed-Routing";
    FILTER_ID = 11, "Filter-Id";
    FRAMED_MTU = 12, "Framed-MTU";
    FRAMED_COMPRESSION = 13, "Framed-Compression";
    LOGIN_IP_HOST = 14, "Login-IP-Host";
    LOGIN_SERVICE = 15, "Login-Service";
    LOGIN_TCP_PORT = 16, "Login-TCP-Port";
    REPLY_MESSAGE = 18, "Reply-Message";
    CALLBACK_NUMBER = 19, "Callback-Number";
    CALLBACK_ID = 20, "Callback-Id";
    FRAMED_ROUTE = 22, "Framed-Route";
    FRAMED_IPX_NETWORK = 23, "Framed-IPX-Network";
    STATE = 24, "State";
    CLASS = 25, "Class";
    VENDOR_SPECIFIC = 26, "Vendor-Specific";
    SESSION_TIMEOUT = 27, "Session-Timeout";
    IDLE_TIMEOUT = 28, "Idle-Timeout";
    TERMINATION_ACTION = 29, "Termination-Action";
    CALLED_STATION_ID = 30, "Called-Station-Id";
    CALLING_STATION_ID = 31, "Calling-Station-Id";
    NAS_IDENTIFIER = 32, "NAS-Identifier";
    PROXY_STATE = 33, "Proxy-State";
    LOGIN_LAT_SERVICE = 34, "Login-LAT-Service";
    LOGIN_LAT_NODE = 35, "Login-LAT-Node";
    LOGIN_LAT_GROUP = 36, "Login-LAT-Group";
    FRAMED_APPLETALK_LINK = 37, "Framed-AppleTalk-Link";
    FRAMED_APPLETALK_NETWORK = 38, "Framed-AppleTalk-Network";
    FRAMED_APPLETALK_ZONE = 39, "Framed-AppleTalk-Zone";
    // RFC 2866 §5
    ACCT_STATUS_TYPE = 40, "Acct-Status-Type";
    ACCT_DELAY_TIME = 41, "Acct-Delay-Time";
    ACCT_INPUT_OCTETS = 42, "Acct-Input-Octets";
    ACCT_OUTPUT_OCTETS = 43, "Acct-Output-Octets";
    ACCT_SESSION_ID = 44, "Acct-Session-Id";
    ACCT_AUTHENTIC = 45, "Acct-Authentic";
    ACCT_SESSION_TIME = 46, "Acct-Session-Time";
    ACCT_INPUT_PACKETS = 47, "Acct-Input-Packets";
    ACCT_OUTPUT_PACKETS = 48, "Acct-Output-Packets";
    ACCT_TERMINATE_CAUSE = 49, "Acct-Terminate-Cause";
    ACCT_MULTI_SESSION_ID = 50, "Acct-Multi-Session-Id";
    ACCT_LINK_COUNT = 51, "Acct-Link-Count";
    // RFC 2869 §5
    ACCT_INPUT_GIGAWORDS = 52, "Acct-Input-Gigawords";
    ACCT_OUTPUT_GIGAWORDS = 53, "Acct-Output-Gigawords";
    EVENT_TIMESTAMP = 55, "Event-Timestamp";
    CHAP_CHALLENGE = 60, "CHAP-Challenge";
    NAS_PORT_TYPE = 61, "NAS-Port-Type";
    PORT_LIMIT = 62, "Port-Limit";
    LOGIN_LAT_PORT = 63, "Login-LAT-Port";
    // RFC 2868 §3 (tagged, see crate::tunnel)
    TUNNEL_TYPE = 64, "Tunnel-Type";
    TUNNEL_MEDIUM_TYPE = 65, "Tunnel-Medium-Type";
    TUNNEL_CLIENT_ENDPOINT = 66, "Tunnel-Client-Endpoint";
    TUNNEL_SERVER_ENDPOINT = 67, "Tunnel-Server-Endpoint";
    // RFC 2867 §4
    ACCT_TUNNEL_CONNECTION = 68, "Acct-Tunnel-Connection";
    TUNNEL_PASSWORD = 69, "Tunnel-Password";
    // RFC 2869 §5
    ARAP_PASSWORD = 70, "ARAP-Password";
    ARAP_FEATURES = 71, "ARAP-Features";
    ARAP_ZONE_ACCESS = 72, "ARAP-Zone-Access";
    ARAP_SECURITY = 73, "ARAP-Security";
    ARAP_SECURITY_DATA = 74, "ARAP-Security-Data";
    PASSWORD_RETRY = 75, "Password-Retry";
    PROMPT = 76, "Prompt";
    CONNECT_INFO = 77, "Connect-Info";
    CONFIGURATION_TOKEN = 78, "Configuration-Token";
    /// RFC 3579 §3.1.
    EAP_MESSAGE = 79, "EAP-Message";
    /// RFC 3579 §3.2, RFC 2869 §5.14: HMAC-MD5 over the packet.
    MESSAGE_AUTHENTICATOR = 80, "Message-Authenticator";
    TUNNEL_PRIVATE_GROUP_ID = 81, "Tunnel-Private-Group-ID";
    TUNNEL_ASSIGNMENT_ID = 82, "Tunnel-Assignment-ID";
    TUNNEL_PREFERENCE = 83, "Tunnel-Preference";
    ARAP_CHALLENGE_RESPONSE = 84, "ARAP-Challenge-Response";
    ACCT_INTERIM_INTERVAL = 85, "Acct-Interim-Interval";
    ACCT_TUNNEL_PACKETS_LOST = 86, "Acct-Tunnel-Packets-Lost";
    NAS_PORT_ID = 87, "NAS-Port-Id";
    FRAMED_POOL = 88, "Framed-Pool";
    TUNNEL_CLIENT_AUTH_ID = 90, "Tunnel-Client-Auth-ID";
    TUNNEL_SERVER_AUTH_ID = 91, "Tunnel-Server-Auth-ID";
    // RFC 3162 §2
    NAS_IPV6_ADDRESS = 95, "NAS-IPv6-Address";
    FRAMED_INTERFACE_ID = 96, "Framed-Interface-Id";
    FRAMED_IPV6_PREFIX = 97, "Framed-IPv6-Prefix";
    LOGIN_IPV6_HOST = 98, "Login-IPv6-Host";
    FRAMED_IPV6_ROUTE = 99, "Framed-IPv6-Route";
    FRAMED_IPV6_POOL = 100, "Framed-IPv6-Pool";
    /// RFC 5176 §3.5.
    ERROR_CAUSE = 101, "Error-Cause";
    /// RFC 4818.
    DELEGATED_IPV6_PREFIX = 123, "Delegated-IPv6-Prefix";
    /// RFC 6911 §3.1.
    FRAMED_IPV6_ADDRESS = 168, "Framed-IPv6-Address";
    /// RFC 6911 §3.2: a DNS recursive name server (may repeat).
    DNS_SERVER_IPV6_ADDRESS = 169, "DNS-Server-IPv6-Address";
}

impl fmt::Debug for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}({})", self.0),
            None => write!(f, "Attr-{}", self.0),
        }
    }
}

impl fmt::Display for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Attr-{}", self.0),
        }
    }
}

/// Service-Type values (RFC 2865 §5.6).
pub mod service_type {
    pub const LOGIN: u32 = 1;
    pub const FRAMED: u32 = 2;
    pub const CALLBACK_LOGIN: u32 = 3;
    pub const CALLBACK_FRAMED: u32 = 4;
    pub const OUTBOUND: u32 = 5;
    pub const ADMINISTRATIVE: u32 = 6;
    pub const NAS_PROMPT: u32 = 7;
    pub const AUTHENTICATE_ONLY: u32 = 8;
    /// RFC 5176 §3.2: a CoA-Request asking only to re-authorize.
    pub const AUTHORIZE_ONLY: u32 = 17;
}

/// Framed-Protocol values (RFC 2865 §5.7).
pub mod framed_protocol {
    pub const PPP: u32 = 1;
}

/// NAS-Port-Type values (RFC 2865 §5.41).
pub mod nas_port_type {
    pub const ASYNC: u32 = 0;
    pub const SYNC: u32 = 1;
    pub const ISDN_SYNC: u32 = 2;
    /// "Virtual refers to a connection to the NAS via some transport
    /// protocol": an L2TP session.
    pub const VIRTUAL: u32 = 5;
    pub const ETHERNET: u32 = 15;
    pub const XDSL: u32 = 16;
}

/// Acct-Status-Type values (RFC 2866 §5.1).
pub mod acct_status_type {
    pub const START: u32 = 1;
    pub const STOP: u32 = 2;
    pub const INTERIM_UPDATE: u32 = 3;
    pub const ACCOUNTING_ON: u32 = 7;
    pub const ACCOUNTING_OFF: u32 = 8;
}

/// Acct-Authentic values (RFC 2866 §5.6).
pub mod acct_authentic {
    pub const RADIUS: u32 = 1;
    pub const LOCAL: u32 = 2;
    pub const REMOTE: u32 = 3;
}

/// Acct-Terminate-Cause values (RFC 2866 §5.10).
pub mod acct_terminate_cause {
    pub const USER_REQUEST: u32 = 1;
    pub const LOST_CARRIER: u32 = 2;
    pub const LOST_SERVICE: u32 = 3;
    pub const IDLE_TIMEOUT: u32 = 4;
    pub const SESSION_TIMEOUT: u32 = 5;
    pub const ADMIN_RESET: u32 = 6;
    pub const ADMIN_REBOOT: u32 = 7;
    pub const PORT_ERROR: u32 = 8;
    pub const NAS_ERROR: u32 = 9;
    pub const NAS_REQUEST: u32 = 10;
    pub const NAS_REBOOT: u32 = 11;
    pub const PORT_UNNEEDED: u32 = 12;
    pub const PORT_PREEMPTED: u32 = 13;
    pub const PORT_SUSPENDED: u32 = 14;
    pub const SERVICE_UNAVAILABLE: u32 = 15;
    pub const CALLBACK: u32 = 16;
    pub const USER_ERROR: u32 = 17;
    pub const HOST_REQUEST: u32 = 18;
}

/// Error-Cause values (RFC 5176 §3.5).
pub mod error_cause {
    pub const RESIDUAL_SESSION_CONTEXT_REMOVED: u32 = 201;
    pub const INVALID_EAP_PACKET: u32 = 202;
    pub const UNSUPPORTED_ATTRIBUTE: u32 = 401;
    pub const MISSING_ATTRIBUTE: u32 = 402;
    pub const NAS_IDENTIFICATION_MISMATCH: u32 = 403;
    pub const INVALID_REQUEST: u32 = 404;
    pub const UNSUPPORTED_SERVICE: u32 = 405;
    pub const UNSUPPORTED_EXTENSION: u32 = 406;
    pub const INVALID_ATTRIBUTE_VALUE: u32 = 407;
    pub const ADMINISTRATIVELY_PROHIBITED: u32 = 501;
    pub const REQUEST_NOT_ROUTABLE: u32 = 502;
    pub const SESSION_CONTEXT_NOT_FOUND: u32 = 503;
    pub const SESSION_CONTEXT_NOT_REMOVABLE: u32 = 504;
    pub const OTHER_PROXY_PROCESSING_ERROR: u32 = 505;
    pub const RESOURCES_UNAVAILABLE: u32 = 506;
    pub const REQUEST_INITIATED: u32 = 507;
    pub const MULTIPLE_SESSION_SELECTION_UNSUPPORTED: u32 = 508;
}

/// A read view of one attribute.
#[derive(Debug, Clone, Copy)]
pub struct Attribute<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Attribute<T> {
    pub const fn new_unchecked(buffer: T) -> Attribute<T> {
        Attribute { buffer }
    }

    /// Validates that the header is present and Length is 2 or more and
    /// fits in `buffer` (which may hold more attributes after this one).
    pub fn new_checked(buffer: T) -> Result<Attribute<T>> {
        let a = Attribute::new_unchecked(buffer);
        let data = a.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated { need: HEADER_LEN, have: data.len() });
        }
        let len = usize::from(a.length());
        if len < HEADER_LEN || len > data.len() {
            return Err(Error::BadAttributeLength { typ: a.typ().0, len });
        }
        Ok(a)
    }

    pub fn typ(&self) -> AttributeType {
        AttributeType(self.buffer.as_ref().get(field::TYPE).copied().unwrap_or(0))
    }

    pub fn length(&self) -> u8 {
        self.buffer.as_ref().get(field::LENGTH).copied().unwrap_or(0)
    }

    pub fn value(&self) -> &[u8] {
        self.buffer.as_ref().get(field::VALUE..usize::from(self.length())).unwrap_or(&[])
    }
}

/// The attributes of a checked area, in order. Stops at the first
/// malformed one (a checked [`crate::Packet`] has none).
#[derive(Debug, Clone)]
pub struct AttributeIter<'a> {
    rest: &'a [u8],
}

impl<'a> AttributeIter<'a> {
    pub fn new(area: &'a [u8]) -> AttributeIter<'a> {
        AttributeIter { rest: area }
    }
}

impl<'a> Iterator for AttributeIter<'a> {
    type Item = Attribute<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        match Attribute::new_checked(rest) {
            Ok(a) => {
                let len = usize::from(a.length());
                self.rest = rest.get(len..).unwrap_or(&[]);
                rest.get(..len).map(Attribute::new_unchecked)
            }
            Err(_) => {
                self.rest = &[];
                None
            }
        }
    }
}

/// An IPv6 prefix as in Framed-IPv6-Prefix (RFC 3162 §2.3) and
/// Delegated-IPv6-Prefix (RFC 4818 §3): Reserved, Prefix-Length, Prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Prefix {
    pub address: Ipv6Addr,
    pub len: u8,
}

impl Ipv6Prefix {
    /// Bits past the prefix length are cleared (RFC 8044 §3.10: they
    /// "MUST be zero" on the wire).
    pub fn new(address: Ipv6Addr, len: u8) -> Result<Ipv6Prefix> {
        if len > 128 {
            return Err(Error::Invalid("IPv6 prefix length over 128"));
        }
        let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
        Ok(Ipv6Prefix { address: Ipv6Addr::from(u128::from(address) & mask), len })
    }

    /// RFC 3162 §2.3: Length 4..=20; the Prefix field carries at least the
    /// prefix's bits and at most 16 octets.
    pub fn parse(value: &[u8]) -> Result<Ipv6Prefix> {
        let (&_reserved, rest) = value.split_first().ok_or(Error::Malformed("IPv6 prefix"))?;
        let (&len, prefix) = rest.split_first().ok_or(Error::Malformed("IPv6 prefix"))?;
        if len > 128 || prefix.len() > 16 || prefix.len() * 8 < usize::from(len) {
            return Err(Error::Malformed("IPv6 prefix length"));
        }
        let mut octets = [0u8; 16];
        octets.get_mut(..prefix.len()).ok_or(Error::Malformed("IPv6 prefix"))?.copy_from_slice(prefix);
        Ipv6Prefix::new(Ipv6Addr::from(octets), len)
    }

    /// Only the octets the prefix length needs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = usize::from(self.len).div_ceil(8);
        let mut v = vec![0, self.len];
        v.extend_from_slice(self.address.octets().get(..n).unwrap_or(&[]));
        v
    }
}

impl fmt::Display for Ipv6Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.len)
    }
}

/// An owned attribute: its type and its Value exactly as on the wire.
/// Typed constructors and accessors cover the RFC data formats; the
/// accessors check lengths and return errors for malformed values.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AttributeRepr {
    typ: AttributeType,
    value: Vec<u8>,
}

impl fmt::Debug for AttributeRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}=", self.typ)?;
        match core::str::from_utf8(&self.value) {
            Ok(s) if !s.is_empty() && s.chars().all(|c| !c.is_control()) => write!(f, "{s:?}"),
            _ => {
                f.write_str("0x")?;
                self.value.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

impl AttributeRepr {
    /// Any attribute; the value must fit in one attribute (253 octets).
    pub fn new(typ: AttributeType, value: impl Into<Vec<u8>>) -> Result<AttributeRepr> {
        let value = value.into();
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::ValueTooLong(value.len()));
        }
        Ok(AttributeRepr { typ, value })
    }

    pub fn parse<T: AsRef<[u8]>>(attribute: &Attribute<T>) -> Result<AttributeRepr> {
        AttributeRepr::new(attribute.typ(), attribute.value().to_vec())
    }

    pub fn typ(&self) -> AttributeType {
        self.typ
    }

    pub fn value(&self) -> &[u8] {
        &self.value
    }

    pub fn into_value(self) -> Vec<u8> {
        self.value
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.value.len()
    }

    /// Write Type, Length, Value into `buf` (exactly `buffer_len` long or
    /// longer).
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let n = self.buffer_len();
        let have = buf.len();
        let dst = buf.get_mut(..n).ok_or(Error::BufferTooSmall { need: n, have })?;
        dst[field::TYPE] = self.typ.0;
        dst[field::LENGTH] = n as u8;
        dst[field::VALUE..].copy_from_slice(&self.value);
        Ok(())
    }

    // Constructors for the RFC 2865 §5 data types.

    /// "text" or "string" data; errors if longer than 253 octets.
    pub fn string(typ: AttributeType, value: impl AsRef<[u8]>) -> Result<AttributeRepr> {
        AttributeRepr::new(typ, value.as_ref().to_vec())
    }

    /// 32-bit unsigned "integer", network order.
    pub fn integer(typ: AttributeType, v: u32) -> AttributeRepr {
        AttributeRepr { typ, value: v.to_be_bytes().to_vec() }
    }

    /// "time": seconds since 1970-01-01 UTC (RFC 2869 §5.3).
    pub fn time(typ: AttributeType, seconds: u32) -> AttributeRepr {
        AttributeRepr::integer(typ, seconds)
    }

    pub fn ipv4(typ: AttributeType, a: Ipv4Addr) -> AttributeRepr {
        AttributeRepr { typ, value: a.octets().to_vec() }
    }

    pub fn ipv6(typ: AttributeType, a: Ipv6Addr) -> AttributeRepr {
        AttributeRepr { typ, value: a.octets().to_vec() }
    }

    pub fn ipv6_prefix(typ: AttributeType, p: Ipv6Prefix) -> AttributeRepr {
        AttributeRepr { typ, value: p.to_bytes() }
    }

    // The Vendor-Specific (RFC 2865 §5.26) and tagged (RFC 2868 §3)
    // constructors and accessors are defined beside their formats, in
    // crate::vendor and crate::tunnel, which build on this module.

    /// Sixteen zero octets, filled in by [`crate::crypto::sign`].
    pub fn message_authenticator_placeholder() -> AttributeRepr {
        AttributeRepr { typ: AttributeType::MESSAGE_AUTHENTICATOR, value: vec![0; 16] }
    }

    // Accessors.

    pub fn as_integer(&self) -> Result<u32> {
        let b: [u8; 4] = self.value.as_slice().try_into().map_err(|_| Error::Malformed("integer"))?;
        Ok(u32::from_be_bytes(b))
    }

    pub fn as_ipv4(&self) -> Result<Ipv4Addr> {
        let b: [u8; 4] = self.value.as_slice().try_into().map_err(|_| Error::Malformed("IPv4 address"))?;
        Ok(Ipv4Addr::from(b))
    }

    pub fn as_ipv6(&self) -> Result<Ipv6Addr> {
        let b: [u8; 16] = self.value.as_slice().try_into().map_err(|_| Error::Malformed("IPv6 address"))?;
        Ok(Ipv6Addr::from(b))
    }

    pub fn as_ipv6_prefix(&self) -> Result<Ipv6Prefix> {
        Ipv6Prefix::parse(&self.value)
    }

    /// RFC 2865 §5 "text": UTF-8.
    pub fn as_text(&self) -> Result<&str> {
        core::str::from_utf8(&self.value).map_err(|_| Error::Malformed("text is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_checks() {
        assert!(Attribute::new_checked(&[1u8][..]).is_err());
        assert!(Attribute::new_checked(&[1u8, 1][..]).is_err());
        assert!(Attribute::new_checked(&[1u8, 4, 0][..]).is_err());
        let a = Attribute::new_checked(&[1u8, 4, b'a', b'b', 9, 9][..]).expect("ok");
        assert_eq!((a.typ(), a.value()), (AttributeType::USER_NAME, &b"ab"[..]));
        let all: Vec<_> = AttributeIter::new(&[1, 3, b'x', 5, 6, 0, 0, 0, 7][..]).map(|a| a.typ()).collect();
        assert_eq!(all, [AttributeType::USER_NAME, AttributeType::NAS_PORT]);
        // A malformed tail ends the iteration instead of panicking.
        assert_eq!(AttributeIter::new(&[1, 3, b'x', 5, 9, 0][..]).count(), 1);
    }

    #[test]
    fn typed_values() {
        let a = AttributeRepr::integer(AttributeType::SESSION_TIMEOUT, 3600);
        assert_eq!(a.value(), [0, 0, 0x0e, 0x10]);
        assert_eq!(a.as_integer(), Ok(3600));
        assert!(a.as_ipv4().is_ok());
        assert!(a.as_ipv6().is_err());
        let short = AttributeRepr::new(AttributeType::SESSION_TIMEOUT, vec![1, 2, 3]).expect("attr");
        assert!(short.as_integer().is_err());
        assert!(AttributeRepr::new(AttributeType::CLASS, vec![0; 254]).is_err());
        assert!(AttributeRepr::new(AttributeType::CLASS, vec![0; 253]).is_ok());
        assert!(AttributeRepr::string(AttributeType::USER_NAME, [0xffu8]).expect("s").as_text().is_err());
        assert_eq!(format!("{:?}", AttributeType::FRAMED_POOL), "Framed-Pool(88)");
        assert_eq!(AttributeType(250).to_string(), "Attr-250");
    }

    #[test]
    fn ipv6_prefixes() {
        // RFC 3162 §2.3 layout: reserved, length, prefix octets.
        let p = Ipv6Prefix::new("2001:db8:1:2::".parse().expect("addr"), 48).expect("prefix");
        assert_eq!(p.address, "2001:db8:1::".parse::<Ipv6Addr>().expect("addr"), "bits past /48 cleared");
        let a = AttributeRepr::ipv6_prefix(AttributeType::DELEGATED_IPV6_PREFIX, p);
        assert_eq!(a.value(), [0, 48, 0x20, 0x01, 0x0d, 0xb8, 0, 1]);
        assert_eq!(a.as_ipv6_prefix(), Ok(p));
        // A full 16-octet Prefix field is accepted too.
        let mut full = vec![0, 64];
        full.extend_from_slice(&"2001:db8::".parse::<Ipv6Addr>().expect("addr").octets());
        assert_eq!(Ipv6Prefix::parse(&full).map(|p| p.len), Ok(64));
        for bad in [&[][..], &[0], &[0, 129], &[0, 64, 1, 2], &[0; 19]] {
            assert!(Ipv6Prefix::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Ipv6Prefix::parse(&[0, 0]).map(|p| p.to_string()), Ok("::/0".into()));
    }
}
