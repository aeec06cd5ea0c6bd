#!/usr/bin/env bash
# image.sh builds the gadgetpm image and the pause image as image tarballs,
# without a container engine and without a registry, and prints their paths
# (gadgetpm's first, then pause's) on its last two lines of stdout.
#
#   gadgetpm image  a Debian minbase userland (debootstrap: bash, coreutils,
#                   jq, CA certificates) + the static gadgetpm binary, the
#                   node role's gadgetpm-node binary and kubectl (the
#                   version setup-envtest.sh builds) in /usr/local/bin;
#                   runs as the non-root user gadgetpm (65532) unless the
#                   pod asks for another
#   pause image     one static binary (hack/pause) that holds a pod's
#                   namespaces, for clusters that cannot reach
#                   registry.k8s.io
#
# Load them into containerd with `ctr -n k8s.io images import <tarball>`,
# or push them with any registry client that reads image tarballs.
#
# Caches (outside the checkout, under <cache>/images/): the root file system
# per Debian suite and package list, and each image keyed by the digest of
# everything in it, so a second run with unchanged sources writes nothing.
# Needs root (debootstrap); installs debootstrap with apt-get when missing.
#
# Environment:
#   IMAGE          gadgetpm image name (default gadgetpm.local/gadgetpm:dev)
#   PAUSE_IMAGE    pause image name (default gadgetpm.local/pause:1)
#   VERSION, COMMIT  stamped into the binary (the Makefile passes them)
#   DEBIAN_SUITE   (default bookworm) and DEBIAN_MIRROR (default
#                  http://deb.debian.org/debian)
#   GADGETPM_BIN   cache root (default: $XDG_CACHE_HOME/gadgetpm, else
#                  ~/.cache/gadgetpm)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_root="${GADGETPM_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/gadgetpm}"
IMAGE="${IMAGE:-gadgetpm.local/gadgetpm:dev}"
PAUSE_IMAGE="${PAUSE_IMAGE:-gadgetpm.local/pause:1}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
VERSION="${VERSION:-$(cd "$repo_root" && git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)}"
COMMIT="${COMMIT:-$(cd "$repo_root" && git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
# What package hooks written for shell-operator expect on PATH besides
# bash and coreutils (minbase has both).
include_pkgs="jq,ca-certificates"
images="$bin_root/images"

log() { echo "image: $*" >&2; }
fail() {
	echo "image: error: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || fail "building the image's root file system with debootstrap needs root; run make image as root"
command -v go >/dev/null 2>&1 || fail "go is not on PATH; install Go 1.26 and run make image again"
command -v flock >/dev/null 2>&1 || fail "flock is missing; run 'apt-get install -y util-linux' and run make image again"
if ! command -v debootstrap >/dev/null 2>&1; then
	log "installing debootstrap from Debian's packages"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends debootstrap >/dev/null 2>&1 ||
		{ apt-get -o DPkg::Lock::Timeout=600 update >/dev/null 2>&1 && apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends debootstrap >/dev/null 2>&1; } ||
		fail "could not install debootstrap; run 'apt-get update && apt-get install -y debootstrap' as root (it needs Debian's package mirror), then run make image again"
fi

mkdir -p "$images"
exec 9>"$images/.lock"
if ! flock -n 9; then
	log "another image build is running; waiting for it to finish"
	flock 9
fi

work="$(mktemp -d "$images/.work.XXXXXX")"
cleanup() {
	# debootstrap may leave proc or sys mounted inside its target on failure.
	local m
	for m in $(awk -v w="$work" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r); do umount -l "$m" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- root file system -------------------------------------------------------
rootfs_key="$(printf '%s\n' "$DEBIAN_SUITE" "$include_pkgs" "user=65532 v1" | sha256sum | cut -c1-12)"
rootfs_tar="$images/rootfs-$DEBIAN_SUITE-$rootfs_key.tar.gz"
if [ ! -f "$rootfs_tar" ]; then
	log "debootstrap --variant=minbase $DEBIAN_SUITE (+ $include_pkgs) from $DEBIAN_MIRROR (a few minutes, once)"
	root="$work/rootfs"
	if ! debootstrap --variant=minbase --include="$include_pkgs" "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1; then
		tail -n 15 "$work/debootstrap.log" >&2
		[ -f "$root/debootstrap/debootstrap.log" ] && tail -n 10 "$root/debootstrap/debootstrap.log" >&2
		fail "debootstrap of $DEBIAN_SUITE from $DEBIAN_MIRROR failed (log above); check that the mirror is reachable (or set DEBIAN_MIRROR), then run make image again"
	fi
	# The non-root user the image runs as by default.
	echo 'gadgetpm:x:65532:65532:gadgetpm:/home/gadgetpm:/bin/bash' >>"$root/etc/passwd"
	echo 'gadgetpm:x:65532:' >>"$root/etc/group"
	mkdir -p "$root/home/gadgetpm" "$root/var/lib/gadgetpm" "$root/run/gadgetpm"
	chown 65532:65532 "$root/home/gadgetpm"
	# What a container does not need: package lists, caches, docs, device
	# nodes (the runtime provides /dev).
	rm -rf "${root:?}"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
		"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/* "$root"/debootstrap
	find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
	rm -rf "${root:?}"/dev/* "$root"/proc/* "$root"/sys/* "$root"/tmp/*
	tar --numeric-owner --sort=name --mtime=@0 -C "$root" -czf "$work/rootfs.tar.gz" .
	mv -f "$work/rootfs.tar.gz" "$rootfs_tar"
	log "root file system cached as $rootfs_tar ($(du -h "$rootfs_tar" | cut -f1))"
fi

# --- binaries -------------------------------------------------------------------
assets="$("$repo_root/hack/setup-envtest.sh" | tail -n 1)" || fail "hack/setup-envtest.sh failed (output above); the image needs its kubectl"
log "building the static gadgetpm and gadgetpm-node binaries ($VERSION)"
ldflags="-s -w -X github.com/gadgetpm/gadgetpm/internal/version.version=$VERSION -X github.com/gadgetpm/gadgetpm/internal/version.commit=$COMMIT"
(cd "$repo_root" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$work/gadgetpm" ./cmd/gadgetpm) ||
	fail "building cmd/gadgetpm failed (output above)"
(cd "$repo_root" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$work/gadgetpm-node" ./cmd/gadgetpm-node) ||
	fail "building cmd/gadgetpm-node failed (output above)"
(cd "$repo_root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/pause" ./hack/pause) ||
	fail "building hack/pause failed (output above)"
(cd "$repo_root" && go build -o "$work/image-tool" ./hack/image) || fail "building hack/image failed (output above)"

# --- images ---------------------------------------------------------------------
# build_image <name> <tarball prefix> <args...>: skips the write when an
# image from the same inputs is cached.
build_image() {
	local tag="$1" prefix="$2"
	shift 2
	local key
	key="$({
		printf '%s\n' "$tag" "$@"
		cat "$repo_root/internal/ociimage/ociimage.go"
		local a prev=""
		for a in "$@"; do
			# The contents of every -file SRC:PATH:MODE.
			[ "$prev" = -file ] && sha256sum <"${a%%:*}"
			prev="$a"
		done
	} | sha256sum | cut -c1-16)"
	local out="$images/$prefix-$key.tar"
	if [ ! -f "$out" ]; then
		log "writing $tag"
		"$work/image-tool" -tag "$tag" -out "$out" "$@" >&2 || fail "writing the image $tag failed (output above)"
	else
		log "$tag unchanged, cached"
	fi
	echo "$out"
}

gadgetpm_tar="$(build_image "$IMAGE" gadgetpm -base "$rootfs_tar" \
	-file "$work/gadgetpm:/usr/local/bin/gadgetpm:0755" \
	-file "$work/gadgetpm-node:/usr/local/bin/gadgetpm-node:0755" \
	-file "$(readlink -f "$assets/kubectl"):/usr/local/bin/kubectl:0755" \
	-user 65532:65532 -entrypoint /usr/local/bin/gadgetpm \
	-env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	-label "org.opencontainers.image.version=$VERSION" -label "org.opencontainers.image.revision=$COMMIT")"
pause_tar="$(build_image "$PAUSE_IMAGE" pause -file "$work/pause:/pause:0755" -user 65535:65535 -entrypoint /pause)"

# Stable names for the latest build, for scripts and people.
ln -sfn "$gadgetpm_tar" "$images/.gadgetpm.tar.tmp" && mv -fT "$images/.gadgetpm.tar.tmp" "$images/gadgetpm.tar"
ln -sfn "$pause_tar" "$images/.pause.tar.tmp" && mv -fT "$images/.pause.tar.tmp" "$images/pause.tar"
log "$IMAGE: $gadgetpm_tar ($(du -h "$gadgetpm_tar" | cut -f1))"
log "$PAUSE_IMAGE: $pause_tar"
echo "$gadgetpm_tar"
echo "$pause_tar"
