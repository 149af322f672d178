/* The limits store (counting/limits_store.c) against a real etcd: defaults with nothing written,
 * a load at start, live changes with the account's aggregates following its functions, deletes
 * back to the defaults, malformed values ignored with a warning naming the key, the cluster
 * settings, on_change's arguments, no change lost between the initial read and the watch, a
 * config breaking the 100-unreserved rule applied with a warning, thousands of functions, and
 * etcd stopped or killed and restarted under a running store. Each test has its own root. */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "etcd.h"
#include "etcd_server.h"
#include "limits_store.h"
#include "proc.h"
#include "testutil.h"

#define WAIT_MS 20000

BRUME_TEST_ETCD_GROUP()

/* ---- Helpers ---- */

/* Writes key = value; returns the write's revision. */
static int64_t put(const char *key, const char *value) {
  int64_t rev = 0;
  brume_err *err = NULL;
  if (brume_etcd_put(etcd, key, value, strlen(value), 0, &rev, &err) < 0)
    fail_msg("put %s: %s", key, err->msg);
  return rev;
}

/* Deletes key in a txn, whose answer carries the revision a plain delete does not. */
static int64_t del(const char *key) {
  brume_etcd_op op = {.type = BRUME_ETCD_OP_DELETE, .key = key};
  brume_etcd_txn_req req = {.success = &op, .n_success = 1};
  brume_err *err = NULL;
  brume_etcd_txn_result *t = brume_etcd_txn(etcd, &req, &err);
  if (t == NULL) fail_msg("delete %s: %s", key, err->msg);
  int64_t rev = t->revision;
  brume_etcd_txn_result_free(t);
  return rev;
}

static void wait_revision(brume_limits_store *s, int64_t rev) {
  long long t0 = brume_test_now_ms();
  while (brume_limits_store_revision(s) < rev) {
    if (brume_test_now_ms() - t0 > WAIT_MS)
      fail_msg("the store is at revision %lld after %d ms, not %lld",
               (long long)brume_limits_store_revision(s), WAIT_MS, (long long)rev);
    usleep(2000);
  }
}

/* on_change's calls, in order. */
#define MAX_CALLS 64
typedef struct call {
  brume_limits_kind kind;
  char account[64]; /* "(null)" for NULL */
  char function[64];
} call;

typedef struct recorder {
  pthread_mutex_t mu;
  size_t n;
  call calls[MAX_CALLS];
  brume_limits_store *store; /* set after start: the callback looks up what it is told of */
  brume_account_limits seen; /* the account's limits as the callback saw them */
} recorder;

static void on_change(void *user, brume_limits_kind kind, const char *account,
                      const char *function) {
  recorder *r = user;
  pthread_mutex_lock(&r->mu);
  if (r->n < MAX_CALLS) {
    call *c = &r->calls[r->n];
    c->kind = kind;
    snprintf(c->account, sizeof(c->account), "%s", account ? account : "(null)");
    snprintf(c->function, sizeof(c->function), "%s", function ? function : "(null)");
  }
  r->n++;
  brume_limits_store *s = r->store;
  pthread_mutex_unlock(&r->mu);
  /* Outside the store's lock: a lookup from the callback must not deadlock. */
  if (s && account) brume_limits_store_account(s, account, &r->seen);
}

static void recorder_init(recorder *r) {
  memset(r, 0, sizeof(*r));
  pthread_mutex_init(&r->mu, NULL);
}

static size_t calls_of(recorder *r) {
  pthread_mutex_lock(&r->mu);
  size_t n = r->n;
  pthread_mutex_unlock(&r->mu);
  return n;
}

static void expect_call(recorder *r, size_t i, brume_limits_kind kind, const char *account,
                        const char *function) {
  pthread_mutex_lock(&r->mu);
  assert_true(i < r->n);
  call c = r->calls[i];
  pthread_mutex_unlock(&r->mu);
  assert_int_equal(c.kind, kind);
  assert_string_equal(c.account, account);
  assert_string_equal(c.function, function);
}

static brume_limits_store *start(const char *root, recorder *r) {
  brume_err *err = NULL;
  brume_limits_store *s = brume_limits_store_start(etcd, root, r ? on_change : NULL, r, &err);
  if (s == NULL) fail_msg("start %s: %s", root, err->msg);
  if (r) {
    pthread_mutex_lock(&r->mu);
    r->store = s;
    pthread_mutex_unlock(&r->mu);
  }
  return s;
}

static brume_account_limits account(brume_limits_store *s, const char *id) {
  brume_account_limits a;
  memset(&a, 0xff, sizeof(a));
  brume_limits_store_account(s, id, &a);
  return a;
}

static brume_function_limits function(brume_limits_store *s, const char *acct, const char *fn) {
  brume_function_limits f;
  memset(&f, 0xff, sizeof(f));
  brume_limits_store_function(s, acct, fn, &f);
  return f;
}

#define assert_account(s, id, l, r, p)              \
  do {                                              \
    brume_account_limits a_ = account(s, id);       \
    assert_int_equal(a_.limit, l);                  \
    assert_int_equal(a_.reserved_total, r);         \
    assert_int_equal(a_.unreserved_provisioned, p); \
  } while (0)

#define assert_function(s, acct, fn, res, r, p)       \
  do {                                                \
    brume_function_limits f_ = function(s, acct, fn); \
    assert_int_equal(f_.reserved, res);               \
    assert_int_equal(f_.reserved_concurrency, r);     \
    assert_int_equal(f_.provisioned, p);              \
  } while (0)

static void assert_bucket(brume_bucket_params p, uint32_t cap, uint32_t tokens, uint32_t interval,
                          double scale) {
  assert_int_equal(p.capacity, cap);
  assert_int_equal(p.refill_tokens, tokens);
  assert_int_equal(p.refill_interval_ms, interval);
  assert_true(p.time_scale == scale);
}

static void assert_default_cluster(brume_limits_store *s) {
  brume_cluster_limits c;
  brume_limits_store_cluster(s, &c);
  assert_int_equal(c.model, BRUME_SCALING_ACCOUNT);
  assert_bucket(c.account_bucket, 1000, 500, 60000, 1);
  assert_bucket(c.function_bucket, 1000, 1000, 10000, 1);
}

/* Captures what the process writes on stderr (the log) between begin and end, into a file. */
static int saved_stderr = -1;
static char capture_path[] = "/tmp/brume-limits-log-XXXXXX";

static void capture_begin(void) {
  int fd = mkstemp(capture_path);
  assert_true(fd >= 0);
  saved_stderr = dup(2);
  assert_true(saved_stderr >= 0);
  assert_int_equal(dup2(fd, 2), 2);
  close(fd);
}

/* Returns the log captured (caller frees), also copied to the real stderr. */
static char *capture_end(void) {
  assert_int_equal(dup2(saved_stderr, 2), 2);
  close(saved_stderr);
  size_t len = 0;
  char *log = (char *)brume_test_read_file(capture_path, &len);
  assert_non_null(log);
  log[len] = '\0';
  unlink(capture_path);
  strcpy(capture_path, "/tmp/brume-limits-log-XXXXXX");
  fputs(log, stderr);
  return log;
}

/* ---- Tests ---- */

static void test_defaults_and_arguments(void **state) {
  (void)state;
  brume_limits_store *s = start("/t1/", NULL);
  assert_true(brume_limits_store_revision(s) > 0);
  assert_default_cluster(s);
  assert_account(s, "acct", 1000, 0, 0);
  assert_function(s, "acct", "fn", false, 0, 0);
  assert_int_equal(brume_limits_store_provisioned(s, "acct", "fn", "1"), 0);
  brume_limits_store_stop(s);
  brume_limits_store_stop(NULL);

  const char *bad_roots[] = {"", "/t1", NULL};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(bad_roots); i++) {
    brume_err *err = NULL;
    assert_null(brume_limits_store_start(etcd, bad_roots[i], NULL, NULL, &err));
    assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
    brume_err_clear(&err);
  }
}

static void test_loaded_at_start(void **state) {
  (void)state;
  put("/t2/limits/cluster", "{\"scaling_model\": \"function\", \"function_burst\": 300}");
  put("/t2/limits/account/a1", "{\"concurrency_limit\": 3000}");
  put("/t2/limits/account/a2", "{}");
  put("/t2/limits/function/a1/res",
      "{\"reserved_concurrency\": 200, \"provisioned\": {\"1\": 50}}");
  put("/t2/limits/function/a1/off", "{\"reserved_concurrency\": 0}");
  put("/t2/limits/function/a1/shared",
      "{\"provisioned\": {\"1\": 10, \"live\": 20, \"$LATEST\": 5}}");
  put("/t2/limits/function/a3/plain", "{}");
  /* A neighbouring root is not read. */
  put("/t2x/limits/account/a1", "{\"concurrency_limit\": 7}");

  brume_limits_store *s = start("/t2/", NULL);
  brume_cluster_limits c;
  brume_limits_store_cluster(s, &c);
  assert_int_equal(c.model, BRUME_SCALING_FUNCTION);
  assert_bucket(c.account_bucket, 1000, 500, 60000, 1);
  assert_bucket(c.function_bucket, 300, 1000, 10000, 1);
  assert_account(s, "a1", 3000, 200, 35);
  assert_account(s, "a2", 1000, 0, 0);
  assert_account(s, "a3", 1000, 0, 0);
  assert_function(s, "a1", "res", true, 200, 50);
  assert_function(s, "a1", "off", true, 0, 0);
  assert_function(s, "a1", "shared", false, 0, 35);
  assert_function(s, "a3", "plain", false, 0, 0);
  assert_function(s, "a2", "res", false, 0, 0);
  assert_int_equal(brume_limits_store_provisioned(s, "a1", "shared", "1"), 10);
  assert_int_equal(brume_limits_store_provisioned(s, "a1", "shared", "live"), 20);
  assert_int_equal(brume_limits_store_provisioned(s, "a1", "shared", "$LATEST"), 5);
  assert_int_equal(brume_limits_store_provisioned(s, "a1", "shared", "2"), 0);
  assert_int_equal(brume_limits_store_provisioned(s, "a1", "res", "1"), 50);
  brume_limits_store_stop(s);
}

static void test_live_changes_and_on_change(void **state) {
  (void)state;
  recorder r;
  recorder_init(&r);
  brume_limits_store *s = start("/t3/", &r);
  assert_int_equal(calls_of(&r), 0);

  wait_revision(s, put("/t3/limits/account/a", "{\"concurrency_limit\": 2000}"));
  assert_account(s, "a", 2000, 0, 0);
  expect_call(&r, 0, BRUME_LIMITS_ACCOUNT, "a", "(null)");
  assert_int_equal(r.seen.limit, 2000); /* applied before on_change is called */

  /* Functions add up into their account. */
  wait_revision(s, put("/t3/limits/function/a/f1", "{\"reserved_concurrency\": 100}"));
  assert_account(s, "a", 2000, 100, 0);
  assert_function(s, "a", "f1", true, 100, 0);
  expect_call(&r, 1, BRUME_LIMITS_FUNCTION, "a", "f1");
  assert_int_equal(r.seen.reserved_total, 100);
  wait_revision(s, put("/t3/limits/function/a/f2", "{\"provisioned\": {\"1\": 10, \"prod\": 5}}"));
  assert_account(s, "a", 2000, 100, 15);
  assert_function(s, "a", "f2", false, 0, 15);
  wait_revision(s, put("/t3/limits/function/a/f3",
                       "{\"reserved_concurrency\": 300, \"provisioned\": {\"prod\": 40}}"));
  assert_account(s, "a", 2000, 400, 15);
  expect_call(&r, 3, BRUME_LIMITS_FUNCTION, "a", "f3");

  /* f2 takes reserved concurrency: its provisioned concurrency leaves the unreserved pool. */
  wait_revision(s, put("/t3/limits/function/a/f2",
                       "{\"reserved_concurrency\": 50, \"provisioned\": {\"prod\": 20}}"));
  assert_account(s, "a", 2000, 450, 0);
  assert_function(s, "a", "f2", true, 50, 20);
  assert_int_equal(brume_limits_store_provisioned(s, "a", "f2", "prod"), 20);
  assert_int_equal(brume_limits_store_provisioned(s, "a", "f2", "1"), 0);
  /* ... and gives it up again. */
  wait_revision(s, put("/t3/limits/function/a/f2", "{\"provisioned\": {\"prod\": 30}}"));
  assert_account(s, "a", 2000, 400, 30);
  assert_function(s, "a", "f2", false, 0, 30);
  /* Another account is untouched. */
  assert_account(s, "b", 1000, 0, 0);

  /* Deletes return the defaults. */
  wait_revision(s, del("/t3/limits/function/a/f3"));
  assert_function(s, "a", "f3", false, 0, 0);
  assert_int_equal(brume_limits_store_provisioned(s, "a", "f3", "prod"), 0);
  assert_account(s, "a", 2000, 100, 30);
  expect_call(&r, 6, BRUME_LIMITS_FUNCTION, "a", "f3");
  wait_revision(s, del("/t3/limits/account/a"));
  assert_account(s, "a", 1000, 100, 30);
  expect_call(&r, 7, BRUME_LIMITS_ACCOUNT, "a", "(null)");
  wait_revision(s, del("/t3/limits/function/a/f1"));
  wait_revision(s, del("/t3/limits/function/a/f2"));
  assert_account(s, "a", 1000, 0, 0);
  assert_function(s, "a", "f1", false, 0, 0);
  /* An account configured again after it was forgotten. */
  wait_revision(s, put("/t3/limits/account/a", "{\"concurrency_limit\": 1500}"));
  assert_account(s, "a", 1500, 0, 0);

  /* Several keys in one txn: all applied, one call each, then the revision. */
  brume_etcd_op ops[] = {
      {.type = BRUME_ETCD_OP_PUT,
       .key = "/t3/limits/function/c/x",
       .value = "{\"reserved_concurrency\": 7}",
       .value_len = 27},
      {.type = BRUME_ETCD_OP_PUT,
       .key = "/t3/limits/function/c/y",
       .value = "{\"reserved_concurrency\": 8}",
       .value_len = 27},
  };
  size_t before = calls_of(&r);
  brume_etcd_txn_result *t =
      brume_etcd_txn(etcd, &(brume_etcd_txn_req){.success = ops, .n_success = 2}, NULL);
  assert_non_null(t);
  wait_revision(s, t->revision);
  brume_etcd_txn_result_free(t);
  assert_int_equal(calls_of(&r), before + 2);
  assert_account(s, "c", 1000, 15, 0);
  assert_int_equal(calls_of(&r), 13);
  brume_limits_store_stop(s);
}

static void test_cluster_settings(void **state) {
  (void)state;
  recorder r;
  recorder_init(&r);
  brume_limits_store *s = start("/t4/", &r);
  wait_revision(s, put("/t4/limits/cluster",
                       "{\"scaling_model\": \"function\", \"account_burst\": 3000, "
                       "\"account_refill_per_minute\": 600, \"function_burst\": 500, "
                       "\"function_refill_per_10s\": 250, \"time_scale\": 60}"));
  brume_cluster_limits c;
  brume_limits_store_cluster(s, &c);
  assert_int_equal(c.model, BRUME_SCALING_FUNCTION);
  assert_bucket(c.account_bucket, 3000, 600, 60000, 60);
  assert_bucket(c.function_bucket, 500, 250, 10000, 60);
  expect_call(&r, 0, BRUME_LIMITS_CLUSTER, "(null)", "(null)");
  /* Missing fields are the defaults, not what an earlier value said. */
  wait_revision(s, put("/t4/limits/cluster", "{\"account_burst\": 2000, \"time_scale\": 2.5}"));
  brume_limits_store_cluster(s, &c);
  assert_int_equal(c.model, BRUME_SCALING_ACCOUNT);
  assert_bucket(c.account_bucket, 2000, 500, 60000, 2.5);
  assert_bucket(c.function_bucket, 1000, 1000, 10000, 2.5);
  wait_revision(s, del("/t4/limits/cluster"));
  assert_default_cluster(s);
  expect_call(&r, 2, BRUME_LIMITS_CLUSTER, "(null)", "(null)");
  assert_int_equal(calls_of(&r), 3);
  brume_limits_store_stop(s);
}

static void test_malformed_values_keep_the_previous(void **state) {
  (void)state;
  recorder r;
  recorder_init(&r);
  put("/t5/limits/function/a/f", "{\"reserved_concurrency\": 5, \"provisioned\": {\"1\": 2}}");
  put("/t5/limits/account/bad-from-start", "{\"concurrency_limit\": -3}");
  capture_begin();
  brume_limits_store *s = start("/t5/", &r);
  brume_autofree char *log0 = capture_end();
  assert_non_null(strstr(log0, "/t5/limits/account/bad-from-start"));
  assert_account(s, "bad-from-start", 1000, 0, 0);

  wait_revision(s, put("/t5/limits/account/a", "{\"concurrency_limit\": 1234}"));
  wait_revision(s, put("/t5/limits/cluster", "{\"account_burst\": 777}"));
  size_t calls = calls_of(&r);

  const char *bad_accounts[] = {
      "",
      "not json",
      "[1]",
      "5",
      "{\"concurrency_limit\": \"5\"}",
      "{\"concurrency_limit\": -1}",
      "{\"concurrency_limit\": 2147483648}",
      "{\"concurrency_limit\": 99999999999999999999}",
      "{\"concurrency_limit\": 1.5}",
      "{\"concurrency_limit\": null}",
      "{\"concurrency_limit\": 1, \"concurrency_limit\": 2}",
  };
  const char *bad_functions[] = {
      "{\"reserved_concurrency\": -1}",
      "{\"reserved_concurrency\": true}",
      "{\"provisioned\": [1]}",
      "{\"provisioned\": {\"1\": -2}}",
      "{\"provisioned\": {\"\": 1}}",
      "{\"provisioned\": {\"1\": \"3\"}}",
      "{\"provisioned\": {\"a\": 2147483647, \"b\": 1}}",
  };
  const char *bad_clusters[] = {
      "{\"scaling_model\": \"region\"}", "{\"scaling_model\": 1}",
      "{\"account_burst\": 0}",          "{\"function_refill_per_10s\": 0}",
      "{\"time_scale\": 0.0005}",        "{\"time_scale\": \"fast\"}",
      "{\"time_scale\": 1e7}",           "{\"account_refill_per_minute\": 4294967296}",
  };
  struct {
    const char *key;
    const char *const *values;
    size_t n;
  } cases[] = {
      {"/t5/limits/account/a", bad_accounts, BRUME_ARRAY_LEN(bad_accounts)},
      {"/t5/limits/function/a/f", bad_functions, BRUME_ARRAY_LEN(bad_functions)},
      {"/t5/limits/cluster", bad_clusters, BRUME_ARRAY_LEN(bad_clusters)},
  };
  for (size_t c = 0; c < BRUME_ARRAY_LEN(cases); c++) {
    for (size_t i = 0; i < cases[c].n; i++) {
      capture_begin();
      wait_revision(s, put(cases[c].key, cases[c].values[i]));
      brume_autofree char *log = capture_end();
      if (strstr(log, cases[c].key) == NULL || strstr(log, "level=warn") == NULL)
        fail_msg("no warning naming %s for %s", cases[c].key, cases[c].values[i]);
      assert_account(s, "a", 1234, 5, 0);
      assert_function(s, "a", "f", true, 5, 2);
      assert_int_equal(brume_limits_store_provisioned(s, "a", "f", "1"), 2);
      brume_cluster_limits cl;
      brume_limits_store_cluster(s, &cl);
      assert_int_equal(cl.account_bucket.capacity, 777);
    }
  }
  /* Keys that name no limit. */
  const char *strays[] = {"/t5/limits/other",         "/t5/limits/account/a/b",
                          "/t5/limits/account/",      "/t5/limits/function/a",
                          "/t5/limits/function/a/",   "/t5/limits/function//f",
                          "/t5/limits/function/a/f/g"};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(strays); i++) {
    capture_begin();
    wait_revision(s, put(strays[i], "{\"concurrency_limit\": 1}"));
    brume_autofree char *log = capture_end();
    assert_non_null(strstr(log, strays[i]));
  }
  assert_int_equal(calls_of(&r), calls); /* nothing ignored was reported as a change */
  assert_account(s, "a", 1234, 5, 0);

  /* An unknown field is skipped with a warning; the rest applies. */
  capture_begin();
  wait_revision(s, put("/t5/limits/account/a", "{\"concurrency_limit\": 900, \"colour\": 1}"));
  brume_autofree char *log = capture_end();
  assert_non_null(strstr(log, "colour"));
  assert_account(s, "a", 900, 5, 0);
  /* A good value after bad ones applies. */
  wait_revision(s, put("/t5/limits/function/a/f", "{\"provisioned\": {\"1\": 3}}"));
  assert_account(s, "a", 900, 0, 3);
  assert_int_equal(calls_of(&r), calls + 2);
  brume_limits_store_stop(s);
}

static void test_rule_breaking_config_is_applied(void **state) {
  (void)state;
  brume_limits_store *s = start("/t6/", NULL);
  wait_revision(s, put("/t6/limits/account/a", "{\"concurrency_limit\": 150}"));
  capture_begin();
  wait_revision(s, put("/t6/limits/function/a/f", "{\"reserved_concurrency\": 100}"));
  brume_autofree char *log1 = capture_end();
  assert_non_null(strstr(log1, "at least 100 must stay unreserved"));
  assert_account(s, "a", 150, 100, 0);
  brume_account_limits a = account(s, "a");
  assert_int_equal(brume_concurrency_unreserved(&a), 50);

  /* Reserved past the limit: the unreserved pool is 0, not negative. */
  capture_begin();
  wait_revision(s, put("/t6/limits/function/a/g", "{\"reserved_concurrency\": 2000}"));
  brume_autofree char *log2 = capture_end();
  assert_non_null(strstr(log2, "level=warn"));
  a = account(s, "a");
  assert_int_equal(a.reserved_total, 2100);
  assert_int_equal(brume_concurrency_unreserved(&a), 0);
  brume_function_limits shared = {0};
  assert_int_equal(brume_concurrency_admit(&a, &shared, 0, 0), BRUME_THROTTLE_ACCOUNT);

  /* Provisioned over reserved. */
  capture_begin();
  wait_revision(s, put("/t6/limits/function/b/f",
                       "{\"reserved_concurrency\": 10, \"provisioned\": {\"1\": 20}}"));
  brume_autofree char *log3 = capture_end();
  assert_non_null(strstr(log3, "exceeds its reserved concurrency"));
  assert_function(s, "b", "f", true, 10, 20);
  brume_limits_store_stop(s);

  /* Loaded at start: warned about once the whole account is in. */
  capture_begin();
  s = start("/t6/", NULL);
  brume_autofree char *log4 = capture_end();
  assert_non_null(strstr(log4, "account=\"a\""));
  assert_non_null(strstr(log4, "account=\"b\""));
  assert_account(s, "a", 150, 2100, 0);
  brume_limits_store_stop(s);
}

/* ---- No change lost at start ---- */

/* Writes one new account key after another under its root ("w1", "w2", ...), each with a limit
 * of 2000 + its number, so that any write the store misses leaves an account at the default. */
typedef struct writer {
  char root[16];
  _Atomic bool stop;
  _Atomic long written;
  int64_t last_revision;
} writer;

static void *write_loop(void *arg) {
  writer *w = arg;
  for (long i = 1; !atomic_load(&w->stop); i++) {
    char k[64], v[64];
    snprintf(k, sizeof(k), "%slimits/account/w%ld", w->root, i);
    snprintf(v, sizeof(v), "{\"concurrency_limit\": %ld}", 2000 + i);
    w->last_revision = put(k, v);
    atomic_store(&w->written, i);
  }
  return NULL;
}

/* Looks the first account up without pause, while the watch applies changes. */
typedef struct reader {
  brume_limits_store *s;
  _Atomic bool stop;
  long lookups, wrong;
} reader;

static void *read_loop(void *arg) {
  reader *r = arg;
  while (!atomic_load(&r->stop)) {
    brume_account_limits a;
    brume_limits_store_account(r->s, "w1", &a);
    if (a.limit != 2001) r->wrong++;
    r->lookups++;
  }
  return NULL;
}

static void test_no_change_lost_at_start(void **state) {
  (void)state;
  for (int round = 0; round < 5; round++) {
    writer w = {0};
    snprintf(w.root, sizeof(w.root), "/t7-%d/", round);
    recorder rec;
    recorder_init(&rec);
    pthread_t wt, rt;
    assert_int_equal(pthread_create(&wt, NULL, write_loop, &w), 0);
    while (atomic_load(&w.written) < 3) usleep(500);
    brume_limits_store *s = start(w.root, &rec);
    long loaded_at_most = atomic_load(&w.written);
    reader r = {.s = s};
    assert_int_equal(pthread_create(&rt, NULL, read_loop, &r), 0);
    while (atomic_load(&w.written) < loaded_at_most + 20) usleep(500);
    atomic_store(&w.stop, true);
    pthread_join(wt, NULL);
    wait_revision(s, w.last_revision);
    atomic_store(&r.stop, true);
    pthread_join(rt, NULL);
    long last = atomic_load(&w.written), missed = 0;
    for (long i = 1; i <= last; i++) {
      char id[32];
      snprintf(id, sizeof(id), "w%ld", i);
      if (account(s, id).limit != (uint32_t)(2000 + i)) missed++;
    }
    if (missed) fail_msg("round %d: %ld of %ld writes missed", round, missed, last);
    /* Each write after the read was told of once; those before it were not. */
    size_t calls = calls_of(&rec);
    assert_true(calls >= 20 && calls <= (size_t)last - 2);
    assert_int_equal(r.wrong, 0);
    assert_true(r.lookups > 0);
    brume_limits_store_stop(s);
  }
}

static void test_thousands_of_functions(void **state) {
  (void)state;
  /* 300 accounts of 10 functions each, written 100 keys a txn (etcd allows 128 ops). */
  enum { ACCOUNTS = 300, FUNCTIONS = 10, PER_TXN = 100 };
  static char keys[ACCOUNTS * FUNCTIONS][64], values[ACCOUNTS * FUNCTIONS][96];
  brume_etcd_op ops[PER_TXN];
  size_t n = 0;
  for (int a = 0; a < ACCOUNTS; a++) {
    for (int f = 0; f < FUNCTIONS; f++, n++) {
      snprintf(keys[n], sizeof(keys[n]), "/t8/limits/function/acct%03d/fn%d", a, f);
      if (f % 2)
        snprintf(values[n], sizeof(values[n]), "{\"reserved_concurrency\": %d}", a + f);
      else
        snprintf(values[n], sizeof(values[n]), "{\"provisioned\": {\"1\": %d, \"2\": 1}}", f);
      ops[n % PER_TXN] = (brume_etcd_op){.type = BRUME_ETCD_OP_PUT,
                                         .key = keys[n],
                                         .value = values[n],
                                         .value_len = strlen(values[n])};
      if (n % PER_TXN == PER_TXN - 1) {
        brume_etcd_txn_result *t =
            brume_etcd_txn(etcd, &(brume_etcd_txn_req){.success = ops, .n_success = PER_TXN}, NULL);
        assert_non_null(t);
        brume_etcd_txn_result_free(t);
      }
    }
  }
  double t0 = brume_test_mono_ms();
  brume_limits_store *s = start("/t8/", NULL);
  double loaded = brume_test_mono_ms() - t0;
  /* Reserved: fn1, 3, 5, 7, 9 -> 5a + 25; provisioned: fn0, 2, 4, 6, 8 -> 20 + 5. */
  for (int a = 0; a < ACCOUNTS; a++) {
    char id[16];
    snprintf(id, sizeof(id), "acct%03d", a);
    assert_account(s, id, 1000, (uint32_t)(5 * a + 25), 25);
  }
  t0 = brume_test_mono_ms();
  long lookups = 0;
  for (int i = 0; i < 200000; i++, lookups += 2) {
    char id[16];
    snprintf(id, sizeof(id), "acct%03d", i % ACCOUNTS);
    brume_account_limits al;
    brume_function_limits fl;
    brume_limits_store_account(s, id, &al);
    brume_limits_store_function(s, id, "fn3", &fl);
    assert_int_equal(fl.reserved_concurrency, i % ACCOUNTS + 3);
  }
  double took = brume_test_mono_ms() - t0;
  printf("# %d functions in %d accounts loaded in %.0f ms; %.1f million lookups a second\n",
         ACCOUNTS * FUNCTIONS, ACCOUNTS, loaded, lookups / took / 1000);
  brume_limits_store_stop(s);
}

/* etcd stopped cleanly, then killed: the store keeps answering while it is down, and picks up
 * writes made after it is back. */
static void test_etcd_restart(void **state) {
  (void)state;
  recorder r;
  recorder_init(&r);
  brume_limits_store *s = start("/t9/", &r);
  wait_revision(s, put("/t9/limits/account/a", "{\"concurrency_limit\": 1100}"));
  for (int round = 0; round < 2; round++) {
    if (round == 0)
      assert_int_equal(brume_test_etcd_stop(server), 0);
    else
      assert_int_equal(brume_test_etcd_kill(server), 0);
    assert_account(s, "a", round == 0 ? 1100 : 1300, round == 0 ? 0 : 10, 0);
    usleep(300000); /* long enough for the watch to notice and start reconnecting */
    assert_int_equal(brume_test_etcd_restart(server), 0);
    long long t0 = brume_test_now_ms();
    int64_t rev = put("/t9/limits/account/a", round == 0 ? "{\"concurrency_limit\": 1200}"
                                                         : "{\"concurrency_limit\": 1400}");
    wait_revision(s, put("/t9/limits/function/a/f", "{\"reserved_concurrency\": 10}"));
    assert_true(rev < brume_limits_store_revision(s));
    printf("# round %d: writes picked up %lld ms after etcd was back\n", round,
           brume_test_now_ms() - t0);
    assert_account(s, "a", round == 0 ? 1200 : 1400, 10, 0);
    if (round == 0) wait_revision(s, put("/t9/limits/account/a", "{\"concurrency_limit\": 1300}"));
  }
  expect_call(&r, 0, BRUME_LIMITS_ACCOUNT, "a", "(null)");
  expect_call(&r, 1, BRUME_LIMITS_ACCOUNT, "a", "(null)");
  expect_call(&r, 2, BRUME_LIMITS_FUNCTION, "a", "f");
  assert_int_equal(calls_of(&r), 6);
  brume_limits_store_stop(s);
}

/* brume_limits_check_value() answers as the store reads: what it accepts the store applies,
 * what it refuses the store ignores with the same reason. No etcd needed. */
static void test_check_value(void **state) {
  (void)state;
  struct {
    brume_limits_kind kind;
    const char *value;
    bool ok;
    const char *says; /* part of the error, when refused */
  } cases[] = {
      {BRUME_LIMITS_CLUSTER, "{\"scaling_model\": \"function\", \"time_scale\": 60}", true, NULL},
      {BRUME_LIMITS_CLUSTER, "{\"scaling_model\": \"both\"}", false, "scaling_model"},
      {BRUME_LIMITS_CLUSTER, "{\"account_burst\": 0}", false, "account_burst"},
      {BRUME_LIMITS_ACCOUNT, "{\"concurrency_limit\": 100}", true, NULL},
      {BRUME_LIMITS_ACCOUNT, "{\"concurrency_limit\": -1}", false, "concurrency_limit"},
      {BRUME_LIMITS_ACCOUNT, "[1]", false, NULL},
      {BRUME_LIMITS_FUNCTION, "{\"reserved_concurrency\": 0, \"provisioned\": {\"prod\": 2}}", true,
       NULL},
      {BRUME_LIMITS_FUNCTION, "{\"provisioned\": {\"prod\": \"two\"}}", false, "prod"},
      {BRUME_LIMITS_FUNCTION, "not json", false, NULL},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    brume_err *err = NULL;
    int rc = brume_limits_check_value(cases[i].kind, cases[i].value, strlen(cases[i].value), &err);
    if (cases[i].ok) {
      if (rc != 0) fail_msg("case %zu (%s) refused: %s", i, cases[i].value, err->msg);
    } else {
      if (rc != -1) fail_msg("case %zu (%s) accepted", i, cases[i].value);
      assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
      if (cases[i].says && !strstr(err->msg, cases[i].says))
        fail_msg("case %zu: \"%s\" does not mention %s", i, err->msg, cases[i].says);
    }
    brume_err_free(err);
  }
}

int main(void) {
  if (!brume_test_etcd_available()) {
    fprintf(stderr, "etcd is not installed (deploy/install-deps.sh installs it): skipping\n");
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_and_arguments),
      cmocka_unit_test(test_check_value),
      cmocka_unit_test(test_loaded_at_start),
      cmocka_unit_test(test_live_changes_and_on_change),
      cmocka_unit_test(test_cluster_settings),
      cmocka_unit_test(test_malformed_values_keep_the_previous),
      cmocka_unit_test(test_rule_breaking_config_is_applied),
      cmocka_unit_test(test_no_change_lost_at_start),
      cmocka_unit_test(test_thousands_of_functions),
      cmocka_unit_test(test_etcd_restart),
  };
  return cmocka_run_group_tests_name("limits_store", tests, group_setup, group_teardown);
}
