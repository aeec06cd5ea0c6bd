// SPDX-License-Identifier: GPL-2.0
/* snapshot_process: every process (thread-group leader) on the machine,
 * through a task iterator. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <gadget/types.h>
#include <gadget/macros.h>

struct process_entry {
	gadget_mntns_id mntns_id;
	__u32 pid;
	__u32 ppid;
	gadget_uid uid;
	gadget_gid gid;
	char comm[16];
};

/* Also list kernel threads (processes without a user address space). */
const volatile bool show_kernel_threads = true;
GADGET_PARAM(show_kernel_threads);

GADGET_SNAPSHOTTER(processes, process_entry, iter_tasks);

SEC("iter/task")
int iter_tasks(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct process_entry e = {};

	if (!task)
		return 0;
	if (task->tgid != task->pid)
		return 0;
	if (!show_kernel_threads && !task->mm)
		return 0;

	e.mntns_id = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	e.pid = task->tgid;
	e.ppid = BPF_CORE_READ(task, real_parent, tgid);
	e.uid = BPF_CORE_READ(task, cred, uid.val);
	e.gid = BPF_CORE_READ(task, cred, gid.val);
	bpf_probe_read_kernel_str(e.comm, sizeof(e.comm), task->comm);
	bpf_seq_write(seq, &e, sizeof(e));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
