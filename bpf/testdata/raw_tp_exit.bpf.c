// SPDX-License-Identifier: GPL-2.0
/* One event per exiting task through a raw tracepoint: the runtime's tests
 * check that a program in a raw_tracepoint section fires, not only that it
 * attaches. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <gadget/types.h>
#include <gadget/macros.h>

struct event {
	__u32 pid;
	__u32 tid;
};

GADGET_TRACER_MAP(events, 256 * 1024);
GADGET_TRACER(exits, events, event);

SEC("raw_tracepoint/sched_process_exit")
int on_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct event *e = gadget_reserve(events, sizeof(*e));

	if (!e)
		return 0;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	gadget_submit(events, e);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
