#!/usr/bin/env bash
# tests/dashboard/run.sh BUILD_DIR: the operator dashboard against a real single-node Brume.
# Starts deploy/quickstart.sh on free ports with a fresh BRUME_HOME (etcd, libvirtd, the four
# daemons, real microVMs), then runs, in order:
#   1. check_metrics.py: every daemon's /metrics parses with Prometheus's own text-format parser
#      (python3-prometheus-client) and follows the naming rules;
#   2. browser.test.mjs: headless Chromium (Debian's) driven by playwright-core: login, hosts,
#      functions, invocations through the CLI, the concurrency chart, a throttle after a
#      reserved-concurrency flood, a refused key, a daemon down; screenshots go to
#      BUILD_DIR/test-artifacts/dashboard/;
#   3. api.test.mjs: every JSON endpoint, signed in and not (401), and with counting and then
#      placement stopped (the answers name the daemon that is down), then restarted;
#   4. the daemons stopped, and their logs free of sanitizer reports (in the ASan build).
# Exit 77 (skip) only when not root: the worker needs libvirtd. A missing Chromium, Node.js or
# npm package fails the test: .ci/run installs them (deploy/install-deps.sh, then npm ci here).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$1" && pwd)
here=$top/tests/dashboard
[ "$(id -u)" -eq 0 ] || { echo "test_dashboard: skipped: needs root"; exit 77; }

# playwright-core, pinned by package-lock.json; it drives /usr/bin/chromium and downloads no
# browser of its own.
if [ ! -d "$here/node_modules/playwright-core" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

. "$top/tests/harness/quickstart_test.bash"
quickstart_on_free_ports test_dashboard dash$$
artifacts=$build/test-artifacts/dashboard
rm -rf "$artifacts" && mkdir -p "$artifacts"

"$top/deploy/quickstart.sh" >"$artifacts/quickstart.log" 2>&1 ||
  { cat "$artifacts/quickstart.log"; fail "the quickstart did not start"; }

# What the node tests need to know.
export BRUME_DASH_URL=http://$BRUME_FRONTEND_HTTP_LISTEN
export BRUME_ADMIN_KEY_FILE=$home/admin.key
export BRUME_CLI=$build/cli/brume
export BRUME_FRONTEND_ENDPOINT=$BRUME_FRONTEND_LISTEN
export BRUME_QUICKSTART=$top/deploy/quickstart.sh
export BRUME_RUN_DIR=$home/run
export BRUME_HOST_ID=$BRUME_QUICKSTART_ID
export BRUME_ARTIFACTS=$artifacts

echo "== /metrics of every daemon"
/usr/bin/python3 "$here/check_metrics.py" \
  "http://$BRUME_COUNTING_HTTP_LISTEN/metrics" "http://$BRUME_PLACEMENT_HTTP_LISTEN/metrics" \
  "http://$BRUME_WORKER_HTTP_LISTEN/metrics" "http://$BRUME_FRONTEND_HTTP_LISTEN/metrics" ||
  fail "a daemon's /metrics did not pass the Prometheus parser's checks"

echo "== the page in headless Chromium"
node "$here/browser.test.mjs" || fail "the browser test failed (screenshots in $artifacts)"

echo "== the JSON API"
node --test --test-concurrency=1 "$here/api.test.mjs" || fail "the JSON API tests failed"

# Stopped with SIGTERM, each daemon shuts down cleanly: in a sanitizer build (build-asan) a leak,
# a memory error or undefined behaviour shows in its log, and fails the test here.
"$top/deploy/quickstart.sh" stop >/dev/null
if grep -lE "ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:" "$home"/log/*.log; then
  fail "a daemon's log reports a sanitizer error (above: the log files)"
fi

echo "test_dashboard: passed; screenshots in $artifacts"
