#!/bin/bash
# onStartup: reaches the API server the way a shell-operator hook does in a
# cluster, with kubectl and the credentials it is given (the hooks' own
# account, through KUBECONFIG), and records what it saw in a ConfigMap:
# proof for the end-to-end test that bash, jq and kubectl are on the
# image's PATH and whom the API server takes a hook for. It also records
# what the hook sandbox leaves it: whether the pod's service-account token
# is readable, which packages' files it can list in the operator's data
# directory (its own only), its uid and its PID 1. The ConfigMap is
# written as an object patch, applied by the operator: the hooks' account
# only reads.
set -euo pipefail
if [ "${1:-}" = "--config" ]; then
	echo '{"configVersion":"v1","onStartup":1}'
	exit 0
fi
ns=$(jq -r '.e2eIncluster.namespace' "$VALUES_PATH")
user=$(kubectl auth whoami -o jsonpath='{.status.userInfo.username}')
server=$(kubectl version -o json | jq -r '.serverVersion.gitVersion')
token=absent
if [ -r /var/run/secrets/kubernetes.io/serviceaccount/token ] && cat /var/run/secrets/kubernetes.io/serviceaccount/token >/dev/null 2>&1; then
	token=readable
elif [ -e /var/run/secrets/kubernetes.io/serviceaccount/token ]; then
	token=unreadable
fi
# The operator's package store (--data-dir /var/lib/gadgetpm): extracted
# packages by digest, and their archives. The hook runs in its own.
packages=$(ls -A /var/lib/gadgetpm/packages/packages 2>/dev/null | tr '\n' ' ' || true)
archives=$(ls -A /var/lib/gadgetpm/packages/archives 2>/dev/null | tr '\n' ' ' || true)
jq -cn --arg ns "$ns" --arg host "${KUBERNETES_SERVICE_HOST:-}" --arg port "${KUBERNETES_SERVICE_PORT:-}" \
	--arg kubeconfig "${KUBECONFIG:-}" --arg user "$user" --arg server "$server" \
	--arg token "$token" --arg packages "${packages% }" --arg archives "${archives% }" --arg own "$PWD" \
	--arg uid "$(id -u)" --arg pid1 "$(tr '\0' ' ' </proc/1/cmdline)" \
	'{operation: "CreateOrUpdate", object: {apiVersion: "v1", kind: "ConfigMap",
	  metadata: {name: "e2e-incluster", namespace: $ns},
	  data: {serviceHost: $host, servicePort: $port, kubeconfig: $kubeconfig, user: $user, serverVersion: $server,
	    token: $token, packages: $packages, archives: $archives, ownDir: $own, uid: $uid, pid1: $pid1}}}' \
	>>"$KUBERNETES_PATCH_PATH"
echo "e2e-incluster: wrote $ns/e2e-incluster as $user"
