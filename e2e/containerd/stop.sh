#!/usr/bin/env bash
# Stop the throw-away containerd started by start.sh DIR and remove everything
# it made: pods (through CRI first, so CNI tears the network down), leftover
# runc containers and shims, mounts and netns under DIR, the cni-ctd0 bridge,
# the portmap plugin's NAT chains if it created them, and the state dirs.
#
#   e2e/containerd/stop.sh DIR [--purge]
#
# Keeps DIR/containerd.log and DIR/config.toml for post-mortems unless --purge.
# Safe to run twice, and after a crash of containerd. Touches only what DIR's
# containerd made: processes are found by its socket path, mounts by the DIR
# prefix, network objects by the names reserved in env.sh.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/lib/common.sh
source "$HERE/../lib/common.sh"
# shellcheck source=e2e/containerd/env.sh
source "$HERE/env.sh"

# remove_pods DIR : through CRI, so that containerd runs CNI DEL for each pod.
remove_pods() {
	local dir=$1
	local -a crictl=("$CRICTL" --config "$dir/crictl.yaml")
	local pods
	pods=$("${crictl[@]}" pods -q 2>/dev/null) || return 0
	[[ -z $pods ]] && return 0
	log containerd "removing $(wc -w <<<"$pods") pod(s)"
	"${crictl[@]}" --timeout 120s rmp -fa >/dev/null 2>&1 || log containerd "warning: crictl rmp -fa failed; cleaning up by hand"
}

# remove_cgroups DIR IDS... : runc puts cgroupfs cgroups at
# /sys/fs/cgroup/<controller>/k8s.io/<id>. Remove those of our containers that
# survived, then the k8s.io parents if start.sh did not find them already there
# (DIR/cgroup-parent.ours) and they are empty (rmdir refuses otherwise).
remove_cgroups() {
	local dir=$1
	shift
	local id cg
	for id in "$@"; do
		for cg in /sys/fs/cgroup/*/k8s.io/"$id"; do
			[[ -d $cg ]] && rmdir "$cg" 2>/dev/null
		done
	done
	if [[ -f $dir/cgroup-parent.ours ]]; then
		for cg in /sys/fs/cgroup/*/k8s.io; do
			[[ -d $cg ]] && rmdir "$cg" 2>/dev/null
		done
		rm -f "$dir/cgroup-parent.ours"
	fi
	return 0
}

# remove_runc_leftovers DIR : containers runc still knows under our runc root
# (only when containerd died without cleaning up).
remove_runc_leftovers() {
	local dir=$1 root id
	for root in "$dir"/runc/*/; do
		[[ -d $root ]] || continue
		for id in $("$RUNC_BIN" --root "$root" list -q 2>/dev/null); do
			log containerd "deleting leftover runc container $id"
			"$RUNC_BIN" --root "$root" delete -f "$id" >/dev/null 2>&1 || true
		done
	done
}

# our_shims DIR : pids of containerd-shim processes serving our containerd
# (their command line names our socket).
our_shims() {
	local dir=$1 cmdline pid
	for pid in /proc/[0-9]*; do
		pid=${pid#/proc/}
		cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || continue
		[[ $cmdline == *containerd-shim* && $cmdline == *"-address $dir/containerd.sock "* ]] && echo "$pid"
	done
}

stop_shims() {
	local dir=$1 pid
	for pid in $(our_shims "$dir"); do
		log containerd "stopping leftover shim pid $pid"
		stop_pid "$pid" "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null || echo x)")" 5
	done
}


# remove_bridge DIR : the CNI bridge plugin created cni-ctd0 for our pods.
remove_bridge() {
	local dir=$1
	[[ -f $dir/bridge.ours ]] || return 0
	if ip link show "$CTD_BRIDGE" >/dev/null 2>&1; then
		ip link delete "$CTD_BRIDGE" && log containerd "deleted bridge $CTD_BRIDGE"
	fi
	rm -f "$dir/bridge.ours"
}

# nat_rule_numbers CHAIN AWK_CONDITION : numbers of CHAIN's nat rules matching
# the condition on `iptables -L -n` columns ($2 target, $5 source, $6
# destination, $0 the line with its comment), highest first so deleting one
# keeps the others' numbers valid. (Rule numbers, not `iptables -S` text:
# comments with quotes do not survive a round trip through the shell.)
nat_rule_numbers() {
	iptables -t nat -L "$1" -n --line-numbers 2>/dev/null | awk "NR > 2 && ($2) { print \$1 }" | sort -rn
}

# remove_nat_rules DIR : CNI DEL removes each pod's rules, unless containerd
# died first; and the portmap plugin leaves its shared CNI-HOSTPORT-* chains
# behind. So: delete every nat rule that names our CNI network (in its
# comment) or our subnet, then the per-pod chains those rules jumped to, then
# the CNI-HOSTPORT-* chains if start.sh saw none (DIR/nat-chains.before) and
# nobody's port mapping is left in them. Other users' rules in shared chains
# are never touched.
remove_nat_rules() {
	local dir=$1 chain parent number target candidate
	command -v iptables >/dev/null || return 0
	local prefix=${CTD_SUBNET%%.0.0/16}.
	local ours="index(\$0, \"name: \\\"$CTD_NETWORK_NAME\\\"\") || index(\$5, \"$prefix\") == 1 || index(\$6, \"$prefix\") == 1 || index(\$0, \"to:$prefix\")"
	local -A pod_chains=()
	for chain in PREROUTING INPUT OUTPUT POSTROUTING $(iptables -t nat -S 2>/dev/null | awk '$1 == "-N" { print $2 }'); do
		for number in $(nat_rule_numbers "$chain" "$ours"); do
			target=$(iptables -t nat -L "$chain" -n --line-numbers | awk -v n="$number" '$1 == n { print $2 }')
			iptables -t nat -D "$chain" "$number" && log containerd "removed leftover nat rule $chain #$number ($CTD_NETWORK_NAME)"
			# A per-pod chain (CNI-<hash>, CNI-DN-<hash>) holding or receiving our rules is ours.
			for candidate in "$chain" "$target"; do
				[[ $candidate == CNI-* && $candidate != CNI-HOSTPORT-* ]] && pod_chains[$candidate]=1
			done
		done
	done
	for chain in "${!pod_chains[@]}"; do
		for parent in PREROUTING INPUT OUTPUT POSTROUTING $(iptables -t nat -S 2>/dev/null | awk '$1 == "-N" { print $2 }'); do
			for number in $(nat_rule_numbers "$parent" "\$2 == \"$chain\""); do
				iptables -t nat -D "$parent" "$number"
			done
		done
		iptables -t nat -F "$chain" 2>/dev/null && iptables -t nat -X "$chain" && log containerd "removed leftover nat chain $chain"
	done
	if iptables -t nat -S 2>/dev/null | grep -q -- '-N CNI-DN-'; then
		return 0 # someone still has port mappings: the shared chains stay
	fi
	for chain in CNI-HOSTPORT-DNAT CNI-HOSTPORT-SETMARK CNI-HOSTPORT-MASQ CNI-HOSTPORT-SNAT; do
		iptables -t nat -S "$chain" >/dev/null 2>&1 || continue
		grep -qx -- "$chain" "$dir/nat-chains.before" 2>/dev/null && continue
		for parent in PREROUTING INPUT OUTPUT POSTROUTING; do
			for number in $(nat_rule_numbers "$parent" "\$2 == \"$chain\""); do
				iptables -t nat -D "$parent" "$number"
			done
		done
		iptables -t nat -F "$chain" && iptables -t nat -X "$chain" && log containerd "removed nat chain $chain (created by our portmap)"
	done
}

main() {
	local dir=${1:?usage: stop.sh DIR [--purge]} purge=${2:-}
	[[ -d $dir ]] || return 0
	dir=$(cd "$dir" && pwd)

	local pid="" ids=()
	[[ -f $dir/containerd.pid ]] && pid=$(<"$dir/containerd.pid")
	if pid_is_running "$pid" containerd; then
		# shellcheck disable=SC2207
		ids=($("$CRICTL" --config "$dir/crictl.yaml" ps -aq 2>/dev/null) $("$CRICTL" --config "$dir/crictl.yaml" pods -q 2>/dev/null))
		remove_pods "$dir"
		stop_pid "$pid" containerd 20
		log containerd "stopped pid $pid"
	fi
	rm -f "$dir/containerd.pid"
	remove_runc_leftovers "$dir"
	stop_shims "$dir"
	unmount_under containerd "$dir"
	remove_cgroups "$dir" "${ids[@]}"
	remove_bridge "$dir"
	remove_nat_rules "$dir"

	rm -rf --one-file-system "$dir"/{root,state,tmp,runc,cni,opt,certs.d} "$dir"/containerd.sock* "$dir/crictl.yaml"
	if [[ $purge == --purge ]]; then
		rm -rf --one-file-system "$dir"
	fi
	local left
	left=$(awk -v prefix="$dir/" 'index($5, prefix) == 1 { print $5 }' /proc/self/mountinfo)
	[[ -z $left ]] || log containerd "warning: mounts still under $dir: $left"
	return 0
}

main "$@"
