// SPDX-License-Identifier: GPL-2.0
/* trace_tcpconnect: one event per IPv4 TCP active open (connect(2)
 * sending its SYN). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <gadget/types.h>
#include <gadget/macros.h>

#define AF_INET 2

struct event {
	gadget_timestamp timestamp;
	gadget_mntns_id mntns_id;
	__u32 pid;
	gadget_uid uid;
	char comm[16];
	gadget_ipv4 saddr;
	gadget_ipv4 daddr;
	gadget_port dport;
};

/* Only report connections to this destination port; 0 reports all. */
const volatile __u16 target_port = 0;
GADGET_PARAM(target_port);

GADGET_TRACER_MAP(events, 256 * 1024);
GADGET_TRACER(tcpconnect, events, event);

/* A socket moving from CLOSE to SYN_SENT is an active open; the
 * tracepoint fires inside connect(2), so the current task is the caller.
 * (A tracepoint, not a kprobe: it is stable and needs no CONFIG_KPROBES.) */
SEC("tracepoint/sock/inet_sock_set_state")
int trace_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct task_struct *task;
	struct event *e;

	if (ctx->protocol != IPPROTO_TCP || ctx->family != AF_INET)
		return 0;
	if (ctx->oldstate != TCP_CLOSE || ctx->newstate != TCP_SYN_SENT)
		return 0;
	if (target_port && ctx->dport != target_port)
		return 0;

	e = gadget_reserve(events, sizeof(*e));
	if (!e)
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	e->timestamp = bpf_ktime_get_boot_ns();
	e->mntns_id = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	__builtin_memcpy(&e->saddr, ctx->saddr, 4);
	__builtin_memcpy(&e->daddr, ctx->daddr, 4);
	e->dport = ctx->dport;
	gadget_submit(events, e);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
