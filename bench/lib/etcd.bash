# bench/lib/etcd.bash: sourced by the benchmarks that need their own etcd (bench/etcd.sh,
# bench/counting.sh). Not a benchmark itself (bench/run.sh runs only bench/*.sh). It sources
# tests/harness/free_port.bash (free_port).
#
#   start_etcd NAME DIR LABEL starts a single-member etcd on two free ports with its data in
#                             DIR/data and its log in DIR/etcd.log, waits until it is healthy
#                             (15 s at most; LABEL starts the error messages), and sets
#                             $etcd_pid and $etcd_client (its client URL)

. "$(dirname "${BASH_SOURCE[0]}")/../../tests/harness/free_port.bash"

start_etcd() {
  local name=$1 dir=$2 label=$3 client_port peer_port peer
  free_port; client_port=$port
  free_port; peer_port=$port
  etcd_client=http://127.0.0.1:$client_port
  peer=http://127.0.0.1:$peer_port
  echo "$label: starting etcd on $etcd_client (log $dir/etcd.log)" >&2
  etcd --name "$name" --data-dir "$dir/data" \
    --listen-client-urls "$etcd_client" --advertise-client-urls "$etcd_client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "$name=$peer" --initial-cluster-state new \
    --logger zap --log-outputs stderr >"$dir/etcd.log" 2>&1 &
  etcd_pid=$!
  for _ in $(seq 1 150); do
    if curl -sf "$etcd_client/health" 2>/dev/null | grep -q '"health":"true"'; then return 0; fi
    kill -0 "$etcd_pid" 2>/dev/null || { echo "$label: etcd exited:" >&2; tail -5 "$dir/etcd.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$label: etcd is not healthy after 15 s" >&2
  exit 1
}
