#!/usr/bin/env bash
# bench/etcd.sh: compare-and-swap txns through common/etcd.c against a real etcd.
#
# Run by bench/run.sh etcd (BUILD_DIR must hold a build with bench/bench_etcd_cas). Starts a
# single-member etcd on free loopback ports with a fresh data directory, waits until it is
# healthy, runs bench_etcd_cas (1 thread, then 4 threads on separate keys, then 4 threads on one
# key; ETCD_BENCH_SECONDS per phase, default 1.7), stops etcd and removes its data. The program's
# JSON lines go to stdout; progress and etcd's log location to stderr.
set -euo pipefail
BUILD_DIR=${BUILD_DIR:-$(cd "$(dirname "$0")/.." && pwd)/build}
bin=$BUILD_DIR/bench/bench_etcd_cas
seconds=${ETCD_BENCH_SECONDS:-1.7}
[ -x "$bin" ] || { echo "bench/etcd.sh: $bin is missing (build target bench_etcd_cas)" >&2; exit 1; }
command -v etcd >/dev/null || { echo "bench/etcd.sh: no etcd on PATH" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/brume-bench-etcd-XXXXXX")
etcd_pid=
cleanup() {
  if [ -n "$etcd_pid" ]; then
    kill -TERM "$etcd_pid" 2>/dev/null || true
    wait "$etcd_pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$(dirname "$0")/lib/etcd.bash"
start_etcd bench "$dir" bench/etcd.sh
client=$etcd_client

"$bin" "$client" "$seconds"
