#!/usr/bin/env bash
# RPCs whose issue has not landed answer UNIMPLEMENTED at once, naming the RPC.
# Remove a line here when its RPC is implemented.
E2E_NO_PULL=1 source "$(dirname "$0")/../lib/prelude.sh"

step "an unimplemented call fails fast with a message naming the RPC"
start=$SECONDS
expect_fail "checkpoint" "CheckpointContainer is not implemented by corral" cri checkpoint --export=/tmp/x.tar nosuchid
[ $((SECONDS - start)) -lt 5 ] || fail "an unimplemented call must not hang"
