#!/usr/bin/env bash
# Builds and starts lanchat: the desktop window when there is a display, otherwise the
# headless node, which prints the address of its web UI. Extra arguments go to lanchat
# (for example: scripts/run.sh serve --data-dir /tmp/node-a).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/cargo-bin.sh

scripts/setup.sh
scripts/build-ui.sh
# lanchat-node too: `lanchat` executes it, from beside itself, to run headless.
cargo build --release -p lanchat -p lanchat-node
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
exec "$target_dir/release/lanchat" "$@"
