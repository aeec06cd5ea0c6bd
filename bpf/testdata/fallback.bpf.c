// SPDX-License-Identifier: GPL-2.0
/* GADGET_FALLBACK: an fentry program on a function no kernel has, and a
 * kprobe on do_sys_openat2 in its place. An event's where says which
 * program ran (1: the fentry one, 2: the kprobe one). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <gadget/types.h>
#include <gadget/macros.h>

struct event {
	__u32 pid;
	__u32 where;
};

GADGET_TRACER_MAP(events, 256 * 1024);
GADGET_TRACER(probe, events, event);

static __always_inline int emit(__u32 where)
{
	struct event *e = gadget_reserve(events, sizeof(*e));

	if (!e)
		return 0;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->where = where;
	gadget_submit(events, e);
	return 0;
}

SEC("fentry/gadgetpm_no_such_function")
int on_missing(void *ctx)
{
	return emit(1);
}

SEC("kprobe/do_sys_openat2")
int on_open(void *ctx)
{
	return emit(2);
}

GADGET_FALLBACK(on_missing, on_open);

char LICENSE[] SEC("license") = "GPL";
