#!/usr/bin/env bash
# tests/cluster/test_cluster_faults.sh BUILD_DIR: issue 8's faults on one deploy/cluster.sh
# cluster (three worker hosts, three etcd members, two counting daemons, one placement daemon,
# two frontends, mutual TLS), on the layout of tests/cluster/test.conf. In order:
#   1. etcd: with one member stopped, invocations and cold starts work; with two stopped, a steady
#      load of warm invocations through both frontends goes on without one failure (static
#      stability), a cold start fails UNAVAILABLE, and all recovers once the members are back.
#   2. A worker host cut off (its link down): the invocations running on it fail with a clear
#      error within their deadline, the others succeed, new ones go to the other hosts, the
#      host leaves placement's list; restored, it comes back and destroys its stale sandboxes.
#   3. New environments across both counting daemons follow a burst, then +500/min on a scaled
#      clock. An account limit of LIMIT with 4 x LIMIT callers over both frontends (so both
#      counting daemons): at no instant do more than LIMIT invocations run on the three hosts
#      together, counted from the workers' own start and end of each run on the machine's clock;
#      the limit is reached. LIMIT is BRUME_FAULTS_LIMIT, issue 8's 50 (200 callers) by default
#      (docs/cluster.md, "The limit at 50"); a smaller one makes a quicker run.
#   4. Under that load, counting daemon 1 killed with -9: its blocks are on a lease of 10 s and
#      leave etcd no later than a witness lease granted at the kill for the TTL it had left
#      (so etcd's own lateness is told apart from Brume's), frontend 1 goes on through counting
#      daemon 2, which then grows into the room, and the limit still holds.
# Figures are printed as it goes. Exit 77 (skip) only when not root.
. "$(dirname "$0")/lib.bash" "$1"
limit=${BRUME_FAULTS_LIMIT:-50}
callers=$((4 * limit))

mono_us() { /usr/bin/python3 -c 'import time; print(int(time.monotonic() * 1e6))'; }
# now_us: the wall clock in microseconds, read without starting a process, so that a timestamp
# is taken as a poll answers even when the load makes processes slow to start.
now_us() { echo "${EPOCHREALTIME//[.,]/}"; }
# max_running FROM_US TO_US: the most invocations running at once, from the workers' logs, among
# those that started between FROM_US and TO_US (CLOCK_MONOTONIC, microseconds).
max_running() {
  cat "$home"/log/worker*.log | /usr/bin/python3 -c '
import re, sys
lo, hi = int(sys.argv[1]), int(sys.argv[2])
ev = []
for line in sys.stdin:
    if "msg=\"Invocation done.\"" not in line and "msg=Invocation done." not in line:
        continue
    m = re.search(r"start_mono_us=(\d+) end_mono_us=(\d+)", line)
    if m and lo <= int(m.group(1)) <= hi:
        ev += [(int(m.group(1)), 1), (int(m.group(2)), -1)]
ev.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same microsecond
run = peak = 0
for _, d in ev:
    run += d
    peak = max(peak, run)
print(peak, len(ev) // 2)' "$1" "$2"
}
worker_url() { echo "http://$subnet.$((worker_base + $1)):$http_port/metrics"; }
counting_url() { echo "http://$subnet.${counting_hosts[$(($1 - 1))]}:$http_port/metrics"; }
placement_url="http://$subnet.${placement_hosts[0]}:$http_port/metrics"

cluster up 3 || fail "deploy/cluster.sh up 3 failed"
account=$(brume "$fe1" --json keys list | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
keys = d.get("keys", d) if isinstance(d, dict) else d
print(keys[0]["account_id"])') || fail "cannot read the admin key's account"
echo "account: $account"

# The functions: examples/hello-c, which waits {"sleep_ms": N} before it answers, for next to
# no CPU (a VM that runs costs CPU enough under TCG).
for f in steady cold-one cold-two longer slow; do
  brume "$fe1" function create "$f" --handler-mode runtime-api --handler hello \
    --zip "$build/examples/hello-c.zip" --timeout 20s >/dev/null || fail "create $f"
done
for _ in $(seq 100); do
  brume "$fe2" invoke steady --no-retry --payload '{}' >/dev/null 2>&1 && break
  sleep 0.2
done
brume "$fe2" invoke steady --no-retry --payload '{}' >/dev/null || fail "frontend 2 cannot run steady"

echo "== 1. etcd: one member stopped, then two"
# Six callers first, so that the four of the measured load always find a warm sandbox: without
# etcd no new one can start.
load --function steady --callers 6 --seconds 8 >"$home/warmup.json" || fail "the warm-up failed"
load --function steady --callers 4 --seconds 45 --calls "$home/etcd.calls" >"$home/etcd.json" &
load_pid=$!
sleep 3
cluster stop etcd1
echo "etcd1 stopped"
sleep 3
out=$(brume "$fe2" invoke cold-one --no-retry --payload '{}' 2>&1) || fail "a cold start with etcd1 stopped: $out"
echo "a cold start with one member stopped: ok"
cluster stop etcd2
t_two=$(mono_us)
echo "etcd2 stopped: no quorum"
# Past the lease TTL (10 s): every daemon's lease renewal has failed by now.
sleep 13
for c in 1 2; do
  v=$(metric "$(counting_url $c)" brume_counting_etcd_quorum_lost)
  [ "$v" = 1 ] || fail "counting$c does not say it holds through etcd's quorum loss (gauge: '$v')"
done
if out=$(brume "$fe1" invoke cold-two --no-retry --payload '{}' 2>&1); then
  fail "a cold start succeeded without an etcd quorum: $out"
fi
echo "a cold start without quorum: $out"
echo "$out" | grep -q UNAVAILABLE || fail "a cold start without quorum did not fail UNAVAILABLE: $out"
t_back=$(mono_us)
cluster start etcd1
cluster start etcd2
echo "etcd1 and etcd2 back after $(((t_back - t_two) / 1000000)) s without quorum"
ok=0
for _ in $(seq 60); do
  if brume "$fe1" invoke cold-two --no-retry --payload '{}' >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.5
done
[ $ok = 1 ] || fail "cold starts did not recover once etcd had its quorum back"
wait "$load_pid" || fail "the steady load failed to run"
cat "$home/etcd.json"
/usr/bin/python3 - "$home/etcd.calls" "$t_two" "$t_back" <<'EOF' || fail "the warm load did not go on through etcd's outage"
import sys
calls = [tuple(map(int, l.split())) for l in open(sys.argv[1])]
t_two, t_back = int(sys.argv[2]), int(sys.argv[3])
bad = [c for c in calls if c[3] != 0]
during = [c for c in calls if c[0] >= t_two and c[1] <= t_back]
print(f"steady load: {len(calls)} calls, {len(bad)} failed; {len(during)} while etcd had no quorum")
sys.exit(0 if not bad and len(during) >= 20 else 1)
EOF

echo "== 2. a worker host cut off, and back"
# Six invocations of 12 s, one new sandbox each: two on each host (placement spreads a version).
pids=()
for i in 1 2 3 4 5 6; do
  fe=$fe1; [ $((i % 2)) -eq 0 ] && fe=$fe2
  (
    s=$(mono_us)
    if brume "$fe" invoke longer --no-retry --payload '{"sleep_ms": 12000}' >"$home/cut$i.out" 2>&1; then rc=0; else rc=1; fi
    echo "$rc $(( ($(mono_us) - s) / 1000 ))" >"$home/cut$i.rc"
  ) &
  pids+=($!)
done
sleep 7
cluster cut worker3
t_cut=$(mono_us)
echo "worker3 cut off"
for p in "${pids[@]}"; do wait "$p" || true; done
failed=0
for i in 1 2 3 4 5 6; do
  read -r rc ms <"$home/cut$i.rc"
  echo "in flight $i: rc=$rc after ${ms} ms: $(tr '\n' ' ' <"$home/cut$i.out" | cut -c1-200)"
  if [ "$rc" != 0 ]; then
    failed=$((failed + 1))
    # The function's timeout is 20 s: the caller must know well within it and a margin.
    [ "$ms" -lt 35000 ] || fail "invocation $i on the cut host failed only after $ms ms"
    grep -qiE 'worker|host|sandbox' "$home/cut$i.out" || fail "invocation $i failed without saying why"
  fi
done
[ $failed -ge 1 ] && [ $failed -le 3 ] ||
  fail "expected the invocations on worker3 (1-3 of 6) to fail, $failed did"
worker3_listed() { [ -n "$(metric "$placement_url" 'brume_placement_host_vcpus{host="worker3"}')" ]; }
worker3_gone() { ! worker3_listed; }
# v: how many stale sandboxes worker3 says it destroyed.
stale_destroyed() {
  v=$(metric "$(worker_url 3)" 'brume_worker_sandboxes_destroyed_total{reason="stale_lease"}')
  [ -n "$v" ] && [ "${v%.*}" -ge 1 ]
}
# left: worker3's sandboxes not yet terminated. It destroys its stale ones one after another
# (each after its invocation, if one ran, and its shutdown hook): the count falls to 0 over time.
worker3_empty() {
  left=$(curl -sf "$(worker_url 3)" | awk '/^brume_worker_sandboxes\{/ && $1 !~ /terminated/ { n += $2 } END { print n + 0 }')
  [ "$left" = 0 ]
}
wait_for 20 worker3_gone ||
  fail "placement still lists worker3 $((($(mono_us) - t_cut) / 1000000)) s after the cut"
echo "worker3 is out of placement's hosts (looked $((($(mono_us) - t_cut) / 1000000)) s after the cut)"
for i in 1 2 3 4 5 6; do
  brume "$fe2" invoke longer --no-retry --payload '{}' >/dev/null ||
    fail "invocations after worker3 left do not go to the other hosts"
done
cluster restore worker3
t_restore=$(mono_us)
wait_for 30 stale_destroyed || fail "worker3 did not destroy its stale sandboxes after it came back"
wait_for 20 worker3_listed || fail "worker3 did not come back to placement's hosts"
wait_for 30 worker3_empty || fail "worker3 still has $left sandboxes 30 s after its first stale one went"
echo "worker3 back, and without sandboxes, after $((($(mono_us) - t_restore) / 1000000)) s: $v stale sandboxes destroyed"

echo "== 3. new environments: a burst of 5, then +500/min on a clock scaled by 0.05"
echo "   (one every 2.4 s: what these TCG hosts can boot); an account limit of $limit, $callers callers"
etcd_put limits/cluster '{"scaling_model": "account", "account_burst": 5,
  "account_refill_per_minute": 500, "time_scale": 0.05}' || fail "cannot set the scaling rate"
etcd_put "limits/account/$account" "{\"concurrency_limit\": $limit}" || fail "cannot set the limit"
new_grants() {
  local c sum=0 v
  for c in 1 2; do
    v=$(metric "$(counting_url $c)" 'brume_counting_grants_total{kind="new"}')
    sum=$((sum + ${v%.*}))
  done
  echo "$sum"
}
sleep 2
g0=$(new_grants)
t_load=$(mono_us)
# A throttled caller waits 1 s before it tries again: 150 callers retrying faster would take
# CPU the microVMs need here. A call may take 180 s: a cold start waits for a boot slot on its
# host, and one boot took 90 s in CI under 45 running microVMs. The load runs until the checks
# below are done (SIGTERM): how long they take depends on how fast these hosts boot.
load --function slow --callers "$callers" --seconds 900 --payload '{"sleep_ms": 3000}' \
  --throttle-pause-ms 1000 --deadline-ms 180000 --calls "$home/limit.calls" >"$home/limit.json" &
load_pid=$!
# load_pid is the subshell running the load function; cluster_load is its child.
stop_load() { pkill -TERM -P "$load_pid" 2>/dev/null || true; }
# A failure below must not leave the load running for its 900 s.
trap 'stop_load; cluster down >/dev/null 2>&1 || true' EXIT
# The new environments as they are granted, every 0.25 s, until the limit is near.
: >"$home/curve"
for _ in $(seq 800); do
  g=$(($(new_grants) - g0))
  echo "$(mono_us) $g" >>"$home/curve"
  [ "$g" -ge $((limit - 2)) ] && break
  sleep 0.25
done
/usr/bin/python3 - "$home/curve" "$limit" <<'EOF' || fail "the new environments did not follow the burst and the rate"
import sys
pts = [tuple(map(int, l.split())) for l in open(sys.argv[1])]
first = next((t for t, g in pts if g > 0), None)
if first is None:
    print("no new environment at all"); sys.exit(1)
burst, per_s = 5, 500 / 60 * 0.05
top = int(sys.argv[2]) - 2  # the limit binds beyond
bad = 0
for at in [t for t in range(5, 400, 10) if burst + per_s * t <= top]:
    got = max((g for t, g in pts if (t - first) / 1e6 <= at), default=0)
    want = burst + per_s * at
    # 5 %, or 1.5 environments: one for a token's discreteness, half for the 1 s a throttled
    # caller waits before it asks again (0.42 tokens come meanwhile).
    ok = abs(got - want) <= max(0.05 * want, 1.5)
    bad += not ok
    print(f"t={at:2d} s: {got} new environments, {want:.1f} expected ({'ok' if ok else 'OFF'})")
sys.exit(1 if bad else 0)
EOF
# Most invocations at once among those that started 12 to 4 s ago (a run lasts 3 s: they have
# all ended and been logged).
recent_peak() { max_running "$(($(mono_us) - 12000000))" "$(($(mono_us) - 4000000))"; }
# Up to 240 s: the last sandboxes may still be booting when the last new environment is granted,
# two at a time on each host (worker_max_boots), and one boot took up to 90 s in CI with 45
# microVMs running on these 2 cores. A run that gets there sooner goes on at once.
peak=0
for _ in $(seq 240); do
  read -r peak _ < <(recent_peak)
  [ "$peak" -ge $((limit - 2)) ] && break
  sleep 1
done
echo "before the kill: $peak running at once"
[ "$peak" -ge $((limit - 2)) ] || fail "the load never came near the limit of $limit (peak $peak)"
cluster kill counting1
t_kill=$(now_us)
echo "counting1 killed"
# Its blocks must leave etcd when its lease expires, not later: Brume must hold nothing beyond
# the lease. When that is depends on etcd too, whose leader revokes a lease when its lessor gets
# to it, over a second late when 50 TCG microVMs starve it. So the test reads the TTL the lease
# has left after the kill, then grants a witness lease of that TTL and 1 s more (etcd reads TTLs
# out in whole seconds, rounded down), which etcd must therefore revoke after counting1's: the
# blocks must leave no later than the witness's key does, and etcd's own lateness is printed
# apart (the witness's end past its TTL, counted from before the grant: at most that).
read -r lease left granted < <(etcd_lease_of "count/$account/" /counting1)
[ "$granted" = 10 ] || fail "counting1's blocks are not on a lease of 10 s (lease ${lease:-none}, TTL ${granted:-none})"
witness_ttl=$((left + 1))
t_grant=$(now_us)
witness=$(etcd_curl /v3/lease/grant "{\"TTL\": $witness_ttl}" | /usr/bin/python3 -c 'import sys, json; print(json.load(sys.stdin)["ID"])')
witness_key=$(b64 /brume-test/lease-witness)
etcd_curl /v3/kv/put "{\"key\": \"$witness_key\", \"value\": \"$(b64 w)\", \"lease\": \"$witness\"}" >/dev/null ||
  fail "could not write the witness key"
gone= witness_gone=
for _ in $(seq 120); do
  if [ -z "$gone" ] && keys=$(etcd_keys "count/$account/") && ! grep -q '/counting1$' <<<"$keys"; then
    gone=$(now_us)
  fi
  if [ -z "$witness_gone" ] && keys=$(etcd_curl /v3/kv/range "{\"key\": \"$witness_key\", \"keys_only\": true}") &&
    ! grep -q '"kvs"' <<<"$keys"; then
    witness_gone=$(now_us)
  fi
  [ -n "$gone" ] && [ -n "$witness_gone" ] && break
  sleep 0.25
done
[ -n "$gone" ] || fail "counting1's blocks are still in etcd 30 s after its death"
[ -n "$witness_gone" ] || fail "etcd kept a witness lease of $witness_ttl s for 30 s"
echo "counting1's blocks left etcd $(((gone - t_kill) / 1000)) ms after the kill; its lease had" \
  "$left s left of $granted s then; the witness lease of $witness_ttl s left" \
  "$(((witness_gone - t_kill) / 1000)) ms after the kill (etcd late by at most" \
  "$(((witness_gone - t_grant) / 1000 - witness_ttl * 1000)) ms)"
# 0.5 s: the polls of both keys, one after the other, and the order in which etcd revokes two
# leases that it found expired in one pass.
[ "$gone" -le $((witness_gone + 500000)) ] ||
  fail "counting1's blocks outlived its lease: they left etcd after the witness lease"
sleep 20
read -r after _ < <(recent_peak)
echo "with counting2 alone: $after running at once"
[ "$after" -ge $((limit - 2)) ] || fail "counting2 did not grow into counting1's room (peak $after)"
stop_load
wait "$load_pid" || fail "the load failed to run"
t_end=$(mono_us)
cat "$home/limit.json"
read -r peak n < <(max_running "$t_load" "$t_end")
echo "the limit: at most $peak of $n invocations ran at once (limit $limit)"
[ "$peak" -le "$limit" ] || fail "$peak invocations ran at once over a limit of $limit"
/usr/bin/python3 - "$home/limit.json" <<'EOF' || fail "the load's outcomes are wrong"
import json, sys
r = json.load(open(sys.argv[1]))
throttles = r["throttles"].get("ConcurrentInvocationLimitExceeded", 0)
print(f"ok {r['ok']}, throttled (limit) {throttles}, errors {r['errors']}")
ok = r["ok"] > 0 and throttles > 0 and all(n > 0 for n in r["ok_per_endpoint"].values())
sys.exit(0 if ok and not r["errors"] else 1)
EOF
cluster start counting1 || fail "counting1 did not start again"

echo "== down"
cluster down >/dev/null
echo "test_cluster_faults: passed"
