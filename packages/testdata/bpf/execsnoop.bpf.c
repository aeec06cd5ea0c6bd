// A minimal gadget program for the loader's tests: one ring buffer, one
// event struct, one tracepoint program and one parameter.
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TASK_COMM_LEN 16

struct event {
	__u64 timestamp;
	__u32 pid;
	__u32 uid;
	char comm[TASK_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

const volatile __u32 targ_uid = 0;

// Keeps struct event in BTF for the catalog.
const struct event *unused_event __attribute__((unused));

SEC("tracepoint/syscalls/sys_enter_execve")
int trace_exec(void *ctx)
{
	struct event *e;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 uid = (__u32)bpf_get_current_uid_gid();

	if (targ_uid && uid != targ_uid)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->timestamp = bpf_ktime_get_ns();
	e->pid = id >> 32;
	e->uid = uid;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
