//! DHCPv6 messages (RFC 8415) as the LNS's server on its PPP links reads
//! and writes them, and the IPv6/UDP packet around them.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    msg-type   |               transaction-id                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            options: option-code (16), option-len (16), data   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Two layers, as in smoltcp: [`Packet`], a view checked once
//! ([`Packet::new_checked`]: every option's length fits the message, the
//! encapsulated ones too) whose accessors cannot panic after that; and
//! [`Repr`], the message as data with the options the server uses:
//! Client and Server Identifier (§21.2, §21.3), IA_NA (§21.4) with IA
//! Address (§21.6), IA_PD (§21.21) with IA Prefix (§21.22), Option Request
//! (§21.7), Preference (§21.8), Elapsed Time (§21.9), Status Code
//! (§21.13), Rapid Commit (§21.14), Reconfigure Accept (§21.20) and DNS
//! Recursive Name Server (RFC 3646 §3). Other options are skipped, as
//! §16 has a receiver do.
//!
//! Untrusted bytes never panic; repeated options that may appear once,
//! lengths that do not match the option's format, and more IAs, addresses
//! or requested options than [`MAX_IAS`], [`MAX_IA_ENTRIES`] and
//! [`MAX_ORO`] are refused. A message longer than [`MAX_LEN`] is refused
//! before it is read.

use std::net::Ipv6Addr;
use std::ops::Range;

use crate::checksum;

/// RFC 8415 §7.2: ports.
pub const CLIENT_PORT: u16 = 546;
pub const SERVER_PORT: u16 = 547;
/// RFC 8415 §7.1: All_DHCP_Relay_Agents_and_Servers, where clients send.
pub const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// The longest message read: what one IPv6 packet of 1,500 bytes carries
/// over UDP. A client's message is a few hundred bytes; more is refused.
pub const MAX_LEN: usize = 1500 - 40 - 8;
/// IA_NA and IA_PD options read per message, each kind.
pub const MAX_IAS: usize = 8;
/// Addresses or prefixes read per IA.
pub const MAX_IA_ENTRIES: usize = 8;
/// Option codes read from an Option Request option.
pub const MAX_ORO: usize = 64;
/// RFC 8415 §11.1: a DUID is at most 128 octets after its 2-octet type.
pub const MAX_DUID_LEN: usize = 130;

/// RFC 8415 §7.3 message types.
pub mod message_type {
    pub const SOLICIT: u8 = 1;
    pub const ADVERTISE: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const CONFIRM: u8 = 4;
    pub const RENEW: u8 = 5;
    pub const REBIND: u8 = 6;
    pub const REPLY: u8 = 7;
    pub const RELEASE: u8 = 8;
    pub const DECLINE: u8 = 9;
    pub const RECONFIGURE: u8 = 10;
    pub const INFORMATION_REQUEST: u8 = 11;
    pub const RELAY_FORW: u8 = 12;
    pub const RELAY_REPL: u8 = 13;
}

/// RFC 8415 §21 option codes (and RFC 3646's DNS servers).
pub mod option_code {
    pub const CLIENTID: u16 = 1;
    pub const SERVERID: u16 = 2;
    pub const IA_NA: u16 = 3;
    pub const IAADDR: u16 = 5;
    pub const ORO: u16 = 6;
    pub const PREFERENCE: u16 = 7;
    pub const ELAPSED_TIME: u16 = 8;
    pub const STATUS_CODE: u16 = 13;
    pub const RAPID_COMMIT: u16 = 14;
    pub const RECONF_ACCEPT: u16 = 20;
    pub const DNS_SERVERS: u16 = 23;
    pub const IA_PD: u16 = 25;
    pub const IAPREFIX: u16 = 26;
}

/// RFC 8415 §21.13 status codes.
pub mod status_code {
    pub const SUCCESS: u16 = 0;
    pub const UNSPEC_FAIL: u16 = 1;
    pub const NO_ADDRS_AVAIL: u16 = 2;
    pub const NO_BINDING: u16 = 3;
    pub const NOT_ON_LINK: u16 = 4;
    pub const USE_MULTICAST: u16 = 5;
    pub const NO_PREFIX_AVAIL: u16 = 6;
}

/// Why bytes are not a DHCPv6 message we take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than its header, or an option runs past the end.
    Truncated,
    /// Longer than [`MAX_LEN`].
    TooLong,
    /// An option whose length does not fit its format, or that appears
    /// twice where once is allowed; the option's name.
    Malformed(&'static str),
    /// More IAs, entries or requested options than read; which.
    TooMany(&'static str),
    /// Not IPv6/UDP, or a UDP length or checksum that does not add up.
    NotUdp(&'static str),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Truncated => write!(f, "truncated DHCPv6 message"),
            Error::TooLong => write!(f, "DHCPv6 message longer than {MAX_LEN} bytes"),
            Error::Malformed(what) => write!(f, "malformed DHCPv6 {what}"),
            Error::TooMany(what) => write!(f, "too many DHCPv6 {what}"),
            Error::NotUdp(what) => write!(f, "not a DHCPv6 datagram: {what}"),
        }
    }
}

impl std::error::Error for Error {}

mod field {
    use std::ops::Range;
    pub const MSG_TYPE: usize = 0;
    pub const TRANSACTION_ID: Range<usize> = 1..4;
    pub const OPTIONS: usize = 4;
}

/// Walks `options` (code, length, data...), checking each length fits.
#[derive(Clone, Debug)]
pub struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Options<'a> {
    pub fn new(options: &'a [u8]) -> Options<'a> {
        Options { rest: options }
    }

    /// Every option's length fits.
    fn check(options: &[u8]) -> Result<(), Error> {
        Options::new(options).try_for_each(|o| o.map(|_| ()))
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<(u16, &'a [u8]), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let code = u16::from_be_bytes(self.rest.get(0..2)?.try_into().ok()?);
            let len = usize::from(u16::from_be_bytes(self.rest.get(2..4)?.try_into().ok()?));
            let data = self.rest.get(4..4 + len)?;
            Some((code, data, 4 + len))
        })();
        match parsed {
            Some((code, data, used)) => {
                self.rest = self.rest.get(used..).unwrap_or(&[]);
                Some(Ok((code, data)))
            }
            None => {
                self.rest = &[];
                Some(Err(Error::Truncated))
            }
        }
    }
}

/// A zero-copy view of a DHCPv6 client/server message (not a relay
/// message: the LNS is the server on the subscriber's link).
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// The view, once the header is there, the length is at most
    /// [`MAX_LEN`] and every top-level option fits.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let b = buffer.as_ref();
        if b.len() < field::OPTIONS {
            return Err(Error::Truncated);
        }
        if b.len() > MAX_LEN {
            return Err(Error::TooLong);
        }
        Options::check(&b[field::OPTIONS..])?;
        Ok(Packet { buffer })
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref().get(field::MSG_TYPE).copied().unwrap_or(0)
    }

    pub fn transaction_id(&self) -> [u8; 3] {
        let mut t = [0u8; 3];
        if let Some(b) = self.buffer.as_ref().get(field::TRANSACTION_ID) {
            t.copy_from_slice(b);
        }
        t
    }

    pub fn options(&self) -> Options<'_> {
        Options::new(self.buffer.as_ref().get(field::OPTIONS..).unwrap_or(&[]))
    }
}

/// A Status Code option (§21.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    /// UTF-8 for people, not parsed (§21.13); non-UTF-8 is replaced.
    pub message: String,
}

impl Status {
    pub fn new(code: u16, message: &str) -> Status {
        Status { code, message: message.to_string() }
    }

    fn parse(data: &[u8]) -> Result<Status, Error> {
        let code = data.get(0..2).ok_or(Error::Malformed("Status Code"))?;
        Ok(Status {
            code: u16::from_be_bytes([code[0], code[1]]),
            message: String::from_utf8_lossy(data.get(2..).unwrap_or(&[])).into_owned(),
        })
    }

    fn data_len(&self) -> usize {
        2 + self.message.len()
    }

    fn emit(&self, w: &mut Writer<'_>) {
        w.option_header(option_code::STATUS_CODE, self.data_len());
        w.put(&self.code.to_be_bytes());
        w.put(self.message.as_bytes());
    }
}

/// An IA Address option (§21.6), in an IA_NA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IaAddress {
    pub address: Ipv6Addr,
    pub preferred_lifetime: u32,
    pub valid_lifetime: u32,
    pub status: Option<Status>,
}

/// An IA Prefix option (§21.22), in an IA_PD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IaPrefix {
    pub preferred_lifetime: u32,
    pub valid_lifetime: u32,
    pub prefix_len: u8,
    pub prefix: Ipv6Addr,
    pub status: Option<Status>,
}

/// An IA_NA (§21.4) or IA_PD (§21.21): the same fixed part, then
/// addresses or prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ia<E> {
    pub iaid: u32,
    pub t1: u32,
    pub t2: u32,
    pub entries: Vec<E>,
    pub status: Option<Status>,
}

pub type IaNa = Ia<IaAddress>;
pub type IaPd = Ia<IaPrefix>;

/// What an IA holds: how its entries are read and written.
pub trait IaEntry: Sized {
    const IA_CODE: u16;
    const ENTRY_CODE: u16;
    const NAME: &'static str;
    /// The entry's fixed part's length (before its own options).
    const FIXED_LEN: usize;
    fn parse_fixed(data: &[u8], status: Option<Status>) -> Self;
    fn emit_fixed(&self, w: &mut Writer<'_>);
    fn status(&self) -> Option<&Status>;
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn addr(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    if let Some(s) = b.get(at..at + 16) {
        a.copy_from_slice(s);
    }
    Ipv6Addr::from(a)
}

impl IaEntry for IaAddress {
    const IA_CODE: u16 = option_code::IA_NA;
    const ENTRY_CODE: u16 = option_code::IAADDR;
    const NAME: &'static str = "IA Address";
    const FIXED_LEN: usize = 24;
    fn parse_fixed(d: &[u8], status: Option<Status>) -> Self {
        IaAddress {
            address: addr(d, 0),
            preferred_lifetime: be32(d, 16),
            valid_lifetime: be32(d, 20),
            status,
        }
    }
    fn emit_fixed(&self, w: &mut Writer<'_>) {
        w.put(&self.address.octets());
        w.put(&self.preferred_lifetime.to_be_bytes());
        w.put(&self.valid_lifetime.to_be_bytes());
    }
    fn status(&self) -> Option<&Status> {
        self.status.as_ref()
    }
}

impl IaEntry for IaPrefix {
    const IA_CODE: u16 = option_code::IA_PD;
    const ENTRY_CODE: u16 = option_code::IAPREFIX;
    const NAME: &'static str = "IA Prefix";
    const FIXED_LEN: usize = 25;
    fn parse_fixed(d: &[u8], status: Option<Status>) -> Self {
        IaPrefix {
            preferred_lifetime: be32(d, 0),
            valid_lifetime: be32(d, 4),
            prefix_len: d.get(8).copied().unwrap_or(0),
            prefix: addr(d, 9),
            status,
        }
    }
    fn emit_fixed(&self, w: &mut Writer<'_>) {
        w.put(&self.preferred_lifetime.to_be_bytes());
        w.put(&self.valid_lifetime.to_be_bytes());
        w.put(&[self.prefix_len]);
        w.put(&self.prefix.octets());
    }
    fn status(&self) -> Option<&Status> {
        self.status.as_ref()
    }
}

/// The Status Code among `options`, at most one.
fn status_in(options: &[u8]) -> Result<Option<Status>, Error> {
    let mut status = None;
    for o in Options::new(options) {
        let (code, data) = o?;
        if code == option_code::STATUS_CODE {
            if status.is_some() {
                return Err(Error::Malformed("Status Code (twice)"));
            }
            status = Some(Status::parse(data)?);
        }
    }
    Ok(status)
}

impl<E: IaEntry> Ia<E> {
    /// IA_NA/IA_PD fixed part: IAID, T1, T2.
    const FIXED_LEN: usize = 12;

    fn parse(data: &[u8]) -> Result<Ia<E>, Error> {
        let name = if E::IA_CODE == option_code::IA_NA { "IA_NA" } else { "IA_PD" };
        let options = data.get(Self::FIXED_LEN..).ok_or(Error::Malformed(name))?;
        let mut entries = Vec::new();
        let mut status = None;
        for o in Options::new(options) {
            let (code, d) = o?;
            if code == E::ENTRY_CODE {
                if entries.len() == MAX_IA_ENTRIES {
                    return Err(Error::TooMany(E::NAME));
                }
                let inner = d.get(E::FIXED_LEN..).ok_or(Error::Malformed(E::NAME))?;
                entries.push(E::parse_fixed(d, status_in(inner)?));
            } else if code == option_code::STATUS_CODE {
                if status.is_some() {
                    return Err(Error::Malformed("Status Code (twice)"));
                }
                status = Some(Status::parse(d)?);
            }
        }
        Ok(Ia { iaid: be32(data, 0), t1: be32(data, 4), t2: be32(data, 8), entries, status })
    }

    fn entry_len(e: &E) -> usize {
        4 + E::FIXED_LEN + e.status().map_or(0, |s| 4 + s.data_len())
    }

    fn data_len(&self) -> usize {
        Self::FIXED_LEN
            + self.entries.iter().map(Self::entry_len).sum::<usize>()
            + self.status.as_ref().map_or(0, |s| 4 + s.data_len())
    }

    fn emit(&self, w: &mut Writer<'_>) {
        w.option_header(E::IA_CODE, self.data_len());
        w.put(&self.iaid.to_be_bytes());
        w.put(&self.t1.to_be_bytes());
        w.put(&self.t2.to_be_bytes());
        for e in &self.entries {
            w.option_header(E::ENTRY_CODE, Self::entry_len(e) - 4);
            e.emit_fixed(w);
            if let Some(s) = e.status() {
                s.emit(w);
            }
        }
        if let Some(s) = &self.status {
            s.emit(w);
        }
    }
}

/// A DHCPv6 message with the options the server reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Repr {
    pub msg_type: u8,
    pub transaction_id: [u8; 3],
    /// DUIDs (§11), kept as bytes: the server only compares and echoes them.
    pub client_id: Option<Vec<u8>>,
    pub server_id: Option<Vec<u8>>,
    pub ia_na: Vec<IaNa>,
    pub ia_pd: Vec<IaPd>,
    /// Option codes the client asks for (§21.7).
    pub oro: Vec<u16>,
    pub preference: Option<u8>,
    /// Hundredths of a second (§21.9).
    pub elapsed_time: Option<u16>,
    pub status: Option<Status>,
    pub rapid_commit: bool,
    pub reconfigure_accept: bool,
    /// RFC 3646 §3.
    pub dns_servers: Vec<Ipv6Addr>,
}

/// Sets `slot` from a singleton option, refusing a second one.
fn once<V>(slot: &mut Option<V>, v: V, name: &'static str) -> Result<(), Error> {
    if slot.replace(v).is_some() {
        return Err(Error::Malformed(name));
    }
    Ok(())
}

impl Repr {
    pub fn new(msg_type: u8, transaction_id: [u8; 3]) -> Repr {
        Repr { msg_type, transaction_id, ..Repr::default() }
    }

    /// The message of a checked view. Relay messages (§9) are not ours
    /// to read: refused as malformed.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, Error> {
        use option_code as c;
        if matches!(p.msg_type(), message_type::RELAY_FORW | message_type::RELAY_REPL) {
            return Err(Error::Malformed("relay message"));
        }
        let mut r = Repr::new(p.msg_type(), p.transaction_id());
        let (mut rapid, mut reconf) = (None, None);
        for o in p.options() {
            let (code, data) = o?;
            match code {
                c::CLIENTID | c::SERVERID => {
                    let (slot, name) = if code == c::CLIENTID {
                        (&mut r.client_id, "Client Identifier")
                    } else {
                        (&mut r.server_id, "Server Identifier")
                    };
                    if data.len() < 2 || data.len() > MAX_DUID_LEN {
                        return Err(Error::Malformed(name));
                    }
                    once(slot, data.to_vec(), name)?;
                }
                c::IA_NA => {
                    if r.ia_na.len() == MAX_IAS {
                        return Err(Error::TooMany("IA_NA"));
                    }
                    r.ia_na.push(Ia::parse(data)?);
                }
                c::IA_PD => {
                    if r.ia_pd.len() == MAX_IAS {
                        return Err(Error::TooMany("IA_PD"));
                    }
                    r.ia_pd.push(Ia::parse(data)?);
                }
                c::ORO => {
                    if data.len() % 2 != 0 || !r.oro.is_empty() {
                        return Err(Error::Malformed("Option Request"));
                    }
                    if data.len() / 2 > MAX_ORO {
                        return Err(Error::TooMany("requested options"));
                    }
                    r.oro = data.chunks_exact(2).map(|w| u16::from_be_bytes([w[0], w[1]])).collect();
                }
                c::PREFERENCE => match data {
                    [v] => once(&mut r.preference, *v, "Preference")?,
                    _ => return Err(Error::Malformed("Preference")),
                },
                c::ELAPSED_TIME => match data {
                    [a, b] => once(&mut r.elapsed_time, u16::from_be_bytes([*a, *b]), "Elapsed Time")?,
                    _ => return Err(Error::Malformed("Elapsed Time")),
                },
                c::STATUS_CODE => once(&mut r.status, Status::parse(data)?, "Status Code")?,
                c::RAPID_COMMIT if data.is_empty() => once(&mut rapid, (), "Rapid Commit")?,
                c::RAPID_COMMIT => return Err(Error::Malformed("Rapid Commit")),
                c::RECONF_ACCEPT if data.is_empty() => once(&mut reconf, (), "Reconfigure Accept")?,
                c::RECONF_ACCEPT => return Err(Error::Malformed("Reconfigure Accept")),
                c::DNS_SERVERS => {
                    if data.len() % 16 != 0 || !r.dns_servers.is_empty() {
                        return Err(Error::Malformed("DNS Recursive Name Server"));
                    }
                    r.dns_servers = data.chunks_exact(16).map(|a| addr(a, 0)).collect();
                }
                // §16: options a receiver does not know are ignored.
                _ => {}
            }
        }
        r.rapid_commit = rapid.is_some();
        r.reconfigure_accept = reconf.is_some();
        Ok(r)
    }

    /// [`Packet::new_checked`] then [`Repr::parse`].
    pub fn parse_bytes(bytes: &[u8]) -> Result<Repr, Error> {
        Repr::parse(&Packet::new_checked(bytes)?)
    }

    /// The message's length once emitted.
    pub fn buffer_len(&self) -> usize {
        let opt = |len: usize| 4 + len;
        field::OPTIONS
            + self.client_id.as_ref().map_or(0, |d| opt(d.len()))
            + self.server_id.as_ref().map_or(0, |d| opt(d.len()))
            + self.ia_na.iter().map(|ia| opt(ia.data_len())).sum::<usize>()
            + self.ia_pd.iter().map(|ia| opt(ia.data_len())).sum::<usize>()
            + if self.oro.is_empty() { 0 } else { opt(2 * self.oro.len()) }
            + self.preference.map_or(0, |_| opt(1))
            + self.elapsed_time.map_or(0, |_| opt(2))
            + self.status.as_ref().map_or(0, |s| opt(s.data_len()))
            + if self.rapid_commit { opt(0) } else { 0 }
            + if self.reconfigure_accept { opt(0) } else { 0 }
            + if self.dns_servers.is_empty() { 0 } else { opt(16 * self.dns_servers.len()) }
    }

    /// Writes the message into `buf`, which must hold at least
    /// [`Repr::buffer_len`] bytes; returns the length written.
    ///
    /// # Panics
    /// If `buf` is shorter than [`Repr::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        use option_code as c;
        let len = self.buffer_len();
        let mut w = Writer { buf: &mut buf[..len], at: 0 };
        w.put(&[self.msg_type]);
        w.put(&self.transaction_id);
        for (code, duid) in [(c::CLIENTID, &self.client_id), (c::SERVERID, &self.server_id)] {
            if let Some(d) = duid {
                w.option_header(code, d.len());
                w.put(d);
            }
        }
        if !self.oro.is_empty() {
            w.option_header(c::ORO, 2 * self.oro.len());
            for o in &self.oro {
                w.put(&o.to_be_bytes());
            }
        }
        if let Some(t) = self.elapsed_time {
            w.option_header(c::ELAPSED_TIME, 2);
            w.put(&t.to_be_bytes());
        }
        for ia in &self.ia_na {
            ia.emit(&mut w);
        }
        for ia in &self.ia_pd {
            ia.emit(&mut w);
        }
        if let Some(p) = self.preference {
            w.option_header(c::PREFERENCE, 1);
            w.put(&[p]);
        }
        if let Some(s) = &self.status {
            s.emit(&mut w);
        }
        if self.rapid_commit {
            w.option_header(c::RAPID_COMMIT, 0);
        }
        if self.reconfigure_accept {
            w.option_header(c::RECONF_ACCEPT, 0);
        }
        if !self.dns_servers.is_empty() {
            w.option_header(c::DNS_SERVERS, 16 * self.dns_servers.len());
            for a in &self.dns_servers {
                w.put(&a.octets());
            }
        }
        debug_assert_eq!(w.at, len);
        len
    }

    /// The message as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.buffer_len()];
        self.emit(&mut v);
        v
    }
}

/// Writes into a buffer sized beforehand by `buffer_len`.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, b: &[u8]) {
        self.buf[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }

    fn option_header(&mut self, code: u16, len: usize) {
        self.put(&code.to_be_bytes());
        self.put(&(len as u16).to_be_bytes());
    }
}

/// A UDP datagram in an IPv6 packet (fixed header, no extension headers:
/// what a client on a PPP link sends), checked: version, Next Header UDP,
/// lengths that agree, and the checksum (mandatory in IPv6, RFC 8200 §8.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udp6<'a> {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub hop_limit: u8,
    pub payload: &'a [u8],
}

const IPV6_HEADER: Range<usize> = 0..40;
const UDP_HEADER_LEN: usize = 8;
const NEXT_HEADER_UDP: u8 = 17;

impl<'a> Udp6<'a> {
    /// Reads `packet` (bytes past the IPv6 payload length are padding).
    pub fn parse(packet: &'a [u8]) -> Result<Udp6<'a>, Error> {
        let h = packet.get(IPV6_HEADER).ok_or(Error::NotUdp("truncated IPv6 header"))?;
        if h[0] >> 4 != 6 {
            return Err(Error::NotUdp("IPv6 version"));
        }
        if h[6] != NEXT_HEADER_UDP {
            return Err(Error::NotUdp("next header"));
        }
        let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
        let udp = packet.get(40..40 + plen).ok_or(Error::NotUdp("IPv6 payload length"))?;
        if udp.len() < UDP_HEADER_LEN {
            return Err(Error::NotUdp("truncated UDP header"));
        }
        let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        if ulen < UDP_HEADER_LEN || ulen > udp.len() {
            return Err(Error::NotUdp("UDP length"));
        }
        let udp = &udp[..ulen];
        let (src, dst) = (addr(h, 8), addr(h, 24));
        let checksum_field = u16::from_be_bytes([udp[6], udp[7]]);
        if checksum_field == 0
            || checksum::ipv6_upper_layer(src.octets(), dst.octets(), NEXT_HEADER_UDP, udp) != 0
        {
            return Err(Error::NotUdp("UDP checksum"));
        }
        Ok(Udp6 {
            src,
            dst,
            src_port: u16::from_be_bytes([udp[0], udp[1]]),
            dst_port: u16::from_be_bytes([udp[2], udp[3]]),
            hop_limit: h[7],
            payload: &udp[UDP_HEADER_LEN..],
        })
    }

    /// IPv6 and UDP headers (checksum filled in) around `payload`.
    pub fn emit(&self) -> Vec<u8> {
        let ulen = UDP_HEADER_LEN + self.payload.len();
        let mut v = Vec::with_capacity(40 + ulen);
        v.extend_from_slice(&[0x60, 0, 0, 0]);
        v.extend_from_slice(&(ulen as u16).to_be_bytes());
        v.extend_from_slice(&[NEXT_HEADER_UDP, self.hop_limit]);
        v.extend_from_slice(&self.src.octets());
        v.extend_from_slice(&self.dst.octets());
        v.extend_from_slice(&self.src_port.to_be_bytes());
        v.extend_from_slice(&self.dst_port.to_be_bytes());
        v.extend_from_slice(&(ulen as u16).to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(self.payload);
        let c = checksum::udp_field(checksum::ipv6_upper_layer(
            self.src.octets(),
            self.dst.octets(),
            NEXT_HEADER_UDP,
            &v[40..],
        ));
        v[46..48].copy_from_slice(&c.to_be_bytes());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Solicit as dhclient -6 -P sends it: Client Identifier (DUID-LLT),
    /// ORO (DNS servers, domain list), Elapsed Time, IA_PD with a hint.
    #[rustfmt::skip]
    const SOLICIT: &[u8] = &[
        0x01, 0x10, 0x08, 0x74, // Solicit, transaction id 0x100874
        0x00, 0x01, 0x00, 0x0e, // Client Identifier, 14 bytes: DUID-LLT
        0x00, 0x01, 0x00, 0x01, 0x1c, 0x39, 0xcf, 0x88, 0x08, 0x00, 0x27, 0xfe, 0x8f, 0x95,
        0x00, 0x06, 0x00, 0x04, 0x00, 0x17, 0x00, 0x18, // ORO: 23, 24
        0x00, 0x08, 0x00, 0x02, 0x00, 0x00, // Elapsed Time 0
        0x00, 0x19, 0x00, 0x29, // IA_PD, 41 bytes
        0x27, 0xfe, 0x8f, 0x95, 0x00, 0x00, 0x0e, 0x10, 0x00, 0x00, 0x15, 0x18, // IAID, T1 3600, T2 5400
        0x00, 0x1a, 0x00, 0x19, // IA Prefix, 25 bytes
        0x00, 0x00, 0x1c, 0x20, 0x00, 0x00, 0x1d, 0x4c, 0x38, // 7200, 7500, /56
        0x20, 0x01, 0x0d, 0xb8, 0x02, 0x00, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, // 2001:db8:200:100::
    ];

    fn solicit() -> Repr {
        Repr {
            msg_type: message_type::SOLICIT,
            transaction_id: [0x10, 0x08, 0x74],
            client_id: Some(vec![0, 1, 0, 1, 0x1c, 0x39, 0xcf, 0x88, 0x08, 0x00, 0x27, 0xfe, 0x8f, 0x95]),
            oro: vec![23, 24],
            elapsed_time: Some(0),
            ia_pd: vec![Ia {
                iaid: 0x27fe8f95,
                t1: 3600,
                t2: 5400,
                entries: vec![IaPrefix {
                    preferred_lifetime: 7200,
                    valid_lifetime: 7500,
                    prefix_len: 56,
                    prefix: "2001:db8:200:100::".parse().unwrap(),
                    status: None,
                }],
                status: None,
            }],
            ..Repr::default()
        }
    }

    fn reply() -> Repr {
        Repr {
            msg_type: message_type::REPLY,
            transaction_id: [1, 2, 3],
            client_id: Some(vec![0, 3, 0, 1, 2, 3, 4, 5, 6, 7]),
            server_id: Some(vec![0, 2, 0, 0, 0x7f, 0x7f, 1]),
            ia_na: vec![Ia {
                iaid: 1,
                t1: 100,
                t2: 160,
                entries: vec![IaAddress {
                    address: "2001:db8:300::5".parse().unwrap(),
                    preferred_lifetime: 200,
                    valid_lifetime: 300,
                    status: Some(Status::new(status_code::SUCCESS, "ok")),
                }],
                status: None,
            }],
            ia_pd: vec![Ia {
                iaid: 2,
                t1: 0,
                t2: 0,
                entries: vec![],
                status: Some(Status::new(status_code::NO_PREFIX_AVAIL, "none left")),
            }],
            preference: Some(255),
            status: Some(Status::new(status_code::SUCCESS, "")),
            rapid_commit: true,
            reconfigure_accept: true,
            dns_servers: vec!["2001:db8::53".parse().unwrap(), "2001:db8::54".parse().unwrap()],
            ..Repr::default()
        }
    }

    #[test]
    fn parses_a_known_solicit_and_emits_it_back() {
        let r = Repr::parse_bytes(SOLICIT).unwrap();
        assert_eq!(r, solicit());
        assert_eq!(r.buffer_len(), SOLICIT.len());
        assert_eq!(r.to_bytes(), SOLICIT);
    }

    #[test]
    fn round_trips_every_option() {
        let r = reply();
        let b = r.to_bytes();
        assert_eq!(b.len(), r.buffer_len());
        assert_eq!(Repr::parse_bytes(&b), Ok(r));
    }

    #[test]
    fn every_truncation_is_refused_or_a_shorter_message() {
        let full = reply().to_bytes();
        // Option boundaries at the top level: a cut there is a valid
        // message with fewer options; anywhere else it is refused.
        let mut boundaries = vec![4];
        let mut at = 4;
        while at < full.len() {
            at += 4 + usize::from(u16::from_be_bytes([full[at + 2], full[at + 3]]));
            boundaries.push(at);
        }
        for cut in 0..full.len() {
            let r = Repr::parse_bytes(&full[..cut]);
            assert_eq!(r.is_ok(), boundaries.contains(&cut), "cut at {cut}: {r:?}");
        }
    }

    #[test]
    fn refuses_what_does_not_fit_its_format() {
        let with = |opts: &[u8]| {
            let mut m = vec![message_type::SOLICIT, 0, 0, 1];
            m.extend_from_slice(opts);
            Repr::parse_bytes(&m)
        };
        assert_eq!(with(&[0, 8, 0, 1, 0]), Err(Error::Malformed("Elapsed Time")));
        assert_eq!(with(&[0, 1, 0, 1, 7]), Err(Error::Malformed("Client Identifier")));
        assert_eq!(with(&[0, 1, 0, 2, 0, 1, 0, 1, 0, 2, 0, 1]), Err(Error::Malformed("Client Identifier")));
        assert_eq!(with(&[0, 6, 0, 3, 0, 23, 0]), Err(Error::Malformed("Option Request")));
        assert_eq!(with(&[0, 14, 0, 1, 0]), Err(Error::Malformed("Rapid Commit")));
        assert_eq!(with(&[0, 25, 0, 4, 0, 0, 0, 1]), Err(Error::Malformed("IA_PD")));
        // An IA Prefix cut short inside its IA_PD.
        assert_eq!(
            with(&[0, 25, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 26, 0, 0]),
            Err(Error::Malformed("IA Prefix"))
        );
        // An inner option running past its IA.
        assert_eq!(with(&[0, 3, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]), Err(Error::Truncated));
        assert_eq!(with(&[0, 23, 0, 15]).unwrap_err(), Error::Truncated);
        let mut m = [0u8; 15];
        m[3] = 11;
        assert_eq!(
            with(&[&[0, 23, 0, 11][..], &m[..11]].concat()),
            Err(Error::Malformed("DNS Recursive Name Server"))
        );
        // Relay messages are not ours.
        assert_eq!(Repr::parse_bytes(&[12, 0, 0, 0]), Err(Error::Malformed("relay message")));
        // Unknown options are skipped.
        assert_eq!(with(&[0x12, 0x34, 0, 2, 9, 9]).map(|r| r.msg_type), Ok(message_type::SOLICIT));
    }

    #[test]
    fn limits_counts_and_length() {
        let mut r = solicit();
        r.ia_pd = vec![r.ia_pd[0].clone(); MAX_IAS + 1];
        assert_eq!(Repr::parse_bytes(&r.to_bytes()), Err(Error::TooMany("IA_PD")));
        let mut r = solicit();
        r.ia_pd[0].entries = vec![r.ia_pd[0].entries[0].clone(); MAX_IA_ENTRIES + 1];
        assert_eq!(Repr::parse_bytes(&r.to_bytes()), Err(Error::TooMany("IA Prefix")));
        let mut r = solicit();
        r.oro = vec![23; MAX_ORO + 1];
        assert_eq!(Repr::parse_bytes(&r.to_bytes()), Err(Error::TooMany("requested options")));
        let mut big = SOLICIT.to_vec();
        big.extend_from_slice(&[0x12, 0x34, 0x05, 0xa0]);
        big.resize(big.len() + 0x5a0, 0);
        assert_eq!(Repr::parse_bytes(&big), Err(Error::TooLong));
    }

    #[test]
    fn udp6_round_trip_and_checks() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let d = Udp6 { src, dst: ALL_SERVERS, src_port: 546, dst_port: 547, hop_limit: 1, payload: SOLICIT };
        let mut p = d.emit();
        assert_eq!(Udp6::parse(&p), Ok(d.clone()));
        // Padding after the IPv6 payload is ignored.
        p.extend_from_slice(&[0, 0]);
        assert_eq!(Udp6::parse(&p).map(|u| u.payload.len()), Ok(SOLICIT.len()));
        let mut bad = d.emit();
        bad[50] ^= 1;
        assert_eq!(Udp6::parse(&bad), Err(Error::NotUdp("UDP checksum")));
        let good = d.emit();
        for cut in 0..good.len() {
            assert!(Udp6::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut tcp = d.emit();
        tcp[6] = 6;
        assert_eq!(Udp6::parse(&tcp), Err(Error::NotUdp("next header")));
    }
}
