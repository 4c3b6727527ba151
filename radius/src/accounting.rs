//! Accounting-Request records (RFC 2866) for a PPP session, with the
//! 64-bit fast-path counters split into RFC 2869 §5.1-2 Gigawords.

use std::net::Ipv4Addr;

use crate::access::{NasIdentity, TunnelInfo};
use crate::attribute::{
    acct_authentic, acct_status_type, framed_protocol, nas_port_type, service_type, AttributeRepr,
    AttributeType as T, Ipv6Prefix,
};
use crate::error::{Error, Result};
use crate::packet::Repr;

/// Acct-Status-Type (RFC 2866 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcctStatusType {
    Start,
    Stop,
    InterimUpdate,
    AccountingOn,
    AccountingOff,
}

impl AcctStatusType {
    pub fn value(self) -> u32 {
        match self {
            AcctStatusType::Start => acct_status_type::START,
            AcctStatusType::Stop => acct_status_type::STOP,
            AcctStatusType::InterimUpdate => acct_status_type::INTERIM_UPDATE,
            AcctStatusType::AccountingOn => acct_status_type::ACCOUNTING_ON,
            AcctStatusType::AccountingOff => acct_status_type::ACCOUNTING_OFF,
        }
    }

    pub fn from_value(v: u32) -> Option<AcctStatusType> {
        Some(match v {
            acct_status_type::START => AcctStatusType::Start,
            acct_status_type::STOP => AcctStatusType::Stop,
            acct_status_type::INTERIM_UPDATE => AcctStatusType::InterimUpdate,
            acct_status_type::ACCOUNTING_ON => AcctStatusType::AccountingOn,
            acct_status_type::ACCOUNTING_OFF => AcctStatusType::AccountingOff,
            _ => return None,
        })
    }
}

/// A session's traffic. RFC 2866 §5.3-4: "Input" is what the NAS received
/// from the port (the subscriber's upstream), "Output" what it delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub input_octets: u64,
    pub output_octets: u64,
    pub input_packets: u64,
    pub output_packets: u64,
}

fn low32(v: u64) -> u32 {
    (v & 0xffff_ffff) as u32
}

fn high32(v: u64) -> u32 {
    (v >> 32) as u32
}

impl Counters {
    /// Octets as a 32-bit counter plus Gigawords ("how many times the
    /// Acct-Input-Octets counter has wrapped around 2^32"); packets have
    /// no Gigawords and saturate at 2^32 - 1.
    pub fn attributes(&self) -> Vec<AttributeRepr> {
        vec![
            AttributeRepr::integer(T::ACCT_INPUT_OCTETS, low32(self.input_octets)),
            AttributeRepr::integer(T::ACCT_INPUT_GIGAWORDS, high32(self.input_octets)),
            AttributeRepr::integer(T::ACCT_OUTPUT_OCTETS, low32(self.output_octets)),
            AttributeRepr::integer(T::ACCT_OUTPUT_GIGAWORDS, high32(self.output_octets)),
            AttributeRepr::integer(
                T::ACCT_INPUT_PACKETS,
                u32::try_from(self.input_packets).unwrap_or(u32::MAX),
            ),
            AttributeRepr::integer(
                T::ACCT_OUTPUT_PACKETS,
                u32::try_from(self.output_packets).unwrap_or(u32::MAX),
            ),
        ]
    }

    /// Read them back (a server's view); missing attributes count zero.
    pub fn from_packet(p: &Repr) -> Result<Counters> {
        let get = |t| -> Result<u64> { p.get(t).map_or(Ok(0), |a| a.as_integer().map(u64::from)) };
        Ok(Counters {
            input_octets: get(T::ACCT_INPUT_GIGAWORDS)? << 32 | get(T::ACCT_INPUT_OCTETS)?,
            output_octets: get(T::ACCT_OUTPUT_GIGAWORDS)? << 32 | get(T::ACCT_OUTPUT_OCTETS)?,
            input_packets: get(T::ACCT_INPUT_PACKETS)?,
            output_packets: get(T::ACCT_OUTPUT_PACKETS)?,
        })
    }
}

/// An Acct-Session-Id unique across restarts (RFC 2866 §5.5 wants it
/// unique "to make it easy to match start and stop records"): the boot
/// time in seconds and a per-boot counter, in hex.
pub fn acct_session_id(boot_unix_seconds: u64, counter: u64) -> String {
    format!("{boot_unix_seconds:08X}{counter:08X}")
}

/// One accounting record of a framed PPP session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountingRequest {
    pub status: AcctStatusType,
    pub session_id: String,
    pub user_name: Option<Vec<u8>>,
    pub nas: NasIdentity,
    pub nas_port: Option<u32>,
    pub nas_port_id: Option<String>,
    pub calling_station_id: Option<String>,
    pub called_station_id: Option<String>,
    pub framed_ip_address: Option<Ipv4Addr>,
    pub framed_ipv6_prefix: Option<Ipv6Prefix>,
    pub delegated_ipv6_prefix: Option<Ipv6Prefix>,
    /// Every Class of the Access-Accept, unmodified (RFC 2865 §5.25).
    pub class: Vec<Vec<u8>>,
    /// Authenticated by RADIUS or locally (RFC 2866 §5.6).
    pub authentic: Option<u32>,
    /// Interim and Stop: seconds since Start (RFC 2866 §5.7).
    pub session_time: Option<u32>,
    pub counters: Option<Counters>,
    /// Stop: RFC 2866 §5.10.
    pub terminate_cause: Option<u32>,
    /// RFC 2869 §5.3: when the event happened, seconds since the epoch.
    pub event_timestamp: Option<u32>,
    /// Seconds the record has already waited (e.g. queued on disk): the
    /// client adds its own retransmission time (RFC 2866 §5.2).
    pub delay_time: u32,
    pub tunnel: Option<TunnelInfo>,
    pub connect_info: Option<String>,
    pub extra: Vec<AttributeRepr>,
}

impl AccountingRequest {
    pub fn new(status: AcctStatusType, session_id: impl Into<String>, nas: NasIdentity) -> AccountingRequest {
        AccountingRequest {
            status,
            session_id: session_id.into(),
            user_name: None,
            nas,
            nas_port: None,
            nas_port_id: None,
            calling_station_id: None,
            called_station_id: None,
            framed_ip_address: None,
            framed_ipv6_prefix: None,
            delegated_ipv6_prefix: None,
            class: Vec::new(),
            authentic: Some(acct_authentic::RADIUS),
            session_time: None,
            counters: None,
            terminate_cause: None,
            event_timestamp: None,
            delay_time: 0,
            tunnel: None,
            connect_info: None,
            extra: Vec::new(),
        }
    }

    /// The record's attributes; Acct-Delay-Time carries `delay_time` and is
    /// updated by the client on each new transmission.
    pub fn to_attributes(&self) -> Result<Vec<AttributeRepr>> {
        if self.session_id.is_empty() {
            return Err(Error::Invalid("Acct-Session-Id is required (RFC 2866 §5.5)"));
        }
        let mut v = vec![
            AttributeRepr::integer(T::ACCT_STATUS_TYPE, self.status.value()),
            AttributeRepr::string(T::ACCT_SESSION_ID, &self.session_id)?,
        ];
        if let Some(u) = &self.user_name {
            v.push(AttributeRepr::string(T::USER_NAME, u)?);
        }
        v.extend(self.nas.attributes()?);
        if let Some(p) = self.nas_port {
            v.push(AttributeRepr::integer(T::NAS_PORT, p));
        }
        if let Some(p) = &self.nas_port_id {
            v.push(AttributeRepr::string(T::NAS_PORT_ID, p)?);
        }
        let session = !matches!(self.status, AcctStatusType::AccountingOn | AcctStatusType::AccountingOff);
        if session {
            v.push(AttributeRepr::integer(T::NAS_PORT_TYPE, nas_port_type::VIRTUAL));
            v.push(AttributeRepr::integer(T::SERVICE_TYPE, service_type::FRAMED));
            v.push(AttributeRepr::integer(T::FRAMED_PROTOCOL, framed_protocol::PPP));
        }
        if let Some(s) = &self.calling_station_id {
            v.push(AttributeRepr::string(T::CALLING_STATION_ID, s)?);
        }
        if let Some(s) = &self.called_station_id {
            v.push(AttributeRepr::string(T::CALLED_STATION_ID, s)?);
        }
        if let Some(a) = self.framed_ip_address {
            v.push(AttributeRepr::ipv4(T::FRAMED_IP_ADDRESS, a));
        }
        if let Some(p) = self.framed_ipv6_prefix {
            v.push(AttributeRepr::ipv6_prefix(T::FRAMED_IPV6_PREFIX, p));
        }
        if let Some(p) = self.delegated_ipv6_prefix {
            v.push(AttributeRepr::ipv6_prefix(T::DELEGATED_IPV6_PREFIX, p));
        }
        for c in &self.class {
            v.push(AttributeRepr::string(T::CLASS, c)?);
        }
        if let Some(a) = self.authentic {
            v.push(AttributeRepr::integer(T::ACCT_AUTHENTIC, a));
        }
        if let Some(t) = self.session_time {
            v.push(AttributeRepr::integer(T::ACCT_SESSION_TIME, t));
        }
        if let Some(c) = &self.counters {
            v.extend(c.attributes());
        }
        if let Some(c) = self.terminate_cause {
            v.push(AttributeRepr::integer(T::ACCT_TERMINATE_CAUSE, c));
        }
        if let Some(t) = self.event_timestamp {
            v.push(AttributeRepr::time(T::EVENT_TIMESTAMP, t));
        }
        v.push(AttributeRepr::integer(T::ACCT_DELAY_TIME, self.delay_time));
        if let Some(t) = &self.tunnel {
            v.extend(t.attributes()?);
        }
        if let Some(s) = &self.connect_info {
            v.push(AttributeRepr::string(T::CONNECT_INFO, s)?);
        }
        v.extend(self.extra.iter().cloned());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Code;

    #[test]
    fn gigawords_split_and_join() {
        let c = Counters {
            input_octets: (5u64 << 32) + 17,
            output_octets: u64::from(u32::MAX),
            input_packets: 1 << 40,
            output_packets: 9,
        };
        let mut p = Repr::new(Code::AccountingRequest, 0);
        p.attributes = c.attributes();
        assert_eq!(p.get(T::ACCT_INPUT_GIGAWORDS).and_then(|a| a.as_integer().ok()), Some(5));
        assert_eq!(p.get(T::ACCT_INPUT_OCTETS).and_then(|a| a.as_integer().ok()), Some(17));
        assert_eq!(p.get(T::ACCT_OUTPUT_GIGAWORDS).and_then(|a| a.as_integer().ok()), Some(0));
        let back = Counters::from_packet(&p).expect("counters");
        assert_eq!(back.input_octets, c.input_octets);
        assert_eq!(back.output_octets, c.output_octets);
        assert_eq!(back.input_packets, u64::from(u32::MAX), "packets saturate");
        assert_eq!(back.output_packets, 9);
    }

    #[test]
    fn stop_record() {
        let nas = NasIdentity { ip: Some(Ipv4Addr::new(192, 0, 2, 1)), ..Default::default() };
        let mut r = AccountingRequest::new(AcctStatusType::Stop, acct_session_id(0x6000_0000, 7), nas);
        r.class = vec![b"c1".to_vec()];
        r.session_time = Some(61);
        r.terminate_cause = Some(crate::attribute::acct_terminate_cause::USER_REQUEST);
        r.counters = Some(Counters::default());
        let mut p = Repr::new(Code::AccountingRequest, 1);
        p.attributes = r.to_attributes().expect("attrs");
        assert_eq!(p.get(T::ACCT_SESSION_ID).map(|a| a.value()), Some(&b"6000000000000007"[..]));
        assert_eq!(p.get(T::ACCT_STATUS_TYPE).and_then(|a| a.as_integer().ok()), Some(2));
        assert_eq!(p.get(T::ACCT_TERMINATE_CAUSE).and_then(|a| a.as_integer().ok()), Some(1));
        assert_eq!(p.get(T::CLASS).map(|a| a.value()), Some(&b"c1"[..]));
        assert_eq!(p.get(T::ACCT_DELAY_TIME).and_then(|a| a.as_integer().ok()), Some(0));
        r.session_id.clear();
        assert!(r.to_attributes().is_err());
        assert_eq!(AcctStatusType::from_value(3), Some(AcctStatusType::InterimUpdate));
        assert_eq!(AcctStatusType::from_value(4), None);
    }
}
