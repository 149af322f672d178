/* counting/client_set against a real etcd and two brume-counting processes, a and b
 * (test_counting_client_set BRUME_COUNTING). The daemons are shared by the cases, which run in
 * order; each case has its own account. Tokens start with the daemon id that granted them, which
 * is how every case knows which daemon answered.
 *   a. no daemon registered (another prefix): UNAVAILABLE at once, on the calling thread.
 *   b. a set preferring a gets a's grants, one preferring b gets b's; releases go back to the
 *      daemon that granted; without a preference, callers spread over both daemons.
 *   c. a throttle is not sent on to the other daemon: over a limit of 3, three grants in all
 *      from two sets, every other request throttled once (the daemons' own throttle counters
 *      rise by exactly what the callers saw), and no failover.
 *   d. a stopped (SIGSTOP) preferred daemon: its batch call times out and the request is granted
 *      by the other.
 *   e. kill -9 of the preferred daemon: the next Acquire is granted by the other (a failover on
 *      /metrics) and a's tokens are no longer trusted (b's are); once a's registration is
 *      gone, a release or an upgrade of a's token is answered at once with "gone"; a
 *      restarted: requests return to it. */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "brume/counting.pb-c.h"
#include "client_set.h"
#include "clock.h"
#include "counting_proc.h"
#include "etcd.h"
#include "etcd_server.h"
#include "metrics.h"
#include "proc.h"
#include "rpc.h"
#include "testutil.h"

#define PREFIX "/brume"
#define LEASE_TTL_S 2
#define WAIT_MS 20000

enum { M_GET_STATE = 2 }; /* counting.proto's order */

static const char *counting_bin;
static char *tmpdir;
static brume_test_etcd *server;
static brume_etcd *etcd;
static brume_test_counting da, db;
static char addr_a[64], addr_b[64];
static bool case_passed;

/* ---- calls through a set, waited for ---- */

/* One answer: an error code (BRUME_OK for a response), granted, the token, the message, and
 * whether it came on the calling thread, before the call returned. */
typedef struct answer {
  pthread_mutex_t mu;
  pthread_cond_t cond;
  bool done, inline_answer;
  brume_status code;
  bool granted;
  int reason;
  char token[128];
  char msg[1024];
} answer;

static void answer_init(answer *a) {
  memset(a, 0, sizeof(*a));
  pthread_mutex_init(&a->mu, NULL);
  pthread_cond_init(&a->cond, NULL);
}

static void answer_set(answer *a, const Brume__AcquireResponse *acq, const brume_err *err) {
  pthread_mutex_lock(&a->mu);
  if (err) {
    a->code = err->code;
    snprintf(a->msg, sizeof(a->msg), "%s", err->msg);
  } else if (acq) {
    a->granted = acq->granted;
    a->reason = acq->throttle_reason;
    snprintf(a->token, sizeof(a->token), "%s", acq->token);
  }
  a->done = true;
  pthread_cond_broadcast(&a->cond);
  pthread_mutex_unlock(&a->mu);
}

static void on_acquire(void *user, const Brume__AcquireResponse *resp, const brume_err *err) {
  answer_set(user, resp, err);
}

static void on_release(void *user, const Brume__ReleaseResponse *resp, const brume_err *err) {
  (void)resp;
  answer_set(user, NULL, err);
}

/* Marks whether a was answered before the call returned, then waits for it. */
static void answer_wait(answer *a) {
  pthread_mutex_lock(&a->mu);
  a->inline_answer = a->done;
  while (!a->done) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_MS / 1000;
    if (pthread_cond_timedwait(&a->cond, &a->mu, &ts) != 0) break;
  }
  bool done = a->done;
  pthread_mutex_unlock(&a->mu);
  if (!done) fail_msg("no answer within %d ms", WAIT_MS);
  pthread_mutex_destroy(&a->mu);
  pthread_cond_destroy(&a->cond);
}

static void acquire(brume_counting_set *s, const char *account, const char *upgrade, answer *out) {
  Brume__FunctionRef fn = BRUME__FUNCTION_REF__INIT;
  fn.account_id = (char *)account;
  fn.function_name = "f";
  Brume__AcquireRequest req = BRUME__ACQUIRE_REQUEST__INIT;
  req.function = &fn;
  req.caller_id = "test/client-set";
  req.kind = upgrade ? BRUME__ACQUIRE_KIND__ACQUIRE_KIND_NEW_ENVIRONMENT
                     : BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT;
  req.upgrade_token = (char *)(upgrade ? upgrade : "");
  req.hold_ms = 120000;
  answer_init(out);
  brume_counting_set_acquire(s, &req, on_acquire, out);
  answer_wait(out);
}

static void release(brume_counting_set *s, const char *token, answer *out) {
  Brume__ReleaseRequest req = BRUME__RELEASE_REQUEST__INIT;
  req.token = (char *)token;
  req.caller_id = "test/client-set";
  answer_init(out);
  brume_counting_set_release(s, &req, on_release, out);
  answer_wait(out);
}

/* Whether token was granted by daemon d. */
static bool from(const answer *a, const brume_test_counting *d) {
  size_t n = strlen(d->id);
  return a->code == BRUME_OK && a->granted && strncmp(a->token, d->id, n) == 0 &&
         a->token[n] == '.';
}

/* A grant from d, or the test fails saying what came instead. */
static void expect_grant_from(const answer *a, const brume_test_counting *d, const char *what) {
  if (!from(a, d))
    fail_msg("%s: expected a grant from %s, got code %s granted %d token \"%s\" msg \"%s\"", what,
             d->id, brume_status_name(a->code), a->granted, a->token, a->msg);
}

static void expect_released(brume_counting_set *s, const char *token) {
  answer r;
  release(s, token, &r);
  if (r.code != BRUME_OK) fail_msg("release %s: %s %s", token, brume_status_name(r.code), r.msg);
}

/* ---- sets ---- */

static brume_counting_set *set_new(const char *prefix, const char *preferred, const char *caller_id,
                                   int64_t deadline_ms, brume_metrics *metrics) {
  brume_counting_set_opts o = {.etcd = etcd,
                               .prefix = prefix,
                               .preferred = preferred,
                               .caller_id = caller_id,
                               .client = {.rpc = {.default_deadline_ms = deadline_ms}},
                               .suspect_ms = 0, /* the default, 2 s */
                               .metrics = metrics,
                               .metrics_prefix = "brume_test"};
  brume_err *err = NULL;
  brume_counting_set *s = brume_counting_set_new(&o, &err);
  if (s == NULL) fail_msg("brume_counting_set_new: %s", err->msg);
  return s;
}

static brume_counting_set_stats stats_of(brume_counting_set *s) {
  brume_counting_set_stats st;
  brume_counting_set_stats_get(s, &st);
  return st;
}

/* Waits until s knows n daemons. */
static void wait_daemons(brume_counting_set *s, size_t n) {
  long long t0 = brume_test_now_ms();
  while (stats_of(s).daemons != n) {
    if (brume_test_now_ms() - t0 > WAIT_MS)
      fail_msg("the set knows %zu daemons after %d ms, not %zu", stats_of(s).daemons, WAIT_MS, n);
    usleep(20000);
  }
}

/* A metric's sum over both daemons' /metrics (a series not there yet counts 0). */
static long long both_metric(const char *name) {
  long long a = brume_test_metric(da.http_port, name), b = brume_test_metric(db.http_port, name);
  return (a > 0 ? a : 0) + (b > 0 ? b : 0);
}

/* One series of reg as rendered ("name value"), or -1. */
static long long rendered(brume_metrics *reg, const char *name) {
  brume_autofree char *text = brume_metrics_render(reg, NULL);
  size_t n = strlen(name);
  for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
    if (strncmp(p, name, n) == 0 && p[n] == ' ') return strtoll(p + n + 1, NULL, 10);
  return -1;
}

/* ---- fixtures ---- */

static int group_setup(void **state) {
  (void)state;
  if (brume_test_etcd_open(&server, &etcd) < 0) return -1;
  tmpdir = brume_test_tmpdir("client-set");
  if (brume_test_counting_init(&da, "cs-a", tmpdir) < 0 ||
      brume_test_counting_init(&db, "cs-b", tmpdir) < 0 ||
      brume_test_counting_start(&da, counting_bin, server->endpoint, PREFIX, LEASE_TTL_S) < 0 ||
      brume_test_counting_start(&db, counting_bin, server->endpoint, PREFIX, LEASE_TTL_S) < 0)
    return -1;
  snprintf(addr_a, sizeof(addr_a), "127.0.0.1:%d", da.port);
  snprintf(addr_b, sizeof(addr_b), "127.0.0.1:%d", db.port);
  fprintf(stderr, "test_client_set: etcd %s, %s on %d, %s on %d, logs in %s\n", server->endpoint,
          da.id, da.port, db.id, db.port, tmpdir);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  if (da.pid > 0) kill(da.pid, SIGCONT);
  brume_test_counting_stop(&da, SIGTERM);
  brume_test_counting_stop(&db, SIGTERM);
  brume_test_etcd_close(server, etcd);
  if (tmpdir) brume_test_rmtree(tmpdir);
  free(tmpdir);
  return 0;
}

static int case_setup(void **state) {
  (void)state;
  case_passed = false;
  return 0;
}

static int case_teardown(void **state) {
  (void)state;
  if (!case_passed) {
    brume_test_run("tail -n 40 '%s' '%s' >&2", da.log_path, db.log_path);
  }
  return 0;
}

/* ---- cases ---- */

static void test_no_daemon(void **state) {
  (void)state;
  brume_counting_set *s = set_new("/nothing-here", NULL, "frontend/t", 0, NULL);
  assert_int_equal(stats_of(s).daemons, 0);
  assert_null(brume_counting_set_current(s));
  answer a;
  acquire(s, "acct-none", NULL, &a);
  assert_true(a.inline_answer);
  assert_int_equal(a.code, BRUME_UNAVAILABLE);
  assert_non_null(strstr(a.msg, "no counting daemon is registered"));
  brume_counting_set_free(s);
  case_passed = true;
}

static void test_preferred(void **state) {
  (void)state;
  brume_counting_set *sa = set_new(PREFIX, addr_a, "frontend/t1", 0, NULL);
  brume_counting_set *sb = set_new(PREFIX, addr_b, "frontend/t1", 0, NULL);
  wait_daemons(sa, 2);
  wait_daemons(sb, 2);
  brume_autofree char *cur_a = brume_counting_set_current(sa);
  brume_autofree char *cur_b = brume_counting_set_current(sb);
  assert_string_equal(cur_a, addr_a);
  assert_string_equal(cur_b, addr_b);
  answer ga[4], gb[4];
  for (int i = 0; i < 4; i++) {
    acquire(sa, "acct-pref", NULL, &ga[i]);
    expect_grant_from(&ga[i], &da, "preferring a");
    acquire(sb, "acct-pref", NULL, &gb[i]);
    expect_grant_from(&gb[i], &db, "preferring b");
  }
  /* Each token goes back to its own daemon, whichever set releases it (the other daemon would
   * answer NOT_FOUND). */
  for (int i = 0; i < 4; i++) {
    expect_released(sb, ga[i].token);
    expect_released(sa, gb[i].token);
  }
  assert_int_equal(stats_of(sa).failovers, 0);
  brume_counting_set_free(sa);
  brume_counting_set_free(sb);

  /* No preference (or an address nobody registered): each caller ranks the daemons by a hash of
   * its id; across 16 callers both daemons come first for some. */
  bool first_a = false, first_b = false;
  for (int i = 0; i < 16; i++) {
    char caller[32];
    snprintf(caller, sizeof(caller), "frontend/fe-%d", i);
    brume_counting_set *s = set_new(PREFIX, i == 0 ? "127.0.0.1:1" : NULL, caller, 0, NULL);
    wait_daemons(s, 2);
    brume_autofree char *cur = brume_counting_set_current(s);
    first_a |= strcmp(cur, addr_a) == 0;
    first_b |= strcmp(cur, addr_b) == 0;
    if (i == 0) {
      answer g;
      acquire(s, "acct-pref", NULL, &g);
      if (!from(&g, &da) && !from(&g, &db)) fail_msg("no grant with an unknown preferred address");
      expect_released(s, g.token);
    }
    brume_counting_set_free(s);
  }
  assert_true(first_a && first_b);
  case_passed = true;
}

/* Polls GetState on d until account's concurrency_limit is limit. */
static void wait_limit(const brume_test_counting *d, const char *account, uint32_t limit) {
  char target[64];
  snprintf(target, sizeof(target), "127.0.0.1:%d", d->port);
  brume_err *err = NULL;
  brume_rpc_client *c = brume_rpc_client_new(target, NULL, &err);
  assert_non_null(c);
  long long t0 = brume_test_now_ms();
  for (;;) {
    Brume__GetStateRequest req = BRUME__GET_STATE_REQUEST__INIT;
    req.account_id = (char *)account;
    req.function_name = "";
    ProtobufCMessage *reply = NULL;
    bool ok = false;
    if (brume_rpc_unary(c, &brume__counting__descriptor, M_GET_STATE, &req.base, &reply, NULL,
                        &err) == 0) {
      Brume__GetStateResponse *st = (Brume__GetStateResponse *)reply;
      ok = st->account && st->account->concurrency_limit == limit;
      brume_proto_free(reply);
    }
    brume_err_clear(&err);
    if (ok) break;
    if (brume_test_now_ms() - t0 > WAIT_MS)
      fail_msg("%s does not show %s's limit %u after %d ms", d->id, account, limit, WAIT_MS);
    usleep(50000);
  }
  brume_rpc_client_free(c);
}

static void test_throttle_not_retried(void **state) {
  (void)state;
  const char *account = "acct-throttle";
  const char *value = "{\"concurrency_limit\":3}";
  brume_err *err = NULL;
  if (brume_etcd_put(etcd, PREFIX "/limits/account/acct-throttle", value, strlen(value), 0, NULL,
                     &err) < 0)
    fail_msg("put the limit: %s", err->msg);
  wait_limit(&da, account, 3);
  wait_limit(&db, account, 3);
  brume_counting_set *sa = set_new(PREFIX, addr_a, "frontend/t2", 0, NULL);
  brume_counting_set *sb = set_new(PREFIX, addr_b, "frontend/t2", 0, NULL);
  wait_daemons(sa, 2);
  wait_daemons(sb, 2);
  long long throttles0 = both_metric("brume_counting_throttles_total");
  /* Held, none released: 8 through each set, alternating, on a limit of 3. */
  answer g[16];
  int granted = 0, throttled = 0;
  for (int i = 0; i < 16; i++) {
    acquire(i % 2 ? sb : sa, account, NULL, &g[i]);
    if (g[i].code != BRUME_OK)
      fail_msg("request %d: %s %s", i, brume_status_name(g[i].code), g[i].msg);
    if (g[i].granted) {
      granted++;
      /* Never from the other daemon: a failover would show here too. */
      expect_grant_from(&g[i], i % 2 ? &db : &da, "a grant");
    } else {
      throttled++;
      assert_int_equal(
          g[i].reason,
          BRUME__THROTTLE_REASON__THROTTLE_REASON_CONCURRENT_INVOCATION_LIMIT_EXCEEDED);
    }
  }
  assert_int_equal(granted, 3);
  assert_int_equal(throttled, 13);
  /* Each throttle was decided once, by one daemon: sent on, it would count twice. */
  assert_int_equal(both_metric("brume_counting_throttles_total") - throttles0, 13);
  assert_int_equal(stats_of(sa).failovers + stats_of(sb).failovers, 0);
  for (int i = 0; i < 16; i++)
    if (g[i].granted) expect_released(i % 2 ? sa : sb, g[i].token);
  brume_counting_set_free(sa);
  brume_counting_set_free(sb);
  case_passed = true;
}

static void test_failover_on_timeout(void **state) {
  (void)state;
  brume_counting_set *s = set_new(PREFIX, addr_a, "frontend/t3", 1000, NULL);
  wait_daemons(s, 2);
  answer g;
  acquire(s, "acct-timeout", NULL, &g);
  expect_grant_from(&g, &da, "before SIGSTOP");
  expect_released(s, g.token);
  assert_int_equal(brume_test_sigstop(da.pid, 5000), 0);
  long long t0 = brume_test_now_ms();
  acquire(s, "acct-timeout", NULL, &g);
  long long took = brume_test_now_ms() - t0;
  assert_int_equal(kill(da.pid, SIGCONT), 0);
  expect_grant_from(&g, &db, "a stopped for the call's deadline");
  /* It waited for a's deadline (1 s) first. */
  assert_true(took >= 900);
  brume_counting_set_stats st = stats_of(s);
  assert_int_equal(st.failovers, 1);
  assert_int_equal(st.suspect, 1);
  expect_released(s, g.token);
  brume_counting_set_free(s);
  case_passed = true;
}

static void test_failover_on_kill(void **state) {
  (void)state;
  brume_metrics *reg = brume_metrics_new();
  brume_counting_set *s = set_new(PREFIX, addr_a, "frontend/t4", 0, reg);
  wait_daemons(s, 2);
  assert_int_equal(rendered(reg, "brume_test_counting_daemons"), 2);
  answer held;
  acquire(s, "acct-kill", NULL, &held);
  expect_grant_from(&held, &da, "before kill -9");
  assert_true(brume_counting_set_token_trusted(s, held.token));

  assert_true(brume_test_counting_stop(&da, SIGKILL) >= 0);
  answer g;
  acquire(s, "acct-kill", NULL, &g);
  expect_grant_from(&g, &db, "the first Acquire after kill -9");
  assert_int_equal(stats_of(s).failovers, 1);
  /* a failed: its token is no longer one to run with (frontend/invoke.c asks again); b's is. */
  assert_false(brume_counting_set_token_trusted(s, held.token));
  assert_true(brume_counting_set_token_trusted(s, g.token));
  assert_false(brume_counting_set_token_trusted(s, "no-dot"));
  assert_int_equal(rendered(reg, "brume_test_counting_failovers_total"), 1);
  /* a is suspect now: the next one goes to b without trying a first. */
  answer g2;
  acquire(s, "acct-kill", NULL, &g2);
  expect_grant_from(&g2, &db, "while a is suspect");
  assert_int_equal(stats_of(s).failovers, 1);
  expect_released(s, g.token);
  expect_released(s, g2.token);

  /* a's registration goes with its lease: then its tokens are answered at once. */
  wait_daemons(s, 1);
  assert_int_equal(rendered(reg, "brume_test_counting_daemons"), 1);
  assert_false(brume_counting_set_token_trusted(s, held.token));
  answer r;
  release(s, held.token, &r);
  assert_true(r.inline_answer);
  assert_int_equal(r.code, BRUME_UNAVAILABLE);
  char want[128];
  snprintf(want, sizeof(want), "counting daemon %s is gone", da.id);
  if (strstr(r.msg, want) == NULL) fail_msg("release of a dead daemon's token: \"%s\"", r.msg);
  answer up;
  acquire(s, "acct-kill", held.token, &up);
  assert_true(up.inline_answer);
  assert_int_equal(up.code, BRUME_UNAVAILABLE);
  assert_non_null(strstr(up.msg, want));

  /* a again, on the same id and port: once it is registered and no longer suspect, requests
   * return to it. */
  assert_int_equal(
      brume_test_counting_start(&da, counting_bin, server->endpoint, PREFIX, LEASE_TTL_S), 0);
  wait_daemons(s, 2);
  long long t0 = brume_test_now_ms();
  for (;;) {
    acquire(s, "acct-kill", NULL, &g);
    if (g.code != BRUME_OK || !g.granted)
      fail_msg("after a's restart: %s %s", brume_status_name(g.code), g.msg);
    expect_released(s, g.token);
    if (from(&g, &da)) break;
    if (brume_test_now_ms() - t0 > WAIT_MS) fail_msg("requests do not return to a");
    usleep(100000);
  }
  for (int i = 0; i < 5; i++) {
    acquire(s, "acct-kill", NULL, &g);
    expect_grant_from(&g, &da, "after a answered again");
    expect_released(s, g.token);
  }
  brume_counting_set_free(s);
  brume_metrics_free(reg);
  case_passed = true;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_counting_client_set BRUME_COUNTING\n");
    return 2;
  }
  if (!brume_test_etcd_available()) {
    fprintf(stderr, "test_counting_client_set: no etcd on PATH (deploy/install-deps.sh)\n");
    return 77;
  }
  counting_bin = argv[1];
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_no_daemon, case_setup, case_teardown),
      cmocka_unit_test_setup_teardown(test_preferred, case_setup, case_teardown),
      cmocka_unit_test_setup_teardown(test_throttle_not_retried, case_setup, case_teardown),
      cmocka_unit_test_setup_teardown(test_failover_on_timeout, case_setup, case_teardown),
      cmocka_unit_test_setup_teardown(test_failover_on_kill, case_setup, case_teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
