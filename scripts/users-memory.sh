#!/bin/sh
# The control plane's memory for a users file of N local users (default a
# million), without sessions: generates the file as lns-testlab does,
# starts target/release/lns-controlplane without a data plane, waits for
# its control socket (the users file is loaded before it) and prints
# VmHWM (the peak, which counts the load) and VmRSS from /proc.
#   scripts/users-memory.sh [N]
set -eu
n=${1:-1000000}
bin=${LNS_CONTROLPLANE:-target/release/lns-controlplane}
dir=$(mktemp -d /tmp/lns-users-memory.XXXXXX)
pid=
trap 'set +e; [ -z "$pid" ] || { kill "$pid"; wait "$pid"; } 2>/dev/null; rm -rf "$dir"' EXIT
awk -v n="$n" 'BEGIN { for (i = 1; i <= n; i++) printf "[[user]]\nname = \"user%d\"\npassword = \"pw%d\"\n", i, i }' >"$dir/users.toml"
start=$(date +%s.%N)
"$bin" --no-dataplane --no-slow-path --users "$dir/users.toml" --listen 127.0.0.1:0 \
    --control-socket "$dir/ctl.sock" --state-dir "$dir/state" --instance usersmem --log warn --peer 192.0.2.2 \
    >"$dir/log" 2>&1 &
pid=$!
while [ ! -S "$dir/ctl.sock" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then cat "$dir/log"; exit 1; fi
    sleep 0.05
done
loaded=$(date +%s.%N)
hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
awk -v n="$n" -v h="$hwm" -v r="$rss" -v t="$(echo "$loaded - $start" | bc)" 'BEGIN {
    printf "%d users: VmHWM %.1f MiB (%.0f bytes/user), VmRSS %.1f MiB, ready after %.2f s\n", n, h / 1024, h * 1024 / n, r / 1024, t }'
