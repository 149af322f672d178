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
. "$top/bench/lib/driver.bash"
echo "bench/placement.sh: placement daemon, one worker, 64 sandboxes" >&2
run_driver bench/placement.sh "$BUILD_DIR/bench/bench_placement" brume-bp
