#!/usr/bin/env bash
# tests/e2e/test_quickstart.sh BUILD_DIR: the README's first command, deploy/quickstart.sh, run
# twice against a fresh BRUME_HOME on free ports (so it cannot disturb a quickstart already
# running here), then stopped. Passes when the first run prints hello-c's answer to
# {"name": "Brume"}, the second run starts nothing twice and updates the examples instead of
# failing on them, the CLI lists both examples, the event the quickstart queued succeeded, and
# stop leaves no daemon running. Exit 77
# (skip) when not root: the worker needs libvirtd.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$1
[ "$(id -u)" -eq 0 ] || { echo "test_quickstart: skipped: needs root"; exit 77; }

. "$top/tests/harness/quickstart_test.bash"
quickstart_on_free_ports test_quickstart qs$$

out=$("$top/deploy/quickstart.sh" 2>&1) || { echo "$out"; fail "the first run exited non-zero"; }
echo "$out"
echo "$out" | grep -q '"message": *"Hello, Brume!"' || fail "the first run did not print hello-c's answer"
echo "$out" | grep -q "created hello-c" || fail "the first run did not create hello-c"

out=$("$top/deploy/quickstart.sh" 2>&1) || { echo "$out"; fail "the second run exited non-zero"; }
echo "$out"
echo "$out" | grep -q "updated hello-c" || fail "the second run did not update hello-c"
echo "$out" | grep -q '"message": *"Hello, Brume!"' || fail "the second run did not print the answer"
[ "$(pgrep -fc "daemon_id qs$$")" -eq 3 ] || fail "the second run started daemons twice"
[ "$(pgrep -fc "nats-server.*brume-qs$$")" -eq 1 ] || fail "the second run started NATS twice"

list=$("$build/cli/brume" --endpoint "$BRUME_FRONTEND_LISTEN" --api-key-file "$home/admin.key" function list)
echo "$list" | grep -q hello-c || fail "function list lacks hello-c"
echo "$list" | grep -q hello-shell || fail "function list lacks hello-shell"
shell=$("$build/cli/brume" --endpoint "$BRUME_FRONTEND_LISTEN" --api-key-file "$home/admin.key" \
  invoke hello-shell --payload '{"name": "shell"}')
echo "$shell" | grep -q "Hello, shell!" || fail "hello-shell answered: $shell"

# The asynchronous invocation the quickstart made ran, through NATS.
event=$(echo "$out" | sed -n 's/.*queued (status 202): event \(evt-[0-9a-f]*\).*/\1/p' | tail -1)
[ -n "$event" ] || fail "the quickstart queued no event"
state=
for _ in $(seq 100); do
  state=$("$build/cli/brume" --endpoint "$BRUME_FRONTEND_LISTEN" --api-key-file "$home/admin.key" \
    --json events get "$event" 2>/dev/null | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])') || true
  [ "$state" = SUCCEEDED ] && break
  sleep 0.2
done
[ "$state" = SUCCEEDED ] || fail "event $event is $state, not SUCCEEDED"

"$top/deploy/quickstart.sh" stop
! pgrep -f "qs$$" >/dev/null || fail "daemons still run after stop"
echo "test_quickstart: passed"
