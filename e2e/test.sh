#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (root): installs what it needs,
# checks formatting and lints, runs the unit and kernel tests, checks the CRI proto
# against upstream, then runs the end-to-end tests against a real daemon with crictl.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH=$HOME/.cargo/bin:/usr/local/go/bin:$PATH
export CORRAL_TOOLS=${CORRAL_TOOLS:-/var/cache/corral-tools}
# One build per run: incremental state (13 GB in a long-lived target/debug here) buys nothing.
export CARGO_INCREMENTAL=0

# Each section says how much disk is left: a full disk kills a linker with SIGBUS, which
# says nothing about disk in its message.
section() {
  printf '\n##### %s (at %d s, disk: %s free)\n' "$*" "$SECONDS" "$(df -h --output=avail . | tail -1 | tr -d ' ')"
}

section "setup"
e2e/setup.sh

section "cargo fmt --check"
cargo fmt --all -- --check

section "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo test"
cargo test --workspace

section "fuzzing: each fuzz target 30 s with libFuzzer (fuzz/run.sh, needs nightly)"
fuzz/run.sh --seconds 30
# The 8 instrumented binaries and their deps (~2.6 GB) are not needed again in this run;
# on CI's clean checkout they are gone anyway, so give the disk back for kubelet's build.
# Kept when CORRAL_KEEP_FUZZ_BUILD=1 (a developer re-running the suite).
[ "${CORRAL_KEEP_FUZZ_BUILD:-0}" = 1 ] || rm -rf fuzz/target

section "CRI proto against upstream k8s.io/cri-api"
CRI_API=k8s.io/cri-api@v0.37.0
modcache=$(go env GOMODCACHE)
[ -d "$modcache/$CRI_API" ] || (cd "$(mktemp -d)" && go mod download "$CRI_API")
python3 e2e/check-proto.py proto/api.proto "$modcache/$CRI_API/pkg/apis/runtime/v1/api.proto"

section "end-to-end tests (crictl against a throw-away corral)"
e2e/run.sh

section "a real kubelet (standalone, static pods) on corral"
e2e/kubelet.sh

section "the same, with pod stats and /metrics/cadvisor taken from corral (PodAndContainerStatsFromCRI)"
e2e/kubelet.sh --cri-stats

section "all tests passed"
