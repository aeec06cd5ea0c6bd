#!/usr/bin/env bash
# Benchmarks a hook run's fixed overhead against exec of the same script by
# hand, in the same run, and prints the median of each and their ratio.
#
#   hack/bench-hooks.sh [rounds]      (default 5 rounds of 200 runs each)
#
# The test binary starts the envtest control plane (TestMain), so
# KUBEBUILDER_ASSETS must point at it (hack/setup-envtest.sh prints it).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
command -v bash >/dev/null || { apt-get update && apt-get install -y bash; }
export KUBEBUILDER_ASSETS="${KUBEBUILDER_ASSETS:-$(hack/setup-envtest.sh)}"
out="$(go test -run '^$' -bench '^(BenchmarkHookRun|BenchmarkExecByHand)$' -benchtime 200x -count "$rounds" ./pkg/hooks/)"
echo "$out"
echo "$out" | awk '
  /^BenchmarkHookRun/    { run[nr++] = $3 }
  /^BenchmarkExecByHand/ { hand[nh++] = $3 }
  function median(a, n,   i, j, t) {
    for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[int(n / 2)] : (a[n / 2 - 1] + a[n / 2]) / 2
  }
  END {
    if (nr == 0 || nh == 0) { print "no benchmark results" > "/dev/stderr"; exit 1 }
    r = median(run, nr); h = median(hand, nh)
    printf "median hook run: %.2f ms, median exec by hand: %.2f ms, ratio %.2f, overhead %.2f ms\n", r / 1e6, h / 1e6, r / h, (r - h) / 1e6
  }'
