#!/bin/sh
# gadget-run.sh runs inside a guest of hack/vmtest.sh (busybox sh, as
# root): `gadgetpm gadget run` of top-file and trace-oomkill, each with a
# workload that makes its events happen, checking the fields printed.
# It prints one "gadget-run: ok|FAIL ..." line per gadget and exits non-zero
# when one failed.
set -u
cd /src
rc=0
out=/tmp/gadget-run
mkdir -p "$out"

# wait_attached PID N: until process PID holds N kprobe or BPF link file
# descriptors (its programs are attached), at most 60s
wait_attached() {
	i=0
	while [ "$i" -lt 600 ]; do
		n="$(ls -l "/proc/$1/fd" 2>/dev/null | grep -c -E 'perf_event|bpf_link')"
		[ "$n" -ge "$2" ] && return 0
		kill -0 "$1" 2>/dev/null || return 1
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# field NAME: the values of a numeric or string JSON field of the lines on
# stdin, one a line
field() {
	grep -o "\"$1\":[^,}]*" | sed "s/^\"$1\"://; s/^\"//; s/\"\$//"
}

# top-file: dd reads a file 20 times, 100 bytes each
head -c 4096 /dev/zero >/tmp/gadget-run-file
gadgetpm gadget run charts/packages/top-file --param interval=200ms --filter file==gadget-run-file \
	--timeout 30s -o json >"$out/top.json" 2>"$out/top.err" &
pid=$!
if wait_attached "$pid" 2; then
	dd if=/tmp/gadget-run-file of=/dev/null bs=100 count=20 2>/dev/null
	sleep 1
	kill -TERM "$pid"
fi
wait "$pid"
status=$?
reads=0
for r in $(grep '"comm":"dd"' "$out/top.json" | field reads); do reads=$((reads + r)); done
rbytes=0
for r in $(grep '"comm":"dd"' "$out/top.json" | field rbytes); do rbytes=$((rbytes + r)); done
if [ "$status" -eq 0 ] && [ "$reads" -eq 20 ] && [ "$rbytes" -eq 2000 ]; then
	echo "gadget-run: ok top-file: dd read gadget-run-file 20 times, 2000 bytes"
else
	echo "gadget-run: FAIL top-file: exit status $status, dd's reads $reads (want 20), bytes $rbytes (want 2000)"
	cat "$out/top.json" "$out/top.err"
	rc=1
fi

# trace-oomkill: a shell doubling a string in a cgroup limited to 32 MiB
# (8192 pages of 4 KiB: the guests are x86_64)
cg=/sys/fs/cgroup/gadget-run
echo +memory >/sys/fs/cgroup/cgroup.subtree_control
mkdir -p "$cg"
echo 33554432 >"$cg/memory.max"
[ -e "$cg/memory.swap.max" ] && echo 0 >"$cg/memory.swap.max"
gadgetpm gadget run charts/packages/trace-oomkill --timeout 60s -o json >"$out/oom.json" 2>"$out/oom.err" &
pid=$!
hog=""
if wait_attached "$pid" 1; then
	sh -c 'echo $$ >/sys/fs/cgroup/gadget-run/cgroup.procs; exec sh -c "x=0123456789abcdef; while :; do x=\$x\$x; done"' &
	hog=$!
	wait "$hog"
	sleep 1
	kill -TERM "$pid"
fi
wait "$pid"
status=$?
line="$(grep "\"tpid\":$hog," "$out/oom.json")"
if [ "$status" -eq 0 ] && [ -n "$hog" ] && [ -n "$line" ] &&
	[ "$(echo "$line" | field fpid)" = "$hog" ] &&
	[ "$(echo "$line" | field tcomm)" = sh ] &&
	[ "$(echo "$line" | field pages)" = 8192 ]; then
	echo "gadget-run: ok trace-oomkill: $line"
else
	echo "gadget-run: FAIL trace-oomkill: exit status $status, hog ${hog:-not started}, event: ${line:-none}"
	cat "$out/oom.json" "$out/oom.err"
	rc=1
fi
rmdir "$cg" 2>/dev/null
exit "$rc"
