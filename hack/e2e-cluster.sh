#!/usr/bin/env bash
# e2e-cluster.sh runs a real single-node Kubernetes cluster on this machine,
# for the end-to-end tests (make e2e) and for trying the chart by hand:
#
#   hack/e2e-cluster.sh up          start it (or keep the running one) and
#                                   print the kubeconfig path on the last line
#   hack/e2e-cluster.sh down        stop everything it started and restore
#                                   what it changed on the host
#   hack/e2e-cluster.sh run CMD...  up, run CMD with KUBECONFIG set, then
#                                   down whatever CMD did (make e2e uses it)
#   hack/e2e-cluster.sh status      say what runs
#
# Every part comes from an upstream source or Debian's packages
# (hack/setup-node.sh builds and caches them): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kube-proxy and the kubelet of
# one Kubernetes release, containerd v2 with runc, Debian's CNI plugins
# (bridge + host-local + portmap). It listens only on loopback and on a
# bridge of its own (gadgetpm0, 10.244.0.1/24), which pods use to reach the
# API server and anything the tests serve. The images of hack/image.sh
# (gadgetpm and pause) are imported with `ctr -n k8s.io images import`;
# pods use them with imagePullPolicy Never.
#
# What it changes on the host, and gives back on down: sysctls the kubelet,
# kube-proxy and the bridge plugin set (recorded before, restored after;
# kernel.panic and kernel.panic_on_oops are put back as soon as the kubelet
# has set them, so that an oops never reboots the machine), iptables chains
# (KUBE-* and CNI-* are removed), the bridge, pod network namespaces, the
# kubepods cgroups, a bpffs mount on /sys/fs/bpf when there was none,
# /var/log/containers links, and /run/containerd, /var/lib/kubelet and
# /var/lib/cni when it made them. Nothing it starts outlives it: down, an
# interrupted up and the end of run stop every process.
#
# Environment:
#   E2E_STATE      state and logs (default <cache>/e2e-cluster)
#   E2E_NODE       node name (default gadgetpm-e2e)
#   E2E_IMAGES     image tarballs to import, space-separated (default: what
#                  hack/image.sh builds)
#   IMAGE          the gadgetpm image's name, as hack/image.sh tags it
#   GADGETPM_BIN   cache root, as for every hack/ script
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_root="${GADGETPM_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/gadgetpm}"
state="${E2E_STATE:-$bin_root/e2e-cluster}"
node="${E2E_NODE:-gadgetpm-e2e}"
bridge=gadgetpm0
node_ip=10.244.0.1
pod_cidr=10.244.0.0/24
service_cidr=10.245.0.0/24
service_ip=10.245.0.1
etcd_port=23790
pki="$state/pki"
logs="$state/logs"
pids="$state/pids"
host="$state/host" # what the host looked like before up
# sysctls that the kubelet (kernel defaults), kube-proxy (conntrack,
# route_localnet) and the bridge plugin (ip_forward) may write.
sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
	kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
	net.ipv4.conf.all.route_localnet net.netfilter.nf_conntrack_max
	net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait)
# Start order; down stops them in reverse.
components=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)

# A signal ends the script through exit, so that the EXIT traps below tear
# down what was started.
trap 'exit 130' INT TERM HUP

log() { echo "e2e-cluster: $*" >&2; }
fail() {
	echo "e2e-cluster: error: $*" >&2
	exit 1
}

# --- processes -----------------------------------------------------------------
pid_of() { if [ -f "$pids/$1" ]; then cat "$pids/$1" 2>/dev/null || true; fi; }
alive() {
	local p
	p="$(pid_of "$1")"
	[ -n "$p" ] && kill -0 "$p" 2>/dev/null
}

start() { # start <name> <binary> <args...>: in its own session, logging to $logs/<name>.log
	local name="$1"
	shift
	log "starting $name (log: $logs/$name.log)"
	setsid "$@" >"$logs/$name.log" 2>&1 </dev/null &
	echo $! >"$pids/$name"
}

stop_pid() { # stop_pid <name> <pid>: TERM, then KILL after 15 s
	local name="$1" p="$2" i
	kill -0 "$p" 2>/dev/null || return 0
	log "stopping $name (pid $p)"
	kill -TERM "$p" 2>/dev/null || true
	for i in $(seq 1 30); do
		kill -0 "$p" 2>/dev/null || return 0
		sleep 0.5
	done
	log "$name did not stop in 15 s; killing it"
	kill -KILL "$p" 2>/dev/null || true
	for i in $(seq 1 20); do
		kill -0 "$p" 2>/dev/null || return 0
		sleep 0.25
	done
}

stop() {
	local p
	p="$(pid_of "$1")"
	[ -n "$p" ] && stop_pid "$1" "$p"
	rm -f "$pids/$1"
}

# component_failed <name> <what>: names the component, its log and its last
# lines, then fails (the caller's trap tears down).
component_failed() {
	local name="$1" what="$2"
	{
		echo "e2e-cluster: error: $name $what"
		echo "e2e-cluster: its log is $logs/$name.log; last lines:"
		tail -n 25 "$logs/$name.log" 2>/dev/null | sed 's/^/    /'
	} >&2
	exit 1
}

# wait_for <component> <what> <seconds> <command...>: prints what it waits
# for, fails naming the component when it exits or the time runs out.
wait_for() {
	local name="$1" what="$2" secs="$3" i start=$SECONDS
	shift 3
	log "waiting for $what (up to ${secs}s)"
	for ((i = 0; i < secs * 2; i++)); do
		if "$@" >/dev/null 2>&1; then
			log "$what: ready after $((SECONDS - start))s"
			return 0
		fi
		if [ -n "$(pid_of "$name")" ] && ! alive "$name"; then
			component_failed "$name" "exited while starting (waiting for $what)"
		fi
		sleep 0.5
	done
	component_failed "$name" "was not ready after ${secs}s (waiting for $what)"
}

kc() { "$bins/kubectl" --kubeconfig "$state/admin.kubeconfig" "$@"; }

# --- host state ---------------------------------------------------------------------
record_host() {
	[ -f "$host/recorded" ] && return 0
	mkdir -p "$host"
	local s
	: >"$host/sysctls"
	for s in "${sysctls[@]}"; do
		if v="$(sysctl -n "$s" 2>/dev/null)"; then printf '%s=%s\n' "$s" "$v" >>"$host/sysctls"; fi
	done
	iptables-save >"$host/iptables" 2>/dev/null || true
	ip6tables-save >"$host/ip6tables" 2>/dev/null || true
	nft list tables >"$host/nft-tables" 2>/dev/null || true
	[ -d /run/containerd ] && touch "$host/had-run-containerd"
	# The kubelet's device-plugin socket and the CNI plugins' result cache
	# live at fixed paths.
	[ -d /var/lib/kubelet ] && touch "$host/had-var-lib-kubelet"
	[ -d /var/lib/cni ] && touch "$host/had-var-lib-cni"
	[ -d /var/log/containers ] && touch "$host/had-var-log-containers"
	awk '$2 == "/sys/fs/bpf" {found=1} END {exit !found}' /proc/mounts && touch "$host/had-bpffs"
	ls /sys/fs/cgroup >"$host/cgroup-roots"
	touch "$host/recorded"
}

restore_sysctl() { # restore_sysctl <name>: back to its recorded value
	local want
	want="$(sed -n "s/^$1=//p" "$host/sysctls" 2>/dev/null)"
	[ -n "$want" ] || return 0
	if [ "$(sysctl -n "$1" 2>/dev/null)" != "$want" ]; then
		sysctl -q -w "$1=$want" >/dev/null 2>&1 || log "warning: could not restore $1=$want"
	fi
}

# clean_iptables removes every chain the kubelet, kube-proxy and the CNI
# plugins made (KUBE-*, CNI-*) and every rule that jumps to one, and keeps
# everything else, including rules other programs added meanwhile.
clean_iptables() {
	local save restore cur
	for save in iptables-save ip6tables-save; do
		restore="${save%-save}-restore"
		command -v "$save" >/dev/null 2>&1 || continue
		cur="$("$save" 2>/dev/null)" || continue
		grep -qE 'KUBE-|CNI-' <<<"$cur" || continue
		grep -vE '^:(KUBE-|CNI-)|^-A (KUBE-|CNI-)|-j (KUBE-|CNI-)' <<<"$cur" | "$restore" ||
			log "warning: could not remove the KUBE-/CNI- chains with $restore; see '$save'"
	done
}

# drop_new_tables deletes the iptables tables (nftables tables of the
# iptables-nft backend) that did not exist before up and are empty once
# the KUBE-/CNI- chains are gone: iptables cannot delete a table.
drop_new_tables() {
	command -v nft >/dev/null 2>&1 || return 0
	local fam name
	nft list tables 2>/dev/null | while read -r _ fam name; do
		case "$name" in filter | nat | mangle | raw | security | kube-proxy) ;; *) continue ;; esac
		grep -qx "table $fam $name" "$host/nft-tables" 2>/dev/null && continue
		# Only base chains with no rule: nothing of anyone else's.
		if ! nft list table "$fam" "$name" 2>/dev/null | grep -qvE '^\s*(table|chain|type|policy|\}|$)'; then
			nft delete table "$fam" "$name" 2>/dev/null || log "warning: could not delete the nftables table $fam $name"
		fi
	done
}

restore_host() {
	[ -f "$host/recorded" ] || return 0
	local s
	for s in "${sysctls[@]}"; do restore_sysctl "$s"; done
	clean_iptables
	drop_new_tables
	# containerd's shims keep their sockets under /run/containerd/s.
	[ -f "$host/had-run-containerd" ] || rm -rf /run/containerd
	[ -f "$host/had-var-lib-kubelet" ] || rm -rf /var/lib/kubelet
	[ -f "$host/had-var-lib-cni" ] || rm -rf /var/lib/cni
	if [ ! -f "$host/had-bpffs" ] && awk '$2 == "/sys/fs/bpf" {found=1} END {exit !found}' /proc/mounts; then
		umount /sys/fs/bpf 2>/dev/null || log "warning: could not unmount /sys/fs/bpf"
	elif [ -f "$host/bpffs-was-private" ]; then
		mount --make-private /sys/fs/bpf 2>/dev/null || log "warning: could not make /sys/fs/bpf private again"
	fi
	if [ -d /var/log/containers ]; then
		find /var/log/containers -maxdepth 1 -type l -lname "$state/*" -delete 2>/dev/null || true
		[ -f "$host/had-var-log-containers" ] || rmdir /var/log/containers 2>/dev/null || true
	fi
	rm -rf "$host"
}

# --- teardown -----------------------------------------------------------------------------
# kill_pods stops what runs in pods: through the CRI first (containerd then
# tears each pod's network down with the CNI plugins), then whatever is left
# in the kubepods cgroups and the shims of this containerd.
kill_pods() {
	local sock="$state/containerd/containerd.sock" p ids
	if [ -S "$sock" ] && alive containerd && [ -x "$bins/crictl" ]; then
		ids="$("$bins/crictl" --runtime-endpoint "unix://$sock" --timeout 20s pods -q 2>/dev/null || true)"
		if [ -n "$ids" ]; then
			log "stopping $(wc -l <<<"$ids") pod sandboxes through the CRI"
			for p in $ids; do
				timeout 60 "$bins/crictl" --runtime-endpoint "unix://$sock" --timeout 30s stopp "$p" >/dev/null 2>&1 || true
				timeout 60 "$bins/crictl" --runtime-endpoint "unix://$sock" --timeout 30s rmp -f "$p" >/dev/null 2>&1 || true
			done
		fi
	fi
	local d procs
	for d in /sys/fs/cgroup/*/kubepods; do
		[ -d "$d" ] || continue
		procs="$(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)"
		# shellcheck disable=SC2086 # one argument per pid
		if [ -n "$procs" ]; then kill -KILL $procs 2>/dev/null || true; fi
	done
	for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $sock" 2>/dev/null || true); do
		kill -KILL "$p" 2>/dev/null || true
	done
}

remove_cgroups() {
	local d i
	for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
		[ -d "$d" ] || continue
		for i in 1 2 3 4 5; do
			find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
			[ -d "$d" ] || break
			sleep 1
		done
		[ -d "$d" ] && log "warning: could not remove the cgroup $d (processes left in it?)"
	done
	return 0
}

unmount_state() {
	local m
	# Deepest first; lazily, so a mount still busy goes when it is free.
	for m in $(awk -v s="$state/" 'index($2, s) == 1 {print $2}' /proc/mounts | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
	done
}

down() {
	local c i
	[ -d "$state" ] || return 0
	if [ -z "${bins:-}" ]; then bins="$(cat "$state/bins" 2>/dev/null || true)"; fi
	stop kube-proxy
	stop kubelet
	kill_pods
	for ((i = ${#components[@]} - 1; i >= 0; i--)); do
		c="${components[i]}"
		case "$c" in kubelet | kube-proxy) continue ;; esac
		stop "$c"
	done
	unmount_state
	remove_cgroups
	if ip link show "$bridge" >/dev/null 2>&1; then
		log "removing the bridge $bridge"
		ip link del "$bridge" 2>/dev/null || log "warning: could not remove the bridge $bridge"
	fi
	restore_host
	# Keep the logs for a post-mortem; the rest goes.
	find "$state" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} + 2>/dev/null || true
	log "down: nothing of the cluster runs; logs kept in $logs"
}

# --- configuration ----------------------------------------------------------------------------
make_pki() {
	mkdir -p "$pki"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=gadgetpm-e2e-ca" \
		-keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
	openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
	openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
	cert() { # cert <name> <subject> [subjectAltName]
		local ext="$pki/$1.ext"
		echo "basicConstraints=CA:FALSE" >"$ext"
		echo "keyUsage=digitalSignature,keyEncipherment" >>"$ext"
		if [ -n "${3:-}" ]; then
			echo "extendedKeyUsage=serverAuth,clientAuth" >>"$ext"
			echo "subjectAltName=$3" >>"$ext"
		else
			echo "extendedKeyUsage=clientAuth" >>"$ext"
		fi
		openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
		openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
			-days 2 -extfile "$ext" -out "$pki/$1.crt" 2>/dev/null
	}
	cert apiserver "/CN=kube-apiserver" "IP:$node_ip,IP:$service_ip,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	cert admin "/O=system:masters/CN=e2e-admin"
	cert apiserver-kubelet "/O=system:masters/CN=kube-apiserver-kubelet-client"
	cert kubelet "/O=system:nodes/CN=system:node:$node"
	cert controller-manager "/CN=system:kube-controller-manager"
	cert scheduler "/CN=system:kube-scheduler"
	cert proxy "/CN=system:kube-proxy"
	for n in admin kubelet controller-manager scheduler proxy; do
		cat >"$state/$n.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://$node_ip:6443
    certificate-authority: $pki/ca.crt
users:
- name: $n
  user:
    client-certificate: $pki/$n.crt
    client-key: $pki/$n.key
contexts:
- name: e2e
  context: {cluster: e2e, user: $n}
current-context: e2e
EOF
	done
}

write_configs() {
	mkdir -p "$state/containerd" "$state/cni/net.d" "$state/kubelet" "$state/pod-logs"
	cat >"$state/containerd/config.toml" <<EOF
version = 3
root = "$state/containerd/root"
state = "$state/containerd/state"

[grpc]
  address = "$state/containerd/containerd.sock"

[ttrpc]
  address = "$state/containerd/containerd.sock.ttrpc"

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "gadgetpm.local/pause:1"

[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = "$state/cni/net.d"

[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = "runc"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = "$bins/runc"
  Root = "$state/runc"
  SystemdCgroup = false
EOF
	cat >"$state/cni/net.d/10-gadgetpm-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "gadgetpm-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$state/cni/ipam",
        "ranges": [[{"subnet": "$pod_cidr", "rangeStart": "10.244.0.10", "gateway": "$node_ip"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
	cat >"$state/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://$state/containerd/containerd.sock
# This machine has cgroup v1 hierarchies only.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
podLogsDir: $state/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization:
  mode: Webhook
resolvConf: /etc/resolv.conf
# The machine is shared: do not evict for a busy disk or memory.
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
	cat >"$state/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $pod_cidr
hostnameOverride: $node
bindAddress: $node_ip
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection:
  kubeconfig: $state/proxy.kubeconfig
# Leave the host's conntrack sysctls and route_localnet alone.
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
EOF
}

# --- up ---------------------------------------------------------------------------------------
healthy() {
	local c
	for c in "${components[@]}"; do alive "$c" || return 1; done
	kc get --raw /readyz >/dev/null 2>&1
}

node_ready() {
	[ "$(kc get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

up() {
	[ "$(id -u)" = 0 ] || fail "a cluster on this machine needs root (containerd, kubelet, iptables); run it as root"
	if [ -f "$state/bins" ]; then bins="$(cat "$state/bins")"; fi
	if [ -n "${bins:-}" ] && healthy; then
		log "the cluster is already up"
		echo "$state/admin.kubeconfig"
		return 0
	fi
	if [ -d "$pids" ] || [ -f "$host/recorded" ]; then
		log "a previous cluster was left behind; tearing it down first"
		down
	fi
	bins="$("$repo_root/hack/setup-node.sh" | tail -n 1)" || fail "hack/setup-node.sh failed (output above)"
	local images
	if [ -n "${E2E_IMAGES:-}" ]; then
		images="$E2E_IMAGES"
	else
		images="$("$repo_root/hack/image.sh" | tail -n 2 | tr '\n' ' ')" || fail "hack/image.sh failed (output above)"
	fi
	local img
	for img in $images; do [ -f "$img" ] || fail "image tarball $img does not exist; run make image, or fix E2E_IMAGES"; done

	mkdir -p "$state" "$logs" "$pids"
	rm -f "$logs"/*.log
	echo "$bins" >"$state/bins"
	trap 'log "up failed or was interrupted; tearing down"; down' EXIT
	record_host

	# The node's own address, on a bridge of its own; the CNI bridge
	# plugin attaches pods to it.
	if ! ip link show "$bridge" >/dev/null 2>&1; then
		ip link add "$bridge" type bridge
		ip addr add "$node_ip/24" dev "$bridge"
	fi
	ip link set "$bridge" up
	# bpffs, as systemd mounts it on every distribution: shared, so the
	# chart's Bidirectional mount of it works (containerd refuses it on a
	# private mount). A private one the host had is made private again on
	# down.
	if ! awk '$2 == "/sys/fs/bpf" {found=1} END {exit !found}' /proc/mounts; then
		mount -t bpf bpf /sys/fs/bpf
	fi
	if ! awk '$5 == "/sys/fs/bpf" && / shared:/ {found=1} END {exit !found}' /proc/self/mountinfo; then
		[ -f "$host/had-bpffs" ] && touch "$host/bpffs-was-private"
		mount --make-shared /sys/fs/bpf
	fi

	make_pki
	write_configs
	export PATH="$bins:$PATH"

	start etcd "$bins/etcd" --name e2e --data-dir "$state/etcd" \
		--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$((etcd_port + 10))" --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 10))" \
		--initial-cluster "e2e=http://127.0.0.1:$((etcd_port + 10))" --unsafe-no-fsync
	wait_for etcd "etcd (/health)" 60 curl -sf "http://127.0.0.1:$etcd_port/health"

	start kube-apiserver "$bins/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
		--bind-address "$node_ip" --advertise-address "$node_ip" --secure-port 6443 \
		--service-cluster-ip-range "$service_cidr" \
		--client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
		--kubelet-client-certificate "$pki/apiserver-kubelet.crt" --kubelet-client-key "$pki/apiserver-kubelet.key" \
		--kubelet-preferred-address-types InternalIP \
		--authorization-mode Node,RBAC --allow-privileged=true --enable-admission-plugins NodeRestriction
	wait_for kube-apiserver "kube-apiserver (/readyz)" 180 kc get --raw /readyz

	start kube-controller-manager "$bins/kube-controller-manager" --kubeconfig "$state/controller-manager.kubeconfig" \
		--authentication-kubeconfig "$state/controller-manager.kubeconfig" --authorization-kubeconfig "$state/controller-manager.kubeconfig" \
		--bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
		--service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
		--cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
		--service-cluster-ip-range "$service_cidr"
	start kube-scheduler "$bins/kube-scheduler" --kubeconfig "$state/scheduler.kubeconfig" \
		--authentication-kubeconfig "$state/scheduler.kubeconfig" --authorization-kubeconfig "$state/scheduler.kubeconfig" \
		--bind-address 127.0.0.1 --leader-elect=false
	wait_for kube-controller-manager "kube-controller-manager (/healthz)" 120 curl -skf https://127.0.0.1:10257/healthz
	wait_for kube-scheduler "kube-scheduler (/healthz)" 120 curl -skf https://127.0.0.1:10259/healthz

	start containerd "$bins/containerd" --config "$state/containerd/config.toml"
	wait_for containerd "containerd (ctr version)" 60 "$bins/ctr" --address "$state/containerd/containerd.sock" version
	for img in $images; do
		log "importing $(basename "$img") into containerd"
		"$bins/ctr" --address "$state/containerd/containerd.sock" -n k8s.io images import "$img" >>"$logs/ctr-import.log" 2>&1 ||
			component_failed ctr-import "could not import $img"
	done

	start kubelet "$bins/kubelet" --config "$state/kubelet/config.yaml" --kubeconfig "$state/kubelet.kubeconfig" \
		--root-dir "$state/kubelet" --cert-dir "$state/kubelet/pki" --hostname-override "$node" --node-ip "$node_ip"
	wait_for kubelet "kubelet (/healthz)" 120 curl -sf http://127.0.0.1:10248/healthz
	wait_for kubelet "node $node Ready" 120 node_ready
	# The kubelet sets kernel.panic=10 and kernel.panic_on_oops=1 once, as
	# it starts its container manager (before the node is Ready); put them
	# back now, so that an oops never reboots this machine.
	restore_sysctl kernel.panic
	restore_sysctl kernel.panic_on_oops

	start kube-proxy "$bins/kube-proxy" --config "$state/kube-proxy.yaml"
	wait_for kube-proxy "kube-proxy (the kubernetes Service in iptables)" 60 sh -c "iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q 'default/kubernetes'"
	wait_for kube-controller-manager "the default ServiceAccount" 120 kc -n default get serviceaccount default

	trap - EXIT
	log "up: node $node is Ready; export KUBECONFIG=$state/admin.kubeconfig"
	echo "$state/admin.kubeconfig"
}

status() {
	local c
	for c in "${components[@]}"; do
		if alive "$c"; then echo "$c: running (pid $(pid_of "$c"), log $logs/$c.log)"; else echo "$c: not running"; fi
	done
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
run)
	shift
	[ $# -gt 0 ] || fail "run needs a command: hack/e2e-cluster.sh run go test ..."
	trap 'down' EXIT
	kubeconfig="$(up | tail -n 1)"
	# up cleared its own trap in the subshell; this shell still tears down.
	# What the end-to-end tests (test/e2e) need to know of the cluster; the
	# chart's data directory lives in the state directory, so down removes it.
	mkdir -p "$state/gadgetpm-data"
	KUBECONFIG="$kubeconfig" E2E_KUBECTL="$(cat "$state/bins")/kubectl" E2E_NODE="$node" E2E_NODE_IP="$node_ip" \
		E2E_IMAGE="${IMAGE:-gadgetpm.local/gadgetpm:dev}" E2E_DATA_DIR="$state/gadgetpm-data" "$@"
	;;
*)
	echo "usage: hack/e2e-cluster.sh up|down|status|run CMD..." >&2
	exit 2
	;;
esac
