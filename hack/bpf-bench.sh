#!/usr/bin/env bash
# bpf-bench.sh: `gadgetpm gadget run` against bpftrace printing the same
# fields, one after the other on this machine, in two storms:
#
#   sparse: EXECS execs (default 5,000) of a marker binary at SPARSE_RATE
#           per second (default 200), traced by trace-exec and by bpftrace on
#           tracepoint:sched:sched_process_exec;
#   dense:  OPENS failed opens (default 300,000) of a marker path at
#           DENSE_RATE per second (default 30,000), traced by trace-open and
#           by bpftrace on the openat tracepoints. An exec storm cannot be
#           dense: an exec costs the machine about 0.5 ms, opens cost 1 µs.
#
# For each tracer and storm it reports, from the tracer's own threads'
# on-CPU time (/proc/<pid>/task/*/schedstat, nanoseconds):
#   start-up CPU  until the tracer printed its first event (a probe open or
#                 exec of the marker every 50 ms until one shows up);
#   idle rate     CPU per second over IDLE seconds (default 10) without
#                 the storm;
#   marginal CPU  per printed event: the CPU from the storm's start until
#                 it drained, minus the idle rate over the same time,
#                 divided by the events printed in that time (both tracers
#                 print every exec or open on the machine, not only the
#                 storm's);
# plus the storm's events captured against those made, lost events, and
# the tracer's resident memory: VmHWM (peak) and VmRSS after the storm.
# gadgetpm's binary is evicted from the page cache after the build, so it
# is read back as an installed binary is (see docs/benchmarks.md, "gadget").
#
#   sudo hack/bpf-bench.sh
#   sudo ROUNDS=2 EXECS=5000 OPENS=600000 hack/bpf-bench.sh
#   sudo GADGETPM=/tmp/gadgetpm-before hack/bpf-bench.sh   # a binary built before
#
# Needs root and a C compiler (for the storm); installs bpftrace from
# Debian's packages when missing.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
EXECS="${EXECS:-5000}"
SPARSE_RATE="${SPARSE_RATE:-200}"
OPENS="${OPENS:-300000}"
DENSE_RATE="${DENSE_RATE:-30000}"
IDLE="${IDLE:-10}"
ROUNDS="${ROUNDS:-1}"

if [ "$(id -u)" -ne 0 ]; then
	echo "bpf-bench: run as root (loading eBPF programs needs it)" >&2
	exit 1
fi
if ! command -v cc >/dev/null; then
	echo "bpf-bench: needs a C compiler for the storm (apt-get install gcc)" >&2
	exit 1
fi
if ! command -v bpftrace >/dev/null; then
	echo "bpf-bench: installing bpftrace with apt-get" >&2
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bpftrace
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -n "${GADGETPM:-}" ]; then
	cp "$GADGETPM" "$work/gadgetpm"
else
	echo "bpf-bench: building gadgetpm" >&2
	go build -o "$work/gadgetpm" ./cmd/gadgetpm
fi
# The writes of the linker (or cp) leave the binary in large page-cache
# folios, which the kernel maps whole; evicting it makes the tracer read it
# back as after a reboot.
sync "$work/gadgetpm"
dd if="$work/gadgetpm" iflag=nocache count=0 status=none

# storm exec|open PATH N RATE: N execs of PATH or opens of PATH, RATE per
# second; fork/exec in C so that the storm is not limited by a shell.
cat >"$work/storm.c" <<'EOF'
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;
static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}
int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: storm exec|open PATH N RATE\n");
		return 2;
	}
	int exec = strcmp(argv[1], "exec") == 0;
	long n = atol(argv[3]);
	double rate = atof(argv[4]), start = now();
	char *args[] = {argv[2], NULL};
	for (long i = 0; i < n; i++) {
		double d = start + i / rate - now();
		if (d > 0) {
			struct timespec ts = {(time_t)d, (long)((d - (time_t)d) * 1e9)};
			nanosleep(&ts, NULL);
		}
		if (exec) {
			pid_t pid;
			if (posix_spawn(&pid, argv[2], NULL, NULL, args, environ) != 0) {
				perror("posix_spawn");
				return 1;
			}
			waitpid(pid, NULL, 0);
		} else {
			int fd = open(argv[2], O_RDONLY);
			if (fd >= 0)
				close(fd);
		}
	}
	printf("%.3f\n", now() - start);
	return 0;
}
EOF
cc -O2 -o "$work/storm" "$work/storm.c"
# markers: their comm or path tells the storm's events from everything else
marker="$work/gpmbench-true"
cp /bin/true "$marker"
openmarker="$work/gpmbench-missing" # never created: every open fails fast

cpu_seconds() { # pid -> on-CPU seconds of all its threads so far
	cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.6f", s / 1e9 }'
}
status_mb() { # pid field -> MB
	awk -v f="$2:" '$1 == f { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

# run STORM NAME OUT ERR CMD...: start a tracer, wait for its first event,
# idle, storm, stop it, print a result row
run() {
	local storm="$1" name="$2" out="$3" err="$4"
	shift 4
	local kind=exec path="$marker" n="$EXECS" rate="$SPARSE_RATE" match=gpmbench-true
	if [ "$storm" = dense ]; then
		kind=open path="$openmarker" n="$OPENS" rate="$DENSE_RATE" match=gpmbench-missing
	fi
	"$@" >"$out" 2>"$err" &
	local pid=$!
	local started=0 i
	for ((i = 0; i < 600; i++)); do
		"$work/storm" "$kind" "$path" 1 1 >/dev/null
		if grep -q -- "$match" "$out"; then
			started=1
			break
		fi
		sleep 0.05
	done
	if [ "$started" = 0 ]; then
		echo "bpf-bench: $name printed no event in 30 s; its stderr:" >&2
		cat "$err" >&2
		kill -INT "$pid"
		return 1
	fi
	local startup t0 c0 t1 c1 t2 c2 before
	startup="$(cpu_seconds "$pid")"
	t0="$(date +%s.%N)" c0="$(cpu_seconds "$pid")"
	sleep "$IDLE"
	t1="$(date +%s.%N)" c1="$(cpu_seconds "$pid")"
	before="$(wc -l <"$out")"
	echo "bpf-bench: $name: $n ${kind}s of $path at $rate/s" >&2
	"$work/storm" "$kind" "$path" "$n" "$rate" >/dev/null
	sleep 1 # let the tracer drain
	t2="$(date +%s.%N)" c2="$(cpu_seconds "$pid")"
	local hwm rss
	hwm="$(status_mb "$pid" VmHWM)" rss="$(status_mb "$pid" VmRSS)"
	kill -INT "$pid"
	wait "$pid" || true
	local seen printed lost
	seen="$(grep -c -- "$match" "$out" || true)"
	printed=$(($(wc -l <"$out") - before))
	case "$name" in
	gadgetpm) lost="$(sed -n 's/.*: [0-9]* events, [0-9]* dropped by filters or limits, \([0-9]*\) lost/\1/p' "$err" | tail -1)" ;;
	bpftrace) lost="$(awk '/^Lost [0-9]+ events/ { n += $2 } END { print n + 0 }' "$out" "$err")" ;;
	esac
	awk -v storm="$storm" -v name="$name" -v n="$n" -v rate="$rate" -v seen="$seen" -v printed="$printed" -v lost="${lost:-0}" \
		-v su="$startup" -v c0="$c0" -v c1="$c1" -v c2="$c2" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v hwm="$hwm" -v rss="$rss" 'BEGIN {
		idle = (c1 - c0) / (t1 - t0)
		marginal = printed > 0 ? (c2 - c1 - idle * (t2 - t1)) / printed * 1e6 : 0
		printf "| %s | %s | %d at %d/s | %d | %d | %d | %.3f | %.2f | %.3f | %.2f | %s | %s |\n",
			storm, name, n, rate, seen, printed, lost, su, idle * 1000, c2 - c1, marginal, hwm, rss
	}'
}

echo "| storm | tracer | storm events | captured | printed in storm | lost | start-up CPU s | idle CPU ms/s | storm CPU s | marginal CPU µs/event | peak RSS MB | RSS after MB |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for ((round = 0; round < ROUNDS; round++)); do
	run sparse gadgetpm "$work/g.out" "$work/g.err" "$work/gadgetpm" gadget run charts/packages/trace-exec -o json
	run sparse bpftrace "$work/b.out" "$work/b.err" bpftrace -e \
		'tracepoint:sched:sched_process_exec { printf("{\"pid\":%d,\"ppid\":%d,\"uid\":%d,\"comm\":\"%s\",\"args\":\"%s\"}\n", pid, curtask->real_parent->tgid, uid, comm, str(args->filename)); }'
	run dense gadgetpm "$work/g.out" "$work/g.err" "$work/gadgetpm" gadget run charts/packages/trace-open -o json
	run dense bpftrace "$work/b.out" "$work/b.err" bpftrace -e \
		'tracepoint:syscalls:sys_enter_openat { @fname[tid] = args->filename; @flags[tid] = args->flags; }
		 tracepoint:syscalls:sys_exit_openat /@fname[tid]/ { printf("{\"pid\":%d,\"tid\":%d,\"uid\":%d,\"comm\":\"%s\",\"fname\":\"%s\",\"flags\":%d,\"ret\":%d}\n", pid, tid, uid, comm, str(@fname[tid]), @flags[tid], args->ret); delete(@fname[tid]); delete(@flags[tid]); }
		 END { clear(@fname); clear(@flags); }'
done
