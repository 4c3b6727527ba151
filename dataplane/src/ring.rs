//! AF_XDP sockets and their rings: the only module of the data plane with
//! `unsafe`. A worker owns one UMEM shared by its sockets (one per interface
//! on its queue), so a frame received on the access interface is sent on the
//! core interface without a copy.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use anyhow::{Context, Result};
use xsk_rs::config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

/// How sockets bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    Copy,
    ZeroCopy,
    /// Zero-copy where the driver supports it, else copy.
    Auto,
}

/// One AF_XDP socket (an interface's rx/tx queue) of a worker.
pub struct Port {
    pub ifindex: u32,
    pub ifname: String,
    rx: RxQueue,
    tx: TxQueue,
    fq: FillQueue,
    cq: CompQueue,
    /// Frames handed to the kernel for sending and not yet completed.
    pub tx_outstanding: usize,
}

/// The frames of one worker and its sockets.
pub struct Rings {
    umem: Umem,
    pub ports: Vec<Port>,
    /// Frames owned by userspace, ready to fill or to build packets in.
    pub free: Vec<FrameDesc>,
    fill_target: usize,
}

impl Rings {
    /// Creates the UMEM and binds one socket per interface on `queue`.
    pub fn new(
        ifaces: &[(String, u32)],
        queue: u32,
        frames: u32,
        ring_size: u32,
        bind: BindMode,
    ) -> Result<Rings> {
        let ring = QueueSize::new(ring_size).context("ring size must be a power of two")?;
        let cfg = UmemConfig::builder()
            .frame_size(FrameSize::new(2048).context("frame size")?)
            .fill_queue_size(ring)
            .comp_queue_size(ring)
            .build()
            .context("UMEM config")?;
        let count = frames.try_into().context("--frames must not be 0")?;
        let (umem, free) = Umem::new(cfg, count, false).context("creating the UMEM (RLIMIT_MEMLOCK?)")?;
        let mut ports = Vec::new();
        for (name, ifindex) in ifaces {
            let port = Self::bind(&umem, name, *ifindex, queue, ring, bind)?;
            ports.push(port);
        }
        let fill_target = (ring_size as usize).min(free.len() / (2 * ports.len().max(1)));
        let mut r = Rings { umem, ports, free, fill_target };
        for p in 0..r.ports.len() {
            r.refill(p);
        }
        Ok(r)
    }

    fn bind(
        umem: &Umem,
        name: &str,
        ifindex: u32,
        queue: u32,
        ring: QueueSize,
        bind: BindMode,
    ) -> Result<Port> {
        let iface: Interface = name.parse().context("interface name")?;
        let try_bind = |flags: BindFlags| {
            let cfg = SocketConfig::builder()
                .rx_queue_size(ring)
                .tx_queue_size(ring)
                // Our own XDP program steers; libxdp must not load its own.
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .bind_flags(flags)
                .build();
            // SAFETY: each (interface, queue) is bound once per UMEM, and
            // libxdp is told not to load a program, which is what
            // Socket::new requires for a shared UMEM.
            unsafe { xsk_rs::Socket::new(cfg, umem, &iface, queue) }
        };
        let attempt = || match bind {
            BindMode::Copy => try_bind(BindFlags::XDP_COPY),
            BindMode::ZeroCopy => try_bind(BindFlags::XDP_ZEROCOPY),
            BindMode::Auto => try_bind(BindFlags::XDP_ZEROCOPY).or_else(|_| try_bind(BindFlags::XDP_COPY)),
        };
        // A socket of a process that just exited (a data plane restarted
        // at once, or the next run of a benchmark) holds the queue until
        // the kernel has released it, which it does a moment later: the
        // bind says EBUSY meanwhile. Waited for, up to BIND_BUSY_WAIT.
        let t0 = std::time::Instant::now();
        let mut result = attempt();
        while result.as_ref().err().is_some_and(is_busy) && t0.elapsed() < BIND_BUSY_WAIT {
            std::thread::sleep(std::time::Duration::from_millis(50));
            result = attempt();
        }
        let (tx, rx, fq_cq) =
            result.with_context(|| format!("binding an AF_XDP socket to {name} queue {queue}"))?;
        let (fq, cq) =
            fq_cq.context("xsk-rs returned no fill/completion rings for a new (interface, queue)")?;
        Ok(Port { ifindex, ifname: name.to_string(), rx, tx, fq, cq, tx_outstanding: 0 })
    }

    pub fn fd(&self, port: usize) -> BorrowedFd<'_> {
        // SAFETY: the descriptor is owned by the port's queues, which live as
        // long as self.
        unsafe { BorrowedFd::borrow_raw(self.ports[port].rx.fd().as_raw_fd()) }
    }

    /// Tops up a port's fill ring from the free frames.
    pub fn refill(&mut self, port: usize) {
        let p = &mut self.ports[port];
        let want = p.fq.nb_free(self.fill_target as u32) as usize;
        let n = want.min(self.free.len());
        if n == 0 {
            return;
        }
        let start = self.free.len() - n;
        // SAFETY: the descriptors came from this UMEM and are owned by
        // userspace (free list), so the kernel may have them.
        let done = unsafe { p.fq.produce(&self.free[start..]) };
        self.free.truncate(self.free.len() - done);
    }

    /// Collects completed transmissions into the free list.
    pub fn complete(&mut self, port: usize, scratch: &mut [FrameDesc]) -> usize {
        let p = &mut self.ports[port];
        if p.tx_outstanding == 0 {
            return 0;
        }
        // SAFETY: the descriptors are filled from this UMEM's completion ring.
        let n = unsafe { p.cq.consume(scratch) };
        p.tx_outstanding -= n.min(p.tx_outstanding);
        self.free.extend_from_slice(&scratch[..n]);
        n
    }

    /// Takes up to `out.len()` received frames.
    pub fn receive(&mut self, port: usize, out: &mut [FrameDesc]) -> usize {
        // SAFETY: descriptors are written by the kernel for this UMEM.
        unsafe { self.ports[port].rx.consume(out) }
    }

    /// The frame of `desc` as (whole capacity, received length). The frame
    /// belongs to userspace between receive and send, so the slice is ours.
    pub fn frame<'a>(&'a self, desc: &'a mut FrameDesc) -> (xsk_rs::umem::frame::DataMut<'a>, usize) {
        // SAFETY: desc came from this UMEM (receive, complete or the free
        // list) and no other reference to its frame exists while the worker
        // handles it.
        let mut d = unsafe { self.umem.data_mut(desc) };
        let len = d.contents().len();
        let mut c = d.cursor();
        let cap = c.buf_len();
        c.set_pos(cap);
        (d, len)
    }

    /// The metadata at the start of a received frame (read ahead of
    /// processing, to prefetch what it names).
    pub fn peek_meta(&self, desc: &FrameDesc) -> Option<lns_bpf::abi::XdpMeta> {
        // SAFETY: desc came from this UMEM's rx ring and the frame belongs
        // to userspace until it is sent or refilled; only read here.
        let d = unsafe { self.umem.data(desc) };
        lns_bpf::abi::XdpMeta::from_bytes(d.contents())
    }

    /// Moves the start of `desc`'s data by `delta` bytes within its frame
    /// (negative: into the room the kernel leaves before a received
    /// packet), the end staying put; false if that would leave the frame.
    pub fn move_start(&self, desc: &mut FrameDesc, delta: isize) -> bool {
        self.umem.move_data_start(desc, delta)
    }

    /// Queues frames for sending on `port`; returns how many the ring took
    /// (the rest stay with the caller).
    pub fn send(&mut self, port: usize, descs: &[FrameDesc]) -> usize {
        let p = &mut self.ports[port];
        // SAFETY: the frames are from this UMEM and userspace gives up their
        // ownership until they come back on the completion ring.
        let n = unsafe { p.tx.produce(descs) };
        p.tx_outstanding += n;
        n
    }

    /// Asks the kernel to transmit (copy mode sends only on sendto, at most
    /// 32 frames each time, so this is called while anything is outstanding).
    pub fn kick(&self, port: usize) {
        match self.ports[port].tx.wakeup() {
            Ok(()) => {}
            // Busy, out of buffers or would block: the next kick retries.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN)
                ) => {}
            Err(_) => {}
        }
    }

    /// Sleeps until a socket has something to receive, or `timeout_ms`.
    pub fn wait(&self, timeout_ms: i32) -> io::Result<()> {
        let mut fds: Vec<libc::pollfd> = self
            .ports
            .iter()
            .map(|p| libc::pollfd { fd: p.rx.fd().as_raw_fd() as RawFd, events: libc::POLLIN, revents: 0 })
            .collect();
        // SAFETY: fds is a valid array of pollfd of the given length.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// How long a bind waits for a queue another socket still holds.
const BIND_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Is this bind error the queue still held by another socket (EBUSY)?
fn is_busy(e: &xsk_rs::socket::SocketCreateError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .and_then(std::io::Error::raw_os_error)
        == Some(libc::EBUSY)
}
