/* SPDX-License-Identifier: Apache-2.0 */
/*
 * igabi/types.h: the field types of Inspektor Gadget's gadget ABI beyond
 * the integer typedefs of igabi/gadget.h (which includes this file). The
 * runtime recognises them by their NAMES in the object's BTF:
 *
 *   struct gadget_l3endpoint_t   an IP address and its version: shown as
 *                                10.0.0.1 or ::1
 *   struct gadget_l4endpoint_t   an address, port and protocol: shown as
 *                                10.0.0.1:80 or [::1]:80
 *   gadget_kernel_stack          a stack id from gadget_get_kernel_stack();
 *                                shown as the frames' kernel symbols
 *   struct gadget_user_stack     a user stack id from
 *                                gadget_get_user_stack(); shown as the
 *                                frames' symbols from the process's ELF
 *                                files where it still runs, else addresses
 *   gadget_syscall, gadget_signal (igabi/gadget.h): shown by name
 *   gadget_uid, gadget_gid       (igabi/gadget.h): a field `user`/`group`
 *                                with the name is added beside them
 *
 * A field named <name>_raw is shown formatted as <name>; the raw one
 * stays in JSON and catalogs and is left out of column output.
 */
#ifndef IGABI_TYPES_H
#define IGABI_TYPES_H

/* ---- endpoints ---------------------------------------------------- */

/* An IPv4 (first four bytes, network byte order) or IPv6 address. */
union gadget_ip_addr_t {
	__u8 v6[16];
	__u32 v4;
};

struct gadget_l3endpoint_t {
	union gadget_ip_addr_t addr_raw;
	__u8 version; /* 4 or 6 */
};

struct gadget_l4endpoint_t {
	union gadget_ip_addr_t addr_raw;
	__u16 port;      /* host byte order */
	__u16 proto_raw; /* IPPROTO_TCP, IPPROTO_UDP, ... */
	__u8 version;    /* 4 or 6 */
};

/* ---- stacks ------------------------------------------------------- */

/* Frames kept per stack (the kernel's PERF_MAX_STACK_DEPTH). */
#define GADGET_STACK_DEPTH 127

/* A stack id in ig_kstack; negative when the kernel could not take it. */
typedef __s32 gadget_kernel_stack;

/* A stack id in ig_ustack, with the process it belongs to. */
struct gadget_user_stack {
	__s32 stack_id;
	__u32 pid;
};

/* GADGET_KERNEL_STACK_MAP(entries) declares the stack trace map ig_kstack
 * that gadget_kernel_stack fields index, and gadget_get_kernel_stack(ctx),
 * which stores the current kernel stack in it. An object with a
 * gadget_kernel_stack field must declare it. */
#define GADGET_KERNEL_STACK_MAP(entries_)                                      \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_STACK_TRACE);                        \
		__uint(key_size, sizeof(__u32));                               \
		__uint(value_size, GADGET_STACK_DEPTH * sizeof(__u64));        \
		__uint(max_entries, entries_);                                 \
	} ig_kstack SEC(".maps");                                              \
	static __always_inline gadget_kernel_stack gadget_get_kernel_stack(    \
		void *ctx)                                                     \
	{                                                                      \
		return bpf_get_stackid(ctx, &ig_kstack, 0);                    \
	}

/* GADGET_USER_STACK_MAP(entries) declares ig_ustack and
 * gadget_get_user_stack(ctx, stack), which fills a struct
 * gadget_user_stack with the current user stack. */
#define GADGET_USER_STACK_MAP(entries_)                                        \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_STACK_TRACE);                        \
		__uint(key_size, sizeof(__u32));                               \
		__uint(value_size, GADGET_STACK_DEPTH * sizeof(__u64));        \
		__uint(max_entries, entries_);                                 \
	} ig_ustack SEC(".maps");                                              \
	static __always_inline void gadget_get_user_stack(                     \
		void *ctx, struct gadget_user_stack *stack)                    \
	{                                                                      \
		stack->stack_id =                                              \
			bpf_get_stackid(ctx, &ig_ustack, BPF_F_USER_STACK);    \
		stack->pid = bpf_get_current_pid_tgid() >> 32;                 \
	}

#endif
