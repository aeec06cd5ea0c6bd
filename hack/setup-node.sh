#!/usr/bin/env bash
# setup-node.sh prepares everything a real single-node cluster needs beyond
# the test control plane (hack/setup-envtest.sh), caches it and prints, on
# its last line of stdout, the directory that holds every binary:
#
#   kubelet, kube-controller-manager, kube-scheduler, kube-proxy
#                   built from the same k8s.io/kubernetes module, version
#                   and flags as kube-apiserver in setup-envtest.sh, so the
#                   four share its compiled packages in the Go build cache
#   containerd, containerd-shim-runc-v2, ctr
#                   built from github.com/containerd/containerd/v2
#   runc            built from github.com/opencontainers/runc with cgo and
#                   seccomp (without seccomp containerd's RuntimeDefault
#                   profile makes every pod sandbox fail)
#   crictl          built from sigs.k8s.io/cri-tools, to stop pod sandboxes
#                   through the CRI (which tears their networks down)
#   CNI plugins     Debian's containernetworking-plugins (bridge,
#                   host-local, portmap, loopback in /usr/lib/cni)
#
# Debian packages it installs when missing: libseccomp-dev, pkg-config,
# containernetworking-plugins, iptables, iproute2, conntrack (kube-proxy
# clears stale UDP entries with it), bpftool (the end-to-end tests list
# loaded programs with it), openssl, curl and nftables (hack/e2e-cluster.sh).
#
# Binaries land in <cache>/node/<kube>-<containerd>-<runc>-<arch>/; the
# kube-apiserver, etcd and kubectl of setup-envtest.sh are linked beside
# them. A second run returns at once. Concurrent runs serialise on a lock
# file and every binary is renamed into place, so the cache is never
# half-written.
#
# Environment:
#   KUBE_VERSION        (default 1.36.3, as setup-envtest.sh)
#   CONTAINERD_VERSION  (default 2.4.2)
#   RUNC_VERSION        (default 1.5.3)
#   CRICTL_VERSION      (default 1.34.0)
#   GADGETPM_BIN        cache root (default: $XDG_CACHE_HOME/gadgetpm, else
#                       ~/.cache/gadgetpm)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBE_VERSION="${KUBE_VERSION:-1.36.3}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-2.4.2}"
RUNC_VERSION="${RUNC_VERSION:-1.5.3}"
CRICTL_VERSION="${CRICTL_VERSION:-1.34.0}"
bin_root="${GADGETPM_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/gadgetpm}"
arch="$(go env GOARCH 2>/dev/null || echo amd64)"
dir="$bin_root/node/$KUBE_VERSION-$CONTAINERD_VERSION-$RUNC_VERSION-linux-$arch"

log() { echo "setup-node: $*" >&2; }
fail() {
	echo "setup-node: error: $*" >&2
	exit 1
}

kube_bins=(kubelet kube-controller-manager kube-scheduler kube-proxy)
containerd_bins=(containerd containerd-shim-runc-v2 ctr)
all_bins=("${kube_bins[@]}" "${containerd_bins[@]}" runc crictl kube-apiserver etcd kubectl)
ready() {
	local b
	for b in "${all_bins[@]}"; do [ -x "$dir/$b" ] || return 1; done
	[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/portmap ] &&
		command -v iptables-save >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 && command -v conntrack >/dev/null 2>&1 &&
		command -v bpftool >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 && command -v curl >/dev/null 2>&1 &&
		command -v nft >/dev/null 2>&1
}

if ready; then
	echo "$dir"
	exit 0
fi

command -v go >/dev/null 2>&1 || fail "go is not on PATH; install Go 1.26 and run hack/setup-node.sh again"
command -v flock >/dev/null 2>&1 || fail "flock is missing; run 'apt-get install -y util-linux' and run hack/setup-node.sh again"

mkdir -p "$dir"
exec 9>"$bin_root/.setup-node.lock"
if ! flock -n 9; then
	log "another setup-node.sh is running; waiting for it to finish"
	flock 9
fi
if ready; then
	echo "$dir"
	exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/gadgetpm-node.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --- Debian packages ----------------------------------------------------------
need_pkgs=()
[ -f /usr/include/seccomp.h ] || need_pkgs+=(libseccomp-dev)
command -v pkg-config >/dev/null 2>&1 || need_pkgs+=(pkg-config)
[ -x /usr/lib/cni/bridge ] || need_pkgs+=(containernetworking-plugins)
command -v iptables-save >/dev/null 2>&1 || need_pkgs+=(iptables)
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
command -v conntrack >/dev/null 2>&1 || need_pkgs+=(conntrack)
command -v bpftool >/dev/null 2>&1 || need_pkgs+=(bpftool)
# hack/e2e-cluster.sh makes its certificates with openssl and polls
# health endpoints with curl.
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
# nft removes the empty iptables tables the kubelet and kube-proxy create
# (iptables-nft cannot delete a table).
command -v nft >/dev/null 2>&1 || need_pkgs+=(nftables)
if [ ${#need_pkgs[@]} -gt 0 ]; then
	log "installing ${need_pkgs[*]} from Debian's packages"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${need_pkgs[@]}" >"$work/apt.log" 2>&1; then
		apt-get -o DPkg::Lock::Timeout=600 update >>"$work/apt.log" 2>&1 || true
		apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${need_pkgs[@]}" >>"$work/apt.log" 2>&1 || {
			tail -n 20 "$work/apt.log" >&2
			fail "could not install ${need_pkgs[*]} (log above); run 'apt-get update && apt-get install -y ${need_pkgs[*]}' as root, then run hack/setup-node.sh again"
		}
	fi
fi

# --- control plane binaries from setup-envtest.sh -----------------------------
assets="$("$repo_root/hack/setup-envtest.sh" | tail -n 1)" || fail "hack/setup-envtest.sh failed (output above)"
for b in kube-apiserver etcd kubectl; do
	ln -sfn "$(readlink -f "$assets/$b")" "$dir/.$b.tmp"
	mv -f "$dir/.$b.tmp" "$dir/$b"
done

install_bin() { # install_bin <built file> <name>: atomic, same file system as the cache
	cp "$1" "$dir/.$2.tmp"
	chmod 0755 "$dir/.$2.tmp"
	mv -f "$dir/.$2.tmp" "$dir/$2"
}

# --- kubelet, kube-controller-manager, kube-scheduler, kube-proxy ---------------
missing=()
for b in "${kube_bins[@]}"; do [ -x "$dir/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -gt 0 ]; then
	# The same work module as setup-envtest.sh (same requirements, same
	# flags, -trimpath): the Go build cache then holds kube-apiserver's
	# compiled packages under the same keys, and only what is new to these
	# three binaries compiles.
	kmod="$work/kube"
	mkdir -p "$kmod"
	# shellcheck source=hack/lib/kube-module.sh
	. "$repo_root/hack/lib/kube-module.sh"
	kube_module "$kmod" setup-node.sh
	pkgs=()
	for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
	log "building ${missing[*]} v$KUBE_VERSION from the k8s.io/kubernetes module (about 5 minutes on 2 cores after kube-apiserver, once)"
	mkdir -p "$work/out"
	if ! (cd "$kmod" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -gcflags="all=-dwarf=false -l" -ldflags "$kube_ldflags" \
		-o "$work/out/" "${pkgs[@]}" >"$work/kube-build.log" 2>&1); then
		tail -n 20 "$work/kube-build.log" >&2
		fail "building ${missing[*]} failed (log above); fix the cause, then run hack/setup-node.sh again"
	fi
	for b in "${missing[@]}"; do
		install_bin "$work/out/$b" "$b"
		log "$b v$KUBE_VERSION cached in $dir"
	done
fi

# --- containerd ----------------------------------------------------------------
missing=()
for b in "${containerd_bins[@]}"; do [ -x "$dir/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -gt 0 ]; then
	log "building ${missing[*]} v$CONTAINERD_VERSION from the Go module proxy (a few minutes, once)"
	mkdir -p "$work/gobin"
	pkgs=()
	for b in "${missing[@]}"; do pkgs+=("github.com/containerd/containerd/v2/cmd/$b@v$CONTAINERD_VERSION"); done
	# No cgo: the btrfs snapshotter and devmapper are not needed (overlayfs
	# is what the kubelet's pods use).
	if ! (cd "$work" && CGO_ENABLED=0 GOBIN="$work/gobin" GOFLAGS="" go install -trimpath -tags "no_btrfs no_devmapper" \
		-ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=v$CONTAINERD_VERSION" \
		"${pkgs[@]}" >"$work/containerd-build.log" 2>&1); then
		tail -n 20 "$work/containerd-build.log" >&2
		fail "building containerd v$CONTAINERD_VERSION failed (log above); check the Go module proxy, then run hack/setup-node.sh again"
	fi
	for b in "${missing[@]}"; do
		install_bin "$work/gobin/$b" "$b"
		log "$b v$CONTAINERD_VERSION cached in $dir"
	done
fi

# --- runc ------------------------------------------------------------------------
if [ ! -x "$dir/runc" ]; then
	log "building runc v$RUNC_VERSION with seccomp from the Go module proxy (about a minute, once)"
	mkdir -p "$work/gobin"
	if ! (cd "$work" && CGO_ENABLED=1 GOBIN="$work/gobin" GOFLAGS="" go install -trimpath -tags seccomp \
		-ldflags "-s -w -X main.version=$RUNC_VERSION" \
		"github.com/opencontainers/runc@v$RUNC_VERSION" >"$work/runc-build.log" 2>&1); then
		tail -n 20 "$work/runc-build.log" >&2
		fail "building runc v$RUNC_VERSION failed (log above); it needs libseccomp-dev and pkg-config, then run hack/setup-node.sh again"
	fi
	install_bin "$work/gobin/runc" runc
	log "runc v$RUNC_VERSION cached in $dir"
fi

# --- crictl -----------------------------------------------------------------------
if [ ! -x "$dir/crictl" ]; then
	log "building crictl v$CRICTL_VERSION from the Go module proxy (a minute or two, once)"
	mkdir -p "$work/gobin"
	if ! (cd "$work" && CGO_ENABLED=0 GOBIN="$work/gobin" GOFLAGS="" go install -trimpath -ldflags "-s -w" \
		"sigs.k8s.io/cri-tools/cmd/crictl@v$CRICTL_VERSION" >"$work/crictl-build.log" 2>&1); then
		tail -n 20 "$work/crictl-build.log" >&2
		fail "building crictl v$CRICTL_VERSION failed (log above); check the Go module proxy, then run hack/setup-node.sh again"
	fi
	install_bin "$work/gobin/crictl" crictl
	log "crictl v$CRICTL_VERSION cached in $dir"
fi

ready || fail "the cache in $dir is incomplete; remove it and run hack/setup-node.sh again"
echo "$dir"
