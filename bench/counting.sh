#!/usr/bin/env bash
# bench/counting.sh: one brume-counting daemon and its etcd, driven through the Counting service.
#
# Run by bench/run.sh counting (BUILD_DIR must hold a build with bench/bench_counting and
# counting/brume-counting; etcd on PATH). Starts a single-member etcd on free loopback ports with
# a fresh data directory, waits until it is healthy, starts brume-counting on it (lease_ttl 3s,
# default shrink_after 2s) and waits until it listens, then runs bench_counting: 64 callers making
# Acquire(WARM)+Release pairs for BENCH_SECONDS (default 5) after a 1 s warm-up, the bare RPC
# under the same load, and demand changes 64 -> 8 -> 64 callers (BENCH_STEP_SECONDS each, default
# 4) with etcd's txns beside them. JSON lines on stdout, progress on stderr. On exit, also on
# failure or a signal: the daemon and etcd get SIGTERM and the temp directory goes (the logs are
# printed first when the bench failed).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$top/build}
bin=$BUILD_DIR/bench/bench_counting
daemon=$BUILD_DIR/counting/brume-counting
[ -x "$bin" ] || { echo "bench/counting.sh: $bin is missing (build target bench_counting)" >&2; exit 1; }
[ -x "$daemon" ] || { echo "bench/counting.sh: $daemon is missing (build target brume-counting)" >&2; exit 1; }
command -v etcd >/dev/null || { echo "bench/counting.sh: no etcd on PATH" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/brume-bench-counting-XXXXXX")
etcd_pid=
daemon_pid=
ok=
stop() {
  if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}
cleanup() {
  stop "$daemon_pid"
  stop "$etcd_pid"
  if [ -z "$ok" ]; then
    for f in "$dir/counting.log" "$dir/etcd.log"; do
      [ -f "$f" ] && { echo "---- last lines of $f" >&2; tail -n 30 "$f" >&2; }
    done
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$top/bench/lib/etcd.bash"
start_etcd bench "$dir" bench/counting.sh
client=$etcd_client
free_port; rpc_port=$port
free_port; http_port=$port

daemon_id=bench-c0
echo "bench/counting.sh: starting brume-counting on 127.0.0.1:$rpc_port (http $http_port)" >&2
"$daemon" --listen "127.0.0.1:$rpc_port" --http_listen "127.0.0.1:$http_port" \
  --etcd_endpoints "$client" --daemon_id "$daemon_id" --etcd_prefix /brume --lease_ttl 3s \
  --log_level info ${BENCH_DAEMON_FLAGS:-} >"$dir/counting.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 150); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$rpc_port") 2>/dev/null; then break; fi
  kill -0 "$daemon_pid" 2>/dev/null || { echo "bench/counting.sh: brume-counting exited" >&2; exit 1; }
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$rpc_port") 2>/dev/null || { echo "bench/counting.sh: brume-counting does not listen" >&2; exit 1; }

"$bin" "127.0.0.1:$rpc_port" "$client" "$daemon_id" "$daemon_pid"
ok=1
