#!/usr/bin/env bash
# test-controlplane.sh runs a command (make test's `go test ./...`) with one
# control plane that all its test binaries share: kube-apiserver and etcd
# are started once, with gadgetpm's CRDs installed, instead of once per
# test binary. The binaries find it through GADGETPM_TEST_KUBECONFIG
# (internal/testenv) and each works in a shard of its own: its gadgetpm
# objects labelled sharding.gadgetpm.io/key=<shard>, its namespaces
# prefixed with the shard, its operators run with
# --watch-label-selector. The control plane is stopped when the command
# ends, fails or is interrupted.
#
#   hack/test-controlplane.sh [go build flags, e.g. -race] -- command [args...]
#
# KUBEBUILDER_ASSETS (hack/setup-envtest.sh) must be set, as for go test.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { echo "test-controlplane: $*" >&2; }

build_flags=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
	build_flags+=("$1")
	shift
done
if [ $# -lt 2 ]; then
	echo "usage: $0 [go build flags] -- command [args...]" >&2
	exit 2
fi
shift

dir="$(mktemp -d "${TMPDIR:-/tmp}/gadgetpm-controlplane.XXXXXX")"
pid=""
cleanup() {
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Built with the test run's flags, so it reuses the packages go test
# compiles (a link, not a build).
(cd "$repo_root" && go build "${build_flags[@]}" -o "$dir/testcontrolplane" ./internal/testenv/controlplane)
"$dir/testcontrolplane" -out "$dir/kubeconfig" &
pid=$!
# the kubeconfig appears once the control plane answers with the CRDs
# installed; the program gives up by itself after two minutes
while [ ! -e "$dir/kubeconfig" ]; do
	if ! kill -0 "$pid" 2>/dev/null; then
		wait "$pid" || true
		pid=""
		log "error: the shared control plane did not start (see above)"
		exit 1
	fi
	sleep 0.2
done

rc=0
GADGETPM_TEST_KUBECONFIG="$dir/kubeconfig" "$@" || rc=$?
exit "$rc"
