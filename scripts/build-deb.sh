#!/usr/bin/env bash
# Builds the lns Debian package: target/debian/lns_<version>-1_<arch>.deb,
# installable with `apt install ./target/debian/lns_*.deb` (README, Install).
# Needs cargo-deb (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -p lns-dataplane -p lns-controlplane -p lns-packaging
# The man pages, from the binaries just built (packaging/src/lib.rs says why).
"$target/release/lns-man" --bin-dir "$target/release" --out packaging/man
# Stripped: [profile.release] keeps line tables (debug = 1) for the
# benchmarks' profiles: 120 MB installed instead of 9.
cargo deb -p lns-packaging --no-build --locked --strip --output "$target/debian/"
ls -l "$target"/debian/lns_*.deb
