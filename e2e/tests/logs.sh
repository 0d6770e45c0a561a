#!/usr/bin/env bash
# Issue 6, demonstration 5: crictl logs (also -f and --tail) shows stdout and stderr; after
# the log file is renamed, ReopenContainerLog (crictl logs --reopen) starts a new file.
source "$(dirname "$0")/../lib/prelude.sh"

pod=$(run_pod logs)
ctr=$(run_ctr "$pod" logs talker \
  '["sh","-c","echo err-1 >&2; sleep 0.3; echo out-1; echo out-2; while sleep 0.2; do [ -f /tmp/go ] && { echo after-reopen; rm /tmp/go; }; done"]')
log=$E2E_WORK/logs/logs/talker/0.log
wait_until 5 grep -q out-2 "$log" || fail "no output in $log"

step "the log file is in the CRI format"
expect_contains "stdout line" " stdout F out-1" "$(cat "$log")"
expect_contains "stderr line" " stderr F err-1" "$(cat "$log")"
grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{9}Z stdout F out-1$' "$log" || fail "bad line format: $(head -1 "$log")"

step "crictl logs shows both streams; --tail 1 only the last line"
all=$(cri logs "$ctr" 2>&1)
expect_contains "logs" out-1 "$all"
expect_contains "logs" err-1 "$all"
expect_eq "tail" out-2 "$(cri logs --tail 1 "$ctr" 2>/dev/null)"

step "crictl logs -f follows"
follow=$(timeout 2 "$CRICTL_BIN" $CRICTL_ARGS logs -f "$ctr" 2>/dev/null || true)
expect_contains "follow" out-2 "$follow"

step "after a rename, crictl logs --reopen starts a new file"
mv "$log" "$log.1"
cri logs --reopen "$ctr" >/dev/null 2>&1 || fail "ReopenContainerLog failed"
cri exec -s "$ctr" touch /tmp/go
wait_until 5 grep -q after-reopen "$log" || fail "no new log file at $log"
grep -q after-reopen "$log.1" && fail "the renamed file got new lines"
true
