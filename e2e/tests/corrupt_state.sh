#!/usr/bin/env bash
# Issue 11, corrupted state files: with the daemon stopped, one pod record is truncated, one
# is garbage, one container record is of a future record version. The daemon starts; the
# two pods are listed NOTREADY and say why, the container is UNKNOWN and says why; every
# other pod and container is as it was. Stop and Remove of the broken ones take down their
# namespaces, addresses, pause processes and containers, and delete the bad files.
source "$(dirname "$0")/../lib/prelude.sh"
source "$E2E_DIR/lib/audit.sh"

cri rmp -f "$(run_pod warmup)" >/dev/null
baseline=$(audit_snapshot)

# Pods with a pause process and a running container each.
declare -A pod ctr pid
for name in truncated garbage future healthy; do
  pod[$name]=$(run_pod "$name" '.linux.security_context.namespace_options.pid = 0')
  ctr[$name]=$(run_ctr "${pod[$name]}" "$name" app '["sleep","3600"]')
  pid[$name]=$(cri inspect "${ctr[$name]}" | jq -r .info.pid)
done
healthy_ip=$(pod_ip "${pod[healthy]}")

step "corrupt three records while the daemon is down"
corral_stop
records=$E2E_WORK/root
truncate -s 100 "$records/sandboxes/${pod[truncated]}.json"
head -c 300 /dev/urandom >"$records/sandboxes/${pod[garbage]}.json"
jq '.version = 999' "$records/containers/${ctr[future]}.json" >"$E2E_WORK/future.json"
mv "$E2E_WORK/future.json" "$records/containers/${ctr[future]}.json"
corral_start

step "the daemon starts; the broken objects are listed and say why"
for name in truncated garbage; do
  status=$(cri inspectp "${pod[$name]}")
  expect_eq "$name: state" SANDBOX_NOTREADY "$(jq -r .status.state <<<"$status")"
  expect_contains "$name: why" "sandboxes/${pod[$name]}.json" "$(jq -r .info.unreadableRecord <<<"$status")"
  # Its container record is fine: the container still runs and is still listed.
  expect_eq "$name: container" CONTAINER_RUNNING "$(ctr_state "${ctr[$name]}")"
done
expect_eq "truncated: stand-in name" "unreadable-${pod[truncated]:0:12}" \
  "$(cri inspectp "${pod[truncated]}" | jq -r .status.metadata.name)"
status=$(cri inspect "${ctr[future]}")
expect_eq "future: state" CONTAINER_UNKNOWN "$(jq -r .status.state <<<"$status")"
expect_contains "future: why" "record version 999" "$(jq -r .status.message <<<"$status")"
expect_eq "future: its pod" SANDBOX_READY "$(cri inspectp "${pod[future]}" | jq -r .status.state)"

step "nothing else is lost"
expect_eq "healthy pod" SANDBOX_READY "$(cri inspectp "${pod[healthy]}" | jq -r .status.state)"
expect_eq "healthy IP" "$healthy_ip" "$(pod_ip "${pod[healthy]}")"
expect_eq "healthy container" CONTAINER_RUNNING "$(ctr_state "${ctr[healthy]}")"
expect_eq "healthy exec" ok "$(cri exec -s "${ctr[healthy]}" echo ok)"
expect_eq "pods listed" 4 "$(cri pods -q | wc -l)"

step "stop of the UNKNOWN container kills it; stop and remove of the broken pods clean up"
cri stop "${ctr[future]}" >/dev/null
expect_eq "future: after stop" CONTAINER_EXITED "$(ctr_state "${ctr[future]}")"
wait_until 10 eval "! kill -0 ${pid[future]} 2>/dev/null" || fail "the UNKNOWN container still runs"
for name in truncated garbage future; do
  cri stopp "${pod[$name]}" >/dev/null
  cri rmp "${pod[$name]}" >/dev/null
  kill -0 "${pid[$name]}" 2>/dev/null && fail "$name: its container still runs"
  [ ! -e "$records/sandboxes/${pod[$name]}.json" ] || fail "$name: the record file is still there"
done
[ ! -e "$records/containers/${ctr[future]}.json" ] || fail "the container's bad record is still there"
expect_eq "healthy container" CONTAINER_RUNNING "$(ctr_state "${ctr[healthy]}")"
cri rmp -f "${pod[healthy]}" >/dev/null
audit_diff "$baseline" "$(audit_snapshot)" || fail "leaked host objects (above)"
