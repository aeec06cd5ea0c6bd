#!/bin/sh
# beforeHelm: runs before every install or upgrade of the package's Helm
# release. Its values patch takes effect in the render that follows.
set -eu
if [ "${1:-}" = "--config" ]; then
	cat <<'CONFIG'
configVersion: v1
beforeHelm: 10
CONFIG
	exit 0
fi
. "$(dirname "$0")/lib/common.sh"

# Binding context: [{"binding":"beforeHelm"}] (with "snapshots" when the
# hook also has kubernetes bindings).
values_patch add /hookDemo/beforeHelmRan true
metric hook_demo_helm_hook_runs_total add 1 '{"binding":"beforeHelm"}'
say "values: $(cat "$VALUES_PATH")"
