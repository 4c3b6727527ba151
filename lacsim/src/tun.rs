//! `--tun`: host subscribers as TUN devices of the machine running
//! lacsim, so that real programs (ping, iperf3, a DHCPv6 client) use the
//! sessions.
//!
//! Subscriber 1's device is `NAME`, subscriber 2's `NAME1`, and so on.
//! Each carries the addresses its session negotiated: the IPCP address
//! (/32, the LNS's address as its peer), the IPv6 link-local address from
//! the IPv6CP interface identifier, and the address formed from the Router
//! Advertisement's prefix (SLAAC). The first device also gets the routes
//! asked for (by default everything: 0.0.0.0/0 and ::/0). What the kernel
//! routes into a device goes up that subscriber's session; what the LNS
//! sends down it comes out of the device.
//!
//! The kernel forms no address of its own on the devices (`addrgenmode
//! none`) and ignores Router Advertisements there (`accept_ra` 0): the
//! addresses are the session's, and the advertisements reach the device
//! for programs that read them (a DHCPv6 client looks at M and O).
//! Addresses and routes are set with ip(8); the devices are
//! non-persistent and leave with the process, their routes with them.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio::sync::mpsc;
use tun_rs::{AsyncDevice, DeviceBuilder, Layer};

use crate::emulator::HostEvent;

/// Longest interface name Linux takes (IFNAMSIZ less the NUL).
const MAX_NAME_LEN: usize = 15;

/// A route through the first device: a prefix, `default` meaning both
/// 0.0.0.0/0 and ::/0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub prefix: IpAddr,
    pub len: u8,
}

impl Route {
    /// `default`, or an address with a prefix length (`203.0.113.0/24`,
    /// `2001:db8:c0::/64`).
    pub fn parse_list(s: &str) -> Result<Vec<Route>> {
        if s == "default" {
            return Ok(vec![
                Route { prefix: IpAddr::from([0u8; 4]), len: 0 },
                Route { prefix: IpAddr::from([0u8; 16]), len: 0 },
            ]);
        }
        let (a, l) = s.split_once('/').with_context(|| format!("route {s:?}: PREFIX/LEN or default"))?;
        let prefix: IpAddr = a.parse().with_context(|| format!("route {s:?}"))?;
        let len: u8 = l.parse().with_context(|| format!("route {s:?}"))?;
        if len > if prefix.is_ipv4() { 32 } else { 128 } {
            bail!("route {s:?}: prefix length too long");
        }
        Ok(vec![Route { prefix, len }])
    }

    fn ipv6(&self) -> bool {
        self.prefix.is_ipv6()
    }
}

/// The device name of host subscriber `number` (1, 2, ...).
pub fn device_name(base: &str, number: u32) -> String {
    if number <= 1 {
        base.to_string()
    } else {
        format!("{base}{}", number - 1)
    }
}

/// The host subscribers' devices.
pub struct HostLinks {
    devices: Vec<(String, Arc<AsyncDevice>)>,
    routes: Vec<Route>,
    rx: mpsc::Receiver<(u32, Vec<u8>)>,
    /// Packets the kernel would not take (its queue full), dropped.
    pub write_errors: u64,
}

impl HostLinks {
    /// Creates `count` devices from `base` with this MTU, each up with no
    /// address yet, and starts reading them. Inside a tokio runtime.
    pub fn create(base: &str, count: u32, mtu: u16, routes: Vec<Route>) -> Result<HostLinks> {
        let (tx, rx) = mpsc::channel(1024);
        let mut devices = Vec::new();
        for number in 1..=count {
            let name = device_name(base, number);
            if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains(['/', ' ', '\0', '%']) {
                bail!("TUN device name {name:?}: 1 to {MAX_NAME_LEN} bytes, no '/', '%' or spaces");
            }
            let device = DeviceBuilder::new()
                .name(&name)
                .layer(Layer::L3)
                .packet_information(false)
                .mtu(mtu)
                .enable(false)
                .build_async()
                .with_context(|| {
                    format!("creating TUN device {name} (needs CAP_NET_ADMIN and /dev/net/tun)")
                })?;
            // The session's addresses only: no kernel-made link-local
            // address (it would send from one the LNS never negotiated),
            // no autoconfiguration from the advertisements we pass in.
            ip(&["link", "set", "dev", &name, "addrgenmode", "none"])?;
            for knob in ["accept_ra", "autoconf"] {
                let path = format!("/proc/sys/net/ipv6/conf/{name}/{knob}");
                std::fs::write(&path, "0").with_context(|| format!("writing {path}"))?;
            }
            ip(&["link", "set", "dev", &name, "up"])?;
            let device = Arc::new(device);
            let (reader, tx) = (device.clone(), tx.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = reader.recv(&mut buf).await {
                    if tx.send((number, buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            });
            devices.push((name, device));
        }
        Ok(HostLinks { devices, routes, rx, write_errors: 0 })
    }

    /// The next packet the kernel routed into a device, with the host
    /// subscriber's number.
    pub async fn recv(&mut self) -> Option<(u32, Vec<u8>)> {
        self.rx.recv().await
    }

    /// A packet already read, if any (without waiting).
    pub fn try_recv(&mut self) -> Option<(u32, Vec<u8>)> {
        self.rx.try_recv().ok()
    }

    /// Hands a packet the session received to the kernel, from the device.
    pub fn deliver(&mut self, number: u32, packet: &[u8]) {
        let Some((_, dev)) = self.devices.get(number.saturating_sub(1) as usize) else { return };
        if dev.try_send(packet).is_err() {
            self.write_errors += 1;
        }
    }

    /// Puts a session's addresses on its device (and the routes on the
    /// first one), or takes them off.
    pub fn apply(&self, ev: &HostEvent) -> Result<()> {
        let (number, name) = match ev {
            HostEvent::Ipv4Up { number, .. }
            | HostEvent::Ipv6LinkUp { number, .. }
            | HostEvent::Ipv6AddressUp { number, .. }
            | HostEvent::NetworkDown { number, .. }
            | HostEvent::Down { number } => (*number, device_name(self.base(), *number)),
        };
        if number == 0 || number as usize > self.devices.len() {
            return Ok(());
        }
        let routes = |ipv6: bool| -> Result<()> {
            if number != 1 {
                return Ok(());
            }
            for r in self.routes.iter().filter(|r| r.ipv6() == ipv6) {
                let family = if ipv6 { "-6" } else { "-4" };
                let to = format!("{}/{}", r.prefix, r.len);
                ip(&[family, "route", "replace", &to, "dev", &name])?;
            }
            Ok(())
        };
        match ev {
            HostEvent::Ipv4Up { local, peer, dns, .. } => {
                ip(&["-4", "addr", "flush", "dev", &name])?;
                ip(&["addr", "add", &local.to_string(), "peer", &format!("{peer}/32"), "dev", &name])?;
                routes(false)?;
                eprintln!(
                    "{name}: {local} (LNS {peer}){}",
                    if dns.is_empty() { String::new() } else { format!(", DNS {dns:?}") }
                );
            }
            HostEvent::Ipv6LinkUp { local, .. } => {
                ip(&["-6", "addr", "flush", "dev", &name])?;
                ip(&["addr", "add", &format!("{local}/64"), "dev", &name, "nodad"])?;
                eprintln!("{name}: {local}/64");
            }
            HostEvent::Ipv6AddressUp { address, prefix_len, .. } => {
                let a = format!("{address}/{prefix_len}");
                ip(&["addr", "replace", &a, "dev", &name, "nodad"])?;
                routes(true)?;
                eprintln!("{name}: {a}");
            }
            HostEvent::NetworkDown { ipv6, .. } => {
                ip(&[if *ipv6 { "-6" } else { "-4" }, "addr", "flush", "dev", &name])?;
            }
            HostEvent::Down { .. } => ip(&["addr", "flush", "dev", &name])?,
        }
        Ok(())
    }

    fn base(&self) -> &str {
        self.devices.first().map(|(n, _)| n.as_str()).unwrap_or("")
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("ip").args(args).output().context("running ip")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_names() {
        assert_eq!(Route::parse_list("default").unwrap().len(), 2);
        let r = Route::parse_list("2001:db8:c0::/48").unwrap();
        assert_eq!((r[0].prefix.to_string(), r[0].len, r[0].ipv6()), ("2001:db8:c0::".into(), 48, true));
        assert!(Route::parse_list("203.0.113.0/33").is_err());
        assert!(Route::parse_list("203.0.113.0").is_err());
        assert_eq!(
            (device_name("sub", 1), device_name("sub", 2), device_name("sub", 3)),
            ("sub".into(), "sub1".into(), "sub2".into())
        );
    }
}
