#!/usr/bin/env bash
# Issue 8: critest (cri-tools' validation suite) against a throw-away corral, offline: the
# test images come from the local registry through corral's registry mirrors. Fails on any
# failure not listed in e2e/critest-known-failures.txt.
E2E_NO_PULL=1 source "$(dirname "$0")/../lib/prelude.sh"

results=${CRITEST_RESULTS:-$E2E_DIR/results/critest-corral}
"$E2E_DIR/critest.sh" --runtime-endpoint "unix://$CORRAL_SOCKET" --results "$results" | tail -n 3
