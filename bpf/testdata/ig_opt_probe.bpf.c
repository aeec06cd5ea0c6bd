// SPDX-License-Identifier: GPL-2.0
/* ig_opt_probe: an exec tracer of Inspektor Gadget's ABI with two optional
 * programs that no kernel can run: a kprobe and an fentry program on a
 * function that does not exist. The run must go on without them; the test
 * renames the kprobe's marker to show that a required one fails. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <igabi/gadget.h>

struct event {
	gadget_pid pid;
	gadget_comm comm[TASK_COMM_LEN];
};

GADGET_TRACER_MAP(events, 64 * 1024);
GADGET_TRACER(exec, events, event);

GADGET_PROGRAM_OPTIONAL(ig_opt_kprobe);
GADGET_PROGRAM_OPTIONAL(ig_opt_fentry);

SEC("tracepoint/sched/sched_process_exec")
int ig_opt_exec(void *ctx)
{
	struct event *e = gadget_reserve_buf(&events, sizeof(*e));

	if (!e)
		return 0;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	gadget_submit_buf(ctx, &events, e, sizeof(*e));
	return 0;
}

SEC("kprobe/gadgetpm_no_such_function")
int ig_opt_kprobe(void *ctx)
{
	return 0;
}

SEC("fentry/gadgetpm_no_such_function")
int ig_opt_fentry(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
