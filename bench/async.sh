#!/usr/bin/env bash
# bench/async.sh: asynchronous invocations (Invoke with invocation type Event) through the whole
# path, every daemon its own process: a real etcd, a real nats-server with JetStream, one
# brume-worker (real microVMs), brume-placement, brume-counting and brume-frontend, driven
# through the Frontend API with an API key.
#
# Run by bench/run.sh async (root, libvirtd up as deploy/host-setup.sh starts it, etcd and
# nats-server on PATH; BUILD_DIR must hold a build with bench/bench_async; about a minute).
# bench_async (bench/async_bench.c) prints: the delay from acceptance to the start of execution
# (p50, p99) at BENCH_RATE events/s (default 20) for BENCH_SECONDS (default 5); delivered
# events/s for 2,000 events queued at once, with BENCH_WORKERS deliveries at once (default 8);
# accepted events/s (acknowledged by JetStream) with 64 Event invocations in flight for
# BENCH_SECONDS, the frontend only accepting, and their round trip (p50, p99). Goal (issue 9):
# 20,000 accepted events/s. JSON lines on stdout, progress on stderr.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$top/build}
. "$top/bench/lib/driver.bash"
command -v nats-server >/dev/null || { echo "bench/async.sh: no nats-server on PATH (deploy/install-deps.sh)" >&2; exit 1; }
echo "bench/async.sh: frontend, counting, placement, one worker, nats-server" >&2
run_driver bench/async.sh "$BUILD_DIR/bench/bench_async" brume-ba
