#!/bin/bash
# onStartup: reaches the API server the way a shell-operator hook does in a
# cluster, with kubectl and the credentials it is given (the hooks' own
# account, through KUBECONFIG), and records what it saw in a ConfigMap:
# proof for the end-to-end test that bash, jq and kubectl are on the
# image's PATH and whom the API server takes a hook for. The ConfigMap is
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
jq -cn --arg ns "$ns" --arg host "${KUBERNETES_SERVICE_HOST:-}" --arg port "${KUBERNETES_SERVICE_PORT:-}" \
	--arg kubeconfig "${KUBECONFIG:-}" --arg user "$user" --arg server "$server" \
	'{operation: "CreateOrUpdate", object: {apiVersion: "v1", kind: "ConfigMap",
	  metadata: {name: "e2e-incluster", namespace: $ns},
	  data: {serviceHost: $host, servicePort: $port, kubeconfig: $kubeconfig, user: $user, serverVersion: $server}}}' \
	>>"$KUBERNETES_PATCH_PATH"
echo "e2e-incluster: wrote $ns/e2e-incluster as $user"
