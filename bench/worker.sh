#!/usr/bin/env bash
# bench/worker.sh: brume-worker as its own process, a real etcd, real 128 MiB microVMs.
#
# Run by bench/run.sh worker (root, libvirtd up as deploy/host-setup.sh starts it, etcd on PATH;
# BUILD_DIR must hold a build with bench/bench_worker and tests/guest_boot). bench_worker starts
# etcd, serves the static echo runtime as the function's zip, starts brume-worker (pool_size 0,
# then 2) and measures CreateSandbox from boot and from the pool, warm Invoke, Freeze and Thaw,
# 4 parallel creations, and the RSS of idle sandboxes' qemu processes; then bench/guest.sh boots
# the same guest kernel with bare QEMU (GUEST_BENCH_RUNS, default 5 here) for
# bare_qemu_boot_p50_ms. JSON lines on stdout, progress on stderr. On exit, also on failure or a
# signal: the worker gets SIGTERM, leftover domains of this run's host id are destroyed, etcd
# stops and the temp directory goes (kept with BRUME_TEST_KEEP=1, for worker.log and the consoles).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$top/build}
bin=$BUILD_DIR/bench/bench_worker
[ -x "$bin" ] || { echo "bench/worker.sh: $bin is missing (build target bench_worker)" >&2; exit 1; }
command -v etcd >/dev/null || { echo "bench/worker.sh: no etcd on PATH" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/brume-bench-worker-XXXXXX")
chmod 755 "$tmp" # QEMU reads the guest image copied under it
host_id=bw$$
bench_pid=
cleanup() {
  if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
    kill -TERM "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  # bench_worker destroys its domains itself; this catches a SIGKILLed driver.
  if command -v virsh >/dev/null; then
    for d in $(virsh -c qemu:///system list --all --name 2>/dev/null | grep "^brume-$host_id-" || true); do
      virsh -c qemu:///system destroy "$d" >/dev/null 2>&1 || true
    done
  fi
  if [ -n "${BRUME_TEST_KEEP:-}" ]; then
    echo "bench/worker.sh: kept $tmp (BRUME_TEST_KEEP): worker.log, the guests' consoles" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench/worker.sh: worker daemon (host id $host_id)" >&2
TMPDIR=$tmp BENCH_WORKER_HOST_ID=$host_id "$bin" &
bench_pid=$!
wait "$bench_pid"
bench_pid=

echo "bench/worker.sh: bare QEMU boot of the same guest kernel (bench/guest.sh)" >&2
GUEST_BENCH_RUNS=${GUEST_BENCH_RUNS:-5} TMPDIR=$tmp BUILD_DIR=$BUILD_DIR "$top/bench/guest.sh" >"$tmp/guest.json"
sed -n 's/.*"metric": "raw_qemu_boot_to_agent_p50", "value": \([0-9.]*\).*/\1/p' "$tmp/guest.json" |
  awk '{ printf "{\"bench\": \"worker\", \"metric\": \"bare_qemu_boot_p50_ms\", \"value\": %s, \"unit\": \"ms\"}\n", $1 }'
