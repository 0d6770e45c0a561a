# shellcheck shell=bash
# The CRI runtime under the kubelet: a throw-away corral or containerd. Sourced
# by e2e/kubelet.sh. Each runtime has runtime_<name>_start and
# runtime_<name>_stop; start sets:
#   RUNTIME_ENDPOINT   unix:// socket for kubelet and crictl
#   RUNTIME_LOG        the daemon's log file
#   RUNTIME_IPAM_DIR   where its host-local-style IPAM keeps one file per IP
#   RUNTIME_POD_NET    the pod subnet's prefix, e.g. 10.240. (pod IPs must start with it)
# and CRICTL_CMD=(crictl --runtime-endpoint ... --image-endpoint ...).
# Needs WORK (the run's directory) and E2E_DIR.
# shellcheck disable=SC2034 # the RUNTIME_* variables are read by checks.sh

# Assigned to this script on the shared test machine: no other test uses them.
KUBE_CORRAL_BRIDGE=ckube0
KUBE_CORRAL_CIDR=10.240.0.0/16
KUBE_CORRAL_CGROUP_ROOT=/corral-kube

_set_crictl() {
	local crictl
	crictl=$(crictl_path)
	CRICTL_CMD=("$crictl" --runtime-endpoint "$RUNTIME_ENDPOINT" --image-endpoint "$RUNTIME_ENDPOINT" --timeout 60s)
}

# crictl_path : crictl v1.37 from the tools cache, else the machine's copy.
crictl_path() {
	local c
	for c in "${CRICTL_BIN:-}" "$(corral_tools_dir)/bin/crictl" /work/gotools-cache/bin/crictl "$(command -v crictl || true)"; do
		[[ -n $c && -x $c ]] && {
			printf '%s\n' "$c"
			return 0
		}
	done
	die kubelet "crictl not found: run e2e/setup.sh"
}

# runtime_cgroup_driver : the cgroup driver the runtime reports through the
# RuntimeConfig RPC (`crictl runtime-config`), lower-case as kubelet's config
# wants it. containerd 1.6 does not implement the RPC (kubelet then keeps its
# own setting): the driver start.sh configured (SystemdCgroup = false) is used.
runtime_cgroup_driver() {
	local out
	if out=$("${CRICTL_CMD[@]}" runtime-config 2>&1); then
		case $out in
		*CGROUPFS* | *cgroupfs*) echo cgroupfs ;;
		*SYSTEMD* | *systemd*) echo systemd ;;
		*)
			die kubelet "cannot read the cgroup driver from: $out"
			return
			;;
		esac
	elif [[ $out == *Unimplemented* || $out == *"unknown method"* ]]; then
		log kubelet "the runtime does not implement RuntimeConfig; using the cgroupfs driver it was configured with"
		echo cgroupfs
	else
		die kubelet "crictl runtime-config: $out"
	fi
}

# --- corral -------------------------------------------------------------

runtime_corral_start() {
	local dir=$WORK/corral
	mkdir -p "$dir"
	if ip link show "$KUBE_CORRAL_BRIDGE" >/dev/null 2>&1; then
		die kubelet "bridge $KUBE_CORRAL_BRIDGE already exists: another run is active or left it behind (ip link del $KUBE_CORRAL_BRIDGE)"
		return
	fi
	if [[ -z ${CORRAL_BIN:-} ]]; then
		log kubelet "building corral (cargo build -p corral)"
		(cd "$E2E_DIR/.." && cargo build -q -p corral) || return
		CORRAL_BIN=$E2E_DIR/../target/debug/corral
	fi
	RUNTIME_ENDPOINT=unix://$dir/corral.sock
	RUNTIME_LOG=$WORK/logs/corral.log
	RUNTIME_IPAM_DIR=$dir/root/network
	RUNTIME_POD_NET=${KUBE_CORRAL_CIDR%%.0.0/16}.
	_set_crictl
	# The mirrors send registry.k8s.io to the local test registry, never upstream.
	"$CORRAL_BIN" serve --socket "$dir/corral.sock" --root "$dir/root" --state-dir "$dir/state" \
		--cgroup-root "$KUBE_CORRAL_CGROUP_ROOT" --bridge "$KUBE_CORRAL_BRIDGE" --pod-cidr "$KUBE_CORRAL_CIDR" \
		--config "$E2E_DIR/images/corral-mirrors.toml" --log-level "${CORRAL_LOG_LEVEL:-info}" \
		>>"$RUNTIME_LOG" 2>&1 </dev/null &
	CORRAL_PID=$!
	echo "$CORRAL_PID" >"$dir/corral.pid"
	if ! wait_until 20 "${CRICTL_CMD[@]}" --timeout 2s version >/dev/null 2>&1; then
		tail -n 20 "$RUNTIME_LOG" >&2
		die kubelet "corral did not answer on $RUNTIME_ENDPOINT within 20 s"
		return
	fi
	log kubelet "corral pid $CORRAL_PID on $RUNTIME_ENDPOINT (bridge $KUBE_CORRAL_BRIDGE, $KUBE_CORRAL_CIDR)"
}

# runtime_corral_stop : the pods are gone through CRI already (remove_all_pods);
# corral keeps its bridge and nftables table across restarts by design, so
# they are removed here, with the cgroup root and every mount under the run's
# corral dir.
runtime_corral_stop() {
	local dir=$WORK/corral pid
	[[ -d $dir ]] || return 0
	pid=${CORRAL_PID:-}
	[[ -z $pid && -f $dir/corral.pid ]] && pid=$(<"$dir/corral.pid")
	stop_pid "$pid" corral 15
	# Monitors survive the daemon by design; any left here belong to this run
	# (their command line names its state dir) and mean a container was not removed.
	local monitors
	monitors=$(pgrep -f "monitor $dir/state/" || true)
	if [[ -n $monitors ]]; then
		log kubelet "LEAK: corral monitors still running after all pods were removed: $monitors (killing)"
		LEAKS+=("corral monitors $monitors")
		# shellcheck disable=SC2086
		kill -KILL $monitors 2>/dev/null || true
	fi
	unmount_under kubelet "$dir"
	if ip link show "$KUBE_CORRAL_BRIDGE" >/dev/null 2>&1; then
		ip link delete "$KUBE_CORRAL_BRIDGE"
	fi
	nft delete table ip "corral_$KUBE_CORRAL_BRIDGE" 2>/dev/null || true
	remove_cgroup_tree "$KUBE_CORRAL_CGROUP_ROOT"
}

# --- containerd -----------------------------------------------------------

runtime_containerd_start() {
	local dir=$WORK/containerd
	RUNTIME_ENDPOINT=$("$E2E_DIR/containerd/start.sh" "$dir") || return
	RUNTIME_LOG=$dir/containerd.log
	RUNTIME_IPAM_DIR=$dir/cni/ipam
	RUNTIME_POD_NET=10.89.
	_set_crictl
}

runtime_containerd_stop() {
	local dir=$WORK/containerd
	[[ -d $dir ]] || return 0
	[[ -f $dir/containerd.log ]] && cp "$dir/containerd.log" "$WORK/logs/containerd.log"
	"$E2E_DIR/containerd/stop.sh" "$dir" --purge
}
