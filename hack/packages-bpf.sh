#!/usr/bin/env bash
# Rebuilds the eBPF objects the packages/ tests load:
#   program.bpf.o  with BTF (-g), as every gadget must be built
#   nobtf.bpf.o    without BTF, which the loader must refuse
#   nomarkers.bpf.o with BTF but without the marker declarations, which
#                  the loader must refuse too
# The first two declare their data source and param with the gadget runtime's
# macros (bpf/include/gadget/macros.h).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/packages/testdata/bpf"
if ! command -v clang >/dev/null || [ ! -e /usr/include/bpf/bpf_helpers.h ]; then
	apt-get update -qq && apt-get install -y -qq clang llvm libbpf-dev linux-libc-dev >/dev/null
fi
inc="/usr/include/$(uname -m)-linux-gnu"
clang -O2 -g -target bpf -I"$inc" -I"$root/bpf/include" -c execsnoop.bpf.c -o program.bpf.o
clang -O2 -target bpf -I"$inc" -I"$root/bpf/include" -c execsnoop.bpf.c -o nobtf.bpf.o
clang -O2 -g -target bpf -DNO_MARKERS -I"$inc" -I"$root/bpf/include" -c execsnoop.bpf.c -o nomarkers.bpf.o
echo "built $(pwd)/program.bpf.o, nobtf.bpf.o and nomarkers.bpf.o"
