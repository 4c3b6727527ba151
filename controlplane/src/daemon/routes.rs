//! Subscriber routes into the instance's TUN device ([`super::tun`]),
//! over route netlink (issue 18).
//!
//! While a subscriber is up, its address (IPv4 /32) and its delegated
//! prefix (IPv6 /64) are routed into the TUN device, so that what the
//! kernel itself sends to a subscriber, or forwards to one when the data
//! plane hands it a packet it does not handle, comes out of the device to
//! the control plane. The routes carry our own protocol number,
//! [`RTPROT_LNS`], so that [`Routes::flush`] at exit removes them and
//! nothing an operator or a routing daemon put in the same table: `ip route
//! show table T proto 196` lists ours.
//!
//! The routes also go away with the device: the kernel removes every route
//! through an interface that disappears, so a crashed control plane leaves
//! none behind.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage, RouteProtocol, RouteScope};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};
use tokio::task::JoinHandle;

/// The protocol of our routes (`rtm_protocol`): not one of the numbers
/// `/etc/iproute2/rt_protos` names (kernel, static, dhcp, bgp 186 to eigrp
/// 192...), so no routing daemon claims routes of this number.
pub const RTPROT_LNS: u8 = 196;

/// The main table, where routes go unless told otherwise.
pub const RT_TABLE_MAIN: u32 = 254;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("opening a route netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    #[error("route {prefix}/{len}: the prefix length is longer than the address")]
    PrefixLength { prefix: IpAddr, len: u8 },
    #[error("{op} route {prefix}/{len} via ifindex {ifindex} in table {table}: {source}")]
    Netlink {
        op: &'static str,
        prefix: IpAddr,
        len: u8,
        ifindex: u32,
        table: u32,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("listing the {family} routes of table {table}: {source}")]
    Dump {
        family: &'static str,
        table: u32,
        #[source]
        source: rtnetlink::Error,
    },
}

/// Our routes through one device, in one table, at one metric.
///
/// Holds a route netlink socket of the calling thread's network namespace
/// at the time of [`Routes::new`]; its connection runs as a tokio task,
/// ended when this is dropped.
pub struct Routes {
    handle: Handle,
    connection: JoinHandle<()>,
    ifindex: u32,
    table: u32,
    metric: u32,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("ifindex", &self.ifindex)
            .field("table", &self.table)
            .field("metric", &self.metric)
            .finish()
    }
}

/// The MTU of the interfaces tunnels arrive on, asked over route netlink
/// (in the calling thread's namespace: `/sys/class/net` shows the
/// namespace sysfs was mounted in, not necessarily ours). The driver asks
/// with an interface index ([`MtuAsker::ask`]); the answer comes back on
/// the receiver as (index, MTU). An interface that is gone or unreadable
/// gets no answer (its sessions keep the default MRU). The tasks end when
/// the last asker is dropped.
pub fn interface_mtus() -> Result<(MtuAsker, tokio::sync::mpsc::UnboundedReceiver<(u32, u16)>), RouteError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(RouteError::Connect)?;
    let connection = tokio::spawn(connection);
    let (ask, mut questions) = tokio::sync::mpsc::unbounded_channel::<u32>();
    let (tell, answers) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(ifindex) = questions.recv().await {
            let mut links = handle.link().get().match_index(ifindex).execute();
            let mtu = match links.try_next().await {
                Ok(Some(link)) => link.attributes.iter().find_map(|a| match a {
                    rtnetlink::packet_route::link::LinkAttribute::Mtu(m) => Some(*m),
                    _ => None,
                }),
                _ => None,
            };
            if let Some(mtu) = mtu {
                let _ = tell.send((ifindex, u16::try_from(mtu).unwrap_or(u16::MAX)));
            }
        }
        connection.abort();
    });
    Ok((MtuAsker(ask), answers))
}

/// Asks [`interface_mtus`]'s task for an interface's MTU.
#[derive(Clone, Debug)]
pub struct MtuAsker(tokio::sync::mpsc::UnboundedSender<u32>);

impl MtuAsker {
    pub fn ask(&self, ifindex: u32) {
        let _ = self.0.send(ifindex);
    }
}

impl Drop for Routes {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Routes {
    /// Opens the netlink socket (in the calling thread's network namespace)
    /// and starts its connection task on the current tokio runtime.
    pub async fn new(ifindex: u32, table: u32, metric: u32) -> Result<Routes, RouteError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(RouteError::Connect)?;
        let connection = tokio::spawn(connection);
        Ok(Routes { handle, connection, ifindex, table, metric })
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn table(&self) -> u32 {
        self.table
    }

    pub fn metric(&self) -> u32 {
        self.metric
    }

    /// Routes `prefix/len` into the device, replacing a route of the same
    /// prefix and metric in the table (so adding one twice is no error).
    /// Host bits of `prefix` are cleared.
    pub async fn add(&self, prefix: IpAddr, len: u8) -> Result<(), RouteError> {
        let message = self.message(prefix, len)?;
        self.handle.route().add(message).replace().execute().await.map_err(|source| RouteError::Netlink {
            op: "adding",
            prefix,
            len,
            ifindex: self.ifindex,
            table: self.table,
            source,
        })
    }

    /// Removes our route of `prefix/len` through the device; one that is
    /// not there is no error. A route of the same prefix that another
    /// protocol, device or metric put there is left alone.
    pub async fn remove(&self, prefix: IpAddr, len: u8) -> Result<(), RouteError> {
        let message = self.message(prefix, len)?;
        self.delete(message, prefix, len).await.map(|_| ())
    }

    /// Removes every route of ours (our protocol, through the device) from
    /// the table, IPv4 and IPv6, whatever its metric; returns how many.
    pub async fn flush(&self) -> Result<usize, RouteError> {
        let mut removed = 0;
        for (family, query) in [
            ("IPv4", RouteMessageBuilder::<Ipv4Addr>::new().build()),
            ("IPv6", RouteMessageBuilder::<Ipv6Addr>::new().build()),
        ] {
            // Without NETLINK_GET_STRICT_CHK the kernel dumps every table:
            // the filter is ours.
            let ours: Vec<RouteMessage> = self
                .handle
                .route()
                .get(query)
                .execute()
                .try_filter(|m| std::future::ready(self.is_ours(m)))
                .try_collect()
                .await
                .map_err(|source| RouteError::Dump { family, table: self.table, source })?;
            for route in ours {
                let prefix = destination(&route).unwrap_or(match route.header.address_family {
                    AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                });
                let len = route.header.destination_prefix_length;
                if self.delete(deletion(&route), prefix, len).await? {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Deletes a route; `false` if it was not there (ESRCH).
    async fn delete(&self, message: RouteMessage, prefix: IpAddr, len: u8) -> Result<bool, RouteError> {
        match self.handle.route().del(message).execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => Ok(false),
            Err(source) => Err(RouteError::Netlink {
                op: "removing",
                prefix,
                len,
                ifindex: self.ifindex,
                table: self.table,
                source,
            }),
        }
    }

    /// The route of `prefix/len` through the device, as we add it.
    fn message(&self, prefix: IpAddr, len: u8) -> Result<RouteMessage, RouteError> {
        Ok(match prefix {
            IpAddr::V4(a) if len <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                let builder = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(Ipv4Addr::from(u32::from(a) & mask), len)
                    // A route without a gateway reaches the prefix on the
                    // link itself, as `ip route add PREFIX dev DEV` makes it.
                    .scope(RouteScope::Link);
                self.ours(builder).build()
            }
            IpAddr::V6(a) if len <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                let builder = RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(Ipv6Addr::from(u128::from(a) & mask), len);
                self.ours(builder).build()
            }
            _ => return Err(RouteError::PrefixLength { prefix, len }),
        })
    }

    /// What makes a route ours: the device, the table, the metric and the
    /// protocol.
    fn ours<T>(&self, builder: RouteMessageBuilder<T>) -> RouteMessageBuilder<T> {
        builder
            .output_interface(self.ifindex)
            .table_id(self.table)
            .priority(self.metric)
            .protocol(RouteProtocol::from(RTPROT_LNS))
    }

    fn is_ours(&self, route: &RouteMessage) -> bool {
        u8::from(route.header.protocol) == RTPROT_LNS
            && table_of(route) == self.table
            && route.attributes.iter().any(|a| matches!(a, RouteAttribute::Oif(i) if *i == self.ifindex))
    }
}

/// A dumped route's table: RTA_TABLE when present (always, from kernels
/// since 2.6.19), else the header's byte.
fn table_of(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

fn destination(route: &RouteMessage) -> Option<IpAddr> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(d) => match d {
            rtnetlink::packet_route::route::RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
            rtnetlink::packet_route::route::RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
            _ => None,
        },
        _ => None,
    })
}

/// The request that deletes exactly a dumped route: its header, and of
/// its attributes only those that identify it (the dump's cache and
/// preference attributes are not for requests).
fn deletion(route: &RouteMessage) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header = route.header.clone();
    message.attributes = route
        .attributes
        .iter()
        .filter(|a| {
            matches!(
                a,
                RouteAttribute::Destination(_)
                    | RouteAttribute::Table(_)
                    | RouteAttribute::Oif(_)
                    | RouteAttribute::Priority(_)
            )
        })
        .cloned()
        .collect();
    message
}
