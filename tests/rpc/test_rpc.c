/* RPC layer tests between two processes: this client and brume-test-echo-server.
 *
 *   test_rpc SERVER_BINARY MAKE_CERTS_SCRIPT
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "brume/test/echo.pb-c.h"
#include "proc.h"
#include "rpc.h"

static const char *server_bin;
static char *pki; /* directory made by make-certs.sh */

/* A server process on a port of its own. */
struct server {
  pid_t pid;
  int port;
  char addr[64];
};

static void server_start_on(struct server *s, int port, const char *const extra[]) {
  char listen[64];
  snprintf(listen, sizeof(listen), "--listen=127.0.0.1:%d", port);
  char *argv[24] = {(char *)server_bin, listen};
  int n = 2;
  for (; extra && extra[n - 2]; n++) argv[n] = (char *)extra[n - 2];
  argv[n] = NULL;
  s->port = port;
  snprintf(s->addr, sizeof(s->addr), "127.0.0.1:%d", port);
  s->pid = brume_test_spawn(argv, NULL);
  assert_true(s->pid > 0);
  assert_int_equal(brume_test_wait_port(port, 5000), 0);
}

static void server_start(struct server *s, const char *const extra[]) {
  server_start_on(s, brume_test_free_port(), extra);
}

static void server_stop(struct server *s, int sig) {
  int st = brume_test_stop(s->pid, sig, 5000);
  if (sig == SIGTERM) {
    /* A clean exit matters: under the sanitizer build a leak makes it non-zero. */
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
  }
}

static char *pki_file(const char *name) {
  static char buf[8][512];
  static int i;
  char *b = buf[i++ % 8];
  snprintf(b, sizeof(buf[0]), "%s/%s", pki, name);
  return b;
}

static brume_rpc_client *client_new(const char *addr, const brume_rpc_client_opts *opts) {
  brume_err *err = NULL;
  brume_rpc_client *c = brume_rpc_client_new(addr, opts, &err);
  if (c == NULL) fail_msg("client: %s", err->msg);
  return c;
}

/* One Echo call; returns the status code (0 = OK) and, on OK, the reply in *out. */
static int echo(brume_rpc_client *c, const ProtobufCServiceDescriptor *svc,
                const ProtobufCMessage *req, const brume_rpc_call_opts *opts,
                Brume__Test__EchoReply **out, char **msg) {
  brume_autoptr(brume_err) err = NULL;
  brume_autoptr(ProtobufCMessage) reply = NULL;
  if (brume_rpc_unary(c, svc, 0, req, &reply, opts, &err) < 0) {
    if (msg) *msg = brume_xstrdup(err->msg);
    return err->code;
  }
  if (out) *out = brume_steal(&reply);
  return 0;
}

/* An empty Echo with the default deadline: the status code (0 = OK). */
static int ping(brume_rpc_client *c, const brume_rpc_call_opts *opts, char **msg) {
  Brume__Test__EchoRequest req = BRUME__TEST__ECHO_REQUEST__INIT;
  return echo(c, &brume__test__echo__descriptor, &req.base, opts, NULL, msg);
}

/* GET http://127.0.0.1:port/path into a new string (NULL on failure). */
static char *http_get(int port, const char *path) {
  char *cmd = brume_xasprintf("curl -sf http://127.0.0.1:%d%s", port, path);
  FILE *p = popen(cmd, "r");
  free(cmd);
  if (p == NULL) return NULL;
  size_t cap = 1 << 16, len = 0, n;
  char *buf = brume_xmalloc(cap);
  while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) len += n;
  buf[len] = '\0';
  if (pclose(p) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

static void test_success_with_metadata(void **state) {
  (void)state;
  struct server s;
  int http_port = brume_test_free_port();
  char http_listen[64];
  snprintf(http_listen, sizeof(http_listen), "--http-listen=127.0.0.1:%d", http_port);
  server_start(&s, (const char *const[]){http_listen, NULL});
  brume_rpc_client *c = client_new(s.addr, NULL);
  Brume__Test__EchoRequest req = BRUME__TEST__ECHO_REQUEST__INIT;
  req.payload.data = (uint8_t *)"hello";
  req.payload.len = 5;
  brume_rpc_call_opts o = {.deadline_ms = 2000, .api_key = "key-123", .request_id = "req-abc"};
  Brume__Test__EchoReply *r = NULL;
  assert_int_equal(echo(c, &brume__test__echo__descriptor, &req.base, &o, &r, NULL), 0);
  assert_int_equal(r->payload.len, 5);
  assert_memory_equal(r->payload.data, "hello", 5);
  assert_string_equal(r->api_key, "key-123");
  assert_string_equal(r->request_id, "req-abc");
  printf("# deadline left on the server: %lld ms of 2000\n", (long long)r->deadline_left_ms);
  /* gRPC sends the deadline as a timeout and the server adds it to its own (cached, coarse)
   * clock, so it may come out a few ms over: allow 50 ms. */
  assert_true(r->deadline_left_ms > 1000 && r->deadline_left_ms <= 2050);
  protobuf_c_message_free_unpacked(&r->base, NULL);

  /* The server counted the call in its Prometheus metrics. */
  assert_int_equal(brume_test_wait_port(http_port, 5000), 0);
  char *metrics = http_get(http_port, "/metrics");
  assert_non_null(metrics);
  assert_non_null(strstr(
      metrics, "brume_rpc_server_calls_total{method=\"/brume.test.Echo/Echo\",code=\"OK\"} 1\n"));
  assert_non_null(strstr(metrics, "brume_rpc_server_calls_in_flight 0\n"));
  free(metrics);
  brume_rpc_client_free(c);
  server_stop(&s, SIGTERM);
}

/* A pool keeps one client (one channel) per target and hands the same one out again. */
static void test_pool_one_channel_per_target(void **state) {
  (void)state;
  struct server a, b;
  server_start(&a, NULL);
  server_start(&b, NULL);
  brume_rpc_pool *pool = brume_rpc_pool_new(NULL);
  brume_rpc_client *ca = brume_rpc_pool_get(pool, a.addr, NULL);
  brume_rpc_client *cb = brume_rpc_pool_get(pool, b.addr, NULL);
  assert_non_null(ca);
  assert_non_null(cb);
  assert_ptr_not_equal(ca, cb);
  assert_ptr_equal(brume_rpc_pool_get(pool, a.addr, NULL), ca);
  Brume__Test__EchoRequest req = BRUME__TEST__ECHO_REQUEST__INIT;
  assert_int_equal(echo(ca, &brume__test__echo__descriptor, &req.base, NULL, NULL, NULL), 0);
  assert_int_equal(echo(cb, &brume__test__echo__descriptor, &req.base, NULL, NULL, NULL), 0);
  brume_rpc_pool_free(pool);
  server_stop(&a, SIGTERM);
  server_stop(&b, SIGTERM);
}

/* Runs the echo server with args and returns its exit status (it must exit by itself). */
static int server_exit_status(const char *const args[]) {
  char *argv[16] = {(char *)server_bin};
  for (int i = 0; args[i]; i++) argv[i + 1] = (char *)args[i];
  pid_t pid = brume_test_spawn(argv, "/dev/null");
  long long end = brume_test_now_ms() + 5000;
  int st = 0;
  while (brume_test_now_ms() < end) {
    if (waitpid(pid, &st, WNOHANG) == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    usleep(10000);
  }
  brume_test_stop(pid, SIGKILL, 1000);
  return -1;
}

/* A taken port and an unreadable certificate are errors at start, not a second listener or a
 * crash. */
static void test_start_errors(void **state) {
  (void)state;
  struct server s;
  server_start(&s, NULL);
  char taken[64];
  snprintf(taken, sizeof(taken), "--listen=127.0.0.1:%d", s.port);
  assert_int_equal(server_exit_status((const char *const[]){taken, NULL}), 1);
  char other[64];
  snprintf(other, sizeof(other), "--listen=127.0.0.1:%d", brume_test_free_port());
  assert_int_equal(server_exit_status((const char *const[]){other, "--tls-cert", "/nonexistent.pem",
                                                            "--tls-key", "/nonexistent.key", NULL}),
                   1);
  server_stop(&s, SIGTERM);
}

static void test_deadline_exceeded(void **state) {
  (void)state;
  struct server s;
  server_start(&s, NULL);
  brume_rpc_client *c = client_new(s.addr, NULL);
  Brume__Test__EchoRequest req = BRUME__TEST__ECHO_REQUEST__INIT;
  req.delay_ms = 2000;
  brume_rpc_call_opts o = {.deadline_ms = 200};
  long long t0 = brume_test_now_ms();
  char *msg = NULL;
  assert_int_equal(echo(c, &brume__test__echo__descriptor, &req.base, &o, NULL, &msg),
                   BRUME_DEADLINE_EXCEEDED);
  long long took = brume_test_now_ms() - t0;
  assert_true(took >= 150 && took < 1500);
  free(msg);
  /* The server is still serving after a call it answered too late. */
  assert_int_equal(ping(c, NULL, NULL), 0);
  brume_rpc_client_free(c);
  server_stop(&s, SIGTERM);
}

static void test_unknown_method_unimplemented_fast(void **state) {
  (void)state;
  struct server s;
  server_start(&s, NULL);
  brume_rpc_client *c = client_new(s.addr, NULL);
  ProtobufCServiceDescriptor nope = brume__test__echo__descriptor;
  nope.name = "brume.test.Nope";
  Brume__Test__EchoRequest req = BRUME__TEST__ECHO_REQUEST__INIT;
  brume_rpc_call_opts o = {.deadline_ms = 10000};
  long long t0 = brume_test_now_ms();
  char *msg = NULL;
  assert_int_equal(echo(c, &nope, &req.base, &o, NULL, &msg), BRUME_UNIMPLEMENTED);
  long long took = brume_test_now_ms() - t0;
  printf("# UNIMPLEMENTED after %lld ms: %s\n", took, msg);
  assert_true(took < 100);
  assert_non_null(strstr(msg, "/brume.test.Nope/Echo"));
  free(msg);
  brume_rpc_client_free(c);
  server_stop(&s, SIGTERM);
}

static void test_oversized_and_undecodable(void **state) {
  (void)state;
  struct server s;
  server_start(&s, (const char *const[]){"--max-message-size", "1MiB", NULL});
  brume_rpc_client *c = client_new(s.addr, NULL);
  Brume__Test__EchoRequest req = BRUME__TEST__ECHO_REQUEST__INIT;
  req.payload.len = 2u << 20;
  req.payload.data = brume_xcalloc(req.payload.len, 1);
  char *msg = NULL;
  assert_int_equal(echo(c, &brume__test__echo__descriptor, &req.base, NULL, NULL, &msg),
                   BRUME_RESOURCE_EXHAUSTED);
  printf("# oversized request: %s\n", msg);
  free(msg);
  free(req.payload.data);

  /* A reply over the client's limit is refused on the client side too. */
  brume_rpc_client_opts small = {.max_message_bytes = 64 * 1024};
  brume_rpc_client *c2 = client_new(s.addr, &small);
  req.payload.len = 0;
  req.reply_size = 128 * 1024;
  assert_int_equal(echo(c2, &brume__test__echo__descriptor, &req.base, NULL, NULL, NULL),
                   BRUME_RESOURCE_EXHAUSTED);
  brume_rpc_client_free(c2);

  /* Bytes that are not an EchoRequest: INVALID_ARGUMENT, never a handler call. */
  ProtobufCServiceDescriptor wrong = brume__test__echo__descriptor;
  ProtobufCMethodDescriptor methods[2];
  memcpy(methods, brume__test__echo__descriptor.methods, sizeof(methods));
  methods[0].input = &brume__test__not_echo__descriptor;
  wrong.methods = methods;
  Brume__Test__NotEcho bad = BRUME__TEST__NOT_ECHO__INIT;
  bad.payload = 42;
  assert_int_equal(echo(c, &wrong, &bad.base, NULL, NULL, &msg), BRUME_INVALID_ARGUMENT);
  printf("# undecodable request: %s\n", msg);
  free(msg);

  /* And the server keeps serving. */
  assert_int_equal(ping(c, NULL, NULL), 0);
  brume_rpc_client_free(c);
  server_stop(&s, SIGTERM);
}

static void test_server_restart_same_channel(void **state) {
  (void)state;
  struct server s;
  server_start(&s, NULL);
  brume_rpc_client *c = client_new(s.addr, NULL);
  assert_int_equal(ping(c, NULL, NULL), 0);

  server_stop(&s, SIGKILL);
  brume_rpc_call_opts fast = {.deadline_ms = 2000};
  assert_int_equal(ping(c, &fast, NULL), BRUME_UNAVAILABLE);

  server_start_on(&s, s.port, NULL);
  long long t0 = brume_test_now_ms();
  brume_rpc_call_opts wait = {.deadline_ms = 5000, .wait_for_ready = true};
  assert_int_equal(ping(c, &wait, NULL), 0);
  printf("# same channel answered again %lld ms after the restart\n", brume_test_now_ms() - t0);
  brume_rpc_client_free(c);
  server_stop(&s, SIGTERM);
}

struct gather {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int done, ok;
};

static void on_gathered(void *user, ProtobufCMessage *reply, const brume_err *err) {
  struct gather *g = user;
  pthread_mutex_lock(&g->lock);
  g->done++;
  if (err == NULL) g->ok++;
  pthread_cond_signal(&g->cond);
  pthread_mutex_unlock(&g->lock);
  if (reply) protobuf_c_message_free_unpacked(reply, NULL);
}

/* Waits until n calls have come back. */
static void gather_wait(struct gather *g, int n) {
  pthread_mutex_lock(&g->lock);
  while (g->done < n) pthread_cond_wait(&g->cond, &g->lock);
  pthread_mutex_unlock(&g->lock);
}

/* The server answers none of the 1,000 calls until all have arrived, on one handler thread:
 * they are all in flight in the server at once. */
static void test_1000_in_flight_one_thread(void **state) {
  (void)state;
  enum { N = 1000 };
  struct server s;
  server_start(&s, (const char *const[]){"--threads", "1", NULL});
  brume_rpc_client *c = client_new(s.addr, NULL);
  struct gather g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
  Brume__Test__EchoRequest req = BRUME__TEST__ECHO_REQUEST__INIT;
  req.reply_size = N;
  brume_rpc_call_opts o = {.deadline_ms = 30000};
  long long t0 = brume_test_now_ms();
  for (int i = 0; i < N; i++) {
    brume_err *err = NULL;
    if (brume_rpc_unary_async(c, &brume__test__echo__descriptor, 1, &req.base, &o, on_gathered, &g,
                              &err) < 0)
      fail_msg("async call %d: %s", i, err->msg);
  }
  gather_wait(&g, N);
  printf("# %d calls gathered and answered in %lld ms\n", N, brume_test_now_ms() - t0);
  assert_int_equal(g.ok, N);
  brume_rpc_client_free(c);
  server_stop(&s, SIGTERM);
}

/* Starts 5 Gather calls waiting for 100 (so the server parks them, with a 30 s deadline), and
 * returns once they have reached the server. */
static void park_five_calls(brume_rpc_client *c, struct gather *g) {
  Brume__Test__EchoRequest req = BRUME__TEST__ECHO_REQUEST__INIT;
  req.reply_size = 100; /* never reached */
  brume_rpc_call_opts o = {.deadline_ms = 30000};
  for (int i = 0; i < 5; i++)
    assert_int_equal(brume_rpc_unary_async(c, &brume__test__echo__descriptor, 1, &req.base, &o,
                                           on_gathered, g, NULL),
                     0);
  /* An Echo round trip after the Gathers proves they have reached the server. */
  Brume__Test__EchoRequest ping = BRUME__TEST__ECHO_REQUEST__INIT;
  assert_int_equal(echo(c, &brume__test__echo__descriptor, &ping.base, NULL, NULL, NULL), 0);
}

/* A server stopped while calls are parked frees them (clean exit under ASan) and the clients get
 * an error, not a hang. */
static void test_shutdown_with_parked_calls(void **state) {
  (void)state;
  struct server s;
  server_start(&s, NULL);
  brume_rpc_client *c = client_new(s.addr, NULL);
  struct gather g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
  park_five_calls(c, &g);
  long long t0 = brume_test_now_ms();
  server_stop(&s, SIGTERM);
  gather_wait(&g, 5);
  assert_int_equal(g.ok, 0);
  assert_true(brume_test_now_ms() - t0 < 5000);
  brume_rpc_client_free(c);
}

/* Freeing a client cancels its async calls under way: each callback runs at once with
 * CANCELLED, not at the call's deadline (destroying a gRPC channel alone does not end its calls).
 */
static void test_free_cancels_async_calls(void **state) {
  (void)state;
  struct server s;
  server_start(&s, NULL);
  brume_rpc_client *c = client_new(s.addr, NULL);
  struct gather g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
  park_five_calls(c, &g);
  long long t0 = brume_test_now_ms();
  brume_rpc_client_free(c);
  assert_int_equal(g.done, 5);
  assert_int_equal(g.ok, 0);
  assert_true(brume_test_now_ms() - t0 < 5000);
  server_stop(&s, SIGTERM);
}

static void test_tls(void **state) {
  (void)state;
  struct server s;
  server_start(&s, (const char *const[]){"--tls-cert", pki_file("server.pem"), "--tls-key",
                                         pki_file("server.key"), NULL});
  brume_rpc_call_opts o = {.deadline_ms = 5000};

  brume_rpc_client_opts good = {.tls = {.ca_file = pki_file("ca.pem")}};
  brume_rpc_client *c = client_new(s.addr, &good);
  assert_int_equal(ping(c, &o, NULL), 0);
  brume_rpc_client_free(c);

  /* A plaintext client cannot talk to a TLS server. */
  c = client_new(s.addr, NULL);
  assert_int_equal(ping(c, &o, NULL), BRUME_UNAVAILABLE);
  brume_rpc_client_free(c);
  server_stop(&s, SIGTERM);
}

/* Mutual TLS set up the way a daemon is: the server from its config file, the client from the
 * same common options its daemon would have. */
static void test_mutual_tls(void **state) {
  (void)state;
  char *conf = brume_xasprintf("%s/mtls.conf", pki);
  FILE *f = fopen(conf, "w");
  assert_non_null(f);
  fprintf(f, "# mutual TLS\ntls_ca = %s\ntls_cert = %s\ntls_key = %s\ntls_client_auth = true\n",
          pki_file("ca.pem"), pki_file("server.pem"), pki_file("server.key"));
  fclose(f);
  struct server s;
  server_start(&s, (const char *const[]){"--config", conf, NULL});
  free(conf);
  brume_rpc_call_opts o = {.deadline_ms = 5000};

  brume_common_config client_cfg = {.tls_ca = pki_file("ca.pem"),
                                    .tls_cert = pki_file("client.pem"),
                                    .tls_key = pki_file("client.key")};
  brume_rpc_client_opts with_cert = {.tls = brume_rpc_client_tls(&client_cfg)};
  brume_rpc_client *c = client_new(s.addr, &with_cert);
  assert_int_equal(ping(c, &o, NULL), 0);
  brume_rpc_client_free(c);

  brume_rpc_client_opts no_cert = {.tls = {.ca_file = pki_file("ca.pem")}};
  c = client_new(s.addr, &no_cert);
  char *msg = NULL;
  assert_int_equal(ping(c, &o, &msg), BRUME_UNAVAILABLE);
  printf("# client without a certificate: %s\n", msg);
  free(msg);
  brume_rpc_client_free(c);
  server_stop(&s, SIGTERM);
}

static void test_wrong_ca_fails(void **state) {
  (void)state;
  struct server s;
  server_start(&s, (const char *const[]){"--tls-cert", pki_file("server.pem"), "--tls-key",
                                         pki_file("server.key"), NULL});
  brume_rpc_call_opts o = {.deadline_ms = 5000};
  brume_rpc_client_opts wrong = {.tls = {.ca_file = pki_file("other-ca.pem")}};
  brume_rpc_client *c = client_new(s.addr, &wrong);
  char *msg = NULL;
  assert_int_equal(ping(c, &o, &msg), BRUME_UNAVAILABLE);
  printf("# client trusting another CA: %s\n", msg);
  free(msg);
  brume_rpc_client_free(c);

  /* A missing certificate file is a clear error at start, not at the first call. */
  brume_err *err = NULL;
  brume_rpc_client_opts missing = {.tls = {.ca_file = pki_file("nope.pem")}};
  assert_null(brume_rpc_client_new(s.addr, &missing, &err));
  assert_non_null(strstr(err->msg, "nope.pem"));
  brume_err_free(err);
  server_stop(&s, SIGTERM);
}

static int make_pki(void **state) {
  (void)state;
  pki = brume_test_tmpdir("rpc-pki");
  return 0;
}

static int remove_pki(void **state) {
  (void)state;
  brume_test_rmtree(pki);
  free(pki);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s ECHO_SERVER MAKE_CERTS\n", argv[0]);
    return 2;
  }
  server_bin = argv[1];
  make_pki(NULL);
  char *cmd = brume_xasprintf("%s %s", argv[2], pki);
  if (system(cmd) != 0) {
    fprintf(stderr, "cannot make the test PKI with %s\n", argv[2]);
    return 1;
  }
  free(cmd);
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_success_with_metadata),
      cmocka_unit_test(test_pool_one_channel_per_target),
      cmocka_unit_test(test_start_errors),
      cmocka_unit_test(test_deadline_exceeded),
      cmocka_unit_test(test_unknown_method_unimplemented_fast),
      cmocka_unit_test(test_oversized_and_undecodable),
      cmocka_unit_test(test_server_restart_same_channel),
      cmocka_unit_test(test_1000_in_flight_one_thread),
      cmocka_unit_test(test_shutdown_with_parked_calls),
      cmocka_unit_test(test_free_cancels_async_calls),
      cmocka_unit_test(test_tls),
      cmocka_unit_test(test_mutual_tls),
      cmocka_unit_test(test_wrong_ca_fails),
  };
  int failed = cmocka_run_group_tests_name("rpc", tests, NULL, remove_pki);
  return failed;
}
