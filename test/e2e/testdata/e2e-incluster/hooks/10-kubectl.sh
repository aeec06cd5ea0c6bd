#!/bin/bash
# onStartup: reaches the API server the way a shell-operator hook does in a
# cluster, with kubectl and the KUBERNETES_SERVICE_HOST/PORT the pod has,
# and records what it saw in a ConfigMap: proof for the end-to-end test
# that bash, jq and kubectl are on the image's PATH and that the in-cluster
# credentials reach hooks.
set -euo pipefail
if [ "${1:-}" = "--config" ]; then
	echo '{"configVersion":"v1","onStartup":1}'
	exit 0
fi
ns=$(jq -r '.e2eIncluster.namespace' "$VALUES_PATH")
user=$(kubectl auth whoami -o jsonpath='{.status.userInfo.username}')
server=$(kubectl version -o json | jq -r '.serverVersion.gitVersion')
kubectl -n "$ns" create configmap e2e-incluster \
	--from-literal=serviceHost="${KUBERNETES_SERVICE_HOST:-}" \
	--from-literal=servicePort="${KUBERNETES_SERVICE_PORT:-}" \
	--from-literal=kubeconfig="${KUBECONFIG:-}" \
	--from-literal=user="$user" \
	--from-literal=serverVersion="$server" \
	--dry-run=client -o yaml | kubectl apply -f -
echo "e2e-incluster: wrote $ns/e2e-incluster as $user"
