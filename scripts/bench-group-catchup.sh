#!/usr/bin/env bash
# Group catch-up benchmark (docs/BENCHMARKS.md, "Groups: catch-up"): three release
# `lanchat serve` nodes on loopback; C away while A sends 10k messages to the group
# (through A's API), A then offline for good; the time from C's restart to C holding
# all of them (relayed by B), beside a raw SQLite insert of as many rows in one
# transaction. Arguments go to the benchmark, e.g.
#   scripts/bench-group-catchup.sh --messages 10000 --in-flight 32
# Results: printed, and target/test-artifacts/bench_group_catchup_results/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."

# The lanchat binary embeds the UI: build it first (unless told it is there), then
# everything in release.
if [ -z "${SKIP_UI_BUILD:-}" ]; then
  scripts/build-ui.sh
fi
cargo build --workspace --release

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export LANCHAT_BIN="$target_dir/release/lanchat"
exec "$target_dir/release/bench_group_catchup" "$@"
