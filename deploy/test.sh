#!/usr/bin/env bash
# The README's test command: builds Brume three ways and runs every test.
#   1. build/        normal build (RelWithDebInfo): all CTest suites
#   2. build-asan/   ASan + UBSan build: all CTest suites again
#   3. build-fuzz/   clang + libFuzzer: each fuzz target for FUZZ_SECONDS (default 30) on its seed corpus
# Needs the packages from deploy/install-deps.sh and root (libvirtd, the guest image). Starts
# libvirtd and virtlogd through deploy/host-setup.sh; tests start their own etcd and servers on
# free loopback ports. Exits non-zero on any failure.
#   deploy/test.sh [--quick]   --quick: normal build and CTest only
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc)
fuzz_seconds=${FUZZ_SECONDS:-30}
quick=0
[ "${1:-}" = "--quick" ] && quick=1

step() { printf '\n==== %s\n' "$*"; }

# The worker tests run against a real libvirtd; start it (and virtlogd) unless they run already.
step "host set-up (libvirtd, virtlogd)"
bash deploy/host-setup.sh

step "normal build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
# A skipped test (exit 77: etcd, libvirtd, QEMU or root missing) is a failure here: this script
# runs where deploy/install-deps.sh and deploy/host-setup.sh provided all of them.
run_ctest() {
  local dir=$1 log
  shift
  log=$(mktemp)
  (cd "$dir" && ctest --output-on-failure -j1 "$@") 2>&1 | tee "$log"
  if grep -q '(Skipped)' "$log"; then
    echo "deploy/test.sh: tests were skipped in $dir (see above): a prerequisite is missing" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

step "tests (normal build)"
run_ctest build
[ $quick -eq 1 ] && exit 0

step "sanitizer build (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DBRUME_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
# cluster_faults runs in the normal build only: its microVMs (50 at once) and timed steps take 6 minutes
# there. Counting's failover and the worker's stale sandboxes still run under the sanitizers
# (counting_client_set, placement_host_cut_off); counting's quorum guard does not.
step "tests (sanitizer build)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_ctest build-asan -E '^cluster_faults$'

step "fuzz build (clang, libFuzzer)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DBRUME_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$jobs"
fuzzers=$(cd build-fuzz/tests/fuzz && ls fuzz_* 2>/dev/null | grep -v '\.' || true)
[ -n "$fuzzers" ] || { echo "no fuzz targets were built" >&2; exit 1; }
for f in $fuzzers; do
  name=${f#fuzz_}
  step "fuzz $name for ${fuzz_seconds}s"
  work=$(mktemp -d)
  # Seeds are copied so that a run never writes new inputs into the repository.
  [ -d tests/fuzz/corpus/$name ] && cp -r tests/fuzz/corpus/$name/. "$work/"
  # -timeout: an input that runs for 10 s is a hang, reported at once (libFuzzer's default waits
  # 20 minutes, and max_total_time is only checked between inputs).
  log=$(mktemp)
  if ! (cd build-fuzz/tests/fuzz && ASAN_OPTIONS=detect_leaks=1 ./$f -max_total_time="$fuzz_seconds" \
    -timeout=10 -print_final_stats=1 -artifact_prefix="$top/build-fuzz/crash-$name-" "$work" \
    >"$log" 2>&1); then
    # The failing input, so that a run on another machine can be reproduced from its log.
    grep -E 'ERROR: libFuzzer|ERROR: AddressSanitizer|Test unit written to|^Base64:' "$log" >&2 || true
    tail -n 40 "$log" >&2
    echo "deploy/test.sh: fuzz target $name failed (see above)" >&2
    exit 1
  fi
  tail -n 12 "$log"
  rm -rf "$work" "$log"
done
echo
echo "deploy/test.sh: all builds and tests passed"
