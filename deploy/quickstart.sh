#!/usr/bin/env bash
# deploy/quickstart.sh [start|stop|status]
# Brume on this one machine, from a clean checkout: installs the Debian packages, builds
# everything, builds the guest image (kernel and initramfs, cached), starts libvirtd, etcd and one
# of each daemon on loopback, makes an admin API key, deploys the example functions of examples/
# with the brume CLI and invokes one, printing its answer, then once more asynchronously.
#   etcd             http://127.0.0.1:2379            the cluster's state
#   nats-server      nats://127.0.0.1:4222 HTTP 8222  queued (asynchronous) invocations (JetStream)
#   brume-counting   gRPC 127.0.0.1:7010  HTTP 9010   concurrency and the scaling rate
#   brume-placement  gRPC 127.0.0.1:7020  HTTP 9020   warm sandboxes or cold starts
#   brume-worker     gRPC 127.0.0.1:7030  HTTP 9030   the microVMs (libvirt; KVM or TCG)
#   brume-frontend   gRPC 127.0.0.1:7040  HTTP 9040   the public API; function code for workers
# A second run starts only what is not running and updates the examples' code (idempotent).
# State lives under $BRUME_HOME (default /var/lib/brume, or ~/.brume when not root): the daemons'
# logs (log/), the admin key (admin.key, mode 0600), etcd's data, NATS's store, the frontend's
# code store. Ports: BRUME_<DAEMON>_LISTEN and BRUME_<DAEMON>_HTTP_LISTEN, BRUME_ETCD_PORT,
# BRUME_ETCD_PEER_PORT, BRUME_NATS_PORT, BRUME_NATS_HTTP_PORT.
# BRUME_BUILD_DIR: the build to use (default build/; an existing one keeps its build type);
# BRUME_QUICKSTART_ID: the daemons' and the worker host's id (default quickstart).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-start}
if [ "$(id -u)" -eq 0 ]; then home=${BRUME_HOME:-/var/lib/brume}; else home=${BRUME_HOME:-$HOME/.brume}; fi
build=${BRUME_BUILD_DIR:-$top/build}
id=${BRUME_QUICKSTART_ID:-quickstart}
etcd_port=${BRUME_ETCD_PORT:-2379}
etcd_peer_port=${BRUME_ETCD_PEER_PORT:-2380}
nats_port=${BRUME_NATS_PORT:-4222}
nats_http_port=${BRUME_NATS_HTTP_PORT:-8222}
counting_listen=${BRUME_COUNTING_LISTEN:-127.0.0.1:7010}
counting_http=${BRUME_COUNTING_HTTP_LISTEN:-127.0.0.1:9010}
placement_listen=${BRUME_PLACEMENT_LISTEN:-127.0.0.1:7020}
placement_http=${BRUME_PLACEMENT_HTTP_LISTEN:-127.0.0.1:9020}
worker_listen=${BRUME_WORKER_LISTEN:-127.0.0.1:7030}
worker_http=${BRUME_WORKER_HTTP_LISTEN:-127.0.0.1:9030}
frontend_listen=${BRUME_FRONTEND_LISTEN:-127.0.0.1:7040}
frontend_http=${BRUME_FRONTEND_HTTP_LISTEN:-127.0.0.1:9040}
etcd_url=http://127.0.0.1:$etcd_port
run=$home/run
daemons="frontend worker placement counting nats etcd" # the order stop uses; start goes backwards
prog=quickstart
. "$top/deploy/lib/daemons.bash"

status() {
  local name pid
  for name in etcd nats counting placement worker frontend; do
    if running "$name"; then
      pid=$(cat "$run/$name.pid")
      printf '%-10s running  pid %-7s log %s\n' "$name" "$pid" "$home/log/$name.log"
    else
      printf '%-10s stopped\n' "$name"
    fi
  done
}

brume() { "$build/cli/brume" --endpoint "$frontend_listen" --api-key-file "$home/admin.key" "$@"; }

# deploy NAME MODE HANDLER ZIP: creates the function, or updates its code when it exists.
deploy() {
  local name=$1 mode=$2 handler=$3 zip=$4
  if brume function get "$name" >/dev/null 2>&1; then
    brume function update-code "$name" --zip "$zip" >/dev/null
    echo "  updated $name"
  else
    brume function create "$name" --handler-mode "$mode" --handler "$handler" --zip "$zip" >/dev/null
    echo "  created $name"
  fi
}

start() {
  mkdir -p "$run" "$home/log" "$home/worker"
  # QEMU runs as libvirt's user: it must reach the guest image and the scratch disks under
  # $home/worker (the admin key keeps its own 0600).
  chmod 0711 "$home"
  chmod 0755 "$home/worker"
  echo "[1/6] installing dependencies"
  bash "$top/deploy/install-deps.sh"
  echo "[2/6] building into $build"
  [ -f "$build/CMakeCache.txt" ] || cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j"$(nproc)" >/dev/null
  echo "[3/6] the guest image (the kernel build takes about 4 minutes the first time, then it is cached)"
  guest_image
  echo "[4/6] libvirtd and virtlogd"
  bash "$top/deploy/host-setup.sh" >>"$home/log/host-setup.log" 2>&1
  echo "[5/6] starting the services"
  if ! running etcd; then
    etcd --name brume-local --data-dir "$home/etcd" \
      --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
      --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
      --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
      --initial-cluster "brume-local=http://127.0.0.1:$etcd_peer_port" \
      >>"$home/log/etcd.log" 2>&1 &
    echo $! >"$run/etcd.pid"
    wait_healthy "$etcd_url/health" etcd "$home/log/etcd.log"
  fi
  # JetStream's store under $home/nats; /healthz answers once JetStream is ready.
  start_daemon nats "http://127.0.0.1:$nats_http_port/healthz" nats-server -js -a 127.0.0.1 \
    -p "$nats_port" -m "$nats_http_port" -sd "$home/nats" -n "brume-$id"
  start_daemon counting "http://$counting_http/healthz" "$build/counting/brume-counting" \
    --listen "$counting_listen" --http_listen "$counting_http" --etcd_endpoints "$etcd_url" \
    --daemon_id "$id"
  # A fixed daemon id: a restart takes back the sandboxes the last run left on the workers.
  start_daemon placement "http://$placement_http/healthz" "$build/placement/brume-placement" \
    --listen "$placement_listen" --http_listen "$placement_http" --etcd_endpoints "$etcd_url" \
    --daemon_id "$id"
  start_daemon worker "http://$worker_http/healthz" "$build/worker-agent/brume-worker" \
    --listen "$worker_listen" --http_listen "$worker_http" --etcd_endpoints "$etcd_url" \
    --host_id "$id" --guest_kernel "$kernel" --guest_kernel_smp "$kernel_smp" \
    --guest_initrd "$initrd" --image_dir "$home/worker/images" --run_dir "$home/worker/run" \
    --code_cache_dir "$home/worker/code"
  start_daemon frontend "http://$frontend_http/healthz" "$build/frontend/brume-frontend" \
    --listen "$frontend_listen" --http_listen "$frontend_http" --etcd_endpoints "$etcd_url" \
    --daemon_id "$id" --data_dir "$home/frontend" --counting_addr "$counting_listen" \
    --placement_addr "$placement_listen" --nats_urls "nats://127.0.0.1:$nats_port"
  echo "[6/6] the admin key and the example functions"
  if [ ! -s "$home/admin.key" ]; then
    (umask 077 && "$build/frontend/brume-frontend" bootstrap-key admin --etcd_endpoints "$etcd_url" \
      >"$home/admin.key" 2>>"$home/log/frontend.log")
    echo "  made an admin key: $home/admin.key"
  fi
  deploy hello-c runtime-api hello "$build/examples/hello-c.zip"
  deploy hello-shell exec handler.sh "$build/examples/hello-shell.zip"
  status
  echo
  echo "$ brume invoke hello-c --payload '{\"name\": \"Brume\"}'"
  brume invoke hello-c --payload '{"name": "Brume"}'
  echo
  echo "$ brume invoke hello-c --async --payload '{\"name\": \"queue\"}'"
  brume invoke hello-c --async --payload '{"name": "queue"}'
  echo "  (brume events get EVENT_ID shows where it stands)"
  echo
  echo "Brume is up. Try:  $build/cli/brume --endpoint $frontend_listen --api-key-file $home/admin.key function list"
  echo "Stop it with: deploy/quickstart.sh stop"
}

stop() {
  local name
  for name in $daemons; do stop_daemon "$name"; done
  status
}

case $cmd in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: deploy/quickstart.sh [start|stop|status]" >&2; exit 2 ;;
esac
