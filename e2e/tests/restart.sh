#!/usr/bin/env bash
# Issue 6, demonstration 9: 5 pods run; the daemon is killed with SIGKILL and started again:
# all 5 are READY, their containers RUNNING with the same PIDs, logs and exec work, and a
# container that exited while the daemon was down shows its exit code.
source "$(dirname "$0")/../lib/prelude.sh"

pids=()
ctrs=()
for i in 1 2 3 4 5; do
  pod=$(run_pod "r$i")
  ctr=$(run_ctr "$pod" "r$i" app '["sh","-c","echo hello-$HOSTNAME; exec sleep 3600"]')
  ctrs+=("$ctr")
  pids+=("$(cri inspect "$ctr" | jq -r .info.pid)")
done
shortlived_pod=$(run_pod short)
shortlived=$(run_ctr "$shortlived_pod" short quitter '["sh","-c","sleep 2; exit 7"]')

step "kill -9 the daemon; the containers keep running"
corral_kill9
sleep 3 # the short-lived container exits while the daemon is down
for pid in "${pids[@]}"; do kill -0 "$pid" || fail "container process $pid died with the daemon"; done

step "start the daemon again"
corral_start
expect_eq "ready pods" 6 "$(cri pods -q --state ready | wc -l)"
for i in "${!ctrs[@]}"; do
  c=${ctrs[$i]}
  expect_eq "state of $c" CONTAINER_RUNNING "$(ctr_state "$c")"
  expect_eq "pid of $c" "${pids[$i]}" "$(cri inspect "$c" | jq -r .info.pid)"
done

step "the container that exited while the daemon was down shows its exit code"
expect_eq "state" CONTAINER_EXITED "$(ctr_state "$shortlived")"
expect_eq "exit code" 7 "$(cri inspect "$shortlived" | jq -r .status.exitCode)"

step "logs and exec still work"
expect_contains "logs" hello-r1 "$(cri logs "${ctrs[0]}" 2>&1)"
expect_eq "exec" ok "$(cri exec -s "${ctrs[1]}" echo ok)"

step "stop and remove after the restart"
cri stopp "$(cri pods -q --name r5)" >/dev/null
expect_eq "stopped container" CONTAINER_EXITED "$(ctr_state "${ctrs[4]}")"
