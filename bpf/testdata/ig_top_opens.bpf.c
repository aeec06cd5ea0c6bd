// SPDX-License-Identifier: GPL-2.0
/* ig_top_opens: a top-style gadget of Inspektor Gadget's ABI (a map
 * iterator): openat calls per thread, on a tracepoint so that it runs on
 * kernels without kprobes. The runtime reads and clears the map every
 * map-fetch-interval. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <igabi/gadget.h>

struct opens_key {
	gadget_pid pid;
	gadget_tid tid;
	gadget_comm comm[TASK_COMM_LEN];
};

struct opens_stats {
	__u64 opens;
};

/* Only count the threads of this process; 0 counts every process. */
const volatile __u32 targ_pid = 0;
GADGET_PARAM(targ_pid);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct opens_key);
	__type(value, struct opens_stats);
} stats SEC(".maps");

GADGET_MAPITER(opens, stats);

SEC("tracepoint/syscalls/sys_enter_openat")
int ig_top_openat(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct opens_key key = { .pid = id >> 32, .tid = (__u32)id };
	struct opens_stats zero = {}, *s;

	if (targ_pid && key.pid != targ_pid)
		return 0;
	bpf_get_current_comm(key.comm, sizeof(key.comm));
	s = bpf_map_lookup_elem(&stats, &key);
	if (!s) {
		bpf_map_update_elem(&stats, &key, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&stats, &key);
		if (!s)
			return 0;
	}
	__sync_fetch_and_add(&s->opens, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
