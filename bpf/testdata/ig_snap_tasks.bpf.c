// SPDX-License-Identifier: GPL-2.0
/* ig_snap_tasks: a snapshotter of Inspektor Gadget's ABI with two task
 * iterators, so that the snapshot is the union of both: one lists the
 * processes with a user address space, the other the kernel threads. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <igabi/gadget.h>

struct task_entry {
	gadget_mntns_id mntns_id;
	gadget_pid pid;
	gadget_ppid ppid;
	gadget_uid uid;
	__u8 kernel;
	gadget_comm comm[TASK_COMM_LEN];
};

GADGET_SNAPSHOTTER(tasks, task_entry, ig_snap_user, ig_snap_kernel);

static __always_inline int write_task(struct bpf_iter__task *ctx, bool kernel)
{
	struct task_struct *task = ctx->task;
	struct task_entry e = {};

	if (!task || task->tgid != task->pid)
		return 0;
	if (kernel != !task->mm)
		return 0;
	e.mntns_id = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	e.pid = task->tgid;
	e.ppid = BPF_CORE_READ(task, real_parent, tgid);
	e.uid = BPF_CORE_READ(task, cred, uid.val);
	e.kernel = kernel;
	bpf_probe_read_kernel_str(e.comm, sizeof(e.comm), task->comm);
	bpf_seq_write(ctx->meta->seq, &e, sizeof(e));
	return 0;
}

SEC("iter/task")
int ig_snap_user(struct bpf_iter__task *ctx)
{
	return write_task(ctx, false);
}

SEC("iter/task")
int ig_snap_kernel(struct bpf_iter__task *ctx)
{
	return write_task(ctx, true);
}

char LICENSE[] SEC("license") = "GPL";
