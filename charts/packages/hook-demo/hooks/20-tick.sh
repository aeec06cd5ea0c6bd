#!/bin/sh
# schedule: runs every 30 seconds in the package queue "ticks", so a slow
# tick never holds up the package's lifecycle in its main queue. A failed
# tick is logged and counted, not retried (allowFailure).
set -eu
if [ "${1:-}" = "--config" ]; then
	cat <<'CONFIG'
configVersion: v1
schedule:
- name: tick
  crontab: "@every 30s"
  queue: ticks
  allowFailure: true
CONFIG
	exit 0
fi
. "$(dirname "$0")/lib/common.sh"

# Binding context: [{"binding":"tick","type":"Schedule"}], one element per
# tick when ticks piled up in the queue and were merged.
ticks=$(grep -o '"type":"Schedule"' "$BINDING_CONTEXT_PATH" | wc -l | tr -d ' ')
metric hook_demo_ticks_total add "$ticks"
metric hook_demo_last_tick_timestamp_seconds set "$(date +%s)"
say "$ticks tick(s)"
