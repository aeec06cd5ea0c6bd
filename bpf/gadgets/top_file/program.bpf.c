// SPDX-License-Identifier: GPL-2.0
/* top_file: reads and writes per file and process, summed over an interval
 * (kprobes on vfs_read and vfs_write). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <gadget/types.h>
#include <gadget/macros.h>

#define NAME_MAX 255
#define S_IFMT 00170000
#define S_IFREG 0100000

struct file_id {
	__u64 inode;
	__u32 dev;
	__u32 pid;
};

struct file_stat {
	gadget_mntns_id mntns_id;
	__u32 pid;
	__u32 tid;
	gadget_uid uid;
	char comm[16];
	char file[NAME_MAX + 1];
	__u64 inode;
	__u32 dev;
	bool regular;
	__u64 reads;
	__u64 writes;
	__u64 rbytes;
	__u64 wbytes;
};

/* Report only this process (0: every process). */
const volatile __u32 target_pid = 0;
GADGET_PARAM(target_pid);

/* Also count files that are not regular files (pipes, sockets, devices). */
const volatile bool all_files = false;
GADGET_PARAM(all_files);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct file_id);
	__type(value, struct file_stat);
} stats SEC(".maps");

GADGET_INTERVAL(files, stats, file_stat);

static __always_inline int count(struct file *file, size_t bytes, bool write)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32;
	struct inode *inode;
	struct file_id key = {};
	struct file_stat *st;
	umode_t mode;

	if (target_pid && pid != target_pid)
		return 0;
	inode = BPF_CORE_READ(file, f_inode);
	mode = BPF_CORE_READ(inode, i_mode);
	if (!all_files && (mode & S_IFMT) != S_IFREG)
		return 0;
	key.pid = pid;
	key.inode = BPF_CORE_READ(inode, i_ino);
	key.dev = BPF_CORE_READ(inode, i_sb, s_dev);

	st = bpf_map_lookup_elem(&stats, &key);
	if (!st) {
		struct file_stat zero = {};
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		const unsigned char *name = BPF_CORE_READ(file, f_path.dentry, d_name.name);

		zero.mntns_id = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
		zero.pid = pid;
		zero.tid = (__u32)id;
		zero.uid = (__u32)bpf_get_current_uid_gid();
		bpf_get_current_comm(zero.comm, sizeof(zero.comm));
		bpf_probe_read_kernel_str(zero.file, sizeof(zero.file), name);
		zero.inode = key.inode;
		zero.dev = key.dev;
		zero.regular = (mode & S_IFMT) == S_IFREG;
		bpf_map_update_elem(&stats, &key, &zero, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&stats, &key);
		if (!st)
			return 0;
	}
	if (write) {
		__sync_fetch_and_add(&st->writes, 1);
		__sync_fetch_and_add(&st->wbytes, bytes);
	} else {
		__sync_fetch_and_add(&st->reads, 1);
		__sync_fetch_and_add(&st->rbytes, bytes);
	}
	return 0;
}

SEC("kprobe/vfs_read")
int BPF_KPROBE(on_vfs_read, struct file *file, char *buf, size_t count_)
{
	return count(file, count_, false);
}

SEC("kprobe/vfs_write")
int BPF_KPROBE(on_vfs_write, struct file *file, const char *buf, size_t count_)
{
	return count(file, count_, true);
}

char LICENSE[] SEC("license") = "GPL";
