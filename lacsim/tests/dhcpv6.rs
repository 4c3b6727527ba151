//! The DHCPv6 server end to end: a real Debian DHCPv6 client, dhcpcd,
//! runs on the TUN device of `lns-lacsim --tun` (the subscriber's router)
//! and asks the LNS for a delegated prefix (IA_PD), an address (IA_NA)
//! and DNS servers.
//!
//! Why dhcpcd and not ISC dhclient: dhclient 4.4 refuses a TUN device
//! outright ("Unsupported device type 65534", ARPHRD_NONE has no
//! link-layer address), whatever DUID it is given (`-D LL`, `-D LLT`, a
//! `default-duid` in its lease file). dhcpcd (package dhcpcd-base) runs on
//! it; its hook script (`script`) writes what it got to a file the test
//! reads.
//!
//! dhcpcd keeps its state by interface name in /run/dhcpcd and
//! /var/lib/dhcpcd, so each test names its device differently.

mod common;
use common::{freeradius, lnsctl_json, resolve_neighbours, start_dp, wait_until};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lns_bpf::abi::Counter;
use lns_testlab::{unique_name, workspace_bin, ControlPlane, Lab, Netns, NsProcess, PinDir};

const DNS: [&str; 2] = ["2001:db8:53::1", "2001:db8:53::2"];
const SECRET: &str = "lns-test-secret";

/// `[ppp]` lines and tables for the LNS's file: delegation from the pool
/// `pd` (2001:db8:300::/40 in /56s), DNS servers, and short lifetimes
/// (preferred 6 s, so T1 is 3 s: the client renews within the test).
fn dhcpv6_toml() -> String {
    format!(
        "default_ipv6_pd_pool = \"pd\"\n\
         [dhcpv6]\ndns = [\"{}\", \"{}\"]\npreferred_lifetime = 6\nvalid_lifetime = 10\n\
         [[ipv6_pd_pool]]\nname = \"pd\"\nprefix = \"2001:db8:300::/40\"\nlength = 56\n",
        DNS[0], DNS[1]
    )
}

/// dhcpcd on device `dev` of `ns`, in the foreground, DHCPv6 only,
/// asking for the IAs `ias` says (dhcpcd.conf lines) and the DNS servers;
/// its hook script appends each event's variables to `events`.
struct Dhcpcd {
    proc: NsProcess,
    dir: PathBuf,
    events: PathBuf,
    dev: String,
    ns: String,
}

impl Dhcpcd {
    fn start(ns: &Netns, dev: &str) -> Dhcpcd {
        Dhcpcd::start_asking(ns, dev, "ia_pd 1\n")
    }

    fn start_asking(ns: &Netns, dev: &str, ias: &str) -> Dhcpcd {
        let dir = std::env::temp_dir().join(unique_name("dhcpcd"));
        std::fs::create_dir_all(&dir).unwrap();
        let events = dir.join("events");
        let hook = dir.join("hook.sh");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\n{{ echo ---; env | grep -E '^(reason|interface|new_|old_)' | sort; }} >> {}\n",
                events.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        // No Router Solicitation: with an IA configured dhcpcd solicits
        // at once. No SLAAC: the TUN's addresses are the session's.
        let conf = dir.join("dhcpcd.conf");
        std::fs::write(
            &conf,
            format!("ipv6only\nnoipv6rs\n{ias}option dhcp6_name_servers\nscript {}\n", hook.display()),
        )
        .unwrap();
        let proc = NsProcess::spawn(
            ns,
            Path::new("/usr/sbin/dhcpcd"),
            &["-B", "-d", "-6", "-f", conf.to_str().unwrap(), dev],
        )
        .unwrap();
        Dhcpcd { proc, dir, events, dev: dev.into(), ns: ns.name().into() }
    }

    /// Each hook run's variables, in order.
    fn events(&self) -> Vec<std::collections::BTreeMap<String, String>> {
        let text = std::fs::read_to_string(&self.events).unwrap_or_default();
        text.split("---\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                e.lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
                    .collect()
            })
            .collect()
    }

    /// The first event of kind `reason` after the first `skip` of them.
    fn wait_event(&mut self, reason: &str, skip: usize) -> std::collections::BTreeMap<String, String> {
        let t0 = Instant::now();
        loop {
            if let Some(e) = self
                .events()
                .into_iter()
                .filter(|e| e.get("reason").map(String::as_str) == Some(reason))
                .nth(skip)
            {
                return e;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "dhcpcd never reported {reason} #{skip}: {:?}\n{:?}",
                self.events(),
                self.proc.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `dhcpcd -6 -k DEV`: the running client sends a Release and ends.
    fn release(&mut self) {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .args(["/usr/sbin/dhcpcd", "-6", "-k", &self.dev])
            .output()
            .unwrap();
        assert!(out.status.success(), "dhcpcd -k: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Dhcpcd {
    fn drop(&mut self) {
        self.proc.stop(5);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `lns-lacsim --tun DEV` for one dual-stack subscriber, until stopped.
fn start_tun_subscriber(lab: &Lab, dev: &str, auth: &[&str]) -> NsProcess {
    let mut args = vec!["--server", "192.0.2.1:1701", "--json", "--ncp", "dual", "--tun", dev];
    args.extend_from_slice(auth);
    NsProcess::spawn(&lab.lac, &workspace_bin("lns-lacsim").unwrap(), &args).unwrap()
}

/// Waits until the TUN device has the session's link-local address (IPv6CP
/// is up: the client can send).
fn wait_for_link_local(lab: &Lab, dev: &str, sim: &mut NsProcess) {
    let t0 = Instant::now();
    loop {
        let text = lab
            .lac
            .ip(&["addr", "show", "dev", dev])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if text.contains("inet6 fe80::") && text.contains("inet6 2001:db8:100:") {
            return;
        }
        assert!(sim.alive(), "lns-lacsim exited: {:?}", sim.output());
        assert!(t0.elapsed() < Duration::from_secs(30), "{dev} never came up: {text}\n{:?}", sim.output());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The one session's row in `lnsctl --json session list`.
fn session(cp: &ControlPlane) -> serde_json::Value {
    let rows = lnsctl_json(&cp.socket, &["session", "list"]);
    rows.as_array().and_then(|r| r.first().cloned()).unwrap_or_default()
}

/// The prefix dhcpcd was given, as `PREFIX/LEN`.
fn delegated(e: &std::collections::BTreeMap<String, String>) -> String {
    format!(
        "{}/{}",
        e.get("new_dhcp6_ia_pd1_prefix1").map(String::as_str).unwrap_or("none"),
        e.get("new_dhcp6_ia_pd1_prefix1_length").map(String::as_str).unwrap_or("none")
    )
}

fn ipv6_neighbours(lab: &Lab) {
    resolve_neighbours(lab);
    lab.lns.exec("ping", &["-6", "-c1", "-W2", "2001:db8:c0::7"]).unwrap();
    lab.core.exec("ping", &["-6", "-c1", "-W2", "2001:db8:c0::1"]).unwrap();
}

/// Entries of the data plane's map `name`.
fn map_entries(pins: &PinDir, name: &str) -> usize {
    lns_bpf::open_pinned(pins.path()).unwrap().entry_counts()[name]
}

/// dhcpcd over the session gets a /56 of the pool and the DNS servers; the
/// prefix is routed (session entry and `lns_sub_v6_lpm`), and traffic
/// from an address inside it crosses the fast path both ways; the client
/// renews and the binding outlives its first valid lifetime; a Release
/// takes the prefix out of the maps while the session stays.
#[test]
fn dhcpcd_gets_a_prefix_from_the_pool_uses_it_renews_and_releases_it() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let cp = lab.start_controlplane_with(pins.path(), 1, &dhcpv6_toml(), &[]).unwrap();
    ipv6_neighbours(&lab);
    lab.core.ip(&["-6", "route", "add", "2001:db8:300::/40", "via", "2001:db8:c0::1"]).unwrap();
    let dev = "dh6pool";
    let mut sim = start_tun_subscriber(&lab, dev, &["--user", "user1", "--password", "pw1"]);
    wait_for_link_local(&lab, dev, &mut sim);
    let mut client = Dhcpcd::start(&lab.lac, dev);

    let bound = client.wait_event("BOUND6", 0);
    let prefix = delegated(&bound);
    assert!(prefix.starts_with("2001:db8:3") && prefix.ends_with("/56"), "a /56 of the pool: {bound:?}");
    let dns = bound.get("new_dhcp6_name_servers").cloned().unwrap_or_default();
    assert_eq!(dns.split_whitespace().collect::<Vec<_>>(), DNS, "{bound:?}");
    let t_bound = Instant::now();
    let row = wait_until("the delegated prefix in the session", Duration::from_secs(10), || {
        let r = session(&cp);
        (r["delegated_prefix"].as_str() == Some(prefix.as_str())).then_some(r)
    });
    println!("bound: {prefix}, DNS {dns}; session {row}");
    assert_eq!(map_entries(&pins, "lns_sub_v6_lpm"), 1, "the delegated prefix is routed");

    // Traffic from inside the prefix, both ways, through the fast path.
    let host = format!("{}1", prefix.trim_end_matches("/56"));
    // On the loopback device of lacsim's namespace, as a router's LAN
    // address would be on its LAN side (this kernel has no dummy devices).
    lab.lac.ip(&["link", "set", "lo", "up"]).unwrap();
    lab.lac.ip(&["-6", "addr", "add", &format!("{host}/128"), "dev", "lo", "nodad"]).unwrap();
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    let before = maps.counters().unwrap();
    let slow_before = session(&cp)["slow_path"].clone();
    let pings = [
        (&lab.lac, vec!["-6", "-c", "5", "-i", "0.2", "-W", "2", "-I", host.as_str(), "2001:db8:c0::7"]),
        (&lab.core, vec!["-6", "-c", "5", "-i", "0.2", "-W", "2", host.as_str()]),
    ];
    for (ns, args) in &pings {
        let out = ns.exec("ping", args).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("5 received"), "ping {args:?} in {}: {text}\n{:?}", ns.name(), sim.output());
    }
    let d = maps.counters().unwrap().since(&before);
    let slow_after = session(&cp)["slow_path"].clone();
    println!("data plane during the pings: {d:?}\nslow path {slow_before} -> {slow_after}");
    // 10 echo requests and 10 replies each way at least, every one
    // redirected by the program; none through the stack.
    let up = d.get(Counter::RedirectUpstream) + d.get(Counter::RedirectUpstreamCheck);
    let down = d.get(Counter::RedirectDownstream) + d.get(Counter::RedirectDownstreamCheck);
    assert!(up >= 10 && down >= 10, "{d:?}");
    assert_eq!(d.get(Counter::PassNoNeighbour) + d.get(Counter::PassNotForwarded), 0, "{d:?}");
    assert_eq!(d.get(Counter::DropSpoofed), 0, "a source in the delegated prefix is the session's: {d:?}");
    assert_eq!(slow_before, slow_after, "nothing of it on the slow path");

    // Renew at T1 (3 s), twice; the binding outlives its first valid
    // lifetime (10 s) only because the LNS extended it.
    let renewed = client.wait_event("RENEW6", 1);
    assert_eq!(delegated(&renewed), prefix, "{renewed:?}");
    while t_bound.elapsed() < Duration::from_secs(12) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        session(&cp)["delegated_prefix"].as_str(),
        Some(prefix.as_str()),
        "still bound after renewals"
    );
    assert_eq!(map_entries(&pins, "lns_sub_v6_lpm"), 1);

    // Release: the prefix leaves the session entry and the map; the session
    // and its /64 stay.
    client.release();
    wait_until("the prefix out of the session", Duration::from_secs(10), || {
        session(&cp)["delegated_prefix"].is_null().then_some(())
    });
    assert_eq!(map_entries(&pins, "lns_sub_v6_lpm"), 0, "the released prefix is not routed");
    assert_eq!(map_entries(&pins, "lns_sub_v6_64"), 1, "the session's /64 still is");
    assert_eq!(session(&cp)["dataplane_state"], "forwarding");
    let stats = lnsctl_json(&cp.socket, &["show", "stats"]);
    println!("{stats}");

    drop(client);
    assert!(sim.stop(10).is_some_and(|s| s.success()), "lns-lacsim ends on SIGTERM: {:?}", sim.output());
    drop(cp);
}

/// With RADIUS, the Access-Accept's Delegated-IPv6-Prefix is the prefix
/// the client is given (not one of the pool's), and its
/// DNS-Server-IPv6-Address (RFC 6911) are its DNS servers (not the
/// configured ones).
#[test]
fn dhcpcd_is_given_the_access_accepts_prefix_and_dns_servers() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let users = "user1\tCleartext-Password := \"rad1\"\n\
                 \tDelegated-IPv6-Prefix = \"2001:db8:200:100::/56\",\n\
                 \tDNS-Server-IPv6-Address = 2001:db8:200::53,\n\
                 \tDNS-Server-IPv6-Address += 2001:db8:200::54\n\n"
        .to_string();
    let _fr = freeradius(&lab, users, 1812, 1813, SECRET);
    let toml = format!(
        "{}[radius]\nnas_identifier = \"lns-test\"\ntimeout = \"300ms\"\nretries = 1\n\
         [[radius.auth_server]]\naddress = \"127.0.0.1:1812\"\nsecret = \"{SECRET}\"\n",
        dhcpv6_toml()
    );
    let cp = lab.start_controlplane_with(pins.path(), 0, &toml, &[]).unwrap();
    ipv6_neighbours(&lab);
    let dev = "dh6rad";
    let mut sim =
        start_tun_subscriber(&lab, dev, &["--auth", "chap", "--user", "user1", "--password", "rad1"]);
    wait_for_link_local(&lab, dev, &mut sim);
    let mut client = Dhcpcd::start(&lab.lac, dev);
    let bound = client.wait_event("BOUND6", 0);
    assert_eq!(delegated(&bound), "2001:db8:200:100::/56", "{bound:?}");
    assert_eq!(
        bound.get("new_dhcp6_name_servers").map(String::as_str),
        Some("2001:db8:200::53 2001:db8:200::54"),
        "{bound:?}"
    );
    assert_eq!(session(&cp)["delegated_prefix"], "2001:db8:200:100::/56");
    assert_eq!(map_entries(&pins, "lns_sub_v6_lpm"), 1);
    drop(client);
    assert!(sim.stop(10).is_some_and(|s| s.success()), "lns-lacsim ends on SIGTERM: {:?}", sim.output());
    drop(cp);
}

/// With an `[[ipv6_na_pool]]`, dhcpcd asking for an address (IA_NA) and a
/// prefix gets an address of that pool (not of the session's /64) besides
/// its /56: both are routed (`lns_sub_v6_lpm`: the /56 and the /128),
/// traffic from and to the address crosses the fast path both ways, and
/// a Release takes both out of the maps while the session stays.
#[test]
fn dhcpcd_gets_an_address_from_the_na_pool_and_uses_it() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let toml = format!(
        "default_ipv6_na_pool = \"na\"\n{}[[ipv6_na_pool]]\nname = \"na\"\nprefix = \"2001:db8:400::/64\"\n",
        dhcpv6_toml()
    );
    let cp = lab.start_controlplane_with(pins.path(), 1, &toml, &[]).unwrap();
    ipv6_neighbours(&lab);
    lab.core.ip(&["-6", "route", "add", "2001:db8:400::/64", "via", "2001:db8:c0::1"]).unwrap();
    let dev = "dh6na";
    let mut sim = start_tun_subscriber(&lab, dev, &["--user", "user1", "--password", "pw1"]);
    wait_for_link_local(&lab, dev, &mut sim);
    let mut client = Dhcpcd::start_asking(&lab.lac, dev, "ia_na 1\nia_pd 2\n");

    let bound = client.wait_event("BOUND6", 0);
    let address = bound
        .iter()
        .find(|(k, _)| k.starts_with("new_dhcp6_ia_na1_ia_addr1") && !k.ends_with("time"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no IA_NA address: {bound:?}"));
    println!("bound: address {address}, prefix {:?}", bound.get("new_dhcp6_ia_pd1_prefix1"));
    assert!(address.starts_with("2001:db8:400::"), "an address of the pool: {bound:?}");
    assert!(bound.get("new_dhcp6_ia_pd1_prefix1").is_some_and(|p| p.starts_with("2001:db8:3")), "{bound:?}");
    wait_until("the address and the prefix routed", Duration::from_secs(10), || {
        (map_entries(&pins, "lns_sub_v6_lpm") == 2).then_some(())
    });
    assert_eq!(session(&cp)["dhcpv6_address"].as_str(), Some(address.as_str()), "lnsctl names the address");

    // Traffic from and to the address, through the fast path. dhcpcd puts
    // it on the TUN device; on the loopback as well (no duplicate address
    // detection to wait for), the pings' source either way.
    lab.lac.ip(&["link", "set", "lo", "up"]).unwrap();
    lab.lac.ip(&["-6", "addr", "add", &format!("{address}/128"), "dev", "lo", "nodad"]).unwrap();
    let maps = lns_bpf::open_pinned(pins.path()).unwrap();
    let before = maps.counters().unwrap();
    let slow_before = session(&cp)["slow_path"].clone();
    let pings = [
        (&lab.lac, vec!["-6", "-c", "5", "-i", "0.2", "-W", "2", "-I", address.as_str(), "2001:db8:c0::7"]),
        (&lab.core, vec!["-6", "-c", "5", "-i", "0.2", "-W", "2", address.as_str()]),
    ];
    for (ns, args) in &pings {
        let out = ns.exec("ping", args).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("5 received"), "ping {args:?} in {}: {text}\n{:?}", ns.name(), sim.output());
    }
    let d = maps.counters().unwrap().since(&before);
    println!("data plane during the pings: {d:?}");
    let up = d.get(Counter::RedirectUpstream) + d.get(Counter::RedirectUpstreamCheck);
    let down = d.get(Counter::RedirectDownstream) + d.get(Counter::RedirectDownstreamCheck);
    assert!(up >= 10 && down >= 10, "{d:?}");
    assert_eq!(d.get(Counter::DropSpoofed), 0, "the pool address is the session's as a source: {d:?}");
    assert_eq!(session(&cp)["slow_path"], slow_before, "nothing of it on the slow path");

    // Release: the address and the prefix leave the maps; the session and
    // its /64 stay.
    client.release();
    wait_until("the address and the prefix out of the maps", Duration::from_secs(10), || {
        (map_entries(&pins, "lns_sub_v6_lpm") == 0).then_some(())
    });
    assert_eq!(map_entries(&pins, "lns_sub_v6_64"), 1, "the session's /64 still is");
    assert_eq!(session(&cp)["dataplane_state"], "forwarding");
    drop(client);
    assert!(sim.stop(10).is_some_and(|s| s.success()), "lns-lacsim ends on SIGTERM: {:?}", sim.output());
    drop(cp);
}
