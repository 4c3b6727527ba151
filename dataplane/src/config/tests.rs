use super::*;

/// Every key of `[dataplane]`, none at its default, beside the control
/// plane's sections (which the data plane leaves to it).
const FULL: &str = r#"
listen = "192.0.2.1:1702"
instance = "edge1"
host_name = "lns"
allow_unlisted_peers = false

[limits]
max_tunnels = 10

[[peer]]
network = "192.0.2.0/24"
secret = "s3cret"

[ppp]
users_file = "/etc/lns/users.toml"
default_pool = "default"

[radius]
nas_identifier = "lns1"
[[radius.auth_server]]
address = "192.0.2.10:1812"
secret = "s3cret"

[dataplane]
access_if = "acc0"
core_if = "core0"
queues = 3
cores = [4, 5, 6]
xdp_mode = "skb"
bind = "copy"
frames = 4096
ring_size = 1024
batch = 32
busy_poll = true
l2tp_port = 1703
max_sessions = 4096
mss_clamp = 1400
pass_unknown_sessions = true
session_checks = "xdp"
nh_cache_ms = 250
pool_units = 70000
stats_interval = 2
json = true
unpin_on_exit = true
keep_attached = true
metrics_listen = "192.0.2.1:9702"
log_format = "json"

[[pool]]
name = "default"
ranges = ["198.51.100.0/24"]

[[ipv6_pool]]
name = "default"
prefix = "2001:db8:100::/48"
length = 64
"#;

fn no_queues(_: &str) -> anyhow::Result<u32> {
    anyhow::bail!("queues = \"all\" was not expected here")
}

fn four_queues(_: &str) -> anyhow::Result<u32> {
    Ok(4)
}

fn settings(text: &str, flags: &Flags) -> Result<Settings, ConfigError> {
    resolve(parse(text, Path::new("lns.toml"))?, flags, &four_queues)
}

fn flags(args: &[&str]) -> Flags {
    let mut a = vec!["lns-dataplane"];
    a.extend_from_slice(args);
    Flags::try_parse_from(a).expect("flags")
}

fn specs(list: &[&str]) -> Vec<PoolSpec> {
    list.iter().map(|s| s.parse().expect("pool spec")).collect()
}

#[test]
fn every_key_of_the_section_is_read() {
    let s = resolve(parse(FULL, Path::new("lns.toml")).expect("parse"), &Flags::default(), &no_queues)
        .expect("resolve");
    let o = &s.options;
    assert_eq!((o.access_if.as_str(), o.core_if.as_str()), ("acc0", "core0"));
    assert_eq!((o.queues, o.cores.as_slice()), (3, &[4, 5, 6][..]));
    assert_eq!(o.xdp_mode, lns_bpf::XdpMode::Skb);
    assert_eq!(o.bind, BindMode::Copy);
    assert_eq!((o.frames, o.ring_size, o.batch), (4096, 1024, 32));
    assert!(o.busy_poll);
    assert_eq!(o.l2tp_port, 1703, "the section's port wins over listen's");
    assert_eq!(o.pin_dir, PathBuf::from("/sys/fs/bpf/lns/edge1"), "the shared instance");
    assert_eq!(o.max_sessions, 4096);
    assert_eq!(o.mss, MssClamp::Fixed(1400));
    assert!(o.pass_unknown_sessions);
    assert!(!o.worker_checks);
    assert_eq!(o.nh_cache_ms, 250);
    assert!(o.unpin_on_exit && o.keep_attached);
    assert_eq!(o.pool_units, 70000);
    assert_eq!(o.pools, specs(&["198.51.100.0/24", "2001:db8:100::/48,64"]));
    assert_eq!(s.pool_source, PoolSource::None, "no --config: the text came from the test");
    assert_eq!((s.stats_interval, s.json), (2, true));
    assert_eq!(s.metrics_listen, Some("192.0.2.1:9702".parse().unwrap()));
    assert_eq!(s.log_format, LogFormat::Json);
    assert!(s.notes.is_empty(), "{:?}", s.notes);
}

#[test]
fn defaults_without_a_file() {
    let s = resolve(File::default(), &flags(&["--access-if", "eth1"]), &four_queues).expect("resolve");
    let o = &s.options;
    assert_eq!((o.access_if.as_str(), o.core_if.as_str()), ("eth1", "eth1"), "one-arm");
    assert_eq!((o.queues, o.cores.as_slice()), (4, &[0, 1, 2, 3][..]), "all queues, cores in order");
    assert_eq!(o.xdp_mode, lns_bpf::XdpMode::Native);
    assert_eq!(o.bind, BindMode::Auto);
    assert_eq!((o.frames, o.ring_size, o.batch, o.busy_poll), (8192, 2048, 64, false));
    assert_eq!((o.l2tp_port, o.max_sessions), (1701, 65536));
    assert_eq!(o.pin_dir, PathBuf::from("/sys/fs/bpf/lns/default"));
    assert_eq!((o.mss, o.pass_unknown_sessions, o.worker_checks), (MssClamp::Auto, false, true));
    assert_eq!((o.nh_cache_ms, o.unpin_on_exit, o.pool_units), (1000, false, DEFAULT_POOL_UNITS));
    assert!(!o.keep_attached, "the program leaves with the process");
    assert!(o.pools.is_empty());
    assert_eq!((s.stats_interval, s.json, s.pool_source), (10, false, PoolSource::None));
    assert_eq!((s.metrics_listen, s.log_format), (None, LogFormat::Text));
    // The access interface is required somewhere.
    let e = resolve(File::default(), &Flags::default(), &four_queues).expect_err("no access interface");
    assert!(e.to_string().contains("access_if"), "{e}");
    // listen's port is L2TP's when the section has none.
    let s = settings("listen = \"0.0.0.0:1799\"\n[dataplane]\naccess_if = \"x\"\n", &Flags::default())
        .expect("resolve");
    assert_eq!(s.options.l2tp_port, 1799);
}

#[test]
fn flags_override_the_file() {
    let f = flags(&[
        "--config",
        "/etc/lns/lns.toml",
        "--access-if",
        "eth1",
        "--core-if",
        "eth2",
        "--queues",
        "all",
        "--cores",
        "0-1,7",
        "--xdp-mode",
        "native",
        "--bind",
        "zerocopy",
        "--frames",
        "2048",
        "--ring-size",
        "512",
        "--batch",
        "16",
        "--busy-poll=false",
        "--l2tp-port",
        "1701",
        "--instance",
        "other",
        "--max-sessions",
        "1024",
        "--mss-clamp",
        "off",
        "--pass-unknown-sessions=false",
        "--session-checks",
        "worker",
        "--nh-cache-ms",
        "0",
        "--pool",
        "203.0.113.0/24",
        "--pool-units",
        "512",
        "--stats-interval",
        "0",
        "--json=false",
        "--unpin-on-exit=false",
        "--keep-attached=false",
        "--metrics-listen",
        "[2001:db8::1]:9800",
        "--log-format",
        "text",
    ]);
    let s = settings(FULL, &f).expect("resolve");
    let o = &s.options;
    assert_eq!((o.access_if.as_str(), o.core_if.as_str()), ("eth1", "eth2"));
    assert_eq!((o.queues, o.cores.as_slice()), (4, &[0, 1, 7][..]));
    assert_eq!((o.xdp_mode, o.bind), (lns_bpf::XdpMode::Native, BindMode::ZeroCopy));
    assert_eq!((o.frames, o.ring_size, o.batch, o.busy_poll), (2048, 512, 16, false));
    assert_eq!((o.l2tp_port, o.max_sessions), (1701, 1024));
    assert_eq!(o.pin_dir, PathBuf::from("/sys/fs/bpf/lns/other"));
    assert_eq!((o.mss, o.pass_unknown_sessions, o.worker_checks), (MssClamp::Off, false, true));
    assert_eq!((o.nh_cache_ms, o.unpin_on_exit, o.keep_attached, o.pool_units), (0, false, false, 512));
    assert_eq!(o.pools, specs(&["203.0.113.0/24"]), "--pool replaces the file's pools");
    assert_eq!((s.stats_interval, s.json, s.pool_source), (0, false, PoolSource::Flags));
    assert_eq!(s.metrics_listen, Some("[2001:db8::1]:9800".parse().unwrap()));
    assert_eq!(s.log_format, LogFormat::Text, "--log-format over the section's");
    // A bare boolean flag is true; --bpf-pin-dir wins over the instance.
    let f = flags(&["--busy-poll", "--json", "--bpf-pin-dir", "/run/lns/bpf", "--unpin-on-exit"]);
    let s = settings(&FULL.replace("busy_poll = true", "busy_poll = false"), &f).expect("resolve");
    assert!(s.options.busy_poll && s.json && s.options.unpin_on_exit);
    assert_eq!(s.options.pin_dir, PathBuf::from("/run/lns/bpf"));
    // --detach needs the pin directory alone, no interface.
    assert_eq!(
        pin_dir(&flags(&["--detach", "--instance", "edge2"])).unwrap(),
        PathBuf::from("/sys/fs/bpf/lns/edge2")
    );
    assert!(pin_dir(&flags(&["--detach", "--instance", "a/b"])).is_err());
    assert!(Flags::try_parse_from(["lns-dataplane", "--queues", "some"]).is_err());
    assert!(Flags::try_parse_from(["lns-dataplane", "--cores", "3-1"]).is_err());
    assert!(Flags::try_parse_from(["lns-dataplane", "--mss-clamp", "big"]).is_err());
    assert!(Flags::try_parse_from(["lns-dataplane", "--log-format", "xml"]).is_err());
    assert!(Flags::try_parse_from(["lns-dataplane", "--metrics-listen", "9702"]).is_err());
}

#[test]
fn the_log_format_of_the_node_applies_unless_the_section_has_its_own() {
    let node = "log_format = \"json\"\n[dataplane]\naccess_if = \"a\"\n";
    assert_eq!(settings(node, &Flags::default()).expect("resolve").log_format, LogFormat::Json);
    let own = format!("{node}log_format = \"text\"\n");
    assert_eq!(settings(&own, &Flags::default()).expect("resolve").log_format, LogFormat::Text);
    assert!(settings("[dataplane]\nlog_format = \"xml\"\n", &Flags::default()).is_err());
}

#[test]
fn values_in_the_file_take_the_flags_forms() {
    let s = settings(
        "[dataplane]\naccess_if = \"a\"\nqueues = \"all\"\ncores = \"2-5\"\nmss_clamp = \"off\"\nbind = \"zerocopy\"\n",
        &Flags::default(),
    )
    .expect("resolve");
    assert_eq!((s.options.queues, s.options.cores.as_slice()), (4, &[2, 3, 4, 5][..]));
    assert_eq!((s.options.mss, s.options.bind), (MssClamp::Off, BindMode::ZeroCopy));
    let s =
        settings("[dataplane]\naccess_if = \"a\"\nmss_clamp = \"1300\"\n", &Flags::default()).expect("ok");
    assert_eq!(s.options.mss, MssClamp::Fixed(1300));
    for bad in [
        "[dataplane]\nqueues = \"most\"\n",
        "[dataplane]\nqueues = 0\naccess_if = \"a\"\n",
        "[dataplane]\nxdp_mode = \"fast\"\n",
        "[dataplane]\ncores = \"5-2\"\n",
        "[dataplane]\nframes = \"many\"\n",
        "instance = \"a/b\"\n[dataplane]\naccess_if = \"a\"\n",
    ] {
        assert!(settings(bad, &Flags::default()).is_err(), "{bad}");
    }
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let cases = [
        ("[dataplane]\naccess_if = \"a\"\nbusypoll = true\n", "busypoll", 3, "[dataplane]"),
        (
            "instance = \"x\"\n\n[[pool]]\nname = \"p\"\nranges = []\n[[pool]]\nname = \"q\"\nrange = [\"10.0.0.0/24\"]\n",
            "range",
            8,
            "[[pool]]",
        ),
        ("[[ipv6_pool]]\nname = \"v6\"\nprefix = \"2001:db8::/48\"\nlen = 64\n", "len", 4, "[[ipv6_pool]]"),
    ];
    for (text, key, line, section) in cases {
        let e = parse(text, Path::new("/etc/lns/lns.toml")).expect_err(key);
        let ConfigError::Parse { line: Some(l), .. } = &e else { panic!("{e:?}") };
        assert_eq!(*l, line, "{e}");
        let m = e.to_string();
        assert!(
            m.starts_with(&format!("/etc/lns/lns.toml, line {line}: unknown key `{key}` in {section}")),
            "{m}"
        );
        assert!(m.contains("expected"), "the keys it knows: {m}");
    }
    // A bad value is placed too.
    let e = parse("[dataplane]\n\nbind = \"fast\"\n", Path::new("f")).expect_err("bad value");
    assert!(e.to_string().starts_with("f, line 3: "), "{e}");
    // The control plane's keys, known or not, are the control plane's to check.
    assert!(parse("hostname = \"typo\"\n[ppp]\nfoo = 1\n", Path::new("f")).is_ok());
}

#[test]
fn pools_are_derived_from_the_control_planes() {
    let text = r#"
        [dataplane]
        access_if = "a"
        [[pool]]
        name = "a"
        ranges = ["198.51.100.0/25", "198.51.100.128/25", "203.0.113.10-203.0.113.20"]
        [[pool]]
        name = "b"
        ranges = ["192.0.2.77/32"]
        [[ipv6_pool]]
        name = "slaac"
        prefix = "2001:db8:100::/48"
        [[ipv6_pool]]
        name = "pd"
        prefix = "2001:db8:200::/40"
        length = 56
    "#;
    let s =
        settings(text, &Flags { config: Some("/etc/lns/lns.toml".into()), ..flags(&[]) }).expect("resolve");
    // Two /25s are one /24; 10-20 is exactly 10/31, 12/30, 16/30, 20/32.
    assert_eq!(
        s.options.pools,
        specs(&[
            "192.0.2.77/32",
            "198.51.100.0/24",
            "203.0.113.10/31",
            "203.0.113.12/30",
            "203.0.113.16/30",
            "203.0.113.20/32",
            "2001:db8:100::/48,64",
            "2001:db8:200::/40,56",
        ])
    );
    assert_eq!(s.pool_source, PoolSource::File("/etc/lns/lns.toml".into()));
    // Every pool goes to the program, units and all.
    let v6: Vec<_> = s.options.pools.iter().filter(|p| p.prefix.is_ipv6()).collect();
    assert_eq!((v6[0].units(), v6[1].units()), (1 << 16, 1 << 16));
}

#[test]
fn too_many_ipv4_prefixes_are_joined_into_wider_ones() {
    let range =
        |r: &str| PoolEntry { name: "p".into(), ranges: vec![r.into()], _rate_down: None, _rate_up: None };
    let v6 = |i: u16| Ipv6PoolEntry {
        name: format!("v6-{i}"),
        prefix: format!("2001:db8:{i:x}::/48"),
        length: 64,
    };
    let mut notes = Vec::new();
    // 10-20 needs four prefixes; with six IPv6 pools two are left.
    let got =
        pool_specs(&[range("203.0.113.10-203.0.113.20")], &(1..=6).map(v6).collect::<Vec<_>>(), &mut notes)
            .expect("specs");
    let v4: Vec<String> = got.iter().filter(|p| p.prefix.is_ipv4()).map(ToString::to_string).collect();
    assert_eq!(v4, ["203.0.113.8/29,32", "203.0.113.16/29,32"], "covers 10-20 in two");
    // Alone, it joins into the one prefix that holds the range.
    assert_eq!(cover(&[(10, 20)], 1), [(0, 27)]);
    assert_eq!(cover(&[(0, u32::MAX)], 8), [(0, 0)]);
    assert_eq!(cover(&[(5, 5), (7, 7)], 8), [(5, 32), (7, 32)]);
    // Far apart ranges cannot be joined into a pool of at most 2^24 units.
    let far: Vec<PoolEntry> = [
        "10.0.0.0/24",
        "20.0.0.0/24",
        "50.0.0.0/24",
        "100.64.0.0/24",
        "172.16.0.0/24",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "233.252.0.0/24",
    ]
    .iter()
    .map(|r| range(r))
    .collect();
    let e = pool_specs(&far, &[], &mut notes).expect_err("nine far ranges");
    assert!(e.to_string().contains("--pool"), "{e}");
    // Nine IPv6 pools are more than the program holds.
    assert!(pool_specs(&[], &(1..=9).map(v6).collect::<Vec<_>>(), &mut notes).is_err());
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn pools_the_program_cannot_take_are_noted_or_refused() {
    let base = "[dataplane]\naccess_if = \"a\"\n";
    // A /32 of /64s is 2^32 units: left to the lookups, and said so.
    let s = settings(
        &format!("{base}[[ipv6_pool]]\nname = \"big\"\nprefix = \"2001:db8::/32\"\n"),
        &Flags::default(),
    )
    .expect("resolve");
    assert!(s.options.pools.is_empty());
    assert!(s.notes[0].contains("\"big\""), "{:?}", s.notes);
    // More units than pool_units: the operator sizes the maps.
    let text = format!("{base}[[ipv6_pool]]\nname = \"v6\"\nprefix = \"2001:db8:100::/40\"\n");
    let e = settings(&text, &Flags::default()).expect_err("2^24 units");
    assert!(e.to_string().contains("pool_units"), "{e}");
    let text = text.replace(base, &format!("{base}pool_units = 16777216\n"));
    assert_eq!(settings(&text, &Flags::default()).expect("resolve").options.pools.len(), 1);
    for bad in [
        "[[pool]]\nname = \"p\"\nranges = [\"198.51.100.9-198.51.100.1\"]\n",
        "[[pool]]\nname = \"p\"\nranges = [\"198.51.100.0/33\"]\n",
        "[[ipv6_pool]]\nname = \"p\"\nprefix = \"198.51.100.0/24\"\n",
    ] {
        assert!(settings(&format!("{base}{bad}"), &Flags::default()).is_err(), "{bad}");
    }
}
