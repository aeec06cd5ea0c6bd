#!/usr/bin/env bash
# vmtest.sh: run the gadget runtime's eBPF tests inside real distribution
# kernels booted under qemu, for what the machine's own kernel cannot show
# (kprobes, fentry/fexit, other kernel versions). `make test-kernels` runs it.
#
# For each kernel of hack/kernels.list (or those named as arguments) it
#   1. takes the newest linux-image-amd64 of the kernel's Debian suites
#      (apt-get download + dpkg-deb -x, into the tool cache; nothing is
#      installed into /boot, and the machine's apt sources are left alone);
#   2. packs a busybox-static initramfs with the package's test binary
#      (CGO_ENABLED=0 go test -c: static, no race detector, which needs
#      cgo), the eBPF objects it reads, and the kernel's build configuration
#      as /boot/config-<release> (the tests read it to tell why a section is
#      refused);
#      With VMTEST_GADGET_RUN=1 (the default) it also packs gadgetpm
#      (CGO_ENABLED=0 go build) and hack/vmtest/gadget-run.sh, which runs
#      `gadgetpm gadget run` of top-file and trace-oomkill with workloads
#      that make their events happen, after the tests;
#   3. boots it under qemu (TCG; KVM is used only with VMTEST_ACCEL=kvm) and
#      runs the tests there as root, with their output streamed here; the
#      guest prints "VMTEST-EXIT <status>" on the serial console before it
#      powers off (and "VMTEST-GADGET-RUN-EXIT <status>" after
#      gadget-run.sh), and those statuses are the kernel's result.
#
#   hack/vmtest.sh                 every kernel of hack/kernels.list
#   hack/vmtest.sh 6.1 6.12        those kernels
#   VMTEST_RUN='TestProbeSections' hack/vmtest.sh 6.1
#
# Environment:
#   VMTEST_PKG      Go package whose tests run (default ./pkg/gadget/ebpfstage/)
#   VMTEST_RUN      -test.run pattern (default: the probe, gadget and fault tests)
#   VMTEST_MEM      guest memory in MiB (default 1024)
#   VMTEST_SMP      guest CPUs (default 2)
#   VMTEST_TIMEOUT  seconds one kernel may take, boot to power-off (default 900)
#   VMTEST_ACCEL    qemu accelerator (default tcg)
#   VMTEST_GADGET_RUN=0  leave out gadgetpm and hack/vmtest/gadget-run.sh
#   VMTEST_ALLOW_SKIP=1  accept skipped tests (a kernel added to try it that
#                   lacks kprobes, trampolines or BTF); without it a skip
#                   fails that kernel, since the matrix exists to run them
#   GADGETPM_BIN    cache root (default $XDG_CACHE_HOME/gadgetpm, else
#                   ~/.cache/gadgetpm): kernels and busybox land in
#                   <cache>/vmtest/, keyed by package version
#
# Needs root the first time, to apt-get install qemu-system-x86 and cpio.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bin_root="${GADGETPM_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/gadgetpm}"
cache="$bin_root/vmtest"
pkg="${VMTEST_PKG:-./pkg/gadget/ebpfstage/}"
run="${VMTEST_RUN:-^(TestProbeSections|TestTraceOpen|TestSnapshotProcessShowsOwnProcess|TestLostSamplesAreCounted|TestTopFile.*|TestTraceOOMKill.*|TestFallback.*|TestMissingAttachTarget.*|TestIntervalSource|TestBadMarkers|TestIGSnapshotter.*|TestIGMapIter.*|TestIGOptionalPrograms|TestIGPerfEventArrayFallback)$}"
mem="${VMTEST_MEM:-1024}"
# One vCPU: under TCG, kernel text patching (enabling a tracepoint or a
# kprobe) synchronises every vCPU, and with two on a busy 2-core host a
# guest was seen stuck in soft lockups for minutes; one vCPU has nothing
# to wait for.
smp="${VMTEST_SMP:-1}"
vm_timeout="${VMTEST_TIMEOUT:-900}"
accel="${VMTEST_ACCEL:-tcg}"
gadget_run="${VMTEST_GADGET_RUN:-1}"
list="hack/kernels.list"

log() { echo "vmtest: $*" >&2; }
fail() {
	echo "vmtest: error: $*" >&2
	exit 1
}

work="$(mktemp -d "${TMPDIR:-/tmp}/gadgetpm-vmtest.XXXXXX")"
vm_pid=""
cleanup() {
	if [ -n "$vm_pid" ]; then
		kill "$vm_pid" 2>/dev/null || true
		wait "$vm_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# --- tools ------------------------------------------------------------------
need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
command -v flock >/dev/null 2>&1 || need+=(util-linux)
if [ "${#need[@]}" -gt 0 ]; then
	[ "$(id -u)" -eq 0 ] || fail "missing ${need[*]}: run as root, or 'apt-get install --no-install-recommends ${need[*]}' yourself, then run hack/vmtest.sh again"
	log "installing ${need[*]} with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
		apt-get update -qq >/dev/null || true
		apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
			fail "could not install ${need[*]}; run 'apt-get update && apt-get install --no-install-recommends ${need[*]}', then run hack/vmtest.sh again"
	fi
fi
[ "$(uname -m)" = x86_64 ] || fail "the kernel matrix boots amd64 kernels; this machine is $(uname -m)"

# --- which kernels ------------------------------------------------------------
declare -A suites=()
names_in_list=()
while read -r name rest; do
	case "$name" in '' | '#'*) continue ;; esac
	suites[$name]="$rest"
	names_in_list+=("$name")
done <"$list"
kernels=("$@")
[ "${#kernels[@]}" -gt 0 ] || kernels=("${names_in_list[@]}")
for k in "${kernels[@]}"; do
	[ -n "${suites[$k]:-}" ] || fail "kernel $k is not in $list (known: ${names_in_list[*]}); add a line '$k <debian suites>' there"
done

mkdir -p "$cache/kernels" "$cache/busybox"
exec 9>"$cache/.lock"
if ! flock -n 9; then
	log "another vmtest.sh is fetching kernels; waiting for it"
	flock 9
fi

# apt_for NAME SUITES...: apt options for an apt state of NAME's own (its
# sources, lists and downloads under the cache), refreshed once a day.
apt_opts=()
apt_for() {
	local name="$1" dir="$cache/apt/$1" s uri
	shift
	mkdir -p "$dir/lists/partial" "$dir/archives/partial"
	: >"$dir/sources.list.tmp"
	for s in "$@"; do
		uri=http://deb.debian.org/debian
		case "$s" in *-security) uri=http://deb.debian.org/debian-security ;; esac
		echo "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $s main" >>"$dir/sources.list.tmp"
	done
	mv -f "$dir/sources.list.tmp" "$dir/sources.list"
	apt_opts=(-o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o Dir::State::Lists="$dir/lists" -o Dir::State::status=/dev/null
		-o Dir::Cache="$dir" -o Dir::Cache::archives="$dir/archives"
		-o Dir::Cache::pkgcache="" -o Dir::Cache::srcpkgcache=""
		-o APT::Sandbox::User=root -o Acquire::Languages=none)
	if [ -z "$(find "$dir/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
		log "kernel $name: reading the package lists of $* (Debian)"
		if ! apt-get "${apt_opts[@]}" update -qq >"$dir/update.log" 2>&1; then
			if [ -n "$(find "$dir/lists" -maxdepth 1 -name '*_Packages*' | head -1)" ]; then
				log "kernel $name: apt-get update failed, using the lists of the last run ($dir/update.log)"
			else
				cat "$dir/update.log" >&2
				return 1
			fi
		fi
		touch "$dir/lists"/*_Packages* 2>/dev/null || true
	fi
}

# fetch_kernel NAME: the directory with NAME's vmlinuz, config and release,
# downloading and unpacking the kernel package when it is not cached.
fetch_kernel() {
	local name="$1" meta image version dir deb tmp
	# shellcheck disable=SC2086 # suites is a word list
	if ! apt_for "$name" ${suites[$name]}; then
		fail "kernel $name: cannot read the package lists of ${suites[$name]} from deb.debian.org, and none are cached"
	fi
	meta="$(apt-cache "${apt_opts[@]}" depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')"
	[ -n "$meta" ] || fail "kernel $name: linux-image-amd64 of ${suites[$name]} depends on no linux-image package (see $cache/apt/$name)"
	image="$meta"
	version="$(apt-cache "${apt_opts[@]}" policy "$image" | awk '/Candidate:/ {print $2}')"
	[ -n "$version" ] && [ "$version" != "(none)" ] || fail "kernel $name: no candidate version of $image"
	dir="$cache/kernels/${image}_$version"
	if [ ! -f "$dir/vmlinuz" ]; then
		log "kernel $name: downloading $image $version"
		tmp="$work/fetch-$name"
		mkdir -p "$tmp"
		(cd "$tmp" && apt-get "${apt_opts[@]}" download -qq "$image=$version" >/dev/null) ||
			fail "kernel $name: apt-get download $image=$version failed"
		deb="$(ls "$tmp"/*.deb)"
		dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./boot
		rm -rf "$dir.tmp"
		mkdir -p "$dir.tmp"
		mv "$tmp"/boot/vmlinuz-* "$dir.tmp/vmlinuz"
		mv "$tmp"/boot/config-* "$dir.tmp/config"
		basename "$deb" >"$dir.tmp/package"
		rm -rf "$tmp"
		rm -rf "$dir"
		mv "$dir.tmp" "$dir"
	fi
	# the release is what uname -r says: vmlinuz-<release> in the package
	if [ ! -f "$dir/release" ]; then
		echo "${image#linux-image-}" >"$dir/release.tmp"
		mv -f "$dir/release.tmp" "$dir/release"
	fi
	echo "$dir"
}

fetch_busybox() {
	local version dir tmp
	version="$(apt-cache policy busybox-static 2>/dev/null | awk '/Candidate:/ {print $2}')"
	if [ -z "$version" ] || [ "$version" = "(none)" ]; then
		apt-get update -qq >/dev/null 2>&1 || true
		version="$(apt-cache policy busybox-static 2>/dev/null | awk '/Candidate:/ {print $2}')"
	fi
	[ -n "$version" ] && [ "$version" != "(none)" ] || fail "busybox-static is not in this machine's apt sources; run apt-get update"
	dir="$cache/busybox/$version"
	if [ ! -x "$dir/busybox" ]; then
		log "downloading busybox-static $version"
		tmp="$work/fetch-busybox"
		mkdir -p "$tmp"
		(cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "busybox-static=$version" >/dev/null) ||
			fail "apt-get download busybox-static=$version failed"
		dpkg-deb -x "$tmp"/*.deb "$tmp/x"
		mkdir -p "$dir"
		cp "$tmp/x/bin/busybox" "$dir/busybox.tmp"
		mv -f "$dir/busybox.tmp" "$dir/busybox"
		rm -rf "$tmp"
	fi
	echo "$dir/busybox"
}

busybox="$(fetch_busybox)"
declare -A kdir=()
for k in "${kernels[@]}"; do
	kdir[$k]="$(fetch_kernel "$k")"
done
flock -u 9

# --- the guest's files ----------------------------------------------------------
base="$work/base"
pkgdir="${pkg#./}"
pkgdir="${pkgdir%/}"
mkdir -p "$base"/{bin,dev,proc,sys,tmp,boot,src/"$pkgdir"}
cp "$busybox" "$base/bin/busybox"
log "building the test binary of $pkg (CGO_ENABLED=0 go test -c)"
CGO_ENABLED=0 go test -c -gcflags=all=-dwarf=false -ldflags=-s -o "$base/src/$pkgdir/vm.test" "$pkg"
if [ "$gadget_run" = 1 ]; then
	log "building gadgetpm for gadget-run.sh (CGO_ENABLED=0 go build; minutes on a cold build cache)"
	CGO_ENABLED=0 go build -gcflags=all=-dwarf=false -ldflags=-s -o "$base/bin/gadgetpm" ./cmd/gadgetpm
	cp hack/vmtest/gadget-run.sh "$base/gadget-run.sh"
fi
# what the tests read, at the same paths relative to the package
mkdir -p "$base/src/bpf"
cp -r bpf/testdata "$base/src/bpf/"
for d in charts/packages/*/gadget; do
	mkdir -p "$base/src/$d"
	for f in "$d"/gadget.yaml "$d"/program.bpf.o; do
		if [ -f "$f" ]; then cp "$f" "$base/src/$d/"; fi
	done
done
# gadget-run.sh runs gadgetpm on whole package directories
if [ "$gadget_run" = 1 ]; then
	for p in top-file trace-oomkill; do
		cp -r "charts/packages/$p/." "$base/src/charts/packages/$p/"
	done
fi
cat >"$base/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin HOME=/tmp TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
ip link set lo up 2>/dev/null
. /vmtest.env
echo "vmtest: guest kernel $(uname -r), $(nproc) CPUs"
cd "/src/$VMTEST_PKGDIR"
# well inside the host's VMTEST_TIMEOUT, so a hung test still reports
./vm.test -test.v -test.count=1 -test.timeout=10m -test.run "$VMTEST_RUN"
echo "VMTEST-EXIT $?"
if [ -x /gadget-run.sh ]; then
	/gadget-run.sh
	echo "VMTEST-GADGET-RUN-EXIT $?"
fi
sync
poweroff -f
EOF
chmod +x "$base/init"
printf 'VMTEST_PKGDIR=%q\nVMTEST_RUN=%q\n' "$pkgdir" "$run" >"$base/vmtest.env"

# --- boot each kernel -------------------------------------------------------------
declare -A result=() took=()
failed=0
for k in "${kernels[@]}"; do
	dir="${kdir[$k]}"
	release="$(cat "$dir/release")"
	# what the kernel was built with decides what can run at all
	allow_skip="${VMTEST_ALLOW_SKIP:-}"
	if ! grep -q '^CONFIG_DEBUG_INFO_BTF=y' "$dir/config"; then
		log "kernel $k ($release): skipped: its configuration lacks CONFIG_DEBUG_INFO_BTF=y; the gadgets' CO-RE relocations and fentry need kernel BTF"
		result[$k]="skipped: no CONFIG_DEBUG_INFO_BTF=y"
		took[$k]=0
		continue
	fi
	for opt in CONFIG_KPROBES CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS; do
		if ! grep -q "^$opt=y" "$dir/config"; then
			log "kernel $k ($release): its configuration lacks $opt=y: the tests that need it skip there, naming it"
			allow_skip=1
		fi
	done
	rm -f "$base"/boot/config-*
	cp "$dir/config" "$base/boot/config-$release"
	initrd="$work/initrd-$k.cpio.gz"
	(cd "$base" && find . | cpio -o -H newc --quiet | gzip -1) >"$initrd"
	out="$work/console-$k.log"
	start=$SECONDS
	for attempt in 1 2; do
		log "kernel $k ($release, $(cat "$dir/package" 2>/dev/null || echo cached)): booting under qemu ($accel, ${smp} CPUs, ${mem} MiB), running $pkg -run '$run'$([ "$attempt" = 2 ] && echo " (second attempt)")"
		: >"$out.raw"
		# qemu in the background so that a signal reaches the trap at once
		timeout -k 10 "$vm_timeout" qemu-system-x86_64 -accel "$accel" -m "$mem" -smp "$smp" \
			-nographic -nic none -no-reboot -kernel "$dir/vmlinuz" -initrd "$initrd" \
			-append "console=ttyS0 panic=-1 quiet loglevel=3" </dev/null >"$out.raw" 2>&1 &
		vm_pid=$!
		# the guest's output from its init on; firmware and boot noise only
		# when no result came (below)
		tail -n +1 -f --pid="$vm_pid" "$out.raw" 2>/dev/null | tr -d '\r' |
			awk -v k="$k" '/vmtest: guest kernel/ {sub(/.*vmtest: guest/, "vmtest: guest"); on = 1} on {print "  [" k "] " $0; fflush()}' >&2 &
		tail_pid=$!
		# A guest whose CPUs report soft lockups for a minute is stuck
		# (emulation, not the code under test, as far as seen): stop it
		# then rather than at VMTEST_TIMEOUT, and boot it once more.
		(
			lockup=""
			while kill -0 "$vm_pid" 2>/dev/null; do
				if [ -z "$lockup" ] && grep -q 'soft lockup - CPU' "$out.raw" 2>/dev/null; then
					lockup=$SECONDS
				fi
				if [ -n "$lockup" ] && [ $((SECONDS - lockup)) -ge 60 ]; then
					echo "vmtest: kernel $k: the guest reports soft lockups for 60s: stopping it" >&2
					kill "$vm_pid" 2>/dev/null
					break
				fi
				sleep 2
			done
		) &
		watch_pid=$!
		vm_rc=0
		wait "$vm_pid" || vm_rc=$?
		vm_pid=""
		wait "$tail_pid" 2>/dev/null || true
		kill "$watch_pid" 2>/dev/null || true
		wait "$watch_pid" 2>/dev/null || true
		if ! grep -q '^VMTEST-EXIT' <(tr -d '\r' <"$out.raw") && grep -q 'soft lockup - CPU' "$out.raw" && [ "$attempt" = 1 ]; then
			log "kernel $k: the guest locked up before the tests reported; booting it again"
			continue
		fi
		break
	done
	took[$k]=$((SECONDS - start))
	status="$(tr -d '\r' <"$out.raw" | sed -n 's/^VMTEST-EXIT \([0-9]*\)$/\1/p' | tail -1)"
	gr_status="$(tr -d '\r' <"$out.raw" | sed -n 's/^VMTEST-GADGET-RUN-EXIT \([0-9]*\)$/\1/p' | tail -1)"
	if [ -z "$status" ] || { [ "$gadget_run" = 1 ] && [ -z "$gr_status" ]; }; then
		if [ "$vm_rc" -eq 124 ] || [ "$vm_rc" -eq 137 ]; then
			result[$k]="no result: the guest did not power off within ${vm_timeout}s (VMTEST_TIMEOUT)"
		else
			result[$k]="no result: qemu exited with status $vm_rc before the tests reported (see the console above)"
		fi
		log "kernel $k: the last lines of its console:"
		tr -d '\r' <"$out.raw" | tail -n 40 | sed "s/^/  [$k] /" >&2
		failed=1
	elif [ "$status" -ne 0 ]; then
		result[$k]="FAIL (test binary exit status $status)"
		failed=1
	elif [ "$gadget_run" = 1 ] && [ "$gr_status" -ne 0 ]; then
		result[$k]="FAIL (gadget-run.sh exit status $gr_status: gadgetpm gadget run, see its lines above)"
		failed=1
	elif [ "$allow_skip" != 1 ] && skips="$(tr -d '\r' <"$out.raw" | grep -c -- '--- SKIP')" && [ "$skips" -gt 0 ]; then
		# the matrix's kernels have kprobes, trampolines and BTF: a skip
		# there means a test misjudged the kernel, not a missing feature
		result[$k]="FAIL ($skips tests skipped on a kernel chosen to run them; VMTEST_ALLOW_SKIP=1 for a kernel that lacks what they need)"
		failed=1
	else
		result[$k]="ok"
	fi
done

log "summary ($pkg -run '$run'):"
for k in "${kernels[@]}"; do
	printf 'vmtest:   %-6s %-40s %4ss  %s\n' "$k" "$(cat "${kdir[$k]}/release")" "${took[$k]}" "${result[$k]}" >&2
done
exit "$failed"
