#!/usr/bin/env bash
# worker-agent/guest/tsc-khz.sh: print the host's TSC frequency in kHz (one integer on stdout).
#
# Why: under TCG, QEMU's guest TSC counts at the host's TSC rate, and QEMU's microvm machine hangs
# at boot in 25-40 % of runs unless the guest kernel is told that rate with tsc_early_khz=<kHz>
# (it otherwise calibrates the TSC against emulated timers, which TCG serves unreliably). The
# worker and the tests put this script's output on the guest kernel command line.
#
# Sources, most precise first:
#   1. $BRUME_TSC_KHZ, if set (an operator override; also lets tests pin a value);
#   2. the host kernel's own calibration in the kernel log (`dmesg`): "tsc: Refined TSC
#      clocksource calibration: 2596.122 MHz", else "tsc: Detected 2596.122 MHz processor";
#   3. "cpu MHz" in /proc/cpuinfo, only when the CPU has a constant, non-stop TSC and no cpufreq
#      driver changes that figure (then x86 reports the boot-time calibration there too).
# Exit status 1, with the reason on stderr, when none of them gives a number: a caller then boots
# without tsc_early_khz and must expect the occasional hang.
set -euo pipefail

die() { echo "tsc-khz.sh: $*" >&2; exit 1; }

# "2596.122" (MHz with up to 3 decimals) -> "2596122" (kHz), integer arithmetic only.
mhz_to_khz() {
  local mhz=$1 int frac
  int=${mhz%%.*}
  frac=000
  if [[ $mhz == *.* ]]; then frac=${mhz#*.}000; fi
  frac=${frac:0:3}
  echo $((10#$int * 1000 + 10#$frac))
}

if [ -n "${BRUME_TSC_KHZ:-}" ]; then
  [[ $BRUME_TSC_KHZ =~ ^[0-9]+$ ]] || die "BRUME_TSC_KHZ=$BRUME_TSC_KHZ is not a number of kHz"
  echo "$BRUME_TSC_KHZ"
  exit 0
fi

# dmesg may be restricted (kernel.dmesg_restrict) or have rotated past the boot messages.
log=$(dmesg 2>/dev/null || true)
for pattern in 'Refined TSC clocksource calibration: ([0-9]+(\.[0-9]+)?) MHz' \
               'tsc: Detected ([0-9]+(\.[0-9]+)?) MHz processor'; do
  if [[ $log =~ $pattern ]]; then
    mhz_to_khz "${BASH_REMATCH[1]}"
    exit 0
  fi
done

if [ -r /proc/cpuinfo ] && [ ! -e /sys/devices/system/cpu/cpu0/cpufreq ]; then
  flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
  mhz=$(sed -n 's/^cpu MHz[[:space:]]*:[[:space:]]*\([0-9.]*\).*/\1/p' /proc/cpuinfo | head -1)
  if [[ " $flags " == *" constant_tsc "* && " $flags " == *" nonstop_tsc "* && -n $mhz ]]; then
    mhz_to_khz "$mhz"
    exit 0
  fi
fi

die "cannot tell the host TSC frequency (no TSC line in dmesg, no constant TSC in" \
  "/proc/cpuinfo); set BRUME_TSC_KHZ"
