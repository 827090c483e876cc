#!/usr/bin/env bash
# The full stack side by side with a naive hand-written handler and the floor, in one run.
#
#   benches/compare.sh [SECS=6] [ROUNDS=3]
#
# Builds (release) and starts, each alone on core $SERVER_CPU (default 0):
#   stack  the quick start (examples/quickstart.rs): CallbackLayer = Timing -> Verify -> Dedup
#          -> FastAck, serve::Server, one INFO line per callback written to a file
#   naive  examples/bench_naive.rs: sha1 signature check + quick-xml walk + format! reply
#   floor  examples/bench_naive.rs floor: "success" to anything, nothing checked
# then loads them in turn from core $WRK_CPU (default 1) with `wrk -t1 -c$CONNS`, every request
# a freshly signed text message with a unique MsgId (examples/bench_requests.rs), every reply
# checked (non-2xx and bodies without the expected text are counted). Rounds interleave the
# servers (stack, naive, floor, stack, ...) so that drift on a shared machine hits all alike.
#
# Per run it prints req/s, the server's CPU time per answered request (all its threads and
# processes, from /proc: utime + stime over the run) and its RSS; then the medians, the
# ratios the issue asks for, and each server's RSS after the last run (and its peak).
#
# Environment:
#   CONNS=64 SERVER_CPU=0 WRK_CPU=1   connections; cores for the servers and for wrk
#   RATE_CAP=110000                   requests generated per second of run (none may repeat)
#   DELAY_MS=0                        >0: each connection pauses this long after each answer,
#                                     so every server gets about the same offered rate
#                                     (CONNS x 1000 / (DELAY_MS + latency) per second) instead
#                                     of being saturated: CPU per request at equal load
#   SERVERS="stack naive floor"       which to run, in this order each round
#   RUST_LOG=info                     the stack's log filter (warn: no line per callback)
#   STACK_BIN=path                    another build of the stack to measure (same env as the
#                                     quick start: WECHAT_ADDR, WECHAT_TOKEN)
#   ALT_STACKS="name=path[@level] ..."  more builds of the stack (A/B), each with its log level
#   PEER="cmd args" PEER_URL=url      also load a server you start with cmd (e.g. the team's
#   PEER_EXPECT=text                  wechatpy peer); its CPU counts every process in its session
#   WORKDIR=/tmp/tw-compare           request files and the stack's log (removed unless KEEP=1)
# Needs wrk (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk), taskset
# (util-linux) and Linux /proc. A benchmark: not part of the tests or CI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
secs=${1:-6} rounds=${2:-3}
conns=${CONNS:-64} server_cpu=${SERVER_CPU:-0} wrk_cpu=${WRK_CPU:-1}
rate_cap=${RATE_CAP:-110000}
servers=(${SERVERS:-stack naive floor})
work=${WORKDIR:-/tmp/tw-compare}
token=towerwechatdemo

for tool in wrk taskset; do
  if ! command -v "$tool" >/dev/null; then
    echo "compare.sh: '$tool' not found." >&2
    [ "$tool" = wrk ] && echo "  install it: apt-get install wrk (Debian/Ubuntu), brew install wrk (macOS)," \
      "or build https://github.com/wg/wrk" >&2
    [ "$tool" = taskset ] && echo "  install util-linux (apt-get install util-linux)" >&2
    exit 69
  fi
done
[ -r /proc/self/stat ] || { echo "compare.sh: needs Linux /proc" >&2; exit 69; }
[ "$(nproc)" -ge 2 ] || echo "compare.sh: WARNING: one core only; server and wrk share it" >&2

echo "== building (release)"
(cd "$repo" && cargo build --release --quiet --example quickstart --example bench_naive --example bench_requests)
bin=$repo/target/release/examples
stack_bin=${STACK_BIN:-$bin/quickstart}

mkdir -p "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || rm -f "$work"/*.req
}
trap cleanup EXIT

declare -A pid url expect
start() { # name url expect cmd...
  local name=$1
  url[$name]=$2 expect[$name]=$3
  shift 3
  setsid "$@" &
  pid[$name]=$!
  pids+=("$!")
  local port=${url[$name]#http://*:} ; port=${port%%/*}
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "${pid[$name]}" 2>/dev/null || { echo "compare.sh: $name exited at start" >&2; exit 1; }
    sleep 0.1
  done
  echo "compare.sh: $name did not listen on port $port" >&2
  exit 1
}

# CPU jiffies (all, then user space only) and RSS (kB) summed over every live process in the
# session of $1.
session_stats() {
  local sid
  sid=$(awk '{ sub(/.*\) /, ""); print $4 }' "/proc/$1/stat")
  awk -v sid="$sid" '
    FNR == 1 && FILENAME ~ /\/stat$/ { sub(/.*\) /, ""); split($0, f, " ");
      if (f[4] == sid) { cpu += f[12] + f[13]; user += f[12]; mine[FILENAME] = 1 } }
    FILENAME ~ /\/status$/ && /^VmRSS:/ { s = FILENAME; sub(/status$/, "stat", s); if (s in mine) rss += $2 }
    FILENAME ~ /\/status$/ && /^VmHWM:/ { s = FILENAME; sub(/status$/, "stat", s); if (s in mine) hwm += $2 }
    END { printf "%d %d %d %d\n", cpu, rss, hwm, user }' /proc/[0-9]*/stat /proc/[0-9]*/status 2>/dev/null
}

echo "== starting servers on core $server_cpu"
for name in "${servers[@]}"; do
  case $name in
    stack) start stack http://127.0.0.1:8200/wechat "hello bench" \
      env WECHAT_ADDR=127.0.0.1:8200 WECHAT_TOKEN=$token RUST_LOG="${RUST_LOG:-info}" \
      taskset -c "$server_cpu" "$stack_bin" >"$work/stack.log" 2>&1 ;;
    naive) start naive http://127.0.0.1:8201/wechat "hello bench" \
      env BENCH_ADDR=127.0.0.1:8201 WECHAT_TOKEN=$token taskset -c "$server_cpu" "$bin/bench_naive" 2>/dev/null ;;
    floor) start floor http://127.0.0.1:8202/wechat success \
      env BENCH_ADDR=127.0.0.1:8202 taskset -c "$server_cpu" "$bin/bench_naive" floor 2>/dev/null ;;
    *) echo "compare.sh: unknown server $name" >&2; exit 64 ;;
  esac
done
alt_port=8210
for alt in ${ALT_STACKS:-}; do
  name=${alt%%=*} spec=${alt#*=}
  path=${spec%@*} level=info
  [ "$spec" != "$path" ] && level=${spec##*@}
  start "$name" "http://127.0.0.1:$alt_port/wechat" "hello bench" \
    env WECHAT_ADDR=127.0.0.1:$alt_port WECHAT_TOKEN=$token RUST_LOG="$level" \
    taskset -c "$server_cpu" "$path" >"$work/$name.log" 2>&1
  servers+=("$name")
  alt_port=$((alt_port + 1))
done
if [ -n "${PEER:-}" ]; then
  : "${PEER_URL:?set PEER_URL with PEER}"
  # shellcheck disable=SC2086
  start peer "$PEER_URL" "${PEER_EXPECT:-hello bench}" env TOKEN=$token SERVER_CPU="$server_cpu" $PEER >/dev/null 2>&1
  servers+=(peer)
fi

# One wrk run against $1 for $2 seconds; prints "rps cpu_us rss_mb requests non2xx bad replayed
# user_us" (user_us: the part of cpu_us spent in user space; the rest is the kernel's).
run() {
  local name=$1 secs=$2 reqs out before after
  reqs="$work/$name.req"
  WECHAT_TOKEN=$token taskset -c "$wrk_cpu" "$bin/bench_requests" $((secs * rate_cap)) "$reqs"
  before=$(session_stats "${pid[$name]}")
  out=$(taskset -c "$wrk_cpu" wrk -t1 -c"$conns" -d"${secs}s" --timeout 5s \
    -s "$here/compare/replay.lua" "${url[$name]}" -- "$reqs" "${expect[$name]}" "${DELAY_MS:-0}" | grep '^RESULT')
  after=$(session_stats "${pid[$name]}")
  rm -f "$reqs"
  awk -v before="$before" -v after="$after" -v hz="$(getconf CLK_TCK)" -v out="$out" 'BEGIN {
    split(before, b, " "); split(after, a, " "); n = split(out, kv, " ");
    for (i = 2; i <= n; i++) { split(kv[i], p, "="); r[p[1]] = p[2] }
    n_req = r["requests"] > 0 ? r["requests"] : 1;
    cpu_us = (a[1] - b[1]) * 1e6 / hz / n_req; user_us = (a[4] - b[4]) * 1e6 / hz / n_req;
    printf "%.1f %.2f %.1f %d %d %d %d %.2f\n", r["rps"], cpu_us, a[2] / 1024, r["requests"],
      r["non2xx"], r["bad_body"], r["replayed"], user_us }'
}

echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "${DELAY_MS:-0}" != 0 ] && echo "== equal offered load: each connection pauses ${DELAY_MS} ms after each answer"
echo "== warm-up: 2 s each"
for name in "${servers[@]}"; do run "$name" 2 >/dev/null; done

declare -A rps_list cpu_list user_list
printf '%-10s %5s %10s %12s %8s %8s %9s %6s %5s %8s  %s\n' server round req/s "CPU µs/req" "user µs" "RSS MB" requests non2xx bad replayed load
for round in $(seq "$rounds"); do
  for name in "${servers[@]}"; do
    read -r rps cpu rss requests non2xx bad replayed user < <(run "$name" "$secs")
    printf '%-10s %5d %10s %12s %8s %8s %9s %6s %5s %8s  %s\n' "$name" "$round" "$rps" "$cpu" "$user" "$rss" \
      "$requests" "$non2xx" "$bad" "$replayed" "$(cut -d' ' -f1 /proc/loadavg)"
    rps_list[$name]+="$rps " cpu_list[$name]+="$cpu " user_list[$name]+="$user "
  done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A rps_med cpu_med user_med
echo
echo "== medians of $rounds rounds of ${secs} s, wrk -t1 -c$conns, $(date -u '+%H:%M:%S UTC'), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %10s %12s %8s %14s %14s\n' server req/s "CPU µs/req" "user µs" "RSS MB (now)" "RSS MB (peak)"
for name in "${servers[@]}"; do
  rps_med[$name]=$(echo "${rps_list[$name]}" | median)
  cpu_med[$name]=$(echo "${cpu_list[$name]}" | median)
  user_med[$name]=$(echo "${user_list[$name]}" | median)
  read -r _ rss hwm _ < <(session_stats "${pid[$name]}")
  printf '%-10s %10s %12s %8s %14.1f %14.1f\n' "$name" "${rps_med[$name]}" "${cpu_med[$name]}" "${user_med[$name]}" \
    "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$(awk -v k="$hwm" 'BEGIN { print k / 1024 }')"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }
if [ -n "${cpu_med[stack]:-}" ] && [ -n "${cpu_med[naive]:-}" ]; then
  echo "stack/naive CPU per request: $(ratio "${cpu_med[stack]}" "${cpu_med[naive]}")x (goal <= 1.2);" \
    "stack/naive req/s: $(ratio "${rps_med[stack]}" "${rps_med[naive]}") (goal >= 0.8)"
  echo "stack/naive user-space CPU per request: $(ratio "${user_med[stack]}" "${user_med[naive]}")x" \
    "(the rest is the kernel's: loopback TCP, waking wrk, the log file's page cache)"
fi
if [ -n "${cpu_med[stack]:-}" ] && [ -n "${cpu_med[peer]:-}" ]; then
  echo "peer/stack CPU per request: $(ratio "${cpu_med[peer]}" "${cpu_med[stack]}")x (goal >= 6)"
fi
if [ -n "${pid[stack]:-}" ]; then
  kill -TERM "${pid[stack]}" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "${pid[stack]}" 2>/dev/null || break; sleep 0.1; done
  echo "stack log: $(grep -c 'callback answered' "$work/stack.log" || true) 'callback answered' lines," \
    "$(wc -c <"$work/stack.log") bytes ($work/stack.log)"
fi
