#!/usr/bin/env bash
# deploy/cluster.sh up [N] | down | status | stop|kill|start|cut|restore NAME
# A multi-node Brume on this one machine: N worker hosts (default 3), a three-member etcd, three
# NATS servers (one JetStream cluster: the queue of asynchronous invocations, 3 replicas), two
# counting daemons, one placement daemon and two frontends, each in a network namespace of its
# own with its own address on a bridge this script makes (veth pairs), as if each were a
# machine. Addresses and ports come from deploy/cluster.conf (or $BRUME_CLUSTER_CONF).
#   - Every daemon speaks mutual TLS, gRPC, etcd and NATS alike, with certificates from a CA this
#     script makes with OpenSSL ($BRUME_CLUSTER_HOME/pki; the CLI's certificate is cli.pem).
#   - The frontends share one key for environment variables; an admin key goes to admin.key.
#   - up is idempotent: it starts what is not running. down stops every daemon, removes the
#     namespaces, the bridge and $BRUME_CLUSTER_HOME (logs included).
#   - Faults, one member NAME at a time (status lists the names): stop (SIGTERM), kill (-9),
#     start (again, with its state), cut (its link down: it runs on, cut off) and restore.
# BRUME_WORKER_LOG_LEVEL overrides the layout's worker_log_level.
# Needs root (namespaces, bridge) and the build (BRUME_BUILD_DIR, default build/); it builds the
# guest image and starts libvirtd as deploy/quickstart.sh does.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "${BRUME_CLUSTER_CONF:-$top/deploy/cluster.conf}"
worker_log_level=${BRUME_WORKER_LOG_LEVEL:-${worker_log_level:-info}}
cmd=${1:-status}
home=${BRUME_CLUSTER_HOME:-/var/lib/brume-cluster}
build=${BRUME_BUILD_DIR:-$top/build}
run=$home/run
pki=$home/pki
prog=cluster
. "$top/deploy/lib/daemons.bash"

# The cluster's members: "name address" lines (name = role + index; its namespace is
# <ns_prefix>NAME).
members() {
  local i n=${1:-$(cat "$home/workers" 2>/dev/null || echo 0)}
  for i in "${!etcd_hosts[@]}"; do echo "etcd$((i + 1)) $subnet.${etcd_hosts[$i]}"; done
  for i in "${!nats_hosts[@]}"; do echo "nats$((i + 1)) $subnet.${nats_hosts[$i]}"; done
  for i in "${!counting_hosts[@]}"; do echo "counting$((i + 1)) $subnet.${counting_hosts[$i]}"; done
  for i in "${!placement_hosts[@]}"; do echo "placement$((i + 1)) $subnet.${placement_hosts[$i]}"; done
  for ((i = 1; i <= n; i++)); do echo "worker$i $subnet.$((worker_base + i))"; done
  for i in "${!frontend_hosts[@]}"; do echo "frontend$((i + 1)) $subnet.${frontend_hosts[$i]}"; done
}
addr_of() { members | awk -v n="$1" '$1 == n { print $2 }'; }

network_up() {
  ip link show "$bridge" >/dev/null 2>&1 || {
    ip link add "$bridge" type bridge
    ip addr add "$subnet.1/24" dev "$bridge"
  }
  ip link set "$bridge" up
  local name addr ns
  while read -r name addr; do
    ns=$ns_prefix$name
    ip netns list | grep -qx "$ns\( .*\)\?" && continue
    ip netns add "$ns"
    ip link add "$veth_prefix$name" type veth peer name eth0 netns "$ns"
    ip link set "$veth_prefix$name" master "$bridge" up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done < <(members)
}

network_down() {
  local ns link
  for ns in $(ip netns list | awk '{print $1}' | grep "^$ns_prefix" || true); do ip netns del "$ns"; done
  # A namespace outlives its deletion while anything refers to it (a socket in TIME_WAIT does),
  # and its veth pair with it: take the machine's ends away now.
  for link in $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep "^$veth_prefix" || true); do
    ip link del "$link" 2>/dev/null || true
  done
  ip link del "$bridge" 2>/dev/null || true
}

# The CA, and one certificate per member (its address and name as SANs) and for the CLI, each
# good for server and client use: every daemon is both.
certs() {
  # deploy/lib/pki.bash, shared with deploy/make-certs.sh (real machines).
  . "$top/deploy/lib/pki.bash"
  pki_ca "$pki" brume-cluster-ca
  local name addr
  while read -r name addr; do
    pki_cert "$pki" "$name" "$addr"
  done < <(members; echo "cli $subnet.1")
}

tls() { echo --tls_ca "$pki/ca.pem" --tls_cert "$pki/$1.pem" --tls_key "$pki/$1.key" --tls_client_auth=true; }
etcd_urls() {
  local h urls=()
  for h in "${etcd_hosts[@]}"; do urls+=("https://$subnet.$h:$etcd_client_port"); done
  (IFS=,; echo "${urls[*]}")
}

# start_etcd_member NAME: one member, in NAME's namespace (its data survives a stop).
start_etcd_member() {
  local name=$1 addr i cluster=()
  addr=$(addr_of "$name")
  running "$name" && return 0
  for i in "${!etcd_hosts[@]}"; do
    cluster+=("etcd$((i + 1))=https://$subnet.${etcd_hosts[$i]}:$etcd_peer_port")
  done
  cluster=$(IFS=,; echo "${cluster[*]}")
  # etcd before the microVMs for the CPU and the disk: on one machine they share the cores, and
  # under 50 TCG microVMs etcd's leader once stalled for 6 s, long enough for every lease to
  # expire. On real machines etcd has hosts of its own (README); etcd's tuning guide gives it
  # the same priorities on a busy host.
  nice -n -10 ionice -c2 -n0 ip netns exec "$ns_prefix$name" etcd --name "$name" --data-dir "$home/$name" \
    --listen-client-urls "https://$addr:$etcd_client_port" \
    --advertise-client-urls "https://$addr:$etcd_client_port" \
    --listen-peer-urls "https://$addr:$etcd_peer_port" \
    --initial-advertise-peer-urls "https://$addr:$etcd_peer_port" \
    --initial-cluster "$cluster" --initial-cluster-state new \
    --cert-file "$pki/$name.pem" --key-file "$pki/$name.key" --client-cert-auth \
    --trusted-ca-file "$pki/ca.pem" --peer-cert-file "$pki/$name.pem" \
    --peer-key-file "$pki/$name.key" --peer-client-cert-auth --peer-trusted-ca-file "$pki/ca.pem" \
    >>"$home/log/$name.log" 2>&1 &
  echo $! >"$run/$name.pid"
}

# wait_etcd NAME...: until each answers /health (a member answers once it has a quorum).
wait_etcd() {
  local name
  curl_tls=(--cacert "$pki/ca.pem" --cert "$pki/cli.pem" --key "$pki/cli.key")
  for name in "$@"; do
    wait_healthy "https://$(addr_of "$name"):$etcd_client_port/health" "$name" "$home/log/$name.log"
  done
  curl_tls=()
}

start_etcd() {
  local i names=()
  # All three first, then wait: a member waits for a quorum before it answers /health.
  for i in "${!etcd_hosts[@]}"; do
    names+=("etcd$((i + 1))")
    start_etcd_member "etcd$((i + 1))"
  done
  wait_etcd "${names[@]}"
}

nats_urls() {
  local h urls=()
  for h in "${nats_hosts[@]}"; do urls+=("tls://$subnet.$h:$nats_client_port"); done
  (IFS=,; echo "${urls[*]}")
}

# start_nats_member NAME: one NATS server with JetStream in NAME's namespace, routed to the
# others (its store survives a stop). TLS for clients and routes needs a configuration file.
start_nats_member() {
  local name=$1 addr h routes=()
  running "$name" && return 0
  addr=$(addr_of "$name")
  for h in "${nats_hosts[@]}"; do
    [ "$subnet.$h" = "$addr" ] || routes+=("\"nats-route://$subnet.$h:$nats_route_port\"")
  done
  mkdir -p "$home/$name"
  cat >"$home/$name/nats.conf" <<EOC
server_name: $name
listen: $addr:$nats_client_port
http: $addr:$nats_http_port
jetstream { store_dir: "$home/$name/store" }
tls { cert_file: "$pki/$name.pem", key_file: "$pki/$name.key", ca_file: "$pki/ca.pem", verify: true }
cluster {
  name: brume
  listen: $addr:$nats_route_port
  routes: [ $(IFS=,; echo "${routes[*]}") ]
  tls { cert_file: "$pki/$name.pem", key_file: "$pki/$name.key", ca_file: "$pki/ca.pem", verify: true }
}
EOC
  ip netns exec "$ns_prefix$name" nats-server -c "$home/$name/nats.conf" >>"$home/log/$name.log" 2>&1 &
  echo $! >"$run/$name.pid"
}

# wait_nats NAME...: until each answers /healthz (JetStream ready, which needs its peers).
wait_nats() {
  local name
  for name in "$@"; do
    wait_healthy "http://$(addr_of "$name"):$nats_http_port/healthz" "$name" "$home/log/$name.log"
  done
}

start_nats() {
  local i names=()
  for i in "${!nats_hosts[@]}"; do
    names+=("nats$((i + 1))")
    start_nats_member "nats$((i + 1))"
  done
  wait_nats "${names[@]}"
}

# start_brume NAME BINARY ARGS...: a Brume daemon in NAME's namespace on its address.
start_brume() {
  local name=$1 bin=$2 addr id_flag=--daemon_id
  shift 2
  addr=$(addr_of "$name")
  case $name in worker*) id_flag=--host_id ;; esac
  # shellcheck disable=SC2046 # tls prints separate words on purpose
  start_daemon "$name" "http://$addr:$http_port/healthz" ip netns exec "$ns_prefix$name" "$bin" \
    --listen "$addr:$grpc_port" --http_listen "$addr:$http_port" --etcd_endpoints "$(etcd_urls)" \
    "$id_flag" "$name" $(tls "$name") "$@"
}

# start_member NAME: starts one member (a Brume daemon, or an etcd member) unless it runs.
start_member() {
  local name=$1 i=${1//[!0-9]/}
  case $name in
    etcd*) start_etcd_member "$name"; wait_etcd "$name" ;;
    nats*) start_nats_member "$name"; wait_nats "$name" ;;
    counting*) start_brume "$name" "$build/counting/brume-counting" ;;
    placement*) start_brume "$name" "$build/placement/brume-placement" ;;
    worker*)
      [ -n "${kernel:-}" ] || guest_image
      mkdir -p "$home/$name"
      chmod 0755 "$home/$name"
      start_brume "$name" "$build/worker-agent/brume-worker" \
        --guest_kernel "$kernel" --guest_kernel_smp "$kernel_smp" --guest_initrd "$initrd" \
        --image_dir "$home/$name/images" --run_dir "$home/$name/run" \
        --code_cache_dir "$home/$name/code" --pool_size "$worker_pool_size" \
        --log_level "$worker_log_level" --max_boots "${worker_max_boots:-0}"
      ;;
    frontend*)
      start_brume "$name" "$build/frontend/brume-frontend" \
        --data_dir "$home/$name" --env_key_file "$home/env.key" \
        --counting_addr "$(addr_of "counting$i"):$grpc_port" \
        --placement_addr "$(addr_of placement1):$grpc_port" \
        --nats_urls "$(nats_urls)" --nats_tls_ca "$pki/ca.pem" --nats_tls_cert "$pki/$name.pem" \
        --nats_tls_key "$pki/$name.key" --async_replicas 3
      ;;
    *) echo "cluster: no member $name" >&2; exit 2 ;;
  esac
}

up() {
  local n=${1:-3} i
  [ "$(id -u)" -eq 0 ] || { echo "cluster: up needs root (namespaces, a bridge, libvirtd)" >&2; exit 1; }
  mkdir -p "$run" "$home/log"
  chmod 0711 "$home"
  echo "$n" >"$home/workers"
  echo "[1/5] the build, the guest image and libvirtd"
  [ -x "$build/frontend/brume-frontend" ] || { echo "cluster: no build in $build (cmake --build first)" >&2; exit 1; }
  guest_image
  bash "$top/deploy/host-setup.sh" >>"$home/log/host-setup.log" 2>&1
  echo "[2/5] the network: bridge $bridge ($subnet.1/24) and a namespace per member"
  network_up
  echo "[3/5] the certificates ($pki), etcd (3 members) and NATS (3 servers)"
  certs
  start_etcd
  start_nats
  echo "[4/5] counting, placement, $n workers, frontends"
  for i in "${!counting_hosts[@]}"; do start_member "counting$((i + 1))"; done
  for i in "${!placement_hosts[@]}"; do start_member "placement$((i + 1))"; done
  for ((i = 1; i <= n; i++)); do start_member "worker$i"; done
  [ -s "$home/env.key" ] || (umask 077 && openssl rand -hex 32 >"$home/env.key")
  for i in "${!frontend_hosts[@]}"; do start_member "frontend$((i + 1))"; done
  echo "[5/5] the admin key"
  if [ ! -s "$home/admin.key" ]; then
    # shellcheck disable=SC2046
    (umask 077 && "$build/frontend/brume-frontend" bootstrap-key admin \
      --etcd_endpoints "$(etcd_urls)" $(tls cli) >"$home/admin.key" 2>>"$home/log/bootstrap.log")
  fi
  status
  cat <<EOT

The CLI, through frontend 1 (frontend 2 is $(addr_of frontend2):$grpc_port):
  $build/cli/brume --endpoint $(addr_of frontend1):$grpc_port --tls-ca $pki/ca.pem \\
    --tls-cert $pki/cli.pem --tls-key $pki/cli.key --api-key-file $home/admin.key function list
The dashboards: http://$(addr_of frontend1):$http_port/ and http://$(addr_of frontend2):$http_port/
EOT
}

status() {
  local name addr state
  while read -r name addr; do
    if running "$name"; then state="running  pid $(cat "$run/$name.pid")"; else state=stopped; fi
    printf '%-12s %-12s %-22s log %s\n' "$name" "$addr" "$state" "$home/log/$name.log"
  done < <(members)
}

# The microVMs of this cluster's workers that are still there (a worker killed with -9, or one
# that did not finish within its stop time): their QEMU command lines name sockets under $home.
destroy_leftover_vms() {
  local pid name
  for pid in $(pgrep -f "^/usr/bin/qemu-system.*$home/" || true); do
    name=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n 's/^guest=\([^,]*\).*/\1/p')
    [ -n "$name" ] && virsh -c qemu:///system destroy "$name" >/dev/null 2>&1 || true
  done
}

down() {
  local name
  # Frontends first, etcd last: the reverse of up. A worker destroys its microVMs as it stops,
  # about 0.2 s each: give it time.
  for name in $(members | awk '{print $1}' | tac); do
    case $name in worker*) stop_daemon "$name" 120 ;; *) stop_daemon "$name" ;; esac
  done
  destroy_leftover_vms
  network_down
  rm -rf "$home"
  echo "cluster: down; namespaces, bridge $bridge and $home removed"
}

# ---- fault injection (tests/cluster, and operators rehearsing failures) ----
member_known() {
  members | awk '{print $1}' | grep -qx "$1" || { echo "cluster: no member $1" >&2; exit 2; }
}

# kill_member NAME: kill -9, as a crash or a power loss would (a worker's microVMs stay behind,
# as they would on a machine whose agent crashed).
kill_member() {
  if running "$1"; then
    kill -9 "$(cat "$run/$1.pid")"
    for _ in $(seq 50); do running "$1" || break; sleep 0.1; done
  fi
  rm -f "$run/$1.pid"
}

# cut NAME / restore NAME: takes the machine's end of NAME's link down (up): the member runs on
# but reaches nothing and nothing reaches it, as when a host's network fails.
cut() { ip link set "$veth_prefix$1" down; }
restore() { ip link set "$veth_prefix$1" up; }

case $cmd in
  up) up "${2:-3}" ;;
  down) down ;;
  status) status ;;
  stop | kill | start | cut | restore)
    [ -n "${2:-}" ] || { echo "usage: deploy/cluster.sh $cmd NAME (see status)" >&2; exit 2; }
    member_known "$2"
    case $cmd in
      stop) stop_daemon "$2" ;;
      kill) kill_member "$2" ;;
      start) start_member "$2" ;;
      cut) cut "$2" ;;
      restore) restore "$2" ;;
    esac
    ;;
  *)
    echo "usage: deploy/cluster.sh up [N] | down | status | stop|kill|start|cut|restore NAME" >&2
    exit 2
    ;;
esac
