#!/usr/bin/env bash
# Issue 11, concurrency: 50 RunPodSandbox at once with distinct names (50 READY pods, 50
# distinct IPs, and 50 removals at once leave nothing); 50 at once with one name (exactly
# one wins, the others get AlreadyExists); stop and remove of a pod racing with exec, logs
# and status calls on it (no panic, no deadlock: every call ends within its watchdog).
source "$(dirname "$0")/../lib/prelude.sh"
source "$E2E_DIR/lib/audit.sh"
source "$E2E_DIR/lib/cri_call.sh"

# Watchdog: a call that has not returned after this long is a deadlock (crictl's own
# deadline is 60 s; `timeout` also catches a client that hangs after it).
WATCHDOG=90
N=50

# cri_w ARGS...: crictl under the watchdog; exit code 124 when it fired.
cri_w() {
  # shellcheck disable=SC2086
  timeout "$WATCHDOG" "$CRICTL_BIN" $CRICTL_ARGS "$@"
}

# in_parallel NAME FUNC: runs `FUNC i` for i = 1..N at once; each run's output goes to
# $E2E_WORK/NAME.<i>.out, its exit code to NAME.<i>.rc. A run that hit a watchdog fails
# the test.
in_parallel() {
  local name=$1 func=$2 i pids=()
  for i in $(seq $N); do
    (
      rc=0
      "$func" "$i" >"$E2E_WORK/$name.$i.out" 2>&1 || rc=$?
      echo "$rc" >"$E2E_WORK/$name.$i.rc"
    ) &
    pids+=($!)
  done
  wait "${pids[@]}"
  ! grep -qx 124 "$E2E_WORK/$name".*.rc || fail "$name: a call did not return within ${WATCHDOG}s"
  ! grep -qi 'deadline exceeded' "$E2E_WORK/$name".*.out || fail "$name: a call ran into crictl's deadline"
}

# count_rc NAME RC: how many runs of NAME ended with exit code RC.
count_rc() {
  grep -lx "$2" "$E2E_WORK/$1".*.rc 2>/dev/null | wc -l
}

expect_daemon_fine() {
  kill -0 "$CORRAL_PID" 2>/dev/null || fail "the daemon died"
  ! grep -q panicked "$CORRAL_LOG" || fail "the daemon panicked: $(grep -m1 panicked "$CORRAL_LOG")"
}

cri rmp -f "$(run_pod warmup)" >/dev/null
baseline=$(audit_snapshot)

step "$N RunPodSandbox at once, distinct names: $N READY pods with $N distinct IPs"
for i in $(seq $N); do pod_json "many$i" >/dev/null; done
runp_many() { cri_w runp "$E2E_WORK/pod-many$1.json"; }
in_parallel runp runp_many
expect_eq "successful RunPodSandbox" $N "$(count_rc runp 0)"
expect_eq "READY pods" $N "$(cri pods -q --state ready | wc -l)"
ips=$(for id in $(cri pods -q); do pod_ip "$id"; done | sort)
expect_eq "distinct IPs" $N "$(uniq <<<"$ips" | grep -c .)"

step "$N StopPodSandbox + RemovePodSandbox at once: nothing left"
rmp_many() { cri_w rmp -f "$(tail -n 1 "$E2E_WORK/runp.$1.out")"; } # the id is the last line
in_parallel rmp rmp_many
expect_eq "successful RemovePodSandbox" $N "$(count_rc rmp 0)"
expect_eq "pods left" "" "$(cri pods -q)"
audit_diff "$baseline" "$(audit_snapshot)" || fail "$N pods removed at once leaked host objects (above)"

step "$N RunPodSandbox at once with one name: one wins, the others get AlreadyExists"
pod_json same >/dev/null
runp_same() { cri_w runp "$E2E_WORK/pod-same.json"; }
in_parallel same runp_same
expect_eq "winners" 1 "$(count_rc same 0)"
expect_eq "AlreadyExists answers" $((N - 1)) "$(grep -l 'code = AlreadyExists' "$E2E_WORK"/same.*.out | wc -l)"
expect_eq "pods" 1 "$(cri pods -q --name same | wc -l)"
cri rmp -f "$(cri pods -q --name same)" >/dev/null

# racer WHAT: calls WHAT on $ctr/$pod in a loop until the pod is gone, every call under the
# watchdog; a call that hangs, or a pod that never goes, is written to hung.WHAT.
racer() {
  local what=$1 rc deadline=$((SECONDS + 30))
  while [ $SECONDS -lt $deadline ]; do
    rc=0
    case $what in
      exec) cri_w exec -s "$ctr" echo hi ;;
      logs) cri_w logs --tail 5 "$ctr" ;;
      status) cri_w inspect "$ctr" ;;
      podstatus) cri_w inspectp "$pod" ;;
      stats) cri_w stats -o json --id "$ctr" ;;
    esac >/dev/null 2>&1 || rc=$?
    [ "$rc" = 124 ] && { echo "$what hung" >"$E2E_WORK/hung.$what"; return 1; }
    cri_w pods -q --id "$pod" 2>/dev/null | grep -q . || return 0
  done
  echo "$what: the pod was never removed" >"$E2E_WORK/hung.$what"
  return 1
}

step "stop and remove of a pod racing with exec, logs and status calls on it (5 rounds)"
for round in 1 2 3 4 5; do
  pod=$(run_pod "race$round")
  ctr=$(run_ctr "$pod" "race$round" app '["sh","-c","while true; do echo tick; sleep 0.1; done"]')
  pids=()
  for what in exec exec logs status podstatus stats; do
    racer "$what" &
    pids+=($!)
  done
  sleep "0.$((round * 2 - 1))"
  # kubelet's teardown, with a second StopPodSandbox and RemovePodSandbox racing the first
  # (straight gRPC calls: crictl asks for the status first, which a racing removal fails).
  { cri_call StopPodSandbox "$pod" && cri_call RemovePodSandbox "$pod"; } 2>"$E2E_WORK/second.err" &
  second=$!
  cri_call StopPodSandbox "$pod" || fail "round $round: StopPodSandbox"
  cri_call RemovePodSandbox "$pod" || fail "round $round: RemovePodSandbox"
  wait "$second" || fail "round $round: the racing teardown failed: $(cat "$E2E_WORK/second.err")"
  wait "${pids[@]}" || true
  ! ls "$E2E_WORK"/hung.* >/dev/null 2>&1 || fail "round $round: $(cat "$E2E_WORK"/hung.*)"
  expect_eq "round $round: pods left" "" "$(cri pods -q)"
  expect_daemon_fine
done
audit_diff "$baseline" "$(audit_snapshot)" || fail "the races leaked host objects (above)"
