#!/usr/bin/env bash
# Direct-message benchmark of issue 5 (docs/BENCHMARKS.md, "Direct messages"): on a
# network-namespace LAN, lanchat send → durable ack and send → receiver's event latency
# beside a raw WebSocket echo and iptux (IPMsg SENDMSG → RECVMSG) measured in the same
# run, and sustained durable messages/s for one pair beside raw SQLite inserts.
#
# Needs root (network namespaces). Installs what it needs when root and missing
# (iptux, xvfb, nftables, curl, iproute2), builds in release, runs
# tests/src/bin/bench_dm.rs. Arguments go to the benchmark, e.g.
#   scripts/bench-dm.sh --messages 200 --flood 1000 --flood-rounds 1
# Results: printed, and target/test-artifacts/bench_dm/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "bench-dm: needs root (network namespaces); try sudo -E $0" >&2
  exit 1
fi

missing=()
for pair in iptux:iptux Xvfb:xvfb nft:nftables curl:curl ip:iproute2 ss:iproute2; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# The lanchat binary embeds the UI: build it first, then everything in release.
scripts/build-ui.sh
cargo build --workspace --release

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export LANCHAT_BIN="$target_dir/release/lanchat"
exec "$target_dir/release/bench_dm" "$@"
