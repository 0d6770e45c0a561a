# shellcheck shell=bash
# Leak audit: everything one corral daemon can leave on a host, as a sorted list of
# "<kind> <object>" lines, and the diff of two such snapshots.
#
# Sourced by the e2e tests (after lib/prelude.sh):
#   before=$(audit_snapshot); ...; after=$(audit_snapshot)
#   audit_diff "$before" "$after"        # prints "LEAK: ..." lines, fails if there are any
#   audit_usage                          # "fds=N rss_kib=M" of the running daemon
# Or as a command against any daemon:
#   e2e/lib/audit.sh snapshot ROOT STATE_DIR BRIDGE CGROUP_ROOT CORRAL_BIN [DAEMON_PID] >a.txt
#   e2e/lib/audit.sh diff a.txt b.txt
#
# What is listed, and why each can leak:
#   mount      mounts under the root or state dir (pinned namespaces, pod /dev/shm)
#   file       pod dirs, runtime state dirs, writable layers, records: a crash mid-create
#              or mid-remove leaves them
#   ip         IPAM records (an address held forever: containerd#5768)
#   attachment network attachment records
#   veth       host ends on the bridge, or carrying this network's alias
#   nft        hostPort map elements in the daemon's table corral_<bridge>
#   cgroup     cgroups under the cgroup root, per hierarchy
#   proc       monitors, exec helpers and pause processes (the daemon's binary), and every
#              process in a cgroup under the cgroup root (containers)
#   zombie     unreaped children of the daemon or of those processes
# The daemon's fd count and RSS are not objects: audit_usage reports them for comparison.

# audit_snapshot [ROOT STATE BRIDGE CGROUP_ROOT CORRAL_BIN DAEMON_PID]: defaults are the
# e2e daemon's (E2E_WORK, E2E_BRIDGE, E2E_CGROUP_ROOT, CORRAL_BIN, CORRAL_PID).
audit_snapshot() {
  local root=${1:-$E2E_WORK/root} state=${2:-$E2E_WORK/state} bridge=${3:-$E2E_BRIDGE}
  local cgroot=${4:-$E2E_CGROUP_ROOT} bin=${5:-$CORRAL_BIN} daemon=${6:-${CORRAL_PID:-0}}
  {
    _audit_mounts "$root" "$state"
    _audit_files "$root" "$state"
    _audit_network "$root" "$bridge"
    _audit_cgroups "$cgroot"
    _audit_processes "$cgroot" "$bin" "$daemon"
  } | LC_ALL=C sort
}

# audit_diff BEFORE AFTER: objects in AFTER that were not in BEFORE are leaks ("LEAK:" lines
# on stderr); returns non-zero if there is any. Objects that went away are fine.
audit_diff() {
  local leaks
  leaks=$(LC_ALL=C comm -13 <(printf '%s\n' "$1" | sed '/^$/d') <(printf '%s\n' "$2" | sed '/^$/d'))
  [ -z "$leaks" ] && return 0
  sed 's/^/LEAK: /' <<<"$leaks" >&2
  return 1
}

# audit_count SNAPSHOT: how many objects it lists.
audit_count() {
  printf '%s\n' "$1" | sed '/^$/d' | wc -l
}

# audit_usage [PID]: "fds=N rss_kib=M" of the daemon.
audit_usage() {
  local pid=${1:-$CORRAL_PID}
  local fds rss
  fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
  echo "fds=$fds rss_kib=${rss:-0}"
}

_audit_mounts() {
  awk -v root="$1/" -v state="$2/" \
    'index($5, root) == 1 || index($5, state) == 1 { print "mount", $5, $9 }' /proc/self/mountinfo
}

_audit_files() {
  local root=$1 state=$2 d
  for d in "$state/pods" "$state/containers" "$root/containers-rw"; do
    [ -d "$d" ] && find "$d" -mindepth 1 -maxdepth 1 -printf "file $d/%f\n"
  done
  for d in "$root/sandboxes" "$root/containers"; do
    [ -d "$d" ] && find "$d" -mindepth 1 -maxdepth 1 -printf "file $d/%f\n"
  done
  [ -d "$state/pods" ] && find "$state/pods" -mindepth 3 -maxdepth 3 -path '*/ns/*' -printf 'file %p\n'
  return 0
}

_audit_network() {
  local root=$1 bridge=$2 table="corral_${2//[^a-zA-Z0-9]/_}" f
  if [ -d "$root/network/ipam" ]; then
    while IFS= read -r f; do
      printf 'ip %s %s\n' "${f##*/}" "$(tr '\r\n' '  ' <"$f")"
    done < <(find "$root/network/ipam" -type f -regextype posix-extended -regex '.*/[0-9.]+')
  fi
  [ -d "$root/network/attachments" ] && find "$root/network/attachments" -type f -printf 'attachment %P\n'
  ip -j link show type veth 2>/dev/null | jq -r --arg br "$bridge" --arg net "corral:corral-$bridge:" \
    '.[] | select(.master == $br or ((.ifalias // "") | startswith($net))) | "veth \(.ifname) \(.ifalias // "")"'
  nft -j list table ip "$table" 2>/dev/null | jq -r \
    '.nftables[] | .map? // empty | .name as $m | (.elem // [])[] | "nft \($m) \(tojson)"'
  return 0
}

_audit_cgroups() {
  local cgroot=$1 h
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h${cgroot#/}" ] && find "$h${cgroot#/}" -mindepth 1 -type d -printf "cgroup $(basename "$h") %P\n"
  done
  return 0
}

# Processes: the daemon's helpers (found by their executable), containers (found by
# cgroup), and zombies whose parent is the daemon or one of those.
_audit_processes() {
  local cgroot=$1 bin daemon=$3 p pid exe state ppid ours=" $3 "
  bin=$(readlink -f "$2")
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = "$daemon" ] && continue
    exe=$(readlink "$p/exe" 2>/dev/null) || exe=
    exe=${exe% (deleted)}
    if [ "$exe" = "$bin" ] || grep -qs ":$cgroot/" "$p/cgroup"; then
      ours+="$pid "
      printf 'proc %s %s\n' "$pid" "$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)"
    fi
  done
  for p in /proc/[0-9]*; do
    # Fields after the command name: state, ppid.
    read -r state ppid < <(sed 's/.*) //' "$p/stat" 2>/dev/null) || continue
    if [ "$state" = Z ] && [[ $ours == *" $ppid "* ]]; then
      printf 'zombie %s parent=%s %s\n' "${p#/proc/}" "$ppid" "$(cat "$p/comm" 2>/dev/null)"
    fi
  done
}

# As a command: snapshot or diff (see the header).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    snapshot)
      shift
      [ $# -ge 5 ] || { echo "usage: $0 snapshot ROOT STATE_DIR BRIDGE CGROUP_ROOT CORRAL_BIN [DAEMON_PID]" >&2; exit 2; }
      audit_snapshot "$@"
      [ -n "${6:-}" ] && echo "# $(audit_usage "$6")"
      ;;
    diff)
      [ $# -eq 3 ] || { echo "usage: $0 diff BEFORE_FILE AFTER_FILE" >&2; exit 2; }
      audit_diff "$(grep -v '^#' "$2")" "$(grep -v '^#' "$3")" && echo "no leaks"
      ;;
    *)
      echo "usage: $0 snapshot ...|diff BEFORE AFTER (see the header of $0)" >&2
      exit 2
      ;;
  esac
fi
