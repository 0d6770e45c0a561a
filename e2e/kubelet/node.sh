# shellcheck shell=bash
# The kubelet's side of the node: config, start, stop, and undoing what a
# kubelet changes on the host. Sourced by e2e/kubelet.sh; needs WORK, KUBE_DIR,
# KUBELET_BIN, RUNTIME_ENDPOINT, CRICTL_CMD, LEAKS.
#
# Besides its root dir, a kubelet writes to the host in places no flag moves:
#   - cgroups /kubepods[/burstable|/besteffort]/pod<uid> in every v1 hierarchy
#     (cgroupRoot "/");
#   - /var/lib/kubelet/device-plugins/kubelet.sock (a constant in kubelet);
#   - /var/log/containers/<pod>_<ns>_<container>-<id>.log symlinks;
#   - six sysctls it "fixes" at start (vm.overcommit_memory, vm.panic_on_oom,
#     kernel.panic, kernel.panic_on_oops, kernel.keys.root_maxkeys,
#     kernel.keys.root_maxbytes). protectKernelDefaults would make it exit
#     instead, so the values are saved before and restored after.
# The iptables chains it would add are switched off in the config
# (makeIPTablesUtilChains: false).

KUBE_READONLY_PORT=31255
KUBE_HEALTHZ_PORT=31248
KUBE_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
KUBE_CGROUP_HIERARCHIES=(/sys/fs/cgroup/*/)

# --- host helpers -----------------------------------------------------------


# remove_cgroup_tree PATH : rmdir PATH and everything below it in every
# hierarchy, deepest first. rmdir refuses a cgroup that still has tasks: such a
# cgroup is reported as a leak, never emptied by killing what is inside.
remove_cgroup_tree() {
	local path=$1 h
	for h in "${KUBE_CGROUP_HIERARCHIES[@]}"; do
		[[ -d $h${path#/} ]] || continue
		find "$h${path#/}" -depth -type d -exec rmdir {} \; 2>/dev/null
		if [[ -d $h${path#/} ]]; then
			LEAKS+=("cgroup $h${path#/} (tasks: $(find "$h${path#/}" -name tasks -exec cat {} + 2>/dev/null | tr '\n' ' '))")
		fi
	done
}

# --- before the kubelet starts ------------------------------------------------

# node_preflight : refuse to run where a kubelet already is, or our ports are taken.
node_preflight() {
	local h port
	for h in "${KUBE_CGROUP_HIERARCHIES[@]}"; do
		if [[ -d ${h}kubepods ]]; then
			die kubelet "${h}kubepods exists: another kubelet runs on this host (or a run left it behind)"
			return
		fi
	done
	for port in "$KUBE_READONLY_PORT" "$KUBE_HEALTHZ_PORT" 31080; do
		if [[ -n $(ss -Htln "sport = :$port") ]]; then
			die kubelet "port $port is in use" || return
		fi
	done
	[[ -e /var/lib/kubelet ]] && echo "present" >"$WORK/var-lib-kubelet.before"
	[[ -e /var/log/containers ]] && echo "present" >"$WORK/var-log-containers.before"
	local s
	for s in "${KUBE_SYSCTLS[@]}"; do
		printf '%s=%s\n' "$s" "$(sysctl -n "$s")"
	done >"$WORK/sysctl.before"
	return 0
}

# node_write_config : the KubeletConfiguration from its template.
node_write_config() {
	mkdir -p "$KUBE_DIR/manifests" "$KUBE_DIR/root" "$KUBE_DIR/pod-logs"
	KUBE_DIR=$KUBE_DIR RUNTIME_ENDPOINT=$RUNTIME_ENDPOINT CGROUP_DRIVER=$CGROUP_DRIVER \
		READONLY_PORT=$KUBE_READONLY_PORT HEALTHZ_PORT=$KUBE_HEALTHZ_PORT \
		envsubst <"$E2E_DIR/kubelet/kubelet-config.yaml.in" >"$KUBE_DIR/config.yaml"
	if ((KUBE_CRI_STATS)); then
		printf '%s\n' "# --cri-stats: pod-level stats from the runtime (ListPodSandboxStats)." \
			"featureGates:" "  PodAndContainerStatsFromCRI: true" >>"$KUBE_DIR/config.yaml"
	fi
}

# --- the kubelet ------------------------------------------------------------------

kubelet_healthy() {
	[[ $(curl -fsS --max-time 2 "http://127.0.0.1:$KUBE_HEALTHZ_PORT/healthz" 2>/dev/null) == ok ]]
}

# node_start : kubelet in the background (our child), until /healthz says ok.
node_start() {
	KUBELET_LOG=$WORK/logs/kubelet.log
	# --root-dir and --cert-dir are flags only (no config field).
	# shellcheck disable=SC2153 # KUBELET_BIN is set by e2e/kubelet.sh
	"$KUBELET_BIN" --config "$KUBE_DIR/config.yaml" --root-dir "$KUBE_DIR/root" \
		--cert-dir "$KUBE_DIR/pki" --v="${KUBELET_VERBOSITY:-2}" >>"$KUBELET_LOG" 2>&1 </dev/null &
	KUBELET_PID=$!
	echo "$KUBELET_PID" >"$WORK/kubelet.pid"
	if ! wait_until 60 kubelet_healthy; then
		tail -n 30 "$KUBELET_LOG" >&2
		die kubelet "kubelet did not become healthy within 60 s (log: $KUBELET_LOG)"
		return
	fi
	log kubelet "kubelet $(kubelet_binary_version "$KUBELET_BIN") pid $KUBELET_PID, read-only port 127.0.0.1:$KUBE_READONLY_PORT"
}

# node_drain : remove every manifest and wait until kubelet has stopped every
# container and removed its pod cgroups (it does so for pods that left its config).
node_drain() {
	[[ -n ${KUBELET_PID:-} ]] && pid_is_running "$KUBELET_PID" kubelet || return 0
	rm -f "$KUBE_DIR"/manifests/*.yaml
	local started=$SECONDS
	if wait_until 60 node_drained; then
		log kubelet "kubelet stopped its pods $((SECONDS - started)) s after their manifests left"
	else
		log kubelet "warning: kubelet did not stop every pod within 60 s of its manifests leaving"
	fi
}

# node_drained : no running container, no pod cgroup left.
node_drained() {
	[[ -z $("${CRICTL_CMD[@]}" ps -q 2>/dev/null) ]] &&
		! compgen -G "/sys/fs/cgroup/memory/kubepods/*/pod*" >/dev/null &&
		! compgen -G "/sys/fs/cgroup/memory/kubepods/pod*" >/dev/null
}

node_stop() {
	local pid=${KUBELET_PID:-}
	[[ -z $pid && -f $WORK/kubelet.pid ]] && pid=$(<"$WORK/kubelet.pid")
	stop_pid "$pid" kubelet 15
	KUBELET_PID=
}

# node_cleanup_host : after kubelet and every pod are gone, undo the rest.
node_cleanup_host() {
	unmount_under kubelet "$KUBE_DIR"
	remove_cgroup_tree /kubepods
	# Symlinks kubelet made to our pod logs (and the directory if it made it).
	local link
	for link in /var/log/containers/*.log; do
		[[ -L $link && $(readlink "$link") == "$KUBE_DIR"/* ]] && rm -f "$link"
	done
	if [[ ! -f $WORK/var-log-containers.before && -d /var/log/containers ]]; then
		rmdir /var/log/containers 2>/dev/null || LEAKS+=("/var/log/containers is not empty")
	fi
	# /var/lib/kubelet/device-plugins/kubelet.sock: kubelet's constant path.
	if [[ ! -f $WORK/var-lib-kubelet.before && -d /var/lib/kubelet ]]; then
		rm -rf --one-file-system /var/lib/kubelet
	fi
	if [[ -f $WORK/sysctl.before ]]; then
		local line
		while IFS= read -r line; do
			[[ $(sysctl -n "${line%%=*}") == "${line#*=}" ]] || sysctl -q -w "$line" >/dev/null
		done <"$WORK/sysctl.before"
	fi
}
