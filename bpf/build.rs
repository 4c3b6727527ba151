//! Compiles the XDP program with clang and generates its libbpf skeleton.
use std::env;
use std::path::PathBuf;
use std::process::Command;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "src/bpf/lns_xdp.bpf.c";
/// The benchmarks' bare AF_XDP baseline (every frame to its queue's socket).
const REFLECT_SRC: &str = "src/bpf/reflect.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));

    // The uapi headers (<linux/*.h>) include <asm/types.h>, which Debian keeps
    // under the host's multiarch directory; clang -target bpf does not look
    // there by itself.
    let multiarch = Command::new("gcc")
        .arg("-dumpmachine")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "x86_64-linux-gnu".to_string());

    SkeletonBuilder::new()
        .source(SRC)
        .clang_args([
            format!("-I{}", manifest.join("include").display()),
            format!("-I/usr/include/{multiarch}"),
            "-Wall".to_string(),
            "-Werror".to_string(),
        ])
        .build_and_generate(out.join("lns_xdp.skel.rs"))
        .expect("building the XDP program (is clang installed? run scripts/setup.sh)");

    SkeletonBuilder::new()
        .source(REFLECT_SRC)
        .clang_args([format!("-I/usr/include/{multiarch}"), "-Wall".to_string(), "-Werror".to_string()])
        .build_and_generate(out.join("reflect.skel.rs"))
        .expect("building the reflector's XDP program");

    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed={REFLECT_SRC}");
    println!("cargo:rerun-if-changed=include/lns_abi.h");
}
