#!/usr/bin/env bash
# Discovery benchmark of issues 4 and 13 (docs/BENCHMARKS.md, "Discovery"): join latency
# on a network-namespace LAN of 2, 8 and 32 hosts, idle packets/s and CPU with 32 hosts,
# the answer time to a probe beside the iptux baseline (IPMsg BR_ENTRY → ANSENTRY), and
# scale: 32, 64, 128 and 256 hosts started together — time until every node lists every
# other, membership stability over --stable-secs (peer.offline events), packets/s per
# host, CPU, RSS/PSS per node, kernel UDP counters (about 35 min with the defaults).
#
# Needs root (network namespaces). Installs what it needs when root and missing
# (iptux, xvfb, nftables, curl, iproute2), builds in release, runs
# tests/src/bin/bench_discovery.rs. Arguments go to the benchmark, e.g.
#   scripts/bench-discovery.sh --sizes 2,8 --joins 10 --probes 200
#   scripts/bench-discovery.sh --parts scale --scale-sizes 128 --stable-secs 60   # quick scale look
#   scripts/bench-discovery.sh --parts scale --scale-sizes 128 --heartbeat 5 --ttl 20 \
#       --stable-secs 60 --sample-secs 2     # the lab: one line per look at every node
# Results: printed, and target/test-artifacts/bench_discovery/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "bench-discovery: needs root (network namespaces); try sudo -E $0" >&2
  exit 1
fi

missing=()
for pair in iptux:iptux Xvfb:xvfb nft:nftables curl:curl ip:iproute2 ss:iproute2 getconf:libc-bin; do
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
exec "$target_dir/release/bench_discovery" "$@"
