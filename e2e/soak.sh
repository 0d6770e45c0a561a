#!/usr/bin/env bash
# The long soak: pod cycles (run, create, start, exec, logs, stop, remove) against one
# throw-away daemon, several at a time, with the leak audit before and after.
#
#   e2e/soak.sh [--cycles N] [--parallel P]     defaults: 1000 cycles, 4 at a time
#
# Prints one line "soak: cycles=... duration=... leaks=... fds=A->B rss_kib=A->B" and fails
# on a failed cycle, a leaked host object, fd growth or RSS growth of 2 MiB or more. It is
# the CI test e2e/tests/soak_short.sh with more cycles, run through e2e/run.sh (same env).
set -euo pipefail

cycles=1000 parallel=4
while [ $# -gt 0 ]; do
  case $1 in
    --cycles) cycles=${2:?--cycles needs a number}; shift 2 ;;
    --parallel) parallel=${2:?--parallel needs a number}; shift 2 ;;
    *) echo "usage: $0 [--cycles N] [--parallel P]" >&2; exit 2 ;;
  esac
done
[[ $cycles =~ ^[0-9]+$ && $parallel =~ ^[1-9][0-9]*$ ]] || { echo "$0: numbers expected" >&2; exit 2; }

SOAK_CYCLES=$cycles SOAK_PARALLEL=$parallel exec "$(dirname "$0")/run.sh" soak_short
