// SPDX-License-Identifier: GPL-2.0
/* GADGET_FALLBACK naming a program the object does not have: the runtime
 * must refuse the object, naming both. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <gadget/types.h>
#include <gadget/macros.h>

struct event {
	__u32 pid;
};

GADGET_TRACER_MAP(events, 4096);
GADGET_TRACER(probe, events, event);

SEC("tracepoint/syscalls/sys_enter_openat")
int on_open(void *ctx)
{
	return 0;
}

GADGET_FALLBACK(on_open, on_open_kprobe);

char LICENSE[] SEC("license") = "GPL";
