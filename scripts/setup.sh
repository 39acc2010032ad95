#!/usr/bin/env bash
# Installs what building, running and testing lanchat needs on Debian 12, and nothing
# that downloads from outside the package registries. Safe to run again: each step is
# skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/cargo-bin.sh

# Build: the Tauri window (WebKitGTK). Run: fonts that cover Chinese.
# Tests: Xvfb + screenshots + OCR for the window, Chromium for the UI, and the
# network tools of the LAN tests; faketime (libfaketime) runs a test node's whole
# process with its clock off by minutes or hours; desktop-file-utils validates the
# .deb's desktop entry and the autostart entry (dpkg-deb and dpkg-shlibdeps come with
# build-essential). The desktop shell's tests run a session bus (dbus), dunst as the
# notification server and a
# StatusNotifierWatcher (haskell-status-notifier-item-utils, the panel's side of the tray).
# WebKitWebDriver (webkit2gtk-driver), behind tauri-driver (installed below), drives the
# real window by WebDriver.
packages=(
  build-essential pkg-config python3
  libwebkit2gtk-4.1-dev libgtk-3-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev librsvg2-dev
  fonts-dejavu-core fonts-droid-fallback
  xvfb xauth xdotool imagemagick tesseract-ocr tesseract-ocr-eng
  chromium chromium-driver
  iproute2 nftables tcpdump curl faketime
  dbus dunst haskell-status-notifier-item-utils desktop-file-utils
  webkit2gtk-driver
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # With recommends: that is what the window and browser tests were verified with.
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: these Debian packages are missing; install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: Rust is missing: install it with rustup (Rust 1.90 or newer), then run this again." >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  installed_components=$(rustup component list --installed)
  for c in rustfmt clippy; do
    grep -q "^$c" <<<"$installed_components" || rustup component add "$c"
  done
  rustup target list --installed | grep -qx wasm32-unknown-unknown \
    || rustup target add wasm32-unknown-unknown
fi

# The wasm-bindgen CLI must be exactly the version of the wasm-bindgen crate in
# Cargo.lock. (`--locked` fails for this crate: its lock file pins a yanked version.)
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, "", $0); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "setup: installing wasm-bindgen-cli $want (found '${have:-none}')"
  cargo install -q wasm-bindgen-cli --version "$want"
fi

# tauri-driver: the WebDriver server that starts the desktop app under WebKitWebDriver
# (tests/tests/desktop_webdriver.rs). A fixed version, so a run is the same everywhere.
tauri_driver_version=2.1.0
# (It has no --version: cargo's list of installed crates says which one is there.)
if ! cargo install --list | grep -qx "tauri-driver v$tauri_driver_version:"; then
  echo "setup: installing tauri-driver $tauri_driver_version"
  cargo install -q tauri-driver --version "$tauri_driver_version" --locked
fi
