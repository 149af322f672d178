/* Holdings (counting/holdings.c) against a real etcd: blocks grow only as far as the limit leaves
 * room, shrink freely, vanish with their lease, and never sum past the limit while several
 * daemons grow and shrink at once. */
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
#include "holdings.h"
#include "proc.h"

BRUME_TEST_ETCD_GROUP()

static int64_t grant(int64_t ttl_s) {
  int64_t lease = 0;
  assert_int_equal(brume_etcd_lease_grant(etcd, ttl_s, &lease, NULL, NULL), 0);
  return lease;
}

static uint64_t sum_of(const char *prefix) {
  uint64_t sum = UINT64_MAX;
  assert_int_equal(brume_holdings_sum(etcd, prefix, &sum, NULL, NULL), 0);
  return sum;
}

/* Grows and asserts success; returns the block held. */
static uint32_t grow(const char *prefix, const char *id, int64_t lease, uint32_t limit,
                     uint32_t want, uint64_t *cluster) {
  brume_err *err = NULL;
  uint32_t held = UINT32_MAX;
  uint64_t c = UINT64_MAX;
  int rc = brume_holdings_grow(etcd, prefix, id, lease, limit, want, &held, &c, &err);
  if (rc < 0) fail_msg("grow %s%s: %s", prefix, id, err->msg);
  if (cluster) *cluster = c;
  return held;
}

static void test_grow_shrink_sum(void **state) {
  (void)state;
  const char *p = "/h1/acct/fn/";
  int64_t lease = grant(60);
  uint64_t cluster = 0;

  assert_int_equal(sum_of(p), 0);
  assert_int_equal(grow(p, "a", lease, 100, 12, &cluster), 12);
  assert_int_equal(cluster, 12);
  brume_etcd_kv *kv = NULL;
  assert_int_equal(brume_etcd_get(etcd, "/h1/acct/fn/a", &kv, NULL, NULL), 0);
  assert_non_null(kv);
  assert_string_equal(kv->value, "12");
  assert_int_equal(kv->lease, lease);
  brume_etcd_kv_free(kv);

  /* want is the whole block: 12 again grows nothing, and neither does less. */
  assert_int_equal(grow(p, "a", lease, 100, 12, &cluster), 12);
  assert_int_equal(grow(p, "a", lease, 100, 5, &cluster), 12);
  assert_int_equal(grow(p, "a", lease, 100, 70, &cluster), 70);
  assert_int_equal(grow(p, "a", lease, 100, 100, &cluster), 100);
  assert_int_equal(cluster, 100);
  assert_int_equal(grow(p, "a", lease, 100, 150, &cluster), 100);

  /* A second daemon finds nothing left; then only what the first gave up. */
  assert_int_equal(grow(p, "b", lease, 100, 30, &cluster), 0);
  assert_int_equal(cluster, 100);
  assert_int_equal(brume_etcd_get(etcd, "/h1/acct/fn/b", &kv, NULL, NULL), 0);
  assert_null(kv); /* refusing writes nothing */
  assert_int_equal(brume_holdings_shrink(etcd, p, "a", lease, 80, NULL), 0);
  assert_int_equal(grow(p, "b", lease, 100, 30, &cluster), 20);
  assert_int_equal(cluster, 100);
  assert_int_equal(brume_holdings_shrink(etcd, p, "a", lease, 50, NULL), 0);
  assert_int_equal(grow(p, "b", lease, 100, 30, &cluster), 30);
  assert_int_equal(cluster, 80);
  assert_int_equal(sum_of(p), 80);

  /* Shrinking to 0 deletes the key; deleting twice is fine. */
  assert_int_equal(brume_holdings_shrink(etcd, p, "a", lease, 0, NULL), 0);
  assert_int_equal(brume_etcd_get(etcd, "/h1/acct/fn/a", &kv, NULL, NULL), 0);
  assert_null(kv);
  assert_int_equal(brume_holdings_shrink(etcd, p, "a", lease, 0, NULL), 0);
  assert_int_equal(sum_of(p), 30);
  assert_int_equal(grow(p, "c", lease, 100, 100, &cluster), 70);
  int64_t rev = 0;
  uint64_t sum = 0;
  assert_int_equal(brume_holdings_sum(etcd, p, &sum, &rev, NULL), 0);
  assert_int_equal(sum, 100);
  assert_true(rev > 0);

  /* A neighbour whose name extends the prefix's last part is not counted. */
  assert_int_equal(brume_etcd_put(etcd, "/h1/acct/fn2/a", "50", 2, 0, NULL, NULL), 0);
  assert_int_equal(sum_of(p), 100);
  assert_int_equal(brume_etcd_lease_revoke(etcd, lease, NULL), 0);
  assert_int_equal(sum_of(p), 0);
}

/* ---- Several daemons at once ---- */

#define RACERS 4
#define RACE_LIMIT 100
#define RACE_MS 4000

typedef struct racer {
  char id[8];
  unsigned seed;
  brume_etcd *e;
  int64_t lease;
  uint32_t held; /* what it believes it holds */
  long calls, grew, aborted, errors, over_limit, shrank_below_self;
  char first_error[256];
} racer;

static _Atomic bool race_over;

static void *race(void *arg) {
  racer *r = arg;
  const char *p = "/h2/";
  while (!atomic_load(&race_over)) {
    brume_err *err = NULL;
    unsigned x = (unsigned)rand_r(&r->seed);
    if (x % 3 != 0) {
      uint32_t want = r->held + 1 + (x >> 4) % 30, held = 0;
      uint64_t cluster = 0;
      r->calls++;
      if (brume_holdings_grow(r->e, p, r->id, r->lease, RACE_LIMIT, want, &held, &cluster, &err) ==
          0) {
        if (held < r->held) r->shrank_below_self++;
        if (held > r->held) r->grew++;
        r->held = held;
        uint64_t sum = 0;
        if (cluster > RACE_LIMIT) r->over_limit++;
        if (brume_holdings_sum(r->e, p, &sum, NULL, &err) == 0 && sum > RACE_LIMIT) r->over_limit++;
      }
    } else {
      uint32_t keep = r->held ? (x >> 4) % (r->held + 1) : 0;
      if (brume_holdings_shrink(r->e, p, r->id, r->lease, keep, &err) == 0) r->held = keep;
    }
    if (err && err->code == BRUME_ABORTED) {
      r->aborted++;
    } else if (err) {
      if (r->errors++ == 0) snprintf(r->first_error, sizeof(r->first_error), "%s", err->msg);
    }
    brume_err_free(err);
  }
  return NULL;
}

/* Every revision under the prefix, as a watch delivers it: each one is a single write. */
typedef struct race_watch {
  uint32_t blocks[RACERS];
  uint64_t max_sum;
  long revisions, over_limit, strangers;
} race_watch;

static void on_race_events(const brume_etcd_event *ev, size_t n, void *user) {
  race_watch *w = user;
  for (size_t i = 0; i < n; i++) {
    int k = -1;
    if (sscanf(ev[i].kv.key, "/h2/r%d", &k) != 1 || k < 0 || k >= RACERS) {
      w->strangers++;
      continue;
    }
    w->blocks[k] = ev[i].type == BRUME_ETCD_EVENT_PUT ? (uint32_t)atol(ev[i].kv.value) : 0;
    uint64_t sum = 0;
    for (int j = 0; j < RACERS; j++) sum += w->blocks[j];
    if (sum > w->max_sum) w->max_sum = sum;
    if (sum > RACE_LIMIT) w->over_limit++;
    w->revisions++;
  }
}

static void test_racing_daemons_never_pass_the_limit(void **state) {
  (void)state;
  race_watch watched = {0};
  brume_etcd_watch *w = brume_etcd_watch_prefix(etcd, "/h2/", 0, on_race_events, &watched, NULL);
  assert_non_null(w);
  racer racers[RACERS];
  pthread_t threads[RACERS];
  memset(racers, 0, sizeof(racers));
  atomic_store(&race_over, false);
  for (int i = 0; i < RACERS; i++) {
    racer *r = &racers[i];
    snprintf(r->id, sizeof(r->id), "r%d", i);
    r->seed = (unsigned)(getpid() * 31 + i);
    r->e = brume_etcd_new(server->endpoint, &(brume_etcd_opts){.timeout_ms = 2000}, NULL);
    assert_non_null(r->e);
    assert_int_equal(brume_etcd_lease_grant(r->e, 60, &r->lease, NULL, NULL), 0);
  }
  for (int i = 0; i < RACERS; i++)
    assert_int_equal(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
  usleep(RACE_MS * 1000);
  atomic_store(&race_over, true);
  for (int i = 0; i < RACERS; i++) pthread_join(threads[i], NULL);

  long calls = 0, grew = 0, aborted = 0;
  uint64_t believed = 0;
  for (int i = 0; i < RACERS; i++) {
    racer *r = &racers[i];
    if (r->errors)
      fail_msg("racer %s: %ld errors, the first: %s", r->id, r->errors, r->first_error);
    assert_int_equal(r->over_limit, 0);
    assert_int_equal(r->shrank_below_self, 0);
    calls += r->calls;
    grew += r->grew;
    aborted += r->aborted;
    believed += r->held;
  }
  int64_t rev = 0;
  uint64_t sum = 0;
  assert_int_equal(brume_holdings_sum(etcd, "/h2/", &sum, &rev, NULL), 0);
  assert_int_equal(sum, believed);
  assert_true(sum <= RACE_LIMIT);

  /* Let the watch catch up with the last write, then check every revision it saw. */
  long long t0 = brume_test_now_ms();
  while (brume_etcd_watch_next_revision(w) <= rev && brume_test_now_ms() - t0 < 5000) usleep(10000);
  brume_etcd_watch_stop(w);
  printf(
      "# %d daemons, %d ms: %ld grow calls, %ld grew, %ld gave up (ABORTED); %ld revisions "
      "watched, the largest sum %llu of %d\n",
      RACERS, RACE_MS, calls, grew, aborted, watched.revisions, (unsigned long long)watched.max_sum,
      RACE_LIMIT);
  assert_int_equal(watched.over_limit, 0);
  assert_int_equal(watched.strangers, 0);
  assert_true(grew > RACERS);
  assert_true(watched.max_sum <= RACE_LIMIT);
  assert_true(watched.max_sum >= RACE_LIMIT - 30); /* the limit was really contended */

  for (int i = 0; i < RACERS; i++) {
    assert_int_equal(brume_etcd_lease_revoke(racers[i].e, racers[i].lease, NULL), 0);
    brume_etcd_free(racers[i].e);
  }
  assert_int_equal(sum_of("/h2/"), 0);
}

/* A daemon that stops renewing its lease loses its block to the others. */
static void test_block_goes_with_its_lease(void **state) {
  (void)state;
  const char *p = "/h3/";
  int64_t lease = 0, ttl = 0;
  assert_int_equal(brume_etcd_lease_grant(etcd, 2, &lease, &ttl, NULL), 0);
  assert_int_equal(grow(p, "dying", lease, 100, 100, NULL), 100);
  int64_t other = grant(60);
  assert_int_equal(grow(p, "other", other, 100, 100, NULL), 0);
  long long t0 = brume_test_now_ms(), took = -1;
  while (brume_test_now_ms() - t0 < (ttl + 6) * 1000) {
    if (grow(p, "other", other, 100, 100, NULL) == 100) {
      took = brume_test_now_ms() - t0;
      break;
    }
    usleep(100000);
  }
  printf("# the whole limit free %lld ms after the last grow under a %lld s lease\n", took,
         (long long)ttl);
  assert_true(took >= 0);
  brume_etcd_kv *kv = NULL;
  assert_int_equal(brume_etcd_get(etcd, "/h3/dying", &kv, NULL, NULL), 0);
  assert_null(kv);
  /* The dead lease cannot take anything back. */
  brume_err *err = NULL;
  assert_int_equal(brume_holdings_shrink(etcd, p, "dying", lease, 1, &err), -1);
  assert_int_equal(err->code, BRUME_NOT_FOUND);
  brume_err_clear(&err);
  assert_int_equal(brume_etcd_lease_revoke(etcd, other, NULL), 0);
}

/* A limit lowered below what is held: nobody grows, nobody loses a block, no error. */
static void test_lowered_limit_refuses_growth(void **state) {
  (void)state;
  const char *p = "/h4/";
  int64_t lease = grant(60);
  uint64_t cluster = 0;
  assert_int_equal(grow(p, "a", lease, 100, 60, NULL), 60);
  assert_int_equal(grow(p, "b", lease, 100, 40, NULL), 40);
  assert_int_equal(grow(p, "a", lease, 50, 70, &cluster), 60);
  assert_int_equal(cluster, 100);
  assert_int_equal(grow(p, "b", lease, 50, 45, &cluster), 40);
  assert_int_equal(grow(p, "c", lease, 50, 1, &cluster), 0);
  assert_int_equal(sum_of(p), 100);
  /* Still over the new limit after one shrink: still no room. */
  assert_int_equal(brume_holdings_shrink(etcd, p, "a", lease, 30, NULL), 0);
  assert_int_equal(grow(p, "a", lease, 50, 40, &cluster), 30);
  assert_int_equal(cluster, 70);
  /* Under it again: room for what is left, and no more. */
  assert_int_equal(brume_holdings_shrink(etcd, p, "b", lease, 10, NULL), 0);
  assert_int_equal(grow(p, "a", lease, 50, 45, &cluster), 40);
  assert_int_equal(cluster, 50);
  assert_int_equal(brume_etcd_lease_revoke(etcd, lease, NULL), 0);
}

static void test_bad_values_and_arguments(void **state) {
  (void)state;
  const char *p = "/h5/";
  int64_t lease = grant(60);
  brume_err *err = NULL;
  uint32_t held = 7;
  assert_int_equal(grow(p, "a", lease, 100, 10, NULL), 10);
  const char *bad[] = {"abc", "", "-1", " 5", "5 ", "4294967296", "99999999999"};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(bad); i++) {
    assert_int_equal(brume_etcd_put(etcd, "/h5/odd", bad[i], strlen(bad[i]), 0, NULL, NULL), 0);
    assert_int_equal(brume_holdings_grow(etcd, p, "a", lease, 100, 20, &held, NULL, &err), -1);
    assert_int_equal(err->code, BRUME_INTERNAL);
    assert_non_null(strstr(err->msg, "/h5/odd"));
    assert_int_equal(held, 7); /* untouched on error */
    brume_err_clear(&err);
    uint64_t sum = 0;
    assert_int_equal(brume_holdings_sum(etcd, p, &sum, NULL, &err), -1);
    assert_int_equal(err->code, BRUME_INTERNAL);
    brume_err_clear(&err);
  }
  /* Shrinking still works; the largest block size parses. */
  assert_int_equal(brume_holdings_shrink(etcd, p, "a", lease, 5, NULL), 0);
  assert_int_equal(brume_etcd_put(etcd, "/h5/odd", "4294967295", 10, 0, NULL, NULL), 0);
  assert_int_equal(sum_of(p), 4294967300ull);
  assert_int_equal(grow(p, "a", lease, 100, 20, NULL), 5);
  assert_int_equal(brume_etcd_delete(etcd, "/h5/odd", false, NULL, NULL), 0);
  assert_int_equal(grow(p, "a", lease, 100, 20, NULL), 20);

  const char *bad_prefixes[] = {"", "/h5", NULL};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(bad_prefixes); i++) {
    assert_int_equal(
        brume_holdings_grow(etcd, bad_prefixes[i], "a", lease, 100, 1, NULL, NULL, &err), -1);
    assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
    brume_err_clear(&err);
    assert_int_equal(brume_holdings_shrink(etcd, bad_prefixes[i], "a", lease, 1, &err), -1);
    assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
    brume_err_clear(&err);
    uint64_t sum;
    assert_int_equal(brume_holdings_sum(etcd, bad_prefixes[i], &sum, NULL, &err), -1);
    assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
    brume_err_clear(&err);
  }
  const char *bad_ids[] = {"", "a/b", NULL};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(bad_ids); i++) {
    assert_int_equal(brume_holdings_grow(etcd, p, bad_ids[i], lease, 100, 1, NULL, NULL, &err), -1);
    assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
    brume_err_clear(&err);
    assert_int_equal(brume_holdings_shrink(etcd, p, bad_ids[i], lease, 0, &err), -1);
    assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
    brume_err_clear(&err);
  }
  assert_int_equal(brume_etcd_lease_revoke(etcd, lease, NULL), 0);
}

static void test_etcd_down(void **state) {
  (void)state;
  const char *p = "/h6/";
  int64_t lease = grant(60);
  assert_int_equal(grow(p, "a", lease, 100, 10, NULL), 10);
  assert_int_equal(brume_test_etcd_stop(server), 0);
  brume_err *err = NULL;
  uint32_t held = 7;
  assert_int_equal(brume_holdings_grow(etcd, p, "a", lease, 100, 20, &held, NULL, &err), -1);
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  assert_non_null(strstr(err->msg, "/h6/a"));
  assert_int_equal(held, 7);
  brume_err_clear(&err);
  assert_int_equal(brume_holdings_shrink(etcd, p, "a", lease, 5, &err), -1);
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  brume_err_clear(&err);
  uint64_t sum;
  assert_int_equal(brume_holdings_sum(etcd, p, &sum, NULL, &err), -1);
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  assert_non_null(strstr(err->msg, "/h6/"));
  brume_err_clear(&err);

  assert_int_equal(brume_test_etcd_restart(server), 0);
  assert_int_equal(grow(p, "a", lease, 100, 20, NULL), 20);
  assert_int_equal(sum_of(p), 20);
  assert_int_equal(brume_etcd_lease_revoke(etcd, lease, NULL), 0);
}

int main(void) {
  if (!brume_test_etcd_available()) {
    fprintf(stderr, "etcd is not installed (deploy/install-deps.sh installs it): skipping\n");
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_grow_shrink_sum),
      cmocka_unit_test(test_racing_daemons_never_pass_the_limit),
      cmocka_unit_test(test_block_goes_with_its_lease),
      cmocka_unit_test(test_lowered_limit_refuses_growth),
      cmocka_unit_test(test_bad_values_and_arguments),
      cmocka_unit_test(test_etcd_down),
  };
  return cmocka_run_group_tests_name("holdings", tests, group_setup, group_teardown);
}
