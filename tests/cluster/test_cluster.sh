#!/usr/bin/env bash
# tests/cluster/test_cluster.sh BUILD_DIR: deploy/cluster.sh on this machine, on a bridge and
# namespaces of its own (tests/cluster/test.conf), so that it cannot disturb a cluster already
# running here: three worker hosts, three etcd members, three NATS servers, two counting daemons, one placement
# daemon and two frontends, all over mutual TLS. Passes when:
#   - a function created through frontend 1 answers through both frontends, and six concurrent
#     invocations split over the two frontends leave sandboxes on every worker host;
#   - a second function's code, uploaded through frontend 1, is copied to frontend 2, and with
#     frontend 1 stopped frontend 2 still cold-starts it (the worker fetches the code from it);
#   - an event queued through frontend 1 (NATS: three servers, three replicas, mutual TLS)
#     succeeds, as frontend 2 reads its state;
#   - a client without a certificate from the cluster's CA is refused;
#   - down leaves no daemon, namespace or bridge behind.
# Exit 77 (skip) only when not root: namespaces, a bridge and libvirtd need it.
. "$(dirname "$0")/lib.bash" "$1"

cluster up 3 || fail "deploy/cluster.sh up 3 failed"

echo "== one function through both frontends, sandboxes on every host"
brume "$fe1" function create hello-shell --handler-mode exec --handler handler.sh \
  --zip "$build/examples/hello-shell.zip" >/dev/null || fail "create through frontend 1"
# Frontend 2 learns the function from etcd and copies its code within code_replicate_period.
for _ in $(seq 50); do
  brume "$fe2" invoke hello-shell --payload '{"name": "fe2"}' 2>/dev/null | grep -q 'Hello, fe2!' && break
  sleep 0.2
done
brume "$fe2" invoke hello-shell --payload '{"name": "fe2"}' | grep -q 'Hello, fe2!' ||
  fail "frontend 2 did not run the function created through frontend 1"
pids=()
for i in 1 2 3 4 5 6; do
  fe=$fe1; [ $((i % 2)) -eq 0 ] && fe=$fe2
  brume "$fe" invoke hello-shell --payload "{\"name\": \"c$i\"}" >"$home/out$i" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent invocation failed: $(cat "$home"/out*)"; done
key=$(cat "$home/admin.key")
hosts=$(curl -sf -H "Authorization: Bearer $key" "http://$fe1:$http_port/api/hosts")
echo "$hosts" | /usr/bin/python3 -c '
import json, sys
hosts = json.load(sys.stdin)["hosts"]
print("sandboxes per host:", {h["host_id"]: h["sandboxes"] for h in hosts})
sys.exit(0 if len(hosts) == 3 and all(h["sandboxes"] >= 1 for h in hosts) else 1)' ||
  fail "the sandboxes did not spread over the three hosts: $hosts"

echo "== an event queued through frontend 1 runs, its state read through frontend 2 (NATS, 3 servers)"
queued=$(brume "$fe1" invoke hello-shell --async --payload '{"name": "queued"}' 2>&1) ||
  fail "an Event invocation through frontend 1: $queued"
event=$(echo "$queued" | sed -n 's/.*queued (status 202): event \(evt-[0-9a-f]*\).*/\1/p')
[ -n "$event" ] || fail "no event id in: $queued"
state=
for _ in $(seq 150); do
  state=$(brume "$fe2" --json events get "$event" 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])') || true
  [ "$state" = SUCCEEDED ] && break
  sleep 0.2
done
[ "$state" = SUCCEEDED ] || fail "event $event is $state through frontend 2, not SUCCEEDED"
echo "event $event: $state"

echo "== code uploaded through frontend 1 is served by frontend 2 once frontend 1 is down"
brume "$fe1" function create hello-c --handler-mode runtime-api --handler hello \
  --zip "$build/examples/hello-c.zip" >/dev/null || fail "create hello-c through frontend 1"
sha=$(sha256sum "$build/examples/hello-c.zip" | cut -c1-64)
for _ in $(seq 50); do [ -s "$home/frontend2/code/$sha.zip" ] && break; sleep 0.2; done
[ -s "$home/frontend2/code/$sha.zip" ] || fail "frontend 2 did not copy hello-c's code"
kill "$(cat "$home/run/frontend1.pid")"
for _ in $(seq 100); do kill -0 "$(cat "$home/run/frontend1.pid")" 2>/dev/null || break; sleep 0.1; done
out=$(brume "$fe2" invoke hello-c --payload '{"name": "replica"}') || fail "hello-c through frontend 2: $out"
echo "$out" | grep -q 'Hello, replica!' || fail "hello-c answered: $out"

echo "== a client without the cluster's certificate is refused"
if "$build/cli/brume" --endpoint "$fe2:$grpc_port" --api-key-file "$home/admin.key" \
  --timeout-ms 3000 function list >/dev/null 2>&1; then
  fail "frontend 2 answered a client without TLS"
fi

echo "== down removes everything"
cluster down >/dev/null
! ip netns list | grep -q "^$ns_prefix" || fail "namespaces left: $(ip netns list)"
! ip link show "$bridge" >/dev/null 2>&1 || fail "bridge $bridge left"
! pgrep -f "$home" >/dev/null || fail "processes left: $(pgrep -fa "$home")"
[ ! -e "$home" ] || fail "$home left"
echo "test_cluster: passed"
