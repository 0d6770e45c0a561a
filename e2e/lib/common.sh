# shellcheck shell=bash
# Shared shell helpers for corral's end-to-end scripts. Source it; it defines
# functions only and changes no shell options of the caller.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# log TAG MESSAGE... : one line on stderr, prefixed so interleaved output of
# several helpers (registry, containerd, critest) stays readable in CI logs.
log() {
	local tag=$1
	shift
	printf '[%s] %s\n' "$tag" "$*" >&2
}

# die TAG MESSAGE... : log and fail. Returns 1 instead of exiting so that a
# sourcing script keeps control (its own `set -e` or `|| exit` decides).
die() {
	log "$@"
	return 1
}

# wait_until SECONDS COMMAND... : run COMMAND every 0.2 s until it succeeds or
# SECONDS have passed. Returns COMMAND's last status.
wait_until() {
	local timeout=$1
	shift
	local deadline=$((SECONDS + timeout))
	while true; do
		if "$@"; then
			return 0
		fi
		if ((SECONDS >= deadline)); then
			"$@"
			return $?
		fi
		sleep 0.2
	done
}

# pid_is_running PID EXPECTED_EXE_BASENAME : true when PID is alive and runs the
# expected executable. A stale pid file must never make us signal a process
# that reused the number.
pid_is_running() {
	local pid=$1 expected=$2 exe
	[[ -n $pid && -d /proc/$pid ]] || return 1
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	[[ ${exe##*/} == "$expected" ]]
}

# stop_pid PID EXE_BASENAME TIMEOUT_SECONDS : SIGTERM, wait, then SIGKILL.
# Only ever called with a pid this project started and recorded.
stop_pid() {
	local pid=$1 exe=$2 timeout=${3:-10}
	pid_is_running "$pid" "$exe" || return 0
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_until "$timeout" eval "! pid_is_running $pid $exe"; then
		kill -KILL "$pid" 2>/dev/null || true
		wait_until 5 eval "! pid_is_running $pid $exe"
	fi
}

# corral_tools_dir : the shared cache for tools built once per machine
# (critest, ginkgo, the image helpers). CI keeps it between runs on the same
# machine; everything in it can be rebuilt from the package registries.
corral_tools_dir() {
	printf '%s\n' "${CORRAL_TOOLS:-/var/cache/corral-tools}"
}

# unmount_under TAG DIR : unmounts every mount point below DIR, deepest first (pod netns,
# shm, rootfs mounts a crashed runtime left), lazily when busy; TAG prefixes warnings.
unmount_under() {
	local tag=$1 dir=$2 mnt
	awk -v prefix="$dir/" 'index($5, prefix) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r mnt; do
		mnt=$(printf '%b' "${mnt//\\/\\0}") # mountinfo escapes spaces as \040
		umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || log "$tag" "warning: cannot unmount $mnt"
	done
}
