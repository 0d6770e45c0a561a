# Sourced first by every e2e test script: helpers, a throw-away corral, cleanup on exit.
#
# run.sh gives each test its own E2E_WORK dir and runs it as a separate bash process, so
# the daemon started here is the test's child; the EXIT trap removes every pod, stops the
# daemon, and fails the test if anything it created is still mounted.

set -euo pipefail
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=common.sh
source "$E2E_DIR/lib/common.sh"
# shellcheck source=assert.sh
source "$E2E_DIR/lib/assert.sh"
# shellcheck source=pods.sh
source "$E2E_DIR/lib/pods.sh"
# shellcheck source=daemon.sh
source "$E2E_DIR/lib/daemon.sh"

: "${CORRAL_BIN:?run tests through e2e/run.sh}"
: "${CRICTL_BIN:?run tests through e2e/run.sh}"
: "${E2E_WORK:?run tests through e2e/run.sh}"

# e2e_defer CMD...: runs CMD when the test exits, before the daemon is stopped (last
# deferred first). For host objects a test makes itself (a netns, a listener).
E2E_DEFERRED=()
e2e_defer() {
  E2E_DEFERRED=("$*" "${E2E_DEFERRED[@]}")
}

e2e_cleanup() {
  local rc=$?
  set +e
  local cmd
  for cmd in "${E2E_DEFERRED[@]}"; do eval "$cmd"; done
  # Background helpers of the test (servers, port-forwards) must not outlive it.
  local job
  for job in $(jobs -p); do
    [ "$job" = "${CORRAL_PID:-}" ] || kill "$job" 2>/dev/null
  done
  if [ -n "${CORRAL_PID:-}" ] && kill -0 "$CORRAL_PID" 2>/dev/null; then
    cri rm -fa >/dev/null 2>&1
    cri rmp -fa >/dev/null 2>&1
  fi
  corral_stop
  local left
  left=$(grep -F "$E2E_WORK" /proc/self/mountinfo | awk '{print $5}')
  if [ -n "$left" ]; then
    echo "LEAK: mounts left under $E2E_WORK:" >&2
    echo "$left" >&2
    echo "$left" | sort -r | xargs -r -n1 umount -l 2>/dev/null
    [ "$rc" = 0 ] && rc=1
  fi
  if [ "$rc" != 0 ] && [ -f "${CORRAL_LOG:-/nonexistent}" ]; then
    echo "--- last lines of the corral log ($CORRAL_LOG) ---" >&2
    tail -30 "$CORRAL_LOG" >&2
  fi
  exit "$rc"
}
trap e2e_cleanup EXIT
# Name the command that stopped the test under `set -e`.
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR

if [ "${E2E_NO_DAEMON:-0}" != 1 ]; then
  corral_start
  # Every test daemon has its own image store: bring the test image in.
  [ "${E2E_NO_PULL:-0}" = 1 ] || cri pull "$E2E_IMAGE" >/dev/null
fi
