// SPDX-License-Identifier: GPL-2.0
/* Attaches to do_sys_openat2 on entry and return through fentrys, one
 * event each (where 1 is entry, 2 is return), so the runtime's tests can
 * check that programs in these sections attach and fire. */
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

SEC("fentry/do_sys_openat2")
int on_entry(void *ctx)
{
	return emit(1);
}

SEC("fexit/do_sys_openat2")
int on_return(void *ctx)
{
	return emit(2);
}

char LICENSE[] SEC("license") = "GPL";
