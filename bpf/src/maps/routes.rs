//! Prefixes behind or of a subscriber: routed IPv4 prefixes
//! (`lns_sub_v4_lpm`), IPv6 /64s in their one-lookup hash (`lns_sub_v6_64`,
//! with a copy in the flat table) and every other IPv6 length in the trie
//! (`lns_sub_v6_lpm`). The program answers from the /64 hash before the
//! trie, so the writers here refuse a longer prefix inside another
//! session's /64 and a /64 over another session's longer prefixes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libbpf_rs::{MapCore, MapFlags};

use super::{ctx, delete_if_present, read_index, Maps};
use crate::abi::{self, LpmV4, LpmV6, Session};
use crate::Error;

impl Maps {
    /// A routed IPv4 prefix behind the subscriber (Framed-Route).
    pub fn add_route_v4(&self, prefix: Ipv4Addr, len: u8, index: u32) -> Result<(), Error> {
        let key = lpm_v4(prefix, len)?;
        self.note_address(index, |_| false)?;
        self.sub_v4_lpm
            .update(bytemuck::bytes_of(&key), &index.to_ne_bytes(), MapFlags::ANY)
            .map_err(ctx("writing lns_sub_v4_lpm"))
    }

    pub fn remove_route_v4(&self, prefix: Ipv4Addr, len: u8) -> Result<bool, Error> {
        let key = lpm_v4(prefix, len)?;
        delete_if_present(&self.sub_v4_lpm, bytemuck::bytes_of(&key), "deleting from lns_sub_v4_lpm")
    }

    /// An IPv6 prefix of the subscriber (SLAAC /64, delegated prefix).
    /// A /64 goes to the /64 hash (one lookup), anything else to the trie.
    /// The program looks in the /64 hash first, so an entry longer than /64
    /// inside another session's /64 (or a /64 over another session's longer
    /// entries) would be shadowed: refused ([`Error::PrefixOverlap`]).
    pub fn add_route_v6(&self, prefix: Ipv6Addr, len: u8, index: u32) -> Result<(), Error> {
        let own = |s: &Session| {
            s.subscriber_ipv6_prefix() == Some((prefix, len))
                || s.subscriber_delegated_prefix() == Some((prefix, len))
        };
        self.note_address(index, own)?;
        self.put_route_v6(prefix, len, index)
    }

    pub(super) fn put_route_v6(&self, prefix: Ipv6Addr, len: u8, index: u32) -> Result<(), Error> {
        let key = lpm_v6(prefix, len)?;
        let net: [u8; 8] = key.addr[..8].try_into().expect("8 of 16 bytes");
        if len == 64 {
            let long = self
                .sub_v6_long
                .lookup(&net, MapFlags::ANY)
                .map_err(ctx("reading lns_sub_v6_long"))?
                .and_then(|v| bytemuck::try_pod_read_unaligned::<[u32; 2]>(&v).ok());
            if let Some([owner, count]) = long {
                if count > 0 && owner != index {
                    return Err(Error::PrefixOverlap { prefix: Ipv6Addr::from(key.addr), len, other: owner });
                }
            }
            // Different /64s may share a tag: only the entry of the
            // session that held this /64 before is replaced. A /64 nobody
            // held (a new subscriber's) goes in with one syscall, written
            // only if absent; one held is read, then written over.
            let old = match self.sub_v6_64.update(&net, &index.to_ne_bytes(), MapFlags::NO_EXIST) {
                Ok(()) => None,
                Err(e) if e.kind() == libbpf_rs::ErrorKind::AlreadyExists => {
                    let old = read_index(&self.sub_v6_64, &net, "reading lns_sub_v6_64")?;
                    self.sub_v6_64
                        .update(&net, &index.to_ne_bytes(), MapFlags::ANY)
                        .map_err(ctx("writing lns_sub_v6_64"))?;
                    old
                }
                Err(e) => return Err(Error::bpf("writing lns_sub_v6_64", e)),
            };
            self.sub_v6_flat.insert(abi::flat_tag_v6(net), index, |s| Some(s) == old);
            return self.follow_unit(IpAddr::V6(Ipv6Addr::from(key.addr)), len, index);
        }
        self.check_not_inside_other_64(Ipv6Addr::from(key.addr), len, index)?;
        let k = bytemuck::bytes_of(&key);
        let fresh = len > 64 && read_index(&self.sub_v6_lpm, k, "reading lns_sub_v6_lpm")?.is_none();
        self.sub_v6_lpm
            .update(k, &index.to_ne_bytes(), MapFlags::ANY)
            .map_err(ctx("writing lns_sub_v6_lpm"))?;
        if fresh {
            self.count_long(Ipv6Addr::from(key.addr), index, true)?;
        }
        self.follow_unit(IpAddr::V6(Ipv6Addr::from(key.addr)), len, index)
    }

    /// The IPv6 /128s in the trie and the slots they name (a syscall per
    /// entry: for a restart's reconciliation, not the packet path).
    pub fn host_routes_v6(&self) -> Result<Vec<(Ipv6Addr, u32)>, Error> {
        let mut routes = Vec::new();
        for k in self.sub_v6_lpm.keys() {
            let Ok(key) = bytemuck::try_pod_read_unaligned::<LpmV6>(&k) else { continue };
            if key.prefixlen != 128 {
                continue;
            }
            if let Some(index) = read_index(&self.sub_v6_lpm, &k, "reading lns_sub_v6_lpm")? {
                routes.push((Ipv6Addr::from(key.addr), index));
            }
        }
        Ok(routes)
    }

    pub fn remove_route_v6(&self, prefix: Ipv6Addr, len: u8) -> Result<bool, Error> {
        let key = lpm_v6(prefix, len)?;
        self.drop_unit(IpAddr::V6(Ipv6Addr::from(key.addr)), len)?;
        if len == 64 {
            let net: [u8; 8] = key.addr[..8].try_into().expect("8 of 16 bytes");
            let old = match self.sub_v6_64.lookup_and_delete(&net) {
                Ok(v) => v.and_then(|b| bytemuck::try_pod_read_unaligned::<u32>(&b).ok()),
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::bpf("deleting from lns_sub_v6_64", e)),
            };
            if let Some(old) = old {
                self.sub_v6_flat.remove(abi::flat_tag_v6(net), |s| s == old);
            }
            return Ok(old.is_some());
        }
        let removed =
            delete_if_present(&self.sub_v6_lpm, bytemuck::bytes_of(&key), "deleting from lns_sub_v6_lpm")?;
        if removed && len > 64 {
            self.count_long(Ipv6Addr::from(key.addr), 0, false)?;
        }
        Ok(removed)
    }
}

fn lpm_v4(prefix: Ipv4Addr, len: u8) -> Result<LpmV4, Error> {
    if len > 32 {
        return Err(Error::PrefixLength(len));
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ok(LpmV4 { prefixlen: len.into(), addr: (u32::from(prefix) & mask).to_be_bytes() })
}

fn lpm_v6(prefix: Ipv6Addr, len: u8) -> Result<LpmV6, Error> {
    if len > 128 {
        return Err(Error::PrefixLength(len));
    }
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
    Ok(LpmV6 { prefixlen: len.into(), addr: (u128::from(prefix) & mask).to_be_bytes() })
}
