// SPDX-License-Identifier: GPL-2.0
/* GADGET_INTERVAL on a tracepoint, so that the runtime's interval sources
 * are tested on kernels without kprobes too: openat calls per thread. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <gadget/types.h>
#include <gadget/macros.h>

struct opens {
	__u32 pid;
	__u32 tid;
	__u64 calls;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct opens);
} per_thread SEC(".maps");

GADGET_INTERVAL(opens, per_thread, opens);

SEC("tracepoint/syscalls/sys_enter_openat")
int enter_openat(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct opens *o = bpf_map_lookup_elem(&per_thread, &tid);

	if (!o) {
		struct opens zero = { .pid = id >> 32, .tid = tid };

		bpf_map_update_elem(&per_thread, &tid, &zero, BPF_NOEXIST);
		o = bpf_map_lookup_elem(&per_thread, &tid);
		if (!o)
			return 0;
	}
	__sync_fetch_and_add(&o->calls, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
