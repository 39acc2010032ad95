#!/usr/bin/env bash
# Builds the Leptos UI to ui/dist: cargo (wasm32) + the wasm-bindgen CLI, nothing that
# downloads. The desktop shell embeds ui/dist, so this runs before building it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/cargo-bin.sh

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --target wasm32-unknown-unknown -p ui --profile ui-release
rm -rf ui/dist.new
mkdir -p ui/dist.new
wasm-bindgen --target web --no-typescript --remove-name-section --out-dir ui/dist.new \
  "$target_dir/wasm32-unknown-unknown/ui-release/ui.wasm"
cp ui/index.html ui/static/* ui/dist.new/
# Compressed copies, served to clients that accept gzip (all browsers and the window):
# the node then reads and sends a third of the bytes (node/src/api/assets.rs).
for f in ui/dist.new/*.wasm ui/dist.new/*.js ui/dist.new/*.css; do
  gzip -9 -k -n "$f"
done
# Swap in one step so a running dev server never sees a half-written dist/.
rm -rf ui/dist.old
[ -d ui/dist ] && mv ui/dist ui/dist.old
mv ui/dist.new ui/dist
rm -rf ui/dist.old
echo "ui built: $(du -sh ui/dist | cut -f1) in ui/dist"
