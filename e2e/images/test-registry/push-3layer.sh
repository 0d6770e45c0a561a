#!/bin/bash
# Builds a 3-layer image for pull benchmarks and pushes it: busybox (layer 1), 2000 small files
# (layer 2), 32 MiB of incompressible data (layer 3). `push-3layer.sh 127.0.0.1:5000 bench:3layer`
set -euo pipefail

registry=${1:?usage: push-3layer.sh HOST:PORT [NAME:TAG]}
name=${2:-bench:3layer}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

umoci init --layout "$work/oci"
umoci new --image "$work/oci:img"
umoci unpack --image "$work/oci:img" "$work/b" >/dev/null
mkdir -p "$work/b/rootfs/bin"
cp /bin/busybox "$work/b/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln "$work/b/rootfs/bin/busybox" "$work/b/rootfs/bin/$applet"
done
# umoci diffs a bundle against the image it was unpacked from: unpack afresh for each layer.
next_layer() {
    umoci repack --image "$work/oci:img" "$work/b" >/dev/null
    rm -rf "$work/b"
    umoci unpack --image "$work/oci:img" "$work/b" >/dev/null
}
next_layer
mkdir -p "$work/b/rootfs/usr/share/many"
for i in $(seq 1 2000); do echo "small file $i" >"$work/b/rootfs/usr/share/many/f$i"; done
next_layer
head -c $((32 << 20)) /dev/urandom >"$work/b/rootfs/usr/share/blob.bin"
umoci repack --image "$work/oci:img" "$work/b" >/dev/null
umoci config --image "$work/oci:img" --config.cmd sh >/dev/null
skopeo copy --quiet --dest-tls-verify=false "oci:$work/oci:img" "docker://$registry/$name"
echo "pushed $registry/$name"
