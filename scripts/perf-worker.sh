#!/bin/sh
# scripts/perf-worker.sh OUT ARGS...: runs target/release/lns-load ARGS (as root, perf installed); once lns-dataplane's lns-worker-0 thread is busy
# (over 12 % of a core for a second: the measurement running; use --packets 8000000 or more),
# records it for 6 s with cpu-clock. Prints the rows and the top user symbols.
OUT=$1; shift
LOG=$OUT.txt
"$(dirname "$0")/../target/release/lns-load" "$@" > $LOG 2>&1 &
L=$!
while :; do
  kill -0 $L 2>/dev/null || exit 1
  P=$(pgrep -x lns-dataplane | head -1)
  T=""
  [ -n "$P" ] && T=$(for t in $(ls /proc/$P/task 2>/dev/null); do [ "$(cat /proc/$P/task/$t/comm 2>/dev/null)" = lns-worker-0 ] && echo $t; done)
  if [ -n "$T" ]; then
    a=$(awk '{print $14+$15}' /proc/$P/task/$T/stat 2>/dev/null); sleep 1
    b=$(awk '{print $14+$15}' /proc/$P/task/$T/stat 2>/dev/null)
    [ -n "$a" ] && [ -n "$b" ] && [ $((b - a)) -gt 12 ] && break
  else
    sleep 0.3
  fi
done
perf record -e cpu-clock -F 10000 -t $T -o $OUT.data -- sleep 6 >/dev/null 2>&1
wait $L
tail -2 $LOG
perf report -i $OUT.data --stdio 2>/dev/null | grep "Samples"
perf report -i $OUT.data --sort sym --stdio 2>/dev/null | grep -v "^#" | grep "\[\.\]" | head -8
