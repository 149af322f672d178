/* The admission engine (counting/engine.c) in one process against a real etcd: grants from
 * blocks grown in etcd, the account and reserved limits with their throttle reasons, two engines
 * (two daemons) sharing one limit, shrinking with hysteresis, tokens taken back at their
 * deadline, the scaling bucket and upgrades, and a lease that is not healthy; and GetState's
 * figures as gauges on /metrics (counting/state_metrics). The three-process
 * tests are in test_counting_cluster.c. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "clock.h"
#include "engine.h"
#include "etcd.h"
#include "etcd_server.h"
#include "holdings.h"
#include "limits_store.h"
#include "proc.h"
#include "state_metrics.h"

#define ROOT "/t/"

static brume_test_etcd *server;
static brume_etcd *etcd;
static brume_limits_store *limits;
static brume_workq *wq;

/* A daemon: an engine with its own lease, whose health the test switches. */
typedef struct fake_daemon {
  brume_engine *engine;
  int64_t lease;
  atomic_bool healthy;
} fake_daemon;

static int64_t lease_of(void *user) {
  return ((fake_daemon *)user)->lease;
}
static bool healthy_of(void *user) {
  return atomic_load(&((fake_daemon *)user)->healthy);
}

static void daemon_start_idle(fake_daemon *d, const char *id, int64_t shrink_after_ms,
                              int64_t records_idle_ms) {
  assert_int_equal(brume_etcd_lease_grant(etcd, 30, &d->lease, NULL, NULL), 0);
  atomic_store(&d->healthy, true);
  brume_err *err = NULL;
  brume_engine_opts o = {.etcd = etcd,
                         .root = ROOT,
                         .daemon_id = id,
                         .limits = limits,
                         .wq = wq,
                         .lease = lease_of,
                         .lease_healthy = healthy_of,
                         .lease_user = d,
                         .shrink_after_ms = shrink_after_ms,
                         .records_idle_ms = records_idle_ms};
  d->engine = brume_engine_new(&o, &err);
  if (d->engine == NULL) fail_msg("engine: %s", err->msg);
}

static void daemon_start(fake_daemon *d, const char *id, int64_t shrink_after_ms) {
  daemon_start_idle(d, id, shrink_after_ms, 0);
}

static void daemon_stop(fake_daemon *d) {
  brume_engine_free(d->engine);
  brume_etcd_lease_revoke(etcd, d->lease, NULL);
}

/* A blocking Acquire: the answer may come on the caller's thread or a work-queue thread. */
typedef struct answer {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  bool ok; /* granted or throttled: res is set */
  brume_acquire_result res;
  brume_status code;
  char msg[512];
} answer;

static void on_done(void *user, const brume_acquire_result *res, const brume_err *err) {
  answer *a = user;
  pthread_mutex_lock(&a->mu);
  a->ok = res != NULL;
  if (res) a->res = *res;
  if (err) {
    a->code = err->code;
    snprintf(a->msg, sizeof(a->msg), "%s", err->msg);
  }
  a->done = true;
  pthread_cond_signal(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

static answer acquire_mo(fake_daemon *d, const char *account, const char *function,
                         const char *qualifier, brume_token_kind kind, uint32_t hold_ms,
                         const char *upgrade, bool memory_only) {
  answer a = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
  brume_acquire_req q = {.account_id = account,
                         .function_name = function,
                         .qualifier = qualifier,
                         .caller_id = "test",
                         .kind = kind,
                         .hold_ms = hold_ms,
                         .upgrade_token = upgrade,
                         .memory_only = memory_only};
  brume_engine_acquire(d->engine, &q, on_done, &a);
  pthread_mutex_lock(&a.mu);
  while (!a.done) pthread_cond_wait(&a.cv, &a.mu);
  pthread_mutex_unlock(&a.mu);
  return a;
}

static answer acquire_q(fake_daemon *d, const char *account, const char *function,
                        const char *qualifier, brume_token_kind kind, uint32_t hold_ms,
                        const char *upgrade) {
  return acquire_mo(d, account, function, qualifier, kind, hold_ms, upgrade, false);
}

static answer acquire_full(fake_daemon *d, const char *account, const char *function,
                           brume_token_kind kind, uint32_t hold_ms, const char *upgrade) {
  return acquire_q(d, account, function, NULL, kind, hold_ms, upgrade);
}

static answer acquire(fake_daemon *d, const char *account, const char *function,
                      brume_token_kind kind) {
  return acquire_full(d, account, function, kind, 0, NULL);
}

/* Acquires and asserts a grant; the token goes into tok. */
static void grant(fake_daemon *d, const char *account, const char *function, brume_token_kind kind,
                  char *tok) {
  answer a = acquire(d, account, function, kind);
  if (!a.ok) fail_msg("acquire %s/%s: error %d: %s", account, function, (int)a.code, a.msg);
  if (!a.res.granted)
    fail_msg("acquire %s/%s: throttled with reason %d", account, function, (int)a.res.reason);
  strcpy(tok, a.res.token);
}

static void release(fake_daemon *d, const char *tok, bool want_held) {
  bool held = !want_held;
  brume_err *err = NULL;
  if (brume_engine_release(d->engine, tok, &held, &err) < 0) fail_msg("release: %s", err->msg);
  assert_int_equal(held, want_held);
}

/* Writes a limits key and waits until the store applied it. */
static void put_limits(const char *key, const char *json) {
  char full[512];
  snprintf(full, sizeof(full), ROOT "limits/%s", key);
  int64_t rev = 0;
  assert_int_equal(brume_etcd_put(etcd, full, json, strlen(json), 0, &rev, NULL), 0);
  for (int i = 0; i < 500 && brume_limits_store_revision(limits) < rev; i++) usleep(10000);
  assert_true(brume_limits_store_revision(limits) >= rev);
}

static uint64_t blocks_sum(const char *prefix) {
  uint64_t sum = 0;
  char full[512];
  snprintf(full, sizeof(full), ROOT "%s", prefix);
  assert_int_equal(brume_holdings_sum(etcd, full, &sum, NULL, NULL), 0);
  return sum;
}

static int group_setup(void **state) {
  (void)state;
  if (brume_test_etcd_open(&server, &etcd) != 0) return -1;
  brume_err *err = NULL;
  limits = brume_limits_store_start(etcd, ROOT, NULL, NULL, &err);
  if (limits == NULL) {
    fprintf(stderr, "limits store: %s\n", err->msg);
    return -1;
  }
  wq = brume_workq_new(4);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  brume_workq_free(wq);
  brume_limits_store_stop(limits);
  brume_test_etcd_close(server, etcd);
  return 0;
}

/* The account limit holds (the 101st is throttled with the account's reason), the block in etcd
 * covers every grant, and releasing frees room again. */
static void test_account_limit(void **state) {
  (void)state;
  fake_daemon d;
  daemon_start(&d, "d1", 60000);
  put_limits("account/a1", "{\"concurrency_limit\": 100}");
  static char toks[100][BRUME_TOKEN_STRING_MAX];
  for (int i = 0; i < 100; i++) grant(&d, "a1", "f", BRUME_TOKEN_WARM_ENVIRONMENT, toks[i]);
  answer a = acquire(&d, "a1", "f", BRUME_TOKEN_WARM_ENVIRONMENT);
  assert_true(a.ok);
  assert_false(a.res.granted);
  assert_int_equal(a.res.reason, BRUME_THROTTLE_ACCOUNT);
  assert_int_equal(blocks_sum("count/a1/unreserved/"), 100);
  assert_int_equal(brume_engine_tokens_held(d.engine), 100);
  release(&d, toks[0], true);
  release(&d, toks[0], false); /* twice: not held any more */
  grant(&d, "a1", "f", BRUME_TOKEN_WARM_ENVIRONMENT, toks[0]);
  for (int i = 0; i < 100; i++) release(&d, toks[i], true);
  assert_int_equal(brume_engine_tokens_held(d.engine), 0);
  daemon_stop(&d);
}

/* A reserved function has its own pool: it is throttled at R with the reserved reason, and an
 * unreserved flood cannot take its share (the account's pool is the limit minus R). */
static void test_reserved_share(void **state) {
  (void)state;
  fake_daemon d;
  daemon_start(&d, "d1", 60000);
  put_limits("account/a2", "{\"concurrency_limit\": 150}");
  put_limits("function/a2/res", "{\"reserved_concurrency\": 20}");
  static char toks[200][BRUME_TOKEN_STRING_MAX];
  int n = 0;
  for (;;) {
    answer a = acquire(&d, "a2", "flood", BRUME_TOKEN_WARM_ENVIRONMENT);
    assert_true(a.ok);
    if (!a.res.granted) {
      assert_int_equal(a.res.reason, BRUME_THROTTLE_ACCOUNT);
      break;
    }
    strcpy(toks[n++], a.res.token);
    assert_true(n <= 130);
  }
  assert_int_equal(n, 130);
  for (int i = 0; i < 20; i++) grant(&d, "a2", "res", BRUME_TOKEN_WARM_ENVIRONMENT, toks[n++]);
  answer a = acquire(&d, "a2", "res", BRUME_TOKEN_WARM_ENVIRONMENT);
  assert_false(a.res.granted);
  assert_int_equal(a.res.reason, BRUME_THROTTLE_RESERVED);
  assert_int_equal(blocks_sum("count/a2/fn/res/"), 20);

  brume_engine_account_state as;
  brume_engine_function_state fs;
  brume_err *err = NULL;
  assert_int_equal(brume_engine_state(d.engine, "a2", "res", &as, &fs, &err), 0);
  assert_int_equal(as.concurrency_limit, 150);
  assert_int_equal(as.unreserved_limit, 130);
  assert_int_equal(as.reserved_total, 20);
  assert_int_equal(as.in_use, 150);
  assert_int_equal(as.cluster_held, 150);
  assert_true(fs.reserved);
  assert_int_equal(fs.reserved_concurrency, 20);
  assert_int_equal(fs.in_use, 20);
  assert_int_equal(fs.held, 20);
  for (int i = 0; i < n; i++) release(&d, toks[i], true);
  daemon_stop(&d);
}

/* memory_only (AcquireBatch's): a request that would wait for etcd is answered ABORTED at once;
 * the grow it needed runs all the same, sized for the request turned away as if it had waited,
 * so that when it comes back memory answers it. */
static void test_memory_only(void **state) {
  (void)state;
  fake_daemon d;
  daemon_start(&d, "d1", 60000);
  answer a = acquire_mo(&d, "a9", "f", NULL, BRUME_TOKEN_WARM_ENVIRONMENT, 0, NULL, true);
  assert_false(a.ok);
  assert_int_equal(a.code, BRUME_ABORTED);
  assert_int_equal(brume_engine_tokens_held(d.engine), 0);
  /* One request turned away: the grow sized itself for 1 and a quarter of it (at least 1). */
  long long end = brume_test_now_ms() + 10000;
  while (blocks_sum("count/a9/unreserved/") < 2 && brume_test_now_ms() < end) usleep(2000);
  assert_int_equal(blocks_sum("count/a9/unreserved/"), 2);
  /* Sent again once the grow has landed in memory too (a request turned away in between would
   * only count for the next grow). */
  char toks[2][BRUME_TOKEN_STRING_MAX];
  for (;; usleep(2000)) {
    a = acquire_mo(&d, "a9", "f", NULL, BRUME_TOKEN_WARM_ENVIRONMENT, 0, NULL, true);
    if (a.ok && a.res.granted) break;
    assert_int_equal(a.code, BRUME_ABORTED);
    if (brume_test_now_ms() > end) fail_msg("the grow for a memory_only request never landed");
  }
  strcpy(toks[0], a.res.token);
  a = acquire_mo(&d, "a9", "f", NULL, BRUME_TOKEN_WARM_ENVIRONMENT, 0, NULL, true);
  if (!a.ok || !a.res.granted) fail_msg("from the block: %d %s", (int)a.code, a.msg);
  strcpy(toks[1], a.res.token);
  /* The third needs the block to grow again. */
  a = acquire_mo(&d, "a9", "f", NULL, BRUME_TOKEN_WARM_ENVIRONMENT, 0, NULL, true);
  assert_int_equal(a.code, BRUME_ABORTED);
  for (int i = 0; i < 2; i++) release(&d, toks[i], true);
  daemon_stop(&d);
}

/* Two daemons share one limit: together they never hold more; when one stops using its block,
 * it shrinks after shrink_after_ms and the other can take the whole limit. */
static void test_two_daemons_share(void **state) {
  (void)state;
  fake_daemon d1, d2;
  daemon_start(&d1, "d1", 300);
  daemon_start(&d2, "d2", 300);
  put_limits("account/a3", "{\"concurrency_limit\": 120}");
  static char t1[120][BRUME_TOKEN_STRING_MAX], t2[120][BRUME_TOKEN_STRING_MAX];
  for (int i = 0; i < 70; i++) grant(&d1, "a3", "f", BRUME_TOKEN_WARM_ENVIRONMENT, t1[i]);
  int n2 = 0;
  for (;;) {
    answer a = acquire(&d2, "a3", "f", BRUME_TOKEN_WARM_ENVIRONMENT);
    assert_true(a.ok);
    if (!a.res.granted) break;
    strcpy(t2[n2++], a.res.token);
    assert_true(n2 <= 120);
  }
  /* d1 may hold up to a quarter more than it uses; what is left is d2's. */
  assert_true(n2 >= 120 - 70 - 70 / 4 - 1);
  assert_true(n2 <= 50);
  assert_true(blocks_sum("count/a3/unreserved/") <= 120);
  for (int i = 0; i < 70; i++) release(&d1, t1[i], true);
  /* d1's block shrinks to 0 after 300 ms without use; then d2 gets the rest. */
  double t0 = brume_test_now_ms();
  int got = n2;
  while (got < 120 && brume_test_now_ms() - t0 < 5000) {
    brume_engine_tick(d1.engine);
    brume_engine_tick(d2.engine);
    answer a = acquire(&d2, "a3", "f", BRUME_TOKEN_WARM_ENVIRONMENT);
    if (a.ok && a.res.granted)
      strcpy(t2[got++], a.res.token);
    else
      usleep(20000);
  }
  assert_int_equal(got, 120);
  assert_int_equal(blocks_sum("count/a3/unreserved/"), 120);
  for (int i = 0; i < got; i++) release(&d2, t2[i], true);
  daemon_stop(&d1);
  daemon_stop(&d2);
}

/* A token never released is taken back at its deadline, and frees its unit. */
static void test_deadline(void **state) {
  (void)state;
  fake_daemon d;
  daemon_start(&d, "d1", 60000);
  answer a = acquire_full(&d, "a4", "f", BRUME_TOKEN_WARM_ENVIRONMENT, 200, NULL);
  assert_true(a.ok && a.res.granted);
  int64_t left = a.res.token_deadline_unix_ms - brume_wall_ms();
  assert_true(left > 100 && left <= 200);
  brume_engine_tick(d.engine);
  assert_int_equal(brume_engine_tokens_held(d.engine), 1);
  usleep(250000);
  brume_engine_tick(d.engine);
  assert_int_equal(brume_engine_tokens_held(d.engine), 0);
  release(&d, a.res.token, false);
  brume_engine_account_state as;
  assert_int_equal(brume_engine_state(d.engine, "a4", NULL, &as, NULL, NULL), 0);
  assert_int_equal(as.in_use, 0);
  daemon_stop(&d);
}

/* The scaling bucket: the burst of new environments, then the scaling-rate throttle with a
 * retry hint; warm ones are not limited by it; an upgrade takes a bucket token. */
static void test_scaling_bucket(void **state) {
  (void)state;
  fake_daemon d;
  daemon_start(&d, "d1", 60000);
  put_limits("cluster", "{\"account_burst\": 5, \"account_refill_per_minute\": 60}");
  char tok[BRUME_TOKEN_STRING_MAX];
  for (int i = 0; i < 4; i++) {
    grant(&d, "a5", "f", BRUME_TOKEN_NEW_ENVIRONMENT, tok);
    release(&d, tok, true);
  }
  char warm[BRUME_TOKEN_STRING_MAX];
  grant(&d, "a5", "f", BRUME_TOKEN_WARM_ENVIRONMENT, warm);
  answer up = acquire_full(&d, "a5", "f", BRUME_TOKEN_NEW_ENVIRONMENT, 0, warm);
  assert_true(up.ok && up.res.granted);
  assert_string_equal(up.res.token, warm);
  answer a = acquire(&d, "a5", "f", BRUME_TOKEN_NEW_ENVIRONMENT);
  assert_true(a.ok);
  assert_false(a.res.granted);
  assert_int_equal(a.res.reason, BRUME_THROTTLE_SCALING_RATE);
  /* One token a second: the next is at most a second away. */
  assert_true(a.res.retry_after_ms >= 1 && a.res.retry_after_ms <= 1000);
  /* Upgrading it again is refused; warm grants go on. */
  answer again = acquire_full(&d, "a5", "f", BRUME_TOKEN_NEW_ENVIRONMENT, 0, warm);
  assert_false(again.ok);
  assert_int_equal(again.code, BRUME_FAILED_PRECONDITION);
  char w2[BRUME_TOKEN_STRING_MAX];
  grant(&d, "a5", "f", BRUME_TOKEN_WARM_ENVIRONMENT, w2);
  /* The refill brings the next cold start. */
  usleep((useconds_t)(a.res.retry_after_ms + 20) * 1000);
  grant(&d, "a5", "f", BRUME_TOKEN_NEW_ENVIRONMENT, tok);
  release(&d, tok, true);
  release(&d, warm, true);
  release(&d, w2, true);
  brume_engine_account_state as;
  assert_int_equal(brume_engine_state(d.engine, "a5", NULL, &as, NULL, NULL), 0);
  assert_true(as.has_scaling);
  assert_int_equal(as.scaling.capacity, 5);
  assert_int_equal(as.scaling.refill_tokens, 60);
  assert_int_equal(as.scaling.refill_interval_ms, 60000);
  char key[] = ROOT "limits/cluster";
  assert_int_equal(brume_etcd_delete(etcd, key, false, NULL, NULL), 0);
  daemon_stop(&d);
}

/* Provisioned concurrency is held cluster-wide like the other pools: two daemons together flag
 * exactly the qualifier's provisioned concurrency as provisioned (no bucket token); past it, cold
 * starts draw on the scaling bucket again, and are throttled when it is empty. */
static void test_provisioned_across_daemons(void **state) {
  (void)state;
  fake_daemon d1, d2;
  daemon_start(&d1, "d1", 60000);
  daemon_start(&d2, "d2", 60000);
  put_limits("cluster", "{\"account_burst\": 2, \"account_refill_per_minute\": 1}");
  put_limits("function/a7/f", "{\"provisioned\": {\"prod\": 3}}");
  fake_daemon *order[] = {&d1, &d1, &d2, &d2, &d2, &d2};
  int provisioned = 0, ordinary = 0, throttled = 0;
  static char toks[6][BRUME_TOKEN_STRING_MAX];
  fake_daemon *owner[6];
  int n = 0;
  for (int i = 0; i < 6; i++) {
    answer a = acquire_q(order[i], "a7", "f", "prod", BRUME_TOKEN_NEW_ENVIRONMENT, 0, NULL);
    if (!a.ok) fail_msg("acquire %d: error %d: %s", i, (int)a.code, a.msg);
    if (!a.res.granted) {
      assert_int_equal(a.res.reason, BRUME_THROTTLE_SCALING_RATE);
      throttled++;
      continue;
    }
    if (a.res.provisioned)
      provisioned++;
    else
      ordinary++;
    strcpy(toks[n], a.res.token);
    owner[n++] = order[i];
  }
  /* 3 within provisioned concurrency, the burst of 2 beyond it, then the scaling throttle. */
  assert_int_equal(provisioned, 3);
  assert_int_equal(ordinary, 2);
  assert_int_equal(throttled, 1);
  assert_int_equal(blocks_sum("provisioned/a7/f/prod/"), 3);
  /* Another qualifier has none: it draws on the (empty) bucket. */
  answer other = acquire_q(&d1, "a7", "f", "dev", BRUME_TOKEN_NEW_ENVIRONMENT, 0, NULL);
  assert_true(other.ok);
  assert_false(other.res.granted);
  for (int i = 0; i < n; i++) release(owner[i], toks[i], true);
  char key[] = ROOT "limits/cluster";
  assert_int_equal(brume_etcd_delete(etcd, key, false, NULL, NULL), 0);
  daemon_stop(&d1);
  daemon_stop(&d2);
}

/* Accounts and functions nothing holds are forgotten after records_idle_ms, but never while a
 * token, a block or a provisioned block is out; a new Acquire brings them back. */
static void test_idle_records_forgotten(void **state) {
  (void)state;
  fake_daemon d;
  daemon_start_idle(&d, "d1", 100, 300);
  put_limits("function/a8/p", "{\"provisioned\": {\"prod\": 2}}");
  char t1[BRUME_TOKEN_STRING_MAX], t2[BRUME_TOKEN_STRING_MAX];
  grant(&d, "a8", "f", BRUME_TOKEN_WARM_ENVIRONMENT, t1);
  answer a = acquire_q(&d, "a8", "p", "prod", BRUME_TOKEN_WARM_ENVIRONMENT, 0, NULL);
  assert_true(a.ok && a.res.granted && a.res.provisioned);
  strcpy(t2, a.res.token);
  assert_int_equal(brume_engine_records(d.engine), 3); /* a8, a8/f, a8/p */
  /* Held tokens keep their records, however long. */
  for (int i = 0; i < 8; i++) {
    usleep(100000);
    brume_engine_tick(d.engine);
  }
  assert_int_equal(brume_engine_records(d.engine), 3);
  release(&d, t1, true);
  release(&d, t2, true);
  /* Then the blocks shrink to 0 (shrink_after 100 ms) and the records go after 300 ms idle. */
  double t0 = brume_test_now_ms();
  while (brume_engine_records(d.engine) > 0 && brume_test_now_ms() - t0 < 5000) {
    usleep(50000);
    brume_engine_tick(d.engine);
  }
  assert_int_equal(brume_engine_records(d.engine), 0);
  assert_int_equal(blocks_sum("count/a8/"), 0);
  assert_int_equal(blocks_sum("provisioned/a8/"), 0);
  grant(&d, "a8", "f", BRUME_TOKEN_WARM_ENVIRONMENT, t1);
  release(&d, t1, true);
  daemon_stop(&d);
}

/* Asserts that text holds line as a whole line. */
static void assert_line(const char *text, const char *line) {
  size_t n = strlen(line);
  for (const char *p = text; (p = strstr(p, line)) != NULL; p += n)
    if ((p == text || p[-1] == '\n') && p[n] == '\n') return;
  fail_msg("/metrics lacks the line \"%s\":\n%s", line, text);
}

static void assert_linef(const char *text, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void assert_linef(const char *text, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  assert_line(text, line);
}

/* GetState's figures on /metrics (counting/state_metrics): every account and function with limits
 * or a record, with the very figures GetState answers; a function without reserved concurrency
 * has no reserved gauge; an account whose limits key goes leaves /metrics at the next scrape. */
static void test_state_metrics(void **state) {
  (void)state;
  fake_daemon d;
  daemon_start(&d, "d1", 60000);
  brume_metrics *reg = brume_metrics_new();
  brume_state_metrics *sm = brume_state_metrics_start(&(brume_state_metrics_opts){
      .metrics = reg, .engine = d.engine, .limits = limits, .etcd = etcd, .root = ROOT});
  /* No refill during the test: the bucket's level stays what GetState saw. */
  put_limits("cluster", "{\"account_burst\": 50, \"account_refill_per_minute\": 1}");
  put_limits("account/m1", "{\"concurrency_limit\": 200}");
  put_limits("function/m1/res", "{\"reserved_concurrency\": 10, \"provisioned\": {\"live\": 2}}");
  put_limits("function/m1/cfg", "{\"provisioned\": {\"v1\": 1}}");
  put_limits("account/m2", "{\"concurrency_limit\": 300}");
  static char toks[5][BRUME_TOKEN_STRING_MAX];
  for (int i = 0; i < 3; i++) grant(&d, "m1", "f", BRUME_TOKEN_WARM_ENVIRONMENT, toks[i]);
  grant(&d, "m1", "res", BRUME_TOKEN_WARM_ENVIRONMENT, toks[3]);
  grant(&d, "m1", "f", BRUME_TOKEN_NEW_ENVIRONMENT, toks[4]);

  brume_engine_account_state as;
  brume_engine_function_state rs, fs;
  assert_int_equal(brume_engine_state(d.engine, "m1", "res", &as, &rs, NULL), 0);
  assert_int_equal(brume_engine_state(d.engine, "m1", "f", &as, &fs, NULL), 0);
  assert_true(as.has_scaling && as.cluster_held > 0);
  char *text = brume_metrics_render(reg, NULL);
  assert_line(text, "brume_counting_account_concurrency_limit{account=\"m1\"} 200");
  assert_line(text, "brume_counting_account_unreserved_limit{account=\"m1\"} 190");
  assert_line(text, "brume_counting_account_reserved_concurrency{account=\"m1\"} 10");
  assert_line(text, "brume_counting_account_provisioned_concurrency{account=\"m1\"} 3");
  assert_line(text, "brume_counting_account_in_use{account=\"m1\"} 5");
  assert_linef(text, "brume_counting_account_held{account=\"m1\"} %u", as.held);
  assert_linef(text, "brume_counting_account_cluster_held{account=\"m1\"} %llu",
               (unsigned long long)as.cluster_held);
  assert_linef(text, "brume_counting_account_scaling_tokens{account=\"m1\"} %u", as.scaling.level);
  assert_line(text, "brume_counting_account_scaling_capacity{account=\"m1\"} 50");
  assert_true(as.scaling.level < 50);
  assert_line(text,
              "brume_counting_function_reserved_concurrency{account=\"m1\",function=\"res\"} 10");
  assert_line(text,
              "brume_counting_function_provisioned_concurrency{account=\"m1\",function=\"res\"} 2");
  assert_line(text, "brume_counting_function_in_use{account=\"m1\",function=\"res\"} 1");
  assert_linef(text, "brume_counting_function_held{account=\"m1\",function=\"res\"} %u", rs.held);
  assert_linef(text, "brume_counting_function_cluster_held{account=\"m1\",function=\"res\"} %llu",
               (unsigned long long)rs.cluster_held);
  assert_line(text, "brume_counting_function_in_use{account=\"m1\",function=\"f\"} 4");
  assert_line(text, "brume_counting_function_held{account=\"m1\",function=\"f\"} 0");
  assert_line(text,
              "brume_counting_function_provisioned_concurrency{account=\"m1\",function=\"cfg\"} 1");
  assert_line(text, "brume_counting_function_in_use{account=\"m1\",function=\"cfg\"} 0");
  assert_null(strstr(text, "function_reserved_concurrency{account=\"m1\",function=\"f\"}"));
  assert_null(strstr(text, "function_reserved_concurrency{account=\"m1\",function=\"cfg\"}"));
  assert_null(strstr(text, "brume_counting_function_scaling_tokens{"));
  assert_line(text, "brume_counting_account_concurrency_limit{account=\"m2\"} 300");
  assert_line(text, "brume_counting_account_in_use{account=\"m2\"} 0");
  free(text);

  /* m2's key goes: so does m2, from every gauge. */
  char key[] = ROOT "limits/account/m2";
  assert_int_equal(brume_etcd_delete(etcd, key, false, NULL, NULL), 0);
  brume_account_limits al = {.limit = 300};
  for (int i = 0; i < 500 && al.limit == 300; i++) {
    usleep(10000);
    brume_limits_store_account(limits, "m2", &al);
  }
  assert_int_equal(al.limit, BRUME_ACCOUNT_CONCURRENCY_DEFAULT);
  text = brume_metrics_render(reg, NULL);
  assert_null(strstr(text, "account=\"m2\""));
  assert_line(text, "brume_counting_account_in_use{account=\"m1\"} 5");
  free(text);

  for (int i = 0; i < 5; i++) release(&d, toks[i], true);
  brume_state_metrics_stop(sm);
  /* Stopped: the gauges are empty and nothing reads the engine any more. */
  text = brume_metrics_render(reg, NULL);
  assert_null(strstr(text, "account=\"m1\""));
  free(text);
  brume_metrics_free(reg);
  char cluster[] = ROOT "limits/cluster";
  assert_int_equal(brume_etcd_delete(etcd, cluster, false, NULL, NULL), 0);
  daemon_stop(&d);
}

/* Bad requests, another daemon's token, an upgrade of a token not held, and a lease that is not
 * healthy. */
static void test_errors(void **state) {
  (void)state;
  fake_daemon d;
  daemon_start(&d, "d1", 60000);
  answer a = acquire(&d, "", "f", BRUME_TOKEN_WARM_ENVIRONMENT);
  assert_false(a.ok);
  assert_int_equal(a.code, BRUME_INVALID_ARGUMENT);
  a = acquire(&d, "a6", "f/g", BRUME_TOKEN_WARM_ENVIRONMENT);
  assert_int_equal(a.code, BRUME_INVALID_ARGUMENT);
  a = acquire(&d, "a6", "f", (brume_token_kind)0);
  assert_int_equal(a.code, BRUME_INVALID_ARGUMENT);
  a = acquire_full(&d, "a6", "f", BRUME_TOKEN_NEW_ENVIRONMENT, 0, "d1.00000000000000aa");
  assert_int_equal(a.code, BRUME_NOT_FOUND);
  bool held;
  brume_err *err = NULL;
  assert_int_equal(brume_engine_release(d.engine, "other.00000000000000aa", &held, &err), -1);
  assert_int_equal(err->code, BRUME_NOT_FOUND);
  brume_err_clear(&err);
  assert_int_equal(brume_engine_release(d.engine, "junk", &held, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_clear(&err);

  atomic_store(&d.healthy, false);
  a = acquire(&d, "a6", "f", BRUME_TOKEN_WARM_ENVIRONMENT);
  assert_false(a.ok);
  assert_int_equal(a.code, BRUME_UNAVAILABLE);
  atomic_store(&d.healthy, true);
  char tok[BRUME_TOKEN_STRING_MAX];
  grant(&d, "a6", "f", BRUME_TOKEN_WARM_ENVIRONMENT, tok);
  release(&d, tok, true);
  daemon_stop(&d);
}

int main(void) {
  if (!brume_test_etcd_available()) {
    fprintf(stderr, "etcd is not installed (deploy/install-deps.sh installs it): skipping\n");
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_account_limit),
      cmocka_unit_test(test_reserved_share),
      cmocka_unit_test(test_memory_only),
      cmocka_unit_test(test_two_daemons_share),
      cmocka_unit_test(test_deadline),
      cmocka_unit_test(test_scaling_bucket),
      cmocka_unit_test(test_provisioned_across_daemons),
      cmocka_unit_test(test_idle_records_forgotten),
      cmocka_unit_test(test_state_metrics),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
