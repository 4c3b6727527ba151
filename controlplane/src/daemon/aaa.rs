//! Who may connect and which address they get: the local users file, the
//! IPv4 pools and the IPv6 prefix pools.
//!
//! Users file (TOML):
//!
//! ```toml
//! [[user]]
//! name = "alice"
//! password = "secret"
//! ipv4 = "198.51.100.200"   # optional fixed address
//! pool = "business"         # optional; else the default pool
//! rate_down = "20M"         # optional rate limits, bits/s with k, M, G
//! rate_up = "5M"            # (else the pool's, else [ppp] rate_down/up)
//! ```
//!
//! Pools (in the main configuration):
//!
//! ```toml
//! [[pool]]
//! name = "default"
//! ranges = ["198.51.100.0/25", "198.51.100.130-198.51.100.140"]
//! rate_down = "2M"              # optional: its subscribers' rate limits
//! rate_up = "512k"
//!
//! [[ipv6_pool]]                 # one /64 per subscriber, announced by RA
//! name = "default"
//! prefix = "2001:db8:100::/40"
//! length = 64
//!
//! [[ipv6_na_pool]]              # DHCPv6 IA_NA addresses, a /128 each
//! name = "na"
//! prefix = "2001:db8:400::/64"
//! ```

use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use serde::Deserialize;

use crate::ppp::{verify_password, AuthDecision, AuthRequest};

#[derive(Debug, thiserror::Error)]
pub enum AaaError {
    #[error("reading users file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("parsing users file {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("bad pool range {0:?}: expected A.B.C.D/LEN or A.B.C.D-E.F.G.H")]
    Range(String),
    #[error("user {user} names pool {pool}, which is not configured")]
    NoSuchPool { user: String, pool: String },
    #[error("user {0} appears twice")]
    Duplicate(String),
    #[error("users file too large: its users take more than 4 GiB")]
    TooLarge,
    #[error("bad IPv6 pool {name:?}: {why}")]
    Ipv6Pool { name: String, why: String },
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub password: String,
    pub ipv4: Option<Ipv4Addr>,
    pub pool: Option<String>,
    pub rate_down: Option<Rate>,
    pub rate_up: Option<Rate>,
}

/// A rate limit in bits per second, written `"2M"`, `"512k"`, `"1.5G"` or
/// as a number (see `lns_radius::rate`); 0 is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub u64);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(Rate(n)),
            Raw::Str(s) => lns_radius::rate::parse_rate(&s).map(Rate).map_err(|_| {
                serde::de::Error::custom(format!(
                    "bad rate {s:?}: bits per second, e.g. \"512k\", \"2M\", \"1.5G\""
                ))
            }),
        }
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default, rename = "user")]
    users: Vec<User>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PoolEntry {
    pub name: String,
    pub ranges: Vec<String>,
    /// Rate limits of the pool's subscribers that have none of their own.
    #[serde(default)]
    pub rate_down: Option<Rate>,
    #[serde(default)]
    pub rate_up: Option<Rate>,
}

impl PoolEntry {
    /// A pool of `ranges` without rate limits.
    pub fn new(name: &str, ranges: &[&str]) -> PoolEntry {
        PoolEntry {
            name: name.into(),
            ranges: ranges.iter().map(|r| r.to_string()).collect(),
            rate_down: None,
            rate_up: None,
        }
    }
}

/// `[[ipv6_pool]]`: `prefix` carved into prefixes of `length` bits.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Ipv6PoolEntry {
    pub name: String,
    /// `2001:db8:100::/40`
    pub prefix: String,
    /// Length of each subscriber's prefix (64 for SLAAC).
    #[serde(default = "default_ipv6_length")]
    pub length: u8,
}

fn default_ipv6_length() -> u8 {
    64
}

/// `[[ipv6_na_pool]]`: addresses for DHCPv6 IA_NA, one /128 each, from
/// `prefix`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Ipv6NaPoolEntry {
    pub name: String,
    /// `2001:db8:400::/64`
    pub prefix: String,
}

impl Ipv6NaPoolEntry {
    /// As a pool of the IPv6 allocator: prefixes of 128 bits.
    pub fn entry(&self) -> Ipv6PoolEntry {
        Ipv6PoolEntry { name: self.name.clone(), prefix: self.prefix.clone(), length: 128 }
    }
}

/// What an authentication backend says about a subscriber.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub decision: AuthDecision,
    /// A fixed address for the subscriber (RADIUS Framed-IP-Address).
    pub ipv4: Option<Ipv4Addr>,
    /// The pool to draw the address from (RADIUS Framed-Pool).
    pub pool: Option<String>,
    /// The subscriber's SLAAC prefix, announced by Router Advertisement
    /// over PPP (RADIUS Framed-IPv6-Prefix).
    pub ipv6_prefix: Option<(Ipv6Addr, u8)>,
    /// The pool to draw that prefix from (RADIUS Framed-IPv6-Pool).
    pub ipv6_pool: Option<String>,
    /// A prefix delegated to the subscriber's router (RADIUS
    /// Delegated-IPv6-Prefix, RFC 4818).
    pub delegated_prefix: Option<(Ipv6Addr, u8)>,
    /// DNS servers for IPCP (RADIUS MS-Primary/Secondary-DNS-Server).
    pub dns: Vec<Ipv4Addr>,
    /// DNS servers for DHCPv6 (RADIUS DNS-Server-IPv6-Address, RFC
    /// 6911); the configured ones when empty.
    pub dns_ipv6: Vec<Ipv6Addr>,
    /// Overrides of the configured timeouts (RADIUS Session-Timeout,
    /// Idle-Timeout).
    pub session_timeout: Option<std::time::Duration>,
    pub idle_timeout: Option<std::time::Duration>,
    /// RADIUS Acct-Interim-Interval.
    pub interim_interval: Option<std::time::Duration>,
    /// RADIUS Class attributes, echoed in every Accounting-Request.
    pub class: Vec<Vec<u8>>,
    /// Rate limits (users file `rate_down`/`rate_up`, RADIUS
    /// WISPr-Bandwidth-Max-Down/Up or the configured text attribute).
    pub rates: lns_radius::rate::RateLimits,
}

impl Authorization {
    pub fn accept() -> Authorization {
        Authorization {
            decision: AuthDecision::accept(),
            ipv4: None,
            pool: None,
            ipv6_prefix: None,
            ipv6_pool: None,
            delegated_prefix: None,
            dns: Vec::new(),
            dns_ipv6: Vec::new(),
            session_timeout: None,
            idle_timeout: None,
            interim_interval: None,
            class: Vec::new(),
            rates: Default::default(),
        }
    }

    pub fn reject(message: &str) -> Authorization {
        Authorization { decision: AuthDecision::reject(message), ..Authorization::accept() }
    }
}

/// What the LNS knows of the call being authenticated, for a backend that
/// reports it (RADIUS NAS-Port, Calling-Station-Id, Tunnel-* ...).
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub tunnel_id: u16,
    pub session_id: u16,
    /// The LAC's address and port, and ours, on this tunnel.
    pub lac: std::net::SocketAddr,
    pub local: std::net::SocketAddr,
    /// The LAC's Host Name AVP (SCCRQ).
    pub lac_hostname: Vec<u8>,
    /// What the LAC said of the call (ICRQ/ICCN AVPs).
    pub info: crate::l2tp::SessionInfo,
}

/// A credential backend. The loop never waits for it: each request runs as
/// a task, and the answer comes back to the loop when it is ready, so a
/// backend that asks a server (RADIUS) stalls no other session.
pub trait AuthBackend: Send + Sync + 'static {
    fn authenticate(
        &self,
        request: AuthRequest,
        context: AuthContext,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Authorization> + Send + 'static>>;
}

impl AuthBackend for LocalUsers {
    fn authenticate(
        &self,
        request: AuthRequest,
        _context: AuthContext,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Authorization> + Send + 'static>> {
        let (decision, user) = self.check(&request);
        let a = Authorization {
            decision,
            ipv4: user.as_ref().and_then(|u| u.ipv4),
            rates: lns_radius::rate::RateLimits {
                down: user.as_ref().and_then(|u| u.rate_down).map(|r| r.0),
                up: user.as_ref().and_then(|u| u.rate_up).map(|r| r.0),
            },
            pool: user.and_then(|u| u.pool),
            ..Authorization::accept()
        };
        Box::pin(std::future::ready(a))
    }
}

/// The users file as the loop and the backends share it: replaced whole
/// on reload, while authentications already asked finish with the one
/// they started with.
#[derive(Debug, Default)]
pub struct SharedUsers(std::sync::RwLock<std::sync::Arc<LocalUsers>>);

impl SharedUsers {
    pub fn new(users: LocalUsers) -> Self {
        SharedUsers(std::sync::RwLock::new(std::sync::Arc::new(users)))
    }

    pub fn current(&self) -> std::sync::Arc<LocalUsers> {
        // A writer that panicked left a whole Arc behind: still usable.
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, users: LocalUsers) {
        let users = std::sync::Arc::new(users);
        match self.0.write() {
            Ok(mut g) => *g = users,
            Err(poisoned) => *poisoned.into_inner() = users,
        }
    }
}

impl AuthBackend for SharedUsers {
    fn authenticate(
        &self,
        request: AuthRequest,
        context: AuthContext,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Authorization> + Send + 'static>> {
        self.current().authenticate(request, context)
    }
}

/// The embedded credential backend: a TOML file of users, held compactly
/// because a carrier's file names a million of them: each user is one
/// record in a single byte arena (name, password, then only the options it
/// has), found through a hash table of record offsets, so no name is kept
/// twice and no user costs an allocation of its own.
#[derive(Default)]
pub struct LocalUsers {
    records: Vec<u8>,
    /// Offsets of the records in `records`, by the hash of the name.
    index: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
}

impl std::fmt::Debug for LocalUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalUsers").field("users", &self.index.len()).finish()
    }
}

/// The TOML parser builds a tree of the whole text it is given, well over
/// a KiB per user: the file is parsed in pieces of about this many bytes,
/// each cut before a `[[user]]` header, and each tree is dropped before
/// the next piece is read.
const PIECE_BYTES: usize = 64 << 10;

// Which options a record holds after its name and password.
const HAS_IPV4: u8 = 1;
const HAS_POOL: u8 = 2;
const HAS_RATE_DOWN: u8 = 4;
const HAS_RATE_UP: u8 = 8;

/// One user's record in the arena, read in place.
struct Record<'a> {
    name: &'a str,
    password: &'a str,
    ipv4: Option<Ipv4Addr>,
    pool: Option<&'a str>,
    rate_down: Option<Rate>,
    rate_up: Option<Rate>,
}

impl Record<'_> {
    fn to_user(&self) -> User {
        User {
            name: self.name.to_owned(),
            password: self.password.to_owned(),
            ipv4: self.ipv4,
            pool: self.pool.map(str::to_owned),
            rate_down: self.rate_down,
            rate_up: self.rate_up,
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // LEB128 length, then the bytes.
    let mut n = b.len();
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(b);
}

/// The arena is only written by `LocalUsers::insert`, from strings, so
/// what is read back is whole and UTF-8 (an arena that were not would
/// read as empty fields, not panic).
fn get_bytes<'a>(records: &'a [u8], at: &mut usize) -> &'a [u8] {
    let mut n = 0usize;
    let mut shift = 0;
    while let Some(&b) = records.get(*at) {
        *at += 1;
        n |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    let b = records.get(*at..*at + n).unwrap_or_default();
    *at += n;
    b
}

fn get_str<'a>(records: &'a [u8], at: &mut usize) -> &'a str {
    std::str::from_utf8(get_bytes(records, at)).unwrap_or_default()
}

fn get_array<const N: usize>(records: &[u8], at: &mut usize) -> [u8; N] {
    let a = records.get(*at..*at + N).and_then(|b| b.try_into().ok()).unwrap_or([0; N]);
    *at += N;
    a
}

fn name_at(records: &[u8], off: u32) -> &[u8] {
    get_bytes(records, &mut (off as usize))
}

/// Reads the record at `*at` and moves `*at` past it.
fn record_at<'a>(records: &'a [u8], at: &mut usize) -> Record<'a> {
    let name = get_str(records, at);
    let password = get_str(records, at);
    let flags = records.get(*at).copied().unwrap_or(0);
    *at += 1;
    let ipv4 = (flags & HAS_IPV4 != 0).then(|| Ipv4Addr::from(get_array::<4>(records, at)));
    let rate_down = (flags & HAS_RATE_DOWN != 0).then(|| Rate(u64::from_le_bytes(get_array(records, at))));
    let rate_up = (flags & HAS_RATE_UP != 0).then(|| Rate(u64::from_le_bytes(get_array(records, at))));
    let pool = (flags & HAS_POOL != 0).then(|| get_str(records, at));
    Record { name, password, ipv4, pool, rate_down, rate_up }
}

/// Where the `[[user]]` headers are: a line that is one, outside a
/// multi-line string. The file is cut only there; a cut this got wrong
/// (it does not parse TOML fully) would leave a piece with an unclosed
/// string, which is an error, never a different reading.
#[derive(Default)]
struct Headers {
    /// The delimiter of the multi-line string the last line left open.
    open: Option<&'static [u8]>,
}

impl Headers {
    /// Whether `line` is a `[[user]]` header; then takes note of the
    /// strings it opens or closes.
    fn is_user_header(&mut self, line: &str) -> bool {
        let header = self.open.is_none()
            && line.trim_start().strip_prefix("[[user]]").is_some_and(|rest| {
                let rest = rest.trim_start();
                rest.is_empty() || rest.starts_with('#')
            });
        self.scan(line.as_bytes());
        header
    }

    fn scan(&mut self, b: &[u8]) {
        let mut i = 0;
        while i < b.len() {
            match self.open {
                Some(delim) => {
                    if delim == b"\"\"\"" && b[i] == b'\\' {
                        i += 2;
                    } else if b[i..].starts_with(delim) {
                        self.open = None;
                        i += 3;
                    } else {
                        i += 1;
                    }
                }
                None => match b[i] {
                    b'#' => return,
                    q @ (b'"' | b'\'') => {
                        if b[i..].starts_with(&[q, q, q]) {
                            self.open = Some(if q == b'"' { b"\"\"\"" } else { b"'''" });
                            i += 3;
                        } else {
                            // A one-line string: it ends on this line.
                            i += 1;
                            while i < b.len() && b[i] != q {
                                i += if q == b'"' && b[i] == b'\\' { 2 } else { 1 };
                            }
                            i += 1;
                        }
                    }
                    _ => i += 1,
                },
            }
        }
    }
}

impl LocalUsers {
    pub fn load(path: &Path) -> Result<LocalUsers, AaaError> {
        let p = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| AaaError::Read { path: p.clone(), source })?;
        LocalUsers::read(std::io::BufReader::new(file), PIECE_BYTES).map_err(|e| match e {
            AaaError::Read { source, .. } => AaaError::Read { path: p.clone(), source },
            AaaError::Parse { source, .. } => AaaError::Parse { path: p, source },
            e => e,
        })
    }

    pub fn parse(text: &str) -> Result<LocalUsers, AaaError> {
        LocalUsers::read(text.as_bytes(), PIECE_BYTES)
    }

    /// Reads the file a line at a time and parses it in pieces (see
    /// [`PIECE_BYTES`]): neither the whole text nor its whole TOML tree
    /// is ever held. A piece holds whole `[[user]]` tables, and the first
    /// one also what comes before the first header, so each reads as the
    /// whole file would; an error is reported at its line in the file.
    fn read(mut input: impl std::io::BufRead, piece_bytes: usize) -> Result<LocalUsers, AaaError> {
        let mut users = LocalUsers::default();
        let mut headers = Headers::default();
        let mut piece = String::new();
        let mut piece_line = 0; // lines of the file before the piece
        let mut piece_headers = 0;
        let mut lines = 0;
        let mut line = String::new();
        let mut duplicate = None;
        loop {
            line.clear();
            let n = input
                .read_line(&mut line)
                .map_err(|source| AaaError::Read { path: String::new(), source })?;
            if n == 0 {
                break;
            }
            let header = headers.is_user_header(&line);
            if header && piece_headers > 0 && piece.len() >= piece_bytes {
                users.add_piece(&piece, piece_line, &mut duplicate)?;
                piece.clear();
                piece_line = lines;
                piece_headers = 0;
            }
            piece.push_str(&line);
            piece_headers += usize::from(header);
            lines += 1;
        }
        users.add_piece(&piece, piece_line, &mut duplicate)?;
        if let Some(name) = duplicate {
            return Err(AaaError::Duplicate(name));
        }
        users.records.shrink_to_fit();
        Ok(users)
    }

    /// The users of one piece of the file that starts after `first_line`
    /// lines; the first name seen twice goes to `duplicate` (reported once
    /// the whole file has parsed, as when it was parsed at once).
    fn add_piece(
        &mut self,
        piece: &str,
        first_line: usize,
        duplicate: &mut Option<String>,
    ) -> Result<(), AaaError> {
        let f: UsersFile = match toml::from_str(piece) {
            Ok(f) => f,
            Err(e) => {
                // Again behind as many empty lines as the file has before
                // it, for the error to name its line in the file.
                let mut padded = "\n".repeat(first_line);
                padded.push_str(piece);
                let source = toml::from_str::<UsersFile>(&padded).err().unwrap_or(e);
                return Err(AaaError::Parse { path: String::new(), source });
            }
        };
        for u in &f.users {
            if !self.insert(u)? && duplicate.is_none() {
                *duplicate = Some(u.name.clone());
            }
        }
        Ok(())
    }

    /// Adds `u` unless its name is there already (false).
    fn insert(&mut self, u: &User) -> Result<bool, AaaError> {
        let LocalUsers { records, index, hasher } = self;
        let name = u.name.as_bytes();
        let hash = hasher.hash_one(name);
        if index.find(hash, |&off| name_at(records, off) == name).is_some() {
            return Ok(false);
        }
        let off = u32::try_from(records.len()).map_err(|_| AaaError::TooLarge)?;
        put_bytes(records, name);
        put_bytes(records, u.password.as_bytes());
        let mut flags = 0;
        for (has, bit) in [
            (u.ipv4.is_some(), HAS_IPV4),
            (u.pool.is_some(), HAS_POOL),
            (u.rate_down.is_some(), HAS_RATE_DOWN),
            (u.rate_up.is_some(), HAS_RATE_UP),
        ] {
            if has {
                flags |= bit;
            }
        }
        records.push(flags);
        if let Some(a) = u.ipv4 {
            records.extend_from_slice(&a.octets());
        }
        for r in [u.rate_down, u.rate_up].into_iter().flatten() {
            records.extend_from_slice(&r.0.to_le_bytes());
        }
        if let Some(p) = &u.pool {
            put_bytes(records, p.as_bytes());
        }
        index.insert_unique(hash, off, |&o| hasher.hash_one(name_at(records, o)));
        Ok(true)
    }

    /// Unknown users and wrong passwords get the same answer, so the
    /// reply does not tell which user names exist.
    pub fn check(&self, request: &AuthRequest) -> (AuthDecision, Option<User>) {
        let hash = self.hasher.hash_one(request.username.as_slice());
        match self.index.find(hash, |&off| name_at(&self.records, off) == request.username) {
            Some(&off) => {
                let u = record_at(&self.records, &mut (off as usize));
                let d = verify_password(request, u.password);
                let accepted = d.accept;
                (d, accepted.then(|| u.to_user()))
            }
            None => (AuthDecision::reject("Authentication failed"), None),
        }
    }

    /// How many users the file names.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The users, in the file's order (each read out of the arena).
    pub fn users(&self) -> impl Iterator<Item = User> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            (at < self.records.len()).then(|| record_at(&self.records, &mut at).to_user())
        })
    }
}

/// `a.b.c.d/len` (without network and broadcast addresses for len < 31)
/// or `a.b.c.d-e.f.g.h`, as an inclusive range of u32.
fn parse_range(s: &str) -> Result<(u32, u32), AaaError> {
    let bad = || AaaError::Range(s.to_string());
    if let Some((a, len)) = s.split_once('/') {
        let a: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
        let len: u32 = len.trim().parse().map_err(|_| bad())?;
        if len > 32 {
            return Err(bad());
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let first = u32::from(a) & mask;
        let last = first | !mask;
        return Ok(if len < 31 { (first + 1, last - 1) } else { (first, last) });
    }
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
    let b: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
    if u32::from(a) > u32::from(b) {
        return Err(bad());
    }
    Ok((a.into(), b.into()))
}

#[derive(Debug)]
struct Pool {
    ranges: Vec<(u32, u32)>,
    /// Where the next search starts, so a just-released address is not
    /// handed out again at once.
    cursor: u32,
    /// Addresses of the pool and how many are in use: an exhausted pool
    /// answers at once instead of searching all of it for every subscriber
    /// (IPv6 subscribers keep asking when the IPv4 pool is long gone).
    size: u64,
    used: u64,
}

impl Pool {
    fn contains(&self, a: u32) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= a && a <= hi)
    }
}

/// Named IPv4 pools and every address in use (from a pool or fixed), so
/// that no address is ever given to two sessions.
#[derive(Debug, Default)]
pub struct Pools {
    pools: BTreeMap<String, Pool>,
    in_use: HashSet<u32>,
}

impl Pools {
    pub fn new(entries: &[PoolEntry]) -> Result<Pools, AaaError> {
        let mut pools = BTreeMap::new();
        for e in entries {
            let ranges = e.ranges.iter().map(|r| parse_range(r)).collect::<Result<Vec<_>, _>>()?;
            let cursor = ranges.first().map(|r| r.0).unwrap_or(0);
            let size = ranges.iter().map(|&(lo, hi)| u64::from(hi - lo) + 1).sum();
            pools.insert(e.name.clone(), Pool { ranges, cursor, size, used: 0 });
        }
        Ok(Pools { pools, in_use: HashSet::new() })
    }

    pub fn has(&self, name: &str) -> bool {
        self.pools.contains_key(name)
    }

    /// A free address of pool `name`.
    pub fn allocate(&mut self, name: &str) -> Option<Ipv4Addr> {
        let pool = self.pools.get_mut(name)?;
        if pool.used >= pool.size {
            return None;
        }
        let total = pool.size;
        // Walk the ranges in order from the cursor, wrapping once.
        let mut candidates = pool
            .ranges
            .iter()
            .flat_map(|&(lo, hi)| lo..=hi)
            .skip_while(|a| *a < pool.cursor)
            .chain(pool.ranges.iter().flat_map(|&(lo, hi)| lo..=hi))
            .take(usize::try_from(total).unwrap_or(usize::MAX));
        let a = candidates.find(|a| !self.in_use.contains(a))?;
        pool.cursor = a.wrapping_add(1);
        self.take(a);
        Some(Ipv4Addr::from(a))
    }

    /// Marks `a` used, in every pool it belongs to; false if it was.
    fn take(&mut self, a: u32) -> bool {
        if !self.in_use.insert(a) {
            return false;
        }
        for p in self.pools.values_mut().filter(|p| p.contains(a)) {
            p.used += 1;
        }
        true
    }

    /// Takes a fixed address; false if someone has it.
    pub fn reserve(&mut self, a: Ipv4Addr) -> bool {
        self.take(a.into())
    }

    pub fn release(&mut self, a: Ipv4Addr) {
        let a = u32::from(a);
        if self.in_use.remove(&a) {
            for p in self.pools.values_mut().filter(|p| p.contains(a)) {
                p.used = p.used.saturating_sub(1);
            }
        }
    }

    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }

    /// Each pool's name, addresses in use and addresses in all.
    pub fn usage(&self) -> Vec<(String, u64, u64)> {
        self.pools.iter().map(|(n, p)| (n.clone(), p.used, p.size)).collect()
    }

    /// Is `a` inside any pool (for reports)?
    pub fn pool_of(&self, a: Ipv4Addr) -> Option<&str> {
        self.pools.iter().find(|(_, p)| p.contains(a.into())).map(|(n, _)| n.as_str())
    }
}

#[derive(Debug)]
struct Ipv6Pool {
    /// The pool's prefix, as a number, and its length.
    base: u128,
    base_len: u8,
    /// Length of what it hands out.
    length: u8,
    /// Prefixes it holds: 2^(length - base_len).
    size: u128,
    /// Handed out now.
    used: u128,
    /// Index of the next prefix to try, so that a just-released prefix is
    /// not handed out again at once.
    cursor: u128,
}

impl Ipv6Pool {
    fn nth(&self, i: u128) -> u128 {
        self.base | (i << (128 - u32::from(self.length)))
    }

    fn contains(&self, p: u128, len: u8) -> bool {
        len == self.length && mask(p, self.base_len) == self.base
    }
}

/// `a` with the bits past `len` cleared.
pub fn mask(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(len.min(128))))
    }
}

/// Named IPv6 prefix pools and every prefix in use (from a pool or fixed,
/// e.g. RADIUS Framed-IPv6-Prefix), so that no prefix is given twice.
#[derive(Debug, Default)]
pub struct Ipv6Pools {
    pools: BTreeMap<String, Ipv6Pool>,
    in_use: HashSet<(u128, u8)>,
}

impl Ipv6Pools {
    pub fn new(entries: &[Ipv6PoolEntry]) -> Result<Ipv6Pools, AaaError> {
        let mut pools = BTreeMap::new();
        for e in entries {
            let bad = |why: &str| AaaError::Ipv6Pool { name: e.name.clone(), why: why.to_string() };
            let (a, l) = e.prefix.split_once('/').ok_or_else(|| bad("prefix must be ADDRESS/LEN"))?;
            let a: Ipv6Addr = a.trim().parse().map_err(|_| bad("prefix address is not IPv6"))?;
            let base_len: u8 = l.trim().parse().map_err(|_| bad("prefix length is not a number"))?;
            if base_len > 128 || e.length > 128 || e.length < base_len {
                return Err(bad("need prefix length <= length <= 128"));
            }
            // A pool of more than 2^32 prefixes is as good as infinite, and
            // keeps `size` exact.
            let bits = u32::from(e.length - base_len).min(32);
            let base = u128::from(a);
            if mask(base, base_len) != base {
                return Err(bad("host bits set after the prefix length"));
            }
            let pool = Ipv6Pool { base, base_len, length: e.length, size: 1 << bits, used: 0, cursor: 0 };
            if pools.insert(e.name.clone(), pool).is_some() {
                return Err(bad("defined twice"));
            }
        }
        Ok(Ipv6Pools { pools, in_use: HashSet::new() })
    }

    pub fn has(&self, name: &str) -> bool {
        self.pools.contains_key(name)
    }

    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// A free prefix of pool `name`; None when the pool is exhausted or
    /// unknown.
    pub fn allocate(&mut self, name: &str) -> Option<(Ipv6Addr, u8)> {
        let pool = self.pools.get_mut(name)?;
        if pool.used >= pool.size {
            return None;
        }
        // Some prefix is free (fixed ones inside the pool count as used),
        // so the walk ends within `size` steps.
        for _ in 0..pool.size {
            let i = pool.cursor;
            pool.cursor = (pool.cursor + 1) % pool.size;
            if i == 0 && pool.length == 128 && pool.base_len < 127 {
                // A pool of addresses (IA_NA) never gives its first: the
                // Subnet-Router anycast address (RFC 4291 §2.6.1).
                continue;
            }
            let p = pool.nth(i);
            if self.in_use.insert((p, pool.length)) {
                pool.used += 1;
                return Some((Ipv6Addr::from(p), pool.length));
            }
        }
        None
    }

    /// Takes a fixed prefix; false if someone has it.
    pub fn reserve(&mut self, prefix: Ipv6Addr, len: u8) -> bool {
        let p = mask(u128::from(prefix), len);
        if !self.in_use.insert((p, len)) {
            return false;
        }
        if let Some(pool) = self.pools.values_mut().find(|pool| pool.contains(p, len)) {
            pool.used += 1;
        }
        true
    }

    pub fn release(&mut self, prefix: Ipv6Addr, len: u8) {
        let p = mask(u128::from(prefix), len);
        if self.in_use.remove(&(p, len)) {
            if let Some(pool) = self.pools.values_mut().find(|pool| pool.contains(p, len)) {
                pool.used = pool.used.saturating_sub(1);
            }
        }
    }

    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }

    /// Each pool's name, prefixes in use and prefixes in all (a pool of
    /// more than 2^32 counts as 2^32).
    pub fn usage(&self) -> Vec<(String, u64, u64)> {
        let n = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
        self.pools.iter().map(|(name, p)| (name.clone(), n(p.used), n(p.size))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().expect("IPv6")
    }

    fn v6_pools() -> Ipv6Pools {
        Ipv6Pools::new(&[
            Ipv6PoolEntry { name: "default".into(), prefix: "2001:db8:100::/40".into(), length: 64 },
            Ipv6PoolEntry { name: "tiny".into(), prefix: "2001:db8:200::/62".into(), length: 64 },
        ])
        .expect("pools")
    }

    #[test]
    fn ipv6_prefixes_are_carved_and_never_given_twice() {
        let mut p = v6_pools();
        let got: Vec<_> = std::iter::from_fn(|| p.allocate("tiny")).collect();
        assert_eq!(
            got,
            ["2001:db8:200::", "2001:db8:200:1::", "2001:db8:200:2::", "2001:db8:200:3::"]
                .map(|s| (v6(s), 64))
        );
        assert_eq!(p.allocate("tiny"), None, "exhausted");
        assert_eq!(p.in_use(), 4);
        p.release(v6("2001:db8:200:2::"), 64);
        assert_eq!(p.allocate("tiny"), Some((v6("2001:db8:200:2::"), 64)));
        assert_eq!(p.allocate("tiny"), None);
        // A /40 in /64s.
        assert_eq!(p.allocate("default"), Some((v6("2001:db8:100::"), 64)));
        assert_eq!(p.allocate("default"), Some((v6("2001:db8:100:1::"), 64)));
        assert_eq!(p.allocate("nope"), None);
        // Releasing twice, or what was never given, changes nothing.
        p.release(v6("2001:db8:100::"), 64);
        p.release(v6("2001:db8:100::"), 64);
        p.release(v6("2001:db8:999::"), 64);
        assert_eq!(p.in_use(), 5);
    }

    #[test]
    fn fixed_ipv6_prefixes_are_not_handed_out_twice() {
        let mut p = v6_pools();
        // A fixed prefix inside a pool is skipped by the pool.
        assert!(p.reserve(v6("2001:db8:200::"), 64));
        assert!(!p.reserve(v6("2001:db8:200::"), 64));
        assert_eq!(p.allocate("tiny"), Some((v6("2001:db8:200:1::"), 64)));
        assert_eq!(p.allocate("tiny").map(|x| x.0), Some(v6("2001:db8:200:2::")));
        assert_eq!(p.allocate("tiny").map(|x| x.0), Some(v6("2001:db8:200:3::")));
        assert_eq!(p.allocate("tiny"), None, "the fixed one counts as used");
        p.release(v6("2001:db8:200::"), 64);
        assert_eq!(p.allocate("tiny"), Some((v6("2001:db8:200::"), 64)));
        // Outside every pool: fine, once.
        assert!(p.reserve(v6("2001:db8:abc:1::"), 64));
        assert!(!p.reserve(v6("2001:db8:abc:1::"), 64));
        assert_eq!(p.in_use(), 5);
    }

    #[test]
    fn bad_ipv6_pools() {
        for (prefix, length) in [
            ("2001:db8:100::/40", 39),
            ("2001:db8:100::/129", 130),
            ("2001:db8:100::1/40", 64),
            ("198.51.100.0/24", 64),
            ("2001:db8::", 64),
        ] {
            let e = Ipv6PoolEntry { name: "p".into(), prefix: prefix.into(), length };
            assert!(Ipv6Pools::new(&[e]).is_err(), "{prefix} {length}");
        }
    }

    fn pools() -> Pools {
        Pools::new(&[
            PoolEntry::new("a", &["198.51.100.0/30"]),
            PoolEntry::new("b", &["203.0.113.5-203.0.113.6", "203.0.113.9/32"]),
        ])
        .expect("pools")
    }

    #[tokio::test]
    async fn local_users_answer_through_the_backend_trait() {
        let users = LocalUsers::parse(
            "[[user]]\nname = \"bob\"\npassword = \"builder\"\nipv4 = \"198.51.100.200\"\npool = \"b\"\n",
        )
        .expect("users");
        let backend: std::sync::Arc<dyn AuthBackend> = std::sync::Arc::new(users);
        let pap = |user: &str, pw: &str| AuthRequest {
            method: crate::ppp::auth::AuthMethod::Pap,
            username: user.as_bytes().to_vec(),
            material: crate::ppp::auth::AuthMaterial::Pap { password: pw.as_bytes().to_vec() },
            proxied: false,
        };
        let context = || AuthContext {
            tunnel_id: 1,
            session_id: 2,
            lac: "192.0.2.2:1701".parse().expect("addr"),
            local: "192.0.2.1:1701".parse().expect("addr"),
            lac_hostname: b"lac".to_vec(),
            info: Default::default(),
        };
        let ok = backend.authenticate(pap("bob", "builder"), context()).await;
        assert!(ok.decision.accept);
        assert_eq!(ok.ipv4, Some(Ipv4Addr::new(198, 51, 100, 200)));
        assert_eq!(ok.pool.as_deref(), Some("b"));
        for (u, p) in [("bob", "guess"), ("eve", "builder")] {
            let no = backend.authenticate(pap(u, p), context()).await;
            assert!(!no.decision.accept);
            assert_eq!((no.ipv4, no.pool), (None, None), "nothing about a user leaks on reject");
        }
    }

    #[test]
    fn no_double_allocation_and_release() {
        let mut p = pools();
        // /30: network and broadcast excluded.
        let x = p.allocate("a").expect("first");
        let y = p.allocate("a").expect("second");
        assert_eq!((x, y), (Ipv4Addr::new(198, 51, 100, 1), Ipv4Addr::new(198, 51, 100, 2)));
        assert_eq!(p.allocate("a"), None, "exhausted");
        p.release(x);
        assert_eq!(p.allocate("a"), Some(x));
        let b: Vec<_> = std::iter::from_fn(|| p.allocate("b")).collect();
        assert_eq!(
            b,
            ["203.0.113.5", "203.0.113.6", "203.0.113.9"].map(|s| s.parse::<Ipv4Addr>().expect("ip"))
        );
        assert_eq!(p.allocate("nope"), None);
        assert_eq!(p.pool_of(Ipv4Addr::new(203, 0, 113, 6)), Some("b"));
    }

    #[test]
    fn fixed_addresses_are_not_handed_out_twice() {
        let mut p = pools();
        assert!(p.reserve(Ipv4Addr::new(198, 51, 100, 1)));
        assert!(!p.reserve(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!(p.allocate("a"), Some(Ipv4Addr::new(198, 51, 100, 2)));
        assert_eq!(p.allocate("a"), None);
    }

    #[test]
    fn fixed_addresses_count_against_their_pool() {
        let mut p = pools();
        let fixed = Ipv4Addr::new(198, 51, 100, 2);
        assert!(p.reserve(fixed));
        assert_eq!(p.allocate("a"), Some(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!(p.allocate("a"), None, "exhausted by a fixed and a pooled address");
        p.release(fixed);
        p.release(fixed);
        assert_eq!(p.allocate("a"), Some(fixed));
        assert_eq!(p.allocate("a"), None, "a double release frees nothing more");
        assert_eq!(p.in_use(), 2);
    }

    #[test]
    fn bad_ranges() {
        for r in ["198.51.100.0/33", "1.2.3.4-1.2.3.1", "x", "1.2.3.4"] {
            assert!(Pools::new(&[PoolEntry::new("p", &[r])]).is_err(), "{r}");
        }
    }

    #[test]
    fn users_file() {
        let u = LocalUsers::parse(
            "[[user]]\nname = \"alice\"\npassword = \"pw\"\nipv4 = \"198.51.100.200\"\n\
             [[user]]\nname = \"bob\"\npassword = \"pw2\"\npool = \"b\"\n",
        )
        .expect("parse");
        assert_eq!(u.users().count(), 2);
        assert!(LocalUsers::parse(
            "[[user]]\nname = \"a\"\npassword = \"p\"\n[[user]]\nname = \"a\"\npassword = \"q\"\n"
        )
        .is_err());
        assert!(LocalUsers::parse("[[user]]\nname = \"a\"\n").is_err(), "password required");
    }

    #[test]
    fn users_rates_in_bits_per_second() {
        let u = LocalUsers::parse(
            "[[user]]\nname = \"carol\"\npassword = \"pw\"\nrate_down = \"2M\"\nrate_up = \"512k\"\n",
        )
        .expect("parse");
        let carol = u.users().next().expect("carol");
        assert_eq!((carol.rate_down, carol.rate_up), (Some(Rate(2_000_000)), Some(Rate(512_000))));
        let bad = LocalUsers::parse("[[user]]\nname = \"d\"\npassword = \"p\"\nrate_down = \"fast\"\n");
        assert!(bad.is_err_and(|e| e.to_string().contains("bad rate")));
    }

    fn pap(user: &str, pw: &str) -> AuthRequest {
        AuthRequest {
            method: crate::ppp::auth::AuthMethod::Pap,
            username: user.as_bytes().to_vec(),
            material: crate::ppp::auth::AuthMaterial::Pap { password: pw.as_bytes().to_vec() },
            proxied: false,
        }
    }

    /// `n` users as lns-testlab writes them: several pieces' worth.
    fn many_users(n: u32) -> String {
        named("user", n)
    }

    /// `n` users named `{prefix}1` to `{prefix}n`.
    fn named(prefix: &str, n: u32) -> String {
        (1..=n).map(|i| format!("[[user]]\nname = \"{prefix}{i}\"\npassword = \"pw{i}\"\n")).collect()
    }

    /// Parsed as `parse` does, but cut at every header after the first.
    fn parse_cut(text: &str) -> Result<LocalUsers, AaaError> {
        LocalUsers::read(text.as_bytes(), 1)
    }

    /// A file of several pieces: every user is found with its own
    /// password, in the file's order, and no other name or password is.
    #[test]
    fn every_user_of_a_large_file_is_found() {
        let text = many_users(10_000);
        assert!(text.len() > 4 * PIECE_BYTES, "several pieces");
        let u = LocalUsers::parse(&text).expect("parse");
        assert_eq!(u.len(), 10_000);
        for i in [1, 2, 1234, 5000, 9999, 10_000] {
            let (d, user) = u.check(&pap(&format!("user{i}"), &format!("pw{i}")));
            assert!(d.accept, "user{i}");
            assert_eq!(user.map(|u| u.name), Some(format!("user{i}")));
            assert!(!u.check(&pap(&format!("user{i}"), &format!("pw{}", i + 1))).0.accept);
        }
        for name in ["user0", "user10001", "", "user1 "] {
            assert!(!u.check(&pap(name, "pw1")).0.accept, "{name:?}");
        }
        let names: Vec<String> = u.users().take(3).map(|u| u.name).collect();
        assert_eq!(names, ["user1", "user2", "user3"]);
    }

    /// Each option a user may have comes back as written, alone or with
    /// the others, among users that have none.
    #[test]
    fn users_keep_their_options() {
        let mut text = many_users(3000);
        text.push_str(
            "[[user]] # all of them\nname = \"dora\"\npassword = \"pw\"\nipv4 = \"198.51.100.7\"\n\
             pool = \"business\"\nrate_down = \"20M\"\nrate_up = 5000000\n\
             [[user]]\nname = \"émile\"\npassword = \"mot de passe\"\nrate_up = \"1k\"\n",
        );
        text.push_str(&named("late", 3000));
        let u = parse_cut(&text).expect("parse");
        assert_eq!(u.len(), 6002);
        let (d, dora) = u.check(&pap("dora", "pw"));
        assert!(d.accept);
        let dora = dora.expect("dora");
        assert_eq!(dora.ipv4, Some(Ipv4Addr::new(198, 51, 100, 7)));
        assert_eq!(dora.pool.as_deref(), Some("business"));
        assert_eq!((dora.rate_down, dora.rate_up), (Some(Rate(20_000_000)), Some(Rate(5_000_000))));
        let emile = u.check(&pap("émile", "mot de passe")).1.expect("émile");
        assert_eq!(
            (emile.ipv4, emile.pool, emile.rate_down, emile.rate_up),
            (None, None, None, Some(Rate(1000)))
        );
        let plain = u.check(&pap("late17", "pw17")).1.expect("late17");
        assert_eq!((plain.ipv4, plain.pool, plain.rate_down, plain.rate_up), (None, None, None, None));
        let with_pool: Vec<String> = u.users().filter(|u| u.pool.is_some()).map(|u| u.name).collect();
        assert_eq!(with_pool, ["dora"]);
    }

    /// An error deep in a large file names its line in the file, as a
    /// parse of the whole text at once does.
    #[test]
    fn errors_name_their_line_in_the_file() {
        let mut text = many_users(5000);
        text.push_str("[[user]]\nname = \"bad\"\npassword = \"pw\"\nipv4 = \"not an address\"\n");
        text.push_str(&named("after", 10));
        let whole = toml::from_str::<UsersFile>(&text).expect_err("bad address");
        let e = LocalUsers::parse(&text).expect_err("bad address").to_string();
        assert!(e.contains("line 15004"), "{e}");
        assert_eq!(e, format!("parsing users file : {whole}"));
        assert_eq!(parse_cut(&text).expect_err("bad address").to_string(), e);
        let mut text = many_users(5000);
        text.push_str("[[user]]\nname = \"unclosed\n");
        let e = parse_cut(&text).expect_err("unclosed string").to_string();
        assert!(e.contains("line 15002"), "{e}");
        let mut text = many_users(5000);
        text.push_str("[[user]]\nname = \"x\"\npassword = \"y\"\nshoe_size = 44\n");
        assert!(LocalUsers::parse(&text).expect_err("unknown field").to_string().contains("shoe_size"));
    }

    /// A name twice in different pieces is found; so is a parse error
    /// after it, first, as before.
    #[test]
    fn duplicates_across_pieces() {
        let mut text = many_users(5000);
        text.push_str("[[user]]\nname = \"user3\"\npassword = \"again\"\n");
        let e = parse_cut(&text).expect_err("twice");
        assert!(matches!(&e, AaaError::Duplicate(n) if n == "user3"), "{e}");
        text.push_str(&named("more", 3000));
        text.push_str("[[user]]\nname = 7\n");
        assert!(matches!(LocalUsers::parse(&text), Err(AaaError::Parse { .. })));
    }

    /// The file is cut only at real headers: a `[[user]]` line inside a
    /// multi-line string, where a cut would fall, stays in its password;
    /// what precedes the first header is read with it, as in one file.
    #[test]
    fn pieces_are_cut_at_headers_only() {
        let mut text = many_users(3000);
        assert!(text.len() > PIECE_BYTES);
        text.push_str("[[user]]\nname = \"poet\"\npassword = \"\"\"\n[[user]]\n'''\"\\\"\"\"\"\n");
        text.push_str(&named("later", 3000));
        text.push_str("[[user]]\nname = \"lit\"\npassword = '''a\n[[user]]\nb'''\n");
        text.push_str(&named("last", 3000));
        let u = parse_cut(&text).expect("parse");
        assert_eq!(u.len(), 9002);
        assert!(u.check(&pap("poet", "[[user]]\n'''\"\"")).0.accept);
        assert!(u.check(&pap("lit", "a\n[[user]]\nb")).0.accept);
        assert!(u.check(&pap("last3000", "pw3000")).0.accept);
        // Users given before the headers as an array can't be added to by them.
        let mut text = String::from("user = [{ name = \"a\", password = \"p\" }]\n");
        text.push_str(&many_users(3000));
        assert!(toml::from_str::<UsersFile>(&text).is_err());
        assert!(matches!(parse_cut(&text), Err(AaaError::Parse { .. })));
        let only =
            LocalUsers::parse("# no one yet\nuser = [{ name = \"a\", password = \"p\" }]\n").expect("array");
        assert!(only.check(&pap("a", "p")).0.accept);
        assert!(LocalUsers::parse("# nothing\n").expect("empty").is_empty());
    }

    /// A pool of addresses hands out each /128 once, never the
    /// Subnet-Router anycast address, and takes them back.
    #[test]
    fn address_pools_skip_the_anycast_address() {
        let na = Ipv6NaPoolEntry { name: "na".into(), prefix: "2001:db8:400::/126".into() };
        let mut pools = Ipv6Pools::new(&[na.entry()]).expect("pool");
        let got: Vec<_> = (0..3).map(|_| pools.allocate("na").expect("free")).collect();
        assert_eq!(
            got,
            [(v6("2001:db8:400::1"), 128), (v6("2001:db8:400::2"), 128), (v6("2001:db8:400::3"), 128)]
        );
        assert_eq!(pools.allocate("na"), None, "exhausted: ::0 is not given");
        pools.release(v6("2001:db8:400::2"), 128);
        assert_eq!(pools.allocate("na"), Some((v6("2001:db8:400::2"), 128)));
    }
}
