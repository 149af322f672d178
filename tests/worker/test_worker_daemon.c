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
#include "worker_fixture.h"

enum { M_CREATE, M_INVOKE, M_FREEZE, M_THAW, M_DESTROY, M_LIST, M_STATS };

static brume_test_worker *w;
static brume_rpc_client *client; /* w->client */
static char sandbox_id[80];
static const char *pool_size = "0"; /* --pool-size of the next start_worker */

static void print_worker_log(void) {
  brume_test_worker_dump_log(w);
}

static void start_worker(void) {
  const char *flags[] = {"--pool-size", pool_size, NULL};
  double t0 = brume_test_mono_ms();
  assert_true(brume_test_worker_spawn(w, flags) > 0);
  if (brume_test_worker_wait(w, 120000) < 0) {
    print_worker_log();
    fail_msg("brume-worker did not listen on %d", w->rpc_port);
  }
  print_message("# worker start (libvirt, cleanup, accelerator probe, etcd) %.0f ms\n",
                brume_test_mono_ms() - t0);
  /* A fresh channel: the old one may still hold the killed worker's connection. */
  brume_rpc_client_free(w->client);
  brume_err *err = NULL;
  client = w->client = brume_test_worker_client(w, &err);
  if (client == NULL) fail_msg("client: %s", err->msg);
}

static int call(unsigned method, const void *req, void *reply, brume_err **err) {
  brume_rpc_call_opts o = {
      .deadline_ms = 120000, .request_id = "test-worker-daemon", .wait_for_ready = true};
  return brume_rpc_unary(client, &brume__worker__descriptor, method, req,
                         (ProtobufCMessage **)reply, &o, err);
}

static Brume__FunctionVersionRef fref = BRUME__FUNCTION_VERSION_REF__INIT;
static Brume__FunctionCode fcode = BRUME__FUNCTION_CODE__INIT;
static Brume__ResourceSpec fres = BRUME__RESOURCE_SPEC__INIT;

static Brume__SandboxSpec make_spec(uint32_t memory, const char *sha) {
  fref.account_id = "acct1";
  fref.function_name = "echo";
  fref.version = "1";
  fcode.sha256 = (char *)sha;
  fcode.url = w->code_url;
  fcode.size_bytes = w->zip_len;
  fres.memory_mib = memory;
  fres.ephemeral_storage_mib = 512;
  Brume__SandboxSpec s = BRUME__SANDBOX_SPEC__INIT;
  s.function = &fref;
  s.code = &fcode;
  s.resources = &fres;
  s.timeout_ms = 5000;
  s.handler_mode = BRUME__HANDLER_MODE__HANDLER_MODE_RUNTIME_API;
  s.handler = "echo.handler";
  s.function_arn = "arn:brume:lambda:local:acct1:function:echo:1";
  return s;
}

/* CreateSandbox; returns the status code (0: OK) and fills id on success. *hit gets pool_hit
 * (NULL: it must be false). */
static int create_ex(uint32_t memory, const char *sha, char *id, size_t idsize, double *ms,
                     bool *hit, brume_err **err) {
  Brume__SandboxSpec spec = make_spec(memory, sha);
  Brume__WorkerCreateSandboxRequest req = BRUME__WORKER_CREATE_SANDBOX_REQUEST__INIT;
  req.spec = &spec;
  req.caller_id = "test/daemon";
  Brume__WorkerCreateSandboxResponse *resp = NULL;
  double t0 = brume_test_mono_ms();
  if (call(M_CREATE, &req, &resp, err) < 0) return (*err)->code;
  if (ms) *ms = brume_test_mono_ms() - t0;
  if (resp->init_error)
    fail_msg("init error %s: %s", resp->init_error->type, resp->init_error->message);
  if (hit)
    *hit = resp->pool_hit;
  else
    assert_false(resp->pool_hit);
  assert_true(resp->init_duration_us > 0);
  if (resp->pool_hit)
    assert_int_equal(resp->vm_ready_us, 0);
  else
    assert_true(resp->vm_ready_us > 0 && resp->vm_ready_us <= resp->init_duration_us);
  print_message(
      "# CreateSandbox (%s): init %.1f ms = vm ready %.1f ms + code %.1f ms + runtime %.1f ms\n",
      resp->pool_hit ? "pool hit" : "boot", resp->init_duration_us / 1000.0,
      resp->vm_ready_us / 1000.0, resp->code_load_us / 1000.0, resp->runtime_init_us / 1000.0);
  snprintf(id, idsize, "%s", resp->sandbox_id);
  brume__worker_create_sandbox_response__free_unpacked(resp, NULL);
  return 0;
}

static int create(uint32_t memory, const char *sha, char *id, size_t idsize, double *ms,
                  brume_err **err) {
  return create_ex(memory, sha, id, idsize, ms, NULL, err);
}

static int invoke(const char *id, const char *rid, const void *payload, size_t len,
                  Brume__WorkerInvokeResponse **resp, brume_err **err) {
  Brume__WorkerInvokeRequest req = BRUME__WORKER_INVOKE_REQUEST__INIT;
  req.sandbox_id = (char *)id;
  req.request_id = (char *)rid;
  req.payload.data = (uint8_t *)payload;
  req.payload.len = len;
  return call(M_INVOKE, &req, resp, err);
}

static size_t domains_of_host(void) {
  size_t n = 0;
  brume_err *err = NULL;
  char **names = brume_libvirt_list_by_prefix(w->conn, w->name_prefix, &n, &err);
  if (names == NULL) fail_msg("list domains: %s", err->msg);
  brume_libvirt_names_free(names);
  return n;
}

static int domain_state(const char *id) {
  brume_err *err = NULL;
  brume_autofree char *name = brume_domain_name("brume", w->host_id, id, NULL);
  virDomainPtr dom = brume_libvirt_lookup(w->conn, name, &err);
  if (dom == NULL) {
    int code = err->code;
    brume_err_free(err);
    return code == BRUME_NOT_FOUND ? -1 : -2;
  }
  int st = -2;
  brume_libvirt_state(dom, &st, NULL, NULL);
  virDomainFree(dom);
  return st;
}

static void test_create_and_invoke(void **state) {
  (void)state;
  brume_err *err = NULL;
  double ms = 0;
  if (create(128, w->zip_sha, sandbox_id, sizeof(sandbox_id), &ms, &err) != 0) {
    print_worker_log();
    fail_msg("CreateSandbox: %s", err->msg);
  }
  print_message("# CreateSandbox round trip %.0f ms (boot, TCG)\n", ms);
  assert_int_equal(domains_of_host(), 1);

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
      while (domain_state(sandbox_id) != VIR_DOMAIN_PAUSED && brume_test_now_ms() < end)
        usleep(2000);
      assert_int_equal(domain_state(sandbox_id), VIR_DOMAIN_PAUSED);
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
  assert_int_equal(call(M_FREEZE, &fr, &frr, &err), 0);
  brume__worker_freeze_response__free_unpacked(frr, NULL);
  Brume__WorkerThawRequest th = BRUME__WORKER_THAW_REQUEST__INIT;
  th.sandbox_id = sandbox_id;
  Brume__WorkerThawResponse *thr = NULL;
  assert_int_equal(call(M_THAW, &th, &thr, &err), 0);
  print_message("# Thaw %.2f ms\n", thr->duration_us / 1000.0);
  brume__worker_thaw_response__free_unpacked(thr, NULL);
  assert_int_equal(domain_state(sandbox_id), VIR_DOMAIN_RUNNING);
  Brume__WorkerInvokeResponse *r = NULL;
  assert_int_equal(invoke(sandbox_id, "req-101", "again", 5, &r, &err), 0);
  assert_int_equal(r->payload.len, strlen("again #101"));
  assert_memory_equal(r->payload.data, "again #101", r->payload.len);
  brume__worker_invoke_response__free_unpacked(r, NULL);
}

static void expect_code(int rc, brume_err *err, brume_status want, const char *what) {
  if (rc == 0) fail_msg("%s: succeeded, want status %d", what, want);
  if ((int)err->code != (int)want)
    fail_msg("%s: status %d (%s), want %d", what, err->code, err->msg, want);
}

static void test_bad_input(void **state) {
  (void)state;
  brume_err *err = NULL;
  int rc;
  char id[80];
  rc = create(64, w->zip_sha, id, sizeof(id), NULL, &err);
  expect_code(rc, err, BRUME_INVALID_ARGUMENT, "memory 64");
  assert_non_null(strstr(err->msg, "InvalidParameterValueException: "));
  brume_err_clear(&err);
  rc = create(20000, w->zip_sha, id, sizeof(id), NULL, &err);
  expect_code(rc, err, BRUME_INVALID_ARGUMENT, "memory 20,000");
  brume_err_clear(&err);

  size_t before = domains_of_host();
  char bad[65];
  memset(bad, 'a', 64);
  bad[64] = '\0';
  rc = create(128, bad, id, sizeof(id), NULL, &err);
  if (rc == 0) fail_msg("a wrong digest was accepted");
  print_message("# wrong digest: status %d: %s\n", err->code, err->msg);
  assert_int_equal(err->code, BRUME_DATA_LOSS);
  brume_err_clear(&err);
  assert_int_equal(domains_of_host(), before);

  Brume__WorkerInvokeResponse *r = NULL;
  rc = invoke("sb-nonexistent", "req-x", "x", 1, &r, &err);
  expect_code(rc, err, BRUME_NOT_FOUND, "Invoke of an unknown sandbox");
  assert_non_null(strstr(err->msg, "ResourceNotFoundException: "));
  brume_err_clear(&err);

  size_t big = 6 * 1024 * 1024 + 1;
  uint8_t *p = brume_xcalloc(1, 7 * 1024 * 1024);
  memset(p, 'x', 7 * 1024 * 1024);
  rc = invoke(sandbox_id, "req-big", p, big, &r, &err);
  expect_code(rc, err, BRUME_INVALID_ARGUMENT, "6 MiB + 1");
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
  assert_int_equal(call(M_LIST, &lr, &l, &err), 0);
  assert_int_equal(l->n_sandboxes, 1);
  assert_string_equal(l->sandboxes[0]->sandbox_id, sandbox_id);
  assert_int_equal(l->sandboxes[0]->state, BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE);
  assert_int_equal(l->sandboxes[0]->invocations, 102);
  brume__worker_list_response__free_unpacked(l, NULL);

  Brume__WorkerStatsRequest sr = BRUME__WORKER_STATS_REQUEST__INIT;
  Brume__WorkerStatsResponse *s = NULL;
  assert_int_equal(call(M_STATS, &sr, &s, &err), 0);
  assert_int_equal(s->sandboxes_created, 1);
  assert_int_equal(s->invocations, 102);
  assert_int_equal(s->host->sandboxes, 1);
  brume__worker_stats_response__free_unpacked(s, NULL);
}

static void test_destroy(void **state) {
  (void)state;
  brume_err *err = NULL;
  int rc;
  Brume__WorkerDestroyRequest dr = BRUME__WORKER_DESTROY_REQUEST__INIT;
  dr.sandbox_id = sandbox_id;
  Brume__WorkerDestroyResponse *d = NULL;
  double t0 = brume_test_mono_ms();
  if (call(M_DESTROY, &dr, &d, &err) < 0) fail_msg("Destroy: %s", err->msg);
  print_message("# Destroy %.0f ms\n", brume_test_mono_ms() - t0);
  assert_int_equal(d->state, BRUME__SANDBOX_STATE__SANDBOX_STATE_GONE);
  brume__worker_destroy_response__free_unpacked(d, NULL);
  assert_int_equal(domain_state(sandbox_id), -1);
  assert_int_equal(domains_of_host(), 0);
  rc = call(M_DESTROY, &dr, &d, &err);
  expect_code(rc, err, BRUME_NOT_FOUND, "Destroy again");
  brume_err_clear(&err);
  Brume__WorkerInvokeResponse *r = NULL;
  rc = invoke(sandbox_id, "req-gone", "x", 1, &r, &err);
  expect_code(rc, err, BRUME_NOT_FOUND, "Invoke after Destroy");
  brume_err_clear(&err);
}

static void test_kill_and_restart(void **state) {
  (void)state;
  brume_err *err = NULL;
  int rc;
  char id[80];
  if (create(128, w->zip_sha, id, sizeof(id), NULL, &err) != 0) fail_msg("create: %s", err->msg);
  assert_int_equal(domains_of_host(), 1);
  brume_test_worker_stop(w, SIGKILL, 5000);
  start_worker();
  long long end = brume_test_now_ms() + 10000;
  while (domains_of_host() != 0 && brume_test_now_ms() < end) usleep(50 * 1000);
  assert_int_equal(domains_of_host(), 0);

  /* The new worker serves, and does not know the old sandbox. */
  Brume__WorkerInvokeResponse *r = NULL;
  rc = invoke(id, "req-old", "x", 1, &r, &err);
  expect_code(rc, err, BRUME_NOT_FOUND, "old sandbox");
  brume_err_clear(&err);

  /* A clean stop destroys its sandboxes and revokes the registration. */
  if (create(128, w->zip_sha, id, sizeof(id), NULL, &err) != 0) fail_msg("create: %s", err->msg);
  int status = brume_test_worker_stop(w, SIGTERM, 30000);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(domains_of_host(), 0);
  brume_etcd *e = brume_etcd_new(w->etcd->endpoint, NULL, &err);
  char key[128];
  snprintf(key, sizeof(key), "/brume/svc/worker/%s", w->host_id);
  brume_etcd_kv *kv = NULL;
  assert_int_equal(brume_etcd_get(e, key, &kv, NULL, &err), 0);
  assert_null(kv);
  brume_etcd_free(e);
}

/* Waits until the pool holds want VMs (booting one takes about a second under TCG). */
static void wait_pool(int want, int timeout_ms, const char *what) {
  double t0 = brume_test_mono_ms();
  long long end = brume_test_now_ms() + timeout_ms;
  while (brume_test_worker_pool_vms(w) != want && brume_test_now_ms() < end) usleep(100 * 1000);
  if (brume_test_worker_pool_vms(w) != want) {
    print_worker_log();
    fail_msg("%s: the pool holds %d VMs after %d ms, want %d", what, brume_test_worker_pool_vms(w),
             timeout_ms, want);
  }
  print_message("# %s: pool of %d ready after %.0f ms\n", what, want, brume_test_mono_ms() - t0);
}

static void test_pool(void **state) {
  (void)state;
  brume_err *err = NULL;
  pool_size = "2";
  start_worker();
  wait_pool(2, 60000, "start");
  assert_int_equal(domains_of_host(), 2);

  /* Two takes: pool hits, on two different domains, each named after its sandbox. */
  char id1[80], id2[80], id3[80];
  double hit1 = 0, hit2 = 0, boot = 0;
  bool hit = false;
  if (create_ex(128, w->zip_sha, id1, sizeof(id1), &hit1, &hit, &err) != 0)
    fail_msg("create 1: %s", err->msg);
  assert_true(hit);
  if (create_ex(128, w->zip_sha, id2, sizeof(id2), &hit2, &hit, &err) != 0)
    fail_msg("create 2: %s", err->msg);
  assert_true(hit);
  assert_string_not_equal(id1, id2);
  assert_true(domain_state(id1) >= 0);
  assert_true(domain_state(id2) >= 0);

  /* The sandboxes serve, each with its own runtime. */
  Brume__WorkerInvokeResponse *r = NULL;
  assert_int_equal(invoke(id1, "req-p1", "p1", 2, &r, &err), 0);
  assert_memory_equal(r->payload.data, "p1 #1", r->payload.len);
  brume__worker_invoke_response__free_unpacked(r, NULL);
  assert_int_equal(invoke(id2, "req-p2", "p2", 2, &r, &err), 0);
  assert_memory_equal(r->payload.data, "p2 #1", r->payload.len);
  brume__worker_invoke_response__free_unpacked(r, NULL);

  /* The pool refills: 2 sandboxes + 2 pooled VMs. */
  wait_pool(2, 60000, "refill after 2 takes");
  assert_int_equal(domains_of_host(), 4);

  /* Another memory size boots. */
  if (create_ex(256, w->zip_sha, id3, sizeof(id3), &boot, &hit, &err) != 0)
    fail_msg("create 256: %s", err->msg);
  assert_false(hit);
  print_message(
      "# CreateSandbox round trip: from the pool %.0f ms and %.0f ms, boot (256 MiB) "
      "%.0f ms (TCG)\n",
      hit1, hit2, boot);
  assert_true(hit1 < boot / 2 && hit2 < boot / 2);
  assert_int_equal(domains_of_host(), 5);

  Brume__WorkerStatsRequest sr = BRUME__WORKER_STATS_REQUEST__INIT;
  Brume__WorkerStatsResponse *s = NULL;
  assert_int_equal(call(M_STATS, &sr, &s, &err), 0);
  assert_int_equal(s->sandboxes_created, 3);
  assert_int_equal(s->pool_hits, 2);
  assert_int_equal(s->host->sandboxes, 3);
  brume__worker_stats_response__free_unpacked(s, NULL);

  /* A clean stop destroys the sandboxes and the pooled VMs. */
  int status = brume_test_worker_stop(w, SIGTERM, 30000);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(domains_of_host(), 0);

  /* After a kill -9 (libvirtd's AUTODESTROY may already remove them) the restart cleanup finds
   * the pooled VMs by the name prefix. */
  start_worker();
  wait_pool(2, 60000, "second start");
  brume_test_worker_stop(w, SIGKILL, 5000);
  pool_size = "0";
  start_worker();
  long long end = brume_test_now_ms() + 10000;
  while (domains_of_host() != 0 && brume_test_now_ms() < end) usleep(50 * 1000);
  assert_int_equal(domains_of_host(), 0);
  status = brume_test_worker_stop(w, SIGTERM, 30000);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

int main(int argc, char **argv) {
  brume_log_init("test-worker-daemon", BRUME_LOG_WARN);
  if (argc != 5) {
    fprintf(stderr,
            "usage: %s GUEST_DIR BRUME_INIT ECHO_RUNTIME_STATIC BRUME_WORKER (run it through "
            "ctest)\n",
            argv[0]);
    return 1;
  }
  if (geteuid() != 0) {
    fprintf(stderr, "test_worker_daemon: skipped: needs root for qemu:///system\n");
    return 77;
  }
  if (!brume_test_etcd_available()) {
    fprintf(stderr, "test_worker_daemon: skipped: no etcd binary on PATH\n");
    return 77;
  }
  brume_err *err = NULL;
  char host_id[32];
  snprintf(host_id, sizeof(host_id), "wd%d", (int)getpid());
  w = brume_test_worker_new(argv[4], host_id, &err);
  if (!w) {
    fprintf(stderr, "test_worker_daemon: skipped: %s\n", err->msg);
    brume_err_free(err);
    return 77;
  }
  if (brume_test_worker_guest(w, argv[1], argv[2]) < 0) {
    fprintf(stderr, "test_worker_daemon: skipped: the guest image cannot be built\n");
    brume_test_worker_free(w);
    return 77;
  }
  if (brume_test_worker_setup(w, "worker-daemon", argv[3]) < 0) {
    brume_test_worker_free(w);
    return 1;
  }
  start_worker();

  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_and_invoke), cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_etcd_list_stats),   cmocka_unit_test(test_destroy),
      cmocka_unit_test(test_kill_and_restart),  cmocka_unit_test(test_pool),
  };
  int rc = cmocka_run_group_tests_name("worker_daemon", tests, NULL, NULL);
  if (rc != 0) print_worker_log();

  brume_test_worker_free(w);
  return rc;
}
