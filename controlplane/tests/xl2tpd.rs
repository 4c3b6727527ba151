//! Interop: Debian's xl2tpd as the LAC against the real lns-controlplane,
//! in a namespace lab, with the steering program's pinned maps.
//!
//! xl2tpd brings up a tunnel (with and without tunnel authentication) and
//! places a call; ICRQ/ICRP/ICCN complete and are acknowledged, the session
//! is written into the maps. xl2tpd's pppd then fails on this machine (no
//! /dev/ppp) and xl2tpd hangs up with a CDN, which must remove the session
//! from the maps. Skipped with a message where xl2tpd is not installed
//! (`scripts/setup.sh` installs it).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::{wait_for, Lns};
use lns_bpf::{LoadOptions, Steering};
use lns_testlab::{Lab, NsProcess, PinDir};

const XL2TPD: &str = "/usr/sbin/xl2tpd";

/// xl2tpd in the LAC namespace, in the foreground, with its config, pid
/// and control files in a temp dir of its own; killed on drop.
struct Xl2tpd {
    proc: NsProcess,
    dir: tempfile::TempDir,
}

impl Xl2tpd {
    fn start(lab: &Lab, secret: Option<&str>) -> Xl2tpd {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = |name: &str| -> PathBuf { dir.path().join(name) };
        std::fs::write(p("options"), "noauth\nnodefaultroute\nnodetach\n").expect("ppp options");
        std::fs::write(p("l2tp-secrets"), format!("* * {}\n", secret.unwrap_or("unused"))).expect("secrets");
        let conf = format!(
            "[global]\n\
             port = 1701\n\
             auth file = {secrets}\n\
             debug tunnel = yes\n\
             debug state = yes\n\
             [lac lns1]\n\
             lns = 192.0.2.1\n\
             hostname = lac1\n\
             challenge = {challenge}\n\
             require authentication = no\n\
             redial = no\n\
             pppoptfile = {options}\n",
            secrets = p("l2tp-secrets").display(),
            challenge = if secret.is_some() { "yes" } else { "no" },
            options = p("options").display(),
        );
        std::fs::write(p("xl2tpd.conf"), conf).expect("config");
        let (conf, pid, control) = (p("xl2tpd.conf"), p("xl2tpd.pid"), p("l2tp-control"));
        let args = [
            "-D",
            "-c",
            conf.to_str().expect("utf-8"),
            "-p",
            pid.to_str().expect("utf-8"),
            "-C",
            control.to_str().expect("utf-8"),
        ];
        let mut proc = NsProcess::spawn(&lab.lac, Path::new(XL2TPD), &args).expect("spawn xl2tpd");
        assert!(wait_for(10, || control.exists()), "xl2tpd made no control file: {:?}", proc.output());
        assert!(proc.alive(), "xl2tpd exited: {:?}", proc.output());
        Xl2tpd { proc, dir }
    }

    /// `c lns1`: open the tunnel if needed and place a call.
    fn call(&self) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.path().join("l2tp-control"))
            .expect("open the control file");
        f.write_all(b"c lns1\n").expect("write the control file");
    }

    fn log(&self) -> String {
        let (out, err) = self.proc.output();
        format!("{out}{err}")
    }
}

/// Everything one interop run needs, torn down in reverse on drop.
struct Setup {
    lac: Xl2tpd,
    lns: Lns,
    steering: Steering,
    _pins: PinDir,
    _lab: Lab,
}

/// The LNS knows `lns_secret` for the LAC; xl2tpd uses `lac_secret`.
fn setup(lns_secret: Option<&str>, lac_secret: Option<&str>) -> Option<Setup> {
    setup_with(lns_secret, lac_secret, &[])
}

/// [`setup`] with more flags for the LNS (a `--peer` replaces its own).
fn setup_with(lns_secret: Option<&str>, lac_secret: Option<&str>, extra: &[&str]) -> Option<Setup> {
    if !Path::new(XL2TPD).exists() {
        eprintln!("skipped: {XL2TPD} is not installed (run scripts/setup.sh)");
        return None;
    }
    let lab = Lab::new(1).expect("lab");
    let pins = PinDir::new().expect("pin dir");
    let steering = Steering::load(&LoadOptions {
        pin_dir: Some(pins.path().into()),
        max_sessions: 64,
        ..Default::default()
    })
    .expect("load the steering program");
    let peer = match lns_secret {
        Some(s) => format!("192.0.2.2,secret={s},host-name=lac1"),
        None => "192.0.2.2".to_string(),
    };
    let mut args = vec!["--bpf-pin-dir", pins.path().to_str().expect("utf-8")];
    // A test that names its peer gets that one alone (the first match wins).
    if !extra.contains(&"--peer") {
        args.extend(["--peer", &peer]);
    }
    args.extend_from_slice(extra);
    let lns = Lns::start(&lab.lns, &args);
    let lac = Xl2tpd::start(&lab, lac_secret);
    Some(Setup { lac, lns, steering, _pins: pins, _lab: lab })
}

fn context(lns: &Lns, lac: &Xl2tpd) -> String {
    format!("\n--- lns ---\n{}\n--- xl2tpd ---\n{}", lns.log(), lac.log())
}

fn interop(secret: Option<&str>) {
    let Some(Setup { lac, lns, steering, .. }) = setup(secret, secret) else { return };
    let maps = steering.maps();
    lac.call();

    // The tunnel comes up, then the session (ICCN received and processed).
    assert!(wait_for(15, || lns.stats().sessions_up_total == 1), "no session up{}", context(&lns, &lac));
    let st = lns.stats();
    assert_eq!((st.tunnels_up_total, st.map_errors), (1, 0), "{st:?}");
    let log = lns.log();
    assert!(log.contains("host_name=lac1"), "xl2tpd's Host Name{}", context(&lns, &lac));
    assert!(log.contains("session up slot="), "written into the maps{}", context(&lns, &lac));

    // pppd fails; xl2tpd hangs up with CDN and the entry goes.
    assert!(
        wait_for(15, || lns.stats().sessions_down_total == 1),
        "no CDN from xl2tpd{}",
        context(&lns, &lac)
    );
    assert!(lns.log().contains("session down why=\"peer result"), "the peer's CDN{}", context(&lns, &lac));
    assert_eq!(maps.sessions().expect("sessions"), vec![], "no entry left behind");
    let st = lns.stats();
    assert_eq!((st.sessions, st.slots_in_use), (0, 0));
    // Our ZLB acks reached xl2tpd: it never gave up on the tunnel.
    let xlog = lac.log();
    assert!(!xlog.contains("Maximum retries exceeded"), "{}", context(&lns, &lac));
    assert!(lns.tunnels().iter().any(|t| t.peer_host_name == "lac1"), "{}", context(&lns, &lac));
    assert_eq!(lns.stats().dropped.get("malformed"), None, "{}", context(&lns, &lac));
}

#[test]
fn xl2tpd_lac_without_tunnel_secret() {
    interop(None);
}

#[test]
fn xl2tpd_lac_with_tunnel_authentication() {
    interop(Some("interop-s3cret"));
}

/// Packets of each rule of the LNS's `inet tp` table, in order.
fn nft_counts(lab: &Lab) -> Vec<u64> {
    let out = lab.lns.exec("nft", &["list table inet tp"]).expect("nft");
    String::from_utf8_lossy(&out.stdout)
        .split("packets ")
        .skip(1)
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Counts, in the LNS's kernel, what the LNS sends from and receives on
/// the tunnel ports and 1701.
fn nft_count_ports(lab: &Lab) {
    for cmd in [
        "add table inet tp",
        "add chain inet tp input { type filter hook input priority 0 ; }",
        "add chain inet tp output { type filter hook output priority 0 ; }",
        "add rule inet tp input udp dport 20000-20099 counter",
        "add rule inet tp input udp dport 1701 counter",
        "add rule inet tp output udp sport 20000-20099 counter",
        "add rule inet tp output udp sport 1701 counter",
    ] {
        lab.lns.exec("nft", &[cmd]).expect("nft");
    }
}

/// With tunnel_ports the LNS answers from a port of the range (RFC 2661
/// §8.1). Debian's xl2tpd takes the answers (it matches them by tunnel id)
/// but keeps sending to 1701: the tunnel and its call come up all the
/// same, its data arrives on 1701 (which the XDP program takes as well),
/// it does not spread. `own_port = false` keeps such a LAC on 1701 both
/// ways, as the RFC wants ports to stay static for the life of a tunnel.
#[test]
fn xl2tpd_lac_and_tunnel_ports() {
    for own_port in [true, false] {
        let peer = if own_port { "192.0.2.2" } else { "192.0.2.2,own-port=no" };
        let Some(Setup { lac, lns, _lab: lab, .. }) =
            setup_with(None, None, &["--tunnel-ports", "20000-20099", "--peer", peer])
        else {
            return;
        };
        nft_count_ports(&lab);
        lac.call();
        assert!(wait_for(15, || lns.stats().sessions_up_total == 1), "no session up{}", context(&lns, &lac));
        assert_eq!(lns.stats().tunnels_up_total, 1, "{}", context(&lns, &lac));
        assert!(!lns.log().contains("back to the listen port"), "{}", context(&lns, &lac));
        let [to_range, to_1701, from_range, from_1701] = nft_counts(&lab)[..] else {
            panic!("four counters: {:?}", nft_counts(&lab))
        };
        eprintln!(
            "own_port {own_port}: LNS received {to_range} on the range, {to_1701} on 1701; \
             sent {from_range} from the range, {from_1701} from 1701"
        );
        // SCCRQ, SCCCN, ICRQ, ICCN at least, all to 1701.
        assert!(to_1701 >= 4 && to_range == 0, "xl2tpd sends to 1701{}", context(&lns, &lac));
        if own_port {
            assert!(from_range >= 3 && from_1701 == 0, "SCCRP, ICRP, acks from the tunnel port");
        } else {
            assert!(from_range == 0 && from_1701 >= 3, "everything from 1701");
        }
        // lnsctl show stats names the port in use and no fallback: the
        // tunnel came up (xl2tpd took our SCCRP from the tunnel's port).
        let ports = lns.stats().tunnel_ports;
        let on_own = u64::from(own_port);
        assert_eq!(
            (ports.get("sockets_open"), ports.get("tunnels_on_own_port"), ports.get("fallbacks")),
            (Some(&on_own), Some(&on_own), Some(&0)),
            "{ports:?}"
        );
    }
}

#[test]
fn xl2tpd_lac_with_the_wrong_secret_gets_no_tunnel() {
    let Some(Setup { lac, lns, .. }) = setup(Some("interop-s3cret"), Some("guess")) else { return };
    lac.call();
    // One side's challenge response fails (§5.1.1) and the tunnel is torn
    // down before it is ever established.
    assert!(wait_for(15, || lns.stats().tunnels_down_total == 1), "no teardown{}", context(&lns, &lac));
    let st = lns.stats();
    assert_eq!((st.tunnels_up_total, st.sessions_up_total), (0, 0), "{}", context(&lns, &lac));
    // xl2tpd checked our response to its challenge and refused it.
    assert!(lns.log().contains("peer StopCCN result 2"), "{}", context(&lns, &lac));
}
