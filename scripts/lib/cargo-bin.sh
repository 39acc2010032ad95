# Sourced (not run) by the scripts that install or call what cargo installs — the
# `wasm-bindgen` CLI, and cargo itself when it came from rustup: puts cargo's bin
# directory on PATH when it is not there, so a shell that never sourced
# ~/.cargo/env (a CI runner, sudo, cron) still finds what `cargo install` put there.
# Prepended, as ~/.cargo/env does, so the CLI that setup.sh installed at Cargo.lock's
# version wins over an older one elsewhere on PATH.
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in
  *":$cargo_bin:"*) ;;
  *) export PATH="$cargo_bin:$PATH" ;;
esac
unset cargo_bin
