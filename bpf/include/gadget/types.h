/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gadget/types.h: field types the gadget runtime recognises by their BTF
 * typedef name. A struct member declared with one of these types is decoded
 * and printed accordingly (a timestamp as time, an errno by name, ...);
 * members of plain integer, bool, char-array or enum types are decoded from
 * their BTF type alone.
 */
#ifndef GADGET_TYPES_H
#define GADGET_TYPES_H

/* Nanoseconds since boot, from bpf_ktime_get_boot_ns(). */
typedef __u64 gadget_timestamp;
/* Mount namespace inode number; the enricher maps it to a process,
 * container and pod. */
typedef __u64 gadget_mntns_id;
/* User and group ids. */
typedef __u32 gadget_uid;
typedef __u32 gadget_gid;
/* A syscall return value: 0 or positive is success, negative is -errno. */
typedef __s64 gadget_errno;
/* An IPv4 address in network byte order. */
typedef __u32 gadget_ipv4;
/* A port in host byte order. */
typedef __u16 gadget_port;

#endif
