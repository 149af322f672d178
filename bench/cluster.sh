#!/usr/bin/env bash
# bench/cluster.sh: warm invocations through two frontends across three worker hosts, on a
# deploy/cluster.sh cluster (each member in its own network namespace, mutual TLS everywhere,
# a three-member etcd, two counting daemons, one placement daemon), laid out as
# tests/cluster/test.conf (a bridge and names of its own: a cluster deployed here is untouched).
#
# Run by bench/run.sh cluster (root, libvirtd as deploy/host-setup.sh starts it; about 2 min).
# The function is examples/hello-c (a static C custom runtime, RUNTIME_API mode). CALLERS
# (BENCH_CALLERS, default 24) callers, half through each frontend, each one synchronous Invoke
# after another (tests/cluster/cluster_load): a first round starts the sandboxes (cold starts,
# spread over the hosts by placement), then BENCH_SECONDS (default 10) are measured. Prints:
#   warm_per_s, warm_p50, warm_p99   the measured round's ok invocations per second and latency
#   warm_cold                        cold starts in the measured round (should be 0)
#   share_workerN                    the % of the measured round's invocations each host ran
#                                    (from its Worker/Invoke call count on /metrics)
#   per_frontendN                    ok invocations per second through each frontend
# JSON lines on stdout, progress on stderr. The cluster goes down on exit, also on failure.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/build}
callers=${BENCH_CALLERS:-24}
seconds=${BENCH_SECONDS:-10}
export BRUME_CLUSTER_CONF=$top/tests/cluster/test.conf BRUME_BUILD_DIR=$build
export BRUME_CLUSTER_HOME
BRUME_CLUSTER_HOME=$(mktemp -d /tmp/brume-bench-cluster-XXXXXX)
home=$BRUME_CLUSTER_HOME
# shellcheck source=tests/cluster/test.conf
. "$BRUME_CLUSTER_CONF"
# test.conf asks for a log line per invocation; that would cost the workers CPU here.
export BRUME_WORKER_LOG_LEVEL=info
[ -x "$build/tests/cluster/cluster_load" ] || { echo "bench/cluster.sh: build cluster_load first" >&2; exit 1; }
cluster() { "$top/deploy/cluster.sh" "$@"; }
trap 'cluster down >/dev/null 2>&1 || true' EXIT
emit() { printf '{"bench": "cluster", "metric": "%s", "value": %s, "unit": "%s"}\n' "$1" "$2" "$3"; }

echo "bench/cluster.sh: deploy/cluster.sh up 3" >&2
cluster up 3 >&2
fe1=$subnet.${frontend_hosts[0]}
fe2=$subnet.${frontend_hosts[1]}
tls=(--tls-ca "$home/pki/ca.pem" --tls-cert "$home/pki/cli.pem" --tls-key "$home/pki/cli.key")
"$build/cli/brume" --endpoint "$fe1:$grpc_port" "${tls[@]}" --api-key-file "$home/admin.key" \
  function create hello-c --handler-mode runtime-api --handler hello \
  --zip "$build/examples/hello-c.zip" >/dev/null
# Frontend 2 learns the function from etcd and copies its code within 2 s.
for _ in $(seq 50); do
  "$build/cli/brume" --endpoint "$fe2:$grpc_port" "${tls[@]}" --api-key-file "$home/admin.key" \
    invoke hello-c --no-retry >/dev/null 2>&1 && break
  sleep 0.2
done
load() {
  "$build/tests/cluster/cluster_load" --endpoints "$fe1:$grpc_port,$fe2:$grpc_port" "${tls[@]}" \
    --api-key-file "$home/admin.key" --function hello-c --callers "$callers" "$@"
}
invokes() { # the Worker/Invoke calls host $1 answered OK
  curl -sf "http://$subnet.$((worker_base + $1)):$http_port/metrics" |
    awk '/^brume_rpc_server_calls_total\{/ && /Worker\/Invoke/ && /code="OK"/ { n += $2 } END { print n + 0 }'
}
echo "bench/cluster.sh: $callers callers start their sandboxes" >&2
load --seconds 20 >"$home/warmup.json"
echo "bench/cluster.sh: warm-up: $(cat "$home/warmup.json")" >&2
n=$(cat "$home/workers")
declare -a before
for ((i = 1; i <= n; i++)); do before[i]=$(invokes "$i"); done
echo "bench/cluster.sh: measuring $seconds s" >&2
load --seconds "$seconds" >"$home/run.json"
echo "bench/cluster.sh: $(cat "$home/run.json")" >&2
total=0
declare -a did
for ((i = 1; i <= n; i++)); do
  did[i]=$(($(invokes "$i") - before[i]))
  total=$((total + did[i]))
done
/usr/bin/python3 - "$home/run.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
def emit(m, v, u): print(json.dumps({"bench": "cluster", "metric": m, "value": v, "unit": u}))
emit("warm_per_s", r["ok_per_s"], "1/s")
emit("warm_p50", r["p50_ms"], "ms")
emit("warm_p99", r["p99_ms"], "ms")
emit("warm_cold", r["cold"], "calls")
emit("warm_failed", r["calls"] - r["ok"], "calls")
for i, (ep, ok) in enumerate(r["ok_per_endpoint"].items(), 1):
    emit(f"per_frontend{i}", round(ok / r["seconds"], 1), "1/s")
EOF
for ((i = 1; i <= n; i++)); do
  emit "share_worker$i" "$(awk -v a="${did[i]}" -v t="$total" 'BEGIN { printf "%.1f", t ? 100 * a / t : 0 }')" "%"
done
