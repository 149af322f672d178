#!/usr/bin/env bash
# bench/e2e.sh: invocations through the whole path, every daemon its own process: a real etcd,
# one brume-worker (real 128 MiB microVMs, pool_size 2, freeze_after 10s), brume-placement,
# brume-counting and brume-frontend, driven through the Frontend's Invoke with an API key.
#
# Run by bench/run.sh e2e (root, libvirtd up as deploy/host-setup.sh starts it, etcd on PATH;
# BUILD_DIR must hold a build with bench/bench_e2e; about 90 s). bench_e2e (bench/e2e_bench.c)
# prints: warm invocations back to back (p50, p99), warm invocations/s with 64 callers in flight
# over BENCH_SECONDS (default 5) with their p50 and p99, the bare RPC round trip (Invoke DryRun:
# authenticated, validated, resolved, nothing run) alone and under the same load, and cold starts
# from a pool hit (each pooled VM taken BENCH_POOL_AGE_MS, default 3000, after the pool is full
# again) and from a boot (p50, p99). JSON lines on stdout, progress on stderr. On exit,
# also on failure or a signal: the daemons get SIGTERM, leftover domains of this run are
# destroyed, the temp directories go (kept with BRUME_TEST_KEEP=1, for the daemons' logs).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$top/build}
. "$top/bench/lib/driver.bash"
echo "bench/e2e.sh: frontend, counting, placement, one worker" >&2
run_driver bench/e2e.sh "$BUILD_DIR/bench/bench_e2e" brume-be
