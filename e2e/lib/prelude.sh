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
# shellcheck source=daemon.sh
source "$E2E_DIR/lib/daemon.sh"

: "${CORRAL_BIN:?run tests through e2e/run.sh}"
: "${CRICTL_BIN:?run tests through e2e/run.sh}"
: "${E2E_WORK:?run tests through e2e/run.sh}"

e2e_cleanup() {
  local rc=$?
  set +e
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

if [ "${E2E_NO_DAEMON:-0}" != 1 ]; then
  corral_start
fi
