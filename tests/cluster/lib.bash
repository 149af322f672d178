# tests/cluster/lib.bash: what the cluster tests share, sourced with the build directory as $1.
# Sets top, build, home (a fresh BRUME_CLUSTER_HOME), the layout of tests/cluster/test.conf
# (bridge, subnet, names of their own, so that a test never touches a cluster deployed here),
# fe1 and fe2 (the frontends' addresses) and a trap that takes the cluster down. Gives:
#   cluster ARGS...        deploy/cluster.sh ARGS... on that layout
#   fail MESSAGE           prints it and every log's end, keeps the logs in
#                          BUILD_DIR/test-artifacts/<test>/, exits 1
#   brume FRONTEND ARGS... the CLI through that frontend, with the cluster's TLS and admin key
#   load ARGS...           cluster_load with the cluster's TLS and admin key, both frontends
#   etcd_put KEY JSON      writes KEY (under /brume/) = JSON through etcd's gateway
#   etcd_keys PREFIX       the keys under /brume/PREFIX, one a line
#   etcd_lease_of PREFIX SUFFIX  "ID LEFT GRANTED": the lease of the first key under /brume/PREFIX
#                          that ends in SUFFIX, its TTL left and granted (s); "none -1 0" if none
#   metric URL SERIES      the value of SERIES (name{labels} as printed) at URL, or nothing
#   wait_for SECONDS CMD...  runs CMD every 0.5 s until it succeeds (0) or SECONDS pass (1)
# Exits 77 (skip) when not root: namespaces, a bridge and libvirtd need it.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$(cd "$1" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "$(basename "$0"): skipped: needs root"; exit 77; }
export BRUME_CLUSTER_CONF=$top/tests/cluster/test.conf BRUME_BUILD_DIR=$build
export BRUME_CLUSTER_HOME
BRUME_CLUSTER_HOME=$(mktemp -d /tmp/brume-cluster-test-XXXXXX)
home=$BRUME_CLUSTER_HOME
# shellcheck source=tests/cluster/test.conf
. "$BRUME_CLUSTER_CONF"
test_name=$(basename "$0" .sh)
cluster() { "$top/deploy/cluster.sh" "$@"; }
fail() {
  echo "$test_name: FAILED: $*" >&2
  for f in "$home"/log/*.log; do echo "---- $f" >&2; tail -n 25 "$f" >&2; done
  # down removes $home: the logs (and what the test wrote there) are kept for a post-mortem.
  mkdir -p "$build/test-artifacts/$test_name"
  cp -r "$home/log" "$home"/*.json "$home"/*.calls "$home"/curve "$build/test-artifacts/$test_name/" \
    2>/dev/null || true
  echo "$test_name: logs kept in $build/test-artifacts/$test_name" >&2
  exit 1
}
trap 'cluster down >/dev/null 2>&1 || true' EXIT
fe1=$subnet.${frontend_hosts[0]}
fe2=$subnet.${frontend_hosts[1]}
tls_args=(--tls-ca "$home/pki/ca.pem" --tls-cert "$home/pki/cli.pem" --tls-key "$home/pki/cli.key")
brume() {
  local fe=$1
  shift
  "$build/cli/brume" --endpoint "$fe:$grpc_port" "${tls_args[@]}" \
    --api-key-file "$home/admin.key" "$@"
}
load() {
  "$build/tests/cluster/cluster_load" --endpoints "$fe1:$grpc_port,$fe2:$grpc_port" \
    "${tls_args[@]}" --api-key-file "$home/admin.key" "$@"
}
etcd_curl() {
  local path=$1 body=$2 h
  for h in "${etcd_hosts[@]}"; do
    curl -sf --max-time 5 --cacert "$home/pki/ca.pem" --cert "$home/pki/cli.pem" \
      --key "$home/pki/cli.key" "https://$subnet.$h:$etcd_client_port$path" -d "$body" && return 0
  done
  return 1
}
b64() { printf '%s' "$1" | base64 -w0; }
etcd_put() {
  etcd_curl /v3/kv/put "{\"key\": \"$(b64 "/brume/$1")\", \"value\": \"$(b64 "$2")\"}" >/dev/null
}
# etcd_range PREFIX: etcd's JSON answer for the keys (without values) under /brume/PREFIX.
etcd_range() {
  local end
  end=$(printf '/brume/%s' "$1" | /usr/bin/python3 -c 'import sys, base64
p = sys.stdin.buffer.read(); print(base64.b64encode(p[:-1] + bytes([p[-1] + 1])).decode())')
  etcd_curl /v3/kv/range "{\"key\": \"$(b64 "/brume/$1")\", \"range_end\": \"$end\", \"keys_only\": true}"
}
etcd_keys() {
  etcd_range "$1" | /usr/bin/python3 -c 'import sys, json, base64
for kv in json.load(sys.stdin).get("kvs", []): print(base64.b64decode(kv["key"]).decode())'
}
etcd_lease_of() {
  local id
  id=$(etcd_range "$1" | /usr/bin/python3 -c 'import sys, json, base64
for kv in json.load(sys.stdin).get("kvs", []):
    if base64.b64decode(kv["key"]).decode().endswith(sys.argv[1]):
        print(kv.get("lease", "0")); break' "$2")
  [ -n "$id" ] && [ "$id" != 0 ] || { echo "none -1 0"; return; }
  etcd_curl /v3/lease/timetolive "{\"ID\": \"$id\"}" | /usr/bin/python3 -c 'import sys, json
r = json.load(sys.stdin); print(r.get("ID", "none"), r.get("TTL", -1), r.get("grantedTTL", 0))'
}
metric() {
  curl -sf --max-time 5 "$1" | awk -v s="$2" 'index($0, s " ") == 1 { print $2 }'
}
wait_for() {
  local tries=$(($1 * 2))
  shift
  for ((; tries > 0; tries--)); do
    "$@" && return 0
    sleep 0.5
  done
  "$@"
}
