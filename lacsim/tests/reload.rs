//! Reloading the control plane's configuration under subscribers: a user
//! added to the file logs in after `lnsctl reload` (and after SIGHUP), a
//! broken file changes nothing and the answer says what is wrong, and the
//! sessions up meanwhile stay.

mod common;
use common::{lacsim, start_dp};

use std::io::Write;

use lns_testlab::{workspace_bin, Lab, PinDir};

fn login(lab: &Lab, user: &str, password: &str) -> serde_json::Value {
    lacsim(lab, &["--tunnels", "1", "--sessions-per-tunnel", "1", "--user", user, "--password", password])
}

fn lnsctl(socket: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(workspace_bin("lnsctl").unwrap())
        .arg("--control-socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

fn add_user(dir: &std::path::Path, name: &str, password: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(dir.join("users.toml")).unwrap();
    writeln!(f, "[[user]]\nname = \"{name}\"\npassword = \"{password}\"").unwrap();
}

#[test]
fn a_reload_takes_new_users_and_a_broken_file_changes_nothing() {
    let lab = Lab::new(1).unwrap();
    let pins = PinDir::new().unwrap();
    let _dp = start_dp(&lab, &pins, "1", "skb");
    let cp = lab.start_controlplane(pins.path(), 1, &[]).unwrap();
    // A long-lived subscriber, up through every reload.
    let mut resident = lns_testlab::NsProcess::spawn(
        &lab.lac,
        &workspace_bin("lns-lacsim").unwrap(),
        &[
            "--server",
            "192.0.2.1:1701",
            "--json",
            "--tunnels",
            "1",
            "--sessions-per-tunnel",
            "1",
            "--user",
            "user1",
            "--password",
            "pw1",
            "--hold",
            "30",
        ],
    )
    .unwrap();

    let s = login(&lab, "newcomer", "pw-new");
    assert_eq!(s["sessions_up"].as_u64(), Some(0), "not a user yet: {s}");

    add_user(&cp.dir, "newcomer", "pw-new");
    let out = lnsctl(&cp.socket, &["reload"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("reloaded"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("2 local users") && said.contains("sessions kept"), "{said}");
    let s = login(&lab, "newcomer", "pw-new");
    assert_eq!(s["sessions_up"].as_u64(), Some(1), "added by the reload: {s}");

    // A key the file may not have: refused, nothing changes.
    let conf = cp.dir.join("lns.toml");
    let good = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("bogus_setting = 1\n{good}")).unwrap();
    add_user(&cp.dir, "late", "pw-late");
    let out = lnsctl(&cp.socket, &["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("bogus_setting"), "{err}");
    assert!(err.contains("running configuration stays"), "{err}");
    let s = login(&lab, "late", "pw-late");
    assert_eq!(s["sessions_up"].as_u64(), Some(0), "the broken file changed nothing: {s}");

    // Fixed, and SIGHUP instead of lnsctl.
    std::fs::write(&conf, &good).unwrap();
    let hup = std::process::Command::new("kill").args(["-HUP", &cp.proc.pid().to_string()]).status().unwrap();
    assert!(hup.success());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let s = login(&lab, "late", "pw-late");
    assert_eq!(s["sessions_up"].as_u64(), Some(1), "SIGHUP reloaded: {s}");

    // The resident subscriber never noticed.
    let stats = lnsctl(&cp.socket, &["--json", "show", "stats"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["sessions"].as_u64(), Some(1), "{stats}");
    assert!(resident.alive());
    resident.stop(2);
}
