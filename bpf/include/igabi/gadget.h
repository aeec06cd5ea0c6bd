/* SPDX-License-Identifier: Apache-2.0 */
/*
 * igabi/gadget.h: the gadget ABI of Inspektor Gadget's image-based gadgets,
 * as its documentation describes it, for gadgets written to run both there
 * and in gadgetpm. (Gadgets written for gadgetpm alone use gadget/macros.h
 * and gadget/types.h; an object uses one ABI or the other, never both.)
 *
 * The runtime recognises what an object offers by the NAMES of global
 * variables (ELF symbols with BTF in the .bss data section), not by their
 * values:
 *
 *   gadget_tracer_<name>___<map>___<struct>
 *       a tracer data source <name>: records of struct <struct> read from
 *       the ring buffer <map>. Declare it with GADGET_TRACER(name, map,
 *       struct); the macro also keeps struct <struct> in the BTF.
 *   gadget_map_tracer_<map>
 *       written by GADGET_TRACER_MAP(map, bytes) beside the ring buffer.
 *   gadget_param_<var>
 *       <var>, a `const volatile` integer or bool global, is a param; the
 *       runtime rewrites its value before loading. GADGET_PARAM(var).
 *   gadget_snapshotter_<name>___<struct>___<prog>[___<prog>...]
 *       a snapshotter data source <name>: each of the iter/ programs (one
 *       to three) is run once and writes records of struct <struct> with
 *       bpf_seq_write; the snapshot is their union. GADGET_SNAPSHOTTER(name,
 *       struct, prog, ...).
 *   gadget_mapiter_<name>___<map>
 *       a map-iterator ("top") data source <name>: every map-fetch-interval
 *       the runtime reads and deletes every entry of the hash map <map>,
 *       whose key and value are structs; a record is the key's members
 *       followed by the value's. GADGET_MAPITER(name, map).
 *   gadget_program_optional_<prog>
 *       program <prog> may be missing on some kernels: when the kernel
 *       refuses to load or attach it, the run goes on without it and says
 *       so. GADGET_PROGRAM_OPTIONAL(prog). (Inspektor Gadget itself has no
 *       such marker yet; its runtime ignores the symbol.)
 *
 * Record members of the typedefs below get their meaning from the typedef's
 * name: a gadget_mntns_id is enriched with the container and pod, a
 * gadget_timestamp is printed as wall-clock time, gadget_uid/gadget_gid are
 * user and group ids, gadget_errno is a positive errno number. Nested
 * structs are flattened into fields named <member>.<submember>.
 *
 * Buffers: GADGET_TRACER_MAP declares a BPF ring buffer. gadget_reserve_buf
 * / gadget_submit_buf / gadget_discard_buf / gadget_output_buf write to it.
 * On kernels without ring buffers (before 5.8) the runtime turns the map
 * into a perf event array before loading, and the helpers, which ask the
 * kernel's BTF (CO-RE) whether the ring-buffer helpers exist, reserve in
 * the per-CPU scratch map gadget_heap and send with bpf_perf_event_output
 * instead. Define GADGET_NO_BUF_RESERVE before the include when only
 * gadget_output_buf is used: no gadget_heap then.
 *
 * Mount-namespace filter: gadget_should_discard_mntns_id(id) is true when
 * the run filters by mount namespace and id is not among the allowed ones;
 * the runtime sets gadget_filter_by_mntns and fills gadget_mntns_filter_map
 * from the run's filter (the "mntns" param), so the kernel drops other
 * containers' events before they are copied.
 */
#ifndef IGABI_GADGET_H
#define IGABI_GADGET_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* ---- special types ------------------------------------------------ */

/* Inode number of a mount namespace: the container and pod come from it. */
typedef __u64 gadget_mntns_id;
/* Inode number of a network namespace. */
typedef __u32 gadget_netns_id;
/* Nanoseconds since boot, as bpf_ktime_get_boot_ns() returns them. */
typedef __u64 gadget_timestamp;
typedef __u32 gadget_pid;
typedef __u32 gadget_ppid;
typedef __u32 gadget_tid;
typedef __u32 gadget_uid;
typedef __u32 gadget_gid;
/* A positive errno number (ENOENT is 2); 0 is no error. */
typedef __u32 gadget_errno;
typedef __u32 gadget_signal;
typedef __u64 gadget_syscall;
/* Element types of the command-name arrays (gadget_comm comm[16]). */
typedef char gadget_comm;
typedef char gadget_pcomm;

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

#include <igabi/types.h> /* endpoints, stacks */

/* ---- markers ------------------------------------------------------ */

/* Every marker is an uninitialised global pointer: it lands in .bss, costs
 * eight bytes and is never read; its name carries the declaration. */
#define IGABI_MARKER_(sym_) const void *sym_ __attribute__((unused))

#define GADGET_TRACER(name_, map_, struct_)                                    \
	IGABI_MARKER_(gadget_tracer_##name_##___##map_##___##struct_);         \
	/* keeps struct_ in the BTF even when no program names it */          \
	const struct struct_ *igabi_tracer_type_##name_ __attribute__((unused))

#define GADGET_PARAM(var_)                                                     \
	_Static_assert(sizeof(var_) > 0, "GADGET_PARAM needs a variable");     \
	IGABI_MARKER_(gadget_param_##var_)

/* GADGET_SNAPSHOTTER(name, struct, prog[, prog2[, prog3]]): one marker whose
 * name lists every program; IGABI_NARGS_ picks the spelling for the count. */
#define IGABI_NARGS_(...) IGABI_NARGS_PICK_(__VA_ARGS__, 3, 2, 1, 0)
#define IGABI_NARGS_PICK_(a_, b_, c_, n_, ...) n_
#define IGABI_JOIN_(a_, b_) IGABI_JOIN2_(a_, b_)
#define IGABI_JOIN2_(a_, b_) a_##b_
#define IGABI_SNAP_1_(n_, s_, p1_)                                             \
	IGABI_MARKER_(gadget_snapshotter_##n_##___##s_##___##p1_)
#define IGABI_SNAP_2_(n_, s_, p1_, p2_)                                        \
	IGABI_MARKER_(gadget_snapshotter_##n_##___##s_##___##p1_##___##p2_)
#define IGABI_SNAP_3_(n_, s_, p1_, p2_, p3_)                                   \
	IGABI_MARKER_(                                                         \
		gadget_snapshotter_##n_##___##s_##___##p1_##___##p2_##___##p3_)
#define GADGET_SNAPSHOTTER(name_, struct_, ...)                                \
	const struct struct_ *igabi_snapshotter_type_##name_                   \
		__attribute__((unused));                                       \
	IGABI_JOIN_(IGABI_SNAP_, IGABI_JOIN_(IGABI_NARGS_(__VA_ARGS__), _))    \
	(name_, struct_, __VA_ARGS__)

/* GADGET_MAPITER(name, map): map is a BPF_MAP_TYPE_HASH whose key and value
 * types (__type(key, struct k), __type(value, struct v)) are structs. */
#define GADGET_MAPITER(name_, map_)                                            \
	IGABI_MARKER_(gadget_mapiter_##name_##___##map_)

/* GADGET_PROGRAM_OPTIONAL(prog): a kernel that cannot load or attach prog
 * (a kprobe on a function it lacks, fentry without trampolines) runs the
 * gadget without it. */
#define GADGET_PROGRAM_OPTIONAL(prog_)                                         \
	IGABI_MARKER_(gadget_program_optional_##prog_)

/* ---- buffers ------------------------------------------------------ */

#define GADGET_TRACER_MAP(map_, bytes_)                                        \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_RINGBUF);                            \
		__uint(max_entries, bytes_);                                   \
	} map_ SEC(".maps");                                                   \
	IGABI_MARKER_(gadget_map_tracer_##map_)

/* True where the kernel has the BPF ring buffer helpers (5.8 and later);
 * a CO-RE relocation against the kernel's BTF, resolved at load time. */
#define IGABI_HAVE_RINGBUF_(fn_) bpf_core_enum_value_exists(enum bpf_func_id, fn_)

#ifndef GADGET_MAX_EVENT_SIZE
#define GADGET_MAX_EVENT_SIZE 10240
#endif

#ifndef GADGET_NO_BUF_RESERVE
/* Scratch space for one record per CPU where there is no ring buffer to
 * reserve in. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, GADGET_MAX_EVENT_SIZE);
} gadget_heap SEC(".maps");

/* gadget_reserve_buf reserves size bytes in the ring buffer map (passed
 * by address), or in gadget_heap on a perf event array; NULL when the
 * ring is full or size is larger than GADGET_MAX_EVENT_SIZE there. */
static __always_inline void *gadget_reserve_buf(void *map, __u64 size)
{
	__u32 zero = 0;

	if (IGABI_HAVE_RINGBUF_(BPF_FUNC_ringbuf_reserve))
		return bpf_ringbuf_reserve(map, size, 0);
	if (size > GADGET_MAX_EVENT_SIZE)
		return NULL;
	return bpf_map_lookup_elem(&gadget_heap, &zero);
}

/* gadget_submit_buf hands a reserved record to user space: a ring buffer
 * commits it in place, a perf event array copies size bytes of it. */
static __always_inline long gadget_submit_buf(void *ctx, void *map, void *buf,
					      __u64 size)
{
	if (IGABI_HAVE_RINGBUF_(BPF_FUNC_ringbuf_submit)) {
		bpf_ringbuf_submit(buf, 0);
		return 0;
	}
	return bpf_perf_event_output(ctx, map, BPF_F_CURRENT_CPU, buf, size);
}

/* gadget_discard_buf gives a reserved record back unsent (nothing to give
 * back in gadget_heap). */
static __always_inline void gadget_discard_buf(void *buf)
{
	if (IGABI_HAVE_RINGBUF_(BPF_FUNC_ringbuf_discard))
		bpf_ringbuf_discard(buf, 0);
}
#endif /* GADGET_NO_BUF_RESERVE */

/* gadget_output_buf copies size bytes from buf to user space in one go. */
static __always_inline long gadget_output_buf(void *ctx, void *map, void *buf,
					      __u64 size)
{
	if (IGABI_HAVE_RINGBUF_(BPF_FUNC_ringbuf_output))
		return bpf_ringbuf_output(map, buf, size, 0);
	return bpf_perf_event_output(ctx, map, BPF_F_CURRENT_CPU, buf, size);
}

/* ---- mount-namespace filter --------------------------------------- */

/* Set by the runtime when the run filters by mount namespace. */
const volatile bool gadget_filter_by_mntns = false;

/* The allowed mount namespaces (the value is unused); filled by the
 * runtime before the programs are attached. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, gadget_mntns_id);
	__type(value, __u32);
} gadget_mntns_filter_map SEC(".maps");

static __always_inline bool gadget_should_discard_mntns_id(gadget_mntns_id id)
{
	if (!gadget_filter_by_mntns)
		return false;
	return bpf_map_lookup_elem(&gadget_mntns_filter_map, &id) == NULL;
}

#endif
