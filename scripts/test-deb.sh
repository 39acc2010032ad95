#!/usr/bin/env bash
# The .deb, end to end (a step of scripts/test.sh; needs root, Debian 12): builds the
# package from the debug binary the tests already built (scripts/build-deb.sh
# --binary; releases use the release build), installs it with `apt-get install
# ./….deb`, validates the installed desktop entry, starts the installed
# `/usr/bin/lanchat serve` headless on a fresh data directory, checks that it became
# /usr/bin/lanchat-node (same process) with no GTK or WebKit library mapped, asks its
# local API for
# /api/v1/status and the installed `lanchat status` for the same node, stops it, and
# removes the package again (unless it was installed before). Every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "test-deb: needs root (it installs the package)" >&2; exit 1; }
target_dir=${CARGO_TARGET_DIR:-target}
binary="$target_dir/debug/lanchat"
[ -x "$binary" ] && [ -x "$(dirname "$binary")/lanchat-node" ] || cargo build --workspace

work=$(mktemp -d)
pid=""
was_installed=false
dpkg-query -W -f='${Status}' lanchat 2>/dev/null | grep -q "install ok installed" && was_installed=true
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  if [ "$was_installed" = false ]; then
    dpkg -r lanchat >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "test-deb: $*" >&2; [ -f "$work/node.log" ] && tail -20 "$work/node.log" >&2; exit 1; }

deb=$(scripts/build-deb.sh --binary "$binary" --out "$work")
echo "test-deb: built $(basename "$deb") ($(du -h "$deb" | cut -f1))"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$(realpath "$deb")" >/dev/null
[ "$(command -v lanchat)" = /usr/bin/lanchat ] || fail "lanchat is not on PATH as /usr/bin/lanchat"
desktop-file-validate /usr/share/applications/lanchat.desktop || fail "the desktop entry does not validate"
[ -s /usr/share/icons/hicolor/256x256/apps/lanchat.png ] || fail "the icon is missing"

data="$work/data"
mkdir -p "$data"
env -u DISPLAY -u WAYLAND_DISPLAY /usr/bin/lanchat serve --data-dir "$data" >"$work/node.log" 2>&1 &
pid=$!
api_field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$data/api.json" "$1"; }
for _ in $(seq 1 300); do
  [ -s "$data/api.json" ] && [ "$(api_field pid 2>/dev/null)" = "$pid" ] && break
  kill -0 "$pid" 2>/dev/null || fail "the installed lanchat exited before serving"
  sleep 0.1
done
[ "$(api_field pid 2>/dev/null)" = "$pid" ] || fail "no api.json from the installed lanchat within 30 s"
[ "$(readlink "/proc/$pid/exe")" = /usr/bin/lanchat-node ] \
  || fail "lanchat serve runs as $(readlink "/proc/$pid/exe"), not as /usr/bin/lanchat-node"
! grep -qE 'libgtk|libwebkit' "/proc/$pid/maps" || fail "the headless node maps GTK or WebKit"
url=$(api_field url)
status=$(curl -fsS --max-time 10 -H "Authorization: Bearer $(api_field token)" "${url}api/v1/status") \
  || fail "GET /api/v1/status failed"
node_id=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['node_id'])" "$status")
[ -n "$node_id" ] || fail "the status has no node_id: $status"
cli=$(/usr/bin/lanchat --json status --data-dir "$data") || fail "lanchat status failed"
[ "$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['node_id'])" "$cli")" = "$node_id" ] \
  || fail "lanchat status showed another node: $cli"

kill -TERM "$pid"
wait "$pid" || fail "the installed lanchat did not stop cleanly"
pid=""
set +e
/usr/bin/lanchat status --data-dir "$data" >/dev/null 2>&1
code=$?
set -e
[ "$code" -eq 3 ] || fail "lanchat status with no node running exited $code, expected 3"
echo "test-deb: installed, desktop entry valid, /usr/bin/lanchat served node $node_id headless"
