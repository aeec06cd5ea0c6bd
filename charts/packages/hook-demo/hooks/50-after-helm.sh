#!/bin/sh
# afterHelm: runs after every install or upgrade. A values patch that
# changes the values makes the operator upgrade the release once more; this
# one always writes the same value, so it changes them only the first time.
set -eu
if [ "${1:-}" = "--config" ]; then
	cat <<'CONFIG'
configVersion: v1
afterHelm: 10
CONFIG
	exit 0
fi
. "$(dirname "$0")/lib/common.sh"

values_patch add /hookDemo/afterHelmRan true
metric hook_demo_helm_hook_runs_total add 1 '{"binding":"afterHelm"}'
say "release applied"
