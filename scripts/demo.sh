#!/usr/bin/env bash
# The README demo: builds, brings up a namespace lab, runs the data plane with
# static sessions, sends traffic both ways through the fast path, prints what
# happened and removes everything. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
exec ./target/release/lns-demo "$@"
