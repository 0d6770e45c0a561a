#!/bin/bash
# Builds a busybox image from Debian's busybox-static as an OCI image (umoci) and pushes it to a
# registry (skopeo), e.g. `push-busybox.sh 127.0.0.1:5000 busybox:latest`.
#
# Applets are hard links to /bin/busybox (a symlinked applet breaks once masked; see
# shared/cri-notes.md). The image runs `sh` by default.
set -euo pipefail

registry=${1:?usage: push-busybox.sh HOST:PORT [NAME:TAG]}
name=${2:-busybox:latest}
busybox=${BUSYBOX:-/bin/busybox}

for tool in umoci skopeo; do
    command -v "$tool" >/dev/null || { echo "push-busybox.sh: $tool is not installed" >&2; exit 1; }
done
[ -x "$busybox" ] || { echo "push-busybox.sh: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

umoci init --layout "$work/oci"
umoci new --image "$work/oci:img"
umoci unpack --image "$work/oci:img" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/root"
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln "$rootfs/bin/busybox" "$rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
echo 'root:x:0:' >"$rootfs/etc/group"
umoci repack --image "$work/oci:img" "$work/bundle" >/dev/null
umoci config --image "$work/oci:img" --config.cmd sh \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin >/dev/null
skopeo copy --quiet --dest-tls-verify=false "oci:$work/oci:img" "docker://$registry/$name"
echo "pushed $registry/$name"
