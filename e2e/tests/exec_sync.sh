#!/usr/bin/env bash
# Issue 6, demonstration 6: crictl exec -s returns output and exit codes; --timeout ends a
# hanging command, which is then gone from the container.
source "$(dirname "$0")/../lib/prelude.sh"

pod=$(run_pod exec)
ctr=$(run_ctr "$pod" exec app '["sleep","3600"]')

step "output and exit code 0"
expect_eq "stdout" hello "$(cri exec -s "$ctr" echo hello)"

step "a non-zero exit code is reported"
out=$(cri exec -s "$ctr" sh -c 'echo partial; exit 7' 2>&1) && fail "exit 7 reported as success"
expect_contains "exit code" "exited with 7" "$out"

step "--timeout ends a hanging command"
start=$SECONDS
expect_fail "timeout" "timed out" cri exec -s --timeout 1 "$ctr" sleep 4321
[ $((SECONDS - start)) -lt 10 ] || fail "the timeout took $((SECONDS - start)) s"
expect_eq "timed-out command is gone" "" "$(cri exec -s "$ctr" sh -c 'ps -o args | grep "^sleep 4321" || true')"

step "exec into a missing container is NotFound"
expect_fail "missing" "not found" cri exec -s nosuchcontainer true
