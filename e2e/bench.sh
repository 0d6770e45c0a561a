#!/usr/bin/env bash
# corral vs containerd on this machine, side by side: starts a throw-away corral (release
# build) and a throw-away containerd (e2e/containerd/start.sh), runs every benchmark
# scenario against each in turn (only one runtime is up at a time), stops both, and writes
# latest.json, latest.md and full_cycle.svg (see e2e/src/bench/ for what is measured).
#
#   e2e/bench.sh                full run, results to e2e/results/ (~20-40 min on 2 cores)
#   e2e/bench.sh --smoke        N=3, 5 pods, no 100/300-pod rows, debug builds, results to a
#                               temp dir: checks that the tool works (< 2 min)
#   e2e/bench.sh --profile      corral only: its step spans (--log-span-timings), then the
#                               same under strace: writes corral-profile.md (where
#                               corral's time goes)
#   e2e/bench.sh --out-dir DIR  write the results to DIR
#
# Env: CORRAL_BIN, BENCH_BIN (default: built here), CORRAL_LOG_LEVEL (corral's --log-level,
# default info), BENCH_KEEP=1 keeps the work dir, BENCH_ARGS (more `bench run` flags).
# Exits non-zero only when the tool fails (a daemon does not start, an RPC fails), never
# because of the numbers. Refuses to run if its bridge, CIDR, cgroup or nft table is in use.
#
# Reserved for this script on the shared machine: corral's bridge cbench0, pod CIDR
# 10.230.0.0/16, cgroup root /corral-bench, nft table corral_cbench0, work dirs
# /tmp/corral-bench-*. containerd uses cni-ctd0 / 10.89.0.0/16 (e2e/containerd/env.sh).
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$E2E_DIR/.." && pwd)
# shellcheck source=e2e/lib/common.sh
source "$E2E_DIR/lib/common.sh"
# shellcheck source=e2e/lib/registry.sh
source "$E2E_DIR/lib/registry.sh"
# shellcheck source=e2e/containerd/env.sh
source "$E2E_DIR/containerd/env.sh" # CRICTL, REGISTRY_ADDR, CTD_BRIDGE, CTD_SUBNET

BRIDGE=cbench0
POD_CIDR=10.230.0.0/16
CGROUP_ROOT=/corral-bench
NFT_TABLE=corral_${BRIDGE}
IMAGE=$REGISTRY_ADDR/busybox:latest
PULL_IMAGE=$REGISTRY_ADDR/bench/three-layers:v1
SANDBOX_IMAGE=registry.k8s.io/pause:3.9 # containerd's, pulled outside the timing

mode=full
corral_args=() # more flags of `corral serve`
out_dir=$ROOT/e2e/results
while [[ $# -gt 0 ]]; do
	case $1 in
	--smoke) mode=smoke out_dir= ;;
	--profile) mode=profile ;;
	--out-dir)
		out_dir=${2:?--out-dir needs a directory}
		shift
		;;
	*)
		echo "usage: $0 [--smoke | --profile] [--out-dir DIR]" >&2
		exit 2
		;;
	esac
	shift
done
[[ $(id -u) == 0 ]] || die bench "must run as root (it starts container runtimes)" || exit 1

profile=release
case $mode in
smoke)
	# Small enough to finish in well under 2 minutes; the numbers mean nothing.
	run_args=(--iterations 3 --warmup 1 --pull-warmup 0 --pull-iterations 1 --concurrent-pods 5 --concurrent-rounds 1
		--scale-levels 3 --memory-levels 3 --scale-samples 3 --settle-ms 300)
	profile=debug
	;;
profile)
	run_args=(--scenarios full_cycle --iterations 20 --warmup 2 --concurrent-rounds 0 --scale-levels --memory-levels
		--settle-ms 100)
	;;
*) run_args=() ;;
esac
# The syscalls that block: where a pod cycle waits (see e2e/bench_profile.py).
STRACE_SYSCALLS=fsync,fdatasync,syncfs,write,sendto,sendmsg,clone,clone3,execve,wait4,mount,umount2,unshare,setns
STRACE_SYSCALLS+=,pivot_root,clock_nanosleep,mkdir,rmdir,unlink,rename
# shellcheck disable=SC2206 # BENCH_ARGS is a list of flags
run_args+=(${BENCH_ARGS:-})

# in_use : why the names reserved for this script cannot be used now (empty: free).
in_use() {
	ip link show "$BRIDGE" >/dev/null 2>&1 && echo "bridge $BRIDGE exists"
	# e2e/containerd/start.sh would refuse too, but only after the whole corral run.
	[[ $mode != profile ]] && ip link show "$CTD_BRIDGE" >/dev/null 2>&1 &&
		echo "containerd's bridge $CTD_BRIDGE exists (another throw-away containerd runs)"
	local routed
	routed=$(ip -4 route show root "$POD_CIDR" 2>/dev/null; ip -4 addr show to "$POD_CIDR" 2>/dev/null)
	[[ -n $routed ]] && echo "$POD_CIDR is in use: $routed"
	nft list table ip "$NFT_TABLE" >/dev/null 2>&1 && echo "nft table $NFT_TABLE exists"
	local cg
	for cg in /sys/fs/cgroup/*/"${CGROUP_ROOT#/}"; do
		[[ -d $cg ]] && find "$cg" -mindepth 1 -type d | grep -q . && echo "cgroup $cg has children"
	done
	return 0
}

work=
corral_pid=
wrapper_pid=
bench_pid=

build() {
	if [[ -z ${CORRAL_BIN:-} || -z ${BENCH_BIN:-} ]]; then
		local flags=(-q)
		[[ $profile == release ]] && flags+=(--release)
		log bench "building corral and the benchmark ($profile)"
		(cd "$ROOT" && cargo build "${flags[@]}" -p corral -p corral-e2e --bin corral --bin bench)
	fi
	CORRAL_BIN=${CORRAL_BIN:-$ROOT/target/$profile/corral}
	BENCH_BIN=${BENCH_BIN:-$ROOT/target/$profile/bench}
}

# run_bench ARGS... : `bench run` in the background, so that a signal to this script is
# passed on to it (it then removes its pods) instead of waiting for the whole run.
run_bench() {
	"$BENCH_BIN" run "$@" "${run_args[@]}" &
	bench_pid=$!
	local rc=0
	wait "$bench_pid" || rc=$?
	bench_pid=
	return "$rc"
}

# start_corral [WRAPPER...] : corral serve, optionally under a wrapper (strace) that runs
# it as its only child.
start_corral() {
	local dir=$work/corral
	mkdir -p "$dir"
	# setsid: a Ctrl-C in the terminal must not kill corral before the clean-up removed its pods.
	setsid "$@" "$CORRAL_BIN" serve --socket "$dir/corral.sock" --root "$dir/root" --state-dir "$dir/state" \
		--cgroup-root "$CGROUP_ROOT" --bridge "$BRIDGE" --pod-cidr "$POD_CIDR" \
		--log-level "${CORRAL_LOG_LEVEL:-info}" "${corral_args[@]}" >>"$dir/corral.log" 2>&1 </dev/null &
	corral_pid=$!
	if [[ $# -gt 0 ]]; then
		wrapper_pid=$corral_pid
		wait_until 10 pgrep -P "$wrapper_pid" >/dev/null || die bench "corral did not start under $1" || return
		corral_pid=$(pgrep -P "$wrapper_pid")
	fi
	if ! wait_until 20 "$CRICTL" --runtime-endpoint "unix://$dir/corral.sock" --timeout 2s version >/dev/null 2>&1; then
		tail -n 20 "$dir/corral.log" >&2
		die bench "corral did not answer within 20 s" || return
	fi
	log bench "corral started (pid $corral_pid)"
}

# stop_corral : pods first (through CRI, so the network is torn down), then the daemon,
# then whatever a crash could have left: processes in our cgroups, mounts under the work
# dir, veths on our bridge, the bridge, the nft table, the cgroups.
stop_corral() {
	local dir=$work/corral
	[[ -d $dir ]] || return 0
	if [[ -n $corral_pid ]] && kill -0 "$corral_pid" 2>/dev/null; then
		"$CRICTL" --runtime-endpoint "unix://$dir/corral.sock" --timeout 120s rmp -fa >/dev/null 2>&1 ||
			log bench "warning: removing corral's pods failed; cleaning up by hand"
		stop_pid "$corral_pid" "$(basename "$CORRAL_BIN")" 20
	fi
	corral_pid=
	if [[ -n $wrapper_pid ]]; then
		wait "$wrapper_pid" 2>/dev/null # strace ends with the last process it traced
		wrapper_pid=
	fi
	local cg
	for cg in /sys/fs/cgroup/*/"${CGROUP_ROOT#/}"; do
		[[ -d $cg ]] || continue
		find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r pid; do
			kill -KILL "$pid" 2>/dev/null || true
		done
	done
	unmount_under bench "$dir"
	if ip link show "$BRIDGE" >/dev/null 2>&1; then
		local veth
		for veth in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
			ip link delete "$veth" 2>/dev/null || true
		done
		ip link delete "$BRIDGE"
	fi
	nft delete table ip "$NFT_TABLE" 2>/dev/null || true
	for cg in /sys/fs/cgroup/*/"${CGROUP_ROOT#/}"; do
		[[ -d $cg ]] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	local left=""
	for cg in /sys/fs/cgroup/*/"${CGROUP_ROOT#/}"; do [[ -d $cg ]] && left+=" $cg"; done
	[[ -z $left ]] || log bench "warning: cgroups left:$left"
	return 0
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	if [[ -n $bench_pid ]]; then
		kill -INT "$bench_pid" 2>/dev/null
		wait "$bench_pid" 2>/dev/null
	fi
	if [[ -n $work ]]; then
		stop_corral
		"$E2E_DIR/containerd/stop.sh" "$work/containerd" --purge
		registry_stop "$work/registry"
		if [[ ${BENCH_KEEP:-0} == 1 || $rc != 0 ]]; then
			log bench "work dir kept: $work"
		else
			rm -rf --one-file-system "$work"
		fi
	fi
	exit "$rc"
}

# bench_corral ARGS... : `bench run` against a fresh corral; results in $work/corral.json.
bench_corral() {
	start_corral "$@"
	run_bench --endpoint "unix://$work/corral/corral.sock" --name corral --kind corral --daemon-pid "$corral_pid" \
		--image "$IMAGE" "${pull_args[@]}" --image-store "$work/corral/root/images" \
		--log-root "$work/logs/corral" --out "$work/corral.json"
	stop_corral
}

# bench_containerd : the same against a fresh containerd; results in $work/containerd.json.
bench_containerd() {
	local endpoint
	endpoint=$("$E2E_DIR/containerd/start.sh" "$work/containerd")
	run_bench --endpoint "$endpoint" --name containerd --kind containerd \
		--daemon-pid "$(<"$work/containerd/containerd.pid")" --image "$IMAGE" --pre-pull "$SANDBOX_IMAGE" \
		"${pull_args[@]}" --image-store "$work/containerd/root" \
		--log-root "$work/logs/containerd" --out "$work/containerd.json"
	"$E2E_DIR/containerd/stop.sh" "$work/containerd" --purge
}

main() {
	local busy
	busy=$(in_use)
	[[ -z $busy ]] || die bench "refusing to run: $busy" || exit 1
	build
	work=$(mktemp -d /tmp/corral-bench-XXXXXX)
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	log bench "work dir $work; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
	[[ -n $out_dir ]] || out_dir=$work/results
	mkdir -p "$out_dir"

	registry_start "$work/registry" >/dev/null
	"$E2E_DIR/images/build.sh" >/dev/null
	pull_args=()
	if [[ $mode == profile ]]; then
		# First corral's own step spans (no tracer in the way), then strace's view.
		corral_args=(--log-span-timings)
		CORRAL_LOG_LEVEL=info,corral=debug,corral_runtime=debug,corral_net=debug bench_corral
		mv "$work/corral/corral.log" "$work/corral-spans.log"
		corral_args=()
		bench_corral strace -f --seccomp-bpf -T -tt -y -e trace="$STRACE_SYSCALLS" -o "$work/corral.strace"
		{
			python3 "$E2E_DIR/bench_profile.py" "$work/corral.strace" "$work/corral.json" "$work/corral/corral.log"
			echo
			python3 "$E2E_DIR/bench_spans.py" "$work/corral-spans.log"
		} >"$out_dir/corral-profile.md"
		log bench "profile in $out_dir/corral-profile.md"
		return
	fi
	# The pull image's layers, which must be gone from a store after RemoveImage.
	local accept='application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
	local layers=() digest
	mapfile -t layers < <(curl -fsS -H "Accept: $accept" "http://$REGISTRY_ADDR/v2/bench/three-layers/manifests/v1" | jq -r '.layers[].digest')
	[[ ${#layers[@]} -gt 0 ]] || die bench "cannot read the layers of $PULL_IMAGE" || exit 1
	pull_args=(--pull-image "$PULL_IMAGE")
	for digest in "${layers[@]}"; do pull_args+=(--pull-layer "$digest"); done

	# containerd first: its bridge is shared with other throw-away containerds on this
	# machine, and was checked free just now.
	bench_containerd
	bench_corral
	"$BENCH_BIN" report --runtime "$work/corral.json" --baseline "$work/containerd.json" --out-dir "$out_dir"
	log bench "results in $out_dir (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
	if [[ $mode == smoke ]]; then
		# The tool works if every row of the corral run has its containerd counterpart.
		jq -e '([.runtime.latency[].key] - [.ratios[].key] | length == 0) and (.ratios | length > 20)' \
			"$out_dir/latest.json" >/dev/null || die bench "rows without a ratio in $out_dir/latest.json" || exit 1
	fi
}

main
