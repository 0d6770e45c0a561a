#!/usr/bin/env bash
# Runs corral's end-to-end tests: each script in e2e/tests/ against its own throw-away
# daemon (temp socket, root, state dir), driven by the real crictl.
#
#   e2e/run.sh                 all tests
#   e2e/run.sh foundation ...  only these (names of files in e2e/tests/, without .sh)
#
# Env: CORRAL_BIN (default: target/debug/corral, built here), CRICTL_BIN (default: the one
# e2e/setup.sh built), E2E_KEEP=1 keeps the work dirs of failed tests.
set -uo pipefail

E2E_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$E2E_DIR/.." && pwd)
TOOLS=${CORRAL_TOOLS:-/var/cache/corral-tools}

if [ -z "${CORRAL_BIN:-}" ]; then
  (cd "$ROOT" && cargo build -q -p corral) || exit 1
  CORRAL_BIN=$ROOT/target/debug/corral
fi
CRICTL_BIN=${CRICTL_BIN:-$TOOLS/bin/crictl}
[ -x "$CRICTL_BIN" ] || { echo "run.sh: no crictl at $CRICTL_BIN; run e2e/setup.sh" >&2; exit 1; }
export CORRAL_BIN CRICTL_BIN
# crictl looks for /etc/crictl.yaml and warns without it; point it at an empty config instead.
export CRI_CONFIG_FILE=$(mktemp)

if [ $# -gt 0 ]; then
  tests=("$@")
else
  tests=()
  for f in "$E2E_DIR"/tests/*.sh; do tests+=("$(basename "$f" .sh)"); done
fi

# elapsed START_NS: seconds since START_NS with one decimal.
elapsed() {
  local ms=$(( ($(date +%s%N) - $1) / 1000000 ))
  printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100))
}

passed=0
failed=()
for t in "${tests[@]}"; do
  script=$E2E_DIR/tests/$t.sh
  [ -f "$script" ] || { echo "run.sh: no test $script" >&2; failed+=("$t"); continue; }
  work=$(mktemp -d "/tmp/corral-e2e-$t.XXXXXX")
  start=$(date +%s%N)
  echo "=== $t"
  if E2E_WORK=$work bash "$script"; then
    passed=$((passed + 1))
    echo "=== $t: PASS ($(elapsed "$start"))"
    rm -rf "$work"
  else
    failed+=("$t")
    echo "=== $t: FAIL ($(elapsed "$start"))"
    if [ "${E2E_KEEP:-0}" = 1 ]; then echo "    work dir kept: $work"; else rm -rf "$work"; fi
  fi
done
rm -f "$CRI_CONFIG_FILE"

echo "e2e: ${passed} passed, ${#failed[@]} failed${failed:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
