// SPDX-License-Identifier: GPL-2.0
/* A gadget whose program the verifier must refuse: it dereferences a map
 * value without checking it for NULL (a hash map lookup may miss). Used by the runtime's tests. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <gadget/types.h>
#include <gadget/macros.h>

struct event {
	__u32 pid;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

GADGET_TRACER_MAP(events, 4096);
GADGET_TRACER(bad, events, event);

SEC("tracepoint/sched/sched_process_exec")
int unchecked_lookup(void *ctx)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&counts, &zero);

	*v += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
