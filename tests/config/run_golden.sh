#!/bin/sh
# Runs a config program on every golden file and compares its output and exit status.
#
#   run_golden.sh PROGRAM GOLDEN_DIR
#
# golden/pass/NAME.conf: `PROGRAM --check-config --config pass/NAME.conf [ARGS]` must exit 0,
#   print NAME.out on stdout and nothing on stderr.
# golden/fail/NAME.conf: the same must exit 1, print NAME.err on stderr and nothing on stdout.
# NAME.args, if present, holds extra arguments (one line, split on blanks).
# golden/help.out: `PROGRAM --help` on stdout, exit 0.
# It runs from GOLDEN_DIR with relative paths, so messages are the same on every machine.
# With BRUME_GOLDEN_UPDATE=1 it rewrites the expected files instead of comparing.
set -u
prog=$1
cd "$2" || exit 2
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
failed=0
total=0

# check NAME WANT_RC EXPECTED_FILE STREAM(out|err) -- ARGS...
check() {
  name=$1 want_rc=$2 expected=$3 stream=$4
  shift 5
  total=$((total + 1))
  "$prog" "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  if [ "$stream" = out ]; then other=err; else other=out; fi
  if [ "${BRUME_GOLDEN_UPDATE:-0}" = 1 ]; then
    cp "$tmp/$stream" "$expected"
  fi
  ok=1
  if [ "$rc" -ne "$want_rc" ]; then
    echo "FAIL $name: exit status $rc, want $want_rc"
    ok=0
  fi
  if [ ! -f "$expected" ]; then
    echo "FAIL $name: $expected is missing (BRUME_GOLDEN_UPDATE=1 writes it)"
    ok=0
  elif ! diff -u "$expected" "$tmp/$stream" >"$tmp/diff"; then
    echo "FAIL $name: std$stream differs from $expected:"
    cat "$tmp/diff"
    ok=0
  fi
  if [ -s "$tmp/$other" ]; then
    echo "FAIL $name: unexpected std$other:"
    cat "$tmp/$other"
    ok=0
  fi
  if [ $ok = 1 ]; then echo "ok   $name"; else failed=$((failed + 1)); fi
}

for kind in pass fail; do
  if [ $kind = pass ]; then want=0 stream=out; else want=1 stream=err; fi
  for conf in "$kind"/*.conf; do
    [ -e "$conf" ] || continue
    base=${conf%.conf}
    args=
    if [ -f "$base.args" ]; then args=$(cat "$base.args"); fi
    # $args is split on blanks on purpose, but not globbed ("[::1]:0").
    set -f
    # shellcheck disable=SC2086
    check "$base" $want "$base.$stream" $stream -- --check-config --config "$conf" $args
    set +f
  done
done
check help 0 help.out out -- --help

echo "$((total - failed)) of $total golden cases passed"
[ $failed = 0 ]
