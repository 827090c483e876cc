#!/usr/bin/env bash
# Where the time goes, layer by layer: instructions (callgrind) and heap allocations per
# request of examples/bench_layers.rs, which drives N signed text-message callbacks through
# one service in-process (axum's router, no sockets: the server's HTTP work is not counted).
# Instruction counts are deterministic, so they compare across runs on a busy machine.
#
#   benches/layers.sh [N=2000] [VARIANT[:LOG] ...]
#
# Default variants: floor naive handler v tv vd vdf tvdf stack stack:1 stack:line
# (`t` Timing, `v` Verify, `d` Dedup, `f` FastAck; `stack` is CallbackLayer as the quick start
# builds it; `:1` adds the quick start's log subscriber (buffered, stdout to a file), `:line`
# the same writing each line at once, `:default-format` the quick start's fields through
# tracing-subscriber's own line format, `:sink` formatting into nothing; see bench_layers.rs).
# Needs valgrind. A benchmark: not part of the tests or CI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
count=${1:-2000}
shift || true
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(floor naive handler v tv vd vdf tvdf stack stack:1 stack:line)
command -v valgrind >/dev/null || { echo "layers.sh: needs valgrind" >&2; exit 69; }

(cd "$repo" && cargo build --release --quiet --example bench_layers)
bin=$repo/target/release/examples/bench_layers
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

printf '%-12s %14s %14s\n' variant "instr/request" "allocs/request"
for spec in "${variants[@]}"; do
  variant=${spec%%:*} log=0
  [ "$spec" != "$variant" ] && log=${spec#*:}
  LOG=$log valgrind --tool=callgrind --callgrind-out-file="$work/out" \
    --toggle-collect='*drive_requests*' "$bin" "$variant" "$count" >"$work/stdout" 2>"$work/stderr" || {
    cat "$work/stderr" >&2
    exit 1
  }
  collected=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/stderr" | tail -1)
  allocs=$(sed -n 's/.* \([0-9.]*\) allocations\/request.*/\1/p' "$work/stderr")
  printf '%-12s %14.0f %14s\n' "$spec" "$(awk -v c="$collected" -v n="$count" 'BEGIN { print c / n }')" "$allocs"
done
