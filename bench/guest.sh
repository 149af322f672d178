#!/usr/bin/env bash
# bench/guest.sh: bare QEMU boot of Brume's guest image to its first word on the control channel.
#
# Run by bench/run.sh guest (BUILD_DIR must hold a build with tests/guest_boot). Boots the guest
# kernel and an initramfs around tests/guest_boot's test init GUEST_BENCH_RUNS times (default 10)
# through tests/guest_boot/guest_boot.sh, so the QEMU command line is the test's, and prints:
#   raw_qemu_boot_to_agent_p50/_p90/_max   QEMU start to the marker on the host socket (ms)
#   raw_qemu_idle_guest_rss/_anon          an idle booted guest's QEMU process (MiB; anon = what
#                                          each further guest costs, the rest is shared libraries)
# The first run builds the kernel (2-5 minutes). Progress goes to stderr.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$top/build}
init=$BUILD_DIR/tests/guest_boot/guest_test_init
probe=$BUILD_DIR/tests/guest_boot/guest-boot-probe
for f in "$init" "$probe"; do
  [ -x "$f" ] || { echo "bench/guest.sh: $f is missing (build targets guest_test_init, guest-boot-probe)" >&2; exit 1; }
done

out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! GUEST_BOOT_RUNS=${GUEST_BENCH_RUNS:-10} "$top/tests/guest_boot/guest_boot.sh" "$init" "$probe" >"$out"; then
  cat "$out" >&2
  echo "bench/guest.sh: a boot failed" >&2
  exit 1
fi
grep -E '^# (qemu|kernel|initramfs|boot median)' "$out" >&2

sed -n 's/^# boot \([0-9.]*\) ms$/\1/p' "$out" | sort -n | awk '
  { v[NR] = $1 }
  END {
    if (NR == 0) exit 1
    p50 = v[int((NR + 1) / 2)]; p90 = v[int((NR * 9 + 9) / 10)]
    printf "{\"bench\": \"guest\", \"metric\": \"raw_qemu_boot_to_agent_p50\", \"value\": %.1f, \"unit\": \"ms\"}\n", p50
    printf "{\"bench\": \"guest\", \"metric\": \"raw_qemu_boot_to_agent_p90\", \"value\": %.1f, \"unit\": \"ms\"}\n", p90
    printf "{\"bench\": \"guest\", \"metric\": \"raw_qemu_boot_to_agent_max\", \"value\": %.1f, \"unit\": \"ms\"}\n", v[NR]
  }'
sed -n 's/^# rss \([0-9]*\) KiB (anon \([0-9]*\) KiB.*/\1 \2/p' "$out" | awk '{
    printf "{\"bench\": \"guest\", \"metric\": \"raw_qemu_idle_guest_rss\", \"value\": %.1f, \"unit\": \"MiB\"}\n", $1 / 1024
    printf "{\"bench\": \"guest\", \"metric\": \"raw_qemu_idle_guest_anon\", \"value\": %.1f, \"unit\": \"MiB\"}\n", $2 / 1024
  }'
