#!/usr/bin/env bash
# Benchmarks pkg/hooks:
#  1. a hook run's fixed overhead against exec of the same trivial bash
#     script by hand. BenchmarkHookRunOverhead alternates the two in one
#     loop, so both see the same machine load; this prints every round and
#     the median of each and of the ratio.
#  2. kubernetes-binding throughput: 2,000 ConfigMap changes through the
#     events manager to a trivial bash hook, with and without compaction
#     (BenchmarkKubernetesBindingThroughput, one iteration each).
#
#   hack/bench-hooks.sh [rounds]      (default 5 rounds of 200 runs each)
#
# The test binary starts the envtest control plane (TestMain), so
# KUBEBUILDER_ASSETS must point at it; hack/setup-envtest.sh provides it.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
command -v bash >/dev/null || { apt-get update && apt-get install -y bash; }
export KUBEBUILDER_ASSETS="${KUBEBUILDER_ASSETS:-$(hack/setup-envtest.sh)}"
out="$(go test -run '^$' -bench '^BenchmarkHookRunOverhead$' -benchtime 200x -count "$rounds" ./pkg/hooks/)"
echo "$out"
echo "$out" | awk '
  BEGIN { n = 0 }  # numeric from the start: an unset n indexes arrays by ""
  /^BenchmarkHookRunOverhead/ {
    for (i = 1; i < NF; i++) {
      if ($(i + 1) == "exec-ns/run") ex[n] = $i
      if ($(i + 1) == "hook-ns/run") hk[n] = $i
      if ($(i + 1) == "ratio") ra[n] = $i
    }
    n++
  }
  function median(a, n,   i, j, t) {
    for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[int(n / 2)] : (a[n / 2 - 1] + a[n / 2]) / 2
  }
  END {
    if (n == 0) { print "no benchmark results" > "/dev/stderr"; exit 1 }
    printf "median over %d rounds: hook run %.2f ms, exec by hand %.2f ms, ratio %.2f\n", n, median(hk, n) / 1e6, median(ex, n) / 1e6, median(ra, n)
  }'

go test -run '^$' -bench '^BenchmarkKubernetesBindingThroughput$' -benchtime 1x ./pkg/hooks/
