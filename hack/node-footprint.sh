#!/usr/bin/env bash
# node-footprint.sh: the node role's memory beside the full operator's, in
# one run against a real control plane (hack/nodefootprint does the
# measuring; docs/benchmarks.md records the figures).
#
# It builds both binaries the way the image does (-trimpath, -ldflags=-s -w),
# then, for one node of a cluster of CLUSTER_NODES Node objects (with the
# status a kubelet writes) and one process after the other, measures each
# idle and with TRACES Traces of the bundled trace-exec gadget started:
# VmRSS and its split RssAnon/RssFile (/proc/<pid>/status) and the Go heap
# in use (go_memstats_heap_inuse_bytes on the metrics endpoint), the median
# of SAMPLES readings after SETTLE seconds. It prints a table with the
# node/full ratios and the binaries' sizes.
#
#   sudo hack/node-footprint.sh
#   sudo TRACES=10 OUTPUT_MODE=File NODE_ENV='GOMEMLIMIT=32MiB' hack/node-footprint.sh
#
# FULL_BIN/FULL_ARGS: the full operator (default: ./cmd/gadgetpm, "operator").
# NODE_BIN/NODE_ARGS: the node role (default: ./cmd/gadgetpm-node; no args).
# NODE_ENV: extra environment of the node role (NAME=VALUE ...).
# Both get --kubeconfig, --node-name, --data-dir, --metrics-bind-address,
# --health-probe-bind-address and --node-check (false when CLUSTER_NODES=0)
# appended.
#
# Needs root (the gadget's eBPF program is loaded for real).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
TRACES="${TRACES:-10}"
SAMPLES="${SAMPLES:-5}"
SETTLE="${SETTLE:-10}"
OUTPUT_MODE="${OUTPUT_MODE:-Status}"
CLUSTER_NODES="${CLUSTER_NODES:-100}"
NODE_ENV="${NODE_ENV:-}"

if [ "$(id -u)" -ne 0 ]; then
	echo "node-footprint: run as root (the Traces load eBPF programs)" >&2
	exit 1
fi
export KUBEBUILDER_ASSETS="${KUBEBUILDER_ASSETS:-$(hack/setup-envtest.sh)}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
build() { # OUT PKG: build like the image
	echo "node-footprint: building $2" >&2
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$1" "$2"
}
if [ -z "${FULL_BIN:-}" ]; then
	FULL_BIN="$work/gadgetpm"
	build "$FULL_BIN" ./cmd/gadgetpm
fi
FULL_ARGS="${FULL_ARGS-operator --debug-socket=-}"
if [ -z "${NODE_BIN:-}" ]; then
	NODE_BIN="$work/gadgetpm-node"
	build "$NODE_BIN" ./cmd/gadgetpm-node
fi
NODE_ARGS="${NODE_ARGS-}"
go build -o "$work/nodefootprint" ./hack/nodefootprint

"$work/nodefootprint" --root "$root" --work "$work" \
	--full "$FULL_BIN $FULL_ARGS" --node "$NODE_BIN $NODE_ARGS" --node-env "$NODE_ENV" \
	--traces "$TRACES" --samples "$SAMPLES" --settle "${SETTLE}s" --output-mode "$OUTPUT_MODE" \
	--cluster-nodes "$CLUSTER_NODES"
echo
echo "| binary | size MiB |"
echo "| --- | --- |"
for b in "$FULL_BIN" "$NODE_BIN"; do
	printf '| %s | %.1f |\n' "$(basename "$b")" "$(awk -v s="$(stat -c %s "$b")" 'BEGIN { print s / 1048576 }')"
done
