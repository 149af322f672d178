# bench/lib/driver.bash: sourced by the benchmarks whose work is done by a C driver that runs
# Brume's daemons and real microVMs itself (bench/placement.sh, bench/e2e.sh). Not a benchmark
# itself (bench/run.sh runs only bench/*.sh).
#
#   run_driver LABEL BIN DOMAIN_PREFIX
#       checks that BIN (under $BUILD_DIR) and etcd exist, runs BIN, and on exit (also on failure
#       or a signal) stops it with SIGTERM and destroys the libvirt domains a SIGKILLed driver
#       left behind: those named DOMAIN_PREFIX<driver pid>-*. BIN's JSON lines go to stdout.

run_driver() {
  local label=$1 bin=$2 prefix=$3
  [ -x "$bin" ] || { echo "$label: $bin is missing (build target $(basename "$bin"))" >&2; exit 1; }
  command -v etcd >/dev/null || { echo "$label: no etcd on PATH" >&2; exit 1; }
  driver_pid=
  driver_prefix=$prefix
  trap driver_cleanup EXIT
  trap 'exit 130' INT TERM
  "$bin" &
  driver_pid=$!
  wait "$driver_pid"
}

driver_cleanup() {
  if [ -n "$driver_pid" ] && kill -0 "$driver_pid" 2>/dev/null; then
    kill -TERM "$driver_pid" 2>/dev/null || true
    wait "$driver_pid" 2>/dev/null || true
  fi
  # The driver destroys its domains itself; this catches a SIGKILLed driver.
  if [ -n "$driver_pid" ] && command -v virsh >/dev/null; then
    for d in $(virsh -c qemu:///system list --all --name 2>/dev/null | grep "^$driver_prefix$driver_pid-" || true); do
      virsh -c qemu:///system destroy "$d" >/dev/null 2>&1 || true
    done
  fi
}
