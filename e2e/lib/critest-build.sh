# shellcheck shell=bash
# Build (once per machine) the critest test binary and the ginkgo CLI that
# critest's -parallel mode runs. Sourced by e2e/critest.sh.
#
# critest is a Go test binary: `go test -c` of sigs.k8s.io/cri-tools/cmd/critest,
# built in a scratch module from the Go module proxy and stamped with its
# version so a cached binary can be checked. Both binaries land in
# ${CORRAL_TOOLS:-/var/cache/corral-tools}/bin and are reused while
# `critest -version` reports the wanted version.

_CRITEST_BUILD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/lib/common.sh
source "$_CRITEST_BUILD_DIR/common.sh"

CRITEST_VERSIONS=${CRITEST_VERSIONS:-"v1.37.0 v1.36.0"} # first that builds wins

# critest_binary_version BIN : the version BIN was stamped with, or nothing.
critest_binary_version() {
	[[ -x $1 ]] || return 0
	"$1" -version 2>/dev/null | sed -n 's/^critest version: //p' | head -n1
}

# _critest_build VERSION BINDIR : go test -c in a scratch module; also builds
# the ginkgo CLI at the version critest's go.mod selects.
_critest_build() {
	local version=$1 bindir=$2 scratch
	scratch=$(mktemp -d "${TMPDIR:-/tmp}/critest-build.XXXXXX")
	log critest "building critest $version in $scratch (first run only: takes a few minutes)"
	# One && chain: `set -e` would be ignored here, as the caller tests our status.
	local status=0
	(
		cd "$scratch" &&
			go mod init corral.local/critest-build &&
			go get -t "sigs.k8s.io/cri-tools/cmd/critest@$version" &&
			go test -c -o critest \
				-ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$version" \
				sigs.k8s.io/cri-tools/cmd/critest &&
			ginkgo_version=$(go list -m -f '{{.Version}}' github.com/onsi/ginkgo/v2) &&
			go get "github.com/onsi/ginkgo/v2/ginkgo@$ginkgo_version" &&
			go build -o ginkgo -ldflags "-s -w" github.com/onsi/ginkgo/v2/ginkgo
	) >"$scratch/build.log" 2>&1 || status=$?
	if ((status == 0)); then
		mkdir -p "$bindir"
		# Install atomically: another run may be reading the old binaries.
		install -m 0755 "$scratch/critest" "$bindir/.critest.new" && mv "$bindir/.critest.new" "$bindir/critest"
		install -m 0755 "$scratch/ginkgo" "$bindir/.ginkgo.new" && mv "$bindir/.ginkgo.new" "$bindir/ginkgo"
	else
		log critest "critest $version build failed; last lines of its log:"
		tail -n 30 "$scratch/build.log" >&2
	fi
	rm -rf "$scratch"
	return "$status"
}

# critest_ensure : prints the bin dir holding critest and ginkgo, building them
# when missing or of another version.
critest_ensure() {
	local bindir version have
	bindir=$(corral_tools_dir)/bin
	have=$(critest_binary_version "$bindir/critest")
	for version in $CRITEST_VERSIONS; do
		if [[ $have == "$version" && -x $bindir/ginkgo ]]; then
			printf '%s\n' "$bindir"
			return 0
		fi
	done
	command -v go >/dev/null || die critest "go not found: critest is built from source with the Go toolchain" || return
	for version in $CRITEST_VERSIONS; do
		if _critest_build "$version" "$bindir"; then
			log critest "installed critest $version and ginkgo into $bindir"
			printf '%s\n' "$bindir"
			return 0
		fi
		log critest "critest $version did not build; trying the next version"
	done
	die critest "no critest version of '$CRITEST_VERSIONS' built"
}
