#!/usr/bin/env bash
# Build every e2e/critest test image offline and push it to the local registry.
#
#   e2e/images/build.sh [--layout DIR] [--list]
#
# The registry must already run at REGISTRY_ADDR (default 127.0.0.1:5000), e.g.
#   e2e/lib/registry.sh start /tmp/corral-registry
#
# Inputs, all local: Debian's busybox-static (every applet), Debian's `busybox`
# package for /bin/sh only (an ash that searches PATH: see
# ocibuild/catalog.py:base_layer), and the C programs in src/, compiled
# statically here. The .deb and the compiled programs are cached under
# ${CORRAL_TOOLS:-/var/cache/corral-tools}/images. Images are deterministic;
# tags whose digest is already in the registry are not pushed again, so a
# second run takes about a second.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e/lib/common.sh
source "$HERE/../lib/common.sh"

REGISTRY_ADDR=${REGISTRY_ADDR:-127.0.0.1:5000}
BUSYBOX_STATIC=${BUSYBOX_STATIC:-/usr/bin/busybox}
CACHE=$(corral_tools_dir)/images
HELPERS=(pause nginx nnp pgrep)
CFLAGS=(-static -Os -s -Wall -Wextra -Werror '-Wl,--build-id=none')

# compile_helpers : prints the directory holding the static helper programs.
# Keyed by the sources, the flags and the compiler version, so a change to any
# of them rebuilds and an unchanged tree reuses the binaries.
compile_helpers() {
	local key dir
	key=$( {
		gcc -dumpfullversion
		echo "${CFLAGS[*]}"
		cat "$HERE"/src/*.c
	} | sha256sum | cut -c1-16)
	dir=$CACHE/helpers-$key
	if [[ ! -d $dir ]]; then
		local tmp
		tmp=$(mktemp -d "$CACHE/helpers.XXXXXX")
		for name in "${HELPERS[@]}"; do
			gcc "${CFLAGS[@]}" -o "$tmp/$name" "$HERE/src/$name.c"
		done
		mv "$tmp" "$dir"
		log images "compiled ${HELPERS[*]} into $dir"
	fi
	printf '%s\n' "$dir"
}

# shell_is_path_searching SH : true when SH runs `ls` from PATH (no applet
# shortcut), i.e. busybox was built without FEATURE_SH_STANDALONE.
shell_is_path_searching() {
	local out
	out=$(PATH=/nonexistent "$1" -c 'type ls' 2>&1 || true)
	[[ $out == *"not found"* ]]
}

# find_busybox_shell : prints the path of a PATH-searching busybox ash.
# $BUSYBOX_SHELL wins; otherwise Debian's `busybox` .deb is fetched once with
# apt-get download (it conflicts with busybox-static, so it is unpacked into
# the cache instead of installed).
find_busybox_shell() {
	if [[ -n ${BUSYBOX_SHELL:-} ]]; then
		shell_is_path_searching "$BUSYBOX_SHELL" ||
			die images "BUSYBOX_SHELL=$BUSYBOX_SHELL prefers applets over PATH; it must be built without FEATURE_SH_STANDALONE" || return
		printf '%s\n' "$BUSYBOX_SHELL"
		return
	fi
	local cached
	cached=$(find "$CACHE" -maxdepth 2 -path '*/busybox-shell-*/busybox' -print -quit 2>/dev/null || true)
	if [[ -n $cached ]]; then
		printf '%s\n' "$cached"
		return
	fi
	local tmp deb version
	tmp=$(mktemp -d)
	if ! (cd "$tmp" && apt-get download busybox >/dev/null 2>&1); then
		log images "apt-get download busybox failed; refreshing the package lists once"
		apt-get update >/dev/null
		(cd "$tmp" && apt-get download busybox >/dev/null) || die images "cannot download Debian's busybox package" || return
	fi
	deb=$(ls "$tmp"/busybox_*.deb)
	version=$(dpkg-deb -f "$deb" Version | tr ':~' '__')
	dpkg-deb -x "$deb" "$tmp/x"
	shell_is_path_searching "$tmp/x/bin/busybox" || die images "$deb: its ash prefers applets over PATH" || return
	mkdir -p "$CACHE/busybox-shell-$version"
	cp "$tmp/x/bin/busybox" "$CACHE/busybox-shell-$version/busybox"
	rm -rf "$tmp"
	log images "unpacked Debian busybox $version (PATH-searching ash) into $CACHE/busybox-shell-$version"
	printf '%s\n' "$CACHE/busybox-shell-$version/busybox"
}

# shell_libs SH : the shared libraries SH loads, as absolute paths.
shell_libs() {
	ldd "$1" | awk '/=> \// { print $3 } /^[ \t]*\/[^ ]+ \(0x/ { print $1 }'
}

main() {
	[[ -x $BUSYBOX_STATIC ]] || die images "$BUSYBOX_STATIC not found: apt-get install busybox-static"
	mkdir -p "$CACHE"
	local helpers shell
	helpers=$(compile_helpers)
	shell=$(find_busybox_shell)
	local lib_args=()
	while read -r lib; do
		lib_args+=(--shell-lib "$lib")
	done < <(shell_libs "$shell")

	local push_args=(--registry "$REGISTRY_ADDR")
	[[ " $* " == *" --list "* ]] && push_args=()
	python3 "$HERE/build_images.py" \
		--busybox-static "$BUSYBOX_STATIC" \
		--busybox-shell "$shell" \
		"${lib_args[@]}" \
		--helpers "$helpers" \
		"${push_args[@]}" \
		"$@"
}

main "$@"
