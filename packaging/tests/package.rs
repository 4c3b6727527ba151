//! The package and what it installs: the systemd units pass `systemd-analyze
//! verify`, the example configuration loads in both processes, every flag
//! of every binary is in its man page, and the .deb that cargo-deb builds
//! holds the binaries, units, examples and man pages, depends on what the
//! binaries link, and its binaries run once unpacked.
//!
//! The .deb is built from the binaries `cargo test --workspace` has built
//! (the test profile: cargo-deb is meant for release builds, but a release
//! build here would cost minutes; what is checked does not depend on the
//! profile). `scripts/build-deb.sh` builds the release package.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const UNITS: [&str; 2] = ["lns-dataplane@.service", "lns-controlplane@.service"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd).arg(arg).output().is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The directory of the workspace's binaries (target/<profile>/).
fn bin_dir() -> PathBuf {
    let bin = lns_testlab::workspace_bin("lns-dataplane").expect("lns-dataplane");
    let dir = bin.parent().expect("bin dir").to_path_buf();
    for b in lns_packaging::BINARIES {
        assert!(dir.join(b).exists(), "{b} not built: run `cargo test --workspace`");
    }
    dir
}

fn write_exec(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, "#!/bin/sh\n").unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// verify in a root of its own: the host's systemd units (the targets the
/// units are ordered against), ours, and stand-ins for the executables
/// they name, which verify checks exist. Any output is a finding: verify
/// exits 0 on unknown keys and values.
#[test]
fn units_verify() {
    if !have("systemd-analyze", "--version") {
        eprintln!("SKIPPED: systemd-analyze is not installed (scripts/setup.sh installs systemd)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("lib/systemd/system");
    fs::create_dir_all(&units).unwrap();
    run(Command::new("cp").arg("-a").arg("/lib/systemd/system/.").arg(&units));
    for u in UNITS {
        fs::copy(workspace().join("deploy/systemd").join(u), units.join(u)).unwrap();
    }
    for exe in
        ["usr/bin/lns-dataplane", "usr/bin/lns-controlplane", "usr/bin/lnsctl", "usr/bin/timeout", "bin/sh"]
    {
        write_exec(&root.path().join(exe));
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .arg("--man=no")
        .args(["lns-dataplane@edge1.service", "lns-controlplane@edge1.service"])
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
}

#[test]
fn units_agree_with_the_binaries() {
    let dp = fs::read_to_string(workspace().join("deploy/systemd/lns-dataplane@.service")).unwrap();
    let cp = fs::read_to_string(workspace().join("deploy/systemd/lns-controlplane@.service")).unwrap();
    assert!(dp.contains("ExecStart=/usr/bin/lns-dataplane --config /etc/lns/%i.toml --instance %i\n"));
    assert!(cp.contains("ExecStart=/usr/bin/lns-controlplane --config /etc/lns/%i.toml --instance %i\n"));
    assert!(cp.contains("BindsTo=lns-dataplane@%i.service\n"));
    // The flags the units pass exist.
    let dir = bin_dir();
    for (bin, flags) in [
        ("lns-dataplane", &["--config", "--instance"][..]),
        ("lns-controlplane", &["--config", "--instance"][..]),
        ("lnsctl", &["--instance", "show-xdp"][..]),
    ] {
        let help = run(Command::new(dir.join(bin)).arg("--help"));
        for f in flags {
            assert!(help.contains(f), "{bin} --help has no {f}");
        }
    }
}

#[test]
fn example_configuration_loads() {
    let file = workspace().join("deploy/lns.toml");
    let cp = lns_controlplane::daemon::Flags {
        config: Some(file.clone()),
        users: Some(workspace().join("deploy/users.toml")),
        instance: Some("edge1".into()),
        ..Default::default()
    };
    let cfg = lns_controlplane::daemon::Config::load(&cp).expect("the control plane loads deploy/lns.toml");
    assert_eq!(cfg.control_socket, PathBuf::from("/run/lns/edge1.sock"));
    let dp = lns_dataplane::config::Flags { config: Some(file), ..Default::default() };
    lns_dataplane::config::load(&dp, &|_| Ok(2)).expect("the data plane loads deploy/lns.toml");
}

/// `--flag` words of a text (roff escapes its hyphens as `\-`).
fn long_flags(text: &str) -> BTreeSet<String> {
    let text = text.replace("\\-", "-");
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let name: String =
            text[i + 2..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        if name.starts_with(|c: char| c.is_ascii_lowercase()) {
            out.insert(format!("--{name}"));
        }
    }
    out
}

/// Every flag each `--help` names (and every subcommand's) is in the page.
#[test]
fn man_pages_cover_every_flag() {
    let dir = bin_dir();
    let pages = lns_packaging::man_pages(&dir).expect("rendering the man pages");
    let page = |name: &str| -> String {
        let p = pages
            .iter()
            .find(|p| p.file_name == format!("{name}.8"))
            .unwrap_or_else(|| panic!("no {name}.8"));
        String::from_utf8(p.roff.clone()).unwrap()
    };
    for (bin, path) in [
        ("lns-dataplane", vec![]),
        ("lns-controlplane", vec![]),
        ("lnsctl", vec![]),
        ("lnsctl", vec!["static-session", "add"]),
        ("lnsctl", vec!["session", "kill"]),
    ] {
        let mut args = path.clone();
        args.push("--help");
        let help = run(Command::new(dir.join(bin)).args(&args));
        let name = std::iter::once(bin).chain(path.iter().copied()).collect::<Vec<_>>().join("-");
        let roff = page(&name);
        assert!(roff.starts_with(".ie"), "{name}.8 is not roff");
        assert!(roff.contains(".TH"), "{name}.8 has no .TH");
        let missing: Vec<_> = long_flags(&help).difference(&long_flags(&roff)).cloned().collect();
        assert!(missing.is_empty(), "{name}.8 lacks {missing:?}");
    }
    assert!(pages.len() > 10, "lnsctl's subcommands have pages");
}

/// Builds the .deb (when cargo-deb is installed), lists it, unpacks it and
/// runs what it installs.
#[test]
fn deb_package() {
    if !have("cargo-deb", "--version") {
        eprintln!("SKIPPED: cargo-deb is not installed (scripts/setup.sh installs it)");
        return;
    }
    let t0 = std::time::Instant::now();
    let dir = bin_dir();
    // The man pages where the package's assets expect them.
    let man = workspace().join("packaging/man");
    let _ = fs::remove_dir_all(&man);
    run(Command::new(dir.join("lns-man")).arg("--bin-dir").arg(&dir).arg("--out").arg(&man));
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(p) => p.to_string(),
        None => panic!("no profile directory"),
    };
    let out = tempfile::tempdir().unwrap();
    run(Command::new("cargo")
        .current_dir(workspace())
        .args([
            "deb",
            "-p",
            "lns-packaging",
            "--no-build",
            "--strip",
            "--fast",
            "--quiet",
            "--profile",
            &profile,
        ])
        .arg("--output")
        .arg(out.path()));
    let deb = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb");
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("lns_{}-1_", env!("CARGO_PKG_VERSION"))), "{name}");

    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for path in [
        "./usr/bin/lns-dataplane",
        "./usr/bin/lns-controlplane",
        "./usr/bin/lnsctl",
        "./lib/systemd/system/lns-dataplane@.service",
        "./lib/systemd/system/lns-controlplane@.service",
        "./usr/share/doc/lns/examples/lns.toml",
        "./usr/share/doc/lns/examples/users.toml",
        "./usr/share/man/man8/lns-dataplane.8.gz",
        "./usr/share/man/man8/lns-controlplane.8.gz",
        "./usr/share/man/man8/lnsctl.8.gz",
        "./usr/share/man/man8/lnsctl-static-session-add.8.gz",
    ] {
        assert!(listing.contains(&format!("{path}\n")), "{path} not in the package:\n{listing}");
    }
    assert!(!listing.contains("lns-man"), "the packaging tool is not part of the package");

    let depends = run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Depends"));
    for lib in ["libc6", "libelf1"] {
        assert!(depends.contains(lib), "Depends: {depends}");
    }
    let control = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(control.contains("postinst") && control.contains("postrm"), "{control}");

    // Installed (unpacked) binaries run, with nothing from the build tree.
    let root = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root.path()));
    for b in lns_packaging::BINARIES {
        let help = run(Command::new(root.path().join("usr/bin").join(b)).arg("--help"));
        assert!(help.contains("Usage:"), "{b} --help: {help}");
    }
    // Dependencies this machine's apt can satisfy (apt install ./lns_*.deb).
    if have("apt-get", "--version") {
        run(Command::new("apt-get")
            .args(["install", "--simulate", "-qq", "-o", "Debug::NoLocking=1"])
            .arg(&deb));
    }
    eprintln!("deb_package: {name} built and checked in {:.1} s", t0.elapsed().as_secs_f64());
}
