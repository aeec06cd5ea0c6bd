#!/usr/bin/env bash
# bpf-bench.sh: an exec storm traced by gadgetpm's trace_exec and by
# bpftrace printing the same fields, one after the other on this machine.
# For each tracer it reports the storm's events captured against execs
# made, every event printed (other processes exec too), lost events, and the
# tracer's CPU seconds (user+system from /proc/<pid>/stat, start-up
# included) per 1,000 printed events. Both print one JSON object per event
# with pid, ppid, uid, comm and the program (bpftrace: the exec'd filename;
# trace_exec: the full argv, plus timestamp, mntns_id, gid and the
# enricher's container).
#
#   sudo hack/bpf-bench.sh            # 20000 execs
#   sudo EXECS=5000 hack/bpf-bench.sh
#
# Needs root; installs bpftrace from Debian's packages when missing.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
EXECS="${EXECS:-20000}"
SETTLE="${SETTLE:-3}"

if [ "$(id -u)" -ne 0 ]; then
	echo "bpf-bench: run as root (loading eBPF programs needs it)" >&2
	exit 1
fi
if ! command -v bpftrace >/dev/null; then
	echo "bpf-bench: installing bpftrace with apt-get" >&2
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bpftrace
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "bpf-bench: building gadgetpm" >&2
go build -o "$work/gadgetpm" ./cmd/gadgetpm
# a marker binary: its comm tells the storm's execs from everything else
marker="$work/gpmbench-true"
cp /bin/true "$marker"
comm="gpmbench-true"

ticks="$(getconf CLK_TCK)"
cpu_seconds() { # pid -> user+system seconds so far
	awk -v t="$ticks" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"
}

storm() {
	local i
	for ((i = 0; i < EXECS; i++)); do "$marker"; done
}

# run NAME OUT ERR CMD...: start a tracer, storm, stop it, print a result row
run() {
	local name="$1" out="$2" err="$3"
	shift 3
	"$@" >"$out" 2>"$err" &
	local pid=$!
	sleep "$SETTLE"
	echo "bpf-bench: $name: $EXECS execs of $marker" >&2
	local start end
	start="$(date +%s.%N)"
	storm
	end="$(date +%s.%N)"
	sleep 1 # let the tracer drain
	local cpu
	cpu="$(cpu_seconds "$pid")"
	kill -INT "$pid"
	wait "$pid" || true
	local seen total lost
	seen="$(grep -c -- "$comm" "$out" || true)"
	# every exec on the machine is traced, the storm's and others'
	total="$(grep -c '"pid"' "$out" || true)"
	case "$name" in
	gadgetpm) lost="$(sed -n 's/.*exec: [0-9]* events, [0-9]* dropped by filters or limits, \([0-9]*\) lost/\1/p' "$err" | tail -1)" ;;
	bpftrace) lost="$(awk '/^Lost [0-9]+ events/ { n += $2 } END { print n + 0 }' "$out" "$err")" ;;
	esac
	printf '| %s | %d | %d | %d | %s | %s | %.3f | %.1f |\n' "$name" "$EXECS" "$seen" "$total" "${lost:-0}" "$cpu" \
		"$(awk -v c="$cpu" -v n="$total" 'BEGIN { print (n > 0) ? c * 1000 / n : 0 }')" \
		"$(awk -v s="$start" -v e="$end" 'BEGIN { print e - s }')"
}

echo "| tracer | storm execs | storm events captured | all events printed | lost | tracer CPU s | CPU s per 1,000 printed events | storm wall s |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
run gadgetpm "$work/g.out" "$work/g.err" "$work/gadgetpm" gadget run charts/packages/trace-exec -o json
run bpftrace "$work/b.out" "$work/b.err" bpftrace -e \
	'tracepoint:sched:sched_process_exec { printf("{\"pid\":%d,\"ppid\":%d,\"uid\":%d,\"comm\":\"%s\",\"args\":\"%s\"}\n", pid, curtask->real_parent->tgid, uid, comm, str(args->filename)); }'
