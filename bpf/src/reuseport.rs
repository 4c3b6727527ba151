//! Classic BPF on an SO_REUSEPORT group: the program picks, for each
//! datagram, which of the group's sockets receives it (socket(7),
//! SO_ATTACH_REUSEPORT_CBPF). The control plane uses it to keep its L2TP
//! control messages in a socket of their own, apart from the subscribers'
//! data that a flood may bring; the program itself is the control plane's
//! (it mirrors how that reads an L2TP header).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// One instruction: `code`, the jumps if true and if false, `k`.
pub use libc::sock_filter as Instruction;

/// Attaches `program` to the reuseport group of `socket` (any socket of
/// it, bound with SO_REUSEPORT): it runs on each datagram's payload (past
/// the UDP header) and returns the index of the socket to receive it, in
/// the order the sockets were bound; an index past the group, or a load
/// past the datagram's end (which returns 0), falls back as the kernel
/// says (past the group: the hash; the load: socket 0).
pub fn attach_reuseport_cbpf(socket: BorrowedFd<'_>, program: &[Instruction]) -> io::Result<()> {
    let len = u16::try_from(program.len()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "a classic BPF program of over 65535 instructions")
    })?;
    let fprog = libc::sock_fprog { len, filter: program.as_ptr().cast_mut() };
    // SAFETY: fprog points at `program`, which outlives the call, with its
    // length; the kernel copies the program and never writes through the
    // pointer; the option's length is fprog's size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
