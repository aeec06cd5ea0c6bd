// SPDX-License-Identifier: GPL-2.0
/* trace_oomkill: one event per process the OOM killer kills, with the
 * process that triggered it. fentry on oom_kill_process where the kernel
 * has BPF trampolines, a kprobe on it where it does not. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <gadget/types.h>
#include <gadget/macros.h>

struct event {
	gadget_timestamp timestamp;
	gadget_mntns_id mntns_id;
	__u32 fpid;
	gadget_uid fuid;
	char fcomm[16];
	__u32 tpid;
	char tcomm[16];
	__u64 pages;
};

GADGET_TRACER_MAP(events, 64 * 1024);
GADGET_TRACER(oomkill, events, event);

static __always_inline int emit(struct oom_control *oc)
{
	struct task_struct *victim = BPF_CORE_READ(oc, chosen);
	struct event *e = gadget_reserve(events, sizeof(*e));

	if (!e)
		return 0;
	e->timestamp = bpf_ktime_get_boot_ns();
	e->fpid = bpf_get_current_pid_tgid() >> 32;
	e->fuid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(e->fcomm, sizeof(e->fcomm));
	e->tpid = BPF_CORE_READ(victim, tgid);
	BPF_CORE_READ_STR_INTO(&e->tcomm, victim, comm);
	e->mntns_id = BPF_CORE_READ(victim, nsproxy, mnt_ns, ns.inum);
	e->pages = BPF_CORE_READ(oc, totalpages);
	gadget_submit(events, e);
	return 0;
}

SEC("fentry/oom_kill_process")
int BPF_PROG(oom_kill_fentry, struct oom_control *oc, const char *message)
{
	return emit(oc);
}

SEC("kprobe/oom_kill_process")
int BPF_KPROBE(oom_kill_kprobe, struct oom_control *oc, const char *message)
{
	return emit(oc);
}

GADGET_FALLBACK(oom_kill_fentry, oom_kill_kprobe);

char LICENSE[] SEC("license") = "GPL";
