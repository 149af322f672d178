#!/usr/bin/env bash
# tests/guest_boot/guest_boot.sh TEST_INIT PROBE
#
# Boots Brume's guest image with bare QEMU, the way the worker's microVMs are shaped (microvm
# machine, direct boot of the PVH vmlinux, virtio-serial control port on virtio-mmio), and checks:
#   - build-kernel.sh and build-initramfs.sh produce a kernel and an initramfs (TEST_INIT as /init);
#   - the guest reaches PID 1, finds the port "brume.control" and its marker line arrives over
#     the channel's UNIX socket within GUEST_BOOT_TIMEOUT seconds (default 10) and on the serial
#     console;
#   - the guest powers itself off and QEMU exits 0 (no hang, no panic loop: -no-reboot);
# GUEST_BOOT_RUNS times (default 5), since microvm boots under TCG hang intermittently when the
# kernel command line lacks tsc_early_khz (see worker-agent/guest/README.md).
#
# Prints "# boot N ms" per run (QEMU start to the marker on the host socket), the median, and,
# unless GUEST_BOOT_RSS=0, the resident memory of an idle booted guest ("# rss ..."). bench/guest.sh
# reuses this output. GUEST_BOOT_ACCEL (default tcg) picks QEMU's accelerator.
# Exit 77 (skipped) when QEMU, the kernel source or root (for the initramfs device nodes) is absent.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: guest_boot.sh TEST_INIT PROBE" >&2; exit 2; }
test_init=$1
probe=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
guest=$(cd "$here/../../worker-agent/guest" && pwd)
runs=${GUEST_BOOT_RUNS:-5}
timeout_s=${GUEST_BOOT_TIMEOUT:-10}
accel=${GUEST_BOOT_ACCEL:-tcg}
timer_arg=
[ "$accel" = tcg ] && timer_arg=" noapictimer"
marker="BRUME-TEST-INIT READY"

skip() { echo "guest_boot: skipped: $*"; exit 77; }
command -v qemu-system-x86_64 >/dev/null ||
  skip "no qemu-system-x86_64 on PATH (Debian qemu-system-x86)"
[ -f "${BRUME_LINUX_SOURCE:-/usr/src/linux-source-6.1.tar.xz}" ] ||
  skip "no kernel source (Debian linux-source-6.1)"
[ "$(id -u)" = 0 ] ||
  skip "build-initramfs.sh must run as root (device nodes and owners in the archive)"

# Both builders print progress on stderr and the artifact's path last on stdout.
vmlinux=$("$guest/build-kernel.sh" | tail -n1)
initrd=$("$guest/build-initramfs.sh" "$test_init" | tail -n1)
echo "# kernel $vmlinux ($(($(stat -c %s "$vmlinux") / 1024)) KiB)"
echo "# initramfs $initrd ($(($(stat -c %s "$initrd") / 1024)) KiB)"

if tsc_khz=$("$guest/tsc-khz.sh"); then
  tsc_arg=" tsc_early_khz=$tsc_khz"
else
  echo "# warning: host TSC frequency unknown; booting without tsc_early_khz (expect hangs)"
  tsc_arg=
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/brume-guest-boot-XXXXXX")
trap 'rm -rf "$dir"' EXIT
sock="$dir/ctl.sock"

# The QEMU command line for run $1 with extra kernel arguments $2, in the array qemu.
#   microvm: no PCI, no firmware tables (acpi=off: QEMU puts the virtio-mmio devices on the
#   kernel command line, as the worker's domains do), virtio on MMIO; x-option-roms=off skips the
#   option ROM; isa-serial=on is the console; rtc stays on: without a CMOS clock the kernel waits
#   about 1 s for the RTC at boot, and with one it gets the wall-clock time for free.
#   -cpu max, never -cpu host (KVM here aborts on it; see ../shared/DESIGN.md).
#   -no-reboot: a panicking guest (panic=-1 reboots at once) ends QEMU instead of looping;
#   reboot=t, not reboot=k: microvm has no keyboard controller, and waiting for one costs a
#   panicking guest about 1.6 s. no_timer_check, and noapictimer under TCG: the same timer
#   arguments as the worker's domains, as are virtio_mmio.max_queue_size and the two-port
#   virtio-serial device (worker-agent/domain.c says why).
qemu_cmd() {
  qemu=(qemu-system-x86_64
    -M "microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=off" -accel "$accel" -cpu max -m 128 -smp 1
    -nodefaults -no-user-config -display none -no-reboot
    -serial "file:$dir/console.$1"
    -kernel "$vmlinux" -initrd "$initrd"
    -append "console=ttyS0 quiet reboot=t panic=-1 no_timer_check$timer_arg virtio_mmio.max_queue_size=128$tsc_arg$2"
    -device virtio-serial-device,max_ports=2
    -chardev "socket,id=ctl,path=$sock,server=on,wait=off"
    -device "virtserialport,chardev=ctl,name=brume.control,nr=1")
}
qemu_cmd 1 ""
echo "# qemu ${qemu[*]}"

failed=0
times=()
for i in $(seq 1 "$runs"); do
  qemu_cmd "$i" ""
  if "$probe" -t "$timeout_s" -m "$marker" "$sock" -- "${qemu[@]}" >"$dir/probe.$i" 2>&1 &&
    grep -q "$marker" "$dir/console.$i"; then
    grep '^# boot' "$dir/probe.$i"
    times+=("$(sed -n 's/^# boot \([0-9.]*\) ms$/\1/p' "$dir/probe.$i")")
  else
    failed=$((failed + 1))
    echo "guest_boot: run $i failed:"
    sed 's/^/  probe: /' "$dir/probe.$i"
    sed 's/^/  console: /' "$dir/console.$i" 2>/dev/null || true
  fi
done

if [ ${#times[@]} -gt 0 ]; then
  median=$(printf '%s\n' "${times[@]}" | sort -n |
    awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')
  echo "# boot median $median ms over ${#times[@]} runs"
fi

# An idle guest (test_init stays up): its memory as the host sees it, QEMU's libraries included.
if [ "${GUEST_BOOT_RSS:-1}" = 1 ]; then
  qemu_cmd rss " brume_test.idle"
  if "$probe" -t "$timeout_s" -m "$marker" -r 2000 "$sock" -- "${qemu[@]}" \
    >"$dir/probe.rss" 2>&1; then
    grep '^# rss' "$dir/probe.rss"
  else
    failed=$((failed + 1))
    echo "guest_boot: the idle run failed:"
    sed 's/^/  probe: /' "$dir/probe.rss"
  fi
fi

if [ "$failed" -gt 0 ]; then
  echo "guest_boot: $failed run(s) failed"
  exit 1
fi
echo "guest_boot: $runs boots passed"
