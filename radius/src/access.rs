//! Access-Request for a PPP subscriber of an L2TP session, and what an
//! Access-Accept authorizes.
//!
//! The LNS relays what its PPP authenticator received: PAP's password
//! (RFC 2865 §5.2), CHAP-MD5's identifier, challenge and response
//! (RFC 2865 §5.3, §5.40), or MS-CHAPv2's challenge and response
//! (RFC 2548 §2.3.2). The RADIUS server decides.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::attribute::{
    framed_protocol, nas_port_type, service_type, AttributeRepr, AttributeType as T, Ipv6Prefix,
};
use crate::error::{Error, Result};
use crate::microsoft::{self, MsChap2Response, MsChap2Success, MsChapError, MsReply};
use crate::packet::Repr;
use crate::tunnel::{tunnel_medium_type, tunnel_type, Tag};

/// What the peer proved its identity with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Cleartext; hidden per server by the client (RFC 2865 §5.2).
    Pap { password: Vec<u8> },
    /// RFC 1994 Identifier, the challenge the LNS sent, the peer's
    /// 16-octet response.
    ChapMd5 { ident: u8, challenge: Vec<u8>, response: [u8; 16] },
    /// RFC 2759: the 16-octet authenticator challenge and the peer's
    /// response fields.
    MsChapV2 { authenticator_challenge: [u8; 16], response: MsChap2Response },
}

/// Who the NAS is (RFC 2865 §5.4, §5.32; RFC 3162 §2.1): at least one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NasIdentity {
    pub ip: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub identifier: Option<String>,
}

impl NasIdentity {
    pub fn attributes(&self) -> Result<Vec<AttributeRepr>> {
        let mut v = Vec::new();
        if let Some(ip) = self.ip {
            v.push(AttributeRepr::ipv4(T::NAS_IP_ADDRESS, ip));
        }
        if let Some(ip) = self.ipv6 {
            v.push(AttributeRepr::ipv6(T::NAS_IPV6_ADDRESS, ip));
        }
        if let Some(id) = &self.identifier {
            v.push(AttributeRepr::string(T::NAS_IDENTIFIER, id)?);
        }
        if v.is_empty() {
            // RFC 2865 §4.1: "MUST contain either a NAS-IP-Address
            // attribute or a NAS-Identifier attribute (or both)".
            return Err(Error::Invalid("NAS-IP-Address or NAS-Identifier required"));
        }
        Ok(v)
    }
}

/// The L2TP tunnel the call arrived in, described with RFC 2868
/// attributes from the LNS's point of view (RFC 2868 §3: the LAC is the
/// tunnel client, the LNS the server), all under one Tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelInfo {
    pub client_endpoint: String,
    pub server_endpoint: String,
    /// IPv4 or IPv6 endpoints (Tunnel-Medium-Type).
    pub ipv6: bool,
    /// Tunnel-Assignment-ID: the LNS's tunnel id, so accounting and
    /// dynamic authorization can name the tunnel.
    pub assignment_id: Option<String>,
    /// The LAC's host name (L2TP Host Name AVP) and the LNS's.
    pub client_auth_id: Option<String>,
    pub server_auth_id: Option<String>,
}

impl TunnelInfo {
    pub fn attributes(&self) -> Result<Vec<AttributeRepr>> {
        let tag = Tag::new(1);
        let t = tag.ok_or(Error::Invalid("tag"))?;
        let medium = if self.ipv6 { tunnel_medium_type::IPV6 } else { tunnel_medium_type::IPV4 };
        let mut v = vec![
            AttributeRepr::tagged_integer(T::TUNNEL_TYPE, t, tunnel_type::L2TP)?,
            AttributeRepr::tagged_integer(T::TUNNEL_MEDIUM_TYPE, t, medium)?,
            AttributeRepr::tagged_string(T::TUNNEL_CLIENT_ENDPOINT, tag, &self.client_endpoint)?,
            AttributeRepr::tagged_string(T::TUNNEL_SERVER_ENDPOINT, tag, &self.server_endpoint)?,
        ];
        if let Some(id) = &self.assignment_id {
            v.push(AttributeRepr::tagged_string(T::TUNNEL_ASSIGNMENT_ID, tag, id)?);
        }
        if let Some(id) = &self.client_auth_id {
            v.push(AttributeRepr::tagged_string(T::TUNNEL_CLIENT_AUTH_ID, tag, id)?);
        }
        if let Some(id) = &self.server_auth_id {
            v.push(AttributeRepr::tagged_string(T::TUNNEL_SERVER_AUTH_ID, tag, id)?);
        }
        Ok(v)
    }
}

/// An Access-Request for a framed PPP user of a virtual port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    pub user_name: Vec<u8>,
    pub credentials: Credentials,
    pub nas: NasIdentity,
    /// The L2TP session's port number and a readable port id.
    pub nas_port: Option<u32>,
    pub nas_port_id: Option<String>,
    /// From the L2TP Calling Number / Called Number AVPs.
    pub calling_station_id: Option<String>,
    pub called_station_id: Option<String>,
    /// Connect speed and access-line description from the LAC.
    pub connect_info: Option<String>,
    pub tunnel: Option<TunnelInfo>,
    /// RFC 2865 §5.24: echoes an Access-Challenge's State.
    pub state: Option<Vec<u8>>,
    /// Anything else (RFC 5515 access-line attributes, vendor attributes).
    pub extra: Vec<AttributeRepr>,
}

impl AccessRequest {
    pub fn new(user_name: impl Into<Vec<u8>>, credentials: Credentials, nas: NasIdentity) -> AccessRequest {
        AccessRequest {
            user_name: user_name.into(),
            credentials,
            nas,
            nas_port: None,
            nas_port_id: None,
            calling_station_id: None,
            called_station_id: None,
            connect_info: None,
            tunnel: None,
            state: None,
            extra: Vec::new(),
        }
    }

    /// The request's attributes with the PAP password in cleartext in
    /// User-Password: [`crate::client::Client`] hides it for each server
    /// it sends to, since the hiding depends on the server's secret and
    /// the Request Authenticator of each transmission.
    pub fn to_attributes(&self) -> Result<Vec<AttributeRepr>> {
        let mut v = vec![AttributeRepr::string(T::USER_NAME, &self.user_name)?];
        match &self.credentials {
            Credentials::Pap { password } => {
                if password.len() > crate::hiding::MAX_USER_PASSWORD_LEN {
                    return Err(Error::Invalid("User-Password over 128 octets"));
                }
                v.push(AttributeRepr::string(T::USER_PASSWORD, password)?);
            }
            Credentials::ChapMd5 { ident, challenge, response } => {
                let mut p = vec![*ident];
                p.extend_from_slice(response);
                v.push(AttributeRepr::new(T::CHAP_PASSWORD, p)?);
                // Always explicit, rather than relying on the Request
                // Authenticator doubling as a 16-octet challenge (§5.40).
                v.push(AttributeRepr::string(T::CHAP_CHALLENGE, challenge)?);
            }
            Credentials::MsChapV2 { authenticator_challenge, response } => {
                v.push(microsoft::chap_challenge(authenticator_challenge)?);
                v.push(response.to_attribute()?);
            }
        }
        v.extend(self.nas.attributes()?);
        if let Some(p) = self.nas_port {
            v.push(AttributeRepr::integer(T::NAS_PORT, p));
        }
        if let Some(p) = &self.nas_port_id {
            v.push(AttributeRepr::string(T::NAS_PORT_ID, p)?);
        }
        v.push(AttributeRepr::integer(T::NAS_PORT_TYPE, nas_port_type::VIRTUAL));
        v.push(AttributeRepr::integer(T::SERVICE_TYPE, service_type::FRAMED));
        v.push(AttributeRepr::integer(T::FRAMED_PROTOCOL, framed_protocol::PPP));
        if let Some(s) = &self.calling_station_id {
            v.push(AttributeRepr::string(T::CALLING_STATION_ID, s)?);
        }
        if let Some(s) = &self.called_station_id {
            v.push(AttributeRepr::string(T::CALLED_STATION_ID, s)?);
        }
        if let Some(s) = &self.connect_info {
            v.push(AttributeRepr::string(T::CONNECT_INFO, s)?);
        }
        if let Some(t) = &self.tunnel {
            v.extend(t.attributes()?);
        }
        if let Some(s) = &self.state {
            v.push(AttributeRepr::string(T::STATE, s)?);
        }
        v.extend(self.extra.iter().cloned());
        Ok(v)
    }
}

/// Framed-IP-Address (RFC 2865 §5.8), with its two special values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramedIpAddress {
    Address(Ipv4Addr),
    /// 255.255.255.254: "the NAS should select an address for the user"
    /// (from its pool).
    NasSelects,
    /// 255.255.255.255: "the NAS should allow the user to select".
    UserSelects,
}

/// What an Access-Accept (or Access-Challenge) tells the LNS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorization {
    pub framed_ip_address: Option<FramedIpAddress>,
    pub framed_ip_netmask: Option<Ipv4Addr>,
    /// RFC 2869 §5.18: the pool to take the address from.
    pub framed_pool: Option<String>,
    /// RFC 3162 §2.3 (may repeat).
    pub framed_ipv6_prefixes: Vec<Ipv6Prefix>,
    pub framed_interface_id: Option<[u8; 8]>,
    pub framed_ipv6_pool: Option<String>,
    /// RFC 4818.
    pub delegated_ipv6_prefix: Option<Ipv6Prefix>,
    /// RFC 6911.
    pub framed_ipv6_address: Option<Ipv6Addr>,
    /// RFC 6911 §3.2, in order (may repeat): for DHCPv6 (RFC 3646).
    pub dns_server_ipv6_addresses: Vec<Ipv6Addr>,
    pub framed_mtu: Option<u32>,
    /// MS-Primary-DNS-Server then MS-Secondary-DNS-Server (RFC 2548
    /// §2.7.x), for IPCP.
    pub dns_servers: Vec<Ipv4Addr>,
    pub session_timeout: Option<u32>,
    pub idle_timeout: Option<u32>,
    pub acct_interim_interval: Option<u32>,
    /// RFC 2865 §5.25: echoed unmodified in every Accounting-Request.
    pub class: Vec<Vec<u8>>,
    pub filter_id: Vec<String>,
    pub reply_message: Vec<String>,
    /// RFC 2865 §5.24 (Access-Challenge).
    pub state: Option<Vec<u8>>,
    /// MS-CHAPv2: the "S=" for the CHAP Success the LNS sends.
    pub ms_chap2_success: Option<MsChap2Success>,
    /// MS-CHAPv2: the failure text (in a reject).
    pub ms_chap_error: Option<MsChapError>,
}

impl Authorization {
    /// Read the attributes the LNS acts on. An attribute of a known type
    /// with a malformed value is an error: RFC 6929 §2.8 treats it as
    /// invalid, and an Access-Accept the LNS cannot read entirely is
    /// safest refused.
    pub fn from_packet(p: &Repr) -> Result<Authorization> {
        let mut a = Authorization::default();
        for attr in &p.attributes {
            match attr.typ() {
                T::FRAMED_IP_ADDRESS => {
                    let ip = attr.as_ipv4()?;
                    a.framed_ip_address = Some(match u32::from(ip) {
                        0xffff_fffe => FramedIpAddress::NasSelects,
                        0xffff_ffff => FramedIpAddress::UserSelects,
                        _ => FramedIpAddress::Address(ip),
                    });
                }
                T::FRAMED_IP_NETMASK => a.framed_ip_netmask = Some(attr.as_ipv4()?),
                T::FRAMED_POOL => a.framed_pool = Some(attr.as_text()?.to_string()),
                T::FRAMED_IPV6_PREFIX => a.framed_ipv6_prefixes.push(attr.as_ipv6_prefix()?),
                T::FRAMED_INTERFACE_ID => {
                    a.framed_interface_id =
                        Some(attr.value().try_into().map_err(|_| Error::Malformed("Framed-Interface-Id"))?)
                }
                T::FRAMED_IPV6_POOL => a.framed_ipv6_pool = Some(attr.as_text()?.to_string()),
                T::DELEGATED_IPV6_PREFIX => a.delegated_ipv6_prefix = Some(attr.as_ipv6_prefix()?),
                T::FRAMED_IPV6_ADDRESS => a.framed_ipv6_address = Some(attr.as_ipv6()?),
                T::DNS_SERVER_IPV6_ADDRESS => a.dns_server_ipv6_addresses.push(attr.as_ipv6()?),
                T::FRAMED_MTU => a.framed_mtu = Some(attr.as_integer()?),
                T::SESSION_TIMEOUT => a.session_timeout = Some(attr.as_integer()?),
                T::IDLE_TIMEOUT => a.idle_timeout = Some(attr.as_integer()?),
                T::ACCT_INTERIM_INTERVAL => a.acct_interim_interval = Some(attr.as_integer()?),
                T::CLASS => a.class.push(attr.value().to_vec()),
                T::FILTER_ID => a.filter_id.push(String::from_utf8_lossy(attr.value()).into_owned()),
                T::REPLY_MESSAGE => a.reply_message.push(String::from_utf8_lossy(attr.value()).into_owned()),
                T::STATE => a.state = Some(attr.value().to_vec()),
                _ => {}
            }
        }
        let ms = MsReply::from_packet(p)?;
        a.dns_servers = ms.primary_dns.into_iter().chain(ms.secondary_dns).collect();
        a.ms_chap2_success = ms.chap2_success;
        a.ms_chap_error = ms.chap_error;
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Code;

    fn nas() -> NasIdentity {
        NasIdentity { ip: Some(Ipv4Addr::new(192, 0, 2, 1)), ipv6: None, identifier: Some("lns1".into()) }
    }

    #[test]
    fn request_attributes() {
        let mut r = AccessRequest::new(
            "alice",
            Credentials::ChapMd5 { ident: 7, challenge: vec![1; 16], response: [2; 16] },
            nas(),
        );
        r.nas_port = Some(42);
        r.calling_station_id = Some("0123".into());
        r.tunnel = Some(TunnelInfo {
            client_endpoint: "192.0.2.2".into(),
            server_endpoint: "192.0.2.1".into(),
            ipv6: false,
            assignment_id: Some("17".into()),
            client_auth_id: Some("lac".into()),
            server_auth_id: None,
        });
        let attrs = r.to_attributes().expect("attrs");
        let mut p = Repr::new(Code::AccessRequest, 1);
        p.attributes = attrs;
        assert_eq!(p.get(T::CHAP_PASSWORD).map(|a| a.value().len()), Some(17));
        assert_eq!(p.get(T::CHAP_PASSWORD).map(|a| a.value()[0]), Some(7));
        assert_eq!(p.get(T::NAS_PORT_TYPE).and_then(|a| a.as_integer().ok()), Some(5));
        assert_eq!(p.get(T::SERVICE_TYPE).and_then(|a| a.as_integer().ok()), Some(2));
        assert_eq!(p.get(T::FRAMED_PROTOCOL).and_then(|a| a.as_integer().ok()), Some(1));
        assert_eq!(p.get(T::TUNNEL_TYPE).and_then(|a| a.as_tagged_integer().ok()), Some((Tag::new(1), 3)));
        assert_eq!(p.get(T::TUNNEL_CLIENT_AUTH_ID).map(|a| a.as_tagged_string().1), Some(&b"lac"[..]));
        let none =
            AccessRequest::new("a", Credentials::Pap { password: b"x".to_vec() }, NasIdentity::default());
        assert!(none.to_attributes().is_err(), "RFC 2865 §4.1 needs a NAS identity");
        let long = AccessRequest::new("a", Credentials::Pap { password: vec![b'x'; 129] }, nas());
        assert!(long.to_attributes().is_err());
    }

    #[test]
    fn authorization_from_accept() {
        let mut p = Repr::new(Code::AccessAccept, 1);
        p.push(AttributeRepr::ipv4(T::FRAMED_IP_ADDRESS, Ipv4Addr::new(255, 255, 255, 254)));
        p.push(AttributeRepr::string(T::FRAMED_POOL, "gold").expect("a"));
        p.push(AttributeRepr::integer(T::SESSION_TIMEOUT, 3600));
        p.push(AttributeRepr::integer(T::IDLE_TIMEOUT, 600));
        p.push(AttributeRepr::integer(T::ACCT_INTERIM_INTERVAL, 300));
        p.push(AttributeRepr::string(T::CLASS, [0u8, 1, 2]).expect("a"));
        p.push(AttributeRepr::string(T::CLASS, "second").expect("a"));
        let prefix = Ipv6Prefix::new("2001:db8:7::".parse().expect("a"), 56).expect("p");
        p.push(AttributeRepr::ipv6_prefix(T::DELEGATED_IPV6_PREFIX, prefix));
        p.push(AttributeRepr::ipv6_prefix(
            T::FRAMED_IPV6_PREFIX,
            Ipv6Prefix::new("2001:db8::".parse().expect("a"), 64).expect("p"),
        ));
        p.push(microsoft::attribute(microsoft::ms::PRIMARY_DNS_SERVER, vec![192, 0, 2, 53]).expect("a"));
        p.push(microsoft::attribute(microsoft::ms::SECONDARY_DNS_SERVER, vec![192, 0, 2, 54]).expect("a"));
        let dns6: [Ipv6Addr; 2] =
            ["2001:db8:53::2".parse().expect("a"), "2001:db8:53::1".parse().expect("a")];
        for d in dns6 {
            p.push(AttributeRepr::ipv6(T::DNS_SERVER_IPV6_ADDRESS, d));
        }
        let p = Repr::from_bytes(&p.to_bytes().expect("emit")).expect("parse");
        let a = Authorization::from_packet(&p).expect("authorization");
        assert_eq!(a.framed_ip_address, Some(FramedIpAddress::NasSelects));
        assert_eq!(a.framed_pool.as_deref(), Some("gold"));
        assert_eq!(
            (a.session_timeout, a.idle_timeout, a.acct_interim_interval),
            (Some(3600), Some(600), Some(300))
        );
        assert_eq!(a.class, vec![vec![0, 1, 2], b"second".to_vec()]);
        assert_eq!(a.delegated_ipv6_prefix, Some(prefix));
        assert_eq!(a.framed_ipv6_prefixes.len(), 1);
        assert_eq!(a.dns_servers, [Ipv4Addr::new(192, 0, 2, 53), Ipv4Addr::new(192, 0, 2, 54)]);
        assert_eq!(a.dns_server_ipv6_addresses, dns6, "in the Access-Accept's order");
        let mut bad = Repr::new(Code::AccessAccept, 1);
        bad.push(AttributeRepr::new(T::SESSION_TIMEOUT, vec![1]).expect("a"));
        assert!(Authorization::from_packet(&bad).is_err());
        let mut bad = Repr::new(Code::AccessAccept, 1);
        bad.push(AttributeRepr::new(T::DNS_SERVER_IPV6_ADDRESS, vec![0x20, 1, 0xd, 0xb8]).expect("a"));
        assert!(Authorization::from_packet(&bad).is_err(), "RFC 6911: 16 octets");
    }
}
