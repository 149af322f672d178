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

# A port nobody listens on, picked at random (bash alone, no helper program).
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
}
client_port=$(free_port)
peer_port=$(free_port)
while [ "$peer_port" = "$client_port" ]; do peer_port=$(free_port); done
client=http://127.0.0.1:$client_port
peer=http://127.0.0.1:$peer_port

echo "bench/etcd.sh: starting etcd on $client (log $dir/etcd.log)" >&2
etcd --name bench --data-dir "$dir/data" \
  --listen-client-urls "$client" --advertise-client-urls "$client" \
  --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
  --initial-cluster "bench=$peer" --initial-cluster-state new \
  --logger zap --log-outputs stderr >"$dir/etcd.log" 2>&1 &
etcd_pid=$!

for _ in $(seq 1 150); do
  if curl -sf "$client/health" 2>/dev/null | grep -q '"health":"true"'; then break; fi
  kill -0 "$etcd_pid" 2>/dev/null || { echo "bench/etcd.sh: etcd exited:" >&2; tail -5 "$dir/etcd.log" >&2; exit 1; }
  sleep 0.1
done
curl -sf "$client/health" | grep -q '"health":"true"' || { echo "bench/etcd.sh: etcd not healthy" >&2; exit 1; }

"$bin" "$client" "$seconds"
