# shellcheck shell=bash
# Build (once per machine) the kubelet that e2e/kubelet.sh runs. Sourced.
#
# The module in e2e/kubelet/build/ pins k8s.io/kubernetes v1.37.2 and its
# staging modules (see the comment in its go.mod); `go build` of
# k8s.io/kubernetes/cmd/kubelet there, with the flags and version stamp of
# upstream's hack/lib/golang.sh, gives a binary that says `Kubernetes v1.37.2`.
#
# Caches, under ${CORRAL_TOOLS:-/var/cache/corral-tools}:
#   bin/kubelet   reused while `kubelet --version` reports KUBELET_VERSION
#   go/mod        the Go module cache (GOMODCACHE): ~520 MB; a rebuild after a
#                 version change downloads only what changed
# The Go build cache (~2.2 GB while building) is a throw-away directory: with
# the binary cached it would only help a version change.

_KUBELET_BUILD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/lib/common.sh
source "$_KUBELET_BUILD_DIR/../lib/common.sh"

KUBELET_VERSION=v1.37.2 # must match e2e/kubelet/build/go.mod

# kubelet_binary_version BIN : the version BIN was stamped with, or nothing.
kubelet_binary_version() {
	[[ -x $1 ]] || return 0
	"$1" --version 2>/dev/null | sed -n 's/^Kubernetes //p'
}

# _kubelet_ldflags : upstream's version stamp (hack/lib/version.sh) for both
# packages that carry it, so `kubelet --version` and the version kubelet
# reports to the runtime and in its logs are the release's, not v0.0.0-master.
_kubelet_ldflags() {
	local major minor pkg flags="-s -w"
	major=${KUBELET_VERSION#v}
	minor=${major#*.}
	minor=${minor%%.*}
	major=${major%%.*}
	for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
		flags+=" -X $pkg.gitVersion=$KUBELET_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	done
	printf '%s\n' "$flags"
}

# _kubelet_build BIN : go build into a scratch dir, then install atomically
# (another run may be executing the old binary).
_kubelet_build() {
	local bin=$1 scratch status=0 started=$SECONDS
	scratch=$(mktemp -d "${TMPDIR:-/tmp}/kubelet-build.XXXXXX")
	log kubelet "building kubelet $KUBELET_VERSION (first run only: ~8 min on 2 busy cores); log: $scratch/build.log"
	# Tags as upstream builds kubelet (selinux, notest, grpcnotrace); cgo on,
	# as upstream (kubelet is not in its list of static binaries).
	GOMODCACHE=$(corral_tools_dir)/go/mod GOCACHE=$scratch/gocache GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
		go -C "$_KUBELET_BUILD_DIR/build" build -trimpath -tags selinux,notest,grpcnotrace \
		-ldflags "$(_kubelet_ldflags)" -o "$scratch/kubelet" k8s.io/kubernetes/cmd/kubelet \
		>"$scratch/build.log" 2>&1 || status=$?
	if ((status == 0)); then
		mkdir -p "$(dirname "$bin")"
		install -m 0755 "$scratch/kubelet" "$bin.new" && mv "$bin.new" "$bin"
		log kubelet "built kubelet $KUBELET_VERSION in $((SECONDS - started)) s: $bin"
	else
		log kubelet "kubelet build failed after $((SECONDS - started)) s; last lines of its log:"
		tail -n 30 "$scratch/build.log" >&2
	fi
	rm -rf "$scratch"
	return "$status"
}

# kubelet_ensure : prints the path of a kubelet of KUBELET_VERSION, building
# it when the cache has none. Serialised with a lock: two runs never build at once.
kubelet_ensure() {
	local tools bin
	tools=$(corral_tools_dir)
	bin=$tools/bin/kubelet
	mkdir -p "$tools"
	(
		flock 9
		if [[ $(kubelet_binary_version "$bin") == "$KUBELET_VERSION" ]]; then
			exit 0
		fi
		command -v go >/dev/null || die kubelet "go not found: kubelet is built from source with the Go toolchain" || exit
		_kubelet_build "$bin"
	) 9>"$tools/kubelet.lock" || return
	printf '%s\n' "$bin"
}
