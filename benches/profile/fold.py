#!/usr/bin/env python3
"""Reads `perf script` output (stdin) and prints where a server's CPU time goes.

    perf script -i perf.data | benches/profile/fold.py CPU_US_PER_REQUEST [TOP=25]

Each sample's call chain is folded; the sample belongs to the innermost of the crate's parts
that is on its chain (the log line inside Timing, the handler inside FastAck, ...), or to
"outside the layers" (hyper, axum's router, tokio, the kernel's network path) when none is.
Shares are of all the server's samples; CPU_US_PER_REQUEST (measured from /proc over the same
run) turns them into microseconds per request. Then the heaviest functions by self time.
"""
import collections
import re
import sys

# (part, substrings of frames that mark it).
PARTS = [
    ("Timing: span, clocks, statistics", ["timing::service::Timing<", "timing::future::ResponseFuture"]),
    ("Allow (no list set: passes through)", ["allow::service::Allow<"]),
    ("Verify: query, SHA-1, body, parse, replay memory",
     ["verify::service::Verify<", "verify::future::ResponseFuture"]),
    ("Dedup: key, store claim and complete",
     ["dedup::service::Dedup<", "dedup::future::ResponseFuture",
      "Recorder<St> as tower_wechat::hook::CompletionObserver"]),
    ("FastAck: permit, deadline, reply collected",
     ["ack::service::FastAck<", "ack::future::ResponseFuture"]),
    # The quick start's echo bot under FastAck; the naive server's whole handler (SHA-1,
    # quick-xml, format! reply) is inlined into axum's handler call.
    ("handler: extractor, reply, into response",
     ["Work<F>::poll_handler", "axum::handler::Handler<", "bench_naive::message"]),
    ("access line: event formatted and written", ["CallbackTiming::finish"]),
]
OUTSIDE = "outside the layers: hyper, axum, tokio, kernel"


def frames(lines):
    """Yields each sample's frames, outermost first."""
    current = []
    for line in lines:
        if not line.strip():
            if current:
                yield current[::-1]
            current = []
            continue
        if line[0] in " \t":
            parts = line.strip().split(" ", 1)
            if len(parts) == 2:
                symbol = parts[1].rsplit(" (", 1)[0]
                current.append(re.sub(r"\+0x[0-9a-f]+$", "", symbol))
    if current:
        yield current[::-1]


def main():
    cpu_us = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    owned = collections.Counter()
    leaves = collections.Counter()
    total = 0
    for chain in frames(sys.stdin):
        total += 1
        owner = OUTSIDE  # the innermost (last) frame that marks a part decides
        for frame in chain:
            for part, marks in PARTS:
                if any(mark in frame for mark in marks):
                    owner = part
        owned[owner] += 1
        leaves[chain[-1][:110]] += 1
    if not total:
        sys.exit("fold.py: no samples (is perf allowed to sample? see benches/README.md)")
    print(f"{'part':52s} {'share':>7s} {'µs/req':>7s}")
    for part, _ in PARTS + [(OUTSIDE, None)]:
        share = owned[part] / total
        print(f"{part:52s} {100 * share:6.2f}% {cpu_us * share:7.2f}")
    print(f"{'all':52s} {100.0:6.2f}% {cpu_us:7.2f}   ({total} samples)")
    print()
    print(f"heaviest functions by self time (top {top}):")
    for leaf, count in leaves.most_common(top):
        print(f"  {100 * count / total:5.2f}%  {leaf}")


if __name__ == "__main__":
    main()
