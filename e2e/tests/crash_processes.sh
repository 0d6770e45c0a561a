#!/usr/bin/env bash
# Issue 11, crash at any point, processes: SIGKILL of a container's first process and of a
# container's monitor, with the daemon up and with the daemon down. The container is then
# reported EXITED with the right code (137 for a SIGKILLed first process; 255 and reason
# Unknown when its monitor died, and then nothing of it keeps running), Stop and Remove
# finish, nothing hangs, and nothing leaks.
source "$(dirname "$0")/../lib/prelude.sh"
source "$E2E_DIR/lib/audit.sh"

# Every crictl call must answer quickly: a hang is a failure, not a stuck CI job.
CRICTL_ARGS="$CRICTL_ARGS --timeout 20s"

cri rmp -f "$(run_pod warmup)" >/dev/null
baseline=$(audit_snapshot)

# monitor_pid CTR: the pid of the container's monitor, from the runtime's state dir.
monitor_pid() {
  jq -r .pid "$E2E_WORK/state/containers/$1/monitor.json"
}

# is_exited CTR: the container is reported EXITED (asked anew on every call).
is_exited() {
  [ "$(ctr_state "$1")" = CONTAINER_EXITED ]
}

# exited_with CTR CODE REASON: waits (10 s at most) for the container to be reported
# EXITED, then checks its exit code and reason.
exited_with() {
  local ctr=$1 code=$2 reason=$3
  wait_until 10 is_exited "$ctr" || fail "$ctr: not reported exited"
  local status
  status=$(cri inspect "$ctr")
  expect_eq "exit code of $ctr" "$code" "$(jq -r .status.exitCode <<<"$status")"
  expect_eq "reason of $ctr" "$reason" "$(jq -r .status.reason <<<"$status")"
}

# gone PID: the process no longer runs (a zombie waiting for its reaper counts as gone).
gone() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
  [ "$state" = Z ]
}

# pod NAME PIDNS: a pod whose containers get their own PID namespace (1) or share the
# pod's (0).
pod() {
  run_pod "$1" ".linux.security_context.namespace_options.pid = $2"
}

for pidns in 1 0; do
  mode=$([ "$pidns" = 1 ] && echo "own PID namespace" || echo "pod PID namespace")

  step "$mode: SIGKILL of the container's first process is exit code 137"
  p=$(pod "pid1-$pidns" "$pidns")
  c=$(run_ctr "$p" "pid1-$pidns" app '["sh","-c","sleep 3600 & wait"]')
  pid=$(cri inspect "$c" | jq -r .info.pid)
  kill -KILL "$pid"
  exited_with "$c" 137 Error
  wait_until 10 gone "$(monitor_pid "$c")" || fail "the monitor did not exit after its container"

  step "$mode: SIGKILL of the monitor is reason Unknown, and the container is killed"
  c2=$(run_ctr "$p" "pid1-$pidns" app2 '["sleep","3600"]')
  pid=$(cri inspect "$c2" | jq -r .info.pid)
  kill -KILL "$(monitor_pid "$c2")"
  exited_with "$c2" 255 Unknown
  expect_contains "message" "monitor" "$(cri inspect "$c2" | jq -r .status.message)"
  wait_until 10 gone "$pid" || fail "the container of a killed monitor still runs"

  step "$mode: the same while the daemon is down"
  c3=$(run_ctr "$p" "pid1-$pidns" app3 '["sleep","3600"]')
  c4=$(run_ctr "$p" "pid1-$pidns" app4 '["sleep","3600"]')
  pid3=$(cri inspect "$c3" | jq -r .info.pid)
  pid4=$(cri inspect "$c4" | jq -r .info.pid)
  corral_kill9
  kill -KILL "$pid3"
  kill -KILL "$(monitor_pid "$c4")"
  wait_until 10 gone "$pid3"
  corral_start
  exited_with "$c3" 137 Error
  exited_with "$c4" 255 Unknown
  wait_until 10 gone "$pid4" || fail "the container of a monitor killed while the daemon was down still runs"

  step "$mode: stop and remove finish"
  cri stopp "$p" >/dev/null
  cri rmp "$p" >/dev/null
  audit_diff "$baseline" "$(audit_snapshot)" || fail "$mode: leaked host objects (above)"
done
