# shellcheck shell=bash
# What e2e/kubelet.sh verifies, one function per behaviour. Sourced; needs
# KUBE_DIR, KUBE_READONLY_PORT, CRICTL_CMD, RUNTIME_POD_NET, RUNTIME_IPAM_DIR,
# KUBELET_LOG.
#
# Each check_* function returns non-zero with a `why` line on stderr when the
# behaviour is wrong. Kubelet's view comes from its read-only port (/pods: the
# static pods with their status; /stats/summary), the runtime's from crictl,
# and the host's from /proc, /sys and ip.

# --- kubelet's view ----------------------------------------------------------------

# pod_jq NAME FILTER : FILTER applied to static pod NAME as kubelet's /pods
# shows it (static pods are named <name>-<node name>).
pod_jq() {
	curl -fsS --max-time 5 "http://127.0.0.1:$KUBE_READONLY_PORT/pods" |
		jq -r --arg n "$1" ".items[] | select(.metadata.name == \$n + \"-\" + .spec.nodeName) | $2"
}

# pod_true NAME FILTER : FILTER, a jq boolean on the pod, is true.
pod_true() {
	[[ $(pod_jq "$1" "$2" 2>/dev/null) == true ]]
}

# container_id POD CONTAINER : the runtime's id of the container's current
# instance (kubelet's containerID without the "<runtime>://" prefix).
container_id() {
	local id
	id=$(pod_jq "$1" ".status.containerStatuses[] | select(.name == \"$2\") | .containerID")
	printf '%s\n' "${id#*://}"
}

why() {
	printf '    why: %s\n' "$*" >&2
}

# wait_pod SECONDS NAME FILTER DESCRIPTION : wait until FILTER holds; on
# timeout say what the pod's status is instead.
wait_pod() {
	local seconds=$1 name=$2 filter=$3 what=$4
	if ! wait_until "$seconds" pod_true "$name" "$filter"; then
		why "$name: not $what within $seconds s; status: $(pod_jq "$name" '.status | tojson' 2>/dev/null | head -c 1500)"
		return 1
	fi
}

# pod_ip_ok NAME : the pod IP is set, is in the runtime's pod subnet, and
# podIPs agrees.
pod_ip_ok() {
	local ip ips
	ip=$(pod_jq "$1" .status.podIP)
	ips=$(pod_jq "$1" '[.status.podIPs[]?.ip] | join(",")')
	[[ $ip == "$RUNTIME_POD_NET"* && $ips == "$ip" ]] || {
		why "$1: podIP '$ip', podIPs '$ips', want one address in ${RUNTIME_POD_NET}0.0/16"
		return 1
	}
}

# probes_seen ID : the server's access log shows at least 3 requests of each probe.
probes_seen() {
	local logs
	logs=$("${CRICTL_CMD[@]}" logs "$1" 2>&1)
	(($(grep -c 'url:/ready.html' <<<"$logs") >= 3 && $(grep -c 'url:/alive.html' <<<"$logs") >= 3))
}

# web_stats_ok : /stats/summary has both web containers with non-zero numbers
# (ListContainerStats) and the image filesystem's size and use (ImageFsInfo).
# With --cri-stats also web's pod-level CPU, memory and network
# (ListPodSandboxStats); without it kubelet takes those from its own cAdvisor,
# which tests no runtime.
web_stats_ok() {
	curl -fsS --max-time 10 "http://127.0.0.1:$KUBE_READONLY_PORT/stats/summary" |
		jq -e --arg n "$(pod_jq web .metadata.name)" --argjson pod_level "$KUBE_CRI_STATS" '
			[.pods[] | select(.podRef.name == $n)][0] as $pod
			| ($pod.containers | length) == 2
			and ($pod.containers | all(.memory.workingSetBytes > 0 and .cpu.usageCoreNanoSeconds > 0 and .rootfs != null and .logs.usedBytes > 0))
			and (.node.runtime.imageFs | .capacityBytes > 0 and .usedBytes > 0)
			and ($pod_level == 0 or ($pod | .cpu.usageCoreNanoSeconds > 0 and .memory.workingSetBytes > 0 and .network.rxBytes > 0 and .network.txBytes > 0))' >/dev/null
}

# web_gone SANDBOX : kubelet no longer lists web, the runtime has neither its
# sandbox nor any container of it.
web_gone() {
	[[ -z $(pod_jq web .metadata.uid 2>/dev/null) ]] &&
		! "${CRICTL_CMD[@]}" inspectp "$1" >/dev/null 2>&1 &&
		[[ -z $("${CRICTL_CMD[@]}" ps -aq --pod "$1" 2>/dev/null) ]]
}

# two_attempts_listed SANDBOX : crictl ps -a lists two attempts of its
# container; the listing is left in LISTED.
two_attempts_listed() {
	LISTED=$("${CRICTL_CMD[@]}" ps -a --pod "$1" -o json) &&
		(($(jq '[.containers[].metadata.attempt] | unique | length' <<<"$LISTED") >= 2))
}

# none_exist PATH... : true when no PATH exists.
none_exist() {
	local p
	for p in "$@"; do
		[[ ! -e $p ]] || return 1
	done
}

# --- the checks -------------------------------------------------------------------

# web: Running, Ready, an IP; the server answers the host on the pod IP; both
# probes reached the server; the client fetched the page over the shared
# loopback; no restarts.
check_web() {
	wait_pod 120 web '.status.phase == "Running" and ([.status.conditions[] | select(.type == "Ready")][0].status == "True")' "Running and Ready" || return
	pod_ip_ok web || return
	local ip page server client
	ip=$(pod_jq web .status.podIP)
	page=$(curl -fsS --max-time 5 "http://$ip:8080/index.html") || {
		why "GET http://$ip:8080/index.html from the host failed"
		return 1
	}
	[[ $page == "served by web-"* ]] || {
		why "the page says '$page'"
		return 1
	}
	server=$(container_id web server)
	client=$(container_id web client)
	# Both probes a few times over (readiness every 2 s, liveness every 3 s).
	wait_until 30 probes_seen "$server" || {
		why "server log does not show 3 readiness (/ready.html) and 3 liveness (/alive.html) requests: $("${CRICTL_CMD[@]}" logs "$server" 2>&1 | tail -n 5 | tr '\n' '|')"
		return 1
	}
	"${CRICTL_CMD[@]}" logs "$client" 2>&1 | grep "^served by web-" >/dev/null || {
		why "client log never shows the page it fetched from 127.0.0.1:8080: $("${CRICTL_CMD[@]}" logs --tail 3 "$client" 2>&1 | tr '\n' '|')"
		return 1
	}
	pod_true web '[.status.containerStatuses[] | .ready and .started and .restartCount == 0] | all' || {
		why "containers not all ready with 0 restarts: $(pod_jq web '[.status.containerStatuses[] | {name, ready, restartCount, lastState}] | tojson')"
		return 1
	}
}

# hostport: 127.0.0.1:31080 on the host reaches the pod's :8080.
check_hostport() {
	wait_pod 120 hostport '.status.phase == "Running"' Running || return
	pod_ip_ok hostport || return
	local page
	page=$(curl -fsS --max-time 5 http://127.0.0.1:31080/) || {
		why "GET http://127.0.0.1:31080/ failed"
		return 1
	}
	[[ $page == "hostport pod hostport-"* ]] || {
		why "127.0.0.1:31080 answered '$page'"
		return 1
	}
}

# crash: kubelet restarts a container that exits 3; the runtime keeps the
# attempts, each with its exit code and log.
check_crash() {
	wait_pod 120 crash '.status.containerStatuses[0].restartCount >= 2' "restarted twice" || return
	pod_true crash '.status.containerStatuses[0].lastState.terminated | .exitCode == 3 and .reason == "Error"' || {
		why "lastState: $(pod_jq crash '.status.containerStatuses[0].lastState | tojson')"
		return 1
	}
	# An attempt runs 2 s; meanwhile the previous, exited one is still listed.
	local sandbox json attempts exited_id
	sandbox=$("${CRICTL_CMD[@]}" pods -q --name '^crash-' | awk 'NR == 1')
	wait_until 30 two_attempts_listed "$sandbox" || {
		why "crictl ps -a never showed two attempts of crash at once: $("${CRICTL_CMD[@]}" ps -a --pod "$sandbox" 2>&1 | tr '\n' '|')"
		return 1
	}
	json=$LISTED
	attempts=$(jq -r '[.containers[] | "\(.metadata.attempt):\(.state)"] | sort | join(", ")' <<<"$json")
	log kubelet "crictl ps -a: crash attempts $attempts; kubelet: restartCount $(pod_jq crash '.status.containerStatuses[0].restartCount')"
	exited_id=$(jq -r '[.containers[] | select(.state == "CONTAINER_EXITED")] | max_by(.metadata.attempt) | .id' <<<"$json")
	[[ $("${CRICTL_CMD[@]}" inspect "$exited_id" | jq -r .status.exitCode) == 3 ]] || {
		why "crictl inspect $exited_id: exit code is not 3"
		return 1
	}
	"${CRICTL_CMD[@]}" logs "$exited_id" 2>&1 | grep 'exiting 3' >/dev/null || {
		why "crictl logs $exited_id lacks the attempt's output"
		return 1
	}
}

# oom: the container outgrows its memory limit; kubelet says OOMKilled, 137.
check_oom() {
	wait_pod 90 oom '.status.containerStatuses[0].state.terminated != null' terminated || return
	pod_true oom '.status.containerStatuses[0].state.terminated | .reason == "OOMKilled" and .exitCode == 137' || {
		why "terminated: $(pod_jq oom '.status.containerStatuses[0].state.terminated | tojson')"
		return 1
	}
	pod_true oom '.status.phase == "Failed"' || {
		why "phase $(pod_jq oom .status.phase), want Failed (restartPolicy Never)"
		return 1
	}
}

# logs: every container of web logs to <podLogsDir>/<ns>_<pod>_<uid>/<name>/<attempt>.log
# in the CRI format, `crictl logs` reads it, and kubelet links it from
# /var/log/containers.
check_logs() {
	local uid name ns ctr id path want text link
	uid=$(pod_jq web .metadata.uid)
	name=$(pod_jq web .metadata.name)
	ns=$(pod_jq web .metadata.namespace)
	for ctr in server client; do
		id=$(container_id web "$ctr")
		path=$("${CRICTL_CMD[@]}" inspect "$id" | jq -r .status.logPath)
		want=$KUBE_DIR/pod-logs/${ns}_${name}_${uid}/$ctr/0.log
		[[ $path == "$want" ]] || {
			why "$ctr: log path '$path', want '$want'"
			return 1
		}
		[[ -s $path ]] || {
			why "$ctr: $path is missing or empty"
			return 1
		}
		if grep -qvE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9:]+) (stdout|stderr) [FP] ' "$path"; then
			why "$ctr: lines not in the CRI log format: $(grep -vE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9:]+) (stdout|stderr) [FP] ' "$path" | head -n 2)"
			return 1
		fi
		# crictl logs prints the text of the lines the file held when it read it.
		text=$("${CRICTL_CMD[@]}" logs "$id" 2>&1 | sed -n '1,3p')
		[[ -n $text && $(cut -d' ' -f4- "$path" | sed -n '1,3p') == "$text" ]] || {
			why "$ctr: crictl logs ('$text') differs from the file's first lines"
			return 1
		}
		link=/var/log/containers/${name}_${ns}_${ctr}-${id}.log
		[[ -L $link && $(readlink "$link") == "$path" ]] || {
			why "$ctr: $link is not a symlink to $path"
			return 1
		}
	done
}

# stats: kubelet's summary (from the CRI stats RPCs) has real numbers for
# web's containers.
check_stats() {
	wait_until 60 web_stats_ok || {
		why "/stats/summary: $(curl -fsS --max-time 10 "http://127.0.0.1:$KUBE_READONLY_PORT/stats/summary" | jq -c --arg n "$(pod_jq web .metadata.name)" '{imageFs: .node.runtime.imageFs, web: (.pods[] | select(.podRef.name == $n))}' | head -c 2000)"
		return 1
	}
}

# web_metrics_ok : /metrics/cadvisor (made by kubelet from the runtime's
# ListMetricDescriptors + ListPodSandboxMetrics under --cri-stats) has web's
# server container's working set and the pod's eth0 traffic, with cAdvisor's labels.
web_metrics_ok() {
	local metrics pod
	pod=$(pod_jq web .metadata.name)
	metrics=$(curl -fsS --max-time 10 "http://127.0.0.1:$KUBE_READONLY_PORT/metrics/cadvisor") || return 1
	awk -v pod="pod=\"$pod\"" '
		/^container_memory_working_set_bytes\{/ && /container="server"/ && index($0, pod) && $NF > 0 { mem = 1 }
		/^container_network_receive_bytes_total\{/ && /interface="eth0"/ && index($0, pod) && $NF > 0 { net = 1 }
		END { exit !(mem && net) }' <<<"$metrics"
}

# metrics: kubelet serves the runtime's metrics as /metrics/cadvisor.
check_metrics() {
	wait_until 60 web_metrics_ok || {
		why "/metrics/cadvisor lacks web's numbers: $(curl -fsS --max-time 10 "http://127.0.0.1:$KUBE_READONLY_PORT/metrics/cadvisor" | grep -E '^container_(memory_working_set_bytes|network_receive_bytes_total)' | head -c 2000)"
		return 1
	}
}

# removal: deleting web's manifest makes kubelet stop the pod and (its
# container GC runs every minute) remove it from the runtime; afterwards no
# container, sandbox, veth, IPAM record, mount, cgroup or log dir of it remains.
check_removal() {
	local sandbox ids ip netns ifindex uid name ns
	sandbox=$("${CRICTL_CMD[@]}" pods -q --name '^web-' | awk 'NR == 1')
	ids=$("${CRICTL_CMD[@]}" ps -aq --pod "$sandbox" | tr '\n' ' ')
	ip=$(pod_jq web .status.podIP)
	uid=$(pod_jq web .metadata.uid)
	name=$(pod_jq web .metadata.name)
	ns=$(pod_jq web .metadata.namespace)
	# Seen from inside the pod: its netns (the nsfs mount that pins it shows
	# it as net:[inode]) and the host end of its veth (eth0's peer ifindex).
	netns=$("${CRICTL_CMD[@]}" exec "$(container_id web client)" readlink /proc/self/ns/net)
	ifindex=$("${CRICTL_CMD[@]}" exec "$(container_id web client)" cat /sys/class/net/eth0/iflink)
	[[ -n $sandbox && -n $ids && -n $ip && $netns == net:* && -n $ifindex ]] || {
		why "could not record web's sandbox '$sandbox', containers '$ids', IP '$ip', netns '$netns', veth '$ifindex'"
		return 1
	}
	ip -o link show | grep "^$ifindex: " >/dev/null || {
		why "no host link with ifindex $ifindex (web's veth) before the removal"
		return 1
	}
	rm "$KUBE_DIR/manifests/web.yaml"
	local started=$SECONDS
	wait_until 150 web_gone "$sandbox" || {
		why "after $((SECONDS - started)) s web is still there: kubelet $(pod_jq web .status.phase 2>/dev/null), sandbox $("${CRICTL_CMD[@]}" pods --id "$sandbox" -o json 2>&1 | jq -c '[.items[]? | .state]'), containers $("${CRICTL_CMD[@]}" ps -a --pod "$sandbox" -o json 2>&1 | jq -c '[.containers[]? | .state]')"
		return 1
	}
	log kubelet "web removed from kubelet and the runtime $((SECONDS - started)) s after its manifest"
	local left=()
	local id
	for id in $ids; do
		"${CRICTL_CMD[@]}" inspect "$id" >/dev/null 2>&1 && left+=("container $id")
		grep -q "$id" /proc/self/mountinfo && left+=("mount naming container $id")
	done
	grep -q "$sandbox" /proc/self/mountinfo && left+=("mount naming sandbox $sandbox")
	grep -qF "$netns" /proc/self/mountinfo && left+=("nsfs mount of $netns")
	ip -o link show | grep "^$ifindex: " >/dev/null && left+=("veth ifindex $ifindex")
	[[ -n $(find "$RUNTIME_IPAM_DIR" -name "$ip" 2>/dev/null) ]] && left+=("IPAM record $ip")
	compgen -G "/sys/fs/cgroup/*/kubepods/*pod$uid" >/dev/null && left+=("cgroup pod$uid")
	compgen -G "/sys/fs/cgroup/*/kubepods/*/pod$uid" >/dev/null && left+=("cgroup pod$uid")
	# kubelet removes the pod's log dir in the same GC pass, and its own pod dir in housekeeping.
	local dirs=("$KUBE_DIR/pod-logs/${ns}_${name}_${uid}" "$KUBE_DIR/root/pods/$uid")
	wait_until 30 none_exist "${dirs[@]}" || left+=("pod dirs: $(find "${dirs[@]}" -maxdepth 0 2>/dev/null | tr '\n' ' ')")
	((${#left[@]} == 0)) || {
		why "left behind: ${left[*]}"
		return 1
	}
}

# error_lines : kubelet's error lines (klog "E" severity) without the klog
# header's date, time and pid: "<file.go:line>] <message> <key=value...>".
# A NotFound from ContainerStatus for a container kubelet itself removed
# earlier is marked "[after RemoveContainer] ": kubelet's container deleter
# asks again for containers it has just removed, and NotFound is the answer
# the CRI requires then.
error_lines() {
	awk '
		function container_id(line) {
			if (!match(line, /containerID="[0-9a-f]+"/)) return ""
			return substr(line, RSTART + 13, RLENGTH - 14)
		}
		/"RemoveContainer" containerID="/ { removed[container_id($0)] = 1 }
		/^E[0-9][0-9][0-9][0-9] / {
			line = $0
			sub(/^E[0-9]+ [0-9:.]+ +[0-9]+ /, "", line)
			if (line ~ /"ContainerStatus from runtime service failed"/ && line ~ /code = NotFound/ && (container_id(line) in removed))
				line = "[after RemoveContainer] " line
			print line
		}
	' "$KUBELET_LOG"
}

# known_errors KNOWN_FILE RUNTIME : the patterns KNOWN_FILE accepts for
# RUNTIME, one "<pattern>\t<reason>" per line. File format:
#   <runtime>[,<runtime>...] <extended regex>  # <reason>
known_errors() {
	local runtimes rest
	while read -r runtimes rest; do
		[[ -z $runtimes || $runtimes == \#* ]] && continue
		[[ ,$runtimes, == *",$2,"* ]] || continue
		printf '%s\t%s\n' "$(sed -E 's/ +# .*$//' <<<"$rest")" "$(sed -E 's/^.* # +//' <<<"$rest")"
	done <"$1"
}

# check_log_errors KNOWN_FILE RUNTIME : kubelet logged no error twice (from the
# same source line), except lines KNOWN_FILE accepts with a reason. A repeated
# error is a failing RPC, a missing stat, a pod that cannot start...; the
# known ones are printed with their reason, single ones as information.
check_log_errors() {
	local known=$1 runtime=$2 line pattern reason matched key
	local -A hits=() unknown=() sample=()
	local -a patterns=() reasons=()
	while IFS=$'\t' read -r pattern reason; do
		patterns+=("$pattern")
		reasons+=("$reason")
	done < <(known_errors "$known" "$runtime")
	while IFS= read -r line; do
		matched=0
		for i in "${!patterns[@]}"; do
			if grep -qE -- "${patterns[$i]}" <<<"$line"; then
				hits[$i]=$((${hits[$i]:-0} + 1))
				matched=1
				break
			fi
		done
		((matched)) && continue
		# Group by source line and message (the quoted text after the header).
		key=$(sed -E 's/^(\[[^]]*\] )?([^]]+)\] ("([^"\\]|\\.)*"|[^ ]*).*/\1\2 \3/' <<<"$line")
		unknown[$key]=$((${unknown[$key]:-0} + 1))
		sample[$key]=$line
	done < <(error_lines)
	for i in "${!hits[@]}"; do
		log kubelet "accepted error, ${hits[$i]} x: ${patterns[$i]} # ${reasons[$i]}"
	done
	local repeated=()
	for key in "${!unknown[@]}"; do
		if ((unknown[$key] >= 2)); then
			repeated+=("${unknown[$key]} x ${sample[$key]:0:400}")
		else
			log kubelet "error logged once: ${sample[$key]:0:300}"
		fi
	done
	((${#repeated[@]} == 0)) || {
		why "kubelet logged these errors repeatedly (see $KUBELET_LOG):"
		printf '      %s\n' "${repeated[@]}" >&2
		return 1
	}
}
