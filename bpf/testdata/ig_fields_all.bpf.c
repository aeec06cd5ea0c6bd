// SPDX-License-Identifier: GPL-2.0
/* ig_fields_all: tracers written against Inspektor Gadget's ABI
 * (bpf/include/igabi/gadget.h, types.h) whose records hold every field type
 * the runtime formats: L3/L4 endpoints of TCP connects, the syscall number
 * and signal of kill(2) with the caller's uid and gid, and the kernel and
 * user stacks of a generated signal. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <igabi/gadget.h>

#define AF_INET 2
#define AF_INET6 10
#define TCP_SYN_SENT 2

struct connect_event {
	gadget_timestamp timestamp_raw;
	gadget_mntns_id mntns_id;
	gadget_pid pid;
	gadget_comm comm[TASK_COMM_LEN];
	struct gadget_l4endpoint_t src;
	struct gadget_l4endpoint_t dst;
	struct gadget_l3endpoint_t daddr;
};

struct kill_event {
	gadget_timestamp timestamp_raw;
	gadget_mntns_id mntns_id;
	gadget_pid pid;
	gadget_uid uid;
	gadget_gid gid;
	gadget_syscall syscall_raw;
	gadget_pid target;
	gadget_signal sig;
	gadget_comm comm[TASK_COMM_LEN];
};

struct signal_event {
	gadget_mntns_id mntns_id;
	gadget_pid pid;
	gadget_pid target;
	gadget_signal sig;
	gadget_kernel_stack kstack_raw;
	struct gadget_user_stack ustack_raw;
};

/* Only connects of this IP version (0: both). */
const volatile __u8 ip_version = 0;
GADGET_PARAM(ip_version);

/* Only signals to this process (0: every process). */
const volatile __u32 targ_pid = 0;
GADGET_PARAM(targ_pid);

GADGET_TRACER_MAP(connects, 64 * 1024);
GADGET_TRACER(connect, connects, connect_event);
GADGET_TRACER_MAP(kills, 64 * 1024);
GADGET_TRACER(kill, kills, kill_event);
GADGET_TRACER_MAP(signals, 64 * 1024);
GADGET_TRACER(signal, signals, signal_event);
GADGET_KERNEL_STACK_MAP(1024);
GADGET_USER_STACK_MAP(1024);

static __always_inline gadget_mntns_id current_mntns(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
}

SEC("tracepoint/sock/inet_sock_set_state")
int ig_fields_connect(struct trace_event_raw_inet_sock_set_state *ctx)
{
	gadget_mntns_id mntns_id = current_mntns();
	struct connect_event *e;
	__u8 version;

	if (ctx->newstate != TCP_SYN_SENT || ctx->protocol != IPPROTO_TCP)
		return 0;
	if (gadget_should_discard_mntns_id(mntns_id))
		return 0;
	version = ctx->family == AF_INET6 ? 6 : 4;
	if (ip_version && ip_version != version)
		return 0;
	e = gadget_reserve_buf(&connects, sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->timestamp_raw = bpf_ktime_get_boot_ns();
	e->mntns_id = mntns_id;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->src.version = e->dst.version = e->daddr.version = version;
	e->src.proto_raw = e->dst.proto_raw = IPPROTO_TCP;
	e->src.port = ctx->sport;
	e->dst.port = ctx->dport;
	if (version == 4) {
		/* the verifier refuses ctx accesses at computed offsets:
		 * copy the arrays with a helper */
		bpf_probe_read_kernel(&e->src.addr_raw.v4, 4, ctx->saddr);
		bpf_probe_read_kernel(&e->dst.addr_raw.v4, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(e->src.addr_raw.v6, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(e->dst.addr_raw.v6, 16, ctx->daddr_v6);
	}
	e->daddr.addr_raw = e->dst.addr_raw;
	gadget_submit_buf(ctx, &connects, e, sizeof(*e));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_kill")
int ig_fields_kill(struct trace_event_raw_sys_enter *ctx)
{
	gadget_mntns_id mntns_id = current_mntns();
	__u64 uid_gid = bpf_get_current_uid_gid();
	struct kill_event *e;
	__u32 target = (__u32)ctx->args[0];

	if (gadget_should_discard_mntns_id(mntns_id))
		return 0;
	if (targ_pid && target != targ_pid)
		return 0;
	e = gadget_reserve_buf(&kills, sizeof(*e));
	if (!e)
		return 0;
	e->timestamp_raw = bpf_ktime_get_boot_ns();
	e->mntns_id = mntns_id;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->uid = (__u32)uid_gid;
	e->gid = uid_gid >> 32;
	e->syscall_raw = ctx->id;
	e->target = target;
	e->sig = (__u32)ctx->args[1];
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	gadget_submit_buf(ctx, &kills, e, sizeof(*e));
	return 0;
}

SEC("tracepoint/signal/signal_generate")
int ig_fields_signal(struct trace_event_raw_signal_generate *ctx)
{
	gadget_mntns_id mntns_id = current_mntns();
	struct signal_event *e;

	if (gadget_should_discard_mntns_id(mntns_id))
		return 0;
	if (targ_pid && (__u32)ctx->pid != targ_pid)
		return 0;
	e = gadget_reserve_buf(&signals, sizeof(*e));
	if (!e)
		return 0;
	e->mntns_id = mntns_id;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->target = ctx->pid;
	e->sig = ctx->sig;
	e->kstack_raw = gadget_get_kernel_stack(ctx);
	gadget_get_user_stack(ctx, &e->ustack_raw);
	gadget_submit_buf(ctx, &signals, e, sizeof(*e));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
