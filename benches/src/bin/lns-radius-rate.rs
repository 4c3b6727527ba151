//! RADIUS rates against a local FreeRADIUS (`-f`, worker threads, no
//! debug log) in a namespace lab:
//!
//! 1. session set-up rate with RADIUS: lns-lacsim brings CHAP sessions up
//!    against the real LNS (lns-dataplane + lns-controlplane), each one
//!    authenticated by an Access-Request and accounted by a Start, round
//!    after round as `lns-setup-rate` does with local users;
//! 2. authentication throughput alone: the LNS's RADIUS client sends CHAP
//!    Access-Requests (as the RADIUS backend builds them) for the users
//!    as fast as FreeRADIUS answers, and this prints accepts per second;
//! 3. accounting throughput: the LNS's RADIUS client engine (the one the
//!    accounting sender drives) sends Interim-Updates for N sessions as
//!    fast as FreeRADIUS acknowledges them (each written to its detail
//!    file), and this prints records per second.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use lns_radius::access::NasIdentity;
use lns_radius::accounting::{acct_session_id, AccountingRequest, AcctStatusType, Counters};
use lns_radius::client::{Client, ClientConfig, Outcome, ServerConfig, Service};
use lns_radius::driver::RadiusClient;
use lns_testlab::freeradius::{FreeRadius, FreeRadiusConfig};
use lns_testlab::{Lab, PinDir};

const SECRET: &str = "bench-secret";

#[derive(Parser)]
#[command(about = "Set-up rate and accounting throughput through a local FreeRADIUS")]
struct Args {
    /// Sessions brought up in all (rounds of tunnels × sessions-per-tunnel).
    #[arg(long, default_value_t = 5_000)]
    sessions: u32,
    #[arg(long, default_value_t = 10)]
    tunnels: u32,
    #[arg(long, default_value_t = 25)]
    sessions_per_tunnel: u32,
    /// New sessions per second lns-lacsim attempts.
    #[arg(long, default_value_t = 20_000.0)]
    rate: f64,
    /// Interim-Updates to send (one per session).
    #[arg(long, default_value_t = 100_000)]
    interims: u32,
    /// Accounting requests in flight at most.
    #[arg(long, default_value_t = 2048)]
    window: usize,
    /// Access-Requests to send in the authentication part.
    #[arg(long, default_value_t = 50_000)]
    auths: u32,
    /// Skip the set-up part (only the client-against-FreeRADIUS rates).
    #[arg(long)]
    no_setup: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let per_round = args.tunnels * args.sessions_per_tunnel;
    anyhow::ensure!((1..=250).contains(&per_round), "tunnels × sessions-per-tunnel must be 1..=250");
    let lab = Lab::new(2)?;
    let users: String = (1..=per_round)
        .map(|i| format!("user{i}\tCleartext-Password := \"rad{i}\"\n\tAcct-Interim-Interval = 3600\n\n"))
        .collect();
    let fr = FreeRadius::start(
        &lab.lns,
        FreeRadiusConfig { users, secret: SECRET.into(), debug: false, ..Default::default() },
    )?;
    if !args.no_setup {
        setup_rate(&lab, &args, per_round)?;
    }
    auth_rate(&lab, &fr, &args, per_round)?;
    accounting_rate(&lab, &fr, &args)?;
    Ok(())
}

fn setup_rate(lab: &Lab, args: &Args, per_round: u32) -> Result<()> {
    let pins = PinDir::new()?;
    let _dp = lab.start_dataplane(
        pins.path(),
        &[
            "--queues",
            "2",
            "--xdp-mode",
            "native",
            "--bind",
            "copy",
            "--stats-interval",
            "0",
            "--max-sessions",
            "4096",
        ],
    )?;
    let state = std::env::temp_dir().join(lns_testlab::unique_name("lnsbs"));
    let radius = format!(
        "dns = [\"203.0.113.53\", \"203.0.113.54\"]\nauth = [\"chap-md5\", \"pap\"]\n\
         [radius]\nstate_dir = \"{}\"\n\
         [[radius.auth_server]]\naddress = \"127.0.0.1:1812\"\nsecret = \"{SECRET}\"\n\
         [[radius.acct_server]]\naddress = \"127.0.0.1:1813\"\nsecret = \"{SECRET}\"\n",
        state.display()
    );
    let cp = lab.start_controlplane_with(pins.path(), 0, &radius, &["--log", "warn"])?;
    let rounds = args.sessions.div_ceil(per_round);
    let res = lns_benches::setup_rounds(
        lab,
        rounds,
        &lns_benches::Round {
            tunnels: args.tunnels,
            sessions_per_tunnel: args.sessions_per_tunnel,
            rate: args.rate,
            password: "rad%d",
            extra: &[],
        },
    )?;
    // Where losses happen, if any (FreeRADIUS shares the LNS's namespace).
    lns_benches::print_udp_errors(lab)?;
    let radius = lns_controlplane::ctl::request(&cp.socket, &lns_controlplane::ctl::Request::Radius)?;
    if let lns_controlplane::ctl::Response::Radius { radius } = radius {
        for s in &radius.servers {
            eprintln!(
                "{} {}: {} requests, {} retransmissions, {} timeouts, last rtt {:?} ms",
                s.service, s.address, s.requests, s.retransmissions, s.timeouts, s.last_rtt_ms
            );
        }
    }
    println!(
        "set-up with RADIUS (CHAP Access-Request + Accounting Start per session): {} sessions up, {} failed, \
         in {rounds} rounds of {per_round}: {:.0} sessions/s (mean of rounds), latency p50 {:.2} ms (median), \
         p99 {:.2} ms (worst round)",
        res.up, res.failed, res.rate, res.p50_ms, res.p99_ms
    );
    drop(cp);
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}

fn auth_rate(lab: &Lab, fr: &FreeRadius, args: &Args, users: u32) -> Result<()> {
    use lns_radius::access::{AccessRequest, Credentials, TunnelInfo};
    let _in = lab.lns.enter()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let auth = fr.auth();
    let (n, window) = (args.auths, args.window);
    rt.block_on(async move {
        let mut cfg = ClientConfig::new(vec![ServerConfig::new(auth, SECRET, Service::Authentication)]);
        cfg.max_sockets = 32;
        let (client, _events) = RadiusClient::spawn_with(Client::new(cfg), None);
        let nas = NasIdentity { ip: Some([192, 0, 2, 1].into()), ipv6: None, identifier: Some("bench".into()) };
        let sem = Arc::new(tokio::sync::Semaphore::new(window));
        let t0 = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let mut accepted = 0u64;
        for i in 0..n {
            let permit = Arc::clone(&sem).acquire_owned().await?;
            let u = i % users + 1;
            let challenge: Vec<u8> = (0..16).map(|b| (b as u8) ^ (i as u8)).collect();
            let response = lns_radius::crypto::chap_md5_response(7, format!("rad{u}").as_bytes(), &challenge);
            let mut r = AccessRequest::new(
                format!("user{u}"),
                Credentials::ChapMd5 { ident: 7, challenge, response },
                nas.clone(),
            );
            r.nas_port = Some(i);
            r.nas_port_id = Some(format!("l2tp:1:{i}"));
            r.calling_station_id = Some(format!("lacsim-{u}"));
            r.tunnel = Some(TunnelInfo {
                client_endpoint: "192.0.2.2".into(),
                server_endpoint: "192.0.2.1".into(),
                ipv6: false,
                assignment_id: Some("1".into()),
                client_auth_id: Some("lac".into()),
                server_auth_id: Some("lns".into()),
            });
            let c = client.clone();
            tasks.spawn(async move {
                let r = c.access(&r).await;
                drop(permit);
                matches!(r, Ok(Outcome::Answered(reply)) if reply.accepted())
            });
            while let Some(r) = tasks.try_join_next() {
                accepted += u64::from(r.unwrap_or(false));
            }
        }
        while let Some(r) = tasks.join_next().await {
            accepted += u64::from(r.unwrap_or(false));
        }
        let secs = t0.elapsed().as_secs_f64();
        let servers = client.servers().await?;
        let retrans: u64 = servers.iter().map(|s| s.stats.retransmissions).sum();
        println!(
            "authentication: {n} CHAP Access-Requests ({window} in flight at most) in {secs:.2} s: {:.0} accepted/s \
             ({accepted} accepted, {retrans} retransmissions)",
            accepted as f64 / secs
        );
        anyhow::Ok(())
    })?;
    Ok(())
}

fn accounting_rate(lab: &Lab, fr: &FreeRadius, args: &Args) -> Result<()> {
    // The client's sockets must live in the LNS namespace, where
    // FreeRADIUS listens on its loopback: this thread moves there.
    let _in = lab.lns.enter()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let acct = fr.acct();
    let (n, window) = (args.interims, args.window);
    rt.block_on(async move {
        let mut cfg = ClientConfig::new(vec![ServerConfig::new(acct, SECRET, Service::Accounting)]);
        cfg.max_sockets = 32;
        let (client, _events) = RadiusClient::spawn_with(Client::new(cfg), None);
        let nas = NasIdentity { ip: Some([192, 0, 2, 1].into()), ipv6: None, identifier: Some("bench".into()) };
        let sem = Arc::new(tokio::sync::Semaphore::new(window));
        let boot = 0x6500_0000;
        let t0 = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let mut answered = 0u64;
        for i in 0..n {
            let permit = Arc::clone(&sem).acquire_owned().await?;
            let mut r = AccountingRequest::new(
                AcctStatusType::InterimUpdate,
                acct_session_id(boot, u64::from(i)),
                nas.clone(),
            );
            r.user_name = Some(format!("user{}", i % 250 + 1).into_bytes());
            r.nas_port = Some(i);
            r.framed_ip_address = Some(std::net::Ipv4Addr::from(0xc633_6400 | (i % 250 + 1)));
            r.session_time = Some(300);
            r.counters = Some(Counters {
                input_octets: u64::from(i) * 1000,
                output_octets: u64::from(i) * 5000,
                input_packets: u64::from(i),
                output_packets: u64::from(i) * 4,
            });
            let c = client.clone();
            tasks.spawn(async move {
                let r = c.accounting(&r).await;
                drop(permit);
                matches!(r, Ok(Outcome::Answered(_)))
            });
            while let Some(r) = tasks.try_join_next() {
                answered += u64::from(r.unwrap_or(false));
            }
        }
        while let Some(r) = tasks.join_next().await {
            answered += u64::from(r.unwrap_or(false));
        }
        let secs = t0.elapsed().as_secs_f64();
        let servers = client.servers().await?;
        let (retrans, timeouts) = servers.iter().fold((0, 0), |a, s| (a.0 + s.stats.retransmissions, a.1 + s.stats.timeouts));
        println!(
            "accounting: {n} Interim-Updates ({window} in flight at most) in {secs:.2} s: {:.0} acknowledged/s \
             ({answered} acknowledged, {retrans} retransmissions, {timeouts} timeouts)",
            answered as f64 / secs
        );
        anyhow::Ok(())
    })?;
    Ok(())
}
