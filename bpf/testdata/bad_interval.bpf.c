// SPDX-License-Identifier: GPL-2.0
/* GADGET_INTERVAL on a map that is not a hash map: the runtime must refuse
 * the object, naming the source and the map. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <gadget/types.h>
#include <gadget/macros.h>

struct counts {
	__u64 calls;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counts);
} slots SEC(".maps");

GADGET_INTERVAL(calls, slots, counts);

SEC("tracepoint/syscalls/sys_enter_openat")
int enter_openat(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
