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

# Host objects every test daemon shares (one test runs at a time): its bridge, its nftables
# table and its cgroup root. The daemons create them on demand; this run removes them.
export E2E_BRIDGE=${E2E_BRIDGE:-ce2e0} E2E_POD_CIDR=${E2E_POD_CIDR:-10.99.0.0/16}
export E2E_CGROUP_ROOT=${E2E_CGROUP_ROOT:-/corral-e2e}
RUN_DIR=$(mktemp -d /tmp/corral-e2e-run.XXXXXX)
cleanup_run() {
  [ -n "${REGISTRY_STARTED:-}" ] && "$E2E_DIR/lib/registry.sh" stop "$RUN_DIR/registry" >/dev/null 2>&1
  ip link del "$E2E_BRIDGE" 2>/dev/null
  nft delete table ip "corral_$E2E_BRIDGE" 2>/dev/null
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$h${E2E_CGROUP_ROOT#/}" ] && find "$h${E2E_CGROUP_ROOT#/}" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  rm -rf "$RUN_DIR" "$CRI_CONFIG_FILE"
}
trap cleanup_run EXIT

# The local registry with every test image; registry.k8s.io and friends are mirrored to it.
export REGISTRY=${REGISTRY_ADDR:-127.0.0.1:5000}
if ! curl -fsS -o /dev/null --max-time 2 "http://$REGISTRY/v2/"; then
  "$E2E_DIR/lib/registry.sh" start "$RUN_DIR/registry" >/dev/null || exit 1
  REGISTRY_STARTED=1
fi
"$E2E_DIR/images/build.sh" >/dev/null || { echo "run.sh: building the test images failed" >&2; exit 1; }
export E2E_CONFIG=$E2E_DIR/images/corral-mirrors.toml

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
echo "e2e: ${passed} passed, ${#failed[@]} failed${failed:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
