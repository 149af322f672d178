# tests/harness/quickstart_test.bash: sourced by the tests that run deploy/quickstart.sh
# (tests/e2e/test_quickstart.sh, tests/dashboard/run.sh); they set top and build first.
#
#   quickstart_on_free_ports NAME ID
#       points deploy/quickstart.sh at a fresh BRUME_HOME ($home too) and free ports for etcd, NATS
#       and every daemon, with daemon and host ids ID and the build $build, so that a test's
#       quickstart cannot disturb one already running here; on exit the quickstart is stopped
#       and $home removed. Defines fail MESSAGE: prints "NAME: FAILED: MESSAGE" and the end of
#       every daemon's log, and exits 1.

. "$top/tests/harness/free_port.bash"

quickstart_on_free_ports() {
  local d
  quickstart_test_name=$1
  export BRUME_HOME BRUME_QUICKSTART_ID=$2 BRUME_BUILD_DIR=$build
  BRUME_HOME=$(mktemp -d /tmp/brume-quickstart-XXXXXX)
  home=$BRUME_HOME
  free_port; export BRUME_ETCD_PORT=$port
  free_port; export BRUME_ETCD_PEER_PORT=$port
  free_port; export BRUME_NATS_PORT=$port
  free_port; export BRUME_NATS_HTTP_PORT=$port
  for d in COUNTING PLACEMENT WORKER FRONTEND; do
    free_port; export "BRUME_${d}_LISTEN=127.0.0.1:$port"
    free_port; export "BRUME_${d}_HTTP_LISTEN=127.0.0.1:$port"
  done
  trap quickstart_cleanup EXIT
}

quickstart_cleanup() {
  "$top/deploy/quickstart.sh" stop >/dev/null 2>&1 || true
  rm -rf "$home"
}

fail() {
  echo "$quickstart_test_name: FAILED: $*" >&2
  for f in "$home"/log/*.log; do echo "---- $f" >&2; tail -n 40 "$f" >&2; done
  exit 1
}
