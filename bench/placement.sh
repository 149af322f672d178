#!/usr/bin/env bash
# bench/placement.sh: brume-placement as its own process, with one brume-worker (real 128 MiB
# microVMs) and a real etcd.
#
# Run by bench/run.sh placement (root, libvirtd up as deploy/host-setup.sh starts it, etcd on
# PATH; BUILD_DIR must hold a build with bench/bench_placement). bench_placement starts etcd, the
# worker (pool_size 2) and the placement daemon (tests/harness/cluster_fixture), starts 64
# sandboxes of one function, then measures warm AcquireSandbox+ReleaseSandbox pairs with 64 in
# flight for BENCH_SECONDS (default 5), and the bare RPC round trip (ListHosts of no host) under
# the same load. JSON lines on stdout, progress on stderr. On exit, also on failure or a signal:
# the daemons get SIGTERM, leftover domains of this run are destroyed, the temp directories go
# (kept with BRUME_TEST_KEEP=1, for placement.log and worker.log).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$top/build}
bin=$BUILD_DIR/bench/bench_placement
[ -x "$bin" ] || { echo "bench/placement.sh: $bin is missing (build target bench_placement)" >&2; exit 1; }
command -v etcd >/dev/null || { echo "bench/placement.sh: no etcd on PATH" >&2; exit 1; }

bench_pid=
cleanup() {
  if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
    kill -TERM "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  # bench_placement destroys its domains itself; this catches a SIGKILLed driver.
  if [ -n "$bench_pid" ] && command -v virsh >/dev/null; then
    for d in $(virsh -c qemu:///system list --all --name 2>/dev/null | grep "^brume-bp$bench_pid-" || true); do
      virsh -c qemu:///system destroy "$d" >/dev/null 2>&1 || true
    done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench/placement.sh: placement daemon, one worker, 64 sandboxes" >&2
"$bin" &
bench_pid=$!
wait "$bench_pid"
