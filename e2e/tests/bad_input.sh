#!/usr/bin/env bash
# Issue 6, demonstration 10: bad requests get a clear error and change nothing; the other
# pods keep running.
source "$(dirname "$0")/../lib/prelude.sh"

good=$(run_pod good)
gctr=$(run_ctr "$good" good app '["sleep","3600"]')

step "an invalid port protocol"
expect_fail "protocol" "unknown port protocol" \
  cri runp "$(pod_json badport '.port_mappings = [{protocol: 9, container_port: 80, host_port: 32090}]')"
step "an invalid container port"
expect_fail "port" "outside 1-65535" \
  cri runp "$(pod_json badport2 '.port_mappings = [{protocol: 0, container_port: 0, host_port: 32091}]')"

pod=$(run_pod victim)
step "a container with an image that was never pulled"
expect_fail "image" "not found" cri create "$pod" \
  "$(ctr_json missing '["true"]' '.image.image = "127.0.0.1:5000/does-not-exist:v1"')" "$E2E_WORK/pod-victim.json"
step "a mount of a host path that does not exist"
expect_fail "mount" "does not exist" cri create "$pod" \
  "$(ctr_json badmount '["true"]' '.mounts = [{container_path: "/data", host_path: "/nonexistent/corral-e2e"}]')" \
  "$E2E_WORK/pod-victim.json"
step "a duplicate name"
expect_fail "duplicate pod" "already reserved" cri runp "$E2E_WORK/pod-victim.json"
run_ctr "$pod" victim dup '["sleep","3600"]' >/dev/null
expect_fail "duplicate container" "already reserved" \
  cri create "$pod" "$E2E_WORK/ctr-dup.json" "$E2E_WORK/pod-victim.json"

step "nothing half-made is listed; the good pod is untouched"
expect_eq "pods" 2 "$(cri pods -q | wc -l)"
expect_eq "containers of the victim" 1 "$(cri ps -a -q --pod "$pod" | wc -l)"
expect_eq "good container" CONTAINER_RUNNING "$(ctr_state "$gctr")"
expect_eq "good exec" ok "$(cri exec -s "$gctr" echo ok)"
