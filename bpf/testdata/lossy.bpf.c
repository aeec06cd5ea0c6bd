// SPDX-License-Identifier: GPL-2.0
/* A gadget with a ring buffer so small that it overflows at once: one
 * 248-byte event per getpid(2), 4 KiB of buffer. The runtime's tests block
 * the reader and count the losses. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <gadget/types.h>
#include <gadget/macros.h>

struct event {
	__u32 pid;
	char pad[244];
};

const volatile __u32 target_pid = 0;
GADGET_PARAM(target_pid);

GADGET_TRACER_MAP(events, 4096);
GADGET_TRACER(getpid, events, event);

SEC("tracepoint/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct event *e;

	if (target_pid && pid != target_pid)
		return 0;
	e = gadget_reserve(events, sizeof(*e));
	if (!e)
		return 0;
	e->pid = pid;
	gadget_submit(events, e);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
