#!/usr/bin/env bash
# The containerd baseline of e2e/CONFORMANCE.md: critest against a throw-away
# containerd with the same offline images and registry mirrors corral uses.
#
#   e2e/critest-containerd.sh [--record] [critest.sh options...]
#
# Starts (or reuses) the local registry, builds and pushes the test images,
# starts containerd (e2e/containerd/start.sh), runs e2e/critest.sh with
# e2e/critest-known-failures-containerd.txt, then stops containerd and the
# registry if it started them, also on failure or Ctrl-C.
#
#   --record   copy the JUnit report to e2e/results/critest-containerd.junit.xml
#              and regenerate the tables in e2e/CONFORMANCE.md.
#
# Environment: CORRAL_E2E_WORK (scratch dir, default a new /tmp dir; removed at
# the end), REGISTRY_DIR (registry state, default $CORRAL_E2E_WORK/registry),
# REGISTRY_ADDR (default 127.0.0.1:5000), CRITEST_RESULTS (default
# e2e/results/critest-containerd). Last line: "N passed, N failed, N skipped".
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/lib/registry.sh
source "$HERE/lib/registry.sh"

RECORD=0
if [[ ${1:-} == --record ]]; then
	RECORD=1
	shift
fi
WORK=${CORRAL_E2E_WORK:-$(mktemp -d /tmp/corral-critest-ctd.XXXXXX)}
REGISTRY_DIR=${REGISTRY_DIR:-$WORK/registry}
RESULTS=${CRITEST_RESULTS:-$HERE/results/critest-containerd}
CTD_DIR=$WORK/containerd

cleanup() {
	"$HERE/containerd/stop.sh" "$CTD_DIR" --purge || true
	registry_stop "$REGISTRY_DIR" || true
	if [[ -z ${CORRAL_E2E_WORK:-} ]]; then
		rm -rf --one-file-system "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

main() {
	local started=$SECONDS
	registry_start "$REGISTRY_DIR" >/dev/null
	"$HERE/images/build.sh"
	local images_done=$SECONDS endpoint
	endpoint=$("$HERE/containerd/start.sh" "$CTD_DIR")

	local status=0
	CRITEST_RESULTS=$RESULTS "$HERE/critest.sh" --runtime-endpoint "$endpoint" \
		--known-failures "$HERE/critest-known-failures-containerd.txt" "$@" | tee "$WORK/critest.out" || status=$?
	log critest-containerd "images $((images_done - started)) s, containerd + critest $((SECONDS - images_done)) s"

	if ((RECORD)) && [[ -s $RESULTS/junit.xml ]]; then
		python3 "$HERE/lib/junit.py" compact "$RESULTS/junit.xml" "$HERE/results/critest-containerd.junit.xml"
		python3 "$HERE/conformance-table.py" --update "$HERE/CONFORMANCE.md"
		log critest-containerd "recorded e2e/results/critest-containerd.junit.xml and updated e2e/CONFORMANCE.md"
	fi
	local totals
	totals=$(tail -n 1 "$WORK/critest.out")
	cleanup
	trap - EXIT
	# critest.sh's totals again, so they stay the last line after cleanup logs.
	echo "$totals"
	return "$status"
}

main "$@"
