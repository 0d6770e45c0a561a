#!/usr/bin/env bash
# Builds corral (release) and starts it with its embedded defaults: socket
# /run/corral/corral.sock, state in /var/lib/corral and /run/corral. Flags are passed on,
# e.g. `e2e/serve.sh --log-level debug` or `e2e/serve.sh --config /etc/corral/config.toml`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH=$HOME/.cargo/bin:$PATH
"$ROOT/e2e/setup.sh" --build
cargo build --release -p corral --manifest-path "$ROOT/Cargo.toml"
exec "$ROOT/target/release/corral" serve "$@"
