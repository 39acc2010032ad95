#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/, bodies in fuzz-targets/) for a bounded time and
# fails if any of them crashes. docs/SECURITY.md, "Fuzzing", lists the targets.
#
#   scripts/fuzz.sh                 # every target, FUZZ_SECS (default 20) each
#   FUZZ_SECS=180 scripts/fuzz.sh   # longer
#   scripts/fuzz.sh envelope cidr   # only these targets
#
# Needs the nightly toolchain (libFuzzer's instrumentation); installs cargo-fuzz if it
# is missing. Each target starts from a scratch copy of fuzz/corpus/<target>, so a run
# never dirties the clone; a crash leaves its input in fuzz/artifacts/<target>/ (git
# ignores it) — turn it into a regression test in the crate that owns the code.
# Built without a sanitizer: the workspace forbids unsafe code, and debug assertions
# (overflow checks) stay on. FUZZ_SANITIZER=address to use one.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/cargo-bin.sh

secs="${FUZZ_SECS:-20}"
sanitizer="${FUZZ_SANITIZER:-none}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"

if command -v rustup >/dev/null 2>&1 && ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
  rustup toolchain install "$toolchain" --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --version '^0.13' --locked
fi

# Build output outside the clone when the caller keeps one (CI: warm runs reuse it).
target_dir=()
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  target_dir=(--target-dir "$CARGO_TARGET_DIR/fuzz")
fi
build_flags=(-O --debug-assertions --sanitizer "$sanitizer" "${target_dir[@]}")

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi

# All targets at once: one build, then only runs.
cargo "+$toolchain" fuzz build "${build_flags[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=()
for target in "${targets[@]}"; do
  printf '\n--> fuzz %s for %ss\n' "$target" "$secs"
  mkdir -p "$scratch/$target"
  if [ -d "fuzz/corpus/$target" ]; then
    cp -R "fuzz/corpus/$target/." "$scratch/$target/"
  fi
  if ! cargo "+$toolchain" fuzz run "${build_flags[@]}" "$target" "$scratch/$target" -- \
      -max_total_time="$secs" -print_final_stats=1 2>"$scratch/$target.log"; then
    tail -n 40 "$scratch/$target.log"
    failed+=("$target")
  else
    grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done)' \
      "$scratch/$target.log" || true
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  printf '\nfuzz: crashed: %s (inputs in fuzz/artifacts/)\n' "${failed[*]}" >&2
  exit 1
fi
printf '\nfuzz: %d targets, %ss each, no crash\n' "${#targets[@]}" "$secs"
