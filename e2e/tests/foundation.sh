#!/usr/bin/env bash
# The daemon answers what crictl and kubelet call on every connection, refuses what it
# cannot do yet with a clear message, and owns its socket safely.
E2E_NO_PULL=1 source "$(dirname "$0")/../lib/prelude.sh"

step "crictl version names corral and the CRI v1 API"
out=$(cri version)
expect_contains "version" "RuntimeName:  corral" "$out"
expect_contains "version" "RuntimeApiVersion:  v1" "$out"

step "crictl info: RuntimeReady is true, NetworkReady is reported with a reason"
info=$(cri info)
expect_eq "RuntimeReady" "true" "$(jq -r '.status.conditions[] | select(.type=="RuntimeReady") | .status' <<<"$info")"
net=$(jq -r '.status.conditions[] | select(.type=="NetworkReady") | "\(.status) \(.reason)"' <<<"$info")
case "$net" in
  "true "*|"false "?*) ;;
  *) fail "NetworkReady must be true, or false with a reason; got '$net'" ;;
esac
expect_contains "verbose info carries the effective config" "$CORRAL_SOCKET" "$(jq -r .config <<<"$info")"

step "crictl runtime-config reports the cgroupfs driver"
expect_contains "runtime-config" "CGROUPFS" "$(cri runtime-config)"

step "crictl imagefsinfo reports the image store with a timestamp"
fs=$(cri imagefsinfo)
expect_contains "imagefsinfo mountpoint" "$E2E_WORK/root/images" "$(jq -r '.status.imageFilesystems[0].fsId.mountpoint' <<<"$fs")"
[ "$(jq -r '.status.imageFilesystems[0].timestamp' <<<"$fs")" -gt 0 ] || fail "imagefsinfo timestamp must be > 0"

step "the socket is mode 0660"
expect_eq "socket mode" "660" "$(stat -c %a "$CORRAL_SOCKET")"

step "a second daemon on the same socket refuses to start"
expect_fail "second daemon" "already serving" \
  "$CORRAL_BIN" serve --socket "$CORRAL_SOCKET" --root "$E2E_WORK/root2" --state-dir "$E2E_WORK/state2"
step "a second daemon on the same state dir refuses to start"
expect_fail "second daemon" "is using state dir" \
  "$CORRAL_BIN" serve --socket "$E2E_WORK/other.sock" --root "$E2E_WORK/root2" --state-dir "$E2E_WORK/state"
kill -0 "$CORRAL_PID" || fail "the first daemon must survive the attempts"

step "corral config default prints a config that corral accepts"
"$CORRAL_BIN" config default >"$E2E_WORK/default.toml"
expect_contains "default config" 'pod_cidr = "10.88.0.0/16"' "$(cat "$E2E_WORK/default.toml")"
"$CORRAL_BIN" config show --config "$E2E_WORK/default.toml" >/dev/null
printf 'bogus_key = 1\n' >"$E2E_WORK/bad.toml"
expect_fail "invalid config" "bogus_key" "$CORRAL_BIN" config show --config "$E2E_WORK/bad.toml"

step "SIGTERM stops the daemon and removes its socket; a stale socket is replaced"
corral_stop
[ ! -e "$CORRAL_SOCKET" ] || fail "socket still there after SIGTERM"
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$CORRAL_SOCKET"
corral_start
cri version >/dev/null
