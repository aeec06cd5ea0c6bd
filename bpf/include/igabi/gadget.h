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
 *
 * Record members of the typedefs below get their meaning from the typedef's
 * name: a gadget_mntns_id is enriched with the container and pod, a
 * gadget_timestamp is printed as wall-clock time, gadget_uid/gadget_gid are
 * user and group ids, gadget_errno is a positive errno number. Nested
 * structs are flattened into fields named <member>.<submember>.
 *
 * Buffers: GADGET_TRACER_MAP declares a BPF ring buffer. gadget_reserve_buf
 * / gadget_submit_buf / gadget_discard_buf / gadget_output_buf write to it.
 * Inspektor Gadget falls back to a perf event array on kernels without ring
 * buffers (before 5.8); gadgetpm does not yet, and such a kernel refuses to
 * load the object with a clear error.
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

/* ---- buffers ------------------------------------------------------ */

#define GADGET_TRACER_MAP(map_, bytes_)                                        \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_RINGBUF);                            \
		__uint(max_entries, bytes_);                                   \
	} map_ SEC(".maps");                                                   \
	IGABI_MARKER_(gadget_map_tracer_##map_)

/* gadget_reserve_buf reserves size bytes in the ring buffer map (passed
 * by address); NULL when the ring is full. */
static __always_inline void *gadget_reserve_buf(void *map, __u64 size)
{
	return bpf_ringbuf_reserve(map, size, 0);
}

/* gadget_submit_buf hands a reserved record to user space. ctx and size
 * are those a perf-buffer fallback needs; a ring buffer ignores them. */
static __always_inline long gadget_submit_buf(void *ctx, void *map, void *buf,
					      __u64 size)
{
	(void)ctx;
	(void)map;
	(void)size;
	bpf_ringbuf_submit(buf, 0);
	return 0;
}

/* gadget_discard_buf gives a reserved record back unsent. */
static __always_inline void gadget_discard_buf(void *buf)
{
	bpf_ringbuf_discard(buf, 0);
}

/* gadget_output_buf copies size bytes from buf into the ring in one go. */
static __always_inline long gadget_output_buf(void *ctx, void *map, void *buf,
					      __u64 size)
{
	(void)ctx;
	return bpf_ringbuf_output(map, buf, size, 0);
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
