#!/usr/bin/env bash
# deploy/quickstart.sh [start|stop|status]
# Sets up this machine for Brume and starts it: installs the Debian packages, builds everything,
# and starts the services a single node runs: etcd on 127.0.0.1 (the cluster's state store),
# brume-counting (gRPC 127.0.0.1:7010, /healthz and /metrics on 127.0.0.1:9010) and
# brume-placement (gRPC 127.0.0.1:7020, HTTP 127.0.0.1:9020); the other Brume daemons join this
# script as their issues land.
# State lives under $BRUME_HOME (default /var/lib/brume, or ~/.brume when not root).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-start}
if [ "$(id -u)" -eq 0 ]; then home=${BRUME_HOME:-/var/lib/brume}; else home=${BRUME_HOME:-$HOME/.brume}; fi
etcd_port=${BRUME_ETCD_PORT:-2379}
etcd_peer_port=${BRUME_ETCD_PEER_PORT:-2380}
counting_listen=${BRUME_COUNTING_LISTEN:-127.0.0.1:7010}
counting_http=${BRUME_COUNTING_HTTP_LISTEN:-127.0.0.1:9010}
placement_listen=${BRUME_PLACEMENT_LISTEN:-127.0.0.1:7020}
placement_http=${BRUME_PLACEMENT_HTTP_LISTEN:-127.0.0.1:9020}
run=$home/run
mkdir -p "$run" "$home/log"

running() { [ -f "$run/$1.pid" ] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }

status() {
  if running etcd; then
    echo "etcd      running  pid $(cat "$run/etcd.pid")  http://127.0.0.1:$etcd_port  log $home/log/etcd.log"
  else
    echo "etcd      stopped"
  fi
  if running counting; then
    echo "counting  running  pid $(cat "$run/counting.pid")  grpc $counting_listen  http://$counting_http/healthz  log $home/log/counting.log"
  else
    echo "counting  stopped"
  fi
  if running placement; then
    echo "placement running  pid $(cat "$run/placement.pid")  grpc $placement_listen  http://$placement_http/healthz  log $home/log/placement.log"
  else
    echo "placement stopped"
  fi
}
# Waits until url answers (a daemon's /healthz), or fails naming the log.
wait_healthy() {
  for _ in $(seq 50); do
    curl -sf "$1" >/dev/null && return 0
    sleep 0.2
  done
  echo "$2 did not become healthy; see $3" >&2
  exit 1
}

case $cmd in
  start)
    echo "[1/3] installing dependencies"
    bash "$top/deploy/install-deps.sh"
    echo "[2/3] building into $top/build"
    cmake -S "$top" -B "$top/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$top/build" -j"$(nproc)" >/dev/null
    echo "[3/3] starting services"
    if ! running etcd; then
      etcd --name brume-local --data-dir "$home/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" \
        --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
        --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
        --initial-cluster "brume-local=http://127.0.0.1:$etcd_peer_port" \
        >>"$home/log/etcd.log" 2>&1 &
      echo $! >"$run/etcd.pid"
      wait_healthy "http://127.0.0.1:$etcd_port/health" etcd "$home/log/etcd.log"
    fi
    if ! running counting; then
      "$top/build/counting/brume-counting" --listen "$counting_listen" \
        --http_listen "$counting_http" --etcd_endpoints "http://127.0.0.1:$etcd_port" \
        >>"$home/log/counting.log" 2>&1 &
      echo $! >"$run/counting.pid"
      wait_healthy "http://$counting_http/healthz" brume-counting "$home/log/counting.log"
    fi
    if ! running placement; then
      # A fixed daemon id: a restart takes back the sandboxes the last run left on the workers.
      "$top/build/placement/brume-placement" --listen "$placement_listen" \
        --http_listen "$placement_http" --etcd_endpoints "http://127.0.0.1:$etcd_port" \
        --daemon_id quickstart >>"$home/log/placement.log" 2>&1 &
      echo $! >"$run/placement.pid"
      wait_healthy "http://$placement_http/healthz" brume-placement "$home/log/placement.log"
    fi
    status
    echo "Brume is up (etcd, counting, placement). Stop it with: deploy/quickstart.sh stop"
    ;;
  stop)
    if running placement; then kill "$(cat "$run/placement.pid")"; rm -f "$run/placement.pid"; fi
    if running counting; then kill "$(cat "$run/counting.pid")"; rm -f "$run/counting.pid"; fi
    if running etcd; then kill "$(cat "$run/etcd.pid")"; rm -f "$run/etcd.pid"; fi
    status
    ;;
  status) status ;;
  *) echo "usage: deploy/quickstart.sh [start|stop|status]" >&2; exit 2 ;;
esac
