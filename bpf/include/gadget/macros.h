/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gadget/macros.h: how a gadget declares what it offers. The runtime finds
 * every declaration through a marker variable in .rodata whose BTF type
 * carries the event struct and whose value names the map or program, so no
 * separate metadata file has to be kept in sync with the C code.
 *
 *   GADGET_TRACER_MAP(events, 256 * 1024);
 *       declares a BPF ring buffer "events" of that many bytes and its
 *       lost-sample counter "events_lost". Reserve with
 *       gadget_reserve(events, sizeof(*e)) so failures are counted, and
 *       submit with gadget_submit(events, e).
 *
 *   GADGET_TRACER(exec, events, event);
 *       a tracer data source "exec": records of struct event read from the
 *       ring buffer "events".
 *
 *   GADGET_SNAPSHOTTER(processes, process_entry, iter_tasks);
 *       a snapshotter data source "processes": the bpf_iter program
 *       "iter_tasks" writes records of struct process_entry with
 *       bpf_seq_write; one run of the iterator is one snapshot.
 *
 *   GADGET_INTERVAL(files, stats, file_stat);
 *       an interval data source "files": every interval (the runtime's
 *       "interval" param, 1s by default) the values of the hash map
 *       "stats", records of struct file_stat, are emitted together and the
 *       map is emptied; what is left is emitted when the gadget stops.
 *
 *   GADGET_FALLBACK(on_oom_fentry, on_oom_kprobe);
 *       attach the program on_oom_fentry; when the kernel refuses it (no
 *       BPF trampolines, no BTF for the function), load and attach
 *       on_oom_kprobe instead. Only one of the two ever runs.
 *
 *   const volatile __u32 target_port = 0;
 *   GADGET_PARAM(target_port);
 *       a param "target_port"; its type and default come from the
 *       variable's BTF and value, and the runtime rewrites the constant
 *       before loading, so the verifier prunes disabled branches.
 */
#ifndef GADGET_MACROS_H
#define GADGET_MACROS_H

#include <bpf/bpf_helpers.h>

#define GADGET_TRACER_MAP(map_, bytes_)                                        \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_RINGBUF);                            \
		__uint(max_entries, bytes_);                                   \
	} map_ SEC(".maps");                                                   \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                       \
		__uint(max_entries, 1);                                        \
		__type(key, __u32);                                            \
		__type(value, __u64);                                          \
	} map_##_lost SEC(".maps")

/* gadget_reserve reserves size bytes in the ring buffer map_ (its bare name,
 * declared with GADGET_TRACER_MAP) and counts a lost sample when the buffer
 * is full. */
#define gadget_reserve(map_, size_)                                            \
	({                                                                     \
		void *__r = bpf_ringbuf_reserve(&(map_), (size_), 0);          \
		if (!__r) {                                                    \
			__u32 __zero = 0;                                      \
			__u64 *__lost = bpf_map_lookup_elem(&(map_##_lost), &__zero); \
			if (__lost)                                            \
				(*__lost)++;                                   \
		}                                                              \
		__r;                                                           \
	})

/* gadget_submit submits a record reserved in map_. It wakes the reader only
 * once an eighth of the ring is filled: one wakeup per batch instead of per
 * event. The runtime also polls the ring every few tens of milliseconds, so
 * a quiet gadget's events are not held back longer than that. */
#define gadget_submit(map_, ptr_)                                              \
	bpf_ringbuf_submit((ptr_),                                             \
			   bpf_ringbuf_query(&(map_), BPF_RB_AVAIL_DATA) >=    \
					   bpf_ringbuf_query(&(map_), BPF_RB_RING_SIZE) / 8 ? \
				   BPF_RB_FORCE_WAKEUP :                       \
				   BPF_RB_NO_WAKEUP)

#define GADGET_TRACER(name_, map_, struct_)                                    \
	const volatile struct {                                                \
		/* an array, not a pointer: BTF then always holds the whole \
		 * struct, even when no program uses it */                   \
		struct struct_ event[0];                                       \
		char map[sizeof(#map_)];                                       \
	} gadget_tracer_##name_ __attribute__((used)) = { .map = #map_ }

#define GADGET_SNAPSHOTTER(name_, struct_, prog_)                              \
	const volatile struct {                                                \
		struct struct_ event[0];                                       \
		char program[sizeof(#prog_)];                                  \
	} gadget_snapshotter_##name_ __attribute__((used)) = { .program = #prog_ }

#define GADGET_INTERVAL(name_, map_, struct_)                                  \
	const volatile struct {                                                \
		struct struct_ event[0];                                       \
		char map[sizeof(#map_)];                                       \
	} gadget_interval_##name_ __attribute__((used)) = { .map = #map_ }

#define GADGET_FALLBACK(prog_, fallback_)                                      \
	const volatile struct {                                                \
		char program[sizeof(#fallback_)];                              \
	} gadget_fallback_##prog_ __attribute__((used)) = { .program = #fallback_ }

#define GADGET_PARAM(var_)                                                     \
	/* refer to var_ so a misspelt name fails to compile */                \
	_Static_assert(sizeof(var_) > 0, "GADGET_PARAM needs a variable");     \
	const volatile char gadget_param_##var_ __attribute__((used)) = 0

#endif
