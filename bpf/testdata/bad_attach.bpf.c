// SPDX-License-Identifier: GPL-2.0
/* A gadget that loads but cannot attach: one of its tracepoints does not
 * exist. The runtime's tests check the error and that the program that did
 * attach is detached again. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <gadget/types.h>
#include <gadget/macros.h>

struct event {
	__u32 pid;
};

GADGET_TRACER_MAP(events, 4096);
GADGET_TRACER(never, events, event);

SEC("tracepoint/sched/sched_process_exec")
int exists(void *ctx)
{
	return 0;
}

SEC("tracepoint/gadgetpm/no_such_event")
int missing(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
