/* placement/host_watch against a real etcd: the registrations present at start are read (a bad
 * one left out), new and changed ones follow, a bad value leaves a host as it was, keys that are
 * not one worker's are ignored, and a host whose key is deleted or whose lease expires leaves the
 * table and is reported gone; nothing is reported after stop. Label "placement" (not "unit"):
 * the harness starts etcd; exit 77 when there is no etcd binary. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
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
#include "host_watch.h"
#include "testutil.h"

#define PREFIX "/hw"
#define WAIT_MS 10000

BRUME_TEST_ETCD_GROUP()

static void put(const char *host_id, const char *value, int64_t lease) {
  char key[128];
  snprintf(key, sizeof(key), PREFIX "/svc/worker/%s", host_id);
  brume_err *err = NULL;
  if (brume_etcd_put(etcd, key, value, strlen(value), lease, NULL, &err) < 0)
    fail_msg("put %s: %s", key, err->msg);
}

static void del(const char *host_id) {
  char key[128];
  snprintf(key, sizeof(key), PREFIX "/svc/worker/%s", host_id);
  brume_err *err = NULL;
  if (brume_etcd_delete(etcd, key, false, NULL, &err) < 0) fail_msg("delete %s: %s", key, err->msg);
}

static const char *reg(uint32_t free_mib) {
  static char buf[256];
  snprintf(buf, sizeof(buf),
           "{\"addr\":\"127.0.0.1:7000\",\"vcpus\":2,\"memory_mib\":8192,\"free_memory_mib\":%u,"
           "\"vcpu_milli_committed\":0,\"accelerator\":\"TCG\"}",
           free_mib);
  return buf;
}

/* The hosts reported gone, in order. */
static pthread_mutex_t gone_mu = PTHREAD_MUTEX_INITIALIZER;
static char gone[16][64];
static size_t n_gone;

static void on_gone(void *arg, const char *host_id) {
  (void)arg;
  pthread_mutex_lock(&gone_mu);
  if (n_gone < 16) snprintf(gone[n_gone++], sizeof(gone[0]), "%s", host_id);
  pthread_mutex_unlock(&gone_mu);
}

static size_t gone_count(void) {
  pthread_mutex_lock(&gone_mu);
  size_t n = n_gone;
  pthread_mutex_unlock(&gone_mu);
  return n;
}

/* A host's published free memory, or -1 if the table lacks it. */
static long long free_of(brume_host_watch *w, const char *id) {
  brume_hosts *h = brume_host_watch_lock(w);
  const brume_host *host = brume_hosts_get(h, id);
  long long v = host ? (long long)host->free_memory_mib : -1;
  brume_host_watch_unlock(w);
  return v;
}

/* Waits up to WAIT_MS for free_of(id) == want. */
static void expect_free(brume_host_watch *w, const char *id, long long want) {
  double t0 = brume_test_mono_ms();
  long long v;
  while ((v = free_of(w, id)) != want && brume_test_mono_ms() - t0 < WAIT_MS) usleep(20 * 1000);
  if (v != want) fail_msg("host %s: free_memory_mib %lld, want %lld", id, v, want);
}

static void test_follow(void **state) {
  (void)state;
  brume_err *err = NULL;
  put("w1", reg(1000), 0);
  put("w2", reg(2000), 0);
  put("w3", "{\"addr\":", 0); /* not JSON: left out */
  brume_host_watch *w = brume_host_watch_start(etcd, PREFIX, 1, on_gone, NULL, &err);
  if (w == NULL) fail_msg("start: %s", err->msg);
  brume_hosts *h = brume_host_watch_lock(w);
  assert_int_equal(brume_hosts_count(h), 2);
  assert_string_equal(brume_hosts_at(h, 0)->id, "w1");
  assert_string_equal(brume_hosts_at(h, 1)->id, "w2");
  brume_host_watch_unlock(w);

  /* New, changed, and a bad value that changes nothing. */
  put("w4", reg(4000), 0);
  expect_free(w, "w4", 4000);
  put("w1", reg(900), 0);
  expect_free(w, "w1", 900);
  put("w2", "{\"addr\":\"x:1\"}", 0);
  put("w3", reg(3000), 0); /* now readable: it appears */
  expect_free(w, "w3", 3000);
  expect_free(w, "w2", 2000);

  /* Keys that are not one worker's registration. */
  brume_etcd_put(etcd, PREFIX "/svc/worker/w9/extra", "x", 1, 0, NULL, NULL);
  brume_etcd_put(etcd, PREFIX "/svc/counting/c0", "{}", 2, 0, NULL, NULL);
  put("w5", reg(5000), 0); /* after them, so that they were seen when w5 is */
  expect_free(w, "w5", 5000);
  assert_int_equal(free_of(w, "w9"), -1);
  h = brume_host_watch_lock(w);
  assert_int_equal(brume_hosts_count(h), 5);
  brume_host_watch_unlock(w);

  /* Deleted: gone at once, and reported. */
  assert_int_equal(gone_count(), 0);
  del("w2");
  expect_free(w, "w2", -1);
  double t0 = brume_test_mono_ms();
  while (gone_count() < 1 && brume_test_mono_ms() - t0 < WAIT_MS) usleep(10 * 1000);
  assert_int_equal(gone_count(), 1);
  assert_string_equal(gone[0], "w2");

  /* A lease that expires (nobody keeps it alive): gone within its TTL and a bit. */
  int64_t lease = 0;
  if (brume_etcd_lease_grant(etcd, 2, &lease, NULL, &err) < 0) fail_msg("lease: %s", err->msg);
  put("w6", reg(6000), lease);
  expect_free(w, "w6", 6000);
  expect_free(w, "w6", -1);
  t0 = brume_test_mono_ms();
  while (gone_count() < 2 && brume_test_mono_ms() - t0 < WAIT_MS) usleep(10 * 1000);
  assert_int_equal(gone_count(), 2);
  assert_string_equal(gone[1], "w6");

  /* After stop, nothing more is reported. */
  brume_host_watch_stop(w);
  del("w1");
  usleep(300 * 1000);
  assert_int_equal(gone_count(), 2);
}

int main(void) {
  if (!brume_test_etcd_available()) {
    fprintf(stderr, "test_placement_host_watch: no etcd binary on PATH; skipped\n");
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_follow),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
