#!/usr/bin/env bash
# setup-helm.sh builds the stock helm CLI, at the helm.sh/helm/v3 version
# go.mod requires, caches it under hack/bin/helm/<version>/helm and prints
# its path on its last line of stdout. The tests that check stock Helm
# reads `gadgetpm repo build` output run it.
#
# The CLI's own dependencies (flock, vcs, man pages) are not in go.sum, so
# it is built in a temporary module that requires only Helm; the Go module
# proxy is the only network it needs (about 4 minutes of CPU with a cold
# build cache, once).
#
# A second run returns at once. Concurrent runs serialise on a lock file and
# the binary is written to a temporary name and renamed into place, so the
# cache is never left half-written.
#
# Environment:
#   GADGETPM_BIN   cache root (default: <repo>/hack/bin)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_root="${GADGETPM_BIN:-$repo_root/hack/bin}"

log() { echo "setup-helm: $*" >&2; }
fail() {
	echo "setup-helm: error: $*" >&2
	exit 1
}

command -v go >/dev/null 2>&1 || fail "go is not on PATH; install Go 1.26 and run hack/setup-helm.sh again"
command -v flock >/dev/null 2>&1 || fail "flock is missing; run 'apt-get install -y util-linux' and run hack/setup-helm.sh again"

version="$(cd "$repo_root" && go list -m -f '{{.Version}}' helm.sh/helm/v3)" ||
	fail "cannot read the helm.sh/helm/v3 version from $repo_root/go.mod"
dir="$bin_root/helm/$version"
if [ -x "$dir/helm" ]; then
	echo "$dir/helm"
	exit 0
fi

mkdir -p "$dir"
exec 9>"$bin_root/.setup-helm.lock"
if ! flock -n 9; then
	log "another setup-helm.sh is running; waiting for it to finish"
	flock 9
fi
if [ -x "$dir/helm" ]; then
	echo "$dir/helm"
	exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/gadgetpm-helm.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "building helm $version from the helm.sh/helm/v3 module (once)"
{
	echo "module gadgetpm.local/helm"
	echo
	echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
	echo
	echo "require helm.sh/helm/v3 $version"
} >"$work/go.mod"
if ! (cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" \
	-o "$dir/.helm.tmp" helm.sh/helm/v3/cmd/helm >"$work/build.log" 2>&1); then
	tail -n 20 "$work/build.log" >&2
	fail "building helm failed (log above); check the Go module proxy, then run hack/setup-helm.sh again"
fi
mv -f "$dir/.helm.tmp" "$dir/helm"
log "$("$dir/helm" version --short 2>/dev/null) cached in $dir"
echo "$dir/helm"
