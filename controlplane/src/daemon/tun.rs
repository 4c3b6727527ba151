//! The instance's TUN device: the exception path's way into the kernel's
//! IP stack (issue 18).
//!
//! Subscriber packets the data plane cannot forward itself come to the
//! control plane, which writes them into this device; the kernel routes
//! what it sends to subscribers into it (see [`super::routes`]), and the
//! control plane reads them here and sends them down the subscriber's
//! session. Layer 3 (`IFF_TUN`) without the packet information header
//! (`IFF_NO_PI`): each read and each write is exactly one IPv4 or IPv6
//! packet, the version nibble says which.
//!
//! The device is created non-persistent, in the network namespace of the
//! calling thread, so it disappears with the file descriptor: a control
//! plane that exits or crashes leaves no interface (and no routes through
//! it: the kernel removes those with the device). A device that already
//! exists and was made persistent by someone else is attached to instead,
//! and stays after us.
//!
//! `tun-rs` does the ioctls (TUNSETIFF, SIOCSIFMTU, SIOCSIFFLAGS) and puts
//! the descriptor on tokio's reactor, so this module has no unsafe code.

use std::io;

use tun_rs::{AsyncDevice, DeviceBuilder, Layer};

/// Longest interface name Linux takes (IFNAMSIZ less the NUL).
pub const MAX_NAME_LEN: usize = 15;

/// Packets the kernel queues in the device for us to read (its default is
/// 500). The loop that reads them also does the control work, so it falls
/// behind now and then; at 500 a busy moment dropped half of a 64-byte
/// downstream flood in `lns-load --peer l2tpns --path slow` (l2tpns sets
/// 1,000). 5,000 is 50-100 ms at the rate the loop drains them.
const TX_QUEUE_LEN: u32 = 5000;

/// One TUN device, open and up; removed when dropped.
pub struct TunDevice {
    device: AsyncDevice,
    name: String,
    ifindex: u32,
}

impl std::fmt::Debug for TunDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunDevice").field("name", &self.name).field("ifindex", &self.ifindex).finish()
    }
}

impl TunDevice {
    /// Creates (or attaches to) the TUN device `name` in the calling
    /// thread's network namespace, sets its MTU and brings it up. No
    /// address is given to it: routes through it are enough to receive,
    /// and what is written into it is routed by its destination.
    ///
    /// Must be called inside a tokio runtime (the descriptor is registered
    /// with its reactor).
    pub fn create(name: &str, mtu: u16) -> io::Result<TunDevice> {
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains(['/', ' ', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TUN device name {name:?}: 1 to {MAX_NAME_LEN} bytes, no '/' or spaces"),
            ));
        }
        let device = DeviceBuilder::new()
            .name(name)
            .layer(Layer::L3)
            .packet_information(false)
            .mtu(mtu)
            .tx_queue_len(TX_QUEUE_LEN)
            .enable(true)
            .build_async()
            .map_err(|e| io::Error::new(e.kind(), format!("creating TUN device {name}: {e}")))?;
        // The name the kernel gave (the same, unless it held a `%d`), and
        // its index, read now: both are looked up in the calling thread's
        // namespace, which later callers may not share.
        let name = device.name()?;
        let ifindex = device.if_index()?;
        Ok(TunDevice { device, name, ifindex })
    }

    /// Waits for one IP packet the kernel routed into the device and
    /// copies it into `buf`, returning its length. A packet longer than
    /// `buf` is cut short: give a buffer of at least the MTU.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.device.recv(buf).await
    }

    /// The next IP packet already queued in the device, without waiting
    /// (`None`: none is), copied into `buf` as [`TunDevice::recv`] does:
    /// the driver drains a burst per wake of its loop.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.device.try_recv(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Hands one IP packet to the kernel, as if it had arrived on the
    /// device. Never waits: a queue that is full is an error of kind
    /// `WouldBlock`, for the caller to count as a drop.
    pub fn try_send(&self, packet: &[u8]) -> io::Result<()> {
        let n = self.device.try_send(packet)?;
        if n != packet.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("TUN write took {n} of {} bytes", packet.len()),
            ));
        }
        Ok(())
    }

    /// The interface index, for routes through the device.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }
}
