# shellcheck shell=bash
# The soak: pod cycles (run, create, start, exec, logs, stop, remove), several at a time,
# against one daemon, with the leak audit before and after (sourced after lib/prelude.sh
# by e2e/tests/soak_short.sh; e2e/soak.sh runs the long one).
#
# Passes when no cycle failed, the audit finds no leaked object, the daemon's fd count did
# not grow and its RSS grew by less than SOAK_MAX_RSS_GROWTH_KIB (2 MiB).

# shellcheck source=audit.sh
source "$E2E_DIR/lib/audit.sh"

: "${SOAK_MAX_RSS_GROWTH_KIB:=2048}"

# soak_cycle N: one pod's life, as kubelet drives it.
soak_cycle() {
  local n=$1 name=soak$1 pod ctr out
  pod=$(cri runp "$(pod_json "$name")")
  ctr=$(cri create "$pod" "$(ctr_json "app$n" '["sh","-c","trap \"exit 0\" TERM; echo hello-$HOSTNAME; sleep 3600 & wait"]')" \
    "$E2E_WORK/pod-$name.json")
  cri start "$ctr" >/dev/null
  out=$(cri exec -s "$ctr" echo ok)
  [ "$out" = ok ] || { echo "cycle $n: exec said '$out'" >&2; return 1; }
  wait_until 5 eval "cri logs '$ctr' 2>&1 | grep -q 'hello-$name'" ||
    { echo "cycle $n: no log line" >&2; return 1; }
  cri stop -t 5 "$ctr" >/dev/null
  out=$(cri inspect "$ctr" | jq -r .status.exitCode)
  [ "$out" = 0 ] || { echo "cycle $n: exit code $out after SIGTERM" >&2; return 1; }
  cri stopp "$pod" >/dev/null
  cri rmp "$pod" >/dev/null
  rm -f "$E2E_WORK/pod-$name.json" "$E2E_WORK/ctr-app$n.json"
  rm -rf "$E2E_WORK/logs/$name"
}

# soak_worker FIRST STEP LAST: cycles FIRST, FIRST+STEP, ... up to LAST; stops at the first
# failure.
soak_worker() {
  local i
  for ((i = $1; i <= $3; i += $2)); do
    soak_cycle "$i" || { echo "cycle $i failed" >&2; return 1; }
    ((i % 100 == 0)) && echo "    $i cycles done" >&2
  done
  return 0
}

# soak_usage: the daemon's "fds=N rss_kib=M" once idle: the smallest of a few samples, so
# that a connection still closing is not counted.
soak_usage() {
  local i fds rss min_fds=999999 min_rss=999999999
  for i in 1 2 3 4 5; do
    read -r fds rss < <(audit_usage | sed 's/fds=//; s/rss_kib=//')
    ((fds < min_fds)) && min_fds=$fds
    ((rss < min_rss)) && min_rss=$rss
    sleep 0.2
  done
  echo "fds=$min_fds rss_kib=$min_rss"
}

# soak_parallel FIRST LAST PARALLEL: cycles FIRST..LAST, PARALLEL workers; fails if any
# cycle failed. (Waits for its workers only: the daemon is a background job too.)
soak_parallel() {
  local first=$1 last=$2 parallel=$3 w failed=0 pids=()
  for w in $(seq 0 $((parallel - 1))); do
    soak_worker $((first + w)) "$parallel" "$last" &
    pids+=($!)
  done
  for w in "${pids[@]}"; do wait "$w" || failed=1; done
  return "$failed"
}

# soak_run CYCLES PARALLEL
soak_run() {
  local cycles=$1 parallel=$2 start failed=0
  # Warm-up: the bridge, the nft table, the thread pools and the allocator's arenas are made
  # by the first pods and stay; they are not growth.
  soak_parallel 1000001 $((1000000 + 4 * parallel)) "$parallel" || fail "warm-up cycles failed"
  local before usage_before after usage_after
  before=$(audit_snapshot)
  usage_before=$(soak_usage)

  step "soak: $cycles pod cycles, $parallel at a time"
  start=$SECONDS
  soak_parallel 1 "$cycles" "$parallel" || failed=1
  local duration=$((SECONDS - start))

  after=$(audit_snapshot)
  usage_after=$(soak_usage)
  local leaks=0
  audit_diff "$before" "$after" || leaks=$(LC_ALL=C comm -13 <(echo "$before") <(echo "$after") | wc -l)
  local fds_b=${usage_before#fds=} fds_a=${usage_after#fds=}
  fds_b=${fds_b%% *} fds_a=${fds_a%% *}
  local rss_b=${usage_before#*rss_kib=} rss_a=${usage_after#*rss_kib=}
  echo "soak: cycles=$cycles parallel=$parallel duration=${duration}s failed=$failed leaks=$leaks" \
    "fds=$fds_b->$fds_a rss_kib=$rss_b->$rss_a (growth $((rss_a - rss_b)) KiB)" >&2

  expect_eq "failed cycles" 0 "$failed"
  expect_eq "leaked objects" 0 "$leaks"
  [ "$fds_a" -le "$fds_b" ] || fail "daemon fds grew: $fds_b -> $fds_a"
  [ $((rss_a - rss_b)) -lt "$SOAK_MAX_RSS_GROWTH_KIB" ] ||
    fail "daemon RSS grew by $((rss_a - rss_b)) KiB (limit $SOAK_MAX_RSS_GROWTH_KIB)"
  ! grep -q panicked "$CORRAL_LOG" || fail "the daemon panicked: $(grep -m1 panicked "$CORRAL_LOG")"
}
