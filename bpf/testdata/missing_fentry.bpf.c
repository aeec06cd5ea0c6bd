// SPDX-License-Identifier: GPL-2.0
/* An fentry program on a function no kernel has: loading must fail with an error
 * that names the function and the kernel. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <gadget/types.h>
#include <gadget/macros.h>

struct event {
	__u32 pid;
};

GADGET_TRACER_MAP(events, 4096);
GADGET_TRACER(probe, events, event);

SEC("fentry/gadgetpm_no_such_function")
int on_missing(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
