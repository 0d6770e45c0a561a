#!/usr/bin/env bash
# Issue 6, demonstrations 2 and 3: a server in a pod answers a client on the host at the pod
# IP and on 127.0.0.1:<hostPort>; a container reaches a fake "outside host" (a netns this
# test makes) which sees the host's address, not the pod's (egress NAT).
source "$(dirname "$0")/../lib/prelude.sh"

OUT_NS=ce2e-outside

step "a web server in a pod with hostPort 32080 -> 8080"
pod=$(run_pod web '.port_mappings = [{protocol: 0, container_port: 8080, host_port: 32080}]')
ctr=$(run_ctr "$pod" web httpd '["sh","-c","mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www"]')
ip=$(pod_ip "$pod")
wait_until 10 curl -fsS -o /dev/null "http://$ip:8080/" || fail "server never answered on $ip:8080"

step "the host reaches the pod IP"
expect_eq "via pod IP" hello-from-pod "$(curl -fsS "http://$ip:8080/")"

step "the host reaches 127.0.0.1:hostPort"
expect_eq "via 127.0.0.1:32080" hello-from-pod "$(curl -fsS http://127.0.0.1:32080/)"

step "a second pod reaches the first one by pod IP (no NAT between pods)"
client=$(run_pod client)
cctr=$(run_ctr "$client" client c '["sleep","3600"]')
expect_eq "pod to pod" hello-from-pod "$(cri exec -s "$cctr" wget -qO- "http://$ip:8080/")"

step "egress NAT: an outside host (198.51.100.2 in its own netns) sees the host's address"
ip netns add "$OUT_NS"
e2e_defer ip netns del "$OUT_NS"
e2e_defer ip link del ce2e-out-h
ip link add ce2e-out-h type veth peer name ce2e-out-p
ip link set ce2e-out-p netns "$OUT_NS"
ip addr add 198.51.100.1/24 dev ce2e-out-h
ip link set ce2e-out-h up
ip -n "$OUT_NS" addr add 198.51.100.2/24 dev ce2e-out-p
ip -n "$OUT_NS" link set ce2e-out-p up
ip -n "$OUT_NS" link set lo up
# The outside host answers with the address the connection came from.
ip netns exec "$OUT_NS" socat TCP-LISTEN:9000,fork,reuseaddr SYSTEM:'echo $SOCAT_PEERADDR' >/dev/null 2>&1 &
wait_until 5 ip netns exec "$OUT_NS" sh -c 'ss -ltn | grep -q :9000'
seen=$(cri exec -s "$cctr" sh -c 'nc 198.51.100.2 9000 </dev/null')
expect_eq "address seen outside" 198.51.100.1 "$seen"
