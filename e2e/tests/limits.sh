#!/usr/bin/env bash
# Issue 6, demonstration 4: a 16 MiB memory limit OOM-kills a hungry container (exit code
# 137, reason OOMKilled); a pids limit on the pod cgroup (as kubelet sets it) stops a fork
# bomb, and the host keeps working.
source "$(dirname "$0")/../lib/prelude.sh"

step "a container with a 16 MiB limit that allocates more is OOM-killed"
pod=$(run_pod limits)
ctr=$(run_ctr "$pod" limits hungry '["sh","-c","exec tail /dev/zero"]' \
  '.linux.resources = {memory_limit_in_bytes: 16777216}')
wait_until 30 sh -c "[ \"\$($CRICTL_BIN $CRICTL_ARGS inspect $ctr | jq -r .status.state)\" = CONTAINER_EXITED ]" ||
  fail "the hungry container was not killed"
status=$(cri inspect "$ctr")
expect_eq "exit code" 137 "$(jq -r .status.exitCode <<<"$status")"
expect_eq "reason" OOMKilled "$(jq -r .status.reason <<<"$status")"

step "a fork bomb stops at the pod cgroup's pids limit; the host can still fork"
# kubelet creates the pod cgroup with pids.max and passes it as cgroup_parent.
parent=$E2E_CGROUP_ROOT-pids/pod-bomb
for h in /sys/fs/cgroup/*/; do
  [ -f "$h/cgroup.procs" ] && mkdir -p "$h${parent#/}"
done
echo 64 >"/sys/fs/cgroup/pids${parent}/pids.max"
bomb=$(run_pod bomb ".linux.cgroup_parent = \"$parent\"")
# PID 1 execs (no fork), so the pod outlives the bomb, which may die out once forks fail.
b=$(run_ctr "$bomb" bomb bomb '["sh","-c","f() { f | f & }; f; exec sleep 3600"]')
# pids.events: "max N", N = forks the kernel refused (v1 counts them in the forking task's
# cgroup, the container's; v2 in the one whose limit was hit): summed over the pod's subtree.
refused() { find "/sys/fs/cgroup/pids${parent}" -name pids.events -exec sed -n 's/^max //p' {} + | awk '{n += $1} END {print n + 0}'; }
limit_hit() { [ "$(refused)" -gt 0 ]; }
wait_until 20 limit_hit || fail "the limit was never hit: $(refused) forks refused"
current=$(cat "/sys/fs/cgroup/pids${parent}/pids.current")
[ "$current" -le 64 ] || fail "pids.current $current is over the limit"
/bin/true || fail "the host cannot fork"
cri rmp -f "$bomb" >/dev/null
for h in /sys/fs/cgroup/*/; do
  [ -d "$h${parent#/}" ] && rmdir "$h${parent#/}" "$h$(dirname "${parent#/}")" 2>/dev/null
done
true
