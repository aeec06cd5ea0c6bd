// SPDX-License-Identifier: GPL-2.0
/* A gadget with two programs that load and attach but never emit: the
 * runtime's tests inject failures between their steps. It also has a
 * program in a section the runtime cannot attach. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <gadget/types.h>
#include <gadget/macros.h>

struct event {
	__u32 pid;
};

GADGET_TRACER_MAP(events, 4096);
GADGET_TRACER(quiet, events, event);

SEC("tracepoint/sched/sched_process_exec")
int first(void *ctx)
{
	return 0;
}

SEC("raw_tracepoint/sched_process_exit")
int second(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
