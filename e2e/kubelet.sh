#!/usr/bin/env bash
# A real kubelet (v1.37.2, standalone: no API server, static pods) on a
# throw-away CRI runtime, and checks of what it makes the runtime do.
#
#   e2e/kubelet.sh [--runtime corral|containerd] [--cri-stats] [--keep-logs]
#   e2e/kubelet.sh --build-only        # only build/cache the kubelet binary
#
# --cri-stats turns on kubelet's PodAndContainerStatsFromCRI feature gate: pod
# CPU, memory and network in /stats/summary then come from the runtime's
# ListPodSandboxStats instead of kubelet's cAdvisor, and /metrics/cadvisor from
# its ListPodSandboxMetrics; both are checked too.
#
# Builds kubelet once from the Go module proxy (e2e/kubelet/build.sh; cached in
# ${CORRAL_TOOLS:-/var/cache/corral-tools}), starts the runtime (corral: bridge
# ckube0, 10.240.0.0/16, cgroup root /corral-kube; containerd:
# e2e/containerd/start.sh), the local test registry and its images, then
# kubelet with e2e/kubelet/kubelet-config.yaml.in, and drops the static pods of
# e2e/kubelet/manifests/ into its staticPodPath:
#   web       two containers, one pod network, HTTP readiness + exec liveness probes
#   hostport  127.0.0.1:31080 -> the pod's :8080
#   crash     exits 3; kubelet restarts it
#   oom       outgrows a 24 MiB limit; kubelet must say OOMKilled
# The checks are in e2e/kubelet/checks.sh. On exit, always: pods removed,
# kubelet and runtime stopped, mounts, cgroups, links, symlinks and sysctls
# restored; anything left behind fails the run.
#
# Everything lives in /tmp/corral-kubelet-XXXXXX; its logs/ (kubelet.log, the
# runtime's log, /pods and /stats snapshots) are kept when the run fails or with
# --keep-logs. Env: CORRAL_BIN (default: cargo build -p corral), CRICTL_BIN,
# CORRAL_TOOLS, KUBELET_VERBOSITY (default 2).
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/lib/common.sh
source "$E2E_DIR/lib/common.sh"
# shellcheck source=e2e/lib/registry.sh
source "$E2E_DIR/lib/registry.sh"
# shellcheck source=e2e/kubelet/build.sh
source "$E2E_DIR/kubelet/build.sh"
# shellcheck source=e2e/kubelet/runtime.sh
source "$E2E_DIR/kubelet/runtime.sh"
# shellcheck source=e2e/kubelet/node.sh
source "$E2E_DIR/kubelet/node.sh"
# shellcheck source=e2e/kubelet/checks.sh
source "$E2E_DIR/kubelet/checks.sh"

RUNTIME=corral
KEEP_LOGS=0
KUBE_CRI_STATS=0
BUILD_ONLY=0
PASSED=()
FAILED=()
LEAKS=()

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

parse_args() {
	while (($#)); do
		case $1 in
		--runtime) RUNTIME=${2:?--runtime needs corral or containerd} && shift ;;
		--keep-logs) KEEP_LOGS=1 ;;
		--cri-stats) KUBE_CRI_STATS=1 ;;
		--build-only) BUILD_ONLY=1 ;;
		-h | --help) usage ;;
		*) log kubelet "unknown option $1" && usage ;;
		esac
		shift
	done
	[[ $RUNTIME == corral || $RUNTIME == containerd ]] || usage
	MODE="runtime $RUNTIME"
	if ((KUBE_CRI_STATS)); then MODE+=", --cri-stats"; fi
}

# check NAME FUNCTION : run one check, record and print its outcome.
check() {
	local name=$1 started=$SECONDS
	shift
	if "$@"; then
		PASSED+=("$name")
		log kubelet "PASS $name ($((SECONDS - started)) s)"
	else
		FAILED+=("$name")
		log kubelet "FAIL $name ($((SECONDS - started)) s)"
	fi
}

# snapshot NAME : kubelet's /pods and /stats/summary into the logs.
snapshot() {
	curl -fsS --max-time 5 "http://127.0.0.1:$KUBE_READONLY_PORT/pods" >"$WORK/logs/pods-$1.json" 2>/dev/null || true
	curl -fsS --max-time 10 "http://127.0.0.1:$KUBE_READONLY_PORT/stats/summary" >"$WORK/logs/stats-$1.json" 2>/dev/null || true
}

# runtime_leak_check : after every pod was removed through CRI, the runtime
# must hold no pod, container or address.
runtime_leak_check() {
	local pods ctrs ips
	pods=$("${CRICTL_CMD[@]}" pods -q 2>/dev/null | tr '\n' ' ')
	ctrs=$("${CRICTL_CMD[@]}" ps -aq 2>/dev/null | tr '\n' ' ')
	ips=$(find "$RUNTIME_IPAM_DIR" -type f -name '[0-9]*.[0-9]*.[0-9]*.[0-9]*' 2>/dev/null | tr '\n' ' ')
	[[ -z ${pods// /} ]] || LEAKS+=("pods after rmp -fa: $pods")
	[[ -z ${ctrs// /} ]] || LEAKS+=("containers after rmp -fa: $ctrs")
	[[ -z ${ips// /} ]] || LEAKS+=("IPAM records: $ips")
	if [[ $RUNTIME == corral ]]; then
		local veths
		veths=$(ip -o link show master "$KUBE_CORRAL_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | tr '\n' ' ')
		[[ -z ${veths// /} ]] || LEAKS+=("veths on $KUBE_CORRAL_BRIDGE: $veths")
		if nft list table ip "corral_$KUBE_CORRAL_BRIDGE" 2>/dev/null | grep 'comment "' >/dev/null; then
			LEAKS+=("hostPort elements in nft table corral_$KUBE_CORRAL_BRIDGE")
		fi
	fi
}

# cleanup : the EXIT trap. Order matters: kubelet stops its pods, then stops;
# what is left goes through CRI (so the network is torn down by the runtime);
# then the runtime stops; then the host bits kubelet changed are undone.
cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	[[ -n ${WORK:-} && -d $WORK ]] || exit "$rc"
	log kubelet "cleaning up"
	snapshot final
	node_drain
	node_stop
	if [[ ${#CRICTL_CMD[@]} -gt 0 ]] && "${CRICTL_CMD[@]}" --timeout 5s version >/dev/null 2>&1; then
		"${CRICTL_CMD[@]}" --timeout 120s rmp -fa >/dev/null 2>&1 || log kubelet "warning: crictl rmp -fa failed"
		runtime_leak_check
	fi
	"runtime_${RUNTIME}_stop"
	node_cleanup_host
	[[ -n ${REGISTRY_DIR:-} ]] && registry_stop "$REGISTRY_DIR"
	local left
	left=$(awk -v prefix="$WORK/" 'index($5, prefix) == 1 { print $5 }' /proc/self/mountinfo)
	[[ -z $left ]] || LEAKS+=("mounts: $left")
	if ((${#LEAKS[@]})); then
		log kubelet "LEFT BEHIND (removed where possible):"
		printf '    %s\n' "${LEAKS[@]}" >&2
		((rc == 0)) && rc=1
	fi
	if ((rc != 0 || KEEP_LOGS)); then
		find "$WORK" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf --one-file-system {} +
		log kubelet "logs kept in $WORK/logs"
	else
		rm -rf --one-file-system "$WORK"
	fi
	exit "$rc"
}

main() {
	parse_args "$@"
	local started=$SECONDS
	KUBELET_BIN=$(kubelet_ensure)
	((BUILD_ONLY)) && return 0
	for tool in jq curl envsubst nft ss; do
		command -v "$tool" >/dev/null || die kubelet "$tool not found" || return
	done

	WORK=$(mktemp -d /tmp/corral-kubelet-XXXXXX)
	KUBE_DIR=$WORK/kubelet
	mkdir -p "$WORK/logs" "$KUBE_DIR"
	CRICTL_CMD=()
	# crictl reads /etc/crictl.yaml unless told otherwise: every option comes from flags.
	export CRI_CONFIG_FILE=$WORK/crictl.yaml
	: >"$CRI_CONFIG_FILE"
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	log kubelet "run $WORK: $MODE"

	node_preflight
	REGISTRY_DIR=$WORK/registry
	registry_start "$REGISTRY_DIR" >/dev/null
	"$E2E_DIR/images/build.sh" >"$WORK/logs/images.log" 2>&1 || {
		tail -n 20 "$WORK/logs/images.log" >&2
		die kubelet "e2e/images/build.sh failed"
	}
	"runtime_${RUNTIME}_start"
	CGROUP_DRIVER=$(runtime_cgroup_driver)
	node_write_config
	node_start

	local setup_done=$SECONDS
	# Atomically (kubelet skips dot files): a half-written manifest is an error in its log.
	local manifest
	for manifest in "$E2E_DIR"/kubelet/manifests/*.yaml; do
		cp "$manifest" "$KUBE_DIR/manifests/.${manifest##*/}"
		mv "$KUBE_DIR/manifests/.${manifest##*/}" "$KUBE_DIR/manifests/${manifest##*/}"
	done
	check "web: two containers, shared network, probes pass" check_web
	check "hostport: 127.0.0.1:31080 reaches the pod" check_hostport
	check "oom: OOMKilled, exit 137" check_oom
	check "crash: restarts counted, attempts kept" check_crash
	check "logs: CRI files under podLogsDir, crictl logs" check_logs
	check "stats: /stats/summary has the runtime's numbers" check_stats
	# containerd 1.6 has no metrics RPCs: its kubelet serves an empty /metrics/cadvisor.
	if ((KUBE_CRI_STATS)) && [[ $RUNTIME == corral ]]; then
		check "metrics: /metrics/cadvisor from the runtime's ListPodSandboxMetrics" check_metrics
	fi
	snapshot running
	check "removal: manifest gone -> nothing left" check_removal
	check "kubelet log: no repeated errors" check_log_errors "$E2E_DIR/kubelet/known-log-errors.txt" "$RUNTIME"

	log kubelet "$MODE: ${#PASSED[@]} passed, ${#FAILED[@]} failed; setup $((setup_done - started)) s, checks $((SECONDS - setup_done)) s"
	((${#FAILED[@]} == 0))
}

main "$@"
