#!/usr/bin/env bash
# Group fan-out benchmark of issue 6 (docs/BENCHMARKS.md, "Groups: fan-out"): one group
# of 64 members, each a real `lanchat serve` process on loopback; send → last member's
# event p50/p99 and sustained group messages/s, beside a raw WebSocket echo and raw
# SQLite inserts measured in the same run. Builds in release, runs
# tests/src/bin/bench_group_fanout.rs. Arguments go to the benchmark, e.g.
#   scripts/bench-group-fanout.sh --members 64 --messages 100 --flood 300
# Results: printed, and target/test-artifacts/bench_group_fanout/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."

# The lanchat binary embeds the UI: build it first, then everything in release.
scripts/build-ui.sh
cargo build --workspace --release

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export LANCHAT_BIN="$target_dir/release/lanchat"
# 64 nodes, each with a few sockets and its SQLite files.
ulimit -n 65536 2>/dev/null || true
exec "$target_dir/release/bench_group_fanout" "$@"
