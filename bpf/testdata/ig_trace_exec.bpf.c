// SPDX-License-Identifier: GPL-2.0
/* ig_trace_exec: an exec tracer written against Inspektor Gadget's ABI
 * (bpf/include/igabi/gadget.h), as a gadget built for Inspektor Gadget
 * would be: the runtime must find its tracer and param by symbol name, type
 * its fields by typedef name and fill its mount-namespace filter. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <igabi/gadget.h>

struct exec_creds {
	gadget_uid uid;
	gadget_gid gid;
};

struct event {
	gadget_timestamp timestamp_raw;
	gadget_mntns_id mntns_id;
	gadget_pid pid;
	gadget_ppid ppid;
	struct exec_creds creds;
	gadget_errno error_raw;
	gadget_comm comm[TASK_COMM_LEN];
};

/* Only report execs by this user; (u32)-1 reports every user. */
const volatile __u32 targ_uid = (__u32)-1;
GADGET_PARAM(targ_uid);

GADGET_TRACER_MAP(events, 256 * 1024);
GADGET_TRACER(exec, events, event);

SEC("tracepoint/sched/sched_process_exec")
int ig_trace_exec(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 uid_gid = bpf_get_current_uid_gid();
	gadget_mntns_id mntns_id = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	struct event *e;

	if (gadget_should_discard_mntns_id(mntns_id))
		return 0;
	if (targ_uid != (__u32)-1 && (__u32)uid_gid != targ_uid)
		return 0;

	e = gadget_reserve_buf(&events, sizeof(*e));
	if (!e)
		return 0;
	e->timestamp_raw = bpf_ktime_get_boot_ns();
	e->mntns_id = mntns_id;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->creds.uid = (__u32)uid_gid;
	e->creds.gid = uid_gid >> 32;
	e->error_raw = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	gadget_submit_buf(ctx, &events, e, sizeof(*e));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
