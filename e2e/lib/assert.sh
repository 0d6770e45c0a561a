# shellcheck shell=bash
# Assertions for the e2e test scripts in e2e/tests/ (sourced by lib/prelude.sh).
#
# Each test script runs under `set -euo pipefail`; a failed assertion prints what was
# expected and what came back, then exits non-zero so e2e/run.sh counts the test failed.

fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
  [ "$2" = "$3" ] || fail "$1: expected '$2', got '$3'"
}

# expect_contains WHAT NEEDLE HAYSTACK
expect_contains() {
  case "$3" in
    *"$2"*) ;;
    *) fail "$1: expected to contain '$2', got: $3" ;;
  esac
}

# expect_fail WHAT NEEDLE CMD...: CMD must exit non-zero and print NEEDLE (stdout or stderr).
expect_fail() {
  local what=$1 needle=$2 out
  shift 2
  if out=$("$@" 2>&1); then
    fail "$what: expected failure, but it succeeded: $out"
  fi
  expect_contains "$what" "$needle" "$out"
}

# crictl against the daemon under test; run.sh exports CRICTL_ARGS.
cri() {
  # shellcheck disable=SC2086
  "$CRICTL_BIN" $CRICTL_ARGS "$@"
}

step() {
  printf '  - %s\n' "$*" >&2
}
