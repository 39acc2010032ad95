#!/usr/bin/env bash
# File-transfer benchmark of issue 17 (docs/BENCHMARKS.md, "Files (issue 17)"): on a
# network-namespace LAN of two release nodes, a file of N MiB sent a → b, timed from the
# upload's 201 to b's `available`, beside raw TCP over the same veth pair and this
# machine's single-core ChaCha20-Poly1305 + SHA-256 + write rate measured in the same
# run; b's RSS during the transfer; DM latency during the transfer beside no transfer.
#
# Needs root (network namespaces) and about 3 × N MiB + 1 GiB free beside the target
# directory. Installs what it needs when root and missing (curl, iproute2), builds in
# release, runs tests/src/bin/bench_files.rs. Arguments go to the benchmark, e.g.
#   scripts/bench-files.sh --size-mib 1024 --rounds 1
# Results: printed, and target/test-artifacts/bench_files/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/cargo-bin.sh

if [ "$(id -u)" != 0 ]; then
  echo "bench-files: needs root (network namespaces); try sudo -E $0" >&2
  exit 1
fi

missing=()
for pair in curl:curl ip:iproute2; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# The node binaries embed the UI: build it first, then the nodes and the benchmark.
scripts/build-ui.sh
cargo build --release -p lanchat -p lanchat-node -p lanchat-tests --bins

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export LANCHAT_BIN="$target_dir/release/lanchat"
exec "$target_dir/release/bench_files" "$@"
