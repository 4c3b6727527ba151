//! The event loop of `lns-controlplane`, top to bottom.
//!
//! A driver of the [`Core`]: it owns the UDP socket, the data plane's
//! session table, the credential backend, RADIUS, the dynamic
//! authorization port and the control socket, and decides nothing about
//! subscribers. Per wake-up: feed the core a datagram (or a burst), the
//! time, a backend's answer, an RFC 5176 request or an operator's command;
//! then carry out the core's effects ([`Driver::carry_out`]): write and
//! remove session entries, sample counters, start credential checks, send
//! accounting records, log; send the pass's datagrams together; sleep
//! until the core's next deadline.
//!
//! On SIGINT/SIGTERM every tunnel gets StopCCN ([`Core::shutdown`]); once
//! they are acknowledged (or the grace period is over) every session goes
//! ([`Core::finish`]) and nothing of ours is left in the maps.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::aaa::{AuthBackend, LocalUsers, SharedUsers};
use super::committer::{Committer, Held};
use super::config::Config;
use super::control::{Command, ControlSocket};
use super::dynauth;
use super::fastpath::SessionTable;
use super::metrics;
use super::notice;
use super::ports::{PortDatagram, TunnelPorts};
use super::radius::{self, Radius};
use super::routes::{interface_mtus, MtuAsker, Routes};
use super::store::{self, Store};
use super::tun::TunDevice;
use super::udp::{Batch, L2tpSocket, Outgoing, Received, RecvBatch};
use crate::ctl::{RadiusServerRow, RadiusStatus, Request, Response};
use crate::subscriber::{
    AuthAnswer, Core, CoreConfig, Effect, MapOp, Notice, Records, SessionKey, SlowPathConfig,
};

/// How long an access interface's MTU is taken as known.
const MTU_REFRESH: Duration = Duration::from_secs(30);

/// Datagrams taken from the socket in one pass of the loop.
const RX_BURST: usize = 256;

/// A burst's pass ends early once this many effects wait: a StopCCN ends
/// all of a tunnel's sessions, and 256 of them at once (a LAC hanging up
/// a thousand tunnels) were 256,000 sessions' effects held at once, a
/// peak of 280 bytes a session over what the sessions themselves take.
const EFFECTS_PER_PASS: usize = 8192;

/// Subscriber IP from the L2TP socket (the slow path's) handled in one
/// pass of the loop, after every control message and PPP control frame
/// read in it: under a flood of data, set-ups and keepalives still go
/// first.
const DATA_BUDGET: usize = 64;

/// Subscriber IP waiting for the slow path, at most (datagrams, bytes):
/// the excess is dropped and counted, never queued without bound.
const DATA_QUEUE: usize = 2048;
const DATA_QUEUE_BYTES: usize = 4 << 20;

/// Runs the control plane until SIGINT or SIGTERM.
pub async fn run(mut cfg: Config) -> anyhow::Result<()> {
    // What the last control plane kept (--keep-sessions): its store,
    // written as the sessions changed, however it ended.
    let (store, saved) = open_store(&cfg)?;
    let (mut table, adopted) = SessionTable::open_adopting(&cfg.dataplane, saved.is_some())?;
    if !table.has_dataplane() {
        warn!("running without a data plane (--no-dataplane): sessions are written to no map");
    }
    let users = match &cfg.ppp.users_file {
        Some(path) => LocalUsers::load(path)?,
        None => {
            warn!("no users file: every PPP authentication is refused");
            LocalUsers::default()
        }
    };
    check_user_pools(&users, &cfg)?;
    let socket =
        Arc::new(L2tpSocket::bind_split(cfg.listen).with_context(|| format!("binding UDP {}", cfg.listen))?);
    let listen = socket.local_addr()?;
    let mut control = ControlSocket::bind(&cfg.control_socket)?;
    let (to_loop, mut commands) = mpsc::channel::<Command>(64);
    control.serve(to_loop);
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    info!(
        %listen,
        control_socket = %control.path().display(),
        dataplane = table.has_dataplane(),
        slots = table.size(),
        "lns-controlplane ready"
    );

    let users = Arc::new(SharedUsers::new(users));
    let host_name = String::from_utf8_lossy(&cfg.endpoint.tunnel.host_name).into_owned();
    let radius = match &cfg.radius {
        Some(settings) => {
            let mut settings = settings.clone();
            settings.nas_ip_address = settings.nas_ip_address.or(radius::nas_ip_of(listen.ip()));
            Some((Radius::start(&settings, &host_name)?, settings))
        }
        None => None,
    };
    let auth: Arc<dyn AuthBackend> =
        match radius.as_ref().and_then(|(r, settings)| r.auth_backend(settings, Arc::clone(&users))) {
            Some(backend) => Arc::new(backend),
            None => users.clone(),
        };
    let mut dynauth_jobs = None;
    let mut dynauth_stats = None;
    if let Some((r, settings)) = &radius {
        if let Some(d) = &settings.dynauth {
            let clients = d
                .clients
                .iter()
                .map(|c| dynauth::DynAuthClient {
                    address: c.address,
                    secret: c.secret.clone().into_bytes(),
                    require_message_authenticator: c.require_message_authenticator,
                })
                .collect();
            let server = dynauth::DynAuthServer::new(
                clients,
                d.event_timestamp_window,
                d.require_event_timestamp,
                r.nas().clone(),
            )
            .with_rate_attribute(settings.rate_attribute);
            let (jobs, stats) = dynauth::spawn(d.listen, server)
                .with_context(|| format!("binding the dynamic authorization port {}", d.listen))?;
            dynauth_jobs = Some(jobs);
            dynauth_stats = Some(stats);
        }
    }
    let radius = radius.map(|(r, _)| r);
    // The exception path: a TUN device the kernel routes subscribers'
    // packets into and takes theirs from, and the routes into it (a task
    // of their own: netlink is asynchronous, the effects are not).
    let mut tun = None;
    if let Some(sp) = cfg.slow_path.clone() {
        match TunDevice::create(&sp.tun_name, 1500) {
            Ok(device) => {
                // The kernel forwards what it reads from the device only
                // if the device forwards (IPv4 decides by the interface a
                // packet came in on).
                for family in ["ipv4", "ipv6"] {
                    let knob = format!("/proc/sys/net/{family}/conf/{}/forwarding", device.name());
                    if let Err(e) = std::fs::write(&knob, "1") {
                        warn!(%knob, error = %e, "slow path: cannot turn forwarding on: subscribers' packets from the device will not be forwarded");
                    }
                }
                // The ICMP errors the slow path answers with ("too big")
                // come from one of our own addresses: without accept_local
                // the kernel drops them as martians on the device.
                let knob = format!("/proc/sys/net/ipv4/conf/{}/accept_local", device.name());
                if let Err(e) = std::fs::write(&knob, "1") {
                    warn!(%knob, error = %e, "slow path: cannot set accept_local: its ICMP errors will be dropped");
                }
                let routes = Routes::new(device.ifindex(), sp.table, sp.metric).await?;
                info!(
                    tun = device.name(),
                    table = sp.table,
                    metric = sp.metric,
                    "slow path: subscriber routes into the TUN device"
                );
                tun = Some((device, routes));
            }
            // Without its device the LNS still runs, on the fast path
            // alone, and says so.
            Err(e) => warn!(
                tun = %sp.tun_name,
                error = %e,
                "slow path off: cannot create its TUN device (is /dev/net/tun there?)"
            ),
        }
    }
    if tun.is_none() {
        cfg.slow_path = None;
    }
    let (route_tx, mut route_rx) = mpsc::unbounded_channel::<(std::net::IpAddr, u8, bool)>();
    let tun = tun.map(|(tun, routes)| {
        tokio::spawn(async move {
            while let Some((prefix, len, add)) = route_rx.recv().await {
                let done = if add { routes.add(prefix, len).await } else { routes.remove(prefix, len).await };
                if let Err(e) = done {
                    warn!(error = %e, "slow path route");
                }
            }
        });
        tun
    });
    let now = Instant::now();
    let mut slots = HashMap::new();
    let restored = saved.and_then(|records| {
        match Core::restore(core_config(&cfg, listen, &table, radius.as_ref()), &records, now) {
            Ok(core) => Some(core),
            Err(e) => {
                warn!(error = %e, "cannot take back the sessions the last control plane kept: starting afresh");
                None
            }
        }
    });
    let core = match restored {
        Some(mut core) => {
            for (bank, sid) in table.direct_slot_reservations() {
                core.reserve_session_id(bank, sid);
            }
            // The entries the data plane still has are matched with the
            // sessions taken back; the rest of either side goes.
            let mut present = std::collections::BTreeSet::new();
            let mut removed = 0;
            for (slot, entry) in adopted {
                let key = SessionKey::new(
                    crate::l2tp::TunnelId(entry.local_tunnel_id),
                    crate::l2tp::SessionId(entry.local_session_id),
                );
                if core.knows(key) {
                    slots.insert(key, slot);
                    present.insert(key);
                } else if table.remove(slot).is_ok() {
                    // Set up after the last commit: the LAC was never
                    // answered for it (datagrams leave after the commit),
                    // and asks again.
                    removed += 1;
                }
            }
            core.count_reconciled(crate::subscriber::snapshot::NOT_IN_STORE, removed);
            let ended = core.reconcile(now, &present);
            // DHCPv6 addresses routed beside their entries: those the
            // sessions taken back hold, in their slots; any other /128
            // (written after the last commit, or of an entry removed
            // above) would send its traffic to whoever gets that slot next.
            if let Some(maps) = table.maps() {
                let wanted: HashMap<std::net::Ipv6Addr, u32> = core
                    .address_routes()
                    .into_iter()
                    .filter_map(|(key, a)| slots.get(&key).map(|slot| (a, *slot)))
                    .collect();
                let mut stale = 0;
                for (address, slot) in maps.host_routes_v6().unwrap_or_default() {
                    let entrys_own = table.read(slot).is_some_and(|e| {
                        e.subscriber_ipv6_prefix() == Some((address, 128))
                            || e.subscriber_delegated_prefix() == Some((address, 128))
                    });
                    if wanted.get(&address) != Some(&slot)
                        && !entrys_own
                        && maps.remove_route_v6(address, 128).is_ok()
                    {
                        stale += 1;
                    }
                }
                for (address, slot) in wanted {
                    if let Err(e) = maps.add_route_v6(address, 128, slot) {
                        warn!(%address, slot, error = %e, "cannot route a DHCPv6 address taken back");
                    }
                }
                core.count_reconciled_routes(crate::subscriber::snapshot::ADDRESS_ROUTE_NOT_IN_STORE, stale);
            }
            let c = core.counters();
            info!(
                tunnels = c.tunnels_restored,
                sessions = c.sessions_restored,
                ended_not_in_dataplane = ended,
                entries_removed_not_in_store = removed,
                left_out_no_tunnel = c.reconciled.get(crate::subscriber::snapshot::NO_TUNNEL).copied().unwrap_or(0),
                left_out_no_call = c.reconciled.get(crate::subscriber::snapshot::NO_CALL).copied().unwrap_or(0),
                ended_negotiating = c
                    .reconciled
                    .get(crate::subscriber::snapshot::NEGOTIATING_AT_RESTART)
                    .copied()
                    .unwrap_or(0),
                took = ?now.elapsed(),
                "took back the sessions the last control plane kept"
            );
            core
        }
        None => {
            for (slot, _) in adopted {
                let _ = table.remove(slot);
            }
            if let Some(r) = &radius {
                r.announce_start();
            }
            core_of(&cfg, listen, &table, radius.as_ref(), now)?
        }
    };
    // Each access interface's MTU, which new sessions derive their MRU
    // from (unless ppp.mru is set).
    let (mtu_asker, mut mtu_answers) = match interface_mtus() {
        Ok((asker, answers)) => (Some(asker), Some(answers)),
        Err(e) => {
            warn!(error = %e, "cannot ask the interfaces' MTU: sessions propose the default MRU");
            (None, None)
        }
    };
    let (auth_tx, mut auth_rx) = mpsc::unbounded_channel();
    // The tunnels' own ports (tunnel_ports): sockets opened as tunnels
    // take them, read by tasks that hand their datagrams to this loop.
    let (ports, mut port_rx) = TunnelPorts::new(listen);
    let (scrape_tx, mut scrapes) = mpsc::channel::<metrics::Scrape>(16);
    if let Some(addr) = cfg.metrics_listen {
        metrics::serve(addr, scrape_tx).with_context(|| format!("serving metrics on {addr}"))?;
    }
    let mut d = Driver {
        core,
        socket: socket.clone(),
        table,
        slots,
        ns_without_slot: HashMap::new(),
        tun,
        route_tx,
        tun_errors: 0,
        slow_data: SlowData::default(),
        mtu_asker,
        mtu_asked: HashMap::new(),
        auth,
        users,
        listen,
        flags: cfg.flags.clone(),
        auth_tx,
        radius,
        dynauth_stats,
        outbox: Batch::new(),
        ports,
        ports_generation: 0,
        port_fallbacks: 0,
        log: notice::Limiter::default(),
        datagrams_tx: 0,
        send_errors: 0,
        store: store.map(Committer::start).transpose()?,
        held: Held::default(),
        accounting_out: Vec::new(),
        store_warned: None,
    };
    // Woken when the store's thread has committed a pass.
    let committed = d.store.as_ref().map(Committer::notify);
    let shutdown_grace = cfg.shutdown_grace;
    let keep_sessions = cfg.keep_sessions;
    let mut keep = false;
    let mut rx_batch = RecvBatch::new();
    let mut tun_buf = vec![0u8; 65536];
    let mut drain_until: Option<Instant> = None;
    if d.core.draining() {
        // Killed while stopping: the stop goes on.
        drain_until = Some(d.core.shutdown(Instant::now()));
    }
    // What the restore and the reconciliation changed, in the store
    // before anything leaves.
    d.carry_out(Instant::now());
    d.flush();
    loop {
        let wake_at = [d.core.poll_timeout(), drain_until].into_iter().flatten().min();
        let sleep = async {
            match wake_at {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        let wake = tokio::select! {
            r = socket.recv_batch(&mut rx_batch) => Wake::Datagrams(r),
            Some(p) = port_rx.recv() => Wake::PortDatagram(p),
            () = std::future::ready(()), if !d.slow_data.queue.is_empty() => Wake::DataBacklog,
            () = sleep => Wake::Timer,
            Some(c) = commands.recv() => Wake::Command(c),
            Some(a) = auth_rx.recv() => Wake::Auth(Box::new(a)),
            Some(s) = scrapes.recv() => Wake::Scrape(s),
            Some(r) = async {
                match d.tun.as_ref() {
                    Some(t) => Some(t.recv(&mut tun_buf).await),
                    None => std::future::pending().await,
                }
            } => Wake::Tun(r),
            Some((ifindex, mtu)) = async {
                match mtu_answers.as_mut() {
                    Some(a) => a.recv().await,
                    None => std::future::pending().await,
                }
            } => Wake::InterfaceMtu(ifindex, mtu),
            Some(job) = async {
                match dynauth_jobs.as_mut() {
                    Some(j) => j.recv().await,
                    None => std::future::pending().await,
                }
            } => Wake::DynAuth(job),
            _ = sigterm.recv(), if drain_until.is_none() => Wake::Stop("SIGTERM"),
            _ = sigint.recv(), if drain_until.is_none() => Wake::Stop("SIGINT"),
            _ = sighup.recv() => Wake::Reload,
            () = async {
                match committed.as_ref() {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            } => Wake::Committed,
        };
        let now = Instant::now();
        match wake {
            Wake::Datagrams(Ok(n)) => {
                // A burst (a LAC bringing up many calls) is handled in
                // one pass: the rest of what is waiting, then one flush;
                // taken a recvmmsg(2) batch at a time.
                let mut taken = n;
                loop {
                    for (rx, data) in rx_batch.iter() {
                        d.received(now, rx, data);
                    }
                    if taken >= RX_BURST || d.core.effects_pending() >= EFFECTS_PER_PASS {
                        break;
                    }
                    match socket.try_recv_batch(&mut rx_batch) {
                        Ok(0) => break,
                        Ok(n) => taken += n,
                        Err(e) => {
                            warn!(error = %e, "UDP receive");
                            break;
                        }
                    }
                }
                d.slow_data_turn(now);
            }
            Wake::PortDatagram(p) => {
                // A burst from the tunnels' ports, as from the listen
                // socket: control first, subscriber IP queued.
                d.port_received(now, p);
                for _ in 1..RX_BURST {
                    match port_rx.try_recv() {
                        Ok(p) => d.port_received(now, p),
                        Err(_) => break,
                    }
                }
                d.slow_data_turn(now);
            }
            Wake::DataBacklog => d.slow_data_turn(now),
            Wake::Datagrams(Err(e)) => warn!(error = %e, "UDP receive"),
            Wake::Timer => d.core.handle_timeout(now),
            Wake::InterfaceMtu(ifindex, mtu) => d.core.set_interface_mtu(ifindex, mtu),
            Wake::Tun(Ok(n)) => {
                if let Some(packet) = tun_buf.get(..n) {
                    d.core.handle_tun_packet(now, packet);
                }
                // A burst the kernel routed in is taken in one pass, as
                // the socket's: one flush and one sendmmsg for all of it
                // instead of a wake of the loop per packet.
                if let Some(tun) = d.tun.as_ref() {
                    for _ in 1..RX_BURST {
                        match tun.try_recv(&mut tun_buf) {
                            Ok(Some(n)) => {
                                if let Some(packet) = tun_buf.get(..n) {
                                    d.core.handle_tun_packet(now, packet);
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                warn!(error = %e, "slow path: TUN receive");
                                break;
                            }
                        }
                    }
                }
            }
            Wake::Tun(Err(e)) => warn!(error = %e, "slow path: TUN receive"),
            Wake::Auth(a) => d.core.handle_auth_answer(now, *a),
            Wake::DynAuth(job) => {
                let result = d.core.handle_dynauth(now, &job.request);
                let _ = job.done.send(result);
            }
            Wake::Scrape(reply) => {
                // RADIUS figures come from the client's task: gathered
                // without holding up the loop.
                let snapshot = d.metrics(now);
                let servers = d.radius_servers();
                tokio::spawn(async move {
                    let mut snapshot = snapshot;
                    snapshot.radius = servers.await;
                    let _ = reply.send(snapshot);
                });
            }
            Wake::Command((Request::Radius, reply)) if d.radius.is_some() => {
                // The client and the accounting sender answer
                // asynchronously; the loop does not wait for them.
                let status = d.radius_status();
                tokio::spawn(async move {
                    let _ = reply.send(status.await);
                });
            }
            Wake::Reload => {
                let _ = d.reload();
            }
            // The output it held goes with the flush below.
            Wake::Committed => {}
            Wake::Command((Request::Reload, reply)) => {
                let answer = match d.reload() {
                    Ok(summary) => Response::Reloaded { summary },
                    Err(message) => Response::Error { message },
                };
                let _ = reply.send(answer);
            }
            Wake::Command((Request::Shutdown, reply)) => {
                let (tunnels, sessions) = (d.core.endpoint().tunnel_count(), d.core.session_count());
                info!(tunnels, sessions, "lnsctl shutdown: StopCCN to every tunnel");
                if drain_until.is_none() {
                    drain_until = Some(d.core.shutdown(now));
                }
                let _ = reply.send(Response::ShuttingDown { tunnels, sessions });
            }
            Wake::Command((req, reply)) => {
                let answer = d.request(now, req);
                let _ = reply.send(answer);
            }
            Wake::Stop(sig) if keep_sessions && drain_until.is_none() => {
                info!(
                    signal = sig,
                    sessions = d.core.session_count(),
                    "stopping, keeping every session for the next start"
                );
                keep = true;
            }
            Wake::Stop(sig) => {
                info!(
                    signal = sig,
                    tunnels = d.core.endpoint().tunnel_count(),
                    "stopping: StopCCN to every tunnel"
                );
                drain_until = Some(d.core.shutdown(now));
            }
        }
        d.carry_out(Instant::now());
        d.flush();
        if keep {
            break;
        }
        if let Some(until) = drain_until {
            if d.core.stopped() || Instant::now() >= until {
                break;
            }
        }
    }
    if keep {
        d.keep()?;
    } else {
        d.finish();
        if let Some(r) = &d.radius {
            r.nas_record(lns_radius::accounting::AcctStatusType::AccountingOff);
        }
    }
    if let Some(acct) = d.radius.as_ref().and_then(|r| r.accounting().cloned()) {
        // Every Stop is on disk once this returns; those a server answers
        // in time leave no trace there.
        acct.drain(shutdown_grace.max(Duration::from_secs(1))).await;
    }
    Ok(())
}

/// Users must name configured pools.
fn check_user_pools(users: &LocalUsers, cfg: &Config) -> anyhow::Result<()> {
    let pool_names: Vec<&str> = cfg.ppp.pools.iter().map(|p| p.name.as_str()).collect();
    for u in users.users() {
        if let Some(p) = u.pool.as_ref().filter(|p| !pool_names.contains(&p.as_str())) {
            anyhow::bail!("user {} names pool {p}, which is not configured", u.name);
        }
    }
    Ok(())
}

/// The session store, when sessions are kept (`keep_sessions`), and what
/// it holds (None when empty). Without `keep_sessions` a store an earlier
/// start left is removed: this start removes the entries it describes.
fn open_store(cfg: &Config) -> anyhow::Result<(Option<Store>, Option<Records>)> {
    let path = cfg.state_dir.join(store::FILE);
    let files = [
        path.clone(),
        cfg.state_dir.join(format!("{}-wal", store::FILE)),
        cfg.state_dir.join(format!("{}-shm", store::FILE)),
    ];
    if !cfg.keep_sessions {
        for f in &files {
            match std::fs::remove_file(f) {
                Ok(()) => {
                    info!(file = %f.display(), "removed the session store of an earlier start (keep_sessions is off)")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn!(file = %f.display(), error = %e, "removing an old session store"),
            }
        }
        return Ok((None, None));
    }
    let mut store = match Store::open(&path) {
        Err(e @ store::StoreError::Format { .. }) => {
            warn!(error = %e, "the session store is of another version: starting afresh");
            for f in &files {
                let _ = std::fs::remove_file(f);
            }
            Store::open(&path)?
        }
        other => other?,
    };
    let records = store.read(std::time::SystemTime::now())?;
    info!(store = %path.display(), records = records.0.len(), "session store");
    Ok((Some(store), (!records.0.is_empty()).then_some(records)))
}

/// The core as the configuration describes it, with the session ids the
/// data plane cannot give a direct slot to set aside.
fn core_of(
    cfg: &Config,
    listen: SocketAddr,
    table: &SessionTable,
    radius: Option<&Radius>,
    now: Instant,
) -> anyhow::Result<Core> {
    // Session ids are allocated so that each session has a direct slot of
    // its own in the data plane's table (found there without a hash lookup
    // per packet): one id space per bank of 65,536 slots, and the ids
    // whose slot is beyond the table or another writer's are never handed
    // out.
    let core = Core::new(core_config(cfg, listen, table, radius), now)?;
    for (bank, sid) in table.direct_slot_reservations() {
        core.reserve_session_id(bank, sid);
    }
    Ok(core)
}

/// What the core is told of the configuration.
fn core_config(
    cfg: &Config,
    listen: SocketAddr,
    table: &SessionTable,
    radius: Option<&Radius>,
) -> CoreConfig {
    let mut endpoint = cfg.endpoint.clone();
    endpoint.session_id_banks = table.session_id_banks().unwrap_or(0);
    CoreConfig {
        endpoint,
        listen,
        ppp: cfg.ppp.session.clone(),
        session_timeout: cfg.ppp.session_timeout,
        idle_timeout: cfg.ppp.idle_timeout,
        pools: cfg.ppp.pools.clone(),
        default_pool: cfg.ppp.default_pool.clone(),
        ipv6_pools: cfg.ppp.ipv6_pools.clone(),
        default_ipv6_pool: cfg.ppp.default_ipv6_pool.clone(),
        accounting: radius.and_then(Radius::accounting_config),
        shutdown_grace: cfg.shutdown_grace,
        seed: None,
        mru: cfg.ppp.mru,
        rates: cfg.ppp.rates,
        dhcpv6: cfg.dhcpv6.clone(),
        slow_path: cfg.slow_path.as_ref().map(|_| SlowPathConfig {
            mss_clamp: true,
            icmp_source_v4: cfg.ppp.session.ipcp.as_ref().and_then(|i| i.local_address).or(
                match listen.ip() {
                    std::net::IpAddr::V4(a) if !a.is_unspecified() => Some(a),
                    _ => None,
                },
            ),
            icmp_source_v6: match listen.ip() {
                std::net::IpAddr::V6(a) if !a.is_unspecified() => Some(a),
                _ => None,
            },
        }),
    }
}

enum Wake {
    /// Datagrams from the L2TP socket, in the loop's batch.
    Datagrams(std::io::Result<usize>),
    PortDatagram(PortDatagram),
    Timer,
    Command(Command),
    // Boxed: an answer (with its RADIUS attributes) is several times the
    // size of every other wake.
    Auth(Box<AuthAnswer>),
    DynAuth(dynauth::Job),
    Scrape(metrics::Scrape),
    Tun(std::io::Result<usize>),
    DataBacklog,
    InterfaceMtu(u32, u16),
    Reload,
    Stop(&'static str),
    /// The store's thread committed a pass.
    Committed,
}

/// The core and what carries out its effects.
struct Driver {
    core: Core,
    socket: Arc<L2tpSocket>,
    table: SessionTable,
    /// Each session's slot in the data plane's table.
    slots: HashMap<SessionKey, u32>,
    /// §5.4 numbering of sequenced sessions that have no slot (no data
    /// plane): the counter the data plane would keep.
    ns_without_slot: HashMap<SessionKey, u16>,
    /// The slow path's TUN device, and the queue to the routes' task.
    tun: Option<TunDevice>,
    route_tx: mpsc::UnboundedSender<(std::net::IpAddr, u8, bool)>,
    /// Packets the TUN device did not take.
    tun_errors: u64,
    /// Subscriber IP from the L2TP socket waiting for the slow path.
    slow_data: SlowData,
    /// Asks the MTU of the interfaces tunnels arrive on, and when each
    /// was last asked.
    mtu_asker: Option<MtuAsker>,
    mtu_asked: HashMap<u32, Instant>,
    auth: Arc<dyn AuthBackend>,
    /// The users file the backends read, replaced on reload.
    users: Arc<SharedUsers>,
    /// The L2TP socket's address (a reload does not move it).
    listen: SocketAddr,
    /// The flags the process started with, for a reload.
    flags: super::Flags,
    auth_tx: mpsc::UnboundedSender<AuthAnswer>,
    radius: Option<Radius>,
    dynauth_stats: Option<Arc<std::sync::Mutex<crate::ctl::DynAuthStats>>>,
    /// Datagrams of this pass of the loop, sent by [`Driver::transmit`].
    outbox: Batch,
    /// Sockets on the tunnels' own ports, and the endpoint's
    /// [`crate::l2tp::Endpoint::ports_generation`] they were opened for.
    ports: TunnelPorts,
    ports_generation: u64,
    /// The endpoint's port fallbacks already logged.
    port_fallbacks: u64,
    /// The log, its warnings rate-limited.
    log: notice::Limiter,
    datagrams_tx: u64,
    send_errors: u64,
    /// The session store (--keep-sessions), committed to by a thread of
    /// its own: what changed is committed before the datagrams and
    /// accounting records it led to go out.
    store: Option<Committer>,
    /// The output of passes whose changes are not committed yet.
    held: Held<PassOutput>,
    /// Accounting records of this pass, sent once the pass is committed.
    accounting_out: Vec<crate::subscriber::AcctRecord>,
    /// When a failed commit was last logged.
    store_warned: Option<Instant>,
}

/// What a pass of the loop sends, held until its changes are committed.
struct PassOutput {
    datagrams: Vec<Outgoing>,
    /// From the tunnels' own ports.
    ports: BTreeMap<u16, Vec<Outgoing>>,
    accounting: Vec<crate::subscriber::AcctRecord>,
}

/// The slow path's queue of datagrams from the L2TP socket (see
/// [`DATA_BUDGET`]), and what it and the socket dropped.
#[derive(Default)]
struct SlowData {
    queue: std::collections::VecDeque<(Received, Vec<u8>)>,
    bytes: usize,
    /// Dropped: the queue was full.
    dropped: u64,
    /// The kernel's count of datagrams the socket had no room for.
    socket_overflows: u32,
}

impl Driver {
    /// A datagram from the L2TP socket: control now, subscriber IP into
    /// the slow path's bounded queue.
    fn received(&mut self, now: Instant, rx: &Received, buf: &[u8]) {
        if let Some(n) = rx.overflowed {
            self.slow_data.socket_overflows = n;
        }
        let Some(data) = buf.get(..rx.len) else { return };
        if super::udp::classify(data) == super::udp::Class::Control {
            self.datagram(now, rx, buf);
            return;
        }
        let q = &mut self.slow_data;
        if q.queue.len() >= DATA_QUEUE || q.bytes + data.len() > DATA_QUEUE_BYTES {
            q.dropped += 1;
            return;
        }
        q.bytes += data.len();
        q.queue.push_back((*rx, data.to_vec()));
    }

    /// A datagram from a tunnel's own port.
    fn port_received(&mut self, now: Instant, (port, mut rx, data): PortDatagram) {
        if let Some(n) = rx.overflowed.take() {
            self.ports.note_overflow(port, n);
        }
        self.received(now, &rx, &data);
    }

    /// Sockets on the ports the endpoint's tunnels use, and no others
    /// (when that set changed): before a datagram from a new port is
    /// queued, and at the end of a pass (ports given back, a restore). A
    /// port that cannot be bound is given up: its tunnels go back to the
    /// listen port.
    fn sync_ports(&mut self, now: Instant) {
        let fallbacks = self.core.endpoint().port_fallbacks();
        if fallbacks != self.port_fallbacks {
            info!(
                tunnels = fallbacks - self.port_fallbacks,
                "SCCRQ repeated after our SCCRP from the tunnel's own port: back to the listen port \
                 (a NAT or a LAC that takes only 1701; own_port = false spares the wait)"
            );
            self.port_fallbacks = fallbacks;
        }
        if self.core.endpoint().ports_generation() == self.ports_generation {
            return;
        }
        let failed = self.ports.sync(self.core.endpoint().ports_in_use());
        for port in failed {
            // Its effects (entries rewritten) are carried out by the
            // caller's loop, or the next pass's.
            self.core.port_unavailable(now, port);
        }
        self.ports_generation = self.core.endpoint().ports_generation();
    }

    /// Up to [`DATA_BUDGET`] datagrams of the slow path's queue.
    fn slow_data_turn(&mut self, now: Instant) {
        for _ in 0..DATA_BUDGET {
            let Some((rx, data)) = self.slow_data.queue.pop_front() else { break };
            self.slow_data.bytes -= data.len();
            self.datagram(now, &rx, &data);
        }
    }

    fn datagram(&mut self, now: Instant, rx: &Received, buf: &[u8]) {
        if let (Some(asker), Some(ifindex)) = (&self.mtu_asker, rx.ifindex) {
            // Asked again now and then: an operator may change it, and
            // sessions set up later follow.
            let due = self.mtu_asked.get(&ifindex).is_none_or(|t| now.duration_since(*t) >= MTU_REFRESH);
            if due {
                self.mtu_asked.insert(ifindex, now);
                asker.ask(ifindex);
            }
        }
        if let Some(ifindex) = rx.ifindex.filter(|i| self.core.wants_interface_name(*i)) {
            // Once per interface (a quick ioctl): the core decides by name
            // whether a peer's L2TP came through its IPsec.
            let name = nix::net::if_::if_indextoname(ifindex).ok().and_then(|n| n.into_string().ok());
            self.core.set_interface_name(ifindex, name);
        }
        if let Some(data) = buf.get(..rx.len) {
            self.core.handle_datagram(now, rx.from, rx.local, rx.ifindex, data);
        }
    }

    /// Carries out the core's effects, in order, until none is left
    /// (an effect's outcome may give the core more to do).
    fn carry_out(&mut self, now: Instant) {
        while let Some(effect) = self.core.poll_effect() {
            match effect {
                Effect::Send(d) => {
                    let mut payload = d.payload;
                    if let Some(fill) = d.ns {
                        let ns = match self.slots.get(&fill.key).and_then(|s| self.table.next_ns(*s)) {
                            Some(ns) => ns,
                            None => {
                                let n = self.ns_without_slot.entry(fill.key).or_default();
                                *n = n.wrapping_add(1);
                                n.wrapping_sub(1)
                            }
                        };
                        if let Some(field) = payload.get_mut(fill.offset..fill.offset + 2) {
                            field.copy_from_slice(&ns.to_be_bytes());
                        }
                    }
                    let o = Outgoing { to: d.to, from: d.from, payload };
                    // From its tunnel's own port; the listen socket's when
                    // it has none (or its socket could not be opened).
                    let o = match d.source_port.filter(|p| *p != self.listen.port()) {
                        Some(port) => {
                            // A tunnel that just took a new port: its
                            // socket first, or the SCCRP would leave from
                            // the listen port and the LAC stay there.
                            self.sync_ports(now);
                            self.ports.queue(port, o)
                        }
                        None => Some(o),
                    };
                    self.outbox.out.extend(o);
                }
                Effect::WriteSession { key, entry, op } => {
                    let written = match self.slots.get(&key) {
                        Some(&slot) => self.table.update(slot, &entry),
                        None => self.table.install(&entry).map(|slot| {
                            if let Some(slot) = slot {
                                self.slots.insert(key, slot);
                            }
                        }),
                    };
                    if let Err(e) = written {
                        if op != MapOp::Call {
                            warn!(tunnel_id = key.tunnel.0, session_id = key.session.0, error = %e, "data plane");
                        }
                        self.core.handle_map_failure(now, key, op);
                    }
                }
                Effect::RemoveSession { key } => {
                    self.ns_without_slot.remove(&key);
                    if let Some(slot) = self.slots.remove(&key) {
                        if let Err(e) = self.table.remove(slot) {
                            warn!(slot, error = %e, "removing the session from the data plane");
                            self.core.handle_map_failure(now, key, MapOp::Remove);
                        }
                    }
                }
                Effect::SampleCounters { keys } => {
                    let samples: Vec<_> = keys
                        .into_iter()
                        .map(|k| (k, self.slots.get(&k).map(|s| self.table.stats(*s).into())))
                        .collect();
                    self.core.handle_counters(now, &samples);
                }
                Effect::Authenticate(job) => {
                    // The backend answers in its own time; the answer comes
                    // back through the loop.
                    let job = *job;
                    let answer = self.auth.authenticate(job.request.clone(), job.context);
                    let tx = self.auth_tx.clone();
                    tokio::spawn(async move {
                        let authorization = answer.await;
                        let _ = tx.send(AuthAnswer {
                            key: job.key,
                            seq: job.seq,
                            request: job.request,
                            authorization,
                        });
                    });
                }
                Effect::Accounting(record) => {
                    if self.radius.is_some() {
                        self.accounting_out.push(*record);
                    }
                }
                Effect::Deliver { packet } => {
                    if let Some(tun) = &self.tun {
                        if tun.try_send(&packet).is_err() {
                            self.tun_errors += 1;
                        }
                    }
                }
                Effect::Route { prefix, len, add } => {
                    let _ = self.route_tx.send((prefix, len, add));
                }
                Effect::AddressRoute { key, address, add } => {
                    // Beside the session's entry in the data plane's
                    // prefix maps; taken out by address (the entry may be
                    // gone already).
                    if let Some(maps) = self.table.maps() {
                        let done = match (add, self.slots.get(&key)) {
                            (true, Some(&slot)) => maps.add_route_v6(address, 128, slot),
                            (true, None) => Ok(()),
                            (false, _) => maps.remove_route_v6(address, 128).map(|_| ()),
                        };
                        if let Err(e) = done {
                            warn!(%address, add, error = %e, "routing a DHCPv6 address in the data plane");
                        }
                    }
                }
                Effect::Notice(n) => {
                    let slot = match &n {
                        Notice::SessionUp { key, .. } => self.slots.get(key).copied(),
                        _ => None,
                    };
                    self.log.log(&n, slot, now);
                }
            }
        }
    }

    fn transmit(&mut self) {
        let (sent, failed) = self.ports.send();
        self.datagrams_tx += sent;
        self.send_errors += failed;
        let queued = self.outbox.out.len() as u64;
        if queued == 0 {
            return;
        }
        let outcome = self.socket.send_batch(&mut self.outbox);
        // A full socket buffer drops the rest, as a lost datagram is:
        // retransmission recovers it.
        let failed = (outcome.failed + self.outbox.out.len()) as u64;
        self.outbox.out.clear();
        self.datagrams_tx += queued - failed;
        if failed > 0 {
            self.send_errors += failed;
            debug!(failed, "UDP send");
        }
    }

    /// An operator's request: the core answers, the driver adds what only
    /// it knows (slots, the socket's counters, the XDP verdicts).
    fn request(&mut self, now: Instant, req: Request) -> Response {
        match self.core.handle_request(now, req) {
            Response::Sessions { mut sessions } => {
                for row in &mut sessions {
                    let key = SessionKey::new(
                        crate::l2tp::TunnelId(row.tunnel_id),
                        crate::l2tp::SessionId(row.session_id),
                    );
                    row.slot = self.slots.get(&key).copied();
                    if row.slot.is_none() {
                        row.dataplane_state = None;
                    }
                    if let Some(slot) = row.slot {
                        // Zeroed when the session took the slot.
                        let now = self.table.stats(slot);
                        row.fast_path = crate::subscriber::Counters::from(now);
                        row.policed = crate::ctl::Policed {
                            up_packets: now.up_policed_packets,
                            up_bytes: now.up_policed_bytes,
                            down_packets: now.down_policed_packets,
                            down_bytes: now.down_policed_bytes,
                        };
                    }
                }
                Response::Sessions { sessions }
            }
            Response::Stats { mut stats } => {
                stats.dataplane = self.table.has_dataplane();
                stats.datagrams_tx = self.datagrams_tx;
                stats.send_errors = self.send_errors;
                stats.slots_in_use = self.table.in_use();
                stats.slots_total = self.table.size();
                stats.slots_off_direct = self.table.direct_misses();
                if let Some(store) = &self.store {
                    stats.store = store.stats_map();
                }
                let endpoint = self.core.endpoint();
                stats.tunnel_ports = BTreeMap::from([
                    ("sockets_open".to_string(), self.ports.open() as u64),
                    ("tunnels_on_own_port".to_string(), endpoint.tunnels_on_own_ports()),
                    ("fallbacks".to_string(), endpoint.port_fallbacks()),
                    ("unusable".to_string(), endpoint.unusable_port_count() as u64),
                ]);
                if self.tun_errors > 0 {
                    stats.slow_path.insert("tun_send_errors".into(), self.tun_errors);
                }
                // Under a flood: what the slow path's queue and the
                // socket had no room for.
                if self.slow_data.dropped > 0 {
                    stats.slow_path.insert("up_queue_full".into(), self.slow_data.dropped);
                }
                let overflows = u64::from(self.slow_data.socket_overflows) + self.ports.overflows();
                if overflows > 0 {
                    stats.slow_path.insert("socket_overflows".into(), overflows);
                }
                // Of those, the control messages' socket's (apart from the
                // data's): what a flood should never reach.
                if let Some(n) = self.socket.control_overflows().filter(|n| *n > 0) {
                    stats.dropped.insert("control_socket_overflows".into(), n.into());
                }
                stats.xdp = self
                    .table
                    .maps()
                    .and_then(|m| m.counters().ok())
                    .map(|snap| snap.0.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
                Response::Stats { stats }
            }
            other => other,
        }
    }

    /// SIGHUP or `lnsctl reload`: the file again, under the same flags.
    /// Everything is read and checked before anything changes, so a
    /// broken file leaves the running configuration as it was.
    fn reload(&mut self) -> Result<String, String> {
        let result = (|| -> anyhow::Result<String> {
            let cfg = Config::load(&self.flags)?;
            let users = match &cfg.ppp.users_file {
                Some(path) => LocalUsers::load(path)?,
                None => LocalUsers::default(),
            };
            check_user_pools(&users, &cfg)?;
            let n = users.users().count();
            let mut core = core_config(&cfg, self.listen, &self.table, self.radius.as_ref());
            if self.tun.is_none() {
                // No device to carry it: the slow path stays off.
                core.slow_path = None;
            }
            let summary = self.core.reconfigure(Instant::now(), core)?;
            self.users.replace(users);
            if cfg.listen != self.listen && cfg.listen.port() != 0 {
                warn!(listen = %cfg.listen, "reload: the L2TP address changes at the next start, not now");
            }
            let radius = self.reload_radius(cfg.radius.as_ref());
            Ok(format!("{summary}, {n} local users{radius}"))
        })();
        match result {
            Ok(summary) => {
                info!(summary, "configuration reloaded");
                Ok(summary)
            }
            Err(e) => {
                let message = format!("{e:#}: the running configuration stays");
                warn!("reload: {message}");
                Err(message)
            }
        }
    }

    /// The reload's part of RADIUS (after everything was checked):
    /// servers, secrets and timers change now, what needs a restart is
    /// said. Returns the summary's words, "" without RADIUS.
    fn reload_radius(&mut self, settings: Option<&super::config::RadiusSettings>) -> String {
        match (self.radius.as_mut(), settings) {
            (Some(r), Some(settings)) => {
                let mut settings = settings.clone();
                settings.nas_ip_address = settings.nas_ip_address.or(radius::nas_ip_of(self.listen.ip()));
                let summary = r.reconfigure(&settings);
                // on_no_response is the backend's.
                if let Some(backend) = r.auth_backend(r.settings(), Arc::clone(&self.users)) {
                    self.auth = Arc::new(backend);
                }
                format!("; {summary}")
            }
            (Some(_), None) => {
                warn!("reload: the file has no [radius]: RADIUS stays on until the next start");
                "; RADIUS: the file has none, it stays on until the next start".into()
            }
            (None, Some(_)) => {
                warn!("reload: [radius] is turned on at the next start, not now");
                "; RADIUS: turned on at the next start, not now".into()
            }
            (None, None) => String::new(),
        }
    }

    /// What a scrape of `/metrics` reports, but RADIUS.
    fn metrics(&mut self, now: Instant) -> metrics::Snapshot {
        let stats = match self.request(now, Request::ShowStats) {
            Response::Stats { stats } => stats,
            _ => Default::default(),
        };
        metrics::Snapshot {
            stats,
            tunnels: self.core.tunnel_states(),
            sessions: self.core.session_states(),
            pools: self.core.pool_usage(),
            ipv6_pools: self.core.ipv6_pool_usage(),
            radius: Vec::new(),
        }
    }

    /// A stop that keeps every session: the last changes are committed
    /// (the store is whole after every commit; this one only brings it up
    /// to now), the store is closed, the data plane's entries stay for
    /// the next start.
    fn keep(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        self.carry_out(now);
        self.flush();
        let path = self.store.as_ref().map(|s| s.path().display().to_string()).unwrap_or_default();
        if let Some(store) = self.drain_store() {
            store.close().context("closing the session store")?;
        }
        self.table.keep_on_exit();
        info!(
            sessions = self.core.session_count(),
            tunnels = self.core.endpoint().tunnel_count(),
            store = %path,
            "lns-controlplane stopped; its sessions stay in the data plane for the next start"
        );
        Ok(())
    }

    /// Nothing of ours stays in the maps, nor in the store.
    fn finish(&mut self) {
        let now = Instant::now();
        self.core.finish(now);
        self.carry_out(now);
        let failed = self.table.remove_all();
        if failed > 0 {
            warn!(failed, "session entries could not be removed from the data plane");
        }
        self.flush();
        if let Some(mut store) = self.drain_store() {
            if let Err(e) = store.clear().and_then(|()| store.close()) {
                warn!(error = %e, "emptying the session store");
            }
        }
        info!(tunnels_left = self.core.endpoint().tunnel_count(), "lns-controlplane stopped");
    }

    /// The end of a pass (output commit): what the pass changed goes to
    /// the store's thread, and its datagrams and accounting records are
    /// held until it is committed (with those of the passes before it).
    /// So whatever a peer or a RADIUS server saw is in the store: a
    /// control plane killed at any moment is followed by one that goes on
    /// from there, and never sends a LAC an Ns it already had, nor a
    /// second Accounting Start. The loop goes on meanwhile; see
    /// [`super::committer`].
    fn flush(&mut self) {
        // Ports given back in this pass close; a port that could not be
        // opened (at a restore) has its tunnels' entries rewritten now.
        self.sync_ports(Instant::now());
        self.carry_out(Instant::now());
        let Some(store) = self.store.as_mut() else {
            // No store: what changed goes nowhere, and is not kept.
            self.core.discard_changes();
            self.send_output();
            return;
        };
        let now = Instant::now();
        let changes = self.core.take_changes(now);
        store.note_encode(now.elapsed());
        match changes {
            Ok(changes) => {
                store.submit(changes, std::time::SystemTime::now());
            }
            Err(e) => self.store_failed(1, &anyhow::Error::from(e)),
        }
        let Some(store) = self.store.as_mut() else { return };
        if !(store.idle() && self.held.is_empty()) {
            let out = PassOutput {
                datagrams: std::mem::take(&mut self.outbox.out),
                ports: self.ports.take_queued(),
                accounting: std::mem::take(&mut self.accounting_out),
            };
            if !(out.datagrams.is_empty() && out.ports.is_empty() && out.accounting.is_empty()) {
                self.held.hold(store.submitted(), out);
            }
        }
        self.release();
    }

    /// Sends the output of the passes the store's thread has committed.
    fn release(&mut self) {
        let Some(store) = self.store.as_mut() else { return };
        let progress = store.progress();
        let committed = progress.committed;
        self.report_failed(progress);
        self.release_upto(committed);
    }

    fn release_upto(&mut self, committed: u64) {
        // In order: a pass's output is left where carry_out put it only
        // when nothing is held before it (flush), so the outbox holds
        // nothing that should go after these.
        for out in self.held.release(committed) {
            self.outbox.out.extend(out.datagrams);
            self.ports.queue_again(out.ports);
            self.accounting_out.extend(out.accounting);
        }
        self.send_output();
    }

    /// The commits the store's thread reports failed, if any.
    fn report_failed(&mut self, progress: super::committer::Progress) {
        if progress.failed > 0 {
            let e = progress.error.map_or_else(|| anyhow::anyhow!("commit failed"), anyhow::Error::from);
            self.store_failed(progress.failed, &e);
        }
    }

    /// A commit that failed: the output it held is sent all the same (a
    /// peer left unanswered would retry and give up); a crash before the
    /// next good commit loses what it held.
    fn store_failed(&mut self, failed: u64, e: &anyhow::Error) {
        let now = Instant::now();
        if self.store_warned.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
            warn!(error = %e, failed, "session store: commit failed");
            self.store_warned = Some(now);
        }
    }

    /// The store once every pass handed to its thread is committed, and
    /// the output they held sent: for a stop.
    fn drain_store(&mut self) -> Option<Store> {
        let (store, progress) = self.store.take()?.stop();
        self.report_failed(progress);
        self.release_upto(u64::MAX);
        if store.is_none() {
            warn!("session store: its thread ended early; the store is left as a killed process leaves it");
        }
        store
    }

    /// The datagrams and accounting records ready to go.
    fn send_output(&mut self) {
        self.transmit();
        if let Some(r) = &self.radius {
            for record in self.accounting_out.drain(..) {
                r.send(&record);
            }
        }
    }

    /// Each RADIUS server's state and counters, from the client's task.
    fn radius_servers(&self) -> impl std::future::Future<Output = Vec<RadiusServerRow>> + Send + 'static {
        let client = self.radius.as_ref().map(|r| r.client().clone());
        async move {
            let Some(client) = client else { return Vec::new() };
            let (servers, _) = Radius::status(client, None).await;
            servers.into_iter().map(server_row).collect()
        }
    }

    /// `lnsctl radius`: gathered from the client and the accounting
    /// sender without holding up the loop.
    fn radius_status(&self) -> impl std::future::Future<Output = Response> + Send + 'static {
        let parts = self.radius.as_ref().map(|r| (r.client().clone(), r.accounting().cloned()));
        let dynauth = self.dynauth_stats.as_ref().and_then(|s| s.lock().ok().map(|s| s.clone()));
        async move {
            let Some((client, accounting)) = parts else {
                return Response::Radius { radius: RadiusStatus::default() };
            };
            let (servers, accounting) = Radius::status(client, accounting).await;
            let servers = servers.into_iter().map(server_row).collect();
            Response::Radius { radius: RadiusStatus { enabled: true, servers, accounting, dynauth } }
        }
    }
}

/// A server as `lnsctl radius` and the metrics show it.
fn server_row(s: lns_radius::client::ServerStatus) -> RadiusServerRow {
    RadiusServerRow {
        address: s.address.to_string(),
        service: match s.service {
            lns_radius::client::Service::Authentication => "authentication",
            lns_radius::client::Service::Accounting => "accounting",
        }
        .into(),
        state: match s.state {
            lns_radius::client::ServerState::Alive => "alive",
            lns_radius::client::ServerState::Dead => "dead",
        }
        .into(),
        requests: s.stats.requests,
        retransmissions: s.stats.retransmissions,
        replies: s.stats.replies,
        timeouts: s.stats.timeouts,
        bad_replies: s.stats.bad_authenticator
            + s.stats.missing_message_authenticator
            + s.stats.bad_message_authenticator
            + s.stats.malformed
            + s.stats.unknown_identifier
            + s.stats.bad_code,
        status_server_sent: s.stats.status_server_sent,
        last_rtt_ms: s.stats.last_rtt.map(|d| d.as_secs_f64() * 1000.0),
        missing_message_authenticator: s.stats.missing_message_authenticator,
        bad_message_authenticator: s.stats.bad_message_authenticator,
        message_authenticator: s.message_authenticator.to_string(),
        rtt: crate::ctl::RttHistogram {
            bounds_ms: lns_radius::client::RTT_BOUNDS.iter().map(|b| b.as_secs_f64() * 1000.0).collect(),
            counts: s.stats.rtt.counts.to_vec(),
            sum_ms: s.stats.rtt.sum.as_secs_f64() * 1000.0,
        },
    }
}
