#!/usr/bin/env bash
# Issue 7: exec (both transports, tty with resize), attach, port-forward through crictl and
# the streaming server; 200 execs do not grow the daemon's descriptors.
source "$(dirname "$0")/../lib/prelude.sh"

pod=$(run_pod stream)
ctr=$(run_ctr "$pod" stream app '["sh","-c","mkdir -p /www && echo via-port-forward > /www/index.html && exec httpd -f -p 80 -h /www"]')

for transport in spdy websocket; do
  step "exec over $transport: both streams and exit code 3"
  out=$(cri exec --transport "$transport" "$ctr" sh -c 'echo out; echo err >&2; exit 3' 2>&1) &&
    fail "exit 3 reported as success"
  expect_contains "stdout" out "$out"
  expect_contains "stderr" err "$out"
  expect_contains "exit code" "exit code 3" "$out"
  step "exec -i over $transport: stdin reaches the command"
  expect_eq "stdin" "piped-in" "$(echo piped-in | cri exec --transport "$transport" -i "$ctr" cat)"
done

step "exec -it through a pty: the terminal size reaches the container"
size=$(script -qec "stty rows 33 cols 99; $CRICTL_BIN $CRICTL_ARGS exec -it $ctr stty size" /dev/null | tr -d '\r')
expect_contains "stty size" "33 99" "$size"

step "attach to a container that reads stdin"
att=$(run_ctr "$pod" stream echoer '["sh","-c","while read l; do echo got-$l; done"]' '.stdin = true')
echo ping | timeout 5 "$CRICTL_BIN" $CRICTL_ARGS attach -i "$att" >/dev/null 2>&1 || true
wait_until 5 grep -q got-ping "$E2E_WORK/logs/stream/echoer/0.log" || fail "attached stdin never reached the container"

step "port-forward 18080 -> 80 reaches the pod's server"
"$CRICTL_BIN" $CRICTL_ARGS port-forward "$pod" 18080:80 >/dev/null 2>&1 &
pf=$!
wait_until 10 curl -fsS -o /dev/null http://127.0.0.1:18080/ || fail "port-forward never answered"
expect_eq "through port-forward" via-port-forward "$(curl -fsS http://127.0.0.1:18080/)"
kill "$pf"
wait "$pf" 2>/dev/null

step "200 back-to-back execs leave the daemon's descriptors flat"
fds_before=$(ls "/proc/$CORRAL_PID/fd" | wc -l)
for _ in $(seq 200); do cri exec "$ctr" true >/dev/null; done
sleep 1
fds_after=$(ls "/proc/$CORRAL_PID/fd" | wc -l)
[ "$fds_after" -le $((fds_before + 2)) ] || fail "daemon fds grew from $fds_before to $fds_after"
expect_eq "no exec helpers left" 0 "$(pgrep -fc "^$CORRAL_BIN exec" || true)"
