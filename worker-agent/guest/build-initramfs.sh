#!/usr/bin/env bash
# worker-agent/guest/build-initramfs.sh INIT_BINARY [OUT]
#
# Builds the guest's initramfs: a gzip-compressed newc cpio archive holding
#   /init             INIT_BINARY, stripped (static; normally brume-init, the tests use their own)
#   /bin/busybox      Debian's busybox-static, with a symlink per applet (sh, unzip, ls, ...)
#   /dev/console, /dev/null   device nodes, so PID 1 has a console before it mounts devtmpfs
#   /proc /sys /run /tmp (1777) /var/task /opt /root      empty mount points and directories
#   /etc/passwd, /etc/group, /etc/hosts                    the minimum a runtime looks up
# Every entry is owned by root, dated 1970-01-01 and stored in sorted order, so the same inputs
# give the same bytes.
#
# The archive is cached: ${BRUME_CACHE:-$HOME/.cache/brume}/guest/initramfs-<hash>.cpio.gz, with
# <hash> the first 16 hex digits of the SHA-256 of INIT_BINARY, busybox and this script. With
# OUT, the archive is also copied there. The last line on stdout is the archive's path; progress
# goes to stderr. Must run as root (device nodes; ownership in the archive).
# Environment: BRUME_CACHE, BRUME_BUSYBOX (default /bin/busybox).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script="$here/$(basename "${BASH_SOURCE[0]}")"
busybox=${BRUME_BUSYBOX:-/bin/busybox}
cache_root="${BRUME_CACHE:-$HOME/.cache/brume}/guest"

say() { echo "[initramfs] $*" >&2; }
die() { echo "build-initramfs.sh: $*" >&2; exit 1; }

if [ $# -lt 1 ] || [ $# -gt 2 ]; then die "usage: build-initramfs.sh INIT_BINARY [OUT]"; fi
init_bin=$1
out=${2:-}
[ -f "$init_bin" ] || die "no init binary at $init_bin"
[ -x "$busybox" ] || die "no busybox at $busybox (apt-get install busybox-static)"

# Nothing in the image can load shared libraries: both programs must be static.
for bin in "$init_bin" "$busybox"; do
  if readelf -l "$bin" 2>/dev/null | grep -q 'INTERP'; then
    die "$bin is dynamically linked; the initramfs has no loader, link it statically"
  fi
done

hash=$(cat "$init_bin" "$busybox" "$script" | sha256sum | cut -c1-16)
final="$cache_root/initramfs-$hash.cpio.gz"

publish() {
  if [ -n "$out" ]; then
    mkdir -p "$(dirname "$out")"
    cp "$final" "$out.tmp.$$" && mv -f "$out.tmp.$$" "$out"
    echo "$out"
  else
    echo "$final"
  fi
}
if [ -f "$final" ]; then
  publish
  exit 0
fi

mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/.initramfs-$hash.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
say "staging $init_bin and $busybox"

mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,etc,root,opt,var/task}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
# Stripped: the image is unpacked into guest RAM, and brume-init's symbols and debug sections
# are a third of its size (0.4 MiB of every sandbox); the build directory keeps the full binary.
strip --strip-all -o "$root/init" "$init_bin"
chmod 0755 "$root/init"
install -m 0755 "$busybox" "$root/bin/busybox"

# One symlink per applet at its usual place. Skipped: init and linuxrc, so that a broken /init
# makes the kernel panic loudly instead of falling back to busybox's init.
while IFS= read -r applet; do
  case "$applet" in
    sbin/init | linuxrc | bin/busybox) continue ;;
  esac
  mkdir -p "$root/$(dirname "$applet")"
  [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done < <("$busybox" --list-full)

# The kernel opens /dev/console for PID 1 before anything can mount devtmpfs.
mknod -m 0600 "$root/dev/console" c 5 1
mknod -m 0666 "$root/dev/null" c 1 3

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
# Runtimes resolve "localhost" (the Runtime API is on 127.0.0.1:9001); the guest has no IPv6.
cat >"$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
EOF

# Reproducible archive: fixed dates, sorted names, no host inode or device numbers, root owner.
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z |
  cpio --quiet --null --create --format=newc --owner=0:0 --reproducible) |
  gzip -9 -n >"$work/initramfs.cpio.gz"
mv "$work/initramfs.cpio.gz" "$final"
say "built $final ($(($(stat -c %s "$final") / 1024)) KiB)"
publish
