#!/usr/bin/env bash
# Issue 6, demonstration 7: crictl stats and statsp show non-zero CPU and memory with
# timestamps.
source "$(dirname "$0")/../lib/prelude.sh"

pod=$(run_pod stats)
ctr=$(run_ctr "$pod" stats busy '["sh","-c","while :; do :; done"]')
sleep 1

step "container stats"
s=$(cri stats -o json --id "$ctr")
jq -e '.stats[0].cpu.usageCoreNanoSeconds.value | tonumber > 0' <<<"$s" >/dev/null || fail "no CPU: $s"
jq -e '.stats[0].memory.workingSetBytes.value | tonumber > 0' <<<"$s" >/dev/null || fail "no memory: $s"
jq -e '.stats[0].cpu.timestamp | tonumber > 0' <<<"$s" >/dev/null || fail "no timestamp: $s"
jq -e '.stats[0].writableLayer.usedBytes.value | tonumber >= 0' <<<"$s" >/dev/null || fail "no disk: $s"

step "CPU usage grows between two samples (a busy loop)"
a=$(cri stats -o json --id "$ctr" | jq -r '.stats[0].cpu.usageCoreNanoSeconds.value')
sleep 1
b=$(cri stats -o json --id "$ctr" | jq -r '.stats[0].cpu.usageCoreNanoSeconds.value')
[ "$b" -gt "$a" ] || fail "CPU did not grow: $a -> $b"

step "pod stats"
p=$(cri statsp -o json --id "$pod")
jq -e '.stats[0].linux.cpu.usageCoreNanoSeconds.value | tonumber > 0' <<<"$p" >/dev/null || fail "no pod CPU: $p"
jq -e '.stats[0].linux.memory.workingSetBytes.value | tonumber > 0' <<<"$p" >/dev/null || fail "no pod memory: $p"
jq -e '.stats[0].linux.network.defaultInterface.name == "eth0"' <<<"$p" >/dev/null || fail "no pod network: $p"
jq -e '.stats[0].linux.containers | length == 1' <<<"$p" >/dev/null || fail "pod stats lack the container: $p"

step "metrics: the descriptors (crictl metricdescs) are cAdvisor's families with kubelet's labels"
d=$(cri metricdescs -o json)
jq -e '[.descriptors[] | select(.name == "container_memory_working_set_bytes")][0].labelKeys
  == ["container","id","image","name","namespace","pod"]' <<<"$d" >/dev/null || fail "labels: $d"
jq -e '[.descriptors[] | select(.name == "container_network_receive_bytes_total")][0].labelKeys[-1]
  == "interface"' <<<"$d" >/dev/null || fail "network labels: $d"
jq -e 'all(.descriptors[]; (.help | length > 0) and (.labelKeys | length >= 6))' <<<"$d" >/dev/null ||
  fail "a descriptor without help or labels: $d"

step "metrics: crictl metricsp has the pod's network and the container's cgroup, labels matching"
m=$(cri metricsp -o json)
pm=$(jq --arg pod "$pod" '.podMetrics[] | select(.podSandboxId == $pod)' <<<"$m")
[ -n "$pm" ] || fail "no metrics for pod $pod: $m"
value() { # value FAMILY: the container's value of FAMILY
  jq -r --arg n "$1" '[.containerMetrics[0].metrics[] | select(.name == $n)][0].value.value' <<<"$pm"
}
jq -e --arg ctr "$ctr" '.containerMetrics | length == 1 and .[0].containerId == $ctr' <<<"$pm" >/dev/null ||
  fail "container metrics: $pm"
[ "$(value container_memory_working_set_bytes)" -gt 0 ] || fail "working set: $pm"
[ "$(value container_processes)" = 1 ] || fail "processes: $(value container_processes)"
started=$(value container_start_time_seconds)
[ $((started - $(date +%s))) -le 1 ] && [ $(($(date +%s) - started)) -lt 120 ] || fail "start time $started"
jq -e '[.containerMetrics[0].metrics[] | select(.name == "container_cpu_usage_seconds_total")][0].labelValues
  | .[0] == "busy" and .[5] == "stats" and .[6] == "total"' <<<"$pm" >/dev/null || fail "cpu labels: $pm"
jq -e '[.metrics[] | select(.name == "container_network_transmit_packets_total")][0].labelValues[-1] == "eth0"' \
  <<<"$pm" >/dev/null || fail "no eth0 in the pod's network metrics: $pm"
# What kubelet needs to turn each value into a Prometheus sample: as many label values as keys.
jq -e --argjson d "$d" '
  ($d.descriptors | map({(.name): (.labelKeys | length)}) | add) as $keys
  | all((.metrics + ([.containerMetrics[].metrics] | add))[]; $keys[.name] == (.labelValues | length))' \
  <<<"$pm" >/dev/null || fail "a metric whose label values do not match its descriptor: $pm"
