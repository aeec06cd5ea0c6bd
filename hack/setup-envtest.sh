#!/usr/bin/env bash
# setup-envtest.sh prepares the binaries that envtest needs (etcd and
# kube-apiserver), caches them under <cache>/k8s/<version>/ and prints the
# directory to use as KUBEBUILDER_ASSETS on its last line of stdout.
#
#   etcd            from Debian's etcd-server package (installed when missing)
#   kube-apiserver  built from the k8s.io/kubernetes Go module, with its version
#                   stamped through -ldflags so that Helm's kubeVersion checks
#                   see the real server version
#   kubectl         built from the same module and version, for the tests that
#                   run the documented kubectl commands against the test server
#
# A second run returns at once. Concurrent runs serialise on a lock file and
# every binary is written to a temporary name and renamed into place, so the
# cache is never left half-written.
#
# Environment:
#   KUBE_VERSION   kube-apiserver release to build (default below)
#   GADGETPM_BIN   cache root (default: $XDG_CACHE_HOME/gadgetpm, else
#                  ~/.cache/gadgetpm: outside the checkout, so a fresh clone
#                  on a machine that built them before rebuilds nothing)
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.36.3}"
bin_root="${GADGETPM_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/gadgetpm}"
assets="$bin_root/k8s/$KUBE_VERSION-linux-$(go env GOARCH 2>/dev/null || echo amd64)"

log() { echo "setup-envtest: $*" >&2; }
fail() {
	echo "setup-envtest: error: $*" >&2
	exit 1
}

ready() { [ -x "$assets/kube-apiserver" ] && [ -x "$assets/etcd" ] && [ -x "$assets/kubectl" ]; }

if ready; then
	echo "$assets"
	exit 0
fi

command -v go >/dev/null 2>&1 || fail "go is not on PATH; install Go 1.26 and run hack/setup-envtest.sh again"
command -v flock >/dev/null 2>&1 || fail "flock is missing; run 'apt-get install -y util-linux' and run hack/setup-envtest.sh again"

mkdir -p "$assets"
exec 9>"$bin_root/.setup-envtest.lock"
if ! flock -n 9; then
	log "another setup-envtest.sh is running; waiting for it to finish"
	flock 9
fi
if ready; then
	echo "$assets"
	exit 0
fi

# --- etcd -------------------------------------------------------------------
if [ ! -x "$assets/etcd" ]; then
	if ! command -v etcd >/dev/null 2>&1 && [ ! -x /usr/bin/etcd ]; then
		log "installing etcd-server from Debian's packages"
		export DEBIAN_FRONTEND=noninteractive
		if ! apt-get install -y etcd-server >/dev/null 2>&1; then
			apt-get update >/dev/null 2>&1 || true
			apt-get install -y etcd-server >/dev/null 2>&1 ||
				fail "could not install etcd-server; run 'apt-get update && apt-get install -y etcd-server' as root, then run hack/setup-envtest.sh again"
		fi
		# Debian starts an etcd service on install; the tests run their own.
		if command -v systemctl >/dev/null 2>&1; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi
	fi
	etcd_path="$(command -v etcd || echo /usr/bin/etcd)"
	ln -sf "$etcd_path" "$assets/.etcd.tmp"
	mv -f "$assets/.etcd.tmp" "$assets/etcd"
fi

# --- kube-apiserver and kubectl ------------------------------------------------
if [ ! -x "$assets/kube-apiserver" ] || [ ! -x "$assets/kubectl" ]; then
	work="$(mktemp -d "${TMPDIR:-/tmp}/gadgetpm-apiserver.XXXXXX")"
	trap 'rm -rf "$work"' EXIT

	# shellcheck source=hack/lib/kube-module.sh
	. "$(dirname "${BASH_SOURCE[0]}")/lib/kube-module.sh"
	kube_module "$work" setup-envtest.sh
	# One go build for both binaries: the go command schedules their
	# packages together, so kubectl's own packages compile while
	# kube-apiserver's longest packages and its link hold one core.
	missing=()
	for name in kube-apiserver kubectl; do [ -x "$assets/$name" ] || missing+=("$name"); done
	log "building ${missing[*]} v$KUBE_VERSION from the k8s.io/kubernetes module (about 10 minutes on 2 cores, once)"
	out="$work/out"
	mkdir -p "$out"
	pkgs=()
	for name in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$name"); done
	# The linker drops debug information (-s -w), so the compiler need not
	# produce it either (-dwarf=false). The compiler does not inline either
	# (-l): a fifth less compile CPU on 2,000 packages, for a server that
	# answers a few thousand test requests; what it does is unchanged
	# (docs/development.md).
	if ! (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -gcflags="all=-dwarf=false -l" -ldflags "$kube_ldflags" \
		-o "$out/" "${pkgs[@]}" >"$work/build.log" 2>&1); then
		tail -n 20 "$work/build.log" >&2
		fail "building ${missing[*]} failed (log above); fix the cause, then run hack/setup-envtest.sh again"
	fi
	for name in "${missing[@]}"; do
		# Same file system as the cache: the rename below is atomic.
		cp "$out/$name" "$assets/.$name.tmp"
		mv -f "$assets/.$name.tmp" "$assets/$name"
		if [ "$name" = kubectl ]; then v="$("$assets/kubectl" version --client 2>/dev/null || true)"; else v="$("$assets/$name" --version 2>/dev/null || true)"; fi
		v="${v%%$'\n'*}"
		log "$name $v cached in $assets"
	done
fi

ready || fail "the cache in $assets is incomplete; remove it and run hack/setup-envtest.sh again"
echo "$assets"
