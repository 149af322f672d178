/* common/etcd_follow.c against a real etcd: the first load, the changes, a read again (resync) that
 * retries while etcd is down, and a real watch gap (etcd compacted what the watch had missed
 * while etcd was down), after which the copy is whole again. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "etcd.h"
#include "etcd_follow.h"
#include "etcd_server.h"
#include "mem.h"
#include "proc.h"
#include "revision.h"

BRUME_TEST_ETCD_GROUP()

/* The follower's copy: key=value lines, as the callbacks leave them. */
typedef struct copy {
  pthread_mutex_t lock;
  char keys[16][64], values[16][64];
  size_t n;
  int loads, loads_again;
  brume_revision synced;
} copy;

static void copy_set(copy *c, const char *key, const char *value) {
  for (size_t i = 0; i < c->n; i++)
    if (strcmp(c->keys[i], key) == 0) {
      snprintf(c->values[i], sizeof(c->values[i]), "%s", value);
      return;
    }
  assert_true(c->n < 16);
  snprintf(c->keys[c->n], sizeof(c->keys[0]), "%s", key);
  snprintf(c->values[c->n++], sizeof(c->values[0]), "%s", value);
}

static void copy_del(copy *c, const char *key) {
  for (size_t i = 0; i < c->n; i++)
    if (strcmp(c->keys[i], key) == 0) {
      c->n--;
      memmove(c->keys[i], c->keys[i + 1], (c->n - i) * sizeof(c->keys[0]));
      memmove(c->values[i], c->values[i + 1], (c->n - i) * sizeof(c->values[0]));
      return;
    }
}

static void on_load(void *user, const brume_etcd_kv *kvs, size_t n, bool again) {
  copy *c = user;
  pthread_mutex_lock(&c->lock);
  c->n = 0;
  for (size_t i = 0; i < n; i++) copy_set(c, kvs[i].key, kvs[i].value);
  c->loads++;
  if (again) c->loads_again++;
  pthread_mutex_unlock(&c->lock);
}

static void on_apply(void *user, const brume_etcd_event *ev) {
  copy *c = user;
  pthread_mutex_lock(&c->lock);
  if (ev->type == BRUME_ETCD_EVENT_PUT)
    copy_set(c, ev->kv.key, ev->kv.value);
  else
    copy_del(c, ev->kv.key);
  pthread_mutex_unlock(&c->lock);
}

static void on_synced(void *user, int64_t revision) {
  brume_revision_advance(&((copy *)user)->synced, revision);
}

static const brume_etcd_follow_ops ops = {
    .what = "the test keys", .load = on_load, .apply = on_apply, .synced = on_synced};

static void copy_init(copy *c) {
  memset(c, 0, sizeof(*c));
  pthread_mutex_init(&c->lock, NULL);
  brume_revision_init(&c->synced, 0);
}

static void copy_destroy(copy *c) {
  pthread_mutex_destroy(&c->lock);
  brume_revision_destroy(&c->synced);
}

/* The copy as "k=v;k=v" (in the copy's order), for one assertion. */
static void copy_text(copy *c, char *out, size_t size) {
  pthread_mutex_lock(&c->lock);
  size_t len = 0;
  out[0] = '\0';
  for (size_t i = 0; i < c->n && len < size; i++)
    len +=
        (size_t)snprintf(out + len, size - len, "%s%s=%s", i ? ";" : "", c->keys[i], c->values[i]);
  pthread_mutex_unlock(&c->lock);
}

static int64_t put(const char *key, const char *value) {
  int64_t rev = 0;
  assert_int_equal(brume_etcd_put(etcd, key, value, strlen(value), 0, &rev, NULL), 0);
  return rev;
}

/* How many loads the copy has had: all of them, or those after the first (again). */
static int loads(copy *c, bool again) {
  pthread_mutex_lock(&c->lock);
  int n = again ? c->loads_again : c->loads;
  pthread_mutex_unlock(&c->lock);
  return n;
}

static void test_load_then_changes(void **state) {
  (void)state;
  put("/f1/a", "1");
  int64_t r = put("/f1/b", "2");
  put("/f1x", "outside");
  copy c;
  copy_init(&c);
  brume_err *err = NULL;
  brume_etcd_follow *f = brume_etcd_follow_start(etcd, "/f1/", &ops, &c, &err);
  assert_non_null(f);
  char text[512];
  copy_text(&c, text, sizeof(text));
  assert_string_equal(text, "/f1/a=1;/f1/b=2");
  assert_int_equal(loads(&c, false), 1);
  assert_int_equal(loads(&c, true), 0);
  assert_true(brume_revision_applied(&c.synced) >= r);

  put("/f1/c", "3");
  put("/f1/a", "10");
  assert_int_equal(brume_etcd_delete(etcd, "/f1/b", false, NULL, NULL), 0);
  int64_t last = put("/f1/d", "4");
  assert_true(brume_revision_wait(&c.synced, last, 5000));
  copy_text(&c, text, sizeof(text));
  assert_string_equal(text, "/f1/a=10;/f1/c=3;/f1/d=4");
  assert_int_equal(loads(&c, false), 1); /* changes come as events, not reloads */
  brume_etcd_follow_stop(f);
  copy_destroy(&c);
}

typedef struct resync_job {
  brume_etcd_follow *f;
  atomic_bool done;
} resync_job;

static void *resync_thread(void *arg) {
  resync_job *j = arg;
  brume_etcd_follow_resync(j->f);
  atomic_store(&j->done, true);
  return NULL;
}

/* A read again that fails (etcd down) is retried until etcd answers; then the copy is whole. */
static void test_resync_retries_until_etcd_answers(void **state) {
  (void)state;
  put("/f2/a", "1");
  copy c;
  copy_init(&c);
  brume_etcd_follow *f = brume_etcd_follow_start(etcd, "/f2/", &ops, &c, NULL);
  assert_non_null(f);
  brume_etcd_follow_resync(f); /* etcd up: at once */
  assert_int_equal(loads(&c, true), 1);

  assert_int_equal(brume_test_etcd_stop(server), 0);
  resync_job j = {.f = f};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, resync_thread, &j), 0);
  sleep(1);
  assert_false(atomic_load(&j.done)); /* still retrying */
  assert_int_equal(loads(&c, true), 1);
  assert_int_equal(brume_test_etcd_restart(server), 0);
  int64_t r = put("/f2/b", "2");
  pthread_join(t, NULL);
  assert_int_equal(loads(&c, true), 2);
  assert_true(brume_revision_wait(&c.synced, r, 10000)); /* the watch is back too */
  char text[512];
  copy_text(&c, text, sizeof(text));
  assert_string_equal(text, "/f2/a=1;/f2/b=2");
  brume_etcd_follow_stop(f);
  copy_destroy(&c);
}

/* A real gap: while etcd is down the watch backs off (to 1.6-3.2 s after 3.5 s); etcd comes back,
 * the test changes keys and compacts them away before the watch reconnects, so the watch can
 * only report the gap, and the follower reads everything again. The test cannot hold the watch
 * back: if it reconnected first (the changes then came as events, no gap), it tries again. */
static void test_watch_gap_reads_everything_again(void **state) {
  (void)state;
  put("/f3/a", "1");
  put("/f3/b", "1");
  copy c;
  copy_init(&c);
  brume_etcd_follow *f = brume_etcd_follow_start(etcd, "/f3/", &ops, &c, NULL);
  assert_non_null(f);
  int tries = 0;
  for (; tries < 3 && loads(&c, true) == 0; tries++) {
    assert_int_equal(brume_test_etcd_stop(server), 0);
    usleep(3500 * 1000);
    assert_int_equal(brume_test_etcd_restart(server), 0);
    put("/f3/a", "2");
    assert_int_equal(brume_etcd_delete(etcd, "/f3/b", false, NULL, NULL), 0);
    int64_t r = put("/f3/c", "2");
    assert_int_equal(brume_test_etcd_compact(server, r), 0);
    int64_t marker = put("/f3/d", "2"); /* after the compaction: the watch's first event */
    assert_true(brume_revision_wait(&c.synced, marker, 15000));
  }
  fprintf(stderr, "test_etcd_follow: the gap came on try %d\n", tries);
  assert_int_equal(loads(&c, true), 1);
  char text[512];
  copy_text(&c, text, sizeof(text));
  assert_string_equal(text, "/f3/a=2;/f3/c=2;/f3/d=2");
  brume_etcd_follow_stop(f);
  copy_destroy(&c);
}

/* No etcd: start fails with what it could not read. */
static void test_start_without_etcd(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_autofree char *ep = brume_xasprintf("http://127.0.0.1:%d", brume_test_free_port());
  brume_autoptr(brume_etcd) dead = brume_etcd_new(ep, &(brume_etcd_opts){.timeout_ms = 500}, &err);
  assert_non_null(dead);
  copy c;
  copy_init(&c);
  assert_null(brume_etcd_follow_start(dead, "/f4/", &ops, &c, &err));
  assert_non_null(err);
  assert_non_null(strstr(err->msg, "read the test keys under /f4/"));
  assert_int_equal(loads(&c, false), 0);
  brume_err_free(err);
  copy_destroy(&c);
}

int main(void) {
  if (!brume_test_etcd_available()) {
    fprintf(stderr, "etcd is not installed (deploy/install-deps.sh installs it): skipping\n");
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_load_then_changes),
      cmocka_unit_test(test_resync_retries_until_etcd_answers),
      cmocka_unit_test(test_watch_gap_reads_everything_again),
      cmocka_unit_test(test_start_without_etcd),
  };
  return cmocka_run_group_tests_name("etcd_follow", tests, group_setup, group_teardown);
}
