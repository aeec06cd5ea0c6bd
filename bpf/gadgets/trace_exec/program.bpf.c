// SPDX-License-Identifier: GPL-2.0
/* trace_exec: one event per successful execve(2), with the new program's
 * arguments. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <gadget/types.h>
#include <gadget/macros.h>

#define ARGS_SIZE 256

struct event {
	gadget_timestamp timestamp;
	gadget_mntns_id mntns_id;
	__u32 pid;
	__u32 ppid;
	gadget_uid uid;
	gadget_gid gid;
	char comm[16];
	/* NUL-separated argv, truncated to ARGS_SIZE - 1 bytes */
	char args[ARGS_SIZE];
	__u32 args_size;
};

/* Only report execs by this user; (u32)-1 reports every user. */
const volatile __u32 target_uid = (__u32)-1;
GADGET_PARAM(target_uid);

GADGET_TRACER_MAP(events, 1024 * 1024);
GADGET_TRACER(exec, events, event);

SEC("tracepoint/sched/sched_process_exec")
int trace_exec(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 uid_gid = bpf_get_current_uid_gid();
	struct event *e;
	unsigned long arg_start, arg_end;
	__u32 len;

	if (target_uid != (__u32)-1 && (__u32)uid_gid != target_uid)
		return 0;

	e = gadget_reserve(events, sizeof(*e));
	if (!e)
		return 0;

	e->timestamp = bpf_ktime_get_boot_ns();
	e->mntns_id = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)uid_gid;
	e->gid = uid_gid >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));

	/* ring buffer memory is not zeroed: clear args so that its tail
	 * after the last argument reads as NULs */
	__builtin_memset(e->args, 0, sizeof(e->args));
	arg_start = BPF_CORE_READ(task, mm, arg_start);
	arg_end = BPF_CORE_READ(task, mm, arg_end);
	len = arg_end - arg_start;
	if (len > ARGS_SIZE - 1)
		len = ARGS_SIZE - 1;
	/* the mask proves the bound to the verifier */
	len &= ARGS_SIZE - 1;
	if (bpf_probe_read_user(e->args, len, (void *)arg_start))
		len = 0;
	e->args_size = len;

	gadget_submit(events, e);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
