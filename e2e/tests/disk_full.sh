#!/usr/bin/env bash
# Issue 11, disk full and read-only: the daemon's root (records, IPAM, images) is a small
# tmpfs. Filled up, and then made read-only, RunPodSandbox fails with a clear error, the
# running pod keeps running and answering, no half-written record is left or read back
# after a restart, and once there is room again everything works and nothing leaked.
E2E_NO_DAEMON=1
source "$(dirname "$0")/../lib/prelude.sh"
source "$E2E_DIR/lib/audit.sh"

root=$E2E_WORK/root
mkdir -p "$root"
mount -t tmpfs -o size=64m,mode=0711 corral-e2e-disk-full "$root"
# Runs before the harness removes pods and stops the daemon: give the records room again,
# clean up, and only then take the tmpfs away.
disk_cleanup() {
  mount -o remount,rw "$root" 2>/dev/null
  rm -f "$root/filler"
  if [ -n "${CORRAL_PID:-}" ] && kill -0 "$CORRAL_PID" 2>/dev/null; then
    cri rm -fa >/dev/null 2>&1
    cri rmp -fa >/dev/null 2>&1
  fi
  corral_stop
  umount "$root"
}
e2e_defer disk_cleanup

corral_start
cri pull "$E2E_IMAGE" >/dev/null
cri rmp -f "$(run_pod warmup)" >/dev/null
baseline=$(audit_snapshot)

pod=$(run_pod running)
ctr=$(run_ctr "$pod" running app '["sh","-c","while true; do echo tick; sleep 0.2; done"]')

# no_half_records: every record file parses, and no temp file of an atomic write is left.
no_half_records() {
  local f
  for f in "$root"/sandboxes/* "$root"/containers/*; do
    [ -e "$f" ] || continue
    case ${f##*/} in
      .*) fail "temp file of an interrupted write left: $f" ;;
    esac
    jq -e .id "$f" >/dev/null || fail "half-written record: $f"
  done
}

# still_running: the existing pod and its container work.
still_running() {
  expect_eq "$1: pod" SANDBOX_READY "$(cri inspectp "$pod" | jq -r .status.state)"
  expect_eq "$1: container" CONTAINER_RUNNING "$(ctr_state "$ctr")"
  expect_eq "$1: exec" ok "$(cri exec -s "$ctr" echo ok)"
  local before
  before=$(cri logs "$ctr" 2>&1 | wc -l)
  wait_until 5 eval "[ \$(cri logs '$ctr' 2>&1 | wc -l) -gt $before ]" || fail "$1: the container's log stopped"
}

step "disk full: RunPodSandbox and CreateContainer fail with a clear error"
dd if=/dev/zero of="$root/filler" bs=1M status=none 2>/dev/null || true
expect_fail "RunPodSandbox on a full disk" "No space left on device" cri runp "$(pod_json refused)"
expect_fail "CreateContainer on a full disk" "No space left on device" \
  cri create "$pod" "$(ctr_json second '["sleep","60"]')" "$E2E_WORK/pod-running.json"
expect_eq "pods listed" 1 "$(cri pods -q | wc -l)"
expect_eq "containers listed" 1 "$(cri ps -aq | wc -l)"
no_half_records
still_running "disk full"

step "disk full: a crashed daemon starts again and reads back only whole records"
corral_kill9
corral_start
! grep -q "unreadable record" "$CORRAL_LOG" || fail "a record was unreadable: $(grep -m1 'unreadable record' "$CORRAL_LOG")"
no_half_records
still_running "after the restart"

step "read-only: RunPodSandbox fails with a clear error; the pod keeps running"
rm -f "$root/filler"
mount -o remount,ro "$root"
expect_fail "RunPodSandbox on a read-only root" "Read-only file system" cri runp "$(pod_json refused)"
still_running "read-only"
# Its cleanup could not finish either (the IPAM records are on the read-only root): the
# failed pod stays listed NOTREADY, so that kubelet removes it (and frees its name).
failed=$(cri pods -q --name refused)
[ -n "$failed" ] || fail "the half-made pod is not listed: its name would be reserved by nobody"
expect_eq "failed pod" SANDBOX_NOTREADY "$(cri inspectp "$failed" | jq -r .status.state)"
expect_contains "why" "Read-only file system" "$(cri inspectp "$failed" | jq -r .info.teardownError)"
mount -o remount,rw "$root"
cri rmp "$failed" >/dev/null

step "with room again, pods run, stop and go, and nothing leaked"
refused=$(cri runp "$E2E_WORK/pod-refused.json")
run_ctr "$refused" refused app '["sleep","60"]' >/dev/null
cri rmp -f "$refused" "$pod" >/dev/null
no_half_records
audit_diff "$baseline" "$(audit_snapshot)" || fail "leaked host objects (above)"
