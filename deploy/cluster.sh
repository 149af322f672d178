#!/usr/bin/env bash
# deploy/cluster.sh up [N] | down | status
# A multi-node Brume on this one machine: N worker hosts (default 3), a three-member etcd, two
# counting daemons, one placement daemon and two frontends, each in a network namespace of its
# own with its own address on a bridge this script makes (veth pairs), as if each were a
# machine. Addresses and ports come from deploy/cluster.conf (or $BRUME_CLUSTER_CONF).
#   - Every daemon speaks mutual TLS, gRPC and etcd alike, with certificates from a CA this
#     script makes with OpenSSL ($BRUME_CLUSTER_HOME/pki; the CLI's certificate is cli.pem).
#   - The frontends share one key for environment variables; an admin key goes to admin.key.
#   - up is idempotent: it starts what is not running. down stops every daemon, removes the
#     namespaces, the bridge and $BRUME_CLUSTER_HOME (logs included).
# Needs root (namespaces, bridge) and the build (BRUME_BUILD_DIR, default build/); it builds the
# guest image and starts libvirtd as deploy/quickstart.sh does.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "${BRUME_CLUSTER_CONF:-$top/deploy/cluster.conf}"
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
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep "^$ns_prefix" || true); do ip netns del "$ns"; done
  ip link del "$bridge" 2>/dev/null || true
}

# The CA, and one certificate per member (its address and name as SANs) and for the CLI, each
# good for server and client use: every daemon is both.
certs() {
  mkdir -p "$pki"
  [ -s "$pki/ca.pem" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -nodes -days 365 -subj /CN=brume-cluster-ca -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
  local name addr
  while read -r name addr; do
    [ -s "$pki/$name.pem" ] && continue
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$name" \
      -keyout "$pki/$name.key" -out "$pki/$name.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s,IP:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$name" "$addr" \
      >"$pki/$name.ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
      -CAcreateserial -days 365 -extfile "$pki/$name.ext" -out "$pki/$name.pem" 2>/dev/null
  done < <(members; echo "cli $subnet.1")
  chmod 600 "$pki"/*.key
}

tls() { echo --tls_ca "$pki/ca.pem" --tls_cert "$pki/$1.pem" --tls_key "$pki/$1.key" --tls_client_auth=true; }
etcd_urls() {
  local h urls=()
  for h in "${etcd_hosts[@]}"; do urls+=("https://$subnet.$h:$etcd_client_port"); done
  (IFS=,; echo "${urls[*]}")
}

start_etcd() {
  local i name addr cluster=()
  for i in "${!etcd_hosts[@]}"; do
    cluster+=("etcd$((i + 1))=https://$subnet.${etcd_hosts[$i]}:$etcd_peer_port")
  done
  cluster=$(IFS=,; echo "${cluster[*]}")
  # All three first, then wait: a member waits for a quorum before it answers /health.
  for i in "${!etcd_hosts[@]}"; do
    name=etcd$((i + 1)); addr=$(addr_of "$name")
    running "$name" && continue
    ip netns exec "$ns_prefix$name" etcd --name "$name" --data-dir "$home/$name" \
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
  done
  curl_tls=(--cacert "$pki/ca.pem" --cert "$pki/cli.pem" --key "$pki/cli.key")
  for i in "${!etcd_hosts[@]}"; do
    name=etcd$((i + 1))
    wait_healthy "https://$(addr_of "$name"):$etcd_client_port/health" "$name" "$home/log/$name.log"
  done
  curl_tls=()
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
  echo "[3/5] the certificates ($pki) and etcd (3 members)"
  certs
  start_etcd
  echo "[4/5] counting, placement, $n workers, frontends"
  for i in "${!counting_hosts[@]}"; do start_brume "counting$((i + 1))" "$build/counting/brume-counting"; done
  for i in "${!placement_hosts[@]}"; do start_brume "placement$((i + 1))" "$build/placement/brume-placement"; done
  for ((i = 1; i <= n; i++)); do
    mkdir -p "$home/worker$i"
    chmod 0755 "$home/worker$i"
    start_brume "worker$i" "$build/worker-agent/brume-worker" \
      --guest_kernel "$kernel" --guest_kernel_smp "$kernel_smp" --guest_initrd "$initrd" \
      --image_dir "$home/worker$i/images" --run_dir "$home/worker$i/run" \
      --code_cache_dir "$home/worker$i/code" --pool_size "$worker_pool_size"
  done
  [ -s "$home/env.key" ] || (umask 077 && openssl rand -hex 32 >"$home/env.key")
  for i in "${!frontend_hosts[@]}"; do
    start_brume "frontend$((i + 1))" "$build/frontend/brume-frontend" \
      --data_dir "$home/frontend$((i + 1))" --env_key_file "$home/env.key" \
      --counting_addr "$(addr_of "counting$((i + 1))"):$grpc_port" \
      --placement_addr "$(addr_of placement1):$grpc_port"
  done
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

down() {
  local name
  # Frontends first, etcd last: the reverse of up.
  for name in $(members | awk '{print $1}' | tac); do stop_daemon "$name"; done
  network_down
  rm -rf "$home"
  echo "cluster: down; namespaces, bridge $bridge and $home removed"
}

case $cmd in
  up) up "${2:-3}" ;;
  down) down ;;
  status) status ;;
  *) echo "usage: deploy/cluster.sh up [N] | down | status" >&2; exit 2 ;;
esac
