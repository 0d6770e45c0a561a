# shellcheck shell=bash
# Names, addresses and binaries of the throw-away containerd, shared by
# start.sh and stop.sh. Sourced; defines variables only.

# Reserved for this containerd on the shared test machine: nothing else may
# use this bridge name or subnet.
# shellcheck disable=SC2034 # used by start.sh and stop.sh
CTD_BRIDGE=cni-ctd0
CTD_SUBNET=10.89.0.0/16
CTD_NETWORK_NAME=corral-ctd-e2e

REGISTRY_ADDR=${REGISTRY_ADDR:-127.0.0.1:5000}
CONTAINERD_BIN=${CONTAINERD_BIN:-/usr/bin/containerd}
RUNC_BIN=${RUNC_BIN:-/usr/sbin/runc}
CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}

# crictl v1.37: from PATH, else the shared tools cache, else the machine's
# pre-built copy.
if [[ -z ${CRICTL:-} ]]; then
	for _crictl in "$(command -v crictl || true)" "${CORRAL_TOOLS:-/var/cache/corral-tools}/bin/crictl" /work/gotools-cache/bin/crictl; do
		if [[ -n $_crictl && -x $_crictl ]]; then
			CRICTL=$_crictl
			break
		fi
	done
	unset _crictl
fi
CRICTL=${CRICTL:-crictl}
