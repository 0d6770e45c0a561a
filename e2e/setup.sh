#!/usr/bin/env bash
# Installs everything corral's build and tests need on a fresh Debian 12 machine (root),
# idempotently: Debian packages, then the Go tools crictl and critest into a cache dir that
# later runs reuse ($CORRAL_TOOLS, default /var/cache/corral-tools).
#
#   e2e/setup.sh            everything (build + tests)
#   e2e/setup.sh --build    only what building and running corral needs
set -euo pipefail

TOOLS=${CORRAL_TOOLS:-/var/cache/corral-tools}
CRI_TOOLS_VERSION=${CRI_TOOLS_VERSION:-v1.37.0}

log() { printf 'setup: %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "setup: run as root (corral manages namespaces, mounts, cgroups and netfilter)" >&2
    exit 1
  fi
}

# Packages to build corral and run its daemon.
BUILD_PACKAGES=(protobuf-compiler libseccomp-dev pkg-config iproute2 nftables iptables procps)
# Packages the tests use: a local OCI registry, image tooling, busybox for test rootfs,
# containerd + runc + CNI plugins as the peer we compare against, and small helpers.
# gcc + libc6-dev build the small static programs of the critest stand-in images.
TEST_PACKAGES=(docker-registry skopeo umoci busybox-static containerd runc containernetworking-plugins
  jq socat curl util-linux psmisc python3 gcc libc6-dev)

install_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian packages start services on install where systemd runs; corral's tests start
  # their own throw-away registry and containerd, so stop any that came up.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now docker-registry containerd >/dev/null 2>&1 || true
  fi
}

# crictl: the CLI every e2e script drives corral with.
install_crictl() {
  # `go install` builds leave crictl's version "unknown": a stamp file records it.
  if [ -x "$TOOLS/bin/crictl" ] && [ "$(cat "$TOOLS/bin/.crictl-version" 2>/dev/null)" = "$CRI_TOOLS_VERSION" ]; then
    return 0
  fi
  log "building crictl $CRI_TOOLS_VERSION"
  mkdir -p "$TOOLS/bin"
  GOBIN="$TOOLS/bin" go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
  echo "$CRI_TOOLS_VERSION" >"$TOOLS/bin/.crictl-version"
}

main() {
  need_root
  install_packages "${BUILD_PACKAGES[@]}"
  if [ "${1:-}" = "--build" ]; then
    return 0
  fi
  install_packages "${TEST_PACKAGES[@]}"
  command -v go >/dev/null || { echo "setup: Go is required to build crictl/critest" >&2; exit 1; }
  install_crictl
  # critest (and the ginkgo runner its -parallel mode needs), cached with a version stamp.
  "$(dirname "$0")/critest.sh" --build-only
  log "tools in $TOOLS/bin: $(ls "$TOOLS/bin" | tr '\n' ' ')"
}

main "$@"
