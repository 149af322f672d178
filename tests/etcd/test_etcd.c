/* The etcd client against a real etcd: KV, txn, leases, watch across a restart, failover and the
 * error a caller sees when etcd is down. One server serves the whole file; each test works under
 * its own key prefix. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
/* cmocka.h needs setjmp.h, stdarg.h and stddef.h before it. */
#include <cmocka.h>

#include "etcd.h"
#include "etcd_server.h"
#include "log.h"
#include "proc.h"

static brume_test_etcd *srv;
static brume_etcd *cli;

static int group_setup(void **state) {
  (void)state;
  srv = brume_test_etcd_start();
  if (srv == NULL) return -1;
  brume_err *err = NULL;
  cli = brume_etcd_new(srv->endpoint, &(brume_etcd_opts){.timeout_ms = 3000}, &err);
  if (cli == NULL) {
    fprintf(stderr, "brume_etcd_new: %s\n", err->msg);
    brume_err_free(err);
    return -1;
  }
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  brume_etcd_free(cli);
  brume_test_etcd_free(srv);
  return 0;
}

/* Fails the test with the error's message, which cmocka's assert would not show. */
#define CHECK_OK(call)                                                             \
  do {                                                                             \
    brume_err *err_ = NULL;                                                        \
    brume_err **errp = &err_;                                                      \
    (void)errp;                                                                    \
    if ((call) < 0)                                                                \
      fail_msg("%s: %s %s", #call, brume_status_name(err_ ? (int)err_->code : -1), \
               err_ ? err_->msg : "(no error)");                                   \
    brume_err_free(err_);                                                          \
  } while (0)

static void put_str(const char *key, const char *value, int64_t *rev) {
  CHECK_OK(brume_etcd_put(cli, key, value, strlen(value), 0, rev, errp));
}

static void test_put_get(void **state) {
  (void)state;
  int64_t put_rev = 0, read_rev = 0;
  put_str("/t/pg/a", "hello", &put_rev);
  assert_true(put_rev > 0);

  brume_autoptr(brume_etcd_kv) kv = NULL;
  CHECK_OK(brume_etcd_get(cli, "/t/pg/a", &kv, &read_rev, errp));
  assert_non_null(kv);
  assert_string_equal(kv->key, "/t/pg/a");
  assert_int_equal(kv->value_len, 5);
  assert_string_equal(kv->value, "hello");
  assert_int_equal(kv->mod_revision, put_rev);
  assert_int_equal(kv->create_revision, put_rev);
  assert_int_equal(kv->version, 1);
  assert_true(read_rev >= put_rev);

  /* Binary values survive the base64 round trip, including NUL bytes and an empty value. */
  static const char bin[] = {0, 1, '\xff', '\n', 0};
  CHECK_OK(brume_etcd_put(cli, "/t/pg/bin", bin, sizeof(bin), 0, NULL, errp));
  brume_autoptr(brume_etcd_kv) b = NULL;
  CHECK_OK(brume_etcd_get(cli, "/t/pg/bin", &b, NULL, errp));
  assert_non_null(b);
  assert_int_equal(b->value_len, sizeof(bin));
  assert_memory_equal(b->value, bin, sizeof(bin));
  put_str("/t/pg/empty", "", NULL);
  brume_autoptr(brume_etcd_kv) em = NULL;
  CHECK_OK(brume_etcd_get(cli, "/t/pg/empty", &em, NULL, errp));
  assert_non_null(em);
  assert_int_equal(em->value_len, 0);
  assert_string_equal(em->value, "");

  /* Absence is an answer: 0 with a NULL kv, and still the revision. */
  brume_etcd_kv *none = (brume_etcd_kv *)1;
  read_rev = 0;
  CHECK_OK(brume_etcd_get(cli, "/t/pg/missing", &none, &read_rev, errp));
  assert_null(none);
  assert_true(read_rev >= put_rev);
}

static void test_get_prefix(void **state) {
  (void)state;
  int64_t last = 0;
  put_str("/t/pre/b", "2", NULL);
  put_str("/t/pre/a", "1", NULL);
  put_str("/t/pre/c", "3", &last);
  put_str("/t/pre", "not under the prefix /t/pre/", NULL);
  put_str("/t/pre0", "nor this", NULL);

  brume_err *err = NULL;
  brume_autoptr(brume_etcd_range) r = brume_etcd_get_prefix(cli, "/t/pre/", &err);
  assert_null(err);
  assert_non_null(r);
  assert_int_equal(r->n, 3);
  assert_int_equal(r->count, 3);
  assert_false(r->more);
  assert_true(r->revision >= last);
  assert_string_equal(r->kvs[0].key, "/t/pre/a");
  assert_string_equal(r->kvs[1].key, "/t/pre/b");
  assert_string_equal(r->kvs[2].key, "/t/pre/c");
  assert_string_equal(r->kvs[2].value, "3");

  brume_autoptr(brume_etcd_range) none = brume_etcd_get_prefix(cli, "/t/nothing-here/", &err);
  assert_non_null(none);
  assert_int_equal(none->n, 0);
  assert_true(none->revision > 0);

  /* The empty prefix reads the whole store. */
  brume_autoptr(brume_etcd_range) all = brume_etcd_get_prefix(cli, "", &err);
  assert_non_null(all);
  assert_true(all->n >= 5);
}

static void test_delete(void **state) {
  (void)state;
  put_str("/t/del/a", "1", NULL);
  put_str("/t/del/b", "2", NULL);
  put_str("/t/del/c", "3", NULL);
  put_str("/t/dela", "outside", NULL);
  int64_t n = -1;
  CHECK_OK(brume_etcd_delete(cli, "/t/del/a", false, &n, errp));
  assert_int_equal(n, 1);
  CHECK_OK(brume_etcd_delete(cli, "/t/del/a", false, &n, errp));
  assert_int_equal(n, 0);
  CHECK_OK(brume_etcd_delete(cli, "/t/del/", true, &n, errp));
  assert_int_equal(n, 2);
  brume_autoptr(brume_etcd_kv) kv = NULL;
  CHECK_OK(brume_etcd_get(cli, "/t/dela", &kv, NULL, errp));
  assert_non_null(kv);
}

/* The counting daemon's pattern: read at revision R, then write only if nothing changed since. */
static void test_cas_loses_to_concurrent_writer(void **state) {
  (void)state;
  put_str("/t/cas/counter", "10", NULL);
  brume_autoptr(brume_etcd_kv) kv = NULL;
  int64_t r = 0;
  CHECK_OK(brume_etcd_get(cli, "/t/cas/counter", &kv, &r, errp));
  assert_non_null(kv);

  /* Another writer, on its own connection, gets in between. */
  brume_err *err = NULL;
  brume_autoptr(brume_etcd) other = brume_etcd_new(srv->endpoint, NULL, &err);
  assert_non_null(other);
  CHECK_OK(brume_etcd_put(other, "/t/cas/counter", "20", 2, 0, NULL, errp));

  brume_etcd_cmp cmp[] = {{.key = "/t/cas/counter",
                           .target = BRUME_ETCD_MOD,
                           .result = BRUME_ETCD_EQUAL,
                           .number = kv->mod_revision}};
  brume_etcd_op put[] = {
      {.type = BRUME_ETCD_OP_PUT, .key = "/t/cas/counter", .value = "11", .value_len = 2}};
  brume_etcd_op get[] = {{.type = BRUME_ETCD_OP_RANGE, .key = "/t/cas/counter"}};
  brume_etcd_txn_req req = {cmp, 1, put, 1, get, 1};
  brume_autoptr(brume_etcd_txn_result) t = brume_etcd_txn(cli, &req, &err);
  assert_null(err);
  assert_non_null(t);
  assert_false(t->succeeded); /* "succeeded" is absent from etcd's answer: false */
  assert_true(t->revision > r);
  assert_int_equal(t->n, 1);
  assert_int_equal(t->results[0].type, BRUME_ETCD_OP_RANGE);
  assert_int_equal(t->results[0].range.n, 1);
  assert_string_equal(t->results[0].range.kvs[0].value, "20");

  /* The prefix guard of DESIGN.md: MOD(prefix) < R+1 fails once anything under it changed... */
  brume_etcd_cmp guard[] = {{.key = "/t/cas/",
                             .prefix = true,
                             .target = BRUME_ETCD_MOD,
                             .result = BRUME_ETCD_LESS,
                             .number = r + 1}};
  brume_etcd_op put2[] = {
      {.type = BRUME_ETCD_OP_PUT, .key = "/t/cas/holder", .value = "1", .value_len = 1}};
  brume_etcd_txn_req req2 = {.compare = guard, .n_compare = 1, .success = put2, .n_success = 1};
  brume_autoptr(brume_etcd_txn_result) t2 = brume_etcd_txn(cli, &req2, &err);
  assert_non_null(t2);
  assert_false(t2->succeeded);
  assert_int_equal(t2->n, 0);

  /* ...and holds when the read is fresh. */
  brume_autoptr(brume_etcd_range) fresh = brume_etcd_get_prefix(cli, "/t/cas/", &err);
  assert_non_null(fresh);
  guard[0].number = fresh->revision + 1;
  brume_autoptr(brume_etcd_txn_result) t3 = brume_etcd_txn(cli, &req2, &err);
  assert_non_null(t3);
  assert_true(t3->succeeded);
  assert_int_equal(t3->n, 1);
  assert_int_equal(t3->results[0].type, BRUME_ETCD_OP_PUT);
  assert_int_equal(t3->revision, fresh->revision + 1);

  /* Create-if-absent: CREATE == 0 on a missing key; and a VALUE compare. */
  brume_etcd_cmp absent[] = {
      {.key = "/t/cas/new", .target = BRUME_ETCD_CREATE, .result = BRUME_ETCD_EQUAL, .number = 0},
      {.key = "/t/cas/counter",
       .target = BRUME_ETCD_VALUE,
       .result = BRUME_ETCD_EQUAL,
       .value = "20",
       .value_len = 2}};
  brume_etcd_op create[] = {
      {.type = BRUME_ETCD_OP_PUT, .key = "/t/cas/new", .value = "x", .value_len = 1},
      {.type = BRUME_ETCD_OP_DELETE, .key = "/t/cas/holder"}};
  brume_etcd_txn_req req3 = {.compare = absent, .n_compare = 2, .success = create, .n_success = 2};
  brume_autoptr(brume_etcd_txn_result) t4 = brume_etcd_txn(cli, &req3, &err);
  assert_non_null(t4);
  assert_true(t4->succeeded);
  assert_int_equal(t4->n, 2);
  assert_int_equal(t4->results[1].type, BRUME_ETCD_OP_DELETE);
  assert_int_equal(t4->results[1].deleted, 1);
  brume_autoptr(brume_etcd_txn_result) t5 = brume_etcd_txn(cli, &req3, &err);
  assert_non_null(t5);
  assert_false(t5->succeeded); /* it exists now */

  /* A bad request is refused before it reaches etcd. */
  brume_etcd_cmp bad[] = {{.key = NULL}};
  brume_etcd_txn_req req4 = {.compare = bad, .n_compare = 1};
  assert_null(brume_etcd_txn(cli, &req4, &err));
  assert_non_null(err);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_free(err);
}

static bool key_exists(const char *key) {
  brume_autoptr(brume_etcd_kv) kv = NULL;
  CHECK_OK(brume_etcd_get(cli, key, &kv, NULL, errp));
  return kv != NULL;
}

static void test_lease_expiry_deletes_keys(void **state) {
  (void)state;
  int64_t id = 0, ttl = 0;
  CHECK_OK(brume_etcd_lease_grant(cli, 1, &id, &ttl, errp));
  assert_true(id != 0);
  assert_true(ttl >= 1);
  CHECK_OK(brume_etcd_put(cli, "/t/lease/x", "v", 1, id, NULL, errp));
  assert_true(key_exists("/t/lease/x"));
  long long start = brume_test_now_ms();
  while (key_exists("/t/lease/x") && brume_test_now_ms() - start < 8000) usleep(100000);
  long long took = brume_test_now_ms() - start;
  assert_false(key_exists("/t/lease/x"));
  fprintf(stderr, "# lease granted ttl=%" PRId64 " s; key gone after %lld ms\n", ttl, took);

  /* The lease is gone with its key: keepalive says NOT_FOUND, and so does a put under it. */
  brume_err *err = NULL;
  assert_int_equal(brume_etcd_lease_keepalive(cli, id, NULL, &err), -1);
  assert_int_equal(err->code, BRUME_NOT_FOUND);
  brume_err_clear(&err);
  assert_int_equal(brume_etcd_put(cli, "/t/lease/y", "v", 1, id, NULL, &err), -1);
  assert_int_equal(err->code, BRUME_NOT_FOUND);
  assert_non_null(strstr(err->msg, "put /t/lease/y: etcdserver: requested lease not found"));
  brume_err_free(err);
}

static void test_lease_keepalive_extends(void **state) {
  (void)state;
  int64_t id = 0, ttl = 0;
  CHECK_OK(brume_etcd_lease_grant(cli, 2, &id, &ttl, errp));
  CHECK_OK(brume_etcd_put(cli, "/t/lease/kept", "v", 1, id, NULL, errp));
  /* Twice the TTL with keepalives every half second: the key stays. */
  long long start = brume_test_now_ms();
  while (brume_test_now_ms() - start < 2 * ttl * 1000 + 500) {
    int64_t left = 0;
    CHECK_OK(brume_etcd_lease_keepalive(cli, id, &left, errp));
    assert_int_equal(left, ttl);
    usleep(500000);
  }
  assert_true(key_exists("/t/lease/kept"));
  CHECK_OK(brume_etcd_lease_revoke(cli, id, errp));
  assert_false(key_exists("/t/lease/kept"));
  brume_err *err = NULL;
  assert_int_equal(brume_etcd_lease_revoke(cli, id, &err), -1);
  assert_int_equal(err->code, BRUME_NOT_FOUND);
  brume_err_clear(&err);
  assert_int_equal(brume_etcd_lease_grant(cli, 0, &id, NULL, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_free(err);
}

/* ---- watch ---- */

typedef struct seen_event {
  brume_etcd_event_type type;
  char key[64];
  char value[64];
  int64_t rev;
} seen_event;

typedef struct collector {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  size_t n;
  seen_event ev[64];
  int gaps; /* calls with n == 0: etcd compacted revisions the watch had not delivered */
} collector;

static void collect(const brume_etcd_event *events, size_t n, void *user) {
  collector *c = user;
  pthread_mutex_lock(&c->lock);
  if (n == 0) {
    assert_null(events);
    c->gaps++;
  }
  for (size_t i = 0; i < n && c->n < BRUME_ARRAY_LEN(c->ev); i++) {
    seen_event *s = &c->ev[c->n++];
    s->type = events[i].type;
    snprintf(s->key, sizeof(s->key), "%s", events[i].kv.key);
    snprintf(s->value, sizeof(s->value), "%s", events[i].kv.value);
    s->rev = events[i].kv.mod_revision;
  }
  pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
}

static void collector_init(collector *c) {
  memset(c, 0, sizeof(*c));
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->cond, NULL);
}

static void collector_destroy(collector *c) {
  pthread_mutex_destroy(&c->lock);
  pthread_cond_destroy(&c->cond);
}

/* Waits until at least n events arrived; returns how many there are. */
static size_t wait_events(collector *c, size_t n, int timeout_ms) {
  long long end = brume_test_now_ms() + timeout_ms;
  pthread_mutex_lock(&c->lock);
  while (c->n < n && brume_test_now_ms() < end) {
    pthread_mutex_unlock(&c->lock);
    usleep(10000);
    pthread_mutex_lock(&c->lock);
  }
  size_t got = c->n;
  pthread_mutex_unlock(&c->lock);
  return got;
}

static void stop_fast(brume_etcd_watch *w) {
  long long t0 = brume_test_now_ms();
  brume_etcd_watch_stop(w);
  long long took = brume_test_now_ms() - t0;
  assert_true(took < 300);
}

static void test_watch_events(void **state) {
  (void)state;
  collector c;
  collector_init(&c);
  brume_err *err = NULL;
  int64_t r1 = 0, r2 = 0, r3 = 0;
  put_str("/t/w1/before", "old", NULL); /* before the watch: not seen */
  brume_etcd_watch *w = brume_etcd_watch_prefix(cli, "/t/w1/", 0, collect, &c, &err);
  assert_non_null(w);
  put_str("/t/w1/a", "1", &r1);
  put_str("/t/w1x", "outside the prefix", NULL);
  put_str("/t/w1/b", "2", &r2);
  CHECK_OK(brume_etcd_delete(cli, "/t/w1/a", false, NULL, errp));
  brume_autoptr(brume_etcd_kv) kv = NULL;
  CHECK_OK(brume_etcd_get(cli, "/t/w1/b", &kv, &r3, errp)); /* r3: the delete's revision */
  assert_int_equal(wait_events(&c, 3, 5000), 3);
  usleep(100000);
  stop_fast(w);
  assert_int_equal(c.n, 3);
  assert_int_equal(c.ev[0].type, BRUME_ETCD_EVENT_PUT);
  assert_string_equal(c.ev[0].key, "/t/w1/a");
  assert_string_equal(c.ev[0].value, "1");
  assert_int_equal(c.ev[0].rev, r1);
  assert_string_equal(c.ev[1].key, "/t/w1/b");
  assert_int_equal(c.ev[1].rev, r2);
  assert_int_equal(c.ev[2].type, BRUME_ETCD_EVENT_DELETE);
  assert_string_equal(c.ev[2].key, "/t/w1/a");
  assert_string_equal(c.ev[2].value, "");
  assert_int_equal(c.ev[2].rev, r3);

  /* Replaying from a past revision delivers history, from that revision on. */
  collector h;
  collector_init(&h);
  w = brume_etcd_watch_prefix(cli, "/t/w1/", r2, collect, &h, &err);
  assert_non_null(w);
  assert_int_equal(wait_events(&h, 2, 5000), 2);
  usleep(100000);
  stop_fast(w);
  assert_int_equal(h.n, 2);
  assert_int_equal(h.ev[0].rev, r2);
  assert_int_equal(h.ev[1].type, BRUME_ETCD_EVENT_DELETE);
  collector_destroy(&c);
  collector_destroy(&h);
}

/* The watch survives an etcd restart: what was delivered before is not delivered again, and what
 * was written after the restart, even before the watch reconnected, arrives exactly once. */
static void test_watch_resumes_after_restart(void **state) {
  (void)state;
  collector c;
  collector_init(&c);
  brume_err *err = NULL;
  brume_etcd_watch *w = brume_etcd_watch_prefix(cli, "/t/w2/", 0, collect, &c, &err);
  assert_non_null(w);
  int64_t r1 = 0;
  put_str("/t/w2/k1", "v1", &r1);
  assert_int_equal(wait_events(&c, 1, 5000), 1);
  assert_int_equal(brume_etcd_watch_next_revision(w), r1 + 1);

  /* A crash, not a clean shutdown: the stream breaks instead of ending. */
  assert_int_equal(brume_test_etcd_kill(srv), 0);
  /* While etcd is down a call fails with UNAVAILABLE naming the endpoint. */
  brume_etcd_kv *kv = NULL;
  assert_int_equal(brume_etcd_get(cli, "/t/w2/k1", &kv, NULL, &err), -1);
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  assert_non_null(strstr(err->msg, srv->endpoint));
  brume_err_clear(&err);
  usleep(300000); /* the watch notices and starts backing off */

  assert_int_equal(brume_test_etcd_restart(srv), 0);
  int64_t r2 = 0, r3 = 0;
  put_str("/t/w2/k2", "v2", &r2);
  put_str("/t/w2/k3", "v3", &r3);
  assert_int_equal(wait_events(&c, 3, 10000), 3);
  usleep(300000); /* room for a duplicate to show up */
  stop_fast(w);
  assert_int_equal(c.n, 3);
  assert_string_equal(c.ev[0].key, "/t/w2/k1");
  assert_int_equal(c.ev[0].rev, r1);
  assert_string_equal(c.ev[1].key, "/t/w2/k2");
  assert_string_equal(c.ev[1].value, "v2");
  assert_int_equal(c.ev[1].rev, r2);
  assert_string_equal(c.ev[2].key, "/t/w2/k3");
  assert_int_equal(c.ev[2].rev, r3);
  collector_destroy(&c);
}

/* Revisions compacted away cannot be replayed: the watch says so and goes on from the oldest
 * revision etcd still has, instead of failing or looping. */
static void test_watch_after_compaction(void **state) {
  (void)state;
  int64_t r1 = 0, r2 = 0, r3 = 0, r4 = 0;
  put_str("/t/wc/k1", "1", &r1);
  put_str("/t/wc/k2", "2", &r2);
  put_str("/t/wc/k3", "3", &r3);
  assert_int_equal(brume_test_etcd_compact(srv, r3), 0);
  collector c;
  collector_init(&c);
  brume_err *err = NULL;
  brume_etcd_watch *w = brume_etcd_watch_prefix(cli, "/t/wc/", r1, collect, &c, &err);
  assert_non_null(w);
  assert_int_equal(wait_events(&c, 1, 5000), 1);
  put_str("/t/wc/k4", "4", &r4);
  assert_int_equal(wait_events(&c, 2, 5000), 2);
  stop_fast(w);
  assert_int_equal(c.n, 2);
  assert_int_equal(c.ev[0].rev, r3);
  assert_int_equal(c.ev[1].rev, r4);
  assert_int_equal(c.gaps, 1); /* told once, before the events from r3 */
  collector_destroy(&c);
}

static void test_watch_stop_while_etcd_down(void **state) {
  (void)state;
  collector c;
  collector_init(&c);
  brume_err *err = NULL;
  int port = brume_test_free_port();
  brume_autofree char *ep = brume_xasprintf("http://127.0.0.1:%d", port);
  brume_autoptr(brume_etcd) dead = brume_etcd_new(ep, &(brume_etcd_opts){.timeout_ms = 500}, &err);
  assert_non_null(dead);
  /* "From now" needs etcd; an explicit revision does not, and the watch keeps retrying. */
  assert_null(brume_etcd_watch_prefix(dead, "/t/w3/", 0, collect, &c, &err));
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  brume_err_clear(&err);
  brume_etcd_watch *w = brume_etcd_watch_prefix(dead, "/t/w3/", 1, collect, &c, &err);
  assert_non_null(w);
  usleep(400000);
  stop_fast(w);
  assert_int_equal(c.n, 0);
  collector_destroy(&c);
}

static void test_unavailable_names_endpoints(void **state) {
  (void)state;
  int p1 = brume_test_free_port(), p2 = brume_test_free_port();
  brume_autofree char *eps = brume_xasprintf("http://127.0.0.1:%d, http://127.0.0.1:%d/", p1, p2);
  brume_err *err = NULL;
  brume_autoptr(brume_etcd) dead =
      brume_etcd_new(eps, &(brume_etcd_opts){.timeout_ms = 1000}, &err);
  assert_non_null(dead);
  long long t0 = brume_test_now_ms();
  assert_int_equal(brume_etcd_put(dead, "/t/down", "v", 1, 0, NULL, &err), -1);
  long long took = brume_test_now_ms() - t0;
  assert_true(took < 1000);
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  brume_autofree char *want = brume_xasprintf(
      "put /t/down: etcd unavailable: http://127.0.0.1:%d: Couldn't connect to server; "
      "http://127.0.0.1:%d: Couldn't connect to server",
      p1, p2);
  assert_string_equal(err->msg, want);
  fprintf(stderr, "# %s (%lld ms)\n", err->msg, took);
  brume_err_clear(&err);

  assert_null(brume_etcd_new("", NULL, &err));
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_clear(&err);
  assert_null(brume_etcd_new("127.0.0.1:2379", NULL, &err));
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_clear(&err);
  assert_null(brume_etcd_new("https://127.0.0.1:2379",
                             &(brume_etcd_opts){.ca_path = "/nonexistent/ca.pem"}, &err));
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_free(err);
}

/* A listening socket that never accepts: the kernel completes the handshake, so requests go out
 * and no answer ever comes, like an etcd that hangs. */
static int hung_listener(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(fd, 16), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

static void test_hung_endpoint(void **state) {
  (void)state;
  int port;
  /* Kept open (and closed at scope exit) so that the endpoint accepts and never answers. */
  brume_autoclose int fd = hung_listener(&port);
  (void)fd;
  brume_autofree char *hung = brume_xasprintf("http://127.0.0.1:%d", port);
  brume_err *err = NULL;
  brume_autoptr(brume_etcd) e = brume_etcd_new(hung, &(brume_etcd_opts){.timeout_ms = 300}, &err);
  long long t0 = brume_test_now_ms();
  brume_etcd_kv *kv = NULL;
  assert_int_equal(brume_etcd_get(e, "/t/hung", &kv, NULL, &err), -1);
  long long took = brume_test_now_ms() - t0;
  assert_int_equal(err->code, BRUME_DEADLINE_EXCEEDED);
  assert_non_null(strstr(err->msg, hung));
  assert_true(took >= 250 && took < 1000);
  brume_err_clear(&err);
  /* A txn that got no answer may have been applied: the error says so. */
  brume_etcd_op op[] = {
      {.type = BRUME_ETCD_OP_PUT, .key = "/t/hung", .value = "v", .value_len = 1}};
  brume_etcd_txn_req req = {.success = op, .n_success = 1};
  assert_null(brume_etcd_txn(e, &req, &err));
  assert_int_equal(err->code, BRUME_DEADLINE_EXCEEDED);
  assert_non_null(strstr(err->msg, "its outcome is unknown"));
  brume_err_clear(&err);

  /* A hung first endpoint leaves time for the second one. */
  brume_autofree char *eps = brume_xasprintf("%s,%s", hung, srv->endpoint);
  brume_autoptr(brume_etcd) e2 = brume_etcd_new(eps, &(brume_etcd_opts){.timeout_ms = 1000}, &err);
  t0 = brume_test_now_ms();
  CHECK_OK(brume_etcd_put(e2, "/t/hung", "v", 1, 0, NULL, errp));
  took = brume_test_now_ms() - t0;
  assert_true(took < 1000);
  assert_string_equal(brume_etcd_current_endpoint(e2), srv->endpoint);
}

/* brume_etcd_probe_leader asks every endpoint, whichever is current: a live single-member etcd
 * names its leader, a closed port and a hung one count as unreachable, each within the probe's
 * timeout. (A member without quorum, which answers naming none, is tests/cluster's.) */
static void test_probe_leader(void **state) {
  (void)state;
  int hung_port, hung = hung_listener(&hung_port);
  int dead_port = brume_test_free_port();
  brume_autofree char *eps = brume_xasprintf("http://127.0.0.1:%d,%s,http://127.0.0.1:%d",
                                             dead_port, srv->endpoint, hung_port);
  brume_err *err = NULL;
  brume_autoptr(brume_etcd) e = brume_etcd_new(eps, NULL, &err);
  assert_non_null(e);
  brume_etcd_leader_view v;
  long long t0 = brume_test_now_ms();
  brume_etcd_probe_leader(e, 300, &v);
  long long took = brume_test_now_ms() - t0;
  fprintf(stderr, "# probe: %zu endpoints, %zu reachable, %zu with a leader (%lld ms)\n",
          v.endpoints, v.reachable, v.with_leader, took);
  assert_int_equal(v.endpoints, 3);
  assert_int_equal(v.reachable, 1);
  assert_int_equal(v.with_leader, 1);
  assert_true(took < 1500);
  close(hung);
}

static void test_failover(void **state) {
  (void)state;
  int dead_port = brume_test_free_port();
  brume_autofree char *eps = brume_xasprintf("http://127.0.0.1:%d,%s", dead_port, srv->endpoint);
  brume_err *err = NULL;
  brume_autoptr(brume_etcd) e = brume_etcd_new(eps, &(brume_etcd_opts){.timeout_ms = 2000}, &err);
  assert_non_null(e);
  int64_t rev = 0;
  CHECK_OK(brume_etcd_put(e, "/t/fo/a", "1", 1, 0, &rev, errp));
  assert_string_equal(brume_etcd_current_endpoint(e), srv->endpoint);
  brume_autoptr(brume_etcd_kv) kv = NULL;
  CHECK_OK(brume_etcd_get(e, "/t/fo/a", &kv, NULL, errp));
  assert_non_null(kv);

  /* A watch fails over as well. */
  brume_autoptr(brume_etcd) e2 = brume_etcd_new(eps, NULL, &err);
  collector c;
  collector_init(&c);
  brume_etcd_watch *w = brume_etcd_watch_prefix(e2, "/t/fo/", rev, collect, &c, &err);
  assert_non_null(w);
  assert_int_equal(wait_events(&c, 1, 5000), 1);
  stop_fast(w);
  assert_string_equal(c.ev[0].key, "/t/fo/a");
  collector_destroy(&c);
}

typedef struct worker_arg {
  int id;
  int failures;
} worker_arg;

static void *hammer(void *p) {
  worker_arg *a = p;
  for (int i = 0; i < 100; i++) {
    char key[64], value[32];
    snprintf(key, sizeof(key), "/t/mt/%d/%d", a->id, i % 10);
    snprintf(value, sizeof(value), "%d", i);
    brume_err *err = NULL;
    brume_etcd_kv *kv = NULL;
    if (brume_etcd_put(cli, key, value, strlen(value), 0, NULL, &err) < 0 ||
        brume_etcd_get(cli, key, &kv, NULL, &err) < 0 || kv == NULL ||
        strcmp(kv->value, value) != 0)
      a->failures++;
    brume_etcd_kv_free(kv);
    brume_err_free(err);
  }
  return NULL;
}

static void test_concurrent_callers(void **state) {
  (void)state;
  pthread_t t[4];
  worker_arg args[4];
  for (int i = 0; i < 4; i++) {
    args[i] = (worker_arg){.id = i};
    pthread_create(&t[i], NULL, hammer, &args[i]);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(args[i].failures, 0);
  }
}

int main(void) {
  if (!brume_test_etcd_available()) {
    fprintf(stderr, "test_etcd: skipped: no etcd binary on PATH\n");
    return 77;
  }
  brume_log_init("test_etcd", BRUME_LOG_INFO);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_put_get),
      cmocka_unit_test(test_get_prefix),
      cmocka_unit_test(test_delete),
      cmocka_unit_test(test_cas_loses_to_concurrent_writer),
      cmocka_unit_test(test_lease_expiry_deletes_keys),
      cmocka_unit_test(test_lease_keepalive_extends),
      cmocka_unit_test(test_concurrent_callers),
      cmocka_unit_test(test_watch_events),
      cmocka_unit_test(test_watch_after_compaction),
      cmocka_unit_test(test_watch_stop_while_etcd_down),
      cmocka_unit_test(test_unavailable_names_endpoints),
      cmocka_unit_test(test_failover),
      cmocka_unit_test(test_probe_leader),
      cmocka_unit_test(test_hung_endpoint),
      cmocka_unit_test(test_watch_resumes_after_restart),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
