/* brume-placement end to end: a real etcd, two brume-worker processes (real microVMs, each host
 * given 1,280 MiB for sandboxes: ten of 128 MiB) and one brume-placement process, driven through
 * the Placement gRPC service as the frontend will drive it, with the test invoking the sandboxes
 * it is handed on their workers.
 *
 *   test_placement_daemon GUEST_DIR BRUME_INIT ECHO_RUNTIME_STATIC BRUME_WORKER BRUME_PLACEMENT
 *
 * In order: the first acquire of a function is cold, the next after its release is warm and
 * gets the same sandbox (the echo runtime's counter goes on); bad input gets precise errors; 20
 * concurrent acquires of one function fill both hosts, ten each, and the 21st finds no room;
 * an idle sandbox is reaped after the keep-warm time (4 s here) and its worker has it no more;
 * provisioned concurrency 3 keeps 3 sandboxes past the keep-warm time and re-creates one
 * destroyed behind placement's back; a placement daemon killed with -9 and restarted keeps its
 * healthy sandboxes; a second placement daemon never hands out the first's sandboxes, and adopts
 * them when the first is killed; /healthz, /metrics (ListHosts' figures per host, and each
 * worker's own), --help and a wrong configuration; a drained
 * worker gets no new sandboxes until its drain ends; a worker killed with -9 is dropped within its
 * lease TTL and acquires go to the other. Timings are printed
 * as "# " lines. Exit 77 (skip) when not root, libvirtd does not answer, etcd is absent or the
 * guest image cannot be built. */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "brume/placement.pb-c.h"
#include "brume/worker.pb-c.h"
#include "cluster_fixture.h"
#include "log.h"
#include "proc.h"
#include "testutil.h"
#include "worker_calls.h"

/* Memory each worker host gives its sandboxes. */
#define HOST_CAP_MIB 1280
#define KEEP_WARM_MS 4000
/* The workers' registration lease (worker-agent/main.c). */
#define WORKER_LEASE_MS 10000

enum { P_ACQUIRE, P_RELEASE, P_LIST_HOSTS, P_LIST_SANDBOXES, P_PUT_PROVISIONED };

static brume_test_cluster *c;

/* ---- calls ---- */

/* The placement daemon the calls go to (c->pl[]). */
static size_t target;

static int call(unsigned method, const void *req, void *reply, brume_err **err) {
  brume_rpc_call_opts o = {.deadline_ms = 120000, .request_id = "test-placement"};
  return brume_rpc_unary(c->pl[target].client, &brume__placement__descriptor, method, req,
                         (ProtobufCMessage **)reply, &o, err);
}

/* AcquireSandbox of fn for caller; 0 with *resp (caller frees), or the status code with *err. */
static int acquire(const brume_test_fn *fn, const char *caller, bool warm_only,
                   Brume__AcquireSandboxResponse **resp, brume_err **err) {
  brume_test_spec ts;
  brume_test_spec_init(&ts, c->workers[0], fn);
  Brume__AcquireSandboxRequest req = BRUME__ACQUIRE_SANDBOX_REQUEST__INIT;
  req.spec = &ts.spec;
  req.caller_id = (char *)caller;
  req.warm_only = warm_only;
  return call(P_ACQUIRE, &req, resp, err) < 0 ? (int)(*err)->code : 0;
}

/* An acquire that must succeed with a sandbox. */
static Brume__AcquireSandboxResponse *acquire_ok(const brume_test_fn *fn, const char *caller) {
  brume_autoptr(brume_err) err = NULL;
  Brume__AcquireSandboxResponse *resp = NULL;
  if (acquire(fn, caller, false, &resp, &err) != 0) fail_msg("AcquireSandbox: %s", err->msg);
  assert_null(resp->init_error);
  assert_false(resp->no_idle_sandbox);
  assert_true(resp->sandbox_id[0] != '\0');
  return resp;
}

static int release(const char *id, Brume__SandboxOutcome outcome, const char *caller,
                   Brume__SandboxState *state, brume_err **err) {
  Brume__ReleaseSandboxRequest req = BRUME__RELEASE_SANDBOX_REQUEST__INIT;
  req.sandbox_id = (char *)id;
  req.outcome = outcome;
  req.caller_id = (char *)caller;
  Brume__ReleaseSandboxResponse *resp = NULL;
  if (call(P_RELEASE, &req, &resp, err) < 0) return (int)(*err)->code;
  *state = resp->state;
  brume__release_sandbox_response__free_unpacked(resp, NULL);
  return 0;
}

static void release_ok(const char *id, Brume__SandboxOutcome outcome, const char *caller,
                       Brume__SandboxState want) {
  brume_autoptr(brume_err) err = NULL;
  Brume__SandboxState state = 0;
  if (release(id, outcome, caller, &state, &err) != 0)
    fail_msg("ReleaseSandbox %s: %s", id, err->msg);
  assert_int_equal(state, want);
}

/* The sandboxes placement lists of function_name (NULL: all). Caller frees. */
static Brume__ListSandboxesResponse *placement_sandboxes(const char *function_name) {
  Brume__ListSandboxesRequest req = BRUME__LIST_SANDBOXES_REQUEST__INIT;
  if (function_name) {
    req.account_id = "acct1";
    req.function_name = (char *)function_name;
  }
  Brume__ListSandboxesResponse *resp = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (call(P_LIST_SANDBOXES, &req, &resp, &err) < 0) fail_msg("ListSandboxes: %s", err->msg);
  return resp;
}

static size_t placement_count(const char *function_name) {
  Brume__ListSandboxesResponse *r = placement_sandboxes(function_name);
  size_t n = r->n_sandboxes;
  brume__list_sandboxes_response__free_unpacked(r, NULL);
  return n;
}

static Brume__ListHostsResponse *placement_hosts(void) {
  Brume__ListHostsRequest req = BRUME__LIST_HOSTS_REQUEST__INIT;
  Brume__ListHostsResponse *resp = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (call(P_LIST_HOSTS, &req, &resp, &err) < 0) fail_msg("ListHosts: %s", err->msg);
  return resp;
}

/* The worker's sandboxes (not GONE) of function_name (NULL: all). Caller frees. */
static Brume__WorkerListResponse *worker_sandboxes(brume_test_worker *w,
                                                   const char *function_name) {
  Brume__WorkerListRequest req = BRUME__WORKER_LIST_REQUEST__INIT;
  if (function_name) {
    req.account_id = "acct1";
    req.function_name = (char *)function_name;
  }
  Brume__WorkerListResponse *resp = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (brume_test_worker_call(w, BRUME_TEST_W_LIST, &req, &resp, &err) < 0)
    fail_msg("List on %s: %s", w->host_id, err->msg);
  return resp;
}

/* Sandboxes of function_name on every running worker. */
static size_t workers_count(const char *function_name) {
  size_t n = 0;
  for (size_t i = 0; i < c->n_workers; i++) {
    if (c->workers[i]->pid <= 0) continue;
    Brume__WorkerListResponse *r = worker_sandboxes(c->workers[i], function_name);
    n += r->n_sandboxes;
    brume__worker_list_response__free_unpacked(r, NULL);
  }
  return n;
}

static bool worker_has(brume_test_worker *w, const char *id) {
  Brume__WorkerListResponse *r = worker_sandboxes(w, NULL);
  bool has = false;
  for (size_t i = 0; i < r->n_sandboxes; i++) has |= strcmp(r->sandboxes[i]->sandbox_id, id) == 0;
  brume__worker_list_response__free_unpacked(r, NULL);
  return has;
}

static brume_test_worker *worker_of(const Brume__AcquireSandboxResponse *a) {
  for (size_t i = 0; i < c->n_workers; i++)
    if (strcmp(c->workers[i]->host_id, a->host_id) == 0) return c->workers[i];
  fail_msg("host %s is none of the test's workers", a->host_id);
  return NULL;
}

/* Polls until function_name has want sandboxes both in placement and on the workers, or fails
 * after timeout_ms; returns how long it took. */
static double wait_count(const char *function_name, size_t want, int timeout_ms, const char *what) {
  double t0 = brume_test_mono_ms();
  size_t p = 0, w = 0;
  while (brume_test_mono_ms() - t0 < timeout_ms) {
    p = placement_count(function_name);
    w = workers_count(function_name);
    if (p == want && w == want) return brume_test_mono_ms() - t0;
    usleep(200 * 1000);
  }
  brume_test_cluster_dump_logs(c);
  fail_msg("%s: %zu sandboxes of %s in placement and %zu on the workers after %d ms, not %zu", what,
           p, function_name, w, timeout_ms, want);
  return 0;
}

/* ---- the tests ---- */

static void test_cold_then_warm(void **state) {
  (void)state;
  brume_test_fn fn = {.function_name = "cw"};
  int64_t before = brume_test_wall_ms();
  Brume__AcquireSandboxResponse *a = acquire_ok(&fn, "test/fe-1");
  assert_true(a->cold);
  assert_true(a->init_duration_us > 0);
  assert_true(a->lease_deadline_unix_ms >= before + 5000); /* the function's timeout at least */
  brume_test_worker *w = worker_of(a);
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", w->rpc_port);
  assert_string_equal(a->worker_address, addr);
  print_message("# cold acquire: init %.1f ms on %s\n", a->init_duration_us / 1000.0, a->host_id);
  brume_test_worker_expect_reply(w, a->sandbox_id, "req-cw-1", "hello", "hello #1");
  release_ok(a->sandbox_id, BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_OK, "test/fe-1",
             BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE);

  /* Warm: the same sandbox, whose runtime counts on. */
  double t0 = brume_test_mono_ms();
  Brume__AcquireSandboxResponse *b = acquire_ok(&fn, "test/fe-2");
  print_message("# warm acquire: %.2f ms round trip\n", brume_test_mono_ms() - t0);
  assert_false(b->cold);
  assert_int_equal(b->init_duration_us, 0);
  assert_string_equal(b->sandbox_id, a->sandbox_id);
  assert_string_equal(b->host_id, a->host_id);
  brume_test_worker_expect_reply(w, b->sandbox_id, "req-cw-2", "again", "again #2");

  /* Held: another caller cannot release it, and a warm-only acquire finds nothing idle. */
  brume_autoptr(brume_err) err = NULL;
  Brume__SandboxState st;
  int rc =
      release(b->sandbox_id, BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_OK, "test/fe-1", &st, &err);
  brume_test_expect_code(rc, err, BRUME_FAILED_PRECONDITION, "release by another caller");
  assert_non_null(strstr(err->msg, "InvalidSandboxStateException"));
  Brume__AcquireSandboxResponse *none = NULL;
  brume_err_clear(&err);
  assert_int_equal(acquire(&fn, "test/fe-3", true, &none, &err), 0);
  assert_true(none->no_idle_sandbox);
  assert_string_equal(none->sandbox_id, "");

  /* ListSandboxes and ListHosts show it. */
  Brume__ListSandboxesResponse *ls = placement_sandboxes("cw");
  assert_int_equal(ls->n_sandboxes, 1);
  assert_string_equal(ls->sandboxes[0]->sandbox_id, a->sandbox_id);
  assert_int_equal(ls->sandboxes[0]->state, BRUME__SANDBOX_STATE__SANDBOX_STATE_INVOKING);
  assert_int_equal(ls->sandboxes[0]->invocations, 2);
  assert_string_equal(ls->sandboxes[0]->function->version, "1");
  assert_int_equal(ls->sandboxes[0]->resources->memory_mib, 128);
  brume__list_sandboxes_response__free_unpacked(ls, NULL);
  Brume__ListHostsResponse *hs = placement_hosts();
  assert_int_equal(hs->n_hosts, 2);
  for (size_t i = 0; i < hs->n_hosts; i++) {
    assert_true(hs->hosts[i]->memory_mib > 0);
    assert_true(hs->hosts[i]->free_memory_mib <= HOST_CAP_MIB);
    assert_int_equal(hs->hosts[i]->sandboxes, strcmp(hs->hosts[i]->host_id, a->host_id) ? 0 : 1);
  }
  brume__list_hosts_response__free_unpacked(hs, NULL);

  release_ok(b->sandbox_id, BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_BROKEN, "test/fe-2",
             BRUME__SANDBOX_STATE__SANDBOX_STATE_TERMINATING);
  wait_count("cw", 0, 10000, "after a BROKEN release");
  brume__acquire_sandbox_response__free_unpacked(none, NULL);
  brume__acquire_sandbox_response__free_unpacked(b, NULL);
  brume__acquire_sandbox_response__free_unpacked(a, NULL);
}

static void expect_acquire_error(const brume_test_fn *fn, brume_status code, const char *part) {
  brume_autoptr(brume_err) err = NULL;
  Brume__AcquireSandboxResponse *resp = NULL;
  int rc = acquire(fn, "test/fe-bad", false, &resp, &err);
  if (rc == 0) fail_msg("AcquireSandbox succeeded; wanted %s", part);
  brume_test_expect_code(rc, err, code, part);
  if (strstr(err->msg, part) == NULL) fail_msg("\"%s\" does not say \"%s\"", err->msg, part);
  print_message("# refused: %s\n", err->msg);
}

static void test_bad_input(void **state) {
  (void)state;
  expect_acquire_error(&(brume_test_fn){.memory_mib = 64}, BRUME_INVALID_ARGUMENT,
                       "InvalidParameterValueException: spec.resources.memory_mib");
  expect_acquire_error(&(brume_test_fn){.memory_mib = 20000}, BRUME_INVALID_ARGUMENT,
                       "out of range");
  expect_acquire_error(&(brume_test_fn){.version = ""}, BRUME_INVALID_ARGUMENT,
                       "spec.function.version is missing");
  expect_acquire_error(&(brume_test_fn){.version = "1/2"}, BRUME_INVALID_ARGUMENT, "holds a '/'");
  /* More than any host has. */
  expect_acquire_error(&(brume_test_fn){.memory_mib = 2048}, BRUME_UNAVAILABLE,
                       "InsufficientCapacityException");
  /* A version whose code does not exist (the frontend would not know it): a digest no worker
   * has cached, at a URL that answers 404. The worker's answer, naming the host. */
  brume_test_code missing = c->workers[0]->codes[0];
  snprintf(missing.url, sizeof(missing.url), "%.200s.missing", c->workers[0]->codes[0].url);
  memset(missing.sha, 'e', 64);
  missing.sha[64] = '\0';
  expect_acquire_error(&(brume_test_fn){.function_name = "nocode", .code = &missing},
                       BRUME_UNAVAILABLE, "CodeUnavailableException");
  assert_int_equal(workers_count("nocode"), 0);
  assert_int_equal(placement_count("nocode"), 0);
}

static void test_bad_release(void **state) {
  (void)state;
  brume_autoptr(brume_err) err = NULL;
  Brume__SandboxState st;
  int rc = release("no-such-sandbox", BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_OK, "test/fe-1", &st,
                   &err);
  brume_test_expect_code(rc, err, BRUME_NOT_FOUND, "release of an unknown sandbox");
  assert_non_null(strstr(err->msg, "ResourceNotFoundException"));
  brume_err_clear(&err);
  rc = release("s", BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_UNSPECIFIED, "test/fe-1", &st, &err);
  brume_test_expect_code(rc, err, BRUME_INVALID_ARGUMENT, "release without an outcome");
  brume_err_clear(&err);
  rc = release("", BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_OK, "f", &st, &err);
  brume_test_expect_code(rc, err, BRUME_INVALID_ARGUMENT, "release without a sandbox id");
  brume_err_clear(&err);
  Brume__AcquireSandboxResponse *resp = NULL;
  brume_test_fn fn = {.function_name = "x"};
  rc = acquire(&fn, "", false, &resp, &err);
  brume_test_expect_code(rc, err, BRUME_INVALID_ARGUMENT, "acquire without a caller");
  assert_int_equal(workers_count("x"), 0);
}

typedef struct spread_arg {
  Brume__AcquireSandboxResponse *resp;
  brume_err *err;
  int rc;
} spread_arg;

static void *spread_one(void *p) {
  spread_arg *s = p;
  brume_test_fn fn = {.function_name = "spread"};
  s->rc = acquire(&fn, "test/fe-spread", false, &s->resp, &s->err);
  return NULL;
}

/* Waits until both hosts publish all their memory free and placement holds no reservation on
 * them (a worker publishes about once a second, so a sandbox destroyed a moment ago may still
 * count, and the reservation of one created a moment ago lasts until the worker's next
 * registration). */
static void wait_hosts_empty(void) {
  double t0 = brume_test_mono_ms();
  for (;;) {
    Brume__ListHostsResponse *hs = placement_hosts();
    size_t empty = 0;
    for (size_t i = 0; i < hs->n_hosts; i++)
      empty +=
          hs->hosts[i]->free_memory_mib == HOST_CAP_MIB && hs->hosts[i]->reserved_memory_mib == 0;
    bool done = hs->n_hosts == 2 && empty == 2;
    brume__list_hosts_response__free_unpacked(hs, NULL);
    if (done) return;
    if (brume_test_mono_ms() - t0 > 10000) fail_msg("the hosts did not publish all memory free");
    usleep(100 * 1000);
  }
}

static void test_spread_and_capacity(void **state) {
  (void)state;
  enum { N = 20 };
  wait_hosts_empty();
  spread_arg args[N] = {0};
  pthread_t th[N];
  double t0 = brume_test_mono_ms();
  for (int i = 0; i < N; i++)
    assert_int_equal(pthread_create(&th[i], NULL, spread_one, &args[i]), 0);
  for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
  print_message("# 20 concurrent cold acquires: %.0f ms\n", brume_test_mono_ms() - t0);
  size_t per_host[2] = {0};
  for (int i = 0; i < N; i++) {
    if (args[i].rc != 0) fail_msg("acquire %d: %s", i, args[i].err->msg);
    assert_true(args[i].resp->cold);
    per_host[worker_of(args[i].resp) == c->workers[1]]++;
  }
  print_message("# sandboxes per host: %zu and %zu\n", per_host[0], per_host[1]);
  /* Each host holds ten of 128 MiB: both are used, neither beyond its memory. */
  assert_int_equal(per_host[0], HOST_CAP_MIB / 128);
  assert_int_equal(per_host[1], HOST_CAP_MIB / 128);
  for (size_t h = 0; h < 2; h++) {
    Brume__WorkerListResponse *r = worker_sandboxes(c->workers[h], "spread");
    assert_int_equal(r->n_sandboxes, per_host[h]);
    brume__worker_list_response__free_unpacked(r, NULL);
  }
  /* The 21st finds no room, and says so. */
  expect_acquire_error(&(brume_test_fn){.function_name = "spread"}, BRUME_UNAVAILABLE,
                       "InsufficientCapacityException");
  for (int i = 0; i < N; i++) {
    release_ok(args[i].resp->sandbox_id, BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_BROKEN,
               "test/fe-spread", BRUME__SANDBOX_STATE__SANDBOX_STATE_TERMINATING);
    brume__acquire_sandbox_response__free_unpacked(args[i].resp, NULL);
  }
  wait_count("spread", 0, 30000, "after releasing all BROKEN");
}

static void test_keep_warm_reaped(void **state) {
  (void)state;
  long long before =
      brume_test_cluster_placement_metric(c, 0, "brume_placement_sandboxes_removed_total");
  brume_test_fn fn = {.function_name = "reap"};
  Brume__AcquireSandboxResponse *a = acquire_ok(&fn, "test/fe-1");
  release_ok(a->sandbox_id, BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_OK, "test/fe-1",
             BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE);
  double t0 = brume_test_mono_ms();
  assert_true(worker_has(worker_of(a), a->sandbox_id));
  double took = wait_count("reap", 0, KEEP_WARM_MS + 10000, "after the keep-warm time");
  print_message("# idle sandbox reaped %.0f ms after its release (keep-warm %d ms)\n",
                brume_test_mono_ms() - t0, KEEP_WARM_MS);
  assert_true(took >= KEEP_WARM_MS - 500);
  assert_false(worker_has(worker_of(a), a->sandbox_id));
  assert_true(brume_test_cluster_placement_metric(c, 0, "brume_placement_sandboxes_removed_total") >
              before);
  brume__acquire_sandbox_response__free_unpacked(a, NULL);
}

static void put_provisioned(const char *function_name, uint32_t count) {
  brume_test_fn fn = {.function_name = function_name};
  brume_test_spec ts;
  brume_test_spec_init(&ts, c->workers[0], &fn);
  Brume__PutProvisionedConcurrencyRequest req = BRUME__PUT_PROVISIONED_CONCURRENCY_REQUEST__INIT;
  req.spec = &ts.spec;
  req.count = count;
  Brume__PutProvisionedConcurrencyResponse *resp = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (call(P_PUT_PROVISIONED, &req, &resp, &err) < 0)
    fail_msg("PutProvisionedConcurrency: %s", err->msg);
  brume__put_provisioned_concurrency_response__free_unpacked(resp, NULL);
}

static void test_provisioned(void **state) {
  (void)state;
  put_provisioned("prov", 3);
  print_message("# 3 provisioned sandboxes up in %.0f ms\n",
                wait_count("prov", 3, 60000, "provisioned 3"));
  /* Past the keep-warm time they are all still there. */
  Brume__ListSandboxesResponse *first = placement_sandboxes("prov");
  usleep((KEEP_WARM_MS + 1500) * 1000);
  Brume__ListSandboxesResponse *later = placement_sandboxes("prov");
  assert_int_equal(later->n_sandboxes, 3);
  for (size_t i = 0; i < 3; i++)
    assert_string_equal(later->sandboxes[i]->sandbox_id, first->sandboxes[i]->sandbox_id);

  /* One destroyed behind placement's back comes back as a new one. */
  const char *victim = first->sandboxes[0]->sandbox_id;
  brume_test_worker *vw = strcmp(first->sandboxes[0]->host_id, c->workers[0]->host_id) == 0
                              ? c->workers[0]
                              : c->workers[1];
  brume_test_worker_destroy(vw, victim);
  double t0 = brume_test_mono_ms();
  bool back = false;
  while (!back && brume_test_mono_ms() - t0 < 60000) {
    usleep(200 * 1000);
    Brume__ListSandboxesResponse *now = placement_sandboxes("prov");
    bool victim_listed = false;
    for (size_t i = 0; i < now->n_sandboxes; i++)
      victim_listed |= strcmp(now->sandboxes[i]->sandbox_id, victim) == 0;
    back = now->n_sandboxes == 3 && !victim_listed && workers_count("prov") == 3;
    brume__list_sandboxes_response__free_unpacked(now, NULL);
  }
  if (!back) {
    brume_test_cluster_dump_logs(c);
    fail_msg("the destroyed provisioned sandbox was not re-created within 60 s");
  }
  print_message("# a provisioned sandbox destroyed behind placement's back re-created in %.0f ms\n",
                brume_test_mono_ms() - t0);

  /* The first acquire of a provisioned version is warm. */
  brume_test_fn fn = {.function_name = "prov"};
  Brume__AcquireSandboxResponse *a = acquire_ok(&fn, "test/fe-1");
  assert_false(a->cold);
  brume_test_worker_expect_reply(worker_of(a), a->sandbox_id, "req-prov-1", "p", "p #1");
  release_ok(a->sandbox_id, BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_OK, "test/fe-1",
             BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE);

  /* Count 0: they go. */
  put_provisioned("prov", 0);
  wait_count("prov", 0, 30000, "provisioned 0");
  brume__acquire_sandbox_response__free_unpacked(a, NULL);
  brume__list_sandboxes_response__free_unpacked(first, NULL);
  brume__list_sandboxes_response__free_unpacked(later, NULL);
}

static void start_placement_n(size_t i) {
  /* Debug level: the hosts' registrations and reservations are in the log a failure prints.
   * The hold margin covers test_spread_and_capacity's 20 cold starts at once: on a loaded 2-core
   * host they took 40 s, and a hold of the function's 5 s plus 5 s took the first ones back
   * (overdue) before the test listed them. Every test releases what it holds. */
  const char *flags[] = {
      "--keep-warm",   "4s",  "--reconcile-interval", "1s",    "--lease-ttl", "2s",
      "--hold-margin", "60s", "--log-level",          "debug", NULL};
  if (brume_test_cluster_start_placement(c, i, flags) < 0) {
    brume_test_cluster_dump_logs(c);
    fail_msg("brume-placement did not start");
  }
}

static void start_placement(void) {
  start_placement_n(0);
}

static int group_setup(void **state) {
  (void)state;
  start_placement();
  return 0;
}

static void test_placement_restart(void **state) {
  (void)state;
  brume_test_fn fn = {.function_name = "rs"};
  Brume__AcquireSandboxResponse *a = acquire_ok(&fn, "test/fe-1");
  Brume__AcquireSandboxResponse *b = acquire_ok(&fn, "test/fe-1");
  release_ok(a->sandbox_id, BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_OK, "test/fe-1",
             BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE);
  release_ok(b->sandbox_id, BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_OK, "test/fe-1",
             BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE);
  brume_test_cluster_stop_placement(c, 0, SIGKILL);
  double t0 = brume_test_mono_ms();
  start_placement();
  print_message("# placement restarted after kill -9 in %.0f ms\n", brume_test_mono_ms() - t0);
  Brume__ListSandboxesResponse *ls = placement_sandboxes("rs");
  assert_int_equal(ls->n_sandboxes, 2);
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(ls->sandboxes[i]->state, BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE);
    const char *id = ls->sandboxes[i]->sandbox_id;
    assert_true(strcmp(id, a->sandbox_id) == 0 || strcmp(id, b->sandbox_id) == 0);
  }
  brume__list_sandboxes_response__free_unpacked(ls, NULL);
  /* Still healthy, and handed out warm: the runtime counts on. */
  Brume__AcquireSandboxResponse *again = acquire_ok(&fn, "test/fe-2");
  assert_false(again->cold);
  brume_test_worker_expect_reply(worker_of(again), again->sandbox_id, "req-rs", "r", "r #1");
  release_ok(again->sandbox_id, BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_BROKEN, "test/fe-2",
             BRUME__SANDBOX_STATE__SANDBOX_STATE_TERMINATING);
  wait_count("rs", 1, 10000, "after one is released BROKEN");
  brume__acquire_sandbox_response__free_unpacked(again, NULL);
  brume__acquire_sandbox_response__free_unpacked(b, NULL);
  brume__acquire_sandbox_response__free_unpacked(a, NULL);
  wait_count("rs", 0, KEEP_WARM_MS + 10000, "after the keep-warm time");
}

/* A second daemon never hands out the first one's sandboxes; when the first dies, the second
 * adopts them (once the first's registration is gone) and hands them out. */
static void test_two_daemons(void **state) {
  (void)state;
  start_placement_n(1);
  brume_test_fn fn = {.function_name = "two"};
  target = 0;
  Brume__AcquireSandboxResponse *a = acquire_ok(&fn, "test/fe-1");
  release_ok(a->sandbox_id, BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_OK, "test/fe-1",
             BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE);
  target = 1;
  Brume__AcquireSandboxResponse *b = acquire_ok(&fn, "test/fe-2");
  assert_true(b->cold);
  assert_string_not_equal(b->sandbox_id, a->sandbox_id);
  release_ok(b->sandbox_id, BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_OK, "test/fe-2",
             BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE);
  /* Each lists its own. */
  for (size_t t = 0; t < 2; t++) {
    target = t;
    Brume__ListSandboxesResponse *ls = placement_sandboxes("two");
    assert_int_equal(ls->n_sandboxes, 1);
    assert_string_equal(ls->sandboxes[0]->sandbox_id, t == 0 ? a->sandbox_id : b->sandbox_id);
    brume__list_sandboxes_response__free_unpacked(ls, NULL);
  }
  /* The first dies: the second adopts its sandbox within the first's lease TTL (2 s) and a
   * reconcile (1 s). */
  brume_test_cluster_stop_placement(c, 0, SIGKILL);
  target = 1;
  double t0 = brume_test_mono_ms();
  while (placement_count("two") < 2 && brume_test_mono_ms() - t0 < 10000) usleep(100 * 1000);
  print_message("# the second daemon adopted the first's sandbox %.0f ms after kill -9\n",
                brume_test_mono_ms() - t0);
  assert_int_equal(placement_count("two"), 2);
  Brume__AcquireSandboxResponse *x = acquire_ok(&fn, "test/fe-3");
  Brume__AcquireSandboxResponse *y = acquire_ok(&fn, "test/fe-3");
  assert_false(x->cold);
  assert_false(y->cold);
  bool a_out =
      strcmp(x->sandbox_id, a->sandbox_id) == 0 || strcmp(y->sandbox_id, a->sandbox_id) == 0;
  assert_true(a_out);
  for (Brume__AcquireSandboxResponse *r = x; r; r = r == x ? y : NULL)
    release_ok(r->sandbox_id, BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_BROKEN, "test/fe-3",
               BRUME__SANDBOX_STATE__SANDBOX_STATE_TERMINATING);
  wait_count("two", 0, 10000, "after both are released BROKEN");
  /* The first comes back for the tests after this one; the second stops. */
  brume_test_cluster_stop_placement(c, 1, SIGTERM);
  target = 0;
  start_placement();
  brume__acquire_sandbox_response__free_unpacked(x, NULL);
  brume__acquire_sandbox_response__free_unpacked(y, NULL);
  brume__acquire_sandbox_response__free_unpacked(b, NULL);
  brume__acquire_sandbox_response__free_unpacked(a, NULL);
}

/* Fails the test unless the last line the shell command (a printf format) prints is want. */
static void expect_last_line(const char *want, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void expect_last_line(const char *want, const char *fmt, ...) {
  char cmd[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  char *line = brume_test_last_line(cmd);
  if (line == NULL || strcmp(line, want) != 0)
    fail_msg("`%s` printed \"%s\", not \"%s\"", cmd, line ? line : "(nothing)", want);
  free(line);
}

/* /healthz, /metrics, --help and a wrong configuration. */
static void test_http_and_config(void **state) {
  (void)state;
  expect_last_line("200", "curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/healthz",
                   c->pl[0].http_port);
  /* The daemon restarted in the test before: one call, so that the RPC series exist. */
  Brume__ListHostsResponse *hs = placement_hosts();
  assert_true(brume_test_cluster_placement_metric(c, 0, "brume_placement_acquires_total") >= 0);
  assert_true(brume_test_cluster_placement_metric(c, 0, "brume_placement_sandboxes") >= 0);
  assert_true(brume_test_cluster_placement_metric(c, 0, "brume_rpc_server_calls_total") > 0);
  /* ListHosts' figures per host (placement/host_metrics), and Stats' on each worker. */
  long long memory = 0, sandboxes = 0;
  for (size_t i = 0; i < hs->n_hosts; i++) {
    memory += (long long)hs->hosts[i]->memory_mib << 20;
    for (size_t k = 0; k < hs->hosts[i]->n_sandboxes_by_state; k++)
      sandboxes += hs->hosts[i]->sandboxes_by_state[k]->count;
  }
  assert_int_equal(hs->n_hosts, 2);
  assert_int_equal(brume_test_cluster_placement_metric(c, 0, "brume_placement_host_info"), 2);
  assert_int_equal(brume_test_cluster_placement_metric(c, 0, "brume_placement_host_memory_bytes"),
                   memory);
  assert_int_equal(brume_test_cluster_placement_metric(c, 0, "brume_placement_host_sandboxes"),
                   sandboxes);
  assert_true(
      brume_test_cluster_placement_metric(c, 0, "brume_placement_host_available_memory_bytes") > 0);
  for (size_t i = 0; i < 2; i++) {
    brume_test_worker *w = c->workers[i];
    assert_int_equal(brume_test_worker_metric(w, "brume_worker_accelerator_info"), 1);
    for (size_t k = 0; k < hs->n_hosts; k++)
      if (strcmp(hs->hosts[k]->host_id, w->host_id) == 0)
        assert_true(brume_test_worker_metric(w, "brume_worker_memory_bytes") ==
                    (long long)hs->hosts[k]->memory_mib << 20);
    assert_true(brume_test_worker_metric(w, "brume_worker_memory_free_bytes") >= 0);
    assert_true(brume_test_worker_metric(w, "brume_worker_sandboxes") >= 0);
  }
  brume__list_hosts_response__free_unpacked(hs, NULL);
  expect_last_line("1", "%s --help | grep -c keep_warm", c->placement_bin);
  const char *bad = "--check-config --etcd-endpoints http://127.0.0.1:1 --daemon-id 'a b'";
  expect_last_line("rc=2", "%s %s 2>&1; echo rc=$?", c->placement_bin, bad);
  expect_last_line("1", "%s %s 2>&1 | grep -c 'daemon_id \"a b\" must be'", c->placement_bin, bad);
}

/* Drains or undrains worker w. */
static void drain(brume_test_worker *w, bool on) {
  Brume__WorkerDrainRequest req = BRUME__WORKER_DRAIN_REQUEST__INIT;
  req.draining = on;
  Brume__WorkerDrainResponse *resp = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (brume_test_worker_call(w, BRUME_TEST_W_DRAIN, &req, &resp, &err) < 0)
    fail_msg("Drain on %s: %s", w->host_id, err->msg);
  brume__worker_drain_response__free_unpacked(resp, NULL);
}

/* Waits until placement's ListHosts shows w draining (on) or not. */
static void wait_drain_seen(brume_test_worker *w, bool on) {
  double t0 = brume_test_mono_ms();
  for (;;) {
    Brume__ListHostsResponse *hs = placement_hosts();
    bool seen = false;
    for (size_t i = 0; i < hs->n_hosts; i++)
      seen |= strcmp(hs->hosts[i]->host_id, w->host_id) == 0 && hs->hosts[i]->draining == on;
    brume__list_hosts_response__free_unpacked(hs, NULL);
    if (seen) break;
    if (brume_test_mono_ms() - t0 > 10000) fail_msg("placement did not see the drain");
    usleep(100 * 1000);
  }
  print_message("# placement saw %s drain %s after %.0f ms\n", w->host_id, on ? "start" : "end",
                brume_test_mono_ms() - t0);
}

/* A draining host gets no new sandboxes: acquires made at once after the drain began (before
 * placement may have seen it: a refused cold start goes to the other host) all land on the other
 * host, and the drained worker refuses a CreateSandbox of its own; once the drain ends, the spread
 * sends the next one there. */
static void test_drained_host(void **state) {
  (void)state;
  /* The first host: the choice's tie-break (the smallest id) goes there first, so that the first
   * acquire, made before the worker publishes its drain, is refused and sent to the other. */
  brume_test_worker *drained = c->workers[0], *other = c->workers[1];
  long long retries0 =
      brume_test_cluster_placement_metric(c, 0, "brume_placement_cold_start_retries_total");
  drain(drained, true);
  brume_test_fn fn = {.function_name = "drain"};
  Brume__AcquireSandboxResponse *held[4];
  for (int i = 0; i < 3; i++) {
    held[i] = acquire_ok(&fn, "test/fe-1");
    assert_string_equal(held[i]->host_id, other->host_id);
  }
  print_message(
      "# cold starts sent again after a refusal: %lld\n",
      brume_test_cluster_placement_metric(c, 0, "brume_placement_cold_start_retries_total") -
          retries0);
  wait_drain_seen(drained, true);
  char id[80];
  brume_autoptr(brume_err) err = NULL;
  brume_test_fn direct = {.function_name = "drain", .code = &c->workers[0]->codes[0]};
  int rc = brume_test_worker_create(drained, &direct, id, sizeof(id), NULL, NULL, &err);
  brume_test_expect_code(rc, err, BRUME_UNAVAILABLE, "CreateSandbox on a draining worker");
  assert_non_null(strstr(err->msg, "draining"));
  drain(drained, false);
  wait_drain_seen(drained, false);
  held[3] = acquire_ok(&fn, "test/fe-1");
  assert_string_equal(held[3]->host_id, drained->host_id);
  for (int i = 0; i < 4; i++) {
    release_ok(held[i]->sandbox_id, BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_BROKEN, "test/fe-1",
               BRUME__SANDBOX_STATE__SANDBOX_STATE_TERMINATING);
    brume__acquire_sandbox_response__free_unpacked(held[i], NULL);
  }
  wait_count("drain", 0, 10000, "after releasing them BROKEN");
}

static bool host_listed(const char *host_id) {
  Brume__ListHostsResponse *hs = placement_hosts();
  bool found = false;
  for (size_t i = 0; i < hs->n_hosts; i++) found |= strcmp(hs->hosts[i]->host_id, host_id) == 0;
  brume__list_hosts_response__free_unpacked(hs, NULL);
  return found;
}

static void test_worker_killed(void **state) {
  (void)state;
  /* A timeout longer than the lease TTL: held sandboxes are not taken back meanwhile. */
  brume_test_fn fn = {.function_name = "kill", .timeout_ms = 60000};
  /* One sandbox on each host (spread), held (so that the keep-warm time does not reap them
   * while the lease runs out). */
  Brume__AcquireSandboxResponse *a = acquire_ok(&fn, "test/fe-1");
  Brume__AcquireSandboxResponse *b = acquire_ok(&fn, "test/fe-1");
  assert_string_not_equal(a->host_id, b->host_id);
  if (worker_of(a) == c->workers[1]) {
    Brume__AcquireSandboxResponse *t = a;
    a = b;
    b = t;
  }
  brume_test_worker *dead = c->workers[1];
  brume_test_worker_stop(dead, SIGKILL, 10000);
  double t0 = brume_test_mono_ms();
  while (host_listed(dead->host_id) && brume_test_mono_ms() - t0 < WORKER_LEASE_MS + 3000)
    usleep(100 * 1000);
  double gone_ms = brume_test_mono_ms() - t0;
  print_message("# killed worker dropped by placement after %.0f ms (lease TTL %d ms)\n", gone_ms,
                WORKER_LEASE_MS);
  assert_false(host_listed(dead->host_id));
  /* Its sandbox is forgotten; every acquire now lands on the other host. */
  Brume__ListSandboxesResponse *ls = placement_sandboxes("kill");
  assert_int_equal(ls->n_sandboxes, 1);
  assert_string_equal(ls->sandboxes[0]->sandbox_id, a->sandbox_id);
  brume__list_sandboxes_response__free_unpacked(ls, NULL);
  /* The caller of the lost one finds it gone. */
  brume_autoptr(brume_err) err = NULL;
  Brume__SandboxState st;
  int rc = release(b->sandbox_id, BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_BROKEN, "test/fe-1", &st,
                   &err);
  brume_test_expect_code(rc, err, BRUME_NOT_FOUND, "release of a sandbox whose host died");
  for (int i = 0; i < 3; i++) {
    Brume__AcquireSandboxResponse *x = acquire_ok(&fn, "test/fe-3");
    assert_string_equal(x->host_id, c->workers[0]->host_id);
    brume_test_worker_expect_reply(c->workers[0], x->sandbox_id, "req-k", "k", "k #1");
    /* Held, so the next acquire needs another: a cold start on the live host. */
    brume__acquire_sandbox_response__free_unpacked(x, NULL);
  }
  brume__acquire_sandbox_response__free_unpacked(b, NULL);
  brume__acquire_sandbox_response__free_unpacked(a, NULL);
}

int main(int argc, char **argv) {
  brume_log_init("test-placement-daemon", BRUME_LOG_WARN);
  int code = 0;
  c = brume_test_cluster_prepare(argc, argv, "placement-daemon", "pd", 2, &code);
  if (c == NULL) return code;
  struct sysinfo si;
  if (sysinfo(&si) != 0) return 1;
  uint64_t total_mib = ((uint64_t)si.totalram * si.mem_unit) >> 20;
  char reserved[32];
  snprintf(reserved, sizeof(reserved), "%" PRIu64 "MiB", total_mib - HOST_CAP_MIB);
  const char *worker_flags[] = {"--pool-size", "0", "--reserved-memory", reserved, NULL};
  if (brume_test_cluster_start_workers(c, worker_flags) < 0) {
    brume_test_cluster_dump_logs(c);
    brume_test_cluster_free(c);
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cold_then_warm),    cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_bad_release),       cmocka_unit_test(test_spread_and_capacity),
      cmocka_unit_test(test_keep_warm_reaped),  cmocka_unit_test(test_provisioned),
      cmocka_unit_test(test_placement_restart), cmocka_unit_test(test_two_daemons),
      cmocka_unit_test(test_http_and_config),   cmocka_unit_test(test_drained_host),
      cmocka_unit_test(test_worker_killed),
  };
  int rc = cmocka_run_group_tests_name("placement_daemon", tests, group_setup, NULL);
  if (rc != 0) brume_test_cluster_dump_logs(c);
  brume_test_cluster_free(c);
  return rc;
}
