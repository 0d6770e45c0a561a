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
