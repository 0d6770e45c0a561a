#!/usr/bin/env bash
# The benchmark tool keeps working: e2e/bench.sh --smoke runs every scenario (N=3, a few
# pods) against a throw-away corral and a throw-away containerd and writes a report.
# Only the tool is tested, never the numbers (too noisy on a shared 2-core machine).
export E2E_NO_DAEMON=1 # bench.sh starts its own corral (and containerd)
# shellcheck source=e2e/lib/prelude.sh
source "$(dirname "$0")/../lib/prelude.sh"

results=$E2E_WORK/results

step "e2e/bench.sh --smoke runs both runtimes and writes the report"
"$E2E_DIR/bench.sh" --smoke --out-dir "$results" 2> >(tee "$E2E_WORK/bench.log" >&2) || fail "bench.sh --smoke failed"
for f in latest.json latest.md full_cycle.svg; do
  [ -s "$results/$f" ] || fail "bench.sh wrote no $f"
done

step "every scenario has samples for both runtimes"
for side in runtime baseline; do
  missing=$(jq -r ".$side.latency[] | select(.summary == null or .summary.n < 1) | .key" "$results/latest.json")
  expect_eq "$side rows without samples" "" "$missing"
done
expect_eq "runtimes" "corral containerd" "$(jq -r '"\(.runtime.runtime.name) \(.baseline.runtime.name)"' "$results/latest.json")"
expect_contains "markdown names the full cycle" "Full pod cycle" "$(cat "$results/latest.md")"
expect_contains "chart has both curves" "containerd (n=3" "$(cat "$results/full_cycle.svg")"

step "memory was attributed: helpers found at the measured population"
for side in runtime baseline; do
  helpers=$(jq ".$side.memory[] | select(.pods > 0) | .helpers | length" "$results/latest.json" | head -1)
  [ "${helpers:-0}" -ge 3 ] || fail "$side: $helpers helper processes for 3 pods"
done

step "nothing is left behind"
ip link show cbench0 >/dev/null 2>&1 && fail "bridge cbench0 left"
ls -d /sys/fs/cgroup/*/corral-bench 2>/dev/null && fail "cgroups /corral-bench left"
work=$(sed -n 's/.*\[bench\] work dir \([^;]*\);.*/\1/p' "$E2E_WORK/bench.log")
[ -n "$work" ] || fail "bench.sh did not say which work dir it used"
[ ! -e "$work" ] || fail "work dir $work left"
true
