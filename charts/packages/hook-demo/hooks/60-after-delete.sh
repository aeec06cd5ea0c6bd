#!/bin/sh
# afterDeleteHelm: runs after the package's Helm release was uninstalled,
# when the package is removed. The hook-demo-seen records the kubernetes
# hook wrote are not part of the release; they are left for the user (see
# docs/hooks.md).
set -eu
if [ "${1:-}" = "--config" ]; then
	cat <<'CONFIG'
configVersion: v1
afterDeleteHelm: 10
CONFIG
	exit 0
fi
. "$(dirname "$0")/lib/common.sh"

metric hook_demo_helm_hook_runs_total add 1 '{"binding":"afterDeleteHelm"}'
say "release uninstalled"
