#!/usr/bin/env bash
# Prepares a host for brume-worker without systemd (docs/worker.md, "Host set-up"):
#   1. /dev/kvm gets the group and mode udev would give it (root:kvm 0660). Without them every
#      virDomainCreateXML re-probes QEMU's capabilities and takes about 56 s instead of 0.5 s.
#   2. /etc/libvirt/qemu.conf: QEMU's seccomp sandbox stays on (seccomp_sandbox = 1 is the
#      default; an explicit 0 is turned back into 1). Nothing else is needed there.
#   3. virtlogd -d, unless one is running (libvirtd hands it each domain's console/log output).
#   4. libvirtd under a subreaper, `tini -s -- libvirtd`, unless one is running: libvirtd
#      double-forks its QEMU processes, and PID 1 here reaps orphans only every ~1.7 s, so a
#      domain destroy takes ~2 s instead of 0.2 s without one. Its log goes to $BRUME_LOG_DIR.
#   5. waits until `virsh -c qemu:///system version` answers (BRUME_LIBVIRT_TIMEOUT seconds).
# Idempotent: run it again and it only checks. Prints what it did.
#
#   deploy/host-setup.sh          set up (needs root)
#   deploy/host-setup.sh stop     stop the virtlogd and libvirtd that this script started
#                                 (their pid files are in $BRUME_RUN_DIR); leaves others alone
#   deploy/host-setup.sh status   print what is running
# Environment: BRUME_RUN_DIR (/run/brume: pid files), BRUME_LOG_DIR (/var/log/brume),
# BRUME_LIBVIRT_TIMEOUT (30 s), BRUME_QEMU_CONF (/etc/libvirt/qemu.conf).
set -euo pipefail

run_dir=${BRUME_RUN_DIR:-/run/brume}
log_dir=${BRUME_LOG_DIR:-/var/log/brume}
timeout_s=${BRUME_LIBVIRT_TIMEOUT:-30}
qemu_conf=${BRUME_QEMU_CONF:-/etc/libvirt/qemu.conf}
uri=qemu:///system

say() { printf 'host-setup: %s\n' "$*"; }
die() { printf 'host-setup: error: %s\n' "$*" >&2; exit 1; }

# A pid file names a live process whose command is $2 (so a recycled pid is not mistaken).
pid_alive() {
  local file=$1 comm=$2 pid
  [ -s "$file" ] || return 1
  pid=$(cat "$file" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$comm" ]
}

libvirt_answers() { virsh -c "$uri" version >/dev/null 2>&1; }

setup_kvm() {
  if [ ! -e /dev/kvm ]; then
    say "/dev/kvm: absent (microVMs will run under TCG)"
    return
  fi
  getent group kvm >/dev/null || die "/dev/kvm exists but there is no 'kvm' group (is libvirt-daemon-system installed?)"
  local before after
  before=$(stat -c '%G %a' /dev/kvm)
  chgrp kvm /dev/kvm
  chmod 660 /dev/kvm
  after=$(stat -c '%G %a' /dev/kvm)
  if [ "$before" = "$after" ]; then
    say "/dev/kvm: already group kvm, mode 660"
  else
    say "/dev/kvm: group/mode '$before' -> '$after' (as udev would set them)"
  fi
  # Only the permissions: whether KVM really boots a guest is brume-worker's accelerator probe.
}

setup_qemu_conf() {
  [ -f "$qemu_conf" ] || die "$qemu_conf is missing (is libvirt-daemon-driver-qemu installed?)"
  if grep -Eq '^[[:space:]]*seccomp_sandbox[[:space:]]*=[[:space:]]*0' "$qemu_conf"; then
    sed -i -E 's/^([[:space:]]*seccomp_sandbox[[:space:]]*=[[:space:]]*)0/\11/' "$qemu_conf"
    say "$qemu_conf: seccomp_sandbox was 0, set to 1 (QEMU's seccomp sandbox on)"
    qemu_conf_changed=1
  else
    say "$qemu_conf: seccomp_sandbox not disabled (QEMU's seccomp sandbox is on by default)"
  fi
}

start_virtlogd() {
  if pgrep -x virtlogd >/dev/null; then
    say "virtlogd: already running (pid $(pgrep -x virtlogd | head -n1))"
    return
  fi
  virtlogd -d
  for _ in $(seq 50); do
    pid_alive /run/virtlogd.pid virtlogd && break
    sleep 0.1
  done
  pid_alive /run/virtlogd.pid virtlogd || die "virtlogd -d did not start (no live /run/virtlogd.pid)"
  cp /run/virtlogd.pid "$run_dir/virtlogd.pid"
  say "virtlogd: started (pid $(cat /run/virtlogd.pid))"
}

start_libvirtd() {
  if pgrep -x libvirtd >/dev/null; then
    if [ "${qemu_conf_changed:-0}" = 1 ]; then
      say "libvirtd: already running; restart it for the qemu.conf change to apply"
    fi
    say "libvirtd: already running (pid $(pgrep -x libvirtd | head -n1))"
    return
  fi
  command -v tini >/dev/null || die "tini is not installed (deploy/install-deps.sh installs it)"
  # setsid: libvirtd must not die with the shell or CI job step that ran this script.
  setsid tini -s -- libvirtd >>"$log_dir/libvirtd.log" 2>&1 </dev/null &
  echo $! >"$run_dir/libvirtd.pid"
  say "libvirtd: started under tini -s (tini pid $!, log $log_dir/libvirtd.log)"
}

wait_libvirt() {
  local start now
  start=$(date +%s)
  until libvirt_answers; do
    if pid_alive "$run_dir/libvirtd.pid" tini || pgrep -x libvirtd >/dev/null; then :; else
      tail -n 20 "$log_dir/libvirtd.log" >&2 2>/dev/null || true
      die "libvirtd exited during start-up (log above, from $log_dir/libvirtd.log)"
    fi
    now=$(date +%s)
    if [ $((now - start)) -ge "$timeout_s" ]; then
      tail -n 20 "$log_dir/libvirtd.log" >&2 2>/dev/null || true
      die "libvirtd did not answer 'virsh -c $uri version' within ${timeout_s}s (log: $log_dir/libvirtd.log)"
    fi
    sleep 0.2
  done
  say "libvirt: $(virsh -c "$uri" version 2>/dev/null | grep -E 'Running hypervisor|Using library' | tr -s ' ' | paste -sd ';' -)"
  say "libvirt: answering on $uri after $(( $(date +%s) - start ))s"
}

stop_one() {
  local name=$1 comm=$2 file="$run_dir/$1.pid" pid
  if ! pid_alive "$file" "$comm"; then
    say "$name: not started by this script (no live $file); left alone"
    rm -f "$file"
    return
  fi
  pid=$(cat "$file")
  kill -TERM "$pid"
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    say "$name: did not stop within 10s, killed (pid $pid)"
  else
    say "$name: stopped (pid $pid)"
  fi
  rm -f "$file"
}

do_stop() {
  if libvirt_answers; then
    local running
    running=$(virsh -c "$uri" list --name 2>/dev/null | grep -c . || true)
    [ "$running" -eq 0 ] || say "warning: $running domain(s) still running; their QEMU processes outlive libvirtd"
  fi
  # tini forwards SIGTERM to libvirtd and exits with it.
  stop_one libvirtd tini
  stop_one virtlogd virtlogd
}

do_status() {
  local p
  for p in virtlogd libvirtd; do
    if pgrep -x "$p" >/dev/null; then say "$p: running (pid $(pgrep -x "$p" | head -n1))"
    else say "$p: not running"; fi
  done
  if libvirt_answers; then say "libvirt: answering on $uri"; else say "libvirt: not answering on $uri"; fi
}

[ "$(id -u)" -eq 0 ] || die "must run as root (it changes /dev/kvm and starts libvirtd)"
for tool in virsh virtlogd libvirtd pgrep setsid; do
  command -v "$tool" >/dev/null || die "$tool is not installed (run deploy/install-deps.sh)"
done
mkdir -p "$run_dir" "$log_dir"

case "${1:-start}" in
  start)
    setup_kvm
    setup_qemu_conf
    start_virtlogd
    start_libvirtd
    wait_libvirt
    ;;
  stop) do_stop ;;
  status) do_status ;;
  *) die "usage: $0 [start|stop|status]" ;;
esac
