#!/usr/bin/env bash
# Issue 6, demonstration 1: a busybox container in its own pod: PID 1 is its command and
# `ps` shows only its processes, the pod's hostname, corral's cgroup, its own eth0 address.
source "$(dirname "$0")/../lib/prelude.sh"

step "runp + create + start a busybox container"
pod=$(run_pod basics)
ctr=$(run_ctr "$pod" basics app '["sh","-c","echo started; exec sleep 3600"]')
expect_eq "state" CONTAINER_RUNNING "$(ctr_state "$ctr")"

step "PID 1 is the container's command and ps shows only the container's processes"
expect_eq "PID 1" "sleep3600" "$(cri exec -s "$ctr" cat /proc/1/cmdline | tr -d '\0')"
procs=$(cri exec -s "$ctr" ps -o pid,comm | tail -n +2)
expect_eq "ps" "ps sleep" "$(awk '{print $2}' <<<"$procs" | sort | tr '\n' ' ' | sed 's/ $//')"

step "hostname is the pod's hostname"
expect_eq "hostname" basics "$(cri exec -s "$ctr" hostname)"

step "/proc/1/cgroup shows corral's cgroup"
expect_contains "cgroup" "$E2E_CGROUP_ROOT/$pod/$ctr" "$(cri exec -s "$ctr" cat /proc/1/cgroup)"

step "eth0 has an address from the pod CIDR, the one the CRI reports"
ip=$(pod_ip "$pod")
case "$ip" in 10.99.*) ;; *) fail "pod IP $ip is not in $E2E_POD_CIDR" ;; esac
expect_contains "ip addr" "inet $ip/16" "$(cri exec -s "$ctr" ip -4 addr show eth0)"
