#!/usr/bin/env bash
# The operator's view of latency: how long `crictl runp`, `create` + `start`, `exec -s`,
# `exec` (streaming: the Exec RPC, then SPDY), and `stopp` + `rmp` (with a running container) take against a CRI endpoint, crictl process
# included (~10-15 ms per call). The median of N runs after 2 warm-up runs, in ms, as one
# markdown table row. e2e/bench measures the same without crictl's cost.
#
#   e2e/crictl-timing.sh --endpoint unix:///run/corral/corral.sock [--name corral] [-n 20]
#                        [--image 127.0.0.1:5000/busybox:latest]
#
# The image must be pullable by the runtime (it is pulled first, outside the timing).
set -euo pipefail

endpoint='' name=runtime runs=20 image=127.0.0.1:5000/busybox:latest
while [[ $# -gt 0 ]]; do
	case $1 in
	--endpoint) endpoint=${2:?}; shift 2 ;;
	--name) name=${2:?}; shift 2 ;;
	-n) runs=${2:?}; shift 2 ;;
	--image) image=${2:?}; shift 2 ;;
	*) sed -n '2,11p' "$0" >&2; exit 2 ;;
	esac
done
[[ -n $endpoint ]] || { echo "$0: --endpoint is required" >&2; exit 2; }
CRICTL=${CRICTL_BIN:-${CORRAL_TOOLS:-/var/cache/corral-tools}/bin/crictl}
export CRI_CONFIG_FILE=/dev/null
crictl() { "$CRICTL" --runtime-endpoint "$endpoint" --image-endpoint "$endpoint" --timeout 60s "$@" 2>/dev/null; }

work=$(mktemp -d /tmp/corral-crictl-timing.XXXXXX)
pods=()
cleanup() {
	local p
	for p in "${pods[@]}"; do crictl rmp -f "$p" >/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

crictl pull "$image" >/dev/null
now() { date +%s%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e6 }'; }

declare -A samples
for ((i = 0; i < runs + 2; i++)); do
	jq -n --arg n "timing-$i-$$" --arg d "$work/logs/$i" \
		'{metadata: {name: $n, namespace: "timing", uid: $n}, log_directory: $d, linux: {}}' >"$work/pod.json"
	jq -n --arg img "$image" \
		'{metadata: {name: "app"}, image: {image: $img}, command: ["sleep", "3600"], log_path: "app.log", linux: {}}' \
		>"$work/ctr.json"
	t0=$(now)
	pod=$(crictl runp "$work/pod.json")
	pods+=("$pod")
	t1=$(now)
	ctr=$(crictl create "$pod" "$work/ctr.json" "$work/pod.json")
	crictl start "$ctr" >/dev/null
	t2=$(now)
	crictl exec -s "$ctr" true >/dev/null
	t3=$(now)
	crictl exec "$ctr" true >/dev/null
	t3s=$(now)
	crictl stopp "$pod" >/dev/null
	crictl rmp "$pod" >/dev/null
	t4=$(now)
	unset 'pods[-1]'
	((i < 2)) && continue # warm-up
	samples[runp]+="$(ms "$t0" "$t1") "
	samples[create_start]+="$(ms "$t1" "$t2") "
	samples[exec]+="$(ms "$t2" "$t3") "
	samples[exec_stream]+="$(ms "$t3" "$t3s") "
	samples[stopp_rmp]+="$(ms "$t3s" "$t4") "
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
row="| $name |"
for k in runp create_start exec exec_stream stopp_rmp; do
	row+=" $(median <<<"${samples[$k]}") |"
done
echo "| runtime (median of $runs, ms) | runp | create + start | exec -s | exec (streaming) | stopp + rmp |"
echo "|---|---:|---:|---:|---:|---:|"
echo "$row"
