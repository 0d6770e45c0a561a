#!/usr/bin/env bash
# Issue 6, demonstration 8: stopp + rmp of a pod with running containers (and a hostPort)
# leaves nothing behind: veth, IP record, nft entry, mount, cgroup, process.
source "$(dirname "$0")/../lib/prelude.sh"

snapshot() {
  echo "veths: $(ip -o link show master "$E2E_BRIDGE" 2>/dev/null | wc -l)"
  echo "ip records: $(find "$E2E_WORK/root/network" -type f 2>/dev/null | grep -vc -e lock -e '\.json$')"
  echo "nft: $(nft list table ip "corral_$E2E_BRIDGE" 2>/dev/null | grep -c 'comment')"
  echo "mounts: $(grep -c "$E2E_WORK" /proc/self/mountinfo)"
  echo "cgroups: $(find "/sys/fs/cgroup/memory${E2E_CGROUP_ROOT}" -mindepth 1 -type d 2>/dev/null | wc -l)"
  echo "processes: $(pgrep -fc "^$CORRAL_BIN (monitor|pause)" || true)"
}

# One pod first, so that the bridge and table exist in the "before" picture.
warm=$(run_pod warm)
before=$(snapshot)

step "a pod with a hostPort and two running containers"
pod=$(run_pod doomed '.port_mappings = [{protocol: 0, container_port: 80, host_port: 32081}]' \
  '.linux.security_context.namespace_options.pid = 0')
run_ctr "$pod" doomed a '["sleep","3600"]' >/dev/null
run_ctr "$pod" doomed b '["sh","-c","trap \"\" TERM; sleep 3600"]' >/dev/null
during=$(snapshot)
[ "$during" != "$before" ] || fail "the pod made nothing?"

step "stopp + rmp"
cri stopp "$pod" >/dev/null
cri rmp "$pod" >/dev/null
after=$(snapshot)
expect_eq "host objects after rmp" "$before" "$after"
expect_eq "containers listed" "" "$(cri ps -a -q --pod "$pod")"
cri rmp -f "$warm" >/dev/null
