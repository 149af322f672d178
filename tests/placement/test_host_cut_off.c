/* A worker host cut off from etcd and back (issue 8), end to end: a real etcd, one brume-worker
 * process (real microVMs, a pool of one) and one brume-placement process.
 *
 *   test_host_cut_off GUEST_DIR BRUME_INIT ECHO_RUNTIME_STATIC BRUME_WORKER BRUME_PLACEMENT
 *
 * What a cut longer than the registration's TTL looks like to the worker is a keepalive answered
 * NOT_FOUND once it reaches etcd again; the test makes that happen without cutting anything, by
 * revoking the worker's lease itself. Then: placement drops the host's sandboxes (ListSandboxes,
 * its host_gone counter); the worker registers again under a new lease; its idle (frozen)
 * sandbox is destroyed within seconds (gone from its List, from libvirt and from the processes);
 * the one that was invoking is listed TERMINATING until its invocation ends, its answer still
 * comes back, and then it goes; the pooled VM stays; placement never takes either back; and a
 * sandbox created after the return is not touched. Then the negative cases: etcd paused
 * (SIGSTOP) for less than the TTL, and etcd killed for longer than the TTL and restarted (a lost
 * quorum and its return: etcd extends every lease when it elects a leader), with the worker's
 * keepalives failing meanwhile: the lease stays and nothing is destroyed. Timings are printed as
 * "# " lines. Exit 77 (skip) when not root, libvirtd does not answer, etcd is absent or the guest
 * image cannot be built. */
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
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "brume/placement.pb-c.h"
#include "brume/worker.pb-c.h"
#include "cluster_fixture.h"
#include "etcd.h"
#include "log.h"
#include "proc.h"
#include "testutil.h"
#include "worker_calls.h"

/* The workers' registration lease and its renewal period (worker-agent/main.c,
 * common/registration.c). */
#define WORKER_LEASE_MS 10000
#define RENEW_MS (WORKER_LEASE_MS / 3)
/* How long the sleeping function sleeps: past the worker's next renewal after the revoke. */
#define SLEEP_S 8

enum { P_ACQUIRE, P_RELEASE, P_LIST_HOSTS, P_LIST_SANDBOXES };

#define TERMINATING BRUME__SANDBOX_STATE__SANDBOX_STATE_TERMINATING
#define IDLE BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE
#define INVOKING BRUME__SANDBOX_STATE__SANDBOX_STATE_INVOKING

static brume_test_cluster *c;
static brume_test_worker *w;
static brume_etcd *etcd;

/* The sleeping function: an EXEC handler that sleeps as many seconds as its event says, then
 * says so. A whole vCPU, so that its sh starts quickly under TCG. */
static const char sleep_sh[] =
    "#!/bin/sh\n"
    "ev=$(cat)\n"
    "sleep \"$ev\"\n"
    "printf 'slept %s' \"$ev\"\n";
static brume_test_fn sleep_fn = {.function_name = "sleeper",
                                 .vcpu_milli = 1000,
                                 .timeout_ms = 30000,
                                 .mode = BRUME__HANDLER_MODE__HANDLER_MODE_EXEC,
                                 .handler = "sleep.sh"};
static const brume_test_fn echo_fn = {.function_name = "cut", .timeout_ms = 30000};

/* ---- calls ---- */

static int call(unsigned method, const void *req, void *reply, brume_err **err) {
  brume_rpc_call_opts o = {.deadline_ms = 120000, .request_id = "test-cut-off"};
  return brume_rpc_unary(c->pl[0].client, &brume__placement__descriptor, method, req,
                         (ProtobufCMessage **)reply, &o, err);
}

static Brume__AcquireSandboxResponse *acquire_ok(const brume_test_fn *fn, const char *caller) {
  brume_test_spec ts;
  brume_test_spec_init(&ts, w, fn);
  Brume__AcquireSandboxRequest req = BRUME__ACQUIRE_SANDBOX_REQUEST__INIT;
  req.spec = &ts.spec;
  req.caller_id = (char *)caller;
  Brume__AcquireSandboxResponse *resp = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (call(P_ACQUIRE, &req, &resp, &err) < 0) fail_msg("AcquireSandbox: %s", err->msg);
  assert_null(resp->init_error);
  assert_true(resp->sandbox_id[0] != '\0');
  assert_string_equal(resp->host_id, w->host_id);
  return resp;
}

static void release_ok(const char *id, const char *caller) {
  Brume__ReleaseSandboxRequest req = BRUME__RELEASE_SANDBOX_REQUEST__INIT;
  req.sandbox_id = (char *)id;
  req.outcome = BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_OK;
  req.caller_id = (char *)caller;
  Brume__ReleaseSandboxResponse *resp = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (call(P_RELEASE, &req, &resp, &err) < 0) fail_msg("ReleaseSandbox %s: %s", id, err->msg);
  assert_int_equal(resp->state, IDLE);
  brume__release_sandbox_response__free_unpacked(resp, NULL);
}

/* Whether placement lists sandbox id. */
static bool placement_has(const char *id) {
  Brume__ListSandboxesRequest req = BRUME__LIST_SANDBOXES_REQUEST__INIT;
  Brume__ListSandboxesResponse *resp = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (call(P_LIST_SANDBOXES, &req, &resp, &err) < 0) fail_msg("ListSandboxes: %s", err->msg);
  bool has = false;
  for (size_t i = 0; i < resp->n_sandboxes; i++)
    has |= strcmp(resp->sandboxes[i]->sandbox_id, id) == 0;
  brume__list_sandboxes_response__free_unpacked(resp, NULL);
  return has;
}

/* Sandbox id's state as the worker lists it, 0 when it does not. */
static int worker_state(const char *id) {
  Brume__WorkerListRequest req = BRUME__WORKER_LIST_REQUEST__INIT;
  Brume__WorkerListResponse *resp = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (brume_test_worker_call(w, BRUME_TEST_W_LIST, &req, &resp, &err) < 0)
    fail_msg("List: %s", err->msg);
  int state = 0;
  for (size_t i = 0; i < resp->n_sandboxes; i++)
    if (strcmp(resp->sandboxes[i]->sandbox_id, id) == 0) state = (int)resp->sandboxes[i]->state;
  brume__worker_list_response__free_unpacked(resp, NULL);
  return state;
}

/* The lease the worker's registration key lives under now (0: no key). */
static int64_t worker_lease(void) {
  brume_autofree char *key = brume_xasprintf("/brume/svc/worker/%s", w->host_id);
  brume_autoptr(brume_etcd_kv) kv = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (brume_etcd_get(etcd, key, &kv, NULL, &err) < 0) fail_msg("etcd get %s: %s", key, err->msg);
  return kv ? kv->lease : 0;
}

/* Placement's count of sandboxes dropped with their host. */
static long long placement_host_gone(void) {
  long long n = brume_test_cluster_placement_metric(
      c, 0, "brume_placement_sandboxes_removed_total{reason=\"host_gone\"}");
  return n < 0 ? 0 : n;
}

static long long stale_destroyed(void) {
  return brume_test_metric(w->http_port,
                           "brume_worker_sandboxes_destroyed_total{reason=\"stale_lease\"}");
}

/* How many lines of the worker's log hold text. */
static int log_count(const char *text) {
  char path[700];
  snprintf(path, sizeof(path), "%s/worker.log", w->dir);
  size_t len = 0;
  brume_autofree char *log = (char *)brume_test_read_file(path, &len);
  if (log == NULL) fail_msg("cannot read %s", path);
  int n = 0;
  for (const char *p = log; (p = strstr(p, text)) != NULL; p++) n++;
  return n;
}

/* Fails the test (with the logs) unless cond holds within timeout_ms, polling it every 50 ms. */
#define WAIT_FOR(cond, timeout_ms, what)                                            \
  do {                                                                              \
    double t0_ = brume_test_mono_ms();                                              \
    while (!(cond) && brume_test_mono_ms() - t0_ < (timeout_ms)) usleep(50 * 1000); \
    if (!(cond)) {                                                                  \
      brume_test_cluster_dump_logs(c);                                              \
      fail_msg("%s (after %d ms)", what, (int)(timeout_ms));                        \
    }                                                                               \
  } while (0)

/* The names of the domains of the worker's host that are none of the sandboxes listed by the
 * worker: its pooled VMs. */
static size_t pool_domains(char names[][128], size_t max) {
  virDomainPtr *doms = NULL;
  int n = virConnectListAllDomains(w->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
  assert_true(n >= 0);
  Brume__WorkerListRequest req = BRUME__WORKER_LIST_REQUEST__INIT;
  Brume__WorkerListResponse *resp = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (brume_test_worker_call(w, BRUME_TEST_W_LIST, &req, &resp, &err) < 0)
    fail_msg("List: %s", err->msg);
  size_t k = 0;
  for (int i = 0; i < n; i++) {
    const char *name = virDomainGetName(doms[i]);
    bool sandbox = strncmp(name, w->name_prefix, strlen(w->name_prefix)) != 0;
    for (size_t j = 0; j < resp->n_sandboxes && !sandbox; j++)
      sandbox = strstr(name, resp->sandboxes[j]->sandbox_id) != NULL;
    if (!sandbox && k < max) snprintf(names[k++], 128, "%s", name);
    virDomainFree(doms[i]);
  }
  free(doms);
  brume__worker_list_response__free_unpacked(resp, NULL);
  return k;
}

static bool domain_exists(const char *name) {
  virDomainPtr d = virDomainLookupByName(w->conn, name);
  if (d) virDomainFree(d);
  return d != NULL;
}

/* An invocation on another thread. */
typedef struct bg_invoke {
  pthread_t thread;
  const char *id;
  const char *payload;
  Brume__WorkerInvokeResponse *resp;
  brume_err *err;
  double ended_ms; /* brume_test_mono_ms() when the answer came */
} bg_invoke;

static void *bg_invoke_run(void *arg) {
  bg_invoke *b = arg;
  brume_test_worker_invoke(w, b->id, "req-sleep", b->payload, strlen(b->payload), &b->resp,
                           &b->err);
  b->ended_ms = brume_test_mono_ms();
  return NULL;
}

/* ---- the tests ---- */

/* The lease revoked under a live worker: what a cut longer than the TTL looks like to it. */
static void test_lease_lost(void **state) {
  (void)state;
  /* An idle sandbox (frozen after its invocation: freeze_after 0). */
  Brume__AcquireSandboxResponse *a = acquire_ok(&echo_fn, "test/fe-1");
  brume_test_worker_expect_reply(w, a->sandbox_id, "req-a", "a", "a #1");
  release_ok(a->sandbox_id, "test/fe-1");
  /* A sandbox invoking for SLEEP_S seconds. */
  Brume__AcquireSandboxResponse *b = acquire_ok(&sleep_fn, "test/fe-1");
  brume_autofree char *a_dom = brume_test_worker_domain_name(w, a->sandbox_id);
  brume_autofree char *b_dom = brume_test_worker_domain_name(w, b->sandbox_id);
  /* The pool refilled after b's cold start took its VM: that VM must stay. */
  brume_test_worker_wait_pool(w, 1, 60000, "before the revoke");
  char pool[4][128];
  size_t n_pool = pool_domains(pool, 4);
  assert_int_equal(n_pool, 1);
  assert_int_equal(stale_destroyed(), 0);
  long long host_gone = placement_host_gone();

  char payload[8];
  snprintf(payload, sizeof(payload), "%d", SLEEP_S);
  bg_invoke inv = {.id = b->sandbox_id, .payload = payload};
  double invoked = brume_test_mono_ms();
  assert_int_equal(pthread_create(&inv.thread, NULL, bg_invoke_run, &inv), 0);
  WAIT_FOR(worker_state(b->sandbox_id) == INVOKING, 5000, "the sleeping sandbox is not invoking");

  int64_t lease = worker_lease();
  assert_true(lease != 0);
  brume_autoptr(brume_err) err = NULL;
  if (brume_etcd_lease_revoke(etcd, lease, &err) < 0) fail_msg("revoke: %s", err->msg);
  double t0 = brume_test_mono_ms();

  /* Placement drops the host and both sandboxes at once. */
  WAIT_FOR(!placement_has(a->sandbox_id) && !placement_has(b->sandbox_id), 5000,
           "placement still lists the sandboxes of a host whose lease went");
  double dropped = brume_test_mono_ms() - t0;
  assert_int_equal(placement_host_gone() - host_gone, 2);
  /* The worker registers again, under a new lease, at its next renewal. */
  WAIT_FOR(worker_lease() != 0 && worker_lease() != lease, RENEW_MS + 3000,
           "the worker did not register again under a new lease");
  double back = brume_test_mono_ms() - t0;
  /* It marked its sandboxes stale before it did: the invoking one is listed TERMINATING while its
   * invocation goes on (its VM is still there), so no reconcile can take it back. */
  assert_true(brume_test_mono_ms() - invoked < SLEEP_S * 1000 - 1000);
  assert_int_equal(worker_state(b->sandbox_id), TERMINATING);
  assert_true(domain_exists(b_dom));
  /* The idle one goes: from the worker's List, from libvirt, and its QEMU. */
  WAIT_FOR(
      worker_state(a->sandbox_id) == 0 && !domain_exists(a_dom) && brume_test_qemu_pid(a_dom) == 0,
      5000, "the idle stale sandbox was not destroyed");
  double a_gone = brume_test_mono_ms() - t0;
  print_message(
      "# lease revoked: placement dropped the sandboxes after %.0f ms, the worker "
      "registered again after %.0f ms (renewal period %d ms), the idle sandbox was gone "
      "(List, libvirt, QEMU) %.0f ms after the revoke, %.0f ms after the new lease\n",
      dropped, back, RENEW_MS, a_gone, a_gone - back);
  assert_true(domain_exists(b_dom));

  /* The invoking one answers, and then goes. */
  assert_int_equal(pthread_join(inv.thread, NULL), 0);
  if (inv.resp == NULL) fail_msg("the invocation of the stale sandbox failed: %s", inv.err->msg);
  assert_null(inv.resp->function_error);
  char want[32];
  snprintf(want, sizeof(want), "slept %d", SLEEP_S);
  assert_int_equal(inv.resp->payload.len, strlen(want));
  assert_memory_equal(inv.resp->payload.data, want, strlen(want));
  assert_int_equal(inv.resp->state, TERMINATING);
  WAIT_FOR(
      worker_state(b->sandbox_id) == 0 && !domain_exists(b_dom) && brume_test_qemu_pid(b_dom) == 0,
      5000, "the invoking stale sandbox was not destroyed after its answer");
  print_message(
      "# the invoking sandbox answered %.0f ms after the revoke and was gone (List, "
      "libvirt, QEMU) %.0f ms after its answer\n",
      inv.ended_ms - t0, brume_test_mono_ms() - inv.ended_ms);
  brume__worker_invoke_response__free_unpacked(inv.resp, NULL);
  assert_int_equal(stale_destroyed(), 2);
  assert_int_equal(log_count("Registration lease expired while cut off from etcd"), 1);

  /* The pooled VM stayed. */
  assert_true(domain_exists(pool[0]));
  assert_int_equal(brume_test_worker_pool_vms(w), 1);

  /* The host is back in placement; a sandbox made now is not stale, and placement's reconciles
   * (every second here) took none of the old ones back. */
  Brume__AcquireSandboxResponse *n = acquire_ok(&echo_fn, "test/fe-2");
  assert_true(n->cold);
  brume_test_worker_expect_reply(w, n->sandbox_id, "req-n", "n", "n #1");
  release_ok(n->sandbox_id, "test/fe-2");
  usleep(2500 * 1000);
  assert_false(placement_has(a->sandbox_id));
  assert_false(placement_has(b->sandbox_id));
  assert_true(placement_has(n->sandbox_id));
  assert_int_equal(worker_state(n->sandbox_id), IDLE);
  assert_int_equal(stale_destroyed(), 2);
  /* It is the warm one now. */
  Brume__AcquireSandboxResponse *again = acquire_ok(&echo_fn, "test/fe-2");
  assert_false(again->cold);
  assert_string_equal(again->sandbox_id, n->sandbox_id);
  release_ok(again->sandbox_id, "test/fe-2");
  brume__acquire_sandbox_response__free_unpacked(again, NULL);
  brume__acquire_sandbox_response__free_unpacked(n, NULL);
  brume__acquire_sandbox_response__free_unpacked(b, NULL);
  brume__acquire_sandbox_response__free_unpacked(a, NULL);
  if (inv.err) brume_err_free(inv.err);
}

/* After an etcd outage that did not expire the lease: the same lease, the same idle sandbox
 * handed out warm and answering, nothing destroyed. */
static void expect_nothing_lost(int64_t lease, const char *id, const char *rid, const char *want) {
  WAIT_FOR(worker_lease() == lease, 5000, "the worker's key is not back under its lease");
  usleep(RENEW_MS * 1000 + 500 * 1000); /* a renewal after the outage */
  assert_int_equal(worker_lease(), lease);
  assert_int_equal(worker_state(id), IDLE);
  assert_true(placement_has(id));
  assert_int_equal(stale_destroyed(), 2);
  assert_int_equal(log_count("msg=\"Registration lease expired; registering again.\""), 1);
  assert_int_equal(log_count("Registration lease expired while cut off from etcd"), 1);
  Brume__AcquireSandboxResponse *x = acquire_ok(&echo_fn, "test/fe-3");
  assert_false(x->cold);
  assert_string_equal(x->sandbox_id, id);
  brume_test_worker_expect_reply(w, id, rid, "z", want);
  release_ok(id, "test/fe-3");
  brume__acquire_sandbox_response__free_unpacked(x, NULL);
}

/* The one idle sandbox of echo_fn that placement has (test_lease_lost left it). */
static char *idle_echo(void) {
  Brume__AcquireSandboxResponse *x = acquire_ok(&echo_fn, "test/fe-3");
  assert_false(x->cold);
  char *id = brume_xstrdup(x->sandbox_id);
  release_ok(id, "test/fe-3");
  brume__acquire_sandbox_response__free_unpacked(x, NULL);
  return id;
}

/* etcd paused for less than the TTL: keepalives hang, the lease does not expire. */
static void test_etcd_paused(void **state) {
  (void)state;
  brume_autofree char *id = idle_echo();
  int64_t lease = worker_lease();
  assert_true(lease != 0);
  assert_int_equal(brume_test_sigstop(w->etcd->pid, 5000), 0);
  usleep(4500 * 1000);
  assert_int_equal(kill(w->etcd->pid, SIGCONT), 0);
  expect_nothing_lost(lease, id, "req-p", "z #2");
}

/* etcd down for longer than the TTL, then back with its data (a lost quorum that returns): the
 * worker's keepalives fail all along, and etcd extends every lease when it elects its leader. */
static void test_etcd_restarted(void **state) {
  (void)state;
  brume_autofree char *id = idle_echo();
  int64_t lease = worker_lease();
  int failures = log_count("Cannot renew the registration.");
  assert_int_equal(brume_test_etcd_kill(w->etcd), 0);
  usleep((WORKER_LEASE_MS + 2000) * 1000);
  /* The worker did try, and failed. */
  assert_true(log_count("Cannot renew the registration.") > failures);
  assert_int_equal(brume_test_etcd_restart(w->etcd), 0);
  expect_nothing_lost(lease, id, "req-r", "z #3");
}

int main(int argc, char **argv) {
  brume_log_init("test-host-cut-off", BRUME_LOG_WARN);
  int code = 0;
  c = brume_test_cluster_prepare(argc, argv, "host-cut-off", "co", 1, &code);
  if (c == NULL) return code;
  w = c->workers[0];
  const brume_test_file files[] = {{"sleep.sh", sleep_sh, 0755}};
  sleep_fn.code = brume_test_worker_add_code(w, "sleeper", files, 1);
  brume_err *err = NULL;
  etcd = sleep_fn.code ? brume_etcd_new(w->etcd->endpoint, &(brume_etcd_opts){0}, &err) : NULL;
  const char *worker_flags[] = {"--pool-size", "1", NULL};
  /* keep_warm stays 10 minutes: no idle sandbox is reaped or destroyed as an orphan by
   * placement during the test, so whatever goes was destroyed by its worker. */
  const char *placement_flags[] = {"--reconcile-interval", "1s", "--log-level", "debug", NULL};
  if (etcd == NULL || brume_test_cluster_start_workers(c, worker_flags) < 0 ||
      brume_test_cluster_start_placement(c, 0, placement_flags) < 0) {
    if (err) fprintf(stderr, "etcd client: %s\n", err->msg);
    brume_err_free(err);
    brume_test_cluster_dump_logs(c);
    brume_etcd_free(etcd);
    brume_test_cluster_free(c);
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lease_lost),
      cmocka_unit_test(test_etcd_paused),
      cmocka_unit_test(test_etcd_restarted),
  };
  int rc = cmocka_run_group_tests_name("host_cut_off", tests, NULL, NULL);
  if (rc != 0) brume_test_cluster_dump_logs(c);
  brume_etcd_free(etcd);
  brume_test_cluster_free(c);
  return rc;
}
