#!/usr/bin/env bash
# Runs every check and test: formatting, lints (native and wasm), the wasm UI build,
# unit and property tests, real-process API tests, the UI in headless Chromium, and the
# desktop window under Xvfb. Screenshots land in target/test-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/cargo-bin.sh

scripts/setup.sh

locked=()
[ "${CI:-}" = "true" ] && locked=(--locked)

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "build the UI (wasm)"
scripts/build-ui.sh

step "clippy (native, all targets)"
cargo clippy "${locked[@]}" --workspace --all-targets -- -D warnings

step "clippy (UI for wasm32)"
cargo clippy "${locked[@]}" -p ui --target wasm32-unknown-unknown -- -D warnings

step "all tests"
cargo test "${locked[@]}" --workspace

# Every fuzz target briefly (docs/SECURITY.md, "Fuzzing"): 10 targets × 20 s plus one
# build, which keeps the step within ~4–5 minutes once the fuzz build is warm (it lives
# in $CARGO_TARGET_DIR/fuzz). Longer runs: FUZZ_SECS=180 scripts/fuzz.sh.
step "fuzz: every target for ${FUZZ_SECS:-20} s"
FUZZ_SECS="${FUZZ_SECS:-20}" scripts/fuzz.sh

step ".deb: build from the debug binary, install, validate, start headless"
scripts/test-deb.sh
