// A minimal gadget program for the loader's tests: one tracer data source
// on a ring buffer, one event struct, one tracepoint program and one
// parameter, declared with the gadget runtime's macros
// (bpf/include/gadget/macros.h) as every gadget is.
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include <gadget/macros.h>

#define TASK_COMM_LEN 16

struct event {
	__u64 timestamp;
	__u32 pid;
	__u32 uid;
	char comm[TASK_COMM_LEN];
};

GADGET_TRACER_MAP(events, 256 * 1024);
const volatile __u32 targ_uid = 0;

/* nomarkers.bpf.o leaves out the declarations the runtime finds a gadget's
 * data sources and params by, which the loader must refuse. */
#ifndef NO_MARKERS
GADGET_TRACER(events, events, event);
GADGET_PARAM(targ_uid);
#endif

SEC("tracepoint/syscalls/sys_enter_execve")
int trace_exec(void *ctx)
{
	struct event *e;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 uid = (__u32)bpf_get_current_uid_gid();

	if (targ_uid && uid != targ_uid)
		return 0;
	e = gadget_reserve(events, sizeof(*e));
	if (!e)
		return 0;
	e->timestamp = bpf_ktime_get_ns();
	e->pid = id >> 32;
	e->uid = uid;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	gadget_submit(events, e);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
