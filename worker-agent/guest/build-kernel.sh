#!/usr/bin/env bash
# worker-agent/guest/build-kernel.sh [--smp] [--print-path] [OUT_DIR]
#
# Builds Brume's guest kernel: Debian's linux-source-6.1 with the committed patches kernel/*.patch
# applied (in name order), `make tinyconfig`, then the committed fragment kernel/brume-guest.config
# merged over it. The result is an uncompressed vmlinux that
# QEMU boots directly through its PVH entry (no bzImage decompression, no firmware).
#
#   --smp         the SMP variant for sandboxes of more than one vCPU: kernel/brume-guest-smp.config
#                 laid over the fragment (its options replace the fragment's lines for the same
#                 symbols). A uniprocessor kernel starts a runtime about 40 ms sooner under TCG,
#                 so sandboxes of one vCPU keep it.
#
# The build is cached: ${BRUME_CACHE:-$HOME/.cache/brume}/guest/kernel-<hash>/vmlinux, where
# <hash> is the first 16 hex digits of the SHA-256 of the fragment, the patches, the linux-source
# package version and this script. A cached kernel is printed at once; otherwise the build (2-4 minutes
# on 2 cores) runs in a temporary directory beside the cache and is moved into place with
# one rename, so a concurrent or interrupted build never leaves a half-written kernel behind.
# Concurrent builds of the same hash wait for each other (flock).
#
#   OUT_DIR       also copy vmlinux, System.map and the .config (as "config") there; print
#                 OUT_DIR/vmlinux.
#   --print-path  print where the cached vmlinux is or would be, build nothing; exit status 0 if
#                 it exists, 1 if not.
#
# Progress goes to stderr; the last line on stdout is the vmlinux path.
# Environment: BRUME_CACHE, BRUME_LINUX_SOURCE (default /usr/src/linux-source-6.1.tar.xz),
# BRUME_KEEP_WORK=1 keeps the work directory of a build for inspection.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script="$here/$(basename "${BASH_SOURCE[0]}")"
base_fragment="$here/kernel/brume-guest.config"
smp_overlay="$here/kernel/brume-guest-smp.config"
source_tar=${BRUME_LINUX_SOURCE:-/usr/src/linux-source-6.1.tar.xz}
cache_root="${BRUME_CACHE:-$HOME/.cache/brume}/guest"

say() { echo "[kernel] $*" >&2; }
die() { echo "build-kernel.sh: $*" >&2; exit 1; }

print_only=0
smp=0
out_dir=
for arg in "$@"; do
  case "$arg" in
    --print-path) print_only=1 ;;
    --smp) smp=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$script"; exit 0 ;;
    -*) die "unknown option $arg" ;;
    *) [ -z "$out_dir" ] || die "more than one OUT_DIR"; out_dir=$arg ;;
  esac
done

[ -f "$base_fragment" ] || die "missing config fragment $base_fragment"
# The fragment the build uses: the base, or the base with the SMP overlay's symbols replaced.
fragment_text() {
  if [ "$smp" = 0 ]; then
    cat "$base_fragment"
    return
  fi
  [ -f "$smp_overlay" ] || die "missing config fragment $smp_overlay"
  local syms
  syms=$(sed -n 's/^\(# \)\{0,1\}\(CONFIG_[A-Za-z0-9_]*\)[= ].*/\2/p' "$smp_overlay" | sort -u)
  grep -v -E "^(# )?($(echo $syms | tr ' ' '|'))[= ]" "$base_fragment"
  cat "$smp_overlay"
}
[ -f "$source_tar" ] || die "missing kernel source $source_tar (apt-get install linux-source-6.1)"

# The package version names Debian's source exactly; another tarball (or no dpkg) is named by
# its file name, size and modification time instead.
source_version=
if [ "$source_tar" = /usr/src/linux-source-6.1.tar.xz ]; then
  source_version=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || true)
fi
if [ -z "$source_version" ]; then
  source_version="$(basename "$source_tar") $(stat -c '%s %Y' "$source_tar")"
fi
sparse_src="$here/kernel/vmlinux-sparse.c"
patches=("$here"/kernel/*.patch)
[ -e "${patches[0]}" ] || patches=()
hash=$( { fragment_text; echo "linux-source-6.1 $source_version"; cat "$script" "$sparse_src"
  [ ${#patches[@]} -eq 0 ] || cat "${patches[@]}"; } |
  sha256sum | cut -c1-16)
final="$cache_root/kernel-$hash"

publish() {
  if [ -n "$out_dir" ]; then
    mkdir -p "$out_dir"
    # Copy to a temporary name first so a reader of OUT_DIR never sees a partial file.
    cp "$final/vmlinux" "$out_dir/.vmlinux.tmp" && mv -f "$out_dir/.vmlinux.tmp" "$out_dir/vmlinux"
    cp "$final/config" "$final/System.map" "$out_dir/"
    echo "$out_dir/vmlinux"
  else
    echo "$final/vmlinux"
  fi
}

if [ "$print_only" = 1 ]; then
  echo "$final/vmlinux"
  [ -f "$final/vmlinux" ]
  exit
fi
if [ -f "$final/vmlinux" ]; then
  publish
  exit 0
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.kernel-$hash.lock"
if ! flock -n 9; then
  say "another build of kernel-$hash is running; waiting for it"
  flock 9
fi
if [ -f "$final/vmlinux" ]; then
  publish
  exit 0
fi

# The work directory sits beside the cache so that the final rename stays on one filesystem.
work=$(mktemp -d "$cache_root/.kernel-$hash.XXXXXX")
cleanup() {
  if [ "${BRUME_KEEP_WORK:-0}" = 1 ]; then
    say "work directory kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

started=$(date +%s)
src="$work/src"
mkdir -p "$src"
say "unpacking $source_tar ($source_version)"
tar -xJf "$source_tar" -C "$src" --strip-components=1
for p in "${patches[@]}"; do
  say "applying $(basename "$p")"
  patch -d "$src" -p1 --forward --batch --quiet <"$p" || die "$(basename "$p") does not apply to $source_tar"
done

# ARCH=x86_64 matters: tinyconfig starts from allnoconfig, which with ARCH=x86 picks 32-bit.
# A fixed build user and host, and the source tarball's date as the build date, keep this
# machine and this moment out of the kernel's version string.
build_date=$(date -u -d "@$(stat -c %Y "$source_tar")")
kmake() {
  make -C "$src" ARCH=x86_64 KBUILD_BUILD_USER=brume KBUILD_BUILD_HOST=brume \
    KBUILD_BUILD_TIMESTAMP="$build_date" "$@"
}
log="$work/build.log"
run_logged() {
  if ! "$@" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "failed: $* (full log: $log; BRUME_KEEP_WORK=1 keeps it)"
  fi
}

fragment="$work/brume-guest.config"
fragment_text >"$fragment"
say "configuring: tinyconfig + $(basename "$base_fragment")$([ "$smp" = 1 ] && echo " + $(basename "$smp_overlay")")"
run_logged kmake tinyconfig
run_logged env -C "$src" scripts/kconfig/merge_config.sh -m .config "$fragment"
run_logged kmake olddefconfig

# Kconfig silently drops an option whose dependencies are not met; a fragment line that did not
# survive is a wrong fragment, not something to discover at boot.
missing=()
while IFS= read -r line; do
  case "$line" in
    CONFIG_*=*)
      if ! grep -qxF -- "$line" "$src/.config"; then
        got=$(grep -E "^(# )?${line%%=*}[= ]" "$src/.config" || echo absent)
        missing+=("$line (got: $got)")
      fi
      ;;
    "# CONFIG_"*" is not set")
      sym=${line#\# }
      sym=${sym%% *}
      if grep -q "^$sym=" "$src/.config"; then
        missing+=("$line (got: $(grep "^$sym=" "$src/.config"))")
      fi
      ;;
  esac
done <"$fragment"
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-kernel.sh: these fragment options did not survive into .config:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi

say "building (about 2-4 minutes on 2 cores; log: $log)"
run_logged kmake -j"$(nproc)" vmlinux

# QEMU's -kernel takes an ELF vmlinux only through the PVH entry note (Xen ELF note 0x12).
if command -v readelf >/dev/null &&
  ! readelf -n "$src/vmlinux" | grep -q 'Xen.*0x00000012\|PHYS32_ENTRY'; then
  die "$src/vmlinux has no PVH entry note; is CONFIG_PVH set?"
fi

# QEMU keeps a private copy of the whole ELF file for every VM (its ROM blob for reset), so the
# booted vmlinux carries no symbol table: that saves about 1 MiB per sandbox. System.map keeps
# the symbols for reading an oops (the kernel has no kallsyms of its own).
stage="$work/out"
mkdir -p "$stage"
strip -o "$work/vmlinux.stripped" "$src/vmlinux"
# Leave the linker's filler (the 2 MiB-aligned entry text's int3 padding, zeros) out of the
# segments QEMU copies into guest RAM: 3.7 MiB less host memory per sandbox (vmlinux-sparse.c).
cc -O2 -o "$work/vmlinux-sparse" "$sparse_src"
say "$("$work/vmlinux-sparse" "$work/vmlinux.stripped" "$stage/vmlinux")"
cp "$src/System.map" "$stage/System.map"
cp "$src/.config" "$stage/config"
rm -rf "$final"
mv "$stage" "$final"
size_kib=$(($(stat -c %s "$final/vmlinux") / 1024))
say "done in $(($(date +%s) - started)) s: $final/vmlinux ($size_kib KiB)"
publish
