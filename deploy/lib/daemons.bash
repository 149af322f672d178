# deploy/lib/daemons.bash: what deploy/quickstart.sh and deploy/cluster.sh share, sourced by
# both. They set, before calling these: prog (their name, for messages), top (the checkout),
# home (their state: log/ and run/ live there), run ($home/run: one NAME.pid per daemon).
#
#   running NAME                whether NAME's pid file names a live process
#   wait_healthy URL NAME LOG   waits up to 30 s for URL to answer, else prints LOG's end, exits
#   start_daemon NAME URL CMD...
#                               starts CMD in the background (its output to log/NAME.log)
#                               unless NAME runs, records its pid, waits for URL
#   stop_daemon NAME [SECONDS]  SIGTERM, then waits up to SECONDS (default 10; a worker destroys
#                               its microVMs first)
#   guest_image                 builds (cached) the guest kernels and initramfs; sets kernel,
#                               kernel_smp and initrd; needs build (the build directory)

running() { [ -f "$run/$1.pid" ] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }

wait_healthy() {
  for _ in $(seq 150); do
    curl -sf "${curl_tls[@]}" "$1" >/dev/null && return 0
    sleep 0.2
  done
  echo "$prog: $2 did not become healthy; its log: $3" >&2
  tail -n 20 "$3" >&2 || true
  exit 1
}
curl_tls=() # extra curl options for wait_healthy (cluster.sh: etcd's client certificate)

start_daemon() {
  local name=$1 url=$2
  shift 2
  if running "$name"; then return 0; fi
  "$@" >>"$home/log/$name.log" 2>&1 &
  echo $! >"$run/$name.pid"
  wait_healthy "$url" "$name" "$home/log/$name.log"
}

stop_daemon() {
  local name=$1 wait_s=${2:-10}
  if running "$name"; then
    kill "$(cat "$run/$name.pid")"
    for _ in $(seq $((wait_s * 10))); do running "$name" || break; sleep 0.1; done
  fi
  rm -f "$run/$name.pid"
}

guest_image() {
  kernel=$("$top/worker-agent/guest/build-kernel.sh" 2>>"$home/log/guest-build.log" | tail -n 1)
  kernel_smp=$("$top/worker-agent/guest/build-kernel.sh" --smp 2>>"$home/log/guest-build.log" | tail -n 1)
  initrd=$("$top/worker-agent/guest/build-initramfs.sh" "$build/worker-agent/guest/init/brume-init" \
    2>>"$home/log/guest-build.log" | tail -n 1)
}
