#!/usr/bin/env bash
# Where the real server's time goes: samples the quick start (or the naive handler) with perf
# while wrk loads it, and prints its CPU per request split by layer, then the heaviest
# functions. Unlike benches/layers.sh (callgrind, in-process, instructions) this is the whole
# server on loopback: hyper, tokio, the kernel's network path, cache misses and all.
#
#   benches/profile.sh [SECS=10] [SERVER=stack|naive] [RUST_LOG=info]
#
# Builds the server with frame pointers and line tables into target/profile-fp (a separate
# target directory: your release builds are not touched), starts it on core $SERVER_CPU (0),
# loads it from core $WRK_CPU (1) with `wrk -t1 -c64` replaying freshly signed text messages
# (as benches/compare.sh does), and records `perf record -e cpu-clock -g` (a software clock:
# works on VMs without hardware counters) over the run. The CPU time per request comes from
# /proc over the same run, so it includes perf's own overhead (a few per cent).
# Needs perf (Debian: apt-get install linux-perf), wrk, taskset, python3 and
# kernel.perf_event_paranoid <= 1 or root. Keeps perf.data in $WORKDIR (/tmp/tw-profile).
# A benchmark: not part of the tests or CI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
secs=${1:-10} server=${2:-stack}
server_cpu=${SERVER_CPU:-0} wrk_cpu=${WRK_CPU:-1}
work=${WORKDIR:-/tmp/tw-profile}
token=towerwechatdemo port=${PORT:-8290}
for tool in perf wrk taskset python3; do
  command -v "$tool" >/dev/null || { echo "profile.sh: '$tool' not found (see benches/README.md)" >&2; exit 69; }
done
case $server in
  stack) example=quickstart expect="hello bench" ;;
  naive) example=bench_naive expect="hello bench" ;;
  *) echo "profile.sh: SERVER is stack or naive" >&2; exit 64 ;;
esac

echo "== building $example (release, frame pointers, line tables) into target/profile-fp"
(cd "$repo" && CARGO_TARGET_DIR="$repo/target/profile-fp" CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release --quiet --example "$example" --example bench_requests)
bin=$repo/target/profile-fp/release/examples
mkdir -p "$work"
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -f "$work"/*.req; }
trap cleanup EXIT

setsid env WECHAT_ADDR=127.0.0.1:$port BENCH_ADDR=127.0.0.1:$port WECHAT_TOKEN=$token \
  RUST_LOG="${RUST_LOG:-info}" taskset -c "$server_cpu" "$bin/$example" >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

load() { # seconds -> wrk's RESULT line
  WECHAT_TOKEN=$token taskset -c "$wrk_cpu" "$bin/bench_requests" $(($1 * 110000)) "$work/load.req"
  taskset -c "$wrk_cpu" wrk -t1 -c64 -d"$1s" --timeout 5s -s "$here/compare/replay.lua" \
    "http://127.0.0.1:$port/wechat" -- "$work/load.req" "$expect" | grep '^RESULT'
}
jiffies() { awk '{ sub(/.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' "/proc/$pid/stat"; }

echo "== warm-up: 3 s (fills the nonce and dedup memories toward their budgets)"
load 3 >/dev/null
echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
WECHAT_TOKEN=$token taskset -c "$wrk_cpu" "$bin/bench_requests" $((secs * 110000)) "$work/load.req"
before=$(jiffies)
perf record -q -e cpu-clock -F 1999 -g -p "$pid" -o "$work/perf.data" -- sleep "$secs" 2>/dev/null &
perf_pid=$!
result=$(taskset -c "$wrk_cpu" wrk -t1 -c64 -d"${secs}s" --timeout 5s -s "$here/compare/replay.lua" \
  "http://127.0.0.1:$port/wechat" -- "$work/load.req" "$expect" | grep '^RESULT')
after=$(jiffies)
wait "$perf_pid" || true
echo "$result"
requests=$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<<"$result")
cpu_us=$(awk -v a="$after" -v b="$before" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
  'BEGIN { printf "%.2f", (a - b) * 1e6 / hz / (n > 0 ? n : 1) }')
echo "== $server: $cpu_us µs of CPU per request over the run (/proc), split by perf's samples:"
perf script -i "$work/perf.data" 2>/dev/null | python3 "$here/profile/fold.py" "$cpu_us" "${TOP:-25}"
