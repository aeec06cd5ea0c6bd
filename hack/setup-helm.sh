#!/usr/bin/env bash
# setup-helm.sh builds the stock helm CLI (helm.sh/helm/v3/cmd/helm, a
# `tool` of go.mod, at the version go.mod requires), caches it under
# <cache>/helm/<version>[-race]/helm and prints its path on its last line
# of stdout. The tests that check stock Helm reads `gadgetpm repo build`
# output run it.
#
#   hack/setup-helm.sh          a plain build
#   hack/setup-helm.sh -race    a build with the race detector, which is
#                               what `make test` asks for: it reuses the
#                               Helm SDK packages the race-enabled test
#                               build has compiled, so it costs a link
#                               instead of minutes of compiling
#
# It is built in this module, so Helm's own code with the dependency
# versions this module resolves (the same the operator runs with); the Go
# module proxy is the only network it needs.
#
# A second run returns at once. Concurrent runs serialise on a lock file and
# the binary is written to a temporary name and renamed into place, so the
# cache is never left half-written.
#
# Environment:
#   GADGETPM_BIN   cache root (default: $XDG_CACHE_HOME/gadgetpm, else
#                  ~/.cache/gadgetpm: outside the checkout, so a fresh clone
#                  on a machine that built them before rebuilds nothing)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_root="${GADGETPM_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/gadgetpm}"

log() { echo "setup-helm: $*" >&2; }
fail() {
	echo "setup-helm: error: $*" >&2
	exit 1
}

race=()
suffix=""
case "${1:-}" in
"") ;;
# -race: the flags of make test's race build (Makefile RACE_FLAGS), so
# that the packages it compiled are reused
-race) race=(-race -gcflags=all=-dwarf=false) suffix="-race" ;;
*) fail "unknown argument '$1': expected no argument or -race" ;;
esac

command -v go >/dev/null 2>&1 || fail "go is not on PATH; install Go 1.26 and run hack/setup-helm.sh again"
command -v flock >/dev/null 2>&1 || fail "flock is missing; run 'apt-get install -y util-linux' and run hack/setup-helm.sh again"

version="$(cd "$repo_root" && go list -m -f '{{.Version}}' helm.sh/helm/v3)" ||
	fail "cannot read the helm.sh/helm/v3 version from $repo_root/go.mod"
dir="$bin_root/helm/$version$suffix"
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

build_log="$(mktemp "${TMPDIR:-/tmp}/gadgetpm-helm.XXXXXX")"
trap 'rm -f "$build_log"' EXIT
log "building helm $version${suffix:+ with the race detector} (once)"
if ! (cd "$repo_root" && go build "${race[@]}" -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" \
	-o "$dir/.helm.tmp" helm.sh/helm/v3/cmd/helm >"$build_log" 2>&1); then
	tail -n 20 "$build_log" >&2
	fail "building helm failed (log above); check the Go module proxy, then run hack/setup-helm.sh again"
fi
mv -f "$dir/.helm.tmp" "$dir/helm"
log "$("$dir/helm" version --short 2>/dev/null) cached in $dir"
echo "$dir/helm"
