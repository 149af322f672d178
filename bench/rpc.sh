#!/usr/bin/env bash
# bench/rpc.sh: the RPC layer (common/rpc_*.c) against a bare gRPC-core client and server.
#
# Run by bench/run.sh rpc (BUILD_DIR must hold a build with bench/bench_rpc). One measurement is:
# start a server process (bench_rpc serve-layer or serve-bare) on a free loopback port, wait
# until it accepts connections, run the matching client process (sequential p50/p99, then 64
# calls in flight), stop the server. Layer and bare never run at the same time (two cores).
#
# Unpinned on two cores, the kernel sometimes keeps client and server on one core and sometimes
# spreads them, run by run: about 50,000 against 95,000 calls/s, and 25-40 against 60-80 us p50,
# for the same code, a swing that buries what the layer adds. So by default both processes run on
# one core (taskset), where the figures repeat within a few percent and calls/s measures the CPU
# each side spends per call; RPC_BENCH_PIN=none lets the kernel place them (expect that swing).
# The script makes ROUNDS measurements of each side, alternating which goes first, and prints the
# median of each figure. Stdout: the layer_* and bare_* figures and layer_to_bare_ratio (median
# layer calls/s over median bare calls/s, goal >= 0.8), as JSON lines. Stderr: the figures of
# each round, and each side's CPU time per call.
#
# Environment: RPC_BENCH_PIN (same, the default, or none); RPC_BENCH_THREADS (server threads on
# both sides, default 1: on two cores shared with the client a second one costs CPU per call and
# gains nothing); RPC_BENCH_ROUNDS (default 3); RPC_BENCH_CALLS (sequential calls per round,
# default 5000); RPC_BENCH_SECONDS (seconds with 64 in flight per round, default 3). The
# defaults take about 30 s.
set -euo pipefail
export LC_ALL=C
BUILD_DIR=${BUILD_DIR:-$(cd "$(dirname "$0")/.." && pwd)/build}
bin=$BUILD_DIR/bench/bench_rpc
. "$(dirname "$0")/../tests/harness/free_port.bash"
threads=${RPC_BENCH_THREADS:-1}
rounds=${RPC_BENCH_ROUNDS:-3}
calls=${RPC_BENCH_CALLS:-5000}
seconds=${RPC_BENCH_SECONDS:-3}
case ${RPC_BENCH_PIN:-same} in
  same) pin=(taskset -c "$(($(nproc) - 1))") ;;
  none) pin=() ;;
  *) echo "bench/rpc.sh: RPC_BENCH_PIN must be same or none" >&2; exit 2 ;;
esac
[ -x "$bin" ] || { echo "bench/rpc.sh: $bin is missing (build target bench_rpc)" >&2; exit 1; }

server_pid=
# Stops the server this script started (SIGTERM, then SIGKILL after 5 s).
stop_server() {
  local i
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
out=$(mktemp)
log=$(mktemp)
clog=$(mktemp)
trap 'stop_server; rm -f "$out" "$log" "$clog"' EXIT
trap 'exit 130' INT TERM

# Percentage of CPU time not idle over the last second, all cores.
cpu_busy() {
  local a b
  a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  awk -v a="${a[*]}" -v b="${b[*]}" 'BEGIN {
    n = split(a, x, " "); split(b, y, " "); t = 0
    for (i = 2; i <= n; i++) t += y[i] - x[i]
    idle = (y[5] - x[5]) + (y[6] - x[6])
    printf "%d", (t > 0) ? 100 * (t - idle) / t : 0 }'
}

# Polls until 127.0.0.1:$1 accepts a TCP connection (up to 10 s) while the server lives.
wait_port() {
  local i
  for ((i = 0; i < 200; i++)); do
    kill -0 "$server_pid" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

# start_server KIND: starts bench_rpc serve-KIND on a free port and sets server_pid and port.
# A few tries: a port found free may be taken before the server binds it.
start_server() {
  local try
  for try in 1 2 3 4 5; do
    free_port
    "${pin[@]}" "$bin" "serve-$1" "$port" "$threads" 2>"$log" &
    server_pid=$!
    if wait_port "$port"; then return 0; fi
    stop_server
    echo "rpc: the $1 server did not come up on port $port (try $try):" >&2
    cat "$log" >&2
  done
  echo "rpc: cannot start the $1 server: $bin serve-$1 PORT $threads" >&2
  return 1
}

# measure KIND ROUND: one server and client pair; appends "ROUND metric value" lines to $out,
# including the CPU per call of the client (with 64 in flight) and of the server.
measure() {
  local lines ccpu scpu
  start_server "$1"
  if ! lines=$(timeout 120 "${pin[@]}" "$bin" "client-$1" "127.0.0.1:$port" "$calls" "$seconds" 2>"$clog"); then
    cat "$clog" >&2
    echo "rpc: the $1 client failed" >&2
    return 1
  fi
  stop_server
  ccpu=$(sed -n 's/.*cpu_us_per_call=\([0-9.]*\).*/\1/p' "$clog")
  scpu=$(sed -n 's/.*cpu_us_per_call=\([0-9.]*\).*/\1/p' "$log")
  { sed -n 's/.*"metric": "\([^"]*\)", "value": \([0-9.]*\).*/\1 \2/p' <<<"$lines"
    echo "${1}_client_cpu_us_per_call ${ccpu:-0}"
    echo "${1}_server_cpu_us_per_call ${scpu:-0}"
  } | while read -r m v; do echo "$2 $m $v"; done >>"$out"
  echo "rpc: round $2 $1:" $(sed -n 's/.*"metric": "[a-z]*_\([^"]*\)", "value": \([0-9.]*\).*/\1=\2/p' <<<"$lines") \
    "cpu_us_per_call client=$ccpu server=$scpu" >&2
}

busy=$(cpu_busy)
echo "rpc: $rounds rounds of layer and bare, ${pin[*]:-unpinned}, server threads $threads, $calls sequential calls and ${seconds}s with 64 in flight each; CPU busy before start: $busy%" >&2
[ "$busy" -lt 10 ] || echo "rpc: warning: the machine is not idle ($busy% busy): figures will be low and noisy" >&2
for ((r = 1; r <= rounds; r++)); do
  if ((r % 2)); then order="layer bare"; else order="bare layer"; fi
  for kind in $order; do measure "$kind" "$r"; done
done
busy=$(cpu_busy)
[ "$busy" -lt 10 ] || echo "rpc: warning: the machine was not idle after the run ($busy% busy)" >&2

median() {
  awk -v m="$1" '$2 == m { print $3 }' "$out" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
for side in layer bare; do
  echo "rpc: $side median CPU per call with 64 in flight (us): client $(median "${side}_client_cpu_us_per_call")," \
    "server $(median "${side}_server_cpu_us_per_call") (whole server run)" >&2
done
emit() { printf '{"bench": "rpc", "metric": "%s", "value": %s, "unit": "%s"}\n' "$1" "$2" "$3"; }
for side in layer bare; do
  emit "${side}_seq_p50" "$(printf '%.1f' "$(median "${side}_seq_p50")")" us
  emit "${side}_seq_p99" "$(printf '%.1f' "$(median "${side}_seq_p99")")" us
  emit "${side}_inflight64_calls_per_s" "$(printf '%.0f' "$(median "${side}_inflight64_calls_per_s")")" calls/s
done
emit layer_to_bare_ratio "$(awk -v l="$(median layer_inflight64_calls_per_s)" \
  -v b="$(median bare_inflight64_calls_per_s)" 'BEGIN { printf "%.3f", l / b }')" ratio
