#!/bin/bash
# e2e: the ImageService through crictl (issue 5 "Done when").
#
# Runs under e2e/run.sh (a throw-away daemon, $REGISTRY serving busybox:latest).
# Exits non-zero with a message naming the failed check.
E2E_NO_PULL=1 source "$(dirname "$0")/../lib/prelude.sh"
set +e
CRICTL="$CRICTL_BIN $CRICTL_ARGS"
IMAGE="$REGISTRY/busybox:latest"
failures=0

crictl() { $CRICTL "$@" 2>&1 | grep -v 'level=warning msg="Config'; return "${PIPESTATUS[0]}"; }
fail() { echo "FAIL images.sh: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok   $*"; }
json() { local cmd=$1; shift; crictl "$cmd" -o json "$@"; }

# Start from a clean slate for this image (ignore "no such image").
crictl rmi "$IMAGE" >/dev/null 2>&1 || true

# --- pull
out=$(crictl pull "$IMAGE") || fail "crictl pull $IMAGE: $out"
ref=$(sed -n 's/^Image is up to date for //p' <<<"$out")
[[ $ref == sha256:* ]] && pass "pull returns image ref $ref" || fail "pull printed no image ref: $out"

# --- inspecti
status=$(json inspecti "$IMAGE") || fail "crictl inspecti $IMAGE: $status"
id=$(jq -r '.status.id' <<<"$status")
[[ $id == "$ref" ]] && pass "image id equals the pull's image_ref" || fail "inspecti id $id != pull ref $ref"
jq -e --arg t "$IMAGE" '.status.repoTags | index($t)' <<<"$status" >/dev/null \
    && pass "repoTags has $IMAGE" || fail "repoTags: $(jq -c .status.repoTags <<<"$status")"
jq -e --arg r "$REGISTRY/busybox@sha256:" '.status.repoDigests[0] | startswith($r)' <<<"$status" >/dev/null \
    && pass "repoDigests has the manifest digest" || fail "repoDigests: $(jq -c .status.repoDigests <<<"$status")"
size=$(jq -r '.status.size' <<<"$status")
[[ $size =~ ^[0-9]+$ && $size -gt 100000 ]] && pass "size $size" || fail "size: $size"
jq -e '.info.imageSpec.config.Cmd | length > 0' <<<"$status" >/dev/null \
    && pass "verbose info has the image config" || fail "info: $(jq -c .info <<<"$status" | head -c 300)"

# --- images
list=$(crictl images) || fail "crictl images: $list"
grep -qE "^$REGISTRY/busybox +latest +${id:7:13}" <<<"$list" && pass "images lists it" || fail "images: $list"
crictl images -q | grep -qx "$id" && pass "images -q lists the id" || fail "images -q lacks $id"
filtered=$(json images "$REGISTRY/busybox:latest" | jq -r '.images | length')
[[ $filtered == 1 ]] && pass "images filter by name" || fail "filtered list has $filtered images"

# --- pull again: same id, nothing new
again=$(crictl pull "$IMAGE" | sed -n 's/^Image is up to date for //p')
[[ $again == "$id" ]] && pass "second pull gives the same id" || fail "second pull: $again"

# --- imagefsinfo
fs=$(json imagefsinfo) || fail "crictl imagefsinfo: $fs"
used=$(jq -r '.status.imageFilesystems[0].usedBytes.value' <<<"$fs")
inodes=$(jq -r '.status.imageFilesystems[0].inodesUsed.value' <<<"$fs")
mountpoint=$(jq -r '.status.imageFilesystems[0].fsId.mountpoint' <<<"$fs")
[[ $used -gt 1000000 && $inodes -gt 10 && $mountpoint == /* ]] \
    && pass "imagefsinfo: $used bytes, $inodes inodes at $mountpoint" || fail "imagefsinfo: $fs"

# --- errors are clear
err=$(crictl pull "$REGISTRY/does-not-exist:1") && fail "pulling a missing image succeeded"
grep -qi "not found" <<<"$err" && pass "missing image: not found" || fail "missing image error: $err"
err=$(crictl pull "Not/A/Valid:Name") && fail "pulling an invalid name succeeded"
grep -qi "invalid" <<<"$err" && pass "invalid name refused" || fail "invalid name error: $err"

# --- rmi by tag removes the image; then by id prefix after a re-pull
out=$(crictl rmi "$IMAGE") || fail "crictl rmi $IMAGE: $out"
crictl images -q | grep -qx "$id" && fail "image still listed after rmi" || pass "rmi by tag"
crictl inspecti "$IMAGE" >/dev/null 2>&1 && fail "inspecti still finds the image" || pass "inspecti after rmi: gone"
after=$(json imagefsinfo | jq -r '.status.imageFilesystems[0].usedBytes.value')
[[ $after -lt $used ]] && pass "rmi frees space ($used -> $after bytes)" || fail "usedBytes after rmi: $after (before $used)"
crictl pull "$IMAGE" >/dev/null || fail "re-pull after rmi"
out=$(crictl rmi "${id:7:12}") || fail "crictl rmi by short id: $out"
crictl images -q | grep -qx "$id" && fail "image still listed after rmi by id" || pass "rmi by short id"

if [ "$failures" -ne 0 ]; then
    echo "images.sh: $failures check(s) failed" >&2
    exit 1
fi
echo "images.sh: all checks passed"
