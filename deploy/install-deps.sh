#!/usr/bin/env bash
# Installs, idempotently, every Debian 12 package that building, testing and running Brume needs.
# Safe to run again: apt-get skips what is already installed. Needs root (or sudo).
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config git
  # RPC: gRPC C core and protobuf-c (protoc-c generates the message code at build time)
  libgrpc-dev protobuf-c-compiler libprotobuf-c-dev
  # etcd client (libcurl), JSON, HTTP listener, TLS
  libcurl4-openssl-dev libjansson-dev libmicrohttpd-dev libssl-dev openssl
  # the worker's code cache unpacks function zips on the host
  libarchive-dev
  # tests: cmocka unit tests, clang + compiler-rt for libFuzzer and sanitizers
  libcmocka-dev clang libclang-rt-14-dev
  # services the daemons and the tests run against
  etcd-server etcd-client nats-server libnats-dev
  # worker hosts: libvirt + QEMU, and tini as a subreaper for libvirtd without systemd
  libvirt-dev libvirt-daemon-system qemu-system-x86 tini
  # worker hosts: mke2fs for the sandboxes' /tmp scratch disks
  e2fsprogs
  # the guest: a kernel built from Debian's source (and our patches), busybox and a static
  # brume-init in the initramfs
  linux-source-6.1 patch bc bison flex libelf-dev cpio xz-utils busybox-static zip unzip
  # test helpers
  curl iproute2 procps psmisc python3 python3-prometheus-client nodejs
  # the dashboard's browser test: headless Chromium (driven by playwright-core from npm, which
  # tests/dashboard/run.sh installs) and a font for its screenshots
  chromium fonts-liberation
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
# Without systemd, package scripts must not try to start daemons (etcd, libvirtd, nats):
# Brume's scripts start what they need by hand. policy-rc.d exit 101 = "do not start".
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  added_policy=1
fi
trap '[ $added_policy -eq 1 ] && $SUDO rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: done"
