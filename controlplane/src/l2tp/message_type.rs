//! Message Type values (RFC 2661 §3.2, RFC 5515 §3.2/§3.3), alone at the
//! bottom of the l2tp layers: the Message Type AVP ([`super::avp`]) carries
//! one and the control messages ([`super::message`]) are sorted by it, so
//! both take it from here rather than from each other.

/// Message Type AVP values (§3.2, plus RFC 5515's CSUN and CSURQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MessageType {
    Sccrq,
    Sccrp,
    Scccn,
    StopCcn,
    Hello,
    Ocrq,
    Ocrp,
    Occn,
    Icrq,
    Icrp,
    Iccn,
    Cdn,
    Wen,
    Sli,
    /// Connect-Speed-Update-Notification (RFC 5515 §3.2).
    Csun,
    /// Connect-Speed-Update-Request (RFC 5515 §3.3).
    Csurq,
    Other(u16),
}

impl From<u16> for MessageType {
    fn from(v: u16) -> Self {
        use MessageType::*;
        match v {
            1 => Sccrq,
            2 => Sccrp,
            3 => Scccn,
            4 => StopCcn,
            6 => Hello,
            7 => Ocrq,
            8 => Ocrp,
            9 => Occn,
            10 => Icrq,
            11 => Icrp,
            12 => Iccn,
            14 => Cdn,
            15 => Wen,
            16 => Sli,
            28 => Csun,
            29 => Csurq,
            o => Other(o),
        }
    }
}

impl From<MessageType> for u16 {
    fn from(t: MessageType) -> u16 {
        use MessageType::*;
        match t {
            Sccrq => 1,
            Sccrp => 2,
            Scccn => 3,
            StopCcn => 4,
            Hello => 6,
            Ocrq => 7,
            Ocrp => 8,
            Occn => 9,
            Icrq => 10,
            Icrp => 11,
            Iccn => 12,
            Cdn => 14,
            Wen => 15,
            Sli => 16,
            Csun => 28,
            Csurq => 29,
            Other(o) => o,
        }
    }
}

/// Whether a message concerns the whole tunnel or one session; it decides
/// what an unknown mandatory AVP tears down (§4.1: tunnel → StopCCN,
/// session → CDN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Tunnel,
    Session,
}

impl MessageType {
    pub fn scope(self) -> Scope {
        use MessageType::*;
        match self {
            Ocrq | Ocrp | Occn | Icrq | Icrp | Iccn | Cdn | Wen | Sli => Scope::Session,
            _ => Scope::Tunnel,
        }
    }
}
