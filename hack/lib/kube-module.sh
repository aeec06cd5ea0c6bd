# kube-module.sh is sourced by hack/setup-envtest.sh and hack/setup-node.sh,
# never run. It writes the one work module that every Kubernetes binary the
# project uses is built in (kube-apiserver and kubectl for the tests;
# kubelet, kube-controller-manager, kube-scheduler and kube-proxy for the
# end-to-end node), so that all of them share one set of compiled packages
# in the Go build cache: same module path, same requirements, same flags.
#
#   kube_module DIR SCRIPT
#
# writes DIR/go.mod (k8s.io/kubernetes at $KUBE_VERSION, every staging
# module it replaces with a local directory pinned to the matching
# published v0.<minor>.<patch>) and DIR/tools.go, resolves it with the Go
# module proxy (go get), and sets kube_ldflags to the linker flags that
# stamp the version (without them the binaries report v0.0.0 and Helm
# refuses charts with a kubeVersion). SCRIPT names the caller in errors.
# The caller defines fail().

kube_module() {
	local dir="$1" script="$2"
	local minor major patch staging_version gomod_json kube_gomod
	minor="${KUBE_VERSION#*.}"
	minor="${minor%%.*}"
	major="${KUBE_VERSION%%.*}"
	patch="${KUBE_VERSION##*.}"
	staging_version="v0.$minor.$patch"

	gomod_json="$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION")" ||
		fail "could not download k8s.io/kubernetes@v$KUBE_VERSION from the Go module proxy; check GOPROXY and network, then run hack/$script again"
	kube_gomod="$(printf '%s\n' "$gomod_json" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
	[ -f "$kube_gomod" ] || fail "k8s.io/kubernetes@v$KUBE_VERSION has no go.mod in the module cache; run 'go clean -modcache' and run hack/$script again"

	{
		echo "module gadgetpm.local/kube-apiserver"
		echo
		echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
		echo
		echo "require k8s.io/kubernetes v$KUBE_VERSION"
		echo
		# Every staging module that k8s.io/kubernetes replaces with a local
		# directory is pinned to the matching published v0.<minor>.<patch>.
		sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$kube_gomod" |
			while read -r mod; do echo "replace $mod => $mod $staging_version"; done
	} >"$dir/go.mod"
	echo 'package main' >"$dir/tools.go"

	kube_ldflags="-s -w"
	kube_ldflags+=" -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION"
	kube_ldflags+=" -X k8s.io/component-base/version.gitMajor=$major"
	kube_ldflags+=" -X k8s.io/component-base/version.gitMinor=$minor"
	kube_ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
	kube_ldflags+=" -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
	kube_ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=v$KUBE_VERSION"
	kube_ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=$major"
	kube_ldflags+=" -X k8s.io/client-go/pkg/version.gitMinor=$minor"

	if ! (cd "$dir" && GOFLAGS=-mod=mod go get "k8s.io/kubernetes@v$KUBE_VERSION" >"$dir/get.log" 2>&1); then
		tail -n 20 "$dir/get.log" >&2
		fail "resolving the k8s.io/kubernetes modules failed (log above); check the Go module proxy, then run hack/$script again"
	fi
}
