#!/usr/bin/env bash
# Runs every fuzz target (or the named ones) with libFuzzer for SECONDS each (default 60),
# one after the other, starting from the committed seed corpus fuzz/corpus/<target>/.
#
#   fuzz/run.sh [--seconds N] [--asan] [target...]
#
# The targets are built without a sanitizer by default: the code under test is safe Rust
# (a memory error would need unsafe code), and with AddressSanitizer the build took twice
# as long here and ran 3-14x fewer inputs per second. --asan builds with it, for long runs
# after touching unsafe code.
#
# Needs a nightly toolchain (rustup toolchain install nightly) and cargo-fuzz (installed
# here from crates.io when missing). New interesting inputs go to a scratch corpus, not into
# the committed one; a crash is saved under fuzz/artifacts/<target>/ and fails the run: once
# fixed, copy it to fuzz/corpus/<target>/crash-<what>, so that `cargo test -p corral fuzzing`
# replays it on every CI run.
set -euo pipefail

FUZZ_DIR=$(cd "$(dirname "$0")" && pwd)
CARGO_FUZZ_VERSION=0.13.2
seconds=60
# Faster builds for short runs: no sanitizer (see above), and 16 codegen units instead of
# cargo-fuzz's 1 (slightly slower code, but the crate under test compiles on both cores).
build_flags=(-O --sanitizer none --codegen-units 16)
targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
    --asan) build_flags=(-O --sanitizer address); shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "fuzz/run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
all_targets=$(ls "$FUZZ_DIR/fuzz_targets" | sed 's/\.rs$//')
[ ${#targets[@]} -gt 0 ] || mapfile -t targets <<<"$all_targets"
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$all_targets" ||
    { echo "fuzz/run.sh: no target $t (targets: ${all_targets//$'\n'/ })" >&2; exit 2; }
done

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: FAILED: no nightly Rust toolchain; libFuzzer builds need one" \
    "(rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io" >&2
  cargo install --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi

cd "$FUZZ_DIR"
start=$SECONDS
cargo +nightly fuzz build "${build_flags[@]}"
echo "fuzz: built in $((SECONDS - start)) s ($(rustup run nightly rustc --version))"

scratch=$(mktemp -d /tmp/corral-fuzz-run.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
export TMPDIR=$scratch   # the layer target's scratch dirs
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$scratch/corpus/$t"
  log=$scratch/$t.log
  # One process, one job: the machine is shared. -timeout: one input taking 10 s is a bug.
  if cargo +nightly fuzz run "${build_flags[@]}" "$t" "$scratch/corpus/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    final_stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
    echo "fuzz: $t: ${seconds} s, $(final_stat number_of_executed_units) runs ($(final_stat average_exec_per_sec)/s)," \
      "${cov:-cov: ?}, corpus $(ls "$scratch/corpus/$t" | wc -l) new + $(ls "corpus/$t" | wc -l) seeds," \
      "peak RSS $(final_stat peak_rss_mb) MB, no crash"
  else
    echo "fuzz: $t: FAILED; the input is in fuzz/artifacts/$t/:" >&2
    ls -t "artifacts/$t" 2>/dev/null | head -3 | sed "s|^|  fuzz/artifacts/$t/|" >&2
    echo "--- what failed:" >&2
    grep -m1 -A6 -E 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|error(\[E[0-9]+\])?:' "$log" >&2 ||
      tail -40 "$log" >&2
    echo "--- reproduce: cd fuzz && cargo +nightly fuzz run ${build_flags[*]} $t artifacts/$t/<file>" >&2
    failed+=("$t")
  fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: crashes in ${failed[*]}" >&2; exit 1; }
