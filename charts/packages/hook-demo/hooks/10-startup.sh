#!/bin/sh
# onStartup: runs once each time the package starts, before its
# kubernetes bindings synchronize and before the first Helm install.
set -eu
if [ "${1:-}" = "--config" ]; then
	cat <<'CONFIG'
configVersion: v1
onStartup: 10
CONFIG
	exit 0
fi
. "$(dirname "$0")/lib/common.sh"

# Binding context: [{"binding":"onStartup"}]
say "started; binding context $(cat "$BINDING_CONTEXT_PATH")"
metric hook_demo_startups_total add 1
