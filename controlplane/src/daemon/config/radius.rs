//! `[radius]` and `[radius.dynauth]` of the configuration file, and the
//! `--radius-*` flags over them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lns_radius::client::RequireMessageAuthenticator;
use serde::{Deserialize, Deserializer};

use super::{de_duration, ConfigError, Flags};

/// `[radius]` as written.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RadiusFile {
    pub nas_identifier: Option<String>,
    pub nas_ip_address: Option<Ipv4Addr>,
    #[serde(default, deserialize_with = "de_duration")]
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    #[serde(default, deserialize_with = "de_duration")]
    pub dead_time: Option<Duration>,
    pub on_no_response: Option<String>,
    #[serde(default, deserialize_with = "de_duration")]
    pub interim_interval: Option<Duration>,
    pub state_dir: Option<PathBuf>,
    #[serde(default, rename = "auth_server")]
    pub auth_servers: Vec<RadiusServerEntry>,
    #[serde(default, rename = "acct_server")]
    pub acct_servers: Vec<RadiusServerEntry>,
    pub dynauth: Option<DynAuthFile>,
    /// A text attribute that carries rate limits as "down/up" (accel-ppp
    /// reads Filter-Id so): its name ("Filter-Id") or number.
    pub rate_attribute: Option<toml::Value>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RadiusServerEntry {
    pub address: SocketAddr,
    pub secret: String,
    /// `"auto"` (the default), `true` or `false`: must its replies carry a
    /// Message-Authenticator (Blast-RADIUS, CVE-2024-3596)? See
    /// [`RequireMessageAuthenticator`].
    #[serde(default, deserialize_with = "de_require_message_authenticator")]
    pub require_message_authenticator: RequireMessageAuthenticator,
}

/// `true`, `false` or `"auto"`.
fn de_require_message_authenticator<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<RequireMessageAuthenticator, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bool(true) => Ok(RequireMessageAuthenticator::Always),
        Raw::Bool(false) => Ok(RequireMessageAuthenticator::Never),
        Raw::Text(t) if t == "auto" => Ok(RequireMessageAuthenticator::Auto),
        Raw::Text(t) => Err(serde::de::Error::custom(format!(
            "require_message_authenticator {t:?}: expected true, false or \"auto\""
        ))),
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct DynAuthFile {
    pub listen: Option<SocketAddr>,
    #[serde(default, deserialize_with = "de_duration")]
    pub event_timestamp_window: Option<Duration>,
    /// Refuse requests without Event-Timestamp (they cannot be checked
    /// for replay).
    pub require_event_timestamp: Option<bool>,
    #[serde(default, rename = "client")]
    pub clients: Vec<DynAuthClientEntry>,
}

#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DynAuthClientEntry {
    pub address: IpAddr,
    pub secret: String,
    /// Refuse this client's requests without a Message-Authenticator
    /// (default false: many CoA clients do not send one).
    #[serde(default)]
    pub require_message_authenticator: bool,
}

/// What RADIUS does when no server answers an Access-Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoResponsePolicy {
    Reject,
    /// The local users file decides.
    Local,
}

/// `[radius]`, resolved.
#[derive(Debug, Clone)]
pub struct RadiusSettings {
    pub nas_identifier: String,
    pub nas_ip_address: Option<Ipv4Addr>,
    pub timeout: Duration,
    pub retries: u32,
    pub dead_time: Duration,
    pub on_no_response: NoResponsePolicy,
    pub interim_interval: Option<Duration>,
    pub state_dir: PathBuf,
    pub auth_servers: Vec<RadiusServerEntry>,
    pub acct_servers: Vec<RadiusServerEntry>,
    pub dynauth: Option<DynAuthSettings>,
    /// See `RadiusFile::rate_attribute`.
    pub rate_attribute: Option<lns_radius::attribute::AttributeType>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynAuthSettings {
    pub listen: SocketAddr,
    pub event_timestamp_window: Duration,
    pub require_event_timestamp: bool,
    pub clients: Vec<DynAuthClientEntry>,
}

impl RadiusSettings {
    pub(super) fn resolve(
        f: Option<RadiusFile>,
        flags: &Flags,
        host_name: &str,
        instance: &str,
    ) -> Result<Option<Self>, ConfigError> {
        if f.is_none() && flags.radius_servers.is_empty() {
            return Ok(None);
        }
        let f = f.unwrap_or_default();
        let (mut auth_servers, mut acct_servers) = (f.auth_servers, f.acct_servers);
        if !flags.radius_servers.is_empty() {
            let secret = flags
                .radius_secret
                .clone()
                .ok_or_else(|| ConfigError::Invalid("--radius-server needs --radius-secret".into()))?;
            auth_servers.clear();
            acct_servers.clear();
            for s in &flags.radius_servers {
                let (auth, acct) = parse_radius_server(s)?;
                let entry = |address| RadiusServerEntry {
                    address,
                    secret: secret.clone(),
                    require_message_authenticator: RequireMessageAuthenticator::Auto,
                };
                auth_servers.push(entry(auth));
                acct_servers.push(entry(acct));
            }
        }
        if auth_servers.is_empty() && acct_servers.is_empty() {
            return Err(ConfigError::Invalid("[radius] names no auth_server and no acct_server".into()));
        }
        if auth_servers.iter().chain(&acct_servers).any(|s| s.secret.is_empty()) {
            return Err(ConfigError::Invalid("a RADIUS server needs a non-empty secret".into()));
        }
        let on_no_response = match f.on_no_response.as_deref().unwrap_or("reject") {
            "reject" => NoResponsePolicy::Reject,
            "local" => NoResponsePolicy::Local,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "radius.on_no_response {other:?}: expected \"reject\" or \"local\""
                )))
            }
        };
        let timeout = f.timeout.unwrap_or(Duration::from_secs(2));
        if timeout.is_zero() {
            return Err(ConfigError::Invalid("radius.timeout must be positive".into()));
        }
        let dead_time = f.dead_time.unwrap_or(Duration::from_secs(10)).max(Duration::from_millis(100));
        let rate_attribute = f.rate_attribute.as_ref().map(rate_attribute).transpose()?;
        let dynauth_file = match (f.dynauth, flags.dynauth_listen) {
            (Some(d), l) => Some(DynAuthFile { listen: l.or(d.listen), ..d }),
            (None, Some(l)) => Some(DynAuthFile { listen: Some(l), ..Default::default() }),
            (None, None) => None,
        };
        let dynauth = dynauth_file.map(|d| DynAuthSettings {
            listen: d.listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 3799))),
            event_timestamp_window: d.event_timestamp_window.unwrap_or(Duration::from_secs(300)),
            require_event_timestamp: d.require_event_timestamp.unwrap_or(false),
            clients: d.clients,
        });
        Ok(Some(RadiusSettings {
            nas_identifier: f.nas_identifier.unwrap_or_else(|| host_name.to_string()),
            nas_ip_address: f.nas_ip_address,
            timeout,
            retries: f.retries.unwrap_or(2),
            dead_time,
            on_no_response,
            interim_interval: f.interim_interval.filter(|d| !d.is_zero()),
            state_dir: flags
                .radius_state_dir
                .clone()
                .or(f.state_dir)
                .unwrap_or_else(|| Path::new("/var/lib/lns").join(instance)),
            auth_servers,
            acct_servers,
            dynauth,
            rate_attribute,
        }))
    }
}

/// `--radius-server`: `ADDR` (ports 1812 and 1813) or `ADDR:PORT`
/// (authentication on PORT, accounting on PORT+1).
/// `rate_attribute`: an attribute's RFC name (any case) or its number.
fn rate_attribute(v: &toml::Value) -> Result<lns_radius::attribute::AttributeType, ConfigError> {
    use lns_radius::attribute::AttributeType;
    let found = match v {
        toml::Value::Integer(n) => u8::try_from(*n).ok().filter(|n| *n > 0).map(AttributeType),
        toml::Value::String(name) => {
            (1..=255u8).map(AttributeType).find(|t| t.name().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        }
        _ => None,
    };
    found.ok_or_else(|| {
        ConfigError::Invalid(format!(
            "radius.rate_attribute {v}: expected an attribute name (\"Filter-Id\") or number 1..255"
        ))
    })
}

fn parse_radius_server(s: &str) -> Result<(SocketAddr, SocketAddr), ConfigError> {
    let bad = || ConfigError::Invalid(format!("bad --radius-server {s:?}: expected ADDR or ADDR:PORT"));
    let auth = match s.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => SocketAddr::new(s.parse::<IpAddr>().map_err(|_| bad())?, 1812),
    };
    let acct_port = auth.port().checked_add(1).ok_or_else(bad)?;
    Ok((auth, SocketAddr::new(auth.ip(), acct_port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_message_authenticator_per_server() {
        let f: RadiusFile = toml::from_str(
            r#"
            [[auth_server]]
            address = "192.0.2.10:1812"
            secret = "a"
            [[auth_server]]
            address = "192.0.2.11:1812"
            secret = "a"
            require_message_authenticator = true
            [[acct_server]]
            address = "192.0.2.10:1813"
            secret = "a"
            require_message_authenticator = false
            [[acct_server]]
            address = "192.0.2.11:1813"
            secret = "a"
            require_message_authenticator = "auto"
            "#,
        )
        .expect("parse");
        let got: Vec<_> =
            f.auth_servers.iter().chain(&f.acct_servers).map(|s| s.require_message_authenticator).collect();
        use RequireMessageAuthenticator::*;
        assert_eq!(got, [Auto, Always, Never, Auto]);
        let bad = toml::from_str::<RadiusFile>(
            "[[auth_server]]\naddress = \"192.0.2.10:1812\"\nsecret = \"a\"\nrequire_message_authenticator = \"yes\"\n",
        )
        .expect_err("yes is not a value");
        assert!(bad.to_string().contains("require_message_authenticator \"yes\""), "{bad}");
    }
}
