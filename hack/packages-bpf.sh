#!/usr/bin/env bash
# Rebuilds the eBPF objects the packages/ tests load:
#   program.bpf.o  with BTF (-g), as every gadget must be built
#   nobtf.bpf.o    without BTF, which the loader must refuse
set -euo pipefail
cd "$(dirname "$0")/../packages/testdata/bpf"
if ! command -v clang >/dev/null || [ ! -e /usr/include/bpf/bpf_helpers.h ]; then
	apt-get update -qq && apt-get install -y -qq clang llvm libbpf-dev linux-libc-dev >/dev/null
fi
inc="/usr/include/$(uname -m)-linux-gnu"
clang -O2 -g -target bpf -I"$inc" -c execsnoop.bpf.c -o program.bpf.o
clang -O2 -target bpf -I"$inc" -c execsnoop.bpf.c -o nobtf.bpf.o
echo "built $(pwd)/program.bpf.o and nobtf.bpf.o"
