//! Sessions (calls) inside a tunnel: incoming-call state (RFC 2661 §7.4.1
//! on the LAC, §7.4.2 on the LNS) and the information the LAC passes on
//! for PPP and AAA.

use super::avp::{AccessLine, Avp, AvpValue, ConnectSpeedUpdate, Q931Cause, ResultCode};
use super::header::SessionId;
use super::message::Message;
use serde::{Deserialize, Serialize};

/// What the LAC tells the LNS about a call, from ICRQ and ICCN. The LNS
/// uses it for proxy LCP/authentication (§4.4.5), AAA (calling/called
/// number, connect speeds, RFC 5515 access-line data) and data-plane
/// sequencing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub call_serial_number: u32,
    pub bearer_type: Option<u32>,
    pub physical_channel_id: Option<u32>,
    pub calling_number: Option<Vec<u8>>,
    pub called_number: Option<Vec<u8>>,
    pub sub_address: Option<Vec<u8>>,
    pub tx_connect_speed: Option<u32>,
    pub rx_connect_speed: Option<u32>,
    pub framing_type: Option<u32>,
    pub initial_received_lcp_confreq: Option<Vec<u8>>,
    pub last_sent_lcp_confreq: Option<Vec<u8>>,
    pub last_received_lcp_confreq: Option<Vec<u8>>,
    pub proxy_authen_type: Option<u16>,
    pub proxy_authen_name: Option<Vec<u8>>,
    pub proxy_authen_challenge: Option<Vec<u8>>,
    pub proxy_authen_id: Option<u8>,
    pub proxy_authen_response: Option<Vec<u8>>,
    pub private_group_id: Option<Vec<u8>>,
    /// Sequencing Required AVP (§4.4.4): data messages must carry Ns/Nr.
    pub sequencing_required: bool,
    /// RFC 5515 access-line information (agent circuit/remote id, rates).
    pub access_line: Vec<AccessLine>,
    /// RFC 5515: the LAC will send CSUN when the line speed changes.
    pub connect_speed_update_enable: bool,
}

impl SessionInfo {
    /// Merge the call information carried by an ICRQ or ICCN.
    pub fn absorb(&mut self, m: &Message) {
        for a in &m.avps {
            match &a.value {
                AvpValue::CallSerialNumber(n) => self.call_serial_number = *n,
                AvpValue::BearerType(b) => self.bearer_type = Some(*b),
                AvpValue::PhysicalChannelId(p) => self.physical_channel_id = Some(*p),
                AvpValue::CallingNumber(n) => self.calling_number = Some(n.clone()),
                AvpValue::CalledNumber(n) => self.called_number = Some(n.clone()),
                AvpValue::SubAddress(n) => self.sub_address = Some(n.clone()),
                AvpValue::TxConnectSpeed(s) => self.tx_connect_speed = Some(*s),
                AvpValue::RxConnectSpeed(s) => self.rx_connect_speed = Some(*s),
                AvpValue::FramingType(f) => self.framing_type = Some(*f),
                AvpValue::InitialReceivedLcpConfreq(b) => self.initial_received_lcp_confreq = Some(b.clone()),
                AvpValue::LastSentLcpConfreq(b) => self.last_sent_lcp_confreq = Some(b.clone()),
                AvpValue::LastReceivedLcpConfreq(b) => self.last_received_lcp_confreq = Some(b.clone()),
                AvpValue::ProxyAuthenType(t) => self.proxy_authen_type = Some(*t),
                AvpValue::ProxyAuthenName(b) => self.proxy_authen_name = Some(b.clone()),
                AvpValue::ProxyAuthenChallenge(b) => self.proxy_authen_challenge = Some(b.clone()),
                AvpValue::ProxyAuthenId(i) => self.proxy_authen_id = Some(*i),
                AvpValue::ProxyAuthenResponse(b) => self.proxy_authen_response = Some(b.clone()),
                AvpValue::PrivateGroupId(b) => self.private_group_id = Some(b.clone()),
                AvpValue::SequencingRequired => self.sequencing_required = true,
                AvpValue::AccessLine(l) => self.access_line.push(l.clone()),
                AvpValue::ConnectSpeedUpdateEnable => self.connect_speed_update_enable = true,
                _ => {}
            }
        }
    }

    /// The optional ICRQ AVPs (§6.6) for this call, LAC side.
    pub fn icrq_avps(&self) -> Vec<Avp> {
        let mut v = vec![Avp::new(AvpValue::CallSerialNumber(self.call_serial_number))];
        let mut push = |x: Option<AvpValue>| v.extend(x.map(Avp::new));
        push(self.bearer_type.map(AvpValue::BearerType));
        push(self.physical_channel_id.map(AvpValue::PhysicalChannelId));
        push(self.calling_number.clone().map(AvpValue::CallingNumber));
        push(self.called_number.clone().map(AvpValue::CalledNumber));
        push(self.sub_address.clone().map(AvpValue::SubAddress));
        for l in &self.access_line {
            v.push(Avp::new(AvpValue::AccessLine(l.clone())));
        }
        if self.connect_speed_update_enable {
            v.push(Avp::new(AvpValue::ConnectSpeedUpdateEnable));
        }
        v
    }

    /// The ICCN AVPs (§6.8), LAC side, including proxy LCP and proxy
    /// authentication when the LAC has already negotiated with the user.
    pub fn iccn_avps(&self) -> Vec<Avp> {
        let mut v = vec![
            Avp::new(AvpValue::TxConnectSpeed(self.tx_connect_speed.unwrap_or(0))),
            Avp::new(AvpValue::FramingType(self.framing_type.unwrap_or(super::avp::framing::SYNC))),
        ];
        let mut push = |x: Option<AvpValue>| v.extend(x.map(Avp::new));
        push(self.rx_connect_speed.map(AvpValue::RxConnectSpeed));
        push(self.initial_received_lcp_confreq.clone().map(AvpValue::InitialReceivedLcpConfreq));
        push(self.last_sent_lcp_confreq.clone().map(AvpValue::LastSentLcpConfreq));
        push(self.last_received_lcp_confreq.clone().map(AvpValue::LastReceivedLcpConfreq));
        push(self.proxy_authen_type.map(AvpValue::ProxyAuthenType));
        push(self.proxy_authen_name.clone().map(AvpValue::ProxyAuthenName));
        push(self.proxy_authen_challenge.clone().map(AvpValue::ProxyAuthenChallenge));
        push(self.proxy_authen_id.map(AvpValue::ProxyAuthenId));
        push(self.proxy_authen_response.clone().map(AvpValue::ProxyAuthenResponse));
        push(self.private_group_id.clone().map(AvpValue::PrivateGroupId));
        if self.sequencing_required {
            v.push(Avp::new(AvpValue::SequencingRequired));
        }
        v
    }
}

/// A connected call's [`SessionInfo`] as the LNS keeps it for the
/// session's life: in its compact binary form (a few dozen bytes, where
/// the struct is 320 and each number or blob an allocation of its own),
/// unpacked when read: for authentication, accounting, `lnsctl` and the
/// rare update. Serialized as the [`SessionInfo`] itself.
#[derive(Clone, PartialEq, Eq)]
pub enum PackedSessionInfo {
    Packed(Box<[u8]>),
    /// What would not pack (never seen): kept as it is.
    Plain(Box<SessionInfo>),
}

impl PackedSessionInfo {
    pub fn new(info: &SessionInfo) -> Self {
        match postcard::to_stdvec(info) {
            Ok(bytes) => PackedSessionInfo::Packed(bytes.into_boxed_slice()),
            Err(_) => PackedSessionInfo::Plain(Box::new(info.clone())),
        }
    }

    /// The information, unpacked.
    pub fn get(&self) -> SessionInfo {
        match self {
            // Our own encoding of a SessionInfo: it reads back.
            PackedSessionInfo::Packed(b) => postcard::from_bytes(b).unwrap_or_default(),
            PackedSessionInfo::Plain(i) => (**i).clone(),
        }
    }

    /// Changes the information (a CSUN's new line speeds).
    pub fn update(&mut self, f: impl FnOnce(&mut SessionInfo)) {
        let mut info = self.get();
        f(&mut info);
        *self = PackedSessionInfo::new(&info);
    }
}

impl Default for PackedSessionInfo {
    fn default() -> Self {
        PackedSessionInfo::new(&SessionInfo::default())
    }
}

impl From<&SessionInfo> for PackedSessionInfo {
    fn from(info: &SessionInfo) -> Self {
        PackedSessionInfo::new(info)
    }
}

impl std::fmt::Debug for PackedSessionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl Serialize for PackedSessionInfo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(s)
    }
}

impl<'de> Deserialize<'de> for PackedSessionInfo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SessionInfo::deserialize(d).map(|i| PackedSessionInfo::new(&i))
    }
}

/// Incoming-call states (§7.4.1 LAC, §7.4.2 LNS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionState {
    /// LAC: ICRQ sent, waiting for ICRP.
    WaitReply,
    /// LNS: ICRP sent, waiting for ICCN.
    WaitConnect,
    Established,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub local_id: SessionId,
    /// The peer's id for this call, once known (0 before ICRP on a LAC).
    pub peer_id: SessionId,
    pub state: SessionState,
    /// Boxed: most of it is empty, and the table holds every session.
    /// None once an LNS handed it to its owner (the call connected): it is
    /// not read here after that. Stored as the information itself (empty
    /// when handed over), so records read back either way.
    #[serde(with = "handed_over")]
    pub info: Option<Box<SessionInfo>>,
}

impl Session {
    /// The call's information; empty once handed over.
    pub fn info(&self) -> &SessionInfo {
        self.info.as_deref().unwrap_or(&EMPTY_INFO)
    }
}

static EMPTY_INFO: SessionInfo = SessionInfo {
    call_serial_number: 0,
    bearer_type: None,
    physical_channel_id: None,
    calling_number: None,
    called_number: None,
    sub_address: None,
    tx_connect_speed: None,
    rx_connect_speed: None,
    framing_type: None,
    initial_received_lcp_confreq: None,
    last_sent_lcp_confreq: None,
    last_received_lcp_confreq: None,
    proxy_authen_type: None,
    proxy_authen_name: None,
    proxy_authen_challenge: None,
    proxy_authen_id: None,
    proxy_authen_response: None,
    private_group_id: None,
    sequencing_required: false,
    access_line: Vec::new(),
    connect_speed_update_enable: false,
};

/// [`Session::info`] in the store: as a [`SessionInfo`], empty when handed
/// over (read back as present: an LNS does not read it again).
mod handed_over {
    use super::{SessionInfo, EMPTY_INFO};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(info: &Option<Box<SessionInfo>>, s: S) -> Result<S::Ok, S::Error> {
        info.as_deref().unwrap_or(&EMPTY_INFO).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<SessionInfo>>, D::Error> {
        SessionInfo::deserialize(d).map(|i| Some(Box::new(i)))
    }
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDownCause {
    /// Result Code sent (local close) or received (peer's CDN).
    pub result: Option<ResultCode>,
    pub q931: Option<Q931Cause>,
    /// True if the peer sent the CDN (or StopCCN).
    pub by_peer: bool,
    /// RFC 3145 PPP Disconnect Cause Code AVP value (code, protocol,
    /// direction, message) carried by the CDN.
    pub ppp_cause: Option<Vec<u8>>,
}

/// Latest line speeds reported in a CSUN (RFC 5515 §3.2).
pub fn connect_speed_updates(m: &Message) -> Vec<ConnectSpeedUpdate> {
    m.avps
        .iter()
        .filter_map(|a| match &a.value {
            AvpValue::ConnectSpeedUpdate(c) => Some(*c),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2tp::avp::{bbf, proxy_authen};
    use crate::l2tp::message::MessageType;

    #[test]
    fn iccn_avps_round_trip_through_absorb() {
        let info = SessionInfo {
            call_serial_number: 9,
            tx_connect_speed: Some(1_000_000),
            rx_connect_speed: Some(500_000),
            framing_type: Some(1),
            initial_received_lcp_confreq: Some(vec![1, 4, 5, 0xd4]),
            last_sent_lcp_confreq: Some(vec![3, 6, 0, 0, 0, 0]),
            last_received_lcp_confreq: Some(vec![1, 4, 5, 0xd4]),
            proxy_authen_type: Some(proxy_authen::CHAP),
            proxy_authen_name: Some(b"bob".to_vec()),
            proxy_authen_challenge: Some(vec![5; 16]),
            proxy_authen_id: Some(3),
            proxy_authen_response: Some(vec![6; 16]),
            private_group_id: Some(b"g".to_vec()),
            sequencing_required: true,
            ..Default::default()
        };
        let mut m = Message::new(MessageType::Iccn, []);
        m.avps.extend(info.iccn_avps());
        assert_eq!(m.validate(), Ok(true));
        let mut back = SessionInfo { call_serial_number: 9, ..Default::default() };
        back.absorb(&m);
        assert_eq!(back, info);
    }

    #[test]
    fn icrq_avps_carry_access_line() {
        let info = SessionInfo {
            call_serial_number: 1,
            calling_number: Some(b"0123".to_vec()),
            access_line: vec![
                AccessLine::AgentCircuitId(b"circuit".to_vec()),
                AccessLine::DataRate { attr: bbf::ACTUAL_DATA_RATE_UPSTREAM, bps: 1_000_000 },
            ],
            connect_speed_update_enable: true,
            ..Default::default()
        };
        let mut m = Message::new(MessageType::Icrq, [AvpValue::AssignedSessionId(SessionId(4))]);
        m.avps.extend(info.icrq_avps());
        let bytes = m.emit(None).expect("emit");
        let parsed = Message::parse(&bytes, None).expect("parse");
        assert_eq!(parsed.validate(), Ok(true));
        let mut back = SessionInfo::default();
        back.absorb(&parsed);
        assert_eq!(back, info);
    }

    #[test]
    fn packed_session_info_reads_back_and_serializes_as_the_plain_struct() {
        let info = SessionInfo {
            call_serial_number: 7,
            calling_number: Some(b"5551234".to_vec()),
            tx_connect_speed: Some(1_000_000),
            last_sent_lcp_confreq: Some(vec![1, 1, 0, 8, 3, 4, 0xc2, 0x23]),
            proxy_authen_id: Some(3),
            sequencing_required: true,
            access_line: vec![
                AccessLine::AgentCircuitId(b"eth0/1".to_vec()),
                AccessLine::DataRate { attr: 129, bps: 9 },
            ],
            connect_speed_update_enable: true,
            ..SessionInfo::default()
        };
        let mut packed = PackedSessionInfo::new(&info);
        assert!(matches!(&packed, PackedSessionInfo::Packed(b) if b.len() < 64), "{:?}", packed);
        assert_eq!(packed.get(), info);
        // A snapshot holds what it held before: the struct.
        let bytes = postcard::to_stdvec(&packed).expect("encode");
        assert_eq!(bytes, postcard::to_stdvec(&info).expect("encode"));
        let back: PackedSessionInfo = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, packed);
        packed.update(|i| i.rx_connect_speed = Some(2_000_000));
        assert_eq!(packed.get(), SessionInfo { rx_connect_speed: Some(2_000_000), ..info });
        assert_eq!(PackedSessionInfo::default().get(), SessionInfo::default());
    }
}
