#!/usr/bin/env bash
# Issue 11, soak (CI version): 50 pod cycles (run, create, start, exec, logs, stop, remove),
# 4 at a time; then no leaked host object, the daemon's fds flat, its RSS grown < 2 MiB.
# e2e/soak.sh runs the same with 1000 cycles (SOAK_CYCLES / SOAK_PARALLEL override both).
source "$(dirname "$0")/../lib/prelude.sh"
source "$E2E_DIR/lib/soak.sh"

soak_run "${SOAK_CYCLES:-50}" "${SOAK_PARALLEL:-4}"
