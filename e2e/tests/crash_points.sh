#!/usr/bin/env bash
# Issue 11, crash at any point: for every fault point of the daemon (shim/src/fault.rs) the
# daemon is started with CORRAL_FAULT=<point>, kills itself with SIGKILL in the middle of a
# request, and is started again. Then the object of that request either exists and works or
# is gone (and can be made again under the same name); kubelet-style retries of Stop/Remove
# succeed; and the leak audit shows nothing left once the pods are removed.
#
# The pods share one PID namespace (a pause process) and have a hostPort, so that every kind
# of host object a pod can have exists when the daemon dies.
source "$(dirname "$0")/../lib/prelude.sh"
source "$E2E_DIR/lib/audit.sh"
source "$E2E_DIR/lib/cri_call.sh"

port=32300
# crash_pod NAME: the config of a pod with a pause process and a hostPort.
crash_pod() {
  port=$((port + 1))
  pod_json "$1" '.linux.security_context.namespace_options.pid = 0' \
    ".port_mappings = [{protocol: 0, container_port: 80, host_port: $port}]"
}

# crash_during POINT CMD...: runs CMD against a daemon armed with POINT, which must kill
# itself during it; then starts an unarmed daemon on the same dirs.
crash_during() {
  local point=$1 status=0
  shift
  corral_stop
  CORRAL_FAULT=$point corral_start
  if "$@" >/dev/null 2>&1; then
    fail "$point: '$*' succeeded; the daemon did not crash"
  fi
  wait_until 10 grep -q "CORRAL_FAULT=$point: crashing on purpose" "$CORRAL_LOG" ||
    fail "$point: the daemon did not reach the fault point"
  wait "$CORRAL_PID" || status=$?
  expect_eq "$point: daemon exit status (SIGKILL)" 137 "$status"
  CORRAL_PID=
  corral_start
}

# retry_cleanup POD [CONTAINER...]: what kubelet does after a failed or lost request: stop
# and remove each object, twice (the second round must succeed on what is already gone).
retry_cleanup() {
  local pod=$1 c round
  shift
  for round in 1 2; do
    for c in "$@"; do
      cri_call StopContainer "$c" || fail "round $round: StopContainer $c"
      cri_call RemoveContainer "$c" || fail "round $round: RemoveContainer $c"
    done
    cri_call StopPodSandbox "$pod" || fail "round $round: StopPodSandbox $pod"
    cri_call RemovePodSandbox "$pod" || fail "round $round: RemovePodSandbox $pod"
  done
}

# expect_clean WHAT: the host holds exactly what it held before the first pod.
expect_clean() {
  audit_diff "$baseline" "$(audit_snapshot)" || fail "$1: leaked host objects (above)"
}

# works POD NAME: a container runs in the pod, reaches it over the network and exec works.
works() {
  local pod=$1 name=$2 ctr
  ctr=$(run_ctr "$pod" "$name" "probe-$RANDOM" '["sleep","3600"]')
  expect_eq "$name: exec" ok "$(cri exec -s "$ctr" echo ok)"
  [ -n "$(pod_ip "$pod")" ] || fail "$name: the pod has no IP"
  echo "$ctr"
}

# The bridge and the nft table are made by the first pod and stay: warm them up first.
cri rmp -f "$(run_pod warmup)" >/dev/null
baseline=$(audit_snapshot)

step "RunPodSandbox crashes before its record is written: the pod is gone, nothing leaks"
for point in after-netns-pinned after-pause-started after-network-added; do
  name=p-$point
  crash_during "$point" cri runp "$(crash_pod "$name")"
  expect_eq "$point: pods listed" "" "$(cri pods -q --name "$name")"
  expect_clean "$point, right after the restart"
  pod=$(cri runp "$E2E_WORK/pod-$name.json") # kubelet's retry, same name
  ctr=$(works "$pod" "$name")
  retry_cleanup "$pod" "$ctr"
  expect_clean "$point"
done

step "after-sandbox-record-written: the pod exists, is READY and works"
name=p-record
crash_during after-sandbox-record-written cri runp "$(crash_pod "$name")"
pod=$(cri pods -q --name "$name")
[ -n "$pod" ] || fail "the pod whose record was written is gone"
expect_eq "state" SANDBOX_READY "$(cri inspectp "$pod" | jq -r .status.state)"
expect_fail "a retried RunPodSandbox" "already reserved" cri runp "$E2E_WORK/pod-$name.json"
ctr=$(works "$pod" "$name")
retry_cleanup "$pod" "$ctr"
expect_clean after-sandbox-record-written

step "CreateContainer crashes before its record: the container is gone and can be made again"
name=p-create
pod=$(cri runp "$(crash_pod "$name")")
crash_during after-container-spec-written \
  cri create "$pod" "$(ctr_json app '["sleep","3600"]')" "$E2E_WORK/pod-$name.json"
expect_eq "containers listed" "" "$(cri ps -aq --pod "$pod")"
expect_eq "writable layers left" 0 "$(find "$E2E_WORK/root/containers-rw" -mindepth 1 -maxdepth 1 | wc -l)"
ctr=$(cri create "$pod" "$E2E_WORK/ctr-app.json" "$E2E_WORK/pod-$name.json")
cri start "$ctr" >/dev/null
expect_eq "exec" ok "$(cri exec -s "$ctr" echo ok)"
retry_cleanup "$pod" "$ctr"
expect_clean after-container-spec-written

step "after-container-record-written: the container exists as CREATED and starts"
name=p-created
pod=$(cri runp "$(crash_pod "$name")")
crash_during after-container-record-written \
  cri create "$pod" "$(ctr_json app '["sleep","3600"]')" "$E2E_WORK/pod-$name.json"
ctr=$(cri ps -aq --pod "$pod")
expect_eq "state" CONTAINER_CREATED "$(ctr_state "$ctr")"
cri start "$ctr" >/dev/null
expect_eq "exec" ok "$(cri exec -s "$ctr" echo ok)"
retry_cleanup "$pod" "$ctr"
expect_clean after-container-record-written

step "after-monitor-started: the container is RUNNING, works and stops with its exit code"
name=p-start
pod=$(cri runp "$(crash_pod "$name")")
ctr=$(cri create "$pod" "$(ctr_json app '["sleep","3600"]')" "$E2E_WORK/pod-$name.json")
crash_during after-monitor-started cri start "$ctr"
expect_eq "state" CONTAINER_RUNNING "$(ctr_state "$ctr")"
expect_eq "exec" ok "$(cri exec -s "$ctr" echo ok)"
cri stop -t 1 "$ctr" >/dev/null
expect_eq "state after stop" CONTAINER_EXITED "$(ctr_state "$ctr")"
expect_eq "exit code after SIGTERM" 143 "$(cri inspect "$ctr" | jq -r .status.exitCode)"
retry_cleanup "$pod" "$ctr"
expect_clean after-monitor-started

step "mid-container-removal: the container is gone or removable; the retry removes it"
name=p-rm
pod=$(cri runp "$(crash_pod "$name")")
ctr=$(run_ctr "$pod" "$name" app '["sleep","3600"]')
cri stop -t 0 "$ctr" >/dev/null
crash_during mid-container-removal cri rm "$ctr"
retry_cleanup "$pod" "$ctr"
expect_eq "containers listed" "" "$(cri ps -aq --pod "$pod")"
expect_clean mid-container-removal

step "mid-sandbox-stop: the pod is NOTREADY, its container EXITED; stop and remove finish"
name=p-stopp
pod=$(cri runp "$(crash_pod "$name")")
ctr=$(run_ctr "$pod" "$name" app '["sleep","3600"]')
crash_during mid-sandbox-stop cri stopp "$pod"
expect_eq "pod state" SANDBOX_NOTREADY "$(cri inspectp "$pod" | jq -r .status.state)"
expect_eq "container state" CONTAINER_EXITED "$(ctr_state "$ctr")"
retry_cleanup "$pod" "$ctr"
expect_clean mid-sandbox-stop

step "mid-sandbox-removal: the pod is NOTREADY; the retried remove finishes"
name=p-rmp
pod=$(cri runp "$(crash_pod "$name")")
ctr=$(run_ctr "$pod" "$name" app '["sleep","3600"]')
crash_during mid-sandbox-removal cri rmp -f "$pod"
expect_eq "pod state" SANDBOX_NOTREADY "$(cri inspectp "$pod" | jq -r .status.state)"
retry_cleanup "$pod" "$ctr"
expect_eq "pods listed" "" "$(cri pods -q)"
expect_clean mid-sandbox-removal
