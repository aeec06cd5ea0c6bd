#!/usr/bin/env bash
# test-prepare.sh gets everything `make test` needs before `go test` runs,
# doing the two long jobs of a cold machine side by side so that neither
# core sits idle while one of them links or waits for the module proxy:
#
#   1. hack/setup-envtest.sh: etcd, and kube-apiserver and kubectl built
#      from the k8s.io/kubernetes module (~10 minutes of one job, once)
#   2. the generated-files check, then this module and every dependency
#      compiled with the flags `go test` will use (so the test run finds
#      them in the build cache), then the stock helm CLI; controller-gen
#      and helm are go.mod tools built with -race, so they share those
#      compiled packages instead of compiling their own
#
# With everything cached it takes seconds. It fails when either job fails,
# after both have ended, with each job's own message.
#
#   hack/test-prepare.sh [go build flags, e.g. -race]
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

log() { echo "test-prepare: $*" >&2; }

race=""
for f in "$@"; do [ "$f" = -race ] && race="-race"; done

start=$SECONDS
# Each job says when it is done, so a slow preparation shows which job
# held it up.
envtest_job() {
	hack/setup-envtest.sh >/dev/null
	log "etcd, kube-apiserver and kubectl ready after $((SECONDS - start))s"
}
envtest_job &
envtest=$!

build() {
	make --no-print-directory generate-check
	log "compiling gadgetpm and its dependencies${race:+ with the race detector} (minutes on a cold build cache)"
	go build "$@" ./...
	hack/setup-helm.sh $race >/dev/null
	log "gadgetpm, its dependencies and the helm CLI compiled after $((SECONDS - start))s"
}
build "$@" &
builder=$!

rc=0
wait "$builder" || { rc=$?; log "error: the generated-files check or the build failed (see above)"; }
wait "$envtest" || { rc=$?; log "error: hack/setup-envtest.sh failed (see above)"; }
if [ "$rc" -eq 0 ]; then
	log "ready in $((SECONDS - start))s"
fi
exit "$rc"
