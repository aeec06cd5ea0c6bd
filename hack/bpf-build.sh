#!/usr/bin/env bash
# bpf-build.sh: compile the bundled gadgets (bpf/gadgets/*/program.bpf.c)
# and the runtime's test objects (bpf/testdata/*.bpf.c) with clang, then copy
# each gadget's object into its package under charts/packages/.
#
# vmlinux.h is generated from the running kernel's BTF with bpftool into
# bpf/build/ (git-ignored); it is never hand-written. Missing tools are
# installed from Debian's packages.
#
#   hack/bpf-build.sh            build everything
#   CLANG=clang-16 hack/bpf-build.sh
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

CLANG="${CLANG:-clang}"
BPFTOOL="${BPFTOOL:-bpftool}"
BTF="${BTF:-/sys/kernel/btf/vmlinux}"
build="bpf/build"

need=()
command -v "$CLANG" >/dev/null || need+=(clang)
command -v llvm-strip >/dev/null || need+=(llvm)
command -v "$BPFTOOL" >/dev/null || need+=(bpftool)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
if [ "${#need[@]}" -gt 0 ]; then
	echo "bpf-build: installing ${need[*]} with apt-get" >&2
	if [ "$(id -u)" -ne 0 ]; then
		echo "bpf-build: run as root or install them yourself: apt-get install ${need[*]}" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
if [ ! -r "$BTF" ]; then
	echo "bpf-build: $BTF is missing: the kernel must be built with CONFIG_DEBUG_INFO_BTF=y (or set BTF=path)" >&2
	exit 1
fi

mkdir -p "$build"
pending=()
echo "bpf-build: generating $build/vmlinux.h from $BTF" >&2
"$BPFTOOL" btf dump file "$BTF" format c >"$build/vmlinux.h.tmp"
mv -f "$build/vmlinux.h.tmp" "$build/vmlinux.h"

arch="$(uname -m)"
case "$arch" in
x86_64) target_arch=x86 ;;
aarch64) target_arch=arm64 ;;
*) target_arch="$arch" ;;
esac

# objects.sum records, for every object built, the sha256 of its inputs
# (the source and bpf/include/*/*.h: the sha256sum listing of those
# files, hashed) and of the object itself; pkg/gadget/ebpfstage's
# TestObjectsBuiltFromCurrentSources recomputes both (docs/gadgets.md).
sums="$build/objects.sum.tmp"
: >"$sums"
export LC_ALL=C

# compile SRC OUT [extra clang flags]
compile() {
	local src="$1" out="$2"
	shift 2
	pending+=("$out $src")
	echo "bpf-build: $src -> $out" >&2
	"$CLANG" -O2 -target bpf -D__TARGET_ARCH_"$target_arch" \
		-I "$build" -I bpf/include -I /usr/include/"$arch"-linux-gnu \
		-fdebug-prefix-map="$root"=. -Wall -Werror "$@" -c "$src" -o "$out.tmp"
	mv -f "$out.tmp" "$out"
}

# gadget -> the packages under charts/packages/ that carry its object
# (space-separated); hook-demo, the hooks example, carries trace_exec.
declare -A package=(
	[trace_exec]="trace-exec hook-demo"
	[trace_open]=trace-open
	[trace_tcpconnect]=trace-tcpconnect
	[snapshot_process]=snapshot-process
	[top_file]=top-file
	[trace_oomkill]=trace-oomkill
)

for dir in bpf/gadgets/*/; do
	name="$(basename "$dir")"
	compile "$dir/program.bpf.c" "$dir/program.bpf.o" -g
	# drop DWARF, keep BTF: smaller objects, same types
	llvm-strip -g "$dir/program.bpf.o"
	for pkg in ${package[$name]:-}; do
		if [ -d "charts/packages/$pkg/gadget" ]; then
			cp "$dir/program.bpf.o" "charts/packages/$pkg/gadget/program.bpf.o"
		fi
	done
done

compile bpf/testdata/verifier_reject.bpf.c bpf/testdata/verifier_reject.bpf.o -g
llvm-strip -g bpf/testdata/verifier_reject.bpf.o
for t in second_ok lossy bad_attach probe_kprobe probe_fentry raw_tp_exit fallback missing_kprobe missing_fentry interval_opens bad_interval bad_fallback ig_trace_exec; do
	compile bpf/testdata/$t.bpf.c bpf/testdata/$t.bpf.o -g
	llvm-strip -g bpf/testdata/$t.bpf.o
done
# Inspektor Gadget's snapshotters, map iterators and optional programs
for t in ig_snap_tasks ig_top_opens ig_opt_probe; do
	compile bpf/testdata/$t.bpf.c bpf/testdata/$t.bpf.o -g
	llvm-strip -g bpf/testdata/$t.bpf.o
done
for src in bpf/testdata/ig_fields_*.bpf.c; do
	compile "$src" "${src%.c}.o" -g
	llvm-strip -g "${src%.c}.o"
done
# the same gadget without -g: no BTF at all
compile bpf/testdata/second_ok.bpf.c bpf/testdata/no_btf.bpf.o

# record each object once it is final (after llvm-strip)
for entry in "${pending[@]}"; do
	read -r out src <<<"$entry"
	out="${out//\/\//\/}" src="${src//\/\//\/}" # bpf/gadgets/x//program...
	inputs="$(sha256sum "$src" bpf/include/*/*.h | sha256sum | cut -d' ' -f1)"
	object="$(sha256sum "$out" | cut -d' ' -f1)"
	echo "$inputs $object $out $src" >>"$sums"
done
{
	echo "# sha256(inputs) sha256(object) object source; written by hack/bpf-build.sh"
	sort -k3 "$sums"
} >bpf/objects.sum
rm -f "$sums"

echo "bpf-build: done" >&2
