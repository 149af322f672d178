/* brume-counting as a process against a real etcd.
 *
 *   test_counting_daemon BRUME_COUNTING
 *
 * The configuration: --help exits 0 and lists every option; --check-config with a bad value
 * exits non-zero with a message naming it. The daemon: it registers its address in etcd, answers
 * /healthz 200 and /metrics with brume_counting_ figures; through the Counting service, bad input
 * gets INVALID_ARGUMENT (Acquire with kind UNSPECIFIED, or without a function; Release of a
 * malformed token; GetState with no account), a token of another daemon NOT_FOUND; an Acquire
 * WARM_ENVIRONMENT on a fresh account is granted, and its Release says was_held; a function with
 * reserved concurrency 0 is throttled with the reserved reason, counted in /metrics (where its
 * reserved concurrency shows too); SIGTERM stops the daemon cleanly and its registration goes.
 *
 * Batches: AcquireBatch and ReleaseBatch answer each request as Acquire and Release would, in
 * order, an invalid one failing alone; an empty batch is answered, one over 1,000 refused whole.
 * counting/client coalesces: with the daemon stopped (SIGSTOP) while 65 Acquires are queued, they
 * leave as 3 batch calls (2 alone, the rest together); a function with reserved concurrency 40
 * grants exactly 40, throttles 24 with the reserved reason, and fails the invalid one; the
 * releases come back was_held; a daemon that is not there fails each request with UNAVAILABLE;
 * freeing the client answers every queued request with CANCELLED. Exit 77 (skip) when etcd is
 * not on PATH. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "brume/counting.pb-c.h"
#include "client.h"
#include "etcd.h"
#include "etcd_server.h"
#include "mem.h"
#include "proc.h"
#include "rpc.h"
#include "testutil.h"
#include "tokens.h"

#define DAEMON_ID "cnt-test-1"
#define PREFIX "/brume-cnt-test"
#define M_ACQUIRE 0
#define M_RELEASE 1
#define M_GET_STATE 2
#define M_ACQUIRE_BATCH 3
#define M_RELEASE_BATCH 4

static const char *bin; /* brume-counting */
static char *dir;
static char log_path[600];
static brume_test_etcd *server;
static brume_etcd *etcd;
static pid_t pid = -1;
static int rpc_port, http_port;
static brume_rpc_client *client;

/* Runs brume-counting with args (NULL-terminated) to completion; its stdout and stderr go to
 * out. Returns the exit status, or -1 when it did not exit normally within 10 s. */
static int run_to_end(const char *out, ...) {
  char *argv[32];
  size_t n = 0;
  argv[n++] = (char *)bin;
  va_list ap;
  va_start(ap, out);
  for (char *a; (a = va_arg(ap, char *)) != NULL && n < BRUME_ARRAY_LEN(argv) - 1;) argv[n++] = a;
  va_end(ap);
  argv[n] = NULL;
  unlink(out);
  pid_t p = brume_test_spawn(argv, out);
  if (p < 0) return -1;
  long long end = brume_test_now_ms() + 10000;
  int status = 0;
  while (waitpid(p, &status, WNOHANG) == 0) {
    if (brume_test_now_ms() > end) {
      brume_test_stop(p, SIGKILL, 1000);
      return -1;
    }
    usleep(10000);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The file's text (caller frees); fails the test when it cannot be read. */
static char *slurp(const char *path) {
  size_t len = 0;
  char *s = (char *)brume_test_read_file(path, &len);
  if (s == NULL) fail_msg("cannot read %s", path);
  s[len] = '\0';
  return s;
}

static int group_setup(void **state) {
  (void)state;
  dir = brume_test_tmpdir("counting-daemon");
  if (dir == NULL) return -1;
  snprintf(log_path, sizeof(log_path), "%s/brume-counting.log", dir);
  if (brume_test_etcd_open(&server, &etcd) < 0) return -1;
  rpc_port = brume_test_free_port();
  http_port = brume_test_free_port();
  char listen[64], http_listen[64];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", rpc_port);
  snprintf(http_listen, sizeof(http_listen), "127.0.0.1:%d", http_port);
  char *argv[] = {(char *)bin, "--etcd-endpoints", server->endpoint, "--listen",
                  listen,      "--http-listen",    http_listen,      "--daemon-id",
                  DAEMON_ID,   "--etcd-prefix",    PREFIX,           "--lease-ttl",
                  "3s",        "--log-level",      "debug",          NULL};
  pid = brume_test_spawn(argv, log_path);
  /* HTTP starts last: once it answers, the daemon is serving. */
  if (pid < 0 || brume_test_wait_port(http_port, 15000) < 0) {
    fprintf(stderr, "brume-counting did not start\n");
    brume_test_dump_file(log_path);
    return -1;
  }
  brume_err *err = NULL;
  client = brume_rpc_client_new(listen, NULL, &err);
  if (client == NULL) {
    fprintf(stderr, "client: %s\n", err->msg);
    brume_err_free(err);
    return -1;
  }
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  brume_rpc_client_free(client);
  if (pid > 0) brume_test_stop(pid, SIGKILL, 5000);
  brume_test_etcd_close(server, etcd);
  if (dir) brume_test_rmtree(dir);
  free(dir);
  return 0;
}

/* A Counting call; 0 and *reply (caller frees), or -1 and *err. */
static int call(unsigned method, const void *req, void *reply, brume_err **err) {
  brume_rpc_call_opts o = {.deadline_ms = 10000, .request_id = "test-counting-daemon"};
  return brume_rpc_unary(client, &brume__counting__descriptor, method, req, reply, &o, err);
}

/* Asserts that a call fails with code and the server's message starting with reason (the client
 * puts the target and method before it). */
static void expect_fail(unsigned method, const void *req, brume_status code, const char *reason) {
  brume_err *err = NULL;
  ProtobufCMessage *reply = NULL;
  if (call(method, req, &reply, &err) == 0) {
    brume_proto_free(reply);
    fail_msg("%s succeeded; want code %d", brume__counting__descriptor.methods[method].name,
             (int)code);
  }
  char lead[128];
  snprintf(lead, sizeof(lead), "%s: %s: ", brume__counting__descriptor.methods[method].name,
           reason);
  if (err->code != code || strstr(err->msg, lead) == NULL)
    fail_msg("%s: code %d \"%s\"; want code %d \"%s: ...\"",
             brume__counting__descriptor.methods[method].name, (int)err->code, err->msg, (int)code,
             reason);
  brume_err_free(err);
}

/* acq: an Acquire of account's function with kind, from caller "test" (acq->function = fn). */
static void acquire_request(Brume__AcquireRequest *acq, Brume__FunctionRef *fn, const char *account,
                            const char *function, Brume__AcquireKind kind) {
  brume__function_ref__init(fn);
  fn->account_id = (char *)account;
  fn->function_name = (char *)function;
  brume__acquire_request__init(acq);
  acq->function = fn;
  acq->caller_id = "test";
  acq->kind = kind;
}

static void test_help(void **state) {
  (void)state;
  char out[700];
  snprintf(out, sizeof(out), "%s/help.out", dir);
  assert_int_equal(run_to_end(out, "--help", NULL), 0);
  brume_autofree char *text = slurp(out);
  const char *names[] = {"--daemon_id",   "--etcd_prefix",  "--lease_ttl",      "--threads",
                         "--etcd_jobs",   "--shrink_after", "--etcd_endpoints", "--listen",
                         "--http_listen", "brume-counting"};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(names); i++)
    if (strstr(text, names[i]) == NULL) fail_msg("--help does not mention %s:\n%s", names[i], text);
}

static void test_check_config(void **state) {
  (void)state;
  char out[700];
  snprintf(out, sizeof(out), "%s/check.out", dir);
  /* A good configuration passes. */
  assert_int_equal(run_to_end(out, "--check-config", "--etcd-endpoints", "http://127.0.0.1:1",
                              "--daemon-id", "cnt-9", NULL),
                   0);
  brume_autofree char *ok = slurp(out);
  assert_non_null(strstr(ok, "configuration OK"));

  /* Each bad value fails with a message that names it. */
  struct {
    const char *flag, *value, *want;
  } bad[] = {
      {"--threads", "0", "'threads' must be between 1 and 64"},
      {"--etcd-jobs", "65", "'etcd_jobs' must be between 1 and 64"},
      {"--lease-ttl", "1s", "lease_ttl"},
      {"--lease-ttl", "2500ms", "whole number of seconds"},
      {"--shrink-after", "50ms", "shrink_after"},
      {"--daemon-id", "has space", "no space"},
      {"--daemon-id", "a/b", "no '/'"},
      {"--daemon-id", "x12345678901234567890123456789012345678901234567890123456789012345",
       "must be 1-64"},
      {"--etcd-prefix", "brume", "etcd_prefix"},
      {"--etcd-prefix", "/brume/", "etcd_prefix"},
  };
  for (size_t i = 0; i < BRUME_ARRAY_LEN(bad); i++) {
    int rc = run_to_end(out, "--check-config", "--etcd-endpoints", "http://127.0.0.1:1",
                        "--daemon-id", "cnt-9", bad[i].flag, bad[i].value, NULL);
    brume_autofree char *text = slurp(out);
    if (rc == 0 || rc == -1 || strstr(text, bad[i].want) == NULL)
      fail_msg("%s %s: exit %d, output \"%s\"; want a failure saying \"%s\"", bad[i].flag,
               bad[i].value, rc, text, bad[i].want);
  }
}

static void test_registered(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_etcd_kv *kv = NULL;
  assert_int_equal(brume_etcd_get(etcd, PREFIX "/svc/counting/" DAEMON_ID, &kv, NULL, &err), 0);
  if (kv == NULL) fail_msg("no registration under %s/svc/counting/", PREFIX);
  char want[64];
  snprintf(want, sizeof(want), "\"addr\":\"127.0.0.1:%d\"", rpc_port);
  if (strstr(kv->value, want) == NULL) fail_msg("registration %s; want %s", kv->value, want);
  brume_etcd_kv_free(kv);
}

static void test_http(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof(cmd),
           "curl -s -o /dev/null -w '%%{http_code}\\n' --max-time 5 http://127.0.0.1:%d/healthz",
           http_port);
  brume_autofree char *code = brume_test_last_line(cmd);
  assert_non_null(code);
  assert_string_equal(code, "200");
  snprintf(cmd, sizeof(cmd),
           "curl -sf --max-time 5 http://127.0.0.1:%d/metrics | grep -c '^brume_counting_'",
           http_port);
  brume_autofree char *n = brume_test_last_line(cmd);
  if (n == NULL || atoi(n) < 1) fail_msg("/metrics has no brume_counting_ figure");
  snprintf(cmd, sizeof(cmd),
           "curl -sf --max-time 5 http://127.0.0.1:%d/metrics | "
           "grep -c '^brume_counting_grants_total{kind=\"warm\"}'",
           http_port);
  brume_autofree char *g = brume_test_last_line(cmd);
  if (g == NULL || atoi(g) != 1) fail_msg("/metrics has no brume_counting_grants_total{kind=warm}");
}

static void test_bad_input(void **state) {
  (void)state;
  Brume__FunctionRef fn;
  Brume__AcquireRequest acq;
  acquire_request(&acq, &fn, "111122223333", "fn", BRUME__ACQUIRE_KIND__ACQUIRE_KIND_UNSPECIFIED);
  /* kind UNSPECIFIED */
  expect_fail(M_ACQUIRE, &acq, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
  /* no function name */
  acq.kind = BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT;
  fn.function_name = "";
  expect_fail(M_ACQUIRE, &acq, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
  fn.function_name = "fn";
  /* no function at all */
  acq.function = NULL;
  expect_fail(M_ACQUIRE, &acq, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
  acq.function = &fn;
  /* upgrade_token with WARM_ENVIRONMENT */
  acq.upgrade_token = DAEMON_ID ".00f3a9c2b17d4e55";
  expect_fail(M_ACQUIRE, &acq, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
  acq.upgrade_token = "";
  /* hold_ms over 960,000 */
  acq.hold_ms = 960001;
  expect_fail(M_ACQUIRE, &acq, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");

  Brume__ReleaseRequest rel = BRUME__RELEASE_REQUEST__INIT;
  expect_fail(M_RELEASE, &rel, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
  rel.token = "not a token";
  expect_fail(M_RELEASE, &rel, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
  rel.token = "other-daemon.00f3a9c2b17d4e55";
  expect_fail(M_RELEASE, &rel, BRUME_NOT_FOUND, "ResourceNotFoundException");

  Brume__GetStateRequest gs = BRUME__GET_STATE_REQUEST__INIT;
  expect_fail(M_GET_STATE, &gs, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
}

static void test_acquire_release(void **state) {
  (void)state;
  Brume__FunctionRef fn;
  Brume__AcquireRequest acq;
  acquire_request(&acq, &fn, "444455556666", "warm-fn",
                  BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT);
  acq.hold_ms = 60000;
  brume_err *err = NULL;
  Brume__AcquireResponse *ar = NULL;
  if (call(M_ACQUIRE, &acq, &ar, &err) < 0) {
    brume_test_dump_file(log_path);
    fail_msg("Acquire WARM_ENVIRONMENT on a fresh account: %s", err->msg);
  }
  assert_true(ar->granted);
  assert_true(strncmp(ar->token, DAEMON_ID ".", strlen(DAEMON_ID ".")) == 0);
  assert_true(ar->token_deadline_unix_ms > brume_test_wall_ms());

  Brume__GetStateRequest gs = BRUME__GET_STATE_REQUEST__INIT;
  gs.account_id = fn.account_id;
  gs.function_name = fn.function_name;
  Brume__GetStateResponse *st = NULL;
  if (call(M_GET_STATE, &gs, &st, &err) < 0) fail_msg("GetState: %s", err->msg);
  assert_non_null(st->account);
  assert_string_equal(st->account->account_id, fn.account_id);
  assert_int_equal(st->account->in_use, 1);
  assert_non_null(st->function);
  assert_string_equal(st->function->function_name, fn.function_name);
  assert_int_equal(st->function->in_use, 1);
  brume__get_state_response__free_unpacked(st, NULL);

  Brume__ReleaseRequest rel = BRUME__RELEASE_REQUEST__INIT;
  rel.token = ar->token;
  rel.caller_id = "test";
  Brume__ReleaseResponse *rr = NULL;
  if (call(M_RELEASE, &rel, &rr, &err) < 0) fail_msg("Release: %s", err->msg);
  assert_true(rr->was_held);
  brume__release_response__free_unpacked(rr, NULL);
  /* Idempotent: the second Release answers, not held. */
  if (call(M_RELEASE, &rel, &rr, &err) < 0) fail_msg("second Release: %s", err->msg);
  assert_false(rr->was_held);
  brume__release_response__free_unpacked(rr, NULL);
  brume__acquire_response__free_unpacked(ar, NULL);

  char cmd[300];
  snprintf(cmd, sizeof(cmd),
           "curl -sf --max-time 5 http://127.0.0.1:%d/metrics | "
           "awk '$1 == \"brume_counting_grants_total{kind=\\\"warm\\\"}\" {print $2}'",
           http_port);
  brume_autofree char *g = brume_test_last_line(cmd);
  if (g == NULL || atoi(g) != 1) fail_msg("brume_counting_grants_total{kind=warm} is %s", g);
}

/* A function whose reserved concurrency is 0 is switched off: Acquire answers (not fails) with
 * granted false and the reserved reason, counted in brume_counting_throttles_total. */
static void test_throttle(void **state) {
  (void)state;
  const char *key = PREFIX "/limits/function/777788889999/off-fn";
  const char *value = "{\"reserved_concurrency\": 0}";
  brume_err *err = NULL;
  if (brume_etcd_put(etcd, key, value, strlen(value), 0, NULL, &err) < 0)
    fail_msg("put %s: %s", key, err->msg);
  Brume__FunctionRef fn;
  Brume__AcquireRequest acq;
  acquire_request(&acq, &fn, "777788889999", "off-fn",
                  BRUME__ACQUIRE_KIND__ACQUIRE_KIND_NEW_ENVIRONMENT);
  /* The daemon learns of the limit through its watch: a moment after the put. */
  Brume__AcquireResponse *ar = NULL;
  long long end = brume_test_now_ms() + 10000;
  for (;;) {
    if (call(M_ACQUIRE, &acq, &ar, &err) < 0) fail_msg("Acquire: %s", err->msg);
    if (!ar->granted || brume_test_now_ms() > end) break;
    Brume__ReleaseRequest rel = BRUME__RELEASE_REQUEST__INIT;
    rel.token = ar->token;
    Brume__ReleaseResponse *rr = NULL;
    if (call(M_RELEASE, &rel, &rr, &err) < 0) fail_msg("Release: %s", err->msg);
    brume__release_response__free_unpacked(rr, NULL);
    brume__acquire_response__free_unpacked(ar, NULL);
    usleep(50000);
  }
  assert_false(ar->granted);
  assert_int_equal(
      ar->throttle_reason,
      BRUME__THROTTLE_REASON__THROTTLE_REASON_RESERVED_FUNCTION_CONCURRENT_INVOCATION_LIMIT_EXCEEDED);
  assert_string_equal(ar->token, "");
  brume__acquire_response__free_unpacked(ar, NULL);

  char cmd[400];
  snprintf(cmd, sizeof(cmd),
           "curl -sf --max-time 5 http://127.0.0.1:%d/metrics | awk '$1 == "
           "\"brume_counting_throttles_total{reason=\\\"ReservedFunctionConcurrentInvocation"
           "LimitExceeded\\\"}\" {print $2}'",
           http_port);
  brume_autofree char *n = brume_test_last_line(cmd);
  if (n == NULL || atoi(n) < 1) fail_msg("the throttle is not counted in /metrics (%s)", n);
  /* GetState's figures are gauges too (counting/state_metrics): the switched-off function's. */
  long long reserved = brume_test_metric(
      http_port,
      "brume_counting_function_reserved_concurrency{account=\"777788889999\",function=\"off-fn\"}");
  if (reserved != 0) fail_msg("/metrics: off-fn's reserved concurrency is %lld, not 0", reserved);
}

/* Puts a function's limits and waits until the daemon shows its reserved concurrency. */
static void put_reserved(const char *account, const char *function, int reserved) {
  char key[256], value[64];
  snprintf(key, sizeof(key), PREFIX "/limits/function/%s/%s", account, function);
  snprintf(value, sizeof(value), "{\"reserved_concurrency\": %d}", reserved);
  brume_err *err = NULL;
  if (brume_etcd_put(etcd, key, value, strlen(value), 0, NULL, &err) < 0)
    fail_msg("put %s: %s", key, err->msg);
  Brume__GetStateRequest gs = BRUME__GET_STATE_REQUEST__INIT;
  gs.account_id = (char *)account;
  gs.function_name = (char *)function;
  for (long long end = brume_test_now_ms() + 10000;;) {
    Brume__GetStateResponse *st = NULL;
    if (call(M_GET_STATE, &gs, &st, &err) < 0) fail_msg("GetState: %s", err->msg);
    bool seen = st->function && st->function->reserved &&
                st->function->reserved_concurrency == (uint32_t)reserved;
    brume__get_state_response__free_unpacked(st, NULL);
    if (seen) return;
    if (brume_test_now_ms() > end) fail_msg("the daemon does not show %s's limit", key);
    usleep(20000);
  }
}

/* SIGSTOPs the daemon and waits until it is stopped (brume_test_sigstop). */
static void stop_daemon(void) {
  if (brume_test_sigstop(pid, 5000) < 0) fail_msg("brume-counting (pid %d) did not stop", (int)pid);
}

/* Asserts that status i of a batch failed with code and a message led by reason. */
static void expect_status(Brume__BatchStatus *const *st, size_t i, brume_status code,
                          const char *reason) {
  if (st[i]->code != (int32_t)code || strncmp(st[i]->message, reason, strlen(reason)) != 0 ||
      st[i]->message[strlen(reason)] != ':')
    fail_msg("status %zu: code %d \"%s\"; want code %d \"%s: ...\"", i, st[i]->code, st[i]->message,
             (int)code, reason);
}

/* AcquireBatch and ReleaseBatch through the raw RPC: each request answered as its own call would
 * be, in order. */
static void test_batches(void **state) {
  (void)state;
  put_reserved("121212121212", "off-batch", 0);
  Brume__FunctionRef fn = BRUME__FUNCTION_REF__INIT, off = BRUME__FUNCTION_REF__INIT;
  fn.account_id = off.account_id = "121212121212";
  fn.function_name = "batch-fn";
  off.function_name = "off-batch";
  Brume__AcquireRequest ok1 = BRUME__ACQUIRE_REQUEST__INIT, no_fn = BRUME__ACQUIRE_REQUEST__INIT,
                        no_kind = BRUME__ACQUIRE_REQUEST__INIT, offr = BRUME__ACQUIRE_REQUEST__INIT,
                        ok2 = BRUME__ACQUIRE_REQUEST__INIT;
  ok1.function = ok2.function = no_kind.function = &fn;
  offr.function = &off;
  ok1.kind = ok2.kind = no_fn.kind = offr.kind = BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT;
  Brume__AcquireRequest *reqs[] = {&ok1, &no_fn, &no_kind, &offr, &ok2};
  Brume__AcquireBatchRequest ab = BRUME__ACQUIRE_BATCH_REQUEST__INIT;
  ab.n_requests = 5;
  ab.requests = reqs;
  brume_err *err = NULL;
  Brume__AcquireBatchResponse *ar = NULL;
  if (call(M_ACQUIRE_BATCH, &ab, &ar, &err) < 0) fail_msg("AcquireBatch: %s", err->msg);
  assert_int_equal(ar->n_responses, 5);
  assert_int_equal(ar->n_statuses, 5);
  assert_int_equal(ar->statuses[0]->code, 0);
  assert_true(ar->responses[0]->granted);
  expect_status(ar->statuses, 1, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
  expect_status(ar->statuses, 2, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
  assert_false(ar->responses[1]->granted);
  assert_int_equal(ar->statuses[3]->code, 0);
  assert_false(ar->responses[3]->granted);
  assert_int_equal(
      ar->responses[3]->throttle_reason,
      BRUME__THROTTLE_REASON__THROTTLE_REASON_RESERVED_FUNCTION_CONCURRENT_INVOCATION_LIMIT_EXCEEDED);
  assert_int_equal(ar->statuses[4]->code, 0);
  assert_true(ar->responses[4]->granted);
  assert_string_not_equal(ar->responses[0]->token, ar->responses[4]->token);

  /* The first token twice (held, then not), an empty one, another daemon's, the second token. */
  Brume__ReleaseRequest r1 = BRUME__RELEASE_REQUEST__INIT, r1again = BRUME__RELEASE_REQUEST__INIT,
                        empty = BRUME__RELEASE_REQUEST__INIT, other = BRUME__RELEASE_REQUEST__INIT,
                        r2 = BRUME__RELEASE_REQUEST__INIT;
  r1.token = r1again.token = ar->responses[0]->token;
  other.token = "cnt-other.0000000000000001";
  r2.token = ar->responses[4]->token;
  Brume__ReleaseRequest *rels[] = {&r1, &r1again, &empty, &other, &r2};
  Brume__ReleaseBatchRequest rb = BRUME__RELEASE_BATCH_REQUEST__INIT;
  rb.n_requests = 5;
  rb.requests = rels;
  Brume__ReleaseBatchResponse *rr = NULL;
  if (call(M_RELEASE_BATCH, &rb, &rr, &err) < 0) fail_msg("ReleaseBatch: %s", err->msg);
  assert_int_equal(rr->n_responses, 5);
  assert_int_equal(rr->n_statuses, 5);
  assert_int_equal(rr->statuses[0]->code, 0);
  assert_true(rr->responses[0]->was_held);
  assert_int_equal(rr->statuses[1]->code, 0);
  assert_false(rr->responses[1]->was_held);
  expect_status(rr->statuses, 2, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
  expect_status(rr->statuses, 3, BRUME_NOT_FOUND, "ResourceNotFoundException");
  assert_int_equal(rr->statuses[4]->code, 0);
  assert_true(rr->responses[4]->was_held);
  brume__release_batch_response__free_unpacked(rr, NULL);
  brume__acquire_batch_response__free_unpacked(ar, NULL);

  /* memory_only: a request that needs etcd (a fresh function: no block yet) fails at once with
   * ABORTED, and the grow it needs starts all the same: soon the same request is granted from
   * memory. */
  Brume__FunctionRef fresh = BRUME__FUNCTION_REF__INIT;
  fresh.account_id = "565656565656";
  fresh.function_name = "fresh";
  Brume__AcquireRequest fr = BRUME__ACQUIRE_REQUEST__INIT;
  fr.function = &fresh;
  fr.kind = BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT;
  Brume__AcquireRequest *one[] = {&fr};
  Brume__AcquireBatchRequest mo = BRUME__ACQUIRE_BATCH_REQUEST__INIT;
  mo.n_requests = 1;
  mo.requests = one;
  mo.memory_only = true;
  if (call(M_ACQUIRE_BATCH, &mo, &ar, &err) < 0) fail_msg("memory_only AcquireBatch: %s", err->msg);
  expect_status(ar->statuses, 0, BRUME_ABORTED, "PreconditionFailedException");
  brume__acquire_batch_response__free_unpacked(ar, NULL);
  for (long long end = brume_test_now_ms() + 10000;; usleep(10000)) {
    if (call(M_ACQUIRE_BATCH, &mo, &ar, &err) < 0)
      fail_msg("memory_only AcquireBatch: %s", err->msg);
    bool granted = ar->statuses[0]->code == 0 && ar->responses[0]->granted;
    brume__acquire_batch_response__free_unpacked(ar, NULL);
    if (granted) break;
    if (brume_test_now_ms() > end) fail_msg("the block never grew for a memory_only request");
  }

  /* An empty batch is answered; one over the limit is refused whole. */
  ab.n_requests = 0;
  if (call(M_ACQUIRE_BATCH, &ab, &ar, &err) < 0) fail_msg("empty AcquireBatch: %s", err->msg);
  assert_int_equal(ar->n_responses, 0);
  brume__acquire_batch_response__free_unpacked(ar, NULL);
  Brume__AcquireRequest **many = brume_xcalloc(BRUME_COUNTING_BATCH_MAX + 1, sizeof(*many));
  for (size_t i = 0; i <= BRUME_COUNTING_BATCH_MAX; i++) many[i] = &ok1;
  ab.n_requests = BRUME_COUNTING_BATCH_MAX + 1;
  ab.requests = many;
  expect_fail(M_ACQUIRE_BATCH, &ab, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
  free(many);
}

/* What a client's callbacks saw. */
typedef struct answers {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int answered, granted, throttled_reserved, invalid, unavailable, cancelled, other, held, not_held;
  char last_error[256];
  char tokens[64][BRUME_TOKEN_STRING_MAX];
} answers;

/* With a->lock held: one more answer (err, if any, kept for the failure message). */
static void count_answer(answers *a, const brume_err *err) {
  if (err) snprintf(a->last_error, sizeof(a->last_error), "%s", err->msg);
  a->answered++;
  pthread_cond_broadcast(&a->cond);
  pthread_mutex_unlock(&a->lock);
}

static void on_acquire(void *user, const Brume__AcquireResponse *resp, const brume_err *err) {
  answers *a = user;
  pthread_mutex_lock(&a->lock);
  if (resp && resp->granted && a->granted < 64)
    snprintf(a->tokens[a->granted++], BRUME_TOKEN_STRING_MAX, "%s", resp->token);
  else if (
      resp &&
      resp->throttle_reason ==
          BRUME__THROTTLE_REASON__THROTTLE_REASON_RESERVED_FUNCTION_CONCURRENT_INVOCATION_LIMIT_EXCEEDED)
    a->throttled_reserved++;
  else if (err && err->code == BRUME_INVALID_ARGUMENT &&
           strncmp(err->msg, "InvalidParameterValueException: ", 32) == 0)
    a->invalid++;
  else if (err && err->code == BRUME_UNAVAILABLE)
    a->unavailable++;
  else if (err && err->code == BRUME_CANCELLED)
    a->cancelled++;
  else
    a->other++;
  count_answer(a, err);
}

static void on_release(void *user, const Brume__ReleaseResponse *resp, const brume_err *err) {
  answers *a = user;
  pthread_mutex_lock(&a->lock);
  if (resp && resp->was_held)
    a->held++;
  else if (resp)
    a->not_held++;
  else
    a->other++;
  count_answer(a, err);
}

/* Waits 15 s at most for n answers in all. */
static void wait_answered(answers *a, int n) {
  struct timespec end;
  clock_gettime(CLOCK_REALTIME, &end);
  end.tv_sec += 15;
  pthread_mutex_lock(&a->lock);
  while (a->answered < n && pthread_cond_timedwait(&a->cond, &a->lock, &end) == 0) {
  }
  int got = a->answered;
  pthread_mutex_unlock(&a->lock);
  if (got != n) fail_msg("%d of %d requests answered", got, n);
}

static void answers_init(answers *a) {
  memset(a, 0, sizeof(*a));
  pthread_mutex_init(&a->lock, NULL);
  pthread_cond_init(&a->cond, NULL);
}

/* counting/client: requests queued while batch calls are under way leave together, and each is
 * answered as its own call would be. */
static void test_client_coalesces(void **state) {
  (void)state;
  put_reserved("343434343434", "forty", 40);
  char target[64];
  snprintf(target, sizeof(target), "127.0.0.1:%d", rpc_port);
  brume_err *err = NULL;
  brume_counting_client *cc = brume_counting_client_new(target, NULL, &err);
  if (cc == NULL) fail_msg("client: %s", err->msg);
  Brume__FunctionRef fn;
  Brume__AcquireRequest acq;
  acquire_request(&acq, &fn, "343434343434", "forty",
                  BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT);
  /* Connected first: a connection attempt to a stopped daemon would time out (no SETTINGS). */
  answers w;
  answers_init(&w);
  Brume__ReleaseRequest never = BRUME__RELEASE_REQUEST__INIT;
  never.token = DAEMON_ID ".00000000000000ff";
  brume_counting_client_release(cc, &never, on_release, &w);
  wait_answered(&w, 1);
  if (w.not_held != 1) fail_msg("the first Release: %s", w.last_error);

  answers a;
  answers_init(&a);
  /* With the daemon stopped, the first two requests leave alone (two batch calls may be under
   * way) and the other 63 wait, then leave as one. */
  stop_daemon();
  for (int i = 0; i < 64; i++) {
    char caller[32];
    snprintf(caller, sizeof(caller), "test-%d", i); /* copied by the client */
    acq.caller_id = caller;
    brume_counting_client_acquire(cc, &acq, on_acquire, &a);
  }
  acq.caller_id = "test";
  Brume__AcquireRequest bad = acq;
  bad.kind = BRUME__ACQUIRE_KIND__ACQUIRE_KIND_UNSPECIFIED;
  brume_counting_client_acquire(cc, &bad, on_acquire, &a);
  usleep(200000);
  assert_int_equal(kill(pid, SIGCONT), 0);
  wait_answered(&a, 65);
  if (a.granted != 40 || a.throttled_reserved != 24 || a.invalid != 1)
    fail_msg("granted %d, throttled %d, invalid %d, unavailable %d, cancelled %d, other %d (%s)",
             a.granted, a.throttled_reserved, a.invalid, a.unavailable, a.cancelled, a.other,
             a.last_error);
  assert_int_equal(a.throttled_reserved, 24);
  assert_int_equal(a.invalid, 1);
  assert_int_equal(a.other, 0);
  brume_counting_client_stats st;
  brume_counting_client_stats_get(cc, &st);
  assert_int_equal(st.acquire_requests, 65);
  assert_int_equal(st.acquire_batches, 3);
  /* The first request found no block (a fresh function) and was sent again to wait for it. */
  assert_true(st.acquire_waiting_requests >= 1 && st.acquire_waiting_batches >= 1);

  answers r;
  answers_init(&r);
  for (int i = 0; i < 40; i++) {
    Brume__ReleaseRequest rel = BRUME__RELEASE_REQUEST__INIT;
    rel.token = a.tokens[i];
    brume_counting_client_release(cc, &rel, on_release, &r);
  }
  wait_answered(&r, 40);
  assert_int_equal(r.held, 40);
  brume_counting_client_stats_get(cc, &st);
  assert_int_equal(st.release_requests, 41);
  assert_true(st.release_batches >= 2 && st.release_batches <= 41);

  /* Freed with requests queued behind a stopped daemon: every one is answered, CANCELLED. */
  answers c;
  answers_init(&c);
  stop_daemon();
  for (int i = 0; i < 5; i++) brume_counting_client_acquire(cc, &acq, on_acquire, &c);
  long long t0 = brume_test_now_ms();
  brume_counting_client_free(cc);
  /* The calls under way were cancelled, not left to their 30 s deadline. */
  assert_true(brume_test_now_ms() - t0 < 5000);
  assert_int_equal(kill(pid, SIGCONT), 0);
  if (c.answered != 5 || c.cancelled != 5)
    fail_msg("answered %d, cancelled %d, granted %d, other %d (%s)", c.answered, c.cancelled,
             c.granted, c.other, c.last_error);
}

/* While etcd hangs (SIGSTOP), a request that needs etcd waits, and one that memory can answer
 * does not wait behind it. */
static void test_client_no_wait_behind_etcd(void **state) {
  (void)state;
  char target[64];
  snprintf(target, sizeof(target), "127.0.0.1:%d", rpc_port);
  brume_err *err = NULL;
  brume_counting_client *cc = brume_counting_client_new(target, NULL, &err);
  if (cc == NULL) fail_msg("client: %s", err->msg);
  Brume__FunctionRef held = BRUME__FUNCTION_REF__INIT, fresh = BRUME__FUNCTION_REF__INIT;
  held.account_id = "787878787878";
  held.function_name = "held";
  fresh.account_id = "909090909090";
  fresh.function_name = "fresh";
  Brume__AcquireRequest acq = BRUME__ACQUIRE_REQUEST__INIT;
  acq.kind = BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT;
  /* A first grant makes the daemon hold a block of 2 for the held account. */
  acq.function = &held;
  answers first;
  answers_init(&first);
  brume_counting_client_acquire(cc, &acq, on_acquire, &first);
  wait_answered(&first, 1);
  if (first.granted != 1) fail_msg("the first Acquire: %s", first.last_error);

  assert_int_equal(brume_test_sigstop(server->pid, 5000), 0);
  answers slow, quick;
  answers_init(&slow);
  answers_init(&quick);
  acq.function = &fresh; /* its account's block must grow: waits for etcd */
  brume_counting_client_acquire(cc, &acq, on_acquire, &slow);
  acq.function = &held; /* from the block held */
  long long t0 = brume_test_now_ms();
  brume_counting_client_acquire(cc, &acq, on_acquire, &quick);
  wait_answered(&quick, 1);
  long long quick_ms = brume_test_now_ms() - t0;
  pthread_mutex_lock(&slow.lock);
  int slow_answered = slow.answered;
  pthread_mutex_unlock(&slow.lock);
  assert_int_equal(kill(server->pid, SIGCONT), 0);
  if (quick.granted != 1) fail_msg("the Acquire from memory: %s", quick.last_error);
  assert_true(quick_ms < 1000);
  assert_int_equal(slow_answered, 0);
  wait_answered(&slow, 1);
  if (slow.granted != 1) fail_msg("the Acquire that waited for etcd: %s", slow.last_error);
  brume_counting_client_free(cc);
}

/* This daemon's in_use for an account (GetState). */
static uint32_t account_in_use(const char *account) {
  Brume__GetStateRequest gs = BRUME__GET_STATE_REQUEST__INIT;
  gs.account_id = (char *)account;
  Brume__GetStateResponse *st = NULL;
  brume_err *err = NULL;
  if (call(M_GET_STATE, &gs, &st, &err) < 0) fail_msg("GetState: %s", err->msg);
  uint32_t n = st->account->in_use;
  brume__get_state_response__free_unpacked(st, NULL);
  return n;
}

/* A caller that gives up (its deadline passes) while its Acquire waits for etcd leaves no grant
 * behind: once etcd answers, the daemon takes back what it would have granted, unary or batched,
 * instead of holding it until hold_ms. */
static void test_grant_of_gone_caller_taken_back(void **state) {
  (void)state;
  Brume__FunctionRef fn;
  Brume__AcquireRequest acq;
  acquire_request(&acq, &fn, "131313131313", "gone",
                  BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT);
  Brume__AcquireRequest *reqs[] = {&acq, &acq};
  Brume__AcquireBatchRequest ab = BRUME__ACQUIRE_BATCH_REQUEST__INIT;
  ab.n_requests = 2;
  ab.requests = reqs;
  brume_rpc_call_opts o = {.deadline_ms = 300};
  for (int batched = 0; batched < 2; batched++) {
    /* A fresh account each round: its block must grow, which waits for etcd. */
    fn.account_id = batched ? "141414141414" : "131313131313";
    assert_int_equal(brume_test_sigstop(server->pid, 5000), 0);
    ProtobufCMessage *reply = NULL;
    brume_err *err = NULL;
    int rc =
        brume_rpc_unary(client, &brume__counting__descriptor, batched ? M_ACQUIRE_BATCH : M_ACQUIRE,
                        batched ? &ab.base : &acq.base, &reply, &o, &err);
    assert_int_equal(kill(server->pid, SIGCONT), 0);
    if (rc == 0) fail_msg("round %d: answered while etcd was stopped", batched);
    assert_int_equal(err->code, BRUME_DEADLINE_EXCEEDED);
    brume_err_free(err);
    /* The grow lands once etcd answers; the grants it allows are taken back at once. Without
     * that, in_use would stay at 1 (or 2) for the default hold_ms, 16 minutes. */
    usleep(500000);
    long long end = brume_test_now_ms() + 10000;
    while (account_in_use(fn.account_id) != 0 && brume_test_now_ms() < end) usleep(20000);
    assert_int_equal(account_in_use(fn.account_id), 0);
  }
}

/* A daemon that is not there: each request fails with UNAVAILABLE. */
static void test_client_unavailable(void **state) {
  (void)state;
  char target[64];
  snprintf(target, sizeof(target), "127.0.0.1:%d", brume_test_free_port());
  brume_counting_client_opts o = {.rpc.default_deadline_ms = 3000};
  brume_err *err = NULL;
  brume_counting_client *cc = brume_counting_client_new(target, &o, &err);
  if (cc == NULL) fail_msg("client: %s", err->msg);
  Brume__FunctionRef fn;
  Brume__AcquireRequest acq;
  acquire_request(&acq, &fn, "343434343434", "forty",
                  BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT);
  answers a;
  answers_init(&a);
  for (int i = 0; i < 5; i++) brume_counting_client_acquire(cc, &acq, on_acquire, &a);
  wait_answered(&a, 5);
  assert_int_equal(a.unavailable, 5);
  brume_counting_client_free(cc);
}

/* Last: SIGTERM stops the daemon with status 0 and revokes its registration. */
static void test_sigterm(void **state) {
  (void)state;
  int status = brume_test_stop(pid, SIGTERM, 15000);
  pid = -1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    brume_test_dump_file(log_path);
    fail_msg("brume-counting did not exit 0 on SIGTERM (status %d)", status);
  }
  brume_err *err = NULL;
  brume_etcd_kv *kv = NULL;
  assert_int_equal(brume_etcd_get(etcd, PREFIX "/svc/counting/" DAEMON_ID, &kv, NULL, &err), 0);
  assert_null(kv);
}

/* The daemon as production runs it: etcd over TLS with a client certificate, and its own gRPC
 * listener requiring client certificates (tls_client_auth). A caller with a certificate from the
 * cluster's CA is served; one without is refused. */
static const char *make_certs;

static void test_mutual_tls(void **state) {
  (void)state;
  brume_autofree char *pki = brume_test_tmpdir("counting-pki");
  assert_int_equal(brume_test_run("bash %s %s", make_certs, pki), 0);
  brume_test_etcd *tls_etcd = brume_test_etcd_start_tls(pki);
  assert_non_null(tls_etcd);
  brume_autofree char *ca = brume_xasprintf("%s/ca.pem", pki);
  brume_autofree char *cert = brume_xasprintf("%s/server.pem", pki);
  brume_autofree char *key = brume_xasprintf("%s/server.key", pki);
  brume_autofree char *client_cert = brume_xasprintf("%s/client.pem", pki);
  brume_autofree char *client_key = brume_xasprintf("%s/client.key", pki);
  int port = brume_test_free_port(), hport = brume_test_free_port();
  char listen[64], http_listen[64], tls_log[700];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
  snprintf(http_listen, sizeof(http_listen), "127.0.0.1:%d", hport);
  snprintf(tls_log, sizeof(tls_log), "%s/brume-counting-tls.log", dir);
  char *argv[] = {(char *)bin,
                  "--etcd-endpoints",
                  tls_etcd->endpoint,
                  "--listen",
                  listen,
                  "--http-listen",
                  http_listen,
                  "--daemon-id",
                  "cnt-tls",
                  "--etcd-prefix",
                  PREFIX,
                  "--lease-ttl",
                  "3s",
                  "--tls-ca",
                  ca,
                  "--tls-cert",
                  cert,
                  "--tls-key",
                  key,
                  "--tls-client-auth",
                  NULL};
  pid_t tls_pid = brume_test_spawn(argv, tls_log);
  if (tls_pid < 0 || brume_test_wait_port(hport, 15000) < 0) {
    brume_test_dump_file(tls_log);
    fail_msg("brume-counting with TLS did not start");
  }

  Brume__FunctionRef fn;
  Brume__AcquireRequest acq;
  acquire_request(&acq, &fn, "777788889999", "tls-fn",
                  BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT);
  brume_rpc_call_opts o = {.deadline_ms = 10000};
  brume_err *err = NULL;

  /* "localhost" is in the server certificate; the address is an IP. */
  brume_rpc_client_opts with_cert = {.tls = {.ca_file = ca,
                                             .cert_file = client_cert,
                                             .key_file = client_key,
                                             .server_name = "localhost"}};
  brume_rpc_client *c = brume_rpc_client_new(listen, &with_cert, &err);
  assert_non_null(c);
  Brume__AcquireResponse *ar = NULL;
  if (brume_rpc_unary(c, &brume__counting__descriptor, M_ACQUIRE, &acq.base,
                      (ProtobufCMessage **)&ar, &o, &err) < 0) {
    brume_test_dump_file(tls_log);
    fail_msg("Acquire over mutual TLS: %s", err->msg);
  }
  assert_true(ar->granted); /* the block grew in etcd, over TLS */
  brume__acquire_response__free_unpacked(ar, NULL);
  brume_rpc_client_free(c);

  brume_rpc_client_opts no_cert = {.tls = {.ca_file = ca, .server_name = "localhost"}};
  c = brume_rpc_client_new(listen, &no_cert, &err);
  assert_non_null(c);
  ar = NULL;
  assert_int_equal(brume_rpc_unary(c, &brume__counting__descriptor, M_ACQUIRE, &acq.base,
                                   (ProtobufCMessage **)&ar, &o, &err),
                   -1);
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  brume_err_clear(&err);
  brume_rpc_client_free(c);

  int status = brume_test_stop(tls_pid, SIGTERM, 15000);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  brume_test_etcd_free(tls_etcd);
  brume_test_rmtree(pki);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s BRUME_COUNTING MAKE_CERTS_SH\n", argv[0]);
    return 2;
  }
  bin = argv[1];
  make_certs = argv[2];
  if (!brume_test_etcd_available()) {
    printf("# SKIP: etcd is not on PATH\n");
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_help),
      cmocka_unit_test(test_check_config),
      cmocka_unit_test(test_registered),
      cmocka_unit_test(test_http),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_acquire_release),
      cmocka_unit_test(test_throttle),
      cmocka_unit_test(test_batches),
      cmocka_unit_test(test_client_coalesces),
      cmocka_unit_test(test_client_no_wait_behind_etcd),
      cmocka_unit_test(test_grant_of_gone_caller_taken_back),
      cmocka_unit_test(test_client_unavailable),
      cmocka_unit_test(test_mutual_tls),
      cmocka_unit_test(test_sigterm),
  };
  return cmocka_run_group_tests_name("counting_daemon", tests, group_setup, group_teardown);
}
