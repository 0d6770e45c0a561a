#!/usr/bin/env bash
# Run critest (cri-tools' CRI validation suite, v1.37.0) against any CRI endpoint.
#
#   e2e/critest.sh --runtime-endpoint unix:///run/x.sock [options] [-- critest flags...]
#
# Options (environment variable in brackets):
#   --runtime-endpoint EP   CRI runtime socket; without it, critest runs against a
#                           throw-away corral (e2e/run.sh conformance) [CRITEST_RUNTIME_ENDPOINT]
#   --image-endpoint EP     image service socket (default: runtime) [CRITEST_IMAGE_ENDPOINT]
#   --results DIR           where junit.xml, critest.log, failures.txt go
#                           (default e2e/results/critest)         [CRITEST_RESULTS]
#   --known-failures FILE   specs allowed to fail, "<spec> # <reason>" per line
#                           (default e2e/critest-known-failures.txt)
#   --parallel N            ginkgo nodes (default 2)              [CRITEST_PARALLEL]
#   --focus REGEX / --skip REGEX   narrow the run (ginkgo regexes)
#   --timeout DURATION      whole-suite limit (default 50m)
#   --build-only            only build/cache critest and ginkgo, then exit
#
# The endpoint must pull images the way the local test registry serves them:
# registry.k8s.io, gcr.io and k8s.gcr.io mirrored to it (see
# e2e/images/corral-mirrors.toml and e2e/containerd/start.sh). Specs in
# e2e/critest-skipped.txt (images that cannot be built offline) are skipped.
#
# Prints "N passed, N failed, N skipped" as its last line; exits 1 when a spec
# failed that the known-failures list does not name, 2 on bad usage or when
# critest produced no report.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/lib/critest-build.sh
source "$HERE/lib/critest-build.sh"

RUNTIME_ENDPOINT=${CRITEST_RUNTIME_ENDPOINT:-}
IMAGE_ENDPOINT=${CRITEST_IMAGE_ENDPOINT:-}
RESULTS=${CRITEST_RESULTS:-$HERE/results/critest}
KNOWN_FAILURES=$HERE/critest-known-failures.txt
SKIPPED=$HERE/critest-skipped.txt
PARALLEL=${CRITEST_PARALLEL:-2}
FOCUS=""
SKIP=""
TIMEOUT=50m
BUILD_ONLY=0
EXTRA=()

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

parse_args() {
	while (($#)); do
		case $1 in
		--runtime-endpoint) RUNTIME_ENDPOINT=${2:?} && shift ;;
		--image-endpoint) IMAGE_ENDPOINT=${2:?} && shift ;;
		--results) RESULTS=${2:?} && shift ;;
		--known-failures) KNOWN_FAILURES=${2:?} && shift ;;
		--parallel) PARALLEL=${2:?} && shift ;;
		--focus) FOCUS=${2:?} && shift ;;
		--skip) SKIP=${2:?} && shift ;;
		--timeout) TIMEOUT=${2:?} && shift ;;
		--build-only) BUILD_ONLY=1 ;;
		--) shift && EXTRA=("$@") && break ;;
		-h | --help) usage ;;
		*) log critest "unknown option $1" && usage ;;
		esac
		shift
	done
}

# SysV shared-memory segment ids, one per line. critest's HostIpc specs run
# `ipcmk -M 1048576` on the host and never remove the segment.
shm_ids() {
	awk 'NR > 1 { print $2 }' /proc/sysvipc/shm | sort
}

# remove_leaked_shm BEFORE_FILE : segments that appeared during the run, have
# critest's size and nobody attached. Anything else is not ours to remove.
remove_leaked_shm() {
	local before=$1 id
	awk 'NR > 1 && $4 == 1048576 && $7 == 0 { print $2 }' /proc/sysvipc/shm | sort | comm -13 "$before" - | while read -r id; do
		ipcrm -m "$id" 2>/dev/null && log critest "removed SysV shm segment $id left by a HostIpc spec"
	done
}

main() {
	parse_args "$@"
	local bindir
	bindir=$(critest_ensure)
	((BUILD_ONLY)) && return 0
	if [[ -z $RUNTIME_ENDPOINT ]]; then
		# No endpoint: a throw-away corral, with the registry and mirrors (e2e/tests/conformance.sh).
		CRITEST_RESULTS=$RESULTS exec "$HERE/run.sh" conformance
	fi
	IMAGE_ENDPOINT=${IMAGE_ENDPOINT:-$RUNTIME_ENDPOINT}

	mkdir -p "$RESULTS"
	RESULTS=$(cd "$RESULTS" && pwd)
	local junit=$RESULTS/junit.xml log_file=$RESULTS/critest.log
	rm -f "$junit" "$log_file" "$RESULTS/failures.txt"
	# critest's temporary host paths (volumes, seccomp profiles, its parallel
	# runner's symlink) go here instead of /tmp, and leave with the results.
	rm -rf "$RESULTS/tmp"
	mkdir -p "$RESULTS/tmp"

	local skip_regex
	skip_regex=$(python3 "$HERE/lib/junit.py" skip-regex "$SKIPPED")
	[[ -n $SKIP ]] && skip_regex=${skip_regex:+$skip_regex|}$SKIP
	local args=(
		-runtime-endpoint "$RUNTIME_ENDPOINT"
		-image-endpoint "$IMAGE_ENDPOINT"
		-parallel "$PARALLEL"
		-ginkgo.junit-report "$junit"
		-ginkgo.no-color
		-ginkgo.timeout "$TIMEOUT"
	)
	[[ -n $skip_regex ]] && args+=(-ginkgo.skip "$skip_regex")
	[[ -n $FOCUS ]] && args+=(-ginkgo.focus "$FOCUS")
	args+=("${EXTRA[@]}")

	shm_ids >"$RESULTS/tmp/shm.before"
	# Also when interrupted: the HostIpc specs' segments outlive critest.
	trap 'remove_leaked_shm "$RESULTS/tmp/shm.before"' EXIT
	trap 'exit 130' INT TERM
	log critest "critest $(critest_binary_version "$bindir/critest") against $RUNTIME_ENDPOINT, $PARALLEL nodes; log: $log_file"
	local started=$SECONDS status=0
	(cd "$RESULTS/tmp" && TMPDIR=$RESULTS/tmp PATH=$bindir:$PATH "$bindir/critest" "${args[@]}") 2>&1 | tee "$log_file" || status=$?
	log critest "critest exited with $status after $((SECONDS - started)) s"
	remove_leaked_shm "$RESULTS/tmp/shm.before"
	trap - EXIT

	if [[ ! -s $junit ]]; then
		log critest "critest wrote no JUnit report ($junit); see $log_file"
		echo "0 passed, 1 failed, 0 skipped"
		return 2
	fi
	python3 "$HERE/lib/junit.py" summary "$junit" --known-failures "$KNOWN_FAILURES" --failures-out "$RESULTS/failures.txt"
}

main "$@"
