#!/usr/bin/env bash
# bench/run.sh NAME...   (e.g. bench/run.sh rpc etcd)
#
# Runs each benchmark bench/NAME.sh. A benchmark prints JSON lines on stdout:
#   {"bench": "rpc", "metric": "layer_seq_p50", "value": 101.5, "unit": "us"}
# and anything else (progress) on stderr. This runner passes the JSON lines through and ends with
# a short human table. BUILD_DIR (default build/) must hold a build of the project; the runner
# builds it if it is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
export BUILD_DIR=${BUILD_DIR:-$top/build}

if [ $# -eq 0 ]; then
  echo "usage: bench/run.sh NAME...   available:" $(cd "$here" && ls *.sh | grep -v '^run.sh$' | sed 's/\.sh$//')
  exit 2
fi
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S "$top" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >&2
fi
cmake --build "$BUILD_DIR" -j"$(nproc)" >&2

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for name in "$@"; do
  script="$here/$name.sh"
  [ -x "$script" ] || { echo "bench/run.sh: no benchmark named $name ($script)" >&2; exit 2; }
  echo "== bench $name" >&2
  "$script" | tee -a "$out"
done

echo
printf '%-10s %-36s %14s  %s\n' BENCH METRIC VALUE UNIT
sed -n 's/.*"bench": *"\([^"]*\)".*"metric": *"\([^"]*\)".*"value": *\([^,}]*\).*"unit": *"\([^"]*\)".*/\1 \2 \3 \4/p' "$out" |
  while read -r b m v u; do printf '%-10s %-36s %14s  %s\n' "$b" "$m" "$v" "$u"; done
