//! The benchmarks' bare AF_XDP baseline: a program that redirects every
//! frame of a queue to the AF_XDP socket of that queue
//! (`src/bpf/reflect.bpf.c`), so a reflector measures AF_XDP itself and
//! nothing of the LNS's steering.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject};

use crate::reflect_skel::{ReflectSkel, ReflectSkelBuilder};
use crate::{Error, TestRunContext, XdpAction};

/// The reflector's program, loaded, with its socket map and attachments.
/// Dropping it detaches the program (the attachments are BPF links).
pub struct Reflector {
    skel: ReflectSkel<'static>,
    links: Vec<Link>,
}

impl Reflector {
    /// Sockets the map holds: queues 0 to 63.
    pub const MAX_QUEUES: u32 = 64;

    /// Loads the embedded program (nothing is pinned: the maps live as long
    /// as this process).
    pub fn load() -> Result<Reflector, Error> {
        // As for the steering program: the skeleton borrows its object
        // storage for its whole life, and a loaded program lives as long as
        // the process, so the storage is leaked on purpose.
        let storage: &'static mut MaybeUninit<OpenObject> = Box::leak(Box::new(MaybeUninit::uninit()));
        let open = ReflectSkelBuilder::default()
            .open(storage)
            .map_err(|e| Error::bpf("opening the reflector's XDP object", e))?;
        let skel = open.load().map_err(|e| Error::bpf("loading the reflector's XDP program", e))?;
        Ok(Reflector { skel, links: Vec::new() })
    }

    /// Puts `socket` (an AF_XDP socket bound to `queue`) in the socket map.
    pub fn set_xsk(&self, queue: u32, socket: impl AsFd) -> Result<(), Error> {
        let fd = socket.as_fd().as_raw_fd() as u32;
        self.skel
            .maps
            .reflect_xsks
            .update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| Error::bpf("writing reflect_xsks", e))
    }

    /// Attaches the program to `ifindex` through a BPF link, in the driver
    /// where it has XDP (veth does), else generic.
    pub fn attach(&mut self, ifindex: u32) -> Result<(), Error> {
        let link = self
            .skel
            .progs
            .reflect_xdp
            .attach_xdp(ifindex as i32)
            .map_err(|e| Error::bpf("attaching the reflector's XDP program", e))?;
        self.links.push(link);
        Ok(())
    }

    /// Runs the program `repeat` times on `frame` in live-frame mode, as
    /// [`crate::Steering::test_run_live`] does: the baseline of the
    /// steering program's cost per frame.
    pub fn test_run_live(
        &self,
        frame: &[u8],
        ctx: TestRunContext,
        repeat: u32,
    ) -> Result<std::time::Duration, Error> {
        crate::sys::xdp_test_run_live(&self.skel.progs.reflect_xdp, frame, ctx, repeat)
    }

    /// Runs the program `repeat` times on `frame` without carrying out the
    /// verdict; returns the verdict and the kernel's time per run.
    pub fn test_run_repeat(
        &self,
        frame: &[u8],
        ctx: TestRunContext,
        repeat: u32,
    ) -> Result<(XdpAction, std::time::Duration), Error> {
        crate::sys::xdp_test_run(&self.skel.progs.reflect_xdp, frame, ctx, repeat).map(|(a, d, _)| (a, d))
    }
}
