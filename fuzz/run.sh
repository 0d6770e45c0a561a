#!/usr/bin/env bash
# Runs every fuzz target (or the named ones) with libFuzzer for SECONDS each (default 60),
# starting from the committed seed corpus fuzz/corpus/<target>/.
#
#   fuzz/run.sh [--seconds N] [target...]
#
# Needs a nightly toolchain (rustup toolchain nightly) and cargo-fuzz (installed here from
# crates.io when missing). New interesting inputs go to a scratch corpus, not into the
# committed one; a crash is saved under fuzz/artifacts/<target>/ and fails the run: turn it
# into a regression seed (fuzz/corpus/<target>/crash-<what>) once fixed, so that
# `cargo test -p corral fuzzing` checks it on every CI run.
set -euo pipefail

FUZZ_DIR=$(cd "$(dirname "$0")" && pwd)
seconds=60
targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(ls "$FUZZ_DIR/fuzz_targets" | sed 's/\.rs$//')

rustup run nightly rustc --version >/dev/null 2>&1 ||
  { echo "fuzz/run.sh: needs a nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: installing cargo-fuzz from crates.io" >&2
  cargo install --locked cargo-fuzz
fi

cd "$FUZZ_DIR"
start=$SECONDS
cargo +nightly fuzz build -O
echo "fuzz: built in $((SECONDS - start)) s" >&2

scratch=$(mktemp -d /tmp/corral-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
export TMPDIR=$scratch   # the layer target's scratch dirs
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$scratch/corpus/$t"
  log=$scratch/$t.log
  if cargo +nightly fuzz run -O "$t" "$scratch/corpus/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "fuzz: $t: ${seconds}s, ${runs:-?} runs, ${cov:-cov: ?}, no crash"
  else
    echo "fuzz: $t: FAILED (artifacts in fuzz/artifacts/$t); last lines:" >&2
    tail -30 "$log" >&2
    failed+=("$t")
  fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: crashes in ${failed[*]}" >&2; exit 1; }
