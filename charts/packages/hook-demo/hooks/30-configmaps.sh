#!/bin/sh
# kubernetes: watches ConfigMaps labelled gadgetpm.io/demo=true in every
# namespace. The jqFilter keeps only what the hook needs, so a change to
# anything else (annotations, managedFields) does not run it.
#
# For every run it records what it saw in a ConfigMap named hook-demo-seen
# in each namespace it saw objects in (an object patch), and counts the
# objects in a metric.
set -eu
if [ "${1:-}" = "--config" ]; then
	cat <<'CONFIG'
configVersion: v1
kubernetes:
- name: demo-configmaps
  apiVersion: v1
  kind: ConfigMap
  labelSelector:
    matchLabels:
      gadgetpm.io/demo: "true"
  jqFilter: '{at: (.metadata.namespace + "/" + .metadata.name), data: .data}'
  executeHookOnEvent: [Added, Modified, Deleted]
CONFIG
	exit 0
fi
. "$(dirname "$0")/lib/common.sh"

ctx=$(cat "$BINDING_CONTEXT_PATH")
# Each object the run is about has a filterResult whose first key is "at"
# ("namespace/name"): Synchronization lists every object, an Event one.
# Keys are sorted in gadgetpm's JSON and object data values are strings, so
# this pattern only matches filter results.
seen=$(printf '%s' "$ctx" | grep -o '"filterResult":{"at":"[^"]*"' | sed 's/.*"at":"\([^"]*\)"/\1/' | sort -u || true)
count=0
for o in $seen; do count=$((count + 1)); done
# "Synchronization" or "Event/Added", ... of every context, in order.
events=$(printf '%s' "$ctx" | grep -o '"type":"[A-Za-z]*"\(,"watchEvent":"[A-Za-z]*"\)\{0,1\}' |
	sed -e 's/"type":"Event","watchEvent":"\([A-Za-z]*\)"/Event\/\1/' -e 's/"type":"\([A-Za-z]*\)"/\1/' | tr '\n' ' ' | sed 's/ $//')

metric hook_demo_configmap_events_total add "$count"
say "$events: $count object(s): $(printf '%s' "$seen" | tr '\n' ' ')"

now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for ns in $(printf '%s\n' "$seen" | sed -n 's,/.*,,p' | sort -u); do
	names=$(printf '%s\n' "$seen" | sed -n "s,^$ns/,,p" | tr '\n' ' ' | sed 's/ $//')
	# CreateOrUpdate: the record is replaced on every run. It does not carry
	# the gadgetpm.io/demo label, so writing it does not run this hook again.
	cat >>"$KUBERNETES_PATCH_PATH" <<PATCH
{"operation":"CreateOrUpdate","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"hook-demo-seen","namespace":"$ns","labels":{"app.kubernetes.io/name":"hook-demo","app.kubernetes.io/managed-by":"gadgetpm-hook"}},"data":{"events":$(json_string "$events"),"objects":$(json_string "$names"),"seenAt":"$now","bindingContext":$(json_string "$ctx")}}}
PATCH
done
