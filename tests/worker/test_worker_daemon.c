/* brume-worker end to end: the daemon as its own process, a real etcd, real microVMs.
 *
 *   test_worker_daemon GUEST_DIR BRUME_INIT ECHO_RUNTIME_STATIC BRUME_WORKER
 *
 * The guest image is built as test_microvm does; the function is the static echo runtime in a
 * zip served by a local HTTP server. Through the Worker gRPC service: CreateSandbox, 100
 * invocations with distinct payloads (the runtime's counter keeps counting, and libvirt shows
 * the domain paused between invocations: freeze_after is 0), bad input (memory 64 and 20,000,
 * a wrong digest that starts no VM, an unknown sandbox, payloads over 6 MiB), the host's key
 * in etcd, List and Stats, Destroy (the domain is gone), then kill -9 of the worker with a
 * sandbox alive and a restart with the same host id (no domain of this host is left), and a
 * clean SIGTERM (the registration is revoked). Those run with pool_size 0; then the pool, with
 * pool_size 2: once it is full, two CreateSandbox of 128 MiB are pool hits on different domains
 * and much faster than a boot (one of 256 MiB), the pool refills after the takes, a SIGTERM
 * destroys the pooled VMs, and after a kill -9 the restart cleanup does. Timings are printed
 * as "# " lines. Exit 77
 * (skip) when not root, libvirtd does not answer, etcd is absent or the guest image cannot be
 * built. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "brume/worker.pb-c.h"
#include "domain.h"
#include "etcd.h"
#include "log.h"
#include "proc.h"
#include "testutil.h"
#include "worker_calls.h"
#include "worker_fixture.h"

static brume_test_worker *w;
static char sandbox_id[80];
static const char *pool_size = "0"; /* --pool-size of the next start_worker */

static void start_worker(void) {
  const char *flags[] = {"--pool-size", pool_size, NULL};
  brume_test_worker_run(w, flags);
}

/* CreateSandbox of the echo function with memory and code digest sha. */
static int create(uint32_t memory, const char *sha, char *id, size_t idsize, double *ms,
                  brume_err **err) {
  brume_test_fn fn = {.memory_mib = memory, .sha = sha};
  return brume_test_worker_create(w, &fn, id, idsize, ms, NULL, err);
}

static int create_hit(char *id, size_t idsize, uint32_t memory, double *ms, bool *hit,
                      brume_err **err) {
  brume_test_fn fn = {.memory_mib = memory};
  return brume_test_worker_create(w, &fn, id, idsize, ms, hit, err);
}

static int invoke(const char *id, const char *rid, const void *payload, size_t len,
                  Brume__WorkerInvokeResponse **resp, brume_err **err) {
  return brume_test_worker_invoke(w, id, rid, payload, len, resp, err);
}

static int call(unsigned method, const void *req, void *reply, brume_err **err) {
  return brume_test_worker_call(w, method, req, reply, err);
}

static void test_create_and_invoke(void **state) {
  (void)state;
  brume_err *err = NULL;
  double ms = 0;
  if (create(128, w->zip_sha, sandbox_id, sizeof(sandbox_id), &ms, &err) != 0) {
    brume_test_worker_dump_log(w);
    fail_msg("CreateSandbox: %s", err->msg);
  }
  print_message("# CreateSandbox round trip %.0f ms (boot, TCG)\n", ms);
  assert_int_equal(brume_test_worker_domains(w), 1);

  double rtt[100];
  char rid[32], payload[64], want[96];
  for (int i = 1; i <= 100; i++) {
    snprintf(rid, sizeof(rid), "req-%d", i);
    snprintf(payload, sizeof(payload), "worker event %d %08x", i, (unsigned)i * 2654435761u);
    snprintf(want, sizeof(want), "%s #%d", payload, i);
    Brume__WorkerInvokeResponse *r = NULL;
    double t0 = brume_test_mono_ms();
    if (invoke(sandbox_id, rid, payload, strlen(payload), &r, &err) < 0)
      fail_msg("Invoke %d: %s", i, err->msg);
    rtt[i - 1] = brume_test_mono_ms() - t0;
    if (r->function_error)
      fail_msg("function error %s: %s", r->function_error->type, r->function_error->message);
    if (r->payload.len != strlen(want) || memcmp(r->payload.data, want, r->payload.len) != 0)
      fail_msg("payload %.*s, want %s", (int)r->payload.len, (const char *)r->payload.data, want);
    assert_int_equal(r->state, BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE);
    assert_true(r->duration_us > 0);
    brume__worker_invoke_response__free_unpacked(r, NULL);
    if (i == 50 || i == 100) {
      /* freeze_after 0: the worker suspends the domain right after answering. */
      long long end = brume_test_now_ms() + 3000;
      while (brume_test_worker_domain_state(w, sandbox_id) != VIR_DOMAIN_PAUSED &&
             brume_test_now_ms() < end)
        usleep(2000);
      assert_int_equal(brume_test_worker_domain_state(w, sandbox_id), VIR_DOMAIN_PAUSED);
    }
  }
  print_message(
      "# warm Invoke through the worker (thaw + invoke; freeze after): p50 %.2f ms, p99 %.2f "
      "ms, max %.2f ms (100, TCG)\n",
      brume_test_percentile(rtt, 100, 50), brume_test_percentile(rtt, 100, 99),
      brume_test_percentile(rtt, 100, 100));

  /* Freeze and Thaw are idempotent; Thaw then Invoke keeps counting. */
  Brume__WorkerFreezeRequest fr = BRUME__WORKER_FREEZE_REQUEST__INIT;
  fr.sandbox_id = sandbox_id;
  Brume__WorkerFreezeResponse *frr = NULL;
  assert_int_equal(call(BRUME_TEST_W_FREEZE, &fr, &frr, &err), 0);
  brume__worker_freeze_response__free_unpacked(frr, NULL);
  Brume__WorkerThawRequest th = BRUME__WORKER_THAW_REQUEST__INIT;
  th.sandbox_id = sandbox_id;
  Brume__WorkerThawResponse *thr = NULL;
  assert_int_equal(call(BRUME_TEST_W_THAW, &th, &thr, &err), 0);
  print_message("# Thaw %.2f ms\n", thr->duration_us / 1000.0);
  brume__worker_thaw_response__free_unpacked(thr, NULL);
  assert_int_equal(brume_test_worker_domain_state(w, sandbox_id), VIR_DOMAIN_RUNNING);
  Brume__WorkerInvokeResponse *r = NULL;
  assert_int_equal(invoke(sandbox_id, "req-101", "again", 5, &r, &err), 0);
  assert_int_equal(r->payload.len, strlen("again #101"));
  assert_memory_equal(r->payload.data, "again #101", r->payload.len);
  brume__worker_invoke_response__free_unpacked(r, NULL);
}

static void test_bad_input(void **state) {
  (void)state;
  brume_err *err = NULL;
  int rc;
  char id[80];
  rc = create(64, w->zip_sha, id, sizeof(id), NULL, &err);
  brume_test_expect_code(rc, err, BRUME_INVALID_ARGUMENT, "memory 64");
  assert_non_null(strstr(err->msg, "InvalidParameterValueException: "));
  brume_err_clear(&err);
  rc = create(20000, w->zip_sha, id, sizeof(id), NULL, &err);
  brume_test_expect_code(rc, err, BRUME_INVALID_ARGUMENT, "memory 20,000");
  brume_err_clear(&err);

  size_t before = brume_test_worker_domains(w);
  char bad[65];
  memset(bad, 'a', 64);
  bad[64] = '\0';
  rc = create(128, bad, id, sizeof(id), NULL, &err);
  if (rc == 0) fail_msg("a wrong digest was accepted");
  print_message("# wrong digest: status %d: %s\n", err->code, err->msg);
  assert_int_equal(err->code, BRUME_DATA_LOSS);
  brume_err_clear(&err);
  assert_int_equal(brume_test_worker_domains(w), before);

  Brume__WorkerInvokeResponse *r = NULL;
  rc = invoke("sb-nonexistent", "req-x", "x", 1, &r, &err);
  brume_test_expect_code(rc, err, BRUME_NOT_FOUND, "Invoke of an unknown sandbox");
  assert_non_null(strstr(err->msg, "ResourceNotFoundException: "));
  brume_err_clear(&err);

  size_t big = 6 * 1024 * 1024 + 1;
  uint8_t *p = brume_xcalloc(1, 7 * 1024 * 1024);
  memset(p, 'x', 7 * 1024 * 1024);
  rc = invoke(sandbox_id, "req-big", p, big, &r, &err);
  brume_test_expect_code(rc, err, BRUME_INVALID_ARGUMENT, "6 MiB + 1");
  assert_non_null(strstr(err->msg, "RequestTooLargeException: "));
  brume_err_clear(&err);
  rc = invoke(sandbox_id, "req-7mib", p, 7 * 1024 * 1024, &r, &err);
  assert_int_not_equal(rc, 0);
  assert_true(err->code == BRUME_RESOURCE_EXHAUSTED || err->code == BRUME_INVALID_ARGUMENT);
  print_message("# 7 MiB payload: status %d\n", err->code);
  brume_err_clear(&err);
  free(p);

  /* The sandbox still serves. */
  assert_int_equal(invoke(sandbox_id, "req-102", "still", 5, &r, &err), 0);
  assert_memory_equal(r->payload.data, "still #102", r->payload.len);
  brume__worker_invoke_response__free_unpacked(r, NULL);
}

static void test_etcd_list_stats(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_etcd *e = brume_etcd_new(w->etcd->endpoint, NULL, &err);
  assert_non_null(e);
  char key[128];
  snprintf(key, sizeof(key), "/brume/svc/worker/%s", w->host_id);
  brume_etcd_kv *kv = NULL;
  assert_int_equal(brume_etcd_get(e, key, &kv, NULL, &err), 0);
  if (kv == NULL) fail_msg("no key %s in etcd", key);
  print_message("# etcd %s = %s\n", key, kv->value);
  assert_non_null(strstr(kv->value, "\"accelerator\":"));
  brume_etcd_kv_free(kv);
  brume_etcd_free(e);

  Brume__WorkerListRequest lr = BRUME__WORKER_LIST_REQUEST__INIT;
  Brume__WorkerListResponse *l = NULL;
  assert_int_equal(call(BRUME_TEST_W_LIST, &lr, &l, &err), 0);
  assert_int_equal(l->n_sandboxes, 1);
  assert_string_equal(l->sandboxes[0]->sandbox_id, sandbox_id);
  assert_int_equal(l->sandboxes[0]->state, BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE);
  assert_int_equal(l->sandboxes[0]->invocations, 102);
  brume__worker_list_response__free_unpacked(l, NULL);

  Brume__WorkerStatsRequest sr = BRUME__WORKER_STATS_REQUEST__INIT;
  Brume__WorkerStatsResponse *s = NULL;
  assert_int_equal(call(BRUME_TEST_W_STATS, &sr, &s, &err), 0);
  assert_int_equal(s->sandboxes_created, 1);
  assert_int_equal(s->invocations, 102);
  assert_int_equal(s->host->sandboxes, 1);
  brume__worker_stats_response__free_unpacked(s, NULL);
}

static void test_destroy(void **state) {
  (void)state;
  brume_err *err = NULL;
  int rc;
  brume_test_worker_destroy(w, sandbox_id);
  assert_int_equal(brume_test_worker_domain_state(w, sandbox_id), -1);
  assert_int_equal(brume_test_worker_domains(w), 0);
  Brume__WorkerDestroyRequest dr = BRUME__WORKER_DESTROY_REQUEST__INIT;
  dr.sandbox_id = sandbox_id;
  Brume__WorkerDestroyResponse *d = NULL;
  rc = call(BRUME_TEST_W_DESTROY, &dr, &d, &err);
  brume_test_expect_code(rc, err, BRUME_NOT_FOUND, "Destroy again");
  brume_err_clear(&err);
  Brume__WorkerInvokeResponse *r = NULL;
  rc = invoke(sandbox_id, "req-gone", "x", 1, &r, &err);
  brume_test_expect_code(rc, err, BRUME_NOT_FOUND, "Invoke after Destroy");
  brume_err_clear(&err);
}

static void test_kill_and_restart(void **state) {
  (void)state;
  brume_err *err = NULL;
  int rc;
  char id[80];
  if (create(128, w->zip_sha, id, sizeof(id), NULL, &err) != 0) fail_msg("create: %s", err->msg);
  assert_int_equal(brume_test_worker_domains(w), 1);
  brume_test_worker_stop(w, SIGKILL, 5000);
  start_worker();
  long long end = brume_test_now_ms() + 10000;
  while (brume_test_worker_domains(w) != 0 && brume_test_now_ms() < end) usleep(50 * 1000);
  assert_int_equal(brume_test_worker_domains(w), 0);

  /* The new worker serves, and does not know the old sandbox. */
  Brume__WorkerInvokeResponse *r = NULL;
  rc = invoke(id, "req-old", "x", 1, &r, &err);
  brume_test_expect_code(rc, err, BRUME_NOT_FOUND, "old sandbox");
  brume_err_clear(&err);

  /* A clean stop destroys its sandboxes and revokes the registration. */
  if (create(128, w->zip_sha, id, sizeof(id), NULL, &err) != 0) fail_msg("create: %s", err->msg);
  int status = brume_test_worker_stop(w, SIGTERM, 30000);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(brume_test_worker_domains(w), 0);
  brume_etcd *e = brume_etcd_new(w->etcd->endpoint, NULL, &err);
  char key[128];
  snprintf(key, sizeof(key), "/brume/svc/worker/%s", w->host_id);
  brume_etcd_kv *kv = NULL;
  assert_int_equal(brume_etcd_get(e, key, &kv, NULL, &err), 0);
  assert_null(kv);
  brume_etcd_free(e);
}

static void test_pool(void **state) {
  (void)state;
  brume_err *err = NULL;
  pool_size = "2";
  start_worker();
  brume_test_worker_wait_pool(w, 2, 60000, "start");
  assert_int_equal(brume_test_worker_domains(w), 2);

  /* Two takes: pool hits, on two different domains, each named after its sandbox. */
  char id1[80], id2[80], id3[80];
  double hit1 = 0, hit2 = 0, boot = 0;
  bool hit = false;
  if (create_hit(id1, sizeof(id1), 128, &hit1, &hit, &err) != 0) fail_msg("create 1: %s", err->msg);
  assert_true(hit);
  if (create_hit(id2, sizeof(id2), 128, &hit2, &hit, &err) != 0) fail_msg("create 2: %s", err->msg);
  assert_true(hit);
  assert_string_not_equal(id1, id2);
  assert_true(brume_test_worker_domain_state(w, id1) >= 0);
  assert_true(brume_test_worker_domain_state(w, id2) >= 0);

  /* The sandboxes serve, each with its own runtime. */
  Brume__WorkerInvokeResponse *r = NULL;
  assert_int_equal(invoke(id1, "req-p1", "p1", 2, &r, &err), 0);
  assert_memory_equal(r->payload.data, "p1 #1", r->payload.len);
  brume__worker_invoke_response__free_unpacked(r, NULL);
  assert_int_equal(invoke(id2, "req-p2", "p2", 2, &r, &err), 0);
  assert_memory_equal(r->payload.data, "p2 #1", r->payload.len);
  brume__worker_invoke_response__free_unpacked(r, NULL);

  /* The pool refills: 2 sandboxes + 2 pooled VMs. */
  brume_test_worker_wait_pool(w, 2, 60000, "refill after 2 takes");
  assert_int_equal(brume_test_worker_domains(w), 4);

  /* Another memory size boots. */
  if (create_hit(id3, sizeof(id3), 256, &boot, &hit, &err) != 0)
    fail_msg("create 256: %s", err->msg);
  assert_false(hit);
  print_message(
      "# CreateSandbox round trip: from the pool %.0f ms and %.0f ms, boot (256 MiB) "
      "%.0f ms (TCG)\n",
      hit1, hit2, boot);
  assert_true(hit1 < boot / 2 && hit2 < boot / 2);
  assert_int_equal(brume_test_worker_domains(w), 5);

  Brume__WorkerStatsRequest sr = BRUME__WORKER_STATS_REQUEST__INIT;
  Brume__WorkerStatsResponse *s = NULL;
  assert_int_equal(call(BRUME_TEST_W_STATS, &sr, &s, &err), 0);
  assert_int_equal(s->sandboxes_created, 3);
  assert_int_equal(s->pool_hits, 2);
  assert_int_equal(s->host->sandboxes, 3);
  assert_int_equal(s->host->pool_ready, 2); /* the 256 MiB boot was not the pool's */
  brume__worker_stats_response__free_unpacked(s, NULL);

  /* A clean stop destroys the sandboxes and the pooled VMs. */
  int status = brume_test_worker_stop(w, SIGTERM, 30000);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(brume_test_worker_domains(w), 0);

  /* After a kill -9 (libvirtd's AUTODESTROY may already remove them) the restart cleanup finds
   * the pooled VMs by the name prefix. */
  start_worker();
  brume_test_worker_wait_pool(w, 2, 60000, "second start");
  brume_test_worker_stop(w, SIGKILL, 5000);
  pool_size = "0";
  start_worker();
  long long end = brume_test_now_ms() + 10000;
  while (brume_test_worker_domains(w) != 0 && brume_test_now_ms() < end) usleep(50 * 1000);
  assert_int_equal(brume_test_worker_domains(w), 0);
  status = brume_test_worker_stop(w, SIGTERM, 30000);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

int main(int argc, char **argv) {
  brume_log_init("test-worker-daemon", BRUME_LOG_WARN);
  int code = 0;
  w = brume_test_worker_prepare(argc, argv, "worker-daemon", "wd", &code);
  if (w == NULL) return code;
  start_worker();

  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_and_invoke), cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_etcd_list_stats),   cmocka_unit_test(test_destroy),
      cmocka_unit_test(test_kill_and_restart),  cmocka_unit_test(test_pool),
  };
  int rc = cmocka_run_group_tests_name("worker_daemon", tests, NULL, NULL);
  if (rc != 0) brume_test_worker_dump_log(w);

  brume_test_worker_free(w);
  return rc;
}
