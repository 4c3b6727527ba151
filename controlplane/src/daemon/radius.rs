//! RADIUS for the control plane: an [`AuthBackend`] that asks the
//! configured servers (PAP, CHAP-MD5 and MS-CHAPv2 relayed as RFC 2865 /
//! RFC 2548 attributes), and the accounting records of each session
//! (RFC 2866 Start, Interim-Update, Stop), handed to
//! [`super::accounting`] to send.
//!
//! What the LNS knows of a call (L2TP ids, the LAC's AVPs) becomes the
//! same attributes in Access-Request and Accounting-Request: NAS-Port
//! (tunnel id × 65536 + session id, stable for the session's life),
//! NAS-Port-Id, Calling/Called-Station-Id, Connect-Info, the RFC 2868
//! Tunnel-* attributes and the RFC 4679 access-line attributes the LAC
//! passed in RFC 5515 AVPs.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lns_radius::access::{AccessRequest, Credentials, FramedIpAddress, NasIdentity, TunnelInfo};
use lns_radius::accounting::{acct_session_id, AccountingRequest, AcctStatusType, Counters};
use lns_radius::attribute::{acct_authentic, acct_terminate_cause, AttributeRepr};
use lns_radius::client::{ClientConfig, NoAnswerPolicy, Outcome, RetransmitConfig, ServerConfig, Service};
use lns_radius::driver::{RadiusClient, ServerEvent};
use lns_radius::microsoft::MsChap2Response;
use lns_radius::VendorSpecific;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::aaa::{AuthBackend, AuthContext, Authorization, SharedUsers};
use super::accounting::{AccountingHandle, AccountingStatus};
use super::config::{NoResponsePolicy, RadiusServerEntry, RadiusSettings};
use crate::l2tp::avp::AccessLine;
use crate::ppp::{AuthDecision, AuthMaterial, AuthMethod, AuthRequest};
use crate::subscriber::{AccountingConfig, AcctKind, AcctRecord};

/// RFC 4679 (ADSL Forum / Broadband Forum) vendor id: the RADIUS home of
/// the access-line values RFC 5515 carries in L2TP.
pub const VENDOR_ADSL_FORUM: u32 = 3561;

/// Seconds since the epoch (RADIUS Event-Timestamp).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// NAS-Port of a session: unique among the LNS's live sessions and stable
/// for the session's life (RFC 2865 §5.5 "need not be unique" across
/// time; Disconnect-Request can name it).
pub fn nas_port(tunnel_id: u16, session_id: u16) -> u32 {
    u32::from(tunnel_id) << 16 | u32::from(session_id)
}

/// The call's description, shared by Access-Request and Accounting-Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallAttributes {
    pub nas_port: u32,
    pub nas_port_id: String,
    pub calling_station_id: Option<String>,
    pub called_station_id: Option<String>,
    pub connect_info: Option<String>,
    pub tunnel: TunnelInfo,
    /// RFC 4679 access-line attributes (Vendor-Specific 3561).
    pub extra: Vec<AttributeRepr>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl CallAttributes {
    pub fn new(ctx: &AuthContext, host_name: &str) -> CallAttributes {
        let info = &ctx.info;
        // Connect-Info (RFC 2869 §5.11) in the usual "tx/rx" bit/s form.
        let connect_info = match (info.tx_connect_speed, info.rx_connect_speed) {
            (Some(tx), Some(rx)) if tx != rx => Some(format!("{tx}/{rx}")),
            (Some(tx), _) => Some(tx.to_string()),
            (None, Some(rx)) => Some(rx.to_string()),
            (None, None) => None,
        };
        let mut extra = Vec::new();
        for line in &info.access_line {
            let (typ, value) = match line {
                AccessLine::AgentCircuitId(v) => (1u8, v.clone()),
                AccessLine::AgentRemoteId(v) => (2u8, v.clone()),
                // RFC 5515 numbered its AVPs after RFC 4679's attributes;
                // RADIUS has 32 bits for the rate.
                AccessLine::DataRate { attr, bps } => match u8::try_from(*attr) {
                    Ok(t) => (t, u32::try_from(*bps).unwrap_or(u32::MAX).to_be_bytes().to_vec()),
                    Err(_) => continue,
                },
            };
            if value.is_empty() || value.len() > 247 {
                continue;
            }
            if let Ok(a) =
                AttributeRepr::vendor_specific(&VendorSpecific::single(VENDOR_ADSL_FORUM, typ, value))
            {
                extra.push(a);
            }
        }
        CallAttributes {
            nas_port: nas_port(ctx.tunnel_id, ctx.session_id),
            nas_port_id: format!("l2tp:{}:{}", ctx.tunnel_id, ctx.session_id),
            calling_station_id: info.calling_number.as_deref().map(text).filter(|s| !s.is_empty()),
            called_station_id: info.called_number.as_deref().map(text).filter(|s| !s.is_empty()),
            connect_info,
            tunnel: TunnelInfo {
                client_endpoint: ctx.lac.ip().to_string(),
                server_endpoint: ctx.local.ip().to_string(),
                ipv6: ctx.lac.is_ipv6(),
                assignment_id: Some(ctx.tunnel_id.to_string()),
                client_auth_id: Some(text(&ctx.lac_hostname)).filter(|s| !s.is_empty()),
                server_auth_id: Some(host_name.to_string()).filter(|s| !s.is_empty()),
            },
            extra,
        }
    }
}

/// The Access-Request relaying what PPP received; an error names what the
/// peer sent that cannot be relayed.
pub fn access_request(
    req: &AuthRequest,
    call: &CallAttributes,
    nas: &NasIdentity,
) -> Result<AccessRequest, &'static str> {
    let credentials = match &req.material {
        AuthMaterial::Pap { password } => {
            if password.len() > 128 {
                return Err("PAP password over 128 octets");
            }
            Credentials::Pap { password: password.clone() }
        }
        AuthMaterial::ChapMd5 { identifier, challenge, response } => Credentials::ChapMd5 {
            ident: *identifier,
            challenge: challenge.clone(),
            response: response.as_slice().try_into().map_err(|_| "CHAP response not 16 octets")?,
        },
        AuthMaterial::MsChapV2 {
            identifier,
            authenticator_challenge,
            peer_challenge,
            nt_response,
            flags,
        } => Credentials::MsChapV2 {
            authenticator_challenge: *authenticator_challenge,
            response: MsChap2Response {
                ident: *identifier,
                flags: *flags,
                peer_challenge: *peer_challenge,
                nt_response: *nt_response,
            },
        },
    };
    if req.username.is_empty() || req.username.len() > 253 {
        return Err("user name empty or over 253 octets");
    }
    let mut r = AccessRequest::new(req.username.clone(), credentials, nas.clone());
    r.nas_port = Some(call.nas_port);
    r.nas_port_id = Some(call.nas_port_id.clone());
    r.calling_station_id = call.calling_station_id.clone();
    r.called_station_id = call.called_station_id.clone();
    r.connect_info = call.connect_info.clone();
    r.tunnel = Some(call.tunnel.clone());
    r.extra = call.extra.clone();
    Ok(r)
}

fn seconds(v: Option<u32>) -> Option<Duration> {
    v.filter(|s| *s > 0).map(|s| Duration::from_secs(u64::from(s)))
}

/// What an Access-Accept authorizes, in the control plane's terms. An
/// MS-CHAPv2 accept without MS-CHAP2-Success cannot be completed (the
/// peer would not trust us) and is a reject.
pub fn authorization(method: AuthMethod, a: lns_radius::access::Authorization) -> Authorization {
    let mut decision = AuthDecision::accept();
    if method == AuthMethod::MsChapV2 {
        match &a.ms_chap2_success {
            Some(s) => decision.authenticator_response = Some(s.authenticator_response().to_string()),
            None => return Authorization::reject("Authentication failed"),
        }
    }
    Authorization {
        decision,
        ipv4: match a.framed_ip_address {
            Some(FramedIpAddress::Address(ip)) => Some(ip),
            // NAS-selects (and user-selects, which PPP cannot honour
            // here): an address from the pool.
            _ => None,
        },
        pool: a.framed_pool,
        ipv6_prefix: a.framed_ipv6_prefixes.first().map(|p| (p.address, p.len)),
        ipv6_pool: a.framed_ipv6_pool,
        delegated_prefix: a.delegated_ipv6_prefix.map(|p| (p.address, p.len)),
        dns: a.dns_servers,
        dns_ipv6: a.dns_server_ipv6_addresses,
        session_timeout: seconds(a.session_timeout),
        idle_timeout: seconds(a.idle_timeout),
        interim_interval: seconds(a.acct_interim_interval),
        class: a.class,
        rates: Default::default(),
    }
}

/// The reject text for PPP: MS-CHAP-Error's for MS-CHAPv2, else the
/// server's Reply-Message, else a plain one.
fn reject(a: &lns_radius::access::Authorization) -> Authorization {
    let message = a.reply_message.first().cloned().unwrap_or_else(|| "Authentication failed".into());
    Authorization::reject(&message)
}

/// The RADIUS authentication backend.
pub struct RadiusAuth {
    client: RadiusClient,
    nas: NasIdentity,
    host_name: String,
    /// `on_no_response = "local"`: the users file answers instead.
    fallback: Option<Arc<SharedUsers>>,
    /// `[radius] rate_attribute`.
    rate_attribute: Option<lns_radius::attribute::AttributeType>,
}

impl AuthBackend for RadiusAuth {
    fn authenticate(
        &self,
        request: AuthRequest,
        context: AuthContext,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Authorization> + Send + 'static>> {
        let call = CallAttributes::new(&context, &self.host_name);
        let access = access_request(&request, &call, &self.nas);
        let (client, fallback) = (self.client.clone(), self.fallback.clone());
        let rate_attribute = self.rate_attribute;
        Box::pin(async move {
            let access = match access {
                Ok(a) => a,
                Err(why) => {
                    debug!(why, "cannot relay the credentials to RADIUS");
                    return Authorization::reject("Authentication failed");
                }
            };
            match client.access(&access).await {
                Ok(Outcome::Answered(reply)) => match reply.authorization() {
                    Ok(a) if reply.accepted() => match reply.rate_limits(rate_attribute) {
                        Ok(rates) => Authorization { rates, ..authorization(request.method, a) },
                        Err(e) => {
                            warn!(error = %e, "RADIUS rate limits unreadable: refusing");
                            Authorization::reject("Authentication failed")
                        }
                    },
                    Ok(a) => reject(&a),
                    Err(e) => {
                        warn!(error = %e, "RADIUS answer unreadable: refusing");
                        Authorization::reject("Authentication failed")
                    }
                },
                Ok(Outcome::NoAnswer { dropped: Some(why), .. }) => {
                    // The servers answered, but their replies were dropped
                    // (the client logs why, per server): not a matter for
                    // the local users file, which stands in for servers
                    // that are away.
                    warn!(reason = %why, "RADIUS replies dropped, none taken: refusing");
                    Authorization::reject("Authentication service unavailable")
                }
                Ok(Outcome::NoAnswer { dropped: None, .. }) => match fallback {
                    Some(users) => {
                        warn!("no RADIUS server answered: the local users file decides");
                        users.authenticate(request, context).await
                    }
                    None => {
                        warn!("no RADIUS server answered: refusing");
                        Authorization::reject("Authentication service unavailable")
                    }
                },
                Err(e) => {
                    warn!(error = %e, "RADIUS request failed");
                    Authorization::reject("Authentication failed")
                }
            }
        })
    }
}

/// The core's counters as RFC 2866 reports them (Input is what came from
/// the subscriber, the upstream).
pub fn radius_counters(c: &crate::subscriber::Counters) -> Counters {
    Counters {
        input_octets: c.up_bytes,
        output_octets: c.down_bytes,
        input_packets: c.up_packets,
        output_packets: c.down_packets,
    }
}

/// The first half of every Acct-Session-Id of this process: the time it
/// started, in seconds, but past the last one recorded in `state_dir`, so
/// that two starts within a second (or a clock stepped back) still give
/// different ids.
fn boot_id(state_dir: &std::path::Path) -> u64 {
    let path = state_dir.join("acct-boot");
    let last = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<u64>().ok());
    let boot = last.map_or(unix_now(), |l| unix_now().max(l.saturating_add(1)));
    let written = std::fs::create_dir_all(state_dir)
        .and_then(|()| std::fs::write(&path, format!("{boot}\n")))
        .and_then(|()| std::fs::File::open(&path)?.sync_all());
    if let Err(e) = written {
        warn!(path = %path.display(), error = %e, "cannot record the boot id: Acct-Session-Ids rely on the clock");
    }
    boot
}

/// RADIUS in the control plane: the client, the NAS's identity, and the
/// accounting sender.
pub struct Radius {
    client: RadiusClient,
    nas: NasIdentity,
    host_name: String,
    /// Acct-Session-Id: this start's time and a counter.
    boot: u64,
    interim_default: Option<Duration>,
    accounting: Option<AccountingHandle>,
    auth_servers: bool,
    /// What it runs with (a reload compares the file's with it).
    settings: RadiusSettings,
}

/// The client engine's configuration of `[radius]`.
fn client_config(settings: &RadiusSettings) -> ClientConfig {
    let servers: Vec<ServerConfig> = settings
        .auth_servers
        .iter()
        .map(|s| (s, Service::Authentication))
        .chain(settings.acct_servers.iter().map(|s| (s, Service::Accounting)))
        .map(|(s, service)| ServerConfig {
            require_message_authenticator: s.require_message_authenticator,
            ..ServerConfig::new(s.address, s.secret.clone(), service)
        })
        .collect();
    let mut cfg = ClientConfig::new(servers);
    let irt = settings.timeout;
    let mrt = (irt * 8).max(irt);
    // MRD: long enough for every retransmission asked for.
    let mrd =
        (0..=settings.retries).fold(Duration::ZERO, |acc, i| acc + (irt * 2u32.pow(i.min(16))).min(mrt));
    cfg.retransmit = RetransmitConfig { irt, mrc: settings.retries, mrt, mrd: mrd + irt };
    cfg.status_server_interval = settings.dead_time;
    cfg.authentication_policy = match settings.on_no_response {
        NoResponsePolicy::Reject => NoAnswerPolicy::Reject,
        NoResponsePolicy::Local => NoAnswerPolicy::FallbackLocal,
    };
    cfg
}

/// Servers of `new` that `old` does not have (by address).
fn servers_not_in(new: &[RadiusServerEntry], old: &[RadiusServerEntry]) -> usize {
    new.iter().filter(|n| !old.iter().any(|o| o.address == n.address)).count()
}

impl Radius {
    /// Start the client (and the accounting sender, with its spool);
    /// needs a tokio runtime.
    pub fn start(settings: &RadiusSettings, host_name: &str) -> anyhow::Result<Radius> {
        let (client, events) = RadiusClient::spawn(client_config(settings));
        let nas = NasIdentity {
            ip: settings.nas_ip_address,
            ipv6: None,
            identifier: Some(settings.nas_identifier.clone()),
        };
        let accounting = if settings.acct_servers.is_empty() {
            None
        } else {
            Some(AccountingHandle::spawn(client.clone(), &settings.state_dir, settings.dead_time, events)?)
        };
        let radius = Radius {
            client,
            nas,
            host_name: host_name.to_string(),
            boot: if settings.acct_servers.is_empty() { unix_now() } else { boot_id(&settings.state_dir) },
            interim_default: settings.interim_interval,
            accounting,
            auth_servers: !settings.auth_servers.is_empty(),
            settings: settings.clone(),
        };
        Ok(radius)
    }

    /// A fresh start: Accounting-On (RFC 2866 §5.1: any session the
    /// server still thinks open on this NAS is not). Not sent by a control
    /// plane that took its sessions back.
    pub fn announce_start(&self) {
        self.nas_record(AcctStatusType::AccountingOn);
    }

    /// Accounting-On (this NAS starts: any session the server still thinks
    /// open here is not) or Accounting-Off (RFC 2866 §5.1), sent once.
    pub fn nas_record(&self, status: AcctStatusType) {
        let Some(acct) = &self.accounting else { return };
        let mut r = AccountingRequest::new(status, acct_session_id(self.boot, 0), self.nas.clone());
        r.authentic = None;
        r.event_timestamp = u32::try_from(unix_now()).ok();
        acct.send(r, false);
    }

    /// A reload: the servers (added, removed, secrets,
    /// `require_message_authenticator`), `timeout`, `retries`, `dead_time`
    /// and `on_no_response` (for the backend [`Radius::auth_backend`] makes
    /// next) take effect for the requests sent from now on; requests in
    /// flight finish or fail over as before, and a server kept keeps its
    /// state and counters. What only a restart changes (the accounting
    /// spool, the dynamic authorization port and clients, the NAS's
    /// identity, the default interim interval, servers for a service that
    /// had none or has none left) stays as it runs and is named in the
    /// summary. Cannot fail: the file was checked whole before.
    pub fn reconfigure(&mut self, new: &RadiusSettings) -> String {
        let old = &self.settings;
        let mut later = Vec::new();
        let mut applied = new.clone();
        if old.auth_servers.is_empty() != new.auth_servers.is_empty() {
            later.push(if new.auth_servers.is_empty() {
                "no authentication server left"
            } else {
                "authentication servers where there were none"
            });
            applied.auth_servers = old.auth_servers.clone();
        }
        if old.acct_servers.is_empty() != new.acct_servers.is_empty() {
            later.push(if new.acct_servers.is_empty() {
                "no accounting server left"
            } else {
                "accounting servers where there were none"
            });
            applied.acct_servers = old.acct_servers.clone();
        }
        if old.state_dir != new.state_dir {
            later.push("state_dir");
            applied.state_dir = old.state_dir.clone();
        }
        if old.dynauth != new.dynauth {
            later.push("[radius.dynauth]");
            applied.dynauth = old.dynauth.clone();
        }
        if old.nas_identifier != new.nas_identifier || old.nas_ip_address != new.nas_ip_address {
            later.push("nas_identifier and nas_ip_address");
            applied.nas_identifier = old.nas_identifier.clone();
            applied.nas_ip_address = old.nas_ip_address;
        }
        if old.interim_interval != new.interim_interval {
            later.push("interim_interval");
            applied.interim_interval = old.interim_interval;
        }
        let (auth, acct) = (&applied.auth_servers, &applied.acct_servers);
        let added = servers_not_in(auth, &old.auth_servers) + servers_not_in(acct, &old.acct_servers);
        let removed = servers_not_in(&old.auth_servers, auth) + servers_not_in(&old.acct_servers, acct);
        if self.client.reconfigure(client_config(&applied)).is_err() {
            warn!("reload: the RADIUS client has stopped");
        }
        let mut summary = format!(
            "RADIUS: {} authentication and {} accounting servers ({added} added, {removed} removed)",
            auth.len(),
            acct.len()
        );
        if !later.is_empty() {
            let later = later.join(", ");
            warn!(settings = later, "reload: these RADIUS settings change at the next start, not now");
            summary.push_str(&format!("; at the next start, not now: {later}"));
        }
        self.settings = applied;
        summary
    }

    /// What it runs with.
    pub fn settings(&self) -> &RadiusSettings {
        &self.settings
    }

    /// The authentication backend, if authentication servers are configured.
    pub fn auth_backend(&self, settings: &RadiusSettings, users: Arc<SharedUsers>) -> Option<RadiusAuth> {
        self.auth_servers.then(|| RadiusAuth {
            client: self.client.clone(),
            nas: self.nas.clone(),
            host_name: self.host_name.clone(),
            fallback: (settings.on_no_response == NoResponsePolicy::Local).then_some(users),
            rate_attribute: settings.rate_attribute,
        })
    }

    pub fn client(&self) -> &RadiusClient {
        &self.client
    }

    pub fn nas(&self) -> &NasIdentity {
        &self.nas
    }

    pub fn accounting(&self) -> Option<&AccountingHandle> {
        self.accounting.as_ref()
    }

    /// How the subscriber core numbers and schedules accounting, if
    /// accounting is on.
    pub fn accounting_config(&self) -> Option<AccountingConfig> {
        self.accounting.as_ref()?;
        Some(AccountingConfig {
            boot: self.boot,
            interim_default: self.interim_default,
            authentic: if self.auth_servers { acct_authentic::RADIUS } else { acct_authentic::LOCAL },
        })
    }

    /// One of the core's records as an Accounting-Request, sent (a Stop is
    /// spooled until a server acknowledges it).
    pub fn send(&self, rec: &AcctRecord) {
        let Some(acct) = &self.accounting else { return };
        let a = &rec.acct;
        let status = match rec.kind {
            AcctKind::Start => AcctStatusType::Start,
            AcctKind::Interim => AcctStatusType::InterimUpdate,
            AcctKind::Stop => AcctStatusType::Stop,
        };
        let call = CallAttributes::new(&rec.context, &self.host_name);
        let prefix = |p: Option<(std::net::Ipv6Addr, u8)>| {
            p.map(|(address, len)| lns_radius::attribute::Ipv6Prefix { address, len })
        };
        let mut r = AccountingRequest::new(status, a.session_id.clone(), self.nas.clone());
        r.user_name = Some(a.user_name.clone());
        r.nas_port = Some(call.nas_port);
        r.nas_port_id = Some(call.nas_port_id);
        r.calling_station_id = call.calling_station_id;
        r.called_station_id = call.called_station_id;
        r.connect_info = call.connect_info;
        r.tunnel = Some(call.tunnel);
        r.extra = call.extra;
        r.framed_ip_address = a.framed_ip;
        r.framed_ipv6_prefix = prefix(a.framed_ipv6);
        r.delegated_ipv6_prefix = prefix(a.delegated_ipv6);
        r.class = a.class.clone();
        r.authentic = Some(a.authentic);
        r.event_timestamp = u32::try_from(unix_now()).ok();
        r.session_time = rec.session_time.map(|t| u32::try_from(t.as_secs()).unwrap_or(u32::MAX));
        r.counters = rec.counters.as_ref().map(radius_counters);
        if rec.kind == AcctKind::Stop {
            r.terminate_cause = Some(a.terminate_cause.unwrap_or(acct_terminate_cause::NAS_REQUEST));
        }
        acct.send(r, rec.kind == AcctKind::Stop);
    }

    /// Each server's state, and the accounting queue.
    pub async fn status(
        client: RadiusClient,
        accounting: Option<AccountingHandle>,
    ) -> (Vec<lns_radius::client::ServerStatus>, Option<AccountingStatus>) {
        let servers = client.servers().await.unwrap_or_default();
        let acct = match accounting {
            Some(a) => a.status().await,
            None => None,
        };
        (servers, acct)
    }
}

/// Server events the accounting sender listens to.
pub type ServerEvents = mpsc::UnboundedReceiver<ServerEvent>;

/// The address family a NAS-IP-Address can describe.
pub fn nas_ip_of(addr: IpAddr) -> Option<Ipv4Addr> {
    match addr {
        IpAddr::V4(a) if !a.is_unspecified() => Some(a),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2tp::SessionInfo;
    use lns_bpf::abi::SessionStats;
    use lns_radius::attribute::AttributeType as T;
    use lns_radius::packet::{Code, Repr};

    fn ctx() -> AuthContext {
        let info = SessionInfo {
            calling_number: Some(b"0612345678".to_vec()),
            called_number: Some(b"lns".to_vec()),
            tx_connect_speed: Some(20_000_000),
            rx_connect_speed: Some(1_000_000),
            access_line: vec![
                AccessLine::AgentCircuitId(b"dslam1 atm 1/1:8.35".to_vec()),
                AccessLine::DataRate { attr: 129, bps: 1_000_000 },
            ],
            ..Default::default()
        };
        AuthContext {
            tunnel_id: 3,
            session_id: 7,
            lac: "192.0.2.2:1701".parse().expect("addr"),
            local: "192.0.2.1:1701".parse().expect("addr"),
            lac_hostname: b"lac1".to_vec(),
            info,
        }
    }

    fn nas() -> NasIdentity {
        NasIdentity { ip: Some(Ipv4Addr::new(192, 0, 2, 1)), ipv6: None, identifier: Some("lns".into()) }
    }

    fn packet(r: &AccessRequest) -> Repr {
        let mut p = Repr::new(Code::AccessRequest, 1);
        p.attributes = r.to_attributes().expect("attributes");
        Repr::from_bytes(&p.to_bytes().expect("emit")).expect("parse")
    }

    #[test]
    fn access_request_describes_the_call() {
        let call = CallAttributes::new(&ctx(), "lns");
        let req = AuthRequest {
            method: AuthMethod::ChapMd5,
            username: b"alice".to_vec(),
            material: AuthMaterial::ChapMd5 { identifier: 5, challenge: vec![1; 16], response: vec![2; 16] },
            proxied: false,
        };
        let p = packet(&access_request(&req, &call, &nas()).expect("request"));
        let int = |t| p.get(t).and_then(|a| a.as_integer().ok());
        assert_eq!(int(T::NAS_PORT), Some(3 << 16 | 7));
        assert_eq!(int(T::NAS_PORT_TYPE), Some(5), "Virtual");
        assert_eq!(int(T::SERVICE_TYPE), Some(2), "Framed");
        assert_eq!(p.get(T::NAS_PORT_ID).map(|a| a.value()), Some(&b"l2tp:3:7"[..]));
        assert_eq!(p.get(T::CALLING_STATION_ID).map(|a| a.value()), Some(&b"0612345678"[..]));
        assert_eq!(p.get(T::CALLED_STATION_ID).map(|a| a.value()), Some(&b"lns"[..]));
        assert_eq!(p.get(T::CONNECT_INFO).map(|a| a.value()), Some(&b"20000000/1000000"[..]));
        assert_eq!(p.get(T::TUNNEL_CLIENT_ENDPOINT).map(|a| a.as_tagged_string().1), Some(&b"192.0.2.2"[..]));
        assert_eq!(p.get(T::TUNNEL_SERVER_ENDPOINT).map(|a| a.as_tagged_string().1), Some(&b"192.0.2.1"[..]));
        assert_eq!(p.get(T::TUNNEL_CLIENT_AUTH_ID).map(|a| a.as_tagged_string().1), Some(&b"lac1"[..]));
        assert_eq!(p.get(T::TUNNEL_ASSIGNMENT_ID).map(|a| a.as_tagged_string().1), Some(&b"3"[..]));
        let dsl: Vec<_> = p.vendor_attributes(VENDOR_ADSL_FORUM).collect();
        assert_eq!(dsl.len(), 2);
        assert_eq!(dsl[0].vendor_type, 1);
        assert_eq!(dsl[1].as_integer().ok(), Some(1_000_000));
        let bad = AuthRequest {
            material: AuthMaterial::ChapMd5 { identifier: 5, challenge: vec![1; 16], response: vec![2; 15] },
            ..req
        };
        assert!(
            access_request(&bad, &call, &nas()).is_err(),
            "a short CHAP response is refused, not relayed"
        );
    }

    #[test]
    fn accept_maps_to_authorization() {
        let mut a = lns_radius::access::Authorization {
            framed_ip_address: Some(FramedIpAddress::Address(Ipv4Addr::new(198, 51, 100, 9))),
            framed_pool: Some("gold".into()),
            session_timeout: Some(60),
            idle_timeout: Some(0),
            acct_interim_interval: Some(30),
            class: vec![b"c".to_vec()],
            ..Default::default()
        };
        let z = authorization(AuthMethod::Pap, a.clone());
        assert!(z.decision.accept);
        assert_eq!(z.ipv4, Some(Ipv4Addr::new(198, 51, 100, 9)));
        assert_eq!(z.pool.as_deref(), Some("gold"));
        assert_eq!(z.session_timeout, Some(Duration::from_secs(60)));
        assert_eq!(z.idle_timeout, None, "0 means no limit");
        assert_eq!(z.interim_interval, Some(Duration::from_secs(30)));
        assert!(!authorization(AuthMethod::MsChapV2, a.clone()).decision.accept, "no MS-CHAP2-Success");
        a.ms_chap2_success = Some(lns_radius::microsoft::MsChap2Success {
            ident: 1,
            message: "S=0123456789ABCDEF0123456789ABCDEF01234567 M=ok".into(),
        });
        a.framed_ip_address = Some(FramedIpAddress::NasSelects);
        let z = authorization(AuthMethod::MsChapV2, a);
        assert_eq!(
            z.decision.authenticator_response.as_deref(),
            Some("S=0123456789ABCDEF0123456789ABCDEF01234567")
        );
        assert_eq!(z.ipv4, None, "NAS-selects: from the pool");
    }

    #[test]
    fn boot_ids_grow_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = boot_id(dir.path());
        let b = boot_id(dir.path());
        let c = boot_id(dir.path());
        assert!(a < b && b < c, "{a} {b} {c}");
        assert!(a >= unix_now() - 5);
    }

    #[test]
    fn counters_since_the_baseline() {
        let base = SessionStats {
            up_packets: 10,
            up_bytes: 1000,
            down_packets: 5,
            down_bytes: 500,
            ..Default::default()
        };
        let now = SessionStats {
            up_packets: 15,
            up_bytes: 1000 + (1 << 33),
            down_packets: 5,
            down_bytes: 600,
            ..Default::default()
        };
        let c = radius_counters(&crate::subscriber::Counters::from(now).since(&base.into()));
        assert_eq!(
            (c.input_packets, c.input_octets, c.output_packets, c.output_octets),
            (5, 1 << 33, 0, 100)
        );
    }

    fn server(address: &str, secret: &str) -> RadiusServerEntry {
        RadiusServerEntry {
            address: address.parse().expect("address"),
            secret: secret.into(),
            require_message_authenticator: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_reload_changes_servers_now_and_names_what_waits_for_a_restart() {
        let settings = RadiusSettings {
            nas_identifier: "lns".into(),
            nas_ip_address: None,
            timeout: Duration::from_secs(2),
            retries: 2,
            dead_time: Duration::from_secs(10),
            on_no_response: NoResponsePolicy::Reject,
            interim_interval: None,
            state_dir: "/nonexistent/lns-test".into(),
            auth_servers: vec![server("192.0.2.10:1812", "a"), server("192.0.2.11:1812", "a")],
            acct_servers: Vec::new(),
            dynauth: None,
            rate_attribute: None,
        };
        let mut radius = Radius::start(&settings, "lns").expect("start");
        let mut new = settings.clone();
        new.auth_servers = vec![server("192.0.2.11:1812", "b"), server("192.0.2.12:1812", "b")];
        new.timeout = Duration::from_millis(500);
        new.on_no_response = NoResponsePolicy::Local;
        new.state_dir = "/nonexistent/elsewhere".into();
        new.acct_servers = vec![server("192.0.2.12:1813", "b")];
        let summary = radius.reconfigure(&new);
        assert_eq!(
            summary,
            "RADIUS: 2 authentication and 0 accounting servers (1 added, 1 removed); at the next start, \
             not now: accounting servers where there were none, state_dir"
        );
        let listed: Vec<String> =
            radius.client().servers().await.expect("servers").iter().map(|s| s.address.to_string()).collect();
        assert_eq!(listed, ["192.0.2.11:1812", "192.0.2.12:1812"]);
        assert_eq!(radius.settings().timeout, Duration::from_millis(500));
        assert_eq!(radius.settings().on_no_response, NoResponsePolicy::Local);
        assert_eq!(radius.settings().state_dir, std::path::PathBuf::from("/nonexistent/lns-test"));
        assert!(radius.settings().acct_servers.is_empty());
        // The same file again: nothing added; what waits for a restart
        // is said again.
        let again = radius.reconfigure(&new);
        assert_eq!(again, "RADIUS: 2 authentication and 0 accounting servers (0 added, 0 removed); at the next start, not now: accounting servers where there were none, state_dir");
    }
}
