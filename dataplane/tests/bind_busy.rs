//! A queue still held by another AF_XDP socket: the bind waits for it to
//! be released (a data plane restarted at once after the last one exited)
//! instead of failing at the first EBUSY, and gives up with the error when
//! it is not.

use std::time::{Duration, Instant};

use lns_dataplane::ring::{BindMode, Rings};
use lns_testlab::Lab;

/// Moves the calling thread into `ns`'s network namespace (setns is per
/// thread), and returns acc0's index there.
fn enter(ns: &str) -> u32 {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a valid namespace descriptor changes only this
    // thread's network namespace.
    assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
    let name = std::ffi::CString::new("acc0").unwrap();
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0, "acc0 in {ns}");
    index
}

fn bind(index: u32) -> anyhow::Result<Rings> {
    Rings::new(&[("acc0".to_string(), index)], 0, 256, 64, BindMode::Copy)
}

#[test]
fn a_bind_waits_for_the_queue_s_last_socket_to_go() {
    let lab = Lab::new(1).unwrap();
    let ns = lab.lns.name().to_string();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn({
        let ns = ns.clone();
        move || {
            let index = enter(&ns);
            let rings = bind(index).expect("the first socket binds");
            held_tx.send(()).unwrap();
            // Released when told, while the other bind is waiting.
            go_rx.recv().unwrap();
            std::thread::sleep(Duration::from_millis(400));
            drop(rings);
        }
    });
    held_rx.recv().unwrap();
    let waiter = std::thread::spawn(move || {
        let index = enter(&ns);
        let t0 = Instant::now();
        go_tx.send(()).unwrap();
        let r = bind(index);
        (r.map(|_| ()), t0.elapsed())
    });
    let (r, waited) = waiter.join().unwrap();
    holder.join().unwrap();
    r.expect("bound once the other socket was gone");
    assert!(waited >= Duration::from_millis(300), "it waited for the queue: {waited:?}");
}

#[test]
fn a_queue_held_for_good_gives_the_error_after_the_wait() {
    let lab = Lab::new(1).unwrap();
    let ns = lab.lns.name().to_string();
    let r = std::thread::spawn(move || {
        let index = enter(&ns);
        let _held = bind(index).expect("the first socket binds");
        let t0 = Instant::now();
        let second = bind(index).map(|_| ());
        (second, t0.elapsed())
    })
    .join()
    .unwrap();
    let err = format!("{:#}", r.0.expect_err("a held queue cannot be bound twice"));
    assert!(err.contains("busy"), "the kernel's reason is kept: {err}");
    assert!(r.1 >= Duration::from_secs(2), "it waited before giving up: {:?}", r.1);
}
