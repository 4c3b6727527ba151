//! The program's settings and where its sockets are: `lns_config`,
//! `lns_ifaces`, `lns_xsks`. Written by the loader and the data plane once
//! per run (and the next-hop epoch on a route change); read by the program
//! on every frame, so they live apart from the per-subscriber maps.

use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapFlags};

use super::{ctx, delete_if_present, read_config, Maps};
use crate::abi::{Config, Iface};
use crate::Error;

impl Maps {
    pub fn read_config(&self) -> Result<Config, Error> {
        read_config(&self.config)
    }

    pub fn write_config(&self, c: &Config) -> Result<(), Error> {
        self.config
            .update(&0u32.to_ne_bytes(), bytemuck::bytes_of(c), MapFlags::ANY)
            .map_err(ctx("writing lns_config"))
    }

    /// Declares an interface's roles and where its AF_XDP sockets live in
    /// `lns_xsks`.
    pub fn set_iface(&self, ifindex: u32, iface: &Iface) -> Result<(), Error> {
        self.ifaces
            .update(&ifindex.to_ne_bytes(), bytemuck::bytes_of(iface), MapFlags::ANY)
            .map_err(ctx("writing lns_ifaces"))
    }

    pub fn remove_iface(&self, ifindex: u32) -> Result<bool, Error> {
        delete_if_present(&self.ifaces, &ifindex.to_ne_bytes(), "deleting from lns_ifaces")
    }

    /// Puts an AF_XDP socket in slot `slot` of `lns_xsks`.
    pub fn set_xsk(&self, slot: u32, socket: impl AsFd) -> Result<(), Error> {
        let fd = socket.as_fd().as_raw_fd() as u32;
        self.xsks
            .update(&slot.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .map_err(ctx("writing lns_xsks"))
    }

    pub fn clear_xsk(&self, slot: u32) -> Result<bool, Error> {
        delete_if_present(&self.xsks, &slot.to_ne_bytes(), "deleting from lns_xsks")
    }

    /// Forgets every cached next hop on every CPU (after a route change
    /// that must take effect at once): entries of an older epoch are stale.
    pub fn flush_nexthops(&self) -> Result<(), Error> {
        let mut c = self.read_config()?;
        c.nh_epoch = c.nh_epoch.wrapping_add(1);
        self.write_config(&c)
    }
}
