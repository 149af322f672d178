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
 * reserved concurrency 0 is throttled with the reserved reason, counted in /metrics; SIGTERM
 * stops the daemon cleanly and its registration goes. Exit 77 (skip) when etcd is not on PATH. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "brume/counting.pb-c.h"
#include "etcd.h"
#include "etcd_server.h"
#include "mem.h"
#include "proc.h"
#include "rpc.h"
#include "testutil.h"

#define DAEMON_ID "cnt-test-1"
#define PREFIX "/brume-cnt-test"
#define M_ACQUIRE 0
#define M_RELEASE 1
#define M_GET_STATE 2

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
  Brume__FunctionRef fn = BRUME__FUNCTION_REF__INIT;
  fn.account_id = "111122223333";
  fn.function_name = "fn";
  Brume__AcquireRequest acq = BRUME__ACQUIRE_REQUEST__INIT;
  acq.function = &fn;
  acq.caller_id = "test";
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
  Brume__FunctionRef fn = BRUME__FUNCTION_REF__INIT;
  fn.account_id = "444455556666";
  fn.function_name = "warm-fn";
  Brume__AcquireRequest acq = BRUME__ACQUIRE_REQUEST__INIT;
  acq.function = &fn;
  acq.caller_id = "test";
  acq.kind = BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT;
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
  Brume__FunctionRef fn = BRUME__FUNCTION_REF__INIT;
  fn.account_id = "777788889999";
  fn.function_name = "off-fn";
  Brume__AcquireRequest acq = BRUME__ACQUIRE_REQUEST__INIT;
  acq.function = &fn;
  acq.caller_id = "test";
  acq.kind = BRUME__ACQUIRE_KIND__ACQUIRE_KIND_NEW_ENVIRONMENT;
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

  Brume__FunctionRef fn = BRUME__FUNCTION_REF__INIT;
  fn.account_id = "777788889999";
  fn.function_name = "tls-fn";
  Brume__AcquireRequest acq = BRUME__ACQUIRE_REQUEST__INIT;
  acq.function = &fn;
  acq.kind = BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT;
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
      cmocka_unit_test(test_help),       cmocka_unit_test(test_check_config),
      cmocka_unit_test(test_registered), cmocka_unit_test(test_http),
      cmocka_unit_test(test_bad_input),  cmocka_unit_test(test_acquire_release),
      cmocka_unit_test(test_throttle),   cmocka_unit_test(test_mutual_tls),
      cmocka_unit_test(test_sigterm),
  };
  return cmocka_run_group_tests_name("counting_daemon", tests, group_setup, group_teardown);
}
