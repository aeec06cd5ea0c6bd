// SPDX-License-Identifier: GPL-2.0
/* trace_tcpconnect: one event per IPv4 TCP connect(2) that the kernel
 * accepted for sending (the SYN is queued). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include <gadget/types.h>
#include <gadget/macros.h>

struct event {
	gadget_timestamp timestamp;
	gadget_mntns_id mntns_id;
	__u32 pid;
	gadget_uid uid;
	char comm[16];
	gadget_ipv4 saddr;
	gadget_ipv4 daddr;
	gadget_port sport;
	gadget_port dport;
};

/* Only report connections to this destination port; 0 reports all. */
const volatile __u16 target_port = 0;
GADGET_PARAM(target_port);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, struct sock *);
} socks SEC(".maps");

GADGET_TRACER_MAP(events, 256 * 1024);
GADGET_TRACER(tcpconnect, events, event);

SEC("kprobe/tcp_v4_connect")
int BPF_KPROBE(enter_tcp_v4_connect, struct sock *sk)
{
	__u64 id = bpf_get_current_pid_tgid();

	bpf_map_update_elem(&socks, &id, &sk, BPF_ANY);
	return 0;
}

SEC("kretprobe/tcp_v4_connect")
int BPF_KRETPROBE(exit_tcp_v4_connect, int ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_struct *task;
	struct sock **skp, *sk;
	struct event *e;
	__u16 dport;

	skp = bpf_map_lookup_elem(&socks, &id);
	if (!skp)
		return 0;
	sk = *skp;
	if (ret != 0)
		goto out;

	dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (target_port && dport != target_port)
		goto out;

	e = gadget_reserve(events, sizeof(*e));
	if (!e)
		goto out;
	task = (struct task_struct *)bpf_get_current_task();
	e->timestamp = bpf_ktime_get_boot_ns();
	e->mntns_id = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	e->pid = id >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->saddr = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
	e->daddr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
	e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dport = dport;
	gadget_submit(e);
out:
	bpf_map_delete_elem(&socks, &id);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
