//! A real FreeRADIUS (Debian's `freeradius`, installed by scripts/setup.sh)
//! for end-to-end tests: its own configuration directory, unique per
//! test, started inside a lab namespace (each has its own loopback, so
//! fixed ports never collide between tests) or, for tests without a lab,
//! on the host's loopback on free ports ([`free_udp_port`]); killed and
//! removed on drop.
//!
//! The configuration is the smallest that does what the LNS tests need:
//! one client (127.0.0.1), a users file, PAP / CHAP / MS-CHAP, a detail
//! file of every accounting record, Status-Server, and replies signed with
//! Message-Authenticator (FreeRADIUS 3.2.1 predates the BlastRADIUS change
//! that adds it by itself, hence `update reply`).
//!
//! [`FreeRadius::start_stock`] is the other kind: Debian's configuration
//! exactly as the package installs it, with one client entry and the users
//! entries added and nothing else, so its replies carry no
//! Message-Authenticator (what an operator's fresh install does).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{unique_name, Netns, NsProcess};

/// What the server is to be.
#[derive(Debug, Clone)]
pub struct FreeRadiusConfig {
    pub secret: String,
    /// Authentication port; 0 for none.
    pub auth_port: u16,
    /// Accounting port; 0 for none.
    pub acct_port: u16,
    /// The `users` file (FreeRADIUS `files` module syntax).
    pub users: String,
    /// `-X` (single-threaded, full debug log) rather than `-f` with worker
    /// threads (for benchmarks).
    pub debug: bool,
}

impl Default for FreeRadiusConfig {
    fn default() -> Self {
        FreeRadiusConfig {
            secret: "lns-test-secret".into(),
            auth_port: 1812,
            acct_port: 1813,
            users: String::new(),
            debug: true,
        }
    }
}

/// `user1 .. userN` with password `<prefix>1 .. <prefix>N` and no reply
/// attributes, in users-file syntax.
pub fn users(n: u32, password_prefix: &str) -> String {
    (1..=n).map(|i| format!("user{i}\tCleartext-Password := \"{password_prefix}{i}\"\n\n")).collect()
}

fn radiusd_conf(dir: &Path, c: &FreeRadiusConfig) -> String {
    let d = dir.display();
    let secret = &c.secret;
    let mut listen = String::new();
    if c.auth_port != 0 {
        listen.push_str(&format!(
            "\tlisten {{\n\t\ttype = auth\n\t\tipaddr = 127.0.0.1\n\t\tport = {}\n\t\trecv_buff = 4194304\n\t}}\n",
            c.auth_port
        ));
    }
    if c.acct_port != 0 {
        listen.push_str(&format!(
            "\tlisten {{\n\t\ttype = acct\n\t\tipaddr = 127.0.0.1\n\t\tport = {}\n\t\trecv_buff = 4194304\n\t}}\n",
            c.acct_port
        ));
    }
    format!(
        r#"
prefix = /usr
raddbdir = {d}
confdir = {d}
logdir = {d}
run_dir = {d}
libdir = /usr/lib/freeradius
dictdir = /usr/share/freeradius
pidfile = {d}/radiusd.pid
name = radiusd
max_request_time = 5
cleanup_delay = 1
max_requests = 262144
hostname_lookups = no
log {{
	destination = stdout
}}
security {{
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = yes
}}
thread pool {{
	start_servers = 4
	max_servers = 8
	min_spare_servers = 2
	max_spare_servers = 8
	max_queue_size = 262144
}}
client loopback {{
	ipaddr = 127.0.0.1
	secret = {secret}
	require_message_authenticator = yes
}}
modules {{
	pap {{
	}}
	chap {{
	}}
	mschap {{
	}}
	files {{
		filename = {d}/users
	}}
	detail {{
		filename = {d}/detail
		permissions = 0600
		header = "%t"
	}}
}}
server default {{
{listen}
	authorize {{
		files
		chap
		mschap
		pap
	}}
	authenticate {{
		Auth-Type PAP {{
			pap
		}}
		Auth-Type CHAP {{
			chap
		}}
		Auth-Type MS-CHAP {{
			mschap
		}}
	}}
	preacct {{
	}}
	accounting {{
		detail
		update reply {{
			Message-Authenticator := 0x00
		}}
	}}
	post-auth {{
		update reply {{
			Message-Authenticator := 0x00
		}}
		Post-Auth-Type REJECT {{
			update reply {{
				Message-Authenticator := 0x00
			}}
		}}
	}}
}}
"#
    )
}

/// A running FreeRADIUS; stopped and its directory removed on drop.
pub struct FreeRadius {
    proc: Option<NsProcess>,
    dir: PathBuf,
    pub config: FreeRadiusConfig,
    ns: Option<String>,
    /// Where clients reach it: the loopback, or for a stock server the
    /// client's own address (its datagrams then come from that address).
    host: IpAddr,
}

/// Debian's configuration directory, as the package installs it.
pub const STOCK_CONFIG_DIR: &str = "/etc/freeradius/3.0";

impl FreeRadius {
    /// Writes the configuration and starts `freeradius` in `ns`, waiting
    /// until it is ready to process requests.
    pub fn start(ns: &Netns, config: FreeRadiusConfig) -> Result<FreeRadius> {
        FreeRadius::start_in(Some(ns), config)
    }

    /// [`FreeRadius::start`] in `ns`, or in the caller's namespace (pick
    /// the ports with [`free_udp_port`]; a port taken meanwhile is an
    /// error to retry).
    pub fn start_in(ns: Option<&Netns>, config: FreeRadiusConfig) -> Result<FreeRadius> {
        let dir = std::env::temp_dir().join(unique_name("frad"));
        std::fs::create_dir_all(&dir)?;
        let mut fr = FreeRadius {
            proc: None,
            dir,
            config,
            ns: ns.map(|n| n.name().to_string()),
            host: Ipv4Addr::LOCALHOST.into(),
        };
        std::fs::write(fr.dir.join("radiusd.conf"), radiusd_conf(&fr.dir, &fr.config))?;
        std::fs::write(fr.dir.join("users"), &fr.config.users)?;
        fr.run(ns)?;
        Ok(fr)
    }

    /// Debian's FreeRADIUS with its default configuration: a copy of
    /// [`STOCK_CONFIG_DIR`] with one `client` entry (`client`, `secret`)
    /// appended to clients.conf and `users` put at the top of the users
    /// file (mods-config/files/authorize, before its `DEFAULT
    /// Framed-Protocol == PPP` entry, which would otherwise answer PPP
    /// users first), started in `ns` with `-X`. It listens on every
    /// address on 1812 and 1813; `client` must be an address of `ns`,
    /// which [`FreeRadius::auth`] and [`FreeRadius::acct`] then name, so
    /// that datagrams sent there come from it. Like the packaged service it
    /// writes its accounting detail under /var/log/freeradius/radacct
    /// ([`FreeRadius::detail`] reads nothing).
    pub fn start_stock(ns: &Netns, client: IpAddr, secret: &str, users: &str) -> Result<FreeRadius> {
        let dir = std::env::temp_dir().join(unique_name("frad"));
        std::fs::create_dir_all(&dir)?;
        let config = FreeRadiusConfig {
            secret: secret.into(),
            auth_port: 1812,
            acct_port: 1813,
            users: users.into(),
            debug: true,
        };
        let mut fr = FreeRadius { proc: None, dir, config, ns: Some(ns.name().to_string()), host: client };
        // -a: the package's owners and modes (freerad reads it after
        // dropping root) and its relative module symlinks.
        let out = Command::new("cp")
            .args(["-a", &format!("{STOCK_CONFIG_DIR}/."), fr.dir.to_str().context("path")?])
            .output()
            .context("cp")?;
        if !out.status.success() {
            bail!("copying {STOCK_CONFIG_DIR}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let clients = fr.dir.join("clients.conf");
        let mut text = std::fs::read_to_string(&clients)?;
        text.push_str(&format!("\nclient lns {{\n\tipaddr = {client}\n\tsecret = {secret}\n}}\n"));
        std::fs::write(&clients, text)?;
        let authorize = fr.dir.join("mods-config/files/authorize");
        let text = std::fs::read_to_string(&authorize)?;
        std::fs::write(&authorize, format!("{users}\n{text}"))?;
        fr.run(Some(ns))?;
        Ok(fr)
    }

    fn run(&mut self, ns: Option<&Netns>) -> Result<()> {
        let dir = self.dir.to_str().context("path")?.to_string();
        let args: Vec<&str> =
            if self.config.debug { vec!["-X", "-d", &dir] } else { vec!["-f", "-l", "stdout", "-d", &dir] };
        let mut proc = NsProcess::spawn_in(ns, Path::new("/usr/sbin/freeradius"), &args)?;
        let t0 = Instant::now();
        loop {
            let (out, err) = proc.output();
            if out.contains("Ready to process requests") || err.contains("Ready to process requests") {
                break;
            }
            if !proc.alive() || t0.elapsed() > Duration::from_secs(15) {
                bail!("FreeRADIUS did not start:\n{out}\n{err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.proc = Some(proc);
        Ok(())
    }

    /// Stops the server (it can be started again with [`FreeRadius::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(5);
        }
    }

    /// Starts it again with the same configuration (and detail file).
    pub fn restart(&mut self, ns: &Netns) -> Result<()> {
        self.stop();
        self.run(Some(ns))
    }

    /// Starts it again where it ran, for servers started without a lab.
    pub fn restart_here(&mut self) -> Result<()> {
        anyhow::ensure!(self.ns.is_none(), "started in a namespace: use restart");
        self.stop();
        self.run(None)
    }

    pub fn auth(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.config.auth_port)
    }

    pub fn acct(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.config.acct_port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The debug log so far.
    pub fn log(&self) -> String {
        self.proc.as_ref().map(|p| p.output().0).unwrap_or_default()
    }

    /// The accounting records written so far, oldest first.
    pub fn detail(&self) -> Vec<DetailRecord> {
        parse_detail(&self.detail_text())
    }

    /// The detail file as FreeRADIUS wrote it.
    pub fn detail_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("detail")).unwrap_or_default()
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- freeradius output ({}) ---\n{}", self.dir.display(), self.log());
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A UDP port free on the host's loopback now (bound and released).
pub fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One record of a FreeRADIUS detail file: attribute name → values (in
/// order; Class may repeat), strings without their quotes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetailRecord(pub BTreeMap<String, Vec<String>>);

impl DetailRecord {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.first()).map(String::as_str)
    }

    /// An integer attribute (enumerated ones read as their names).
    pub fn int(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(|v| v.parse().ok())
    }

    /// Octets with Gigawords (RFC 2869 §5.1).
    pub fn octets(&self, direction: &str) -> u64 {
        let low = self.int(&format!("Acct-{direction}-Octets")).unwrap_or(0);
        let high = self.int(&format!("Acct-{direction}-Gigawords")).unwrap_or(0);
        high << 32 | low
    }
}

pub fn parse_detail(text: &str) -> Vec<DetailRecord> {
    let mut out = Vec::new();
    let mut cur = DetailRecord::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.0.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            continue; // the timestamp header
        }
        if let Some((k, v)) = line.trim().split_once(" = ") {
            let v = v.trim().trim_matches('"').to_string();
            cur.0.entry(k.trim().to_string()).or_default().push(v);
        }
    }
    if !cur.0.is_empty() {
        out.push(cur);
    }
    out
}

/// `radclient` inside `ns`: sends `attributes` (one `Name = value` per
/// line) as a `kind` request (disconnect, coa, auth, acct, status) to
/// `server` and returns what it printed (the answer's code and
/// attributes). `Err` when it got no reply (or failed otherwise), with its
/// output.
pub fn radclient(ns: &Netns, server: &str, kind: &str, secret: &str, attributes: &str) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name()))
        .args(["radclient", "-x", "-r", "1", "-t", "2", server, kind, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running radclient (freeradius-utils)")?;
    child.stdin.take().context("stdin")?.write_all(attributes.as_bytes())?;
    let out = child.wait_with_output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // radclient exits non-zero on a NAK too: only no answer is an error.
    if !out.status.success() && !text.contains("Received ") {
        bail!("radclient {kind} failed: {text}");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_records() {
        let text = "Sun Nov 22 08:00:00 2026\n\tAcct-Status-Type = Stop\n\tAcct-Session-Id = \"AB\"\n\tClass = 0x01\n\tClass = 0x02\n\tAcct-Input-Octets = 5\n\tAcct-Input-Gigawords = 1\n\n\
                    Sun Nov 22 08:00:01 2026\n\tAcct-Status-Type = Start\n";
        let r = parse_detail(text);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].get("Acct-Session-Id"), Some("AB"));
        assert_eq!(r[0].0["Class"], vec!["0x01", "0x02"]);
        assert_eq!(r[0].octets("Input"), (1 << 32) + 5);
        assert_eq!(r[1].get("Acct-Status-Type"), Some("Start"));
        assert!(users(2, "pw").contains("user2\tCleartext-Password := \"pw2\""));
    }
}
