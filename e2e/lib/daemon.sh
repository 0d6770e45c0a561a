# Start, stop and crash a throw-away corral for the e2e tests (sourced, not run).
#
# Every daemon gets its own socket, root, state dir, cgroup root, bridge and pod CIDR, so a
# test run never touches a corral (or anything else) that is already on the machine.
# Needs: CORRAL_BIN, E2E_WORK. Sets: CORRAL_SOCKET, CORRAL_PID, CORRAL_LOG, CRICTL_ARGS.

: "${E2E_BRIDGE:=ce2e0}"
: "${E2E_POD_CIDR:=10.99.0.0/16}"
: "${E2E_CGROUP_ROOT:=/corral-e2e}"

corral_start() {
  CORRAL_SOCKET=$E2E_WORK/corral.sock
  CORRAL_LOG=$E2E_WORK/corral.log
  "$CORRAL_BIN" serve \
    --socket "$CORRAL_SOCKET" --root "$E2E_WORK/root" --state-dir "$E2E_WORK/state" \
    --cgroup-root "$E2E_CGROUP_ROOT" --bridge "$E2E_BRIDGE" --pod-cidr "$E2E_POD_CIDR" \
    ${E2E_CONFIG:+--config "$E2E_CONFIG"} --log-level "${CORRAL_LOG_LEVEL:-info}" \
    >>"$CORRAL_LOG" 2>&1 &
  CORRAL_PID=$!
  CRICTL_ARGS="--runtime-endpoint unix://$CORRAL_SOCKET --image-endpoint unix://$CORRAL_SOCKET --timeout 60s"
  export CORRAL_SOCKET CORRAL_LOG CORRAL_PID CRICTL_ARGS
  local i
  for i in $(seq 100); do
    if "$CRICTL_BIN" $CRICTL_ARGS version >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$CORRAL_PID" 2>/dev/null || { tail -20 "$CORRAL_LOG" >&2; echo "corral exited during start-up" >&2; return 1; }
    sleep 0.1
  done
  echo "corral did not answer within 10 s" >&2
  return 1
}

# Graceful stop (SIGTERM), then SIGKILL after 10 s. Containers keep running by design.
corral_stop() {
  [ -n "${CORRAL_PID:-}" ] || return 0
  if kill -0 "$CORRAL_PID" 2>/dev/null; then
    kill -TERM "$CORRAL_PID"
    local i
    for i in $(seq 100); do
      kill -0 "$CORRAL_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$CORRAL_PID" 2>/dev/null || true
  fi
  wait "$CORRAL_PID" 2>/dev/null || true
  CORRAL_PID=
}

# Simulates a daemon crash.
corral_kill9() {
  kill -KILL "$CORRAL_PID"
  wait "$CORRAL_PID" 2>/dev/null || true
  CORRAL_PID=
}
