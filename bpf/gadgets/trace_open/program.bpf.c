// SPDX-License-Identifier: GPL-2.0
/* trace_open: one event per openat(2), with its result. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <gadget/types.h>
#include <gadget/macros.h>

#define NAME_MAX 255

struct start {
	const char *fname;
	__u32 flags;
};

struct event {
	gadget_timestamp timestamp;
	gadget_mntns_id mntns_id;
	__u32 pid;
	__u32 tid;
	gadget_uid uid;
	char comm[16];
	char fname[NAME_MAX + 1];
	__u32 flags;
	gadget_errno ret;
};

/* Report only opens that failed. */
const volatile bool failed_only = false;
GADGET_PARAM(failed_only);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, struct start);
} starts SEC(".maps");

GADGET_TRACER_MAP(events, 1024 * 1024);
GADGET_TRACER(open, events, event);

SEC("tracepoint/syscalls/sys_enter_openat")
int enter_openat(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct start s = {
		.fname = (const char *)ctx->args[1],
		.flags = (__u32)ctx->args[2],
	};

	bpf_map_update_elem(&starts, &id, &s, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int exit_openat(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_struct *task;
	struct start *s;
	struct event *e;
	long ret = ctx->ret;

	s = bpf_map_lookup_elem(&starts, &id);
	if (!s)
		return 0;
	if (failed_only && ret >= 0)
		goto out;

	e = gadget_reserve(events, sizeof(*e));
	if (!e)
		goto out;

	task = (struct task_struct *)bpf_get_current_task();
	e->timestamp = bpf_ktime_get_boot_ns();
	e->mntns_id = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_probe_read_user_str(e->fname, sizeof(e->fname), s->fname);
	e->flags = s->flags;
	e->ret = ret;
	gadget_submit(events, e);
out:
	bpf_map_delete_elem(&starts, &id);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
