/* brume-init as the host sees it: brume-init-host runs as a separate process, listening on a
 * UNIX socket as QEMU's end of the virtio port does, and this test plays the worker with real
 * framing. The function is echo_runtime (a C runtime against the Runtime API) or a shell script
 * in EXEC mode, zipped with the zip CLI.
 *
 *   test_guest_init BRUME_INIT_HOST ECHO_RUNTIME
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "brume/guest.pb-c.h"
#include "proc.h"
#include "testutil.h"

#define WAIT_MS 5000

static const char *init_bin;
static const char *runtime_bin;
static char *workdir;

/* One brume-init-host process and the host's connection to it. */
typedef struct guest {
  pid_t pid;
  char *dir;
  char sock[100]; /* fits sun_path */
  char log[256];
  char task[256];
  int port;
  int fd;
} guest;

static char *path_in(const char *dir, const char *name) {
  static char buf[8][512];
  static int i;
  char *b = buf[i++ % 8];
  snprintf(b, sizeof(buf[0]), "%s/%s", dir, name);
  return b;
}

/* Runs a shell command; the test fails unless it exits 0. */
#define run(...) assert_int_equal(brume_test_run(__VA_ARGS__), 0)

static void dump_log(const guest *g) {
  brume_test_dump_file(g->log);
}

static void guest_connect(guest *g) {
  long long end = brume_test_now_ms() + WAIT_MS;
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", g->sock);
  for (;;) {
    g->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(g->fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) return;
    close(g->fd);
    g->fd = -1;
    if (brume_test_now_ms() > end) {
      dump_log(g);
      fail_msg("cannot connect to %s", g->sock);
    }
    usleep(5000);
  }
}

static void guest_disconnect(guest *g) {
  if (g->fd >= 0) close(g->fd);
  g->fd = -1;
}

static void send_msg(guest *g, const Brume__GuestMessage *m) {
  size_t n = brume__guest_message__get_packed_size(m);
  uint8_t *buf = malloc(n + 4);
  buf[0] = (uint8_t)(n >> 24), buf[1] = (uint8_t)(n >> 16), buf[2] = (uint8_t)(n >> 8),
  buf[3] = (uint8_t)n;
  brume__guest_message__pack(m, buf + 4);
  for (size_t off = 0; off < n + 4;) {
    ssize_t w = write(g->fd, buf + off, n + 4 - off);
    if (w <= 0) fail_msg("write to the guest: %s", strerror(errno));
    off += (size_t)w;
  }
  free(buf);
}

/* Reads exactly n bytes; false at EOF, fails the test on a timeout. */
static bool read_exact(guest *g, uint8_t *p, size_t n, int timeout_ms) {
  long long end = brume_test_now_ms() + timeout_ms;
  for (size_t got = 0; got < n;) {
    struct pollfd pfd = {.fd = g->fd, .events = POLLIN};
    int left = (int)(end - brume_test_now_ms());
    if (left <= 0 || poll(&pfd, 1, left) == 0) {
      dump_log(g);
      fail_msg("no message from the guest within %d ms", timeout_ms);
    }
    ssize_t r = read(g->fd, p + got, n - got);
    if (r <= 0) return false;
    got += (size_t)r;
  }
  return true;
}

/* The next message, or NULL at EOF. */
static Brume__GuestMessage *recv_msg(guest *g, int timeout_ms) {
  uint8_t hdr[4];
  if (!read_exact(g, hdr, 4, timeout_ms)) return NULL;
  size_t n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
  uint8_t *buf = malloc(n ? n : 1);
  if (!read_exact(g, buf, n, timeout_ms)) fail_msg("EOF in the middle of a frame");
  Brume__GuestMessage *m = brume__guest_message__unpack(NULL, n, buf);
  free(buf);
  assert_non_null(m);
  return m;
}

static Brume__GuestMessage *expect_msg(guest *g, Brume__GuestMessage__BodyCase c, int timeout_ms) {
  Brume__GuestMessage *m = recv_msg(g, timeout_ms);
  if (m == NULL) {
    dump_log(g);
    fail_msg("EOF while waiting for message %d", (int)c);
  }
  if (m->body_case != c) {
    dump_log(g);
    fail_msg("expected message %d, got %d%s%s", (int)c, (int)m->body_case,
             m->body_case == BRUME__GUEST_MESSAGE__BODY_ERROR ? ": " : "",
             m->body_case == BRUME__GUEST_MESSAGE__BODY_ERROR ? m->error->message : "");
  }
  return m;
}

static void expect_eof(guest *g) {
  Brume__GuestMessage *m = recv_msg(g, WAIT_MS);
  if (m) fail_msg("expected EOF, got message %d", (int)m->body_case);
}

static void free_msg(Brume__GuestMessage *m) {
  brume__guest_message__free_unpacked(m, NULL);
}

static void expect_ready(guest *g, bool initialised) {
  Brume__GuestMessage *m = expect_msg(g, BRUME__GUEST_MESSAGE__BODY_READY, WAIT_MS);
  assert_int_equal(m->ready->protocol_version, 1);
  assert_int_equal(m->ready->initialised, initialised);
  assert_true(m->ready->mem_total_bytes > 0);
  free_msg(m);
}

/* What a host does on every connection: Hello, then skip everything up to the Ready that answers
 * it (the Ready sent on connect, and anything an earlier connection left behind). */
static void hello(guest *g, uint64_t nonce, bool initialised) {
  Brume__GuestHello h = BRUME__GUEST_HELLO__INIT;
  h.nonce = nonce;
  Brume__GuestMessage m = BRUME__GUEST_MESSAGE__INIT;
  m.body_case = BRUME__GUEST_MESSAGE__BODY_HELLO;
  m.hello = &h;
  send_msg(g, &m);
  for (;;) {
    Brume__GuestMessage *r = expect_msg(g, BRUME__GUEST_MESSAGE__BODY_READY, WAIT_MS);
    bool mine = r->ready->hello_nonce == nonce;
    if (mine) assert_int_equal(r->ready->initialised, initialised);
    free_msg(r);
    if (mine) return;
  }
}

static int guest_setup(void **state) {
  guest *g = calloc(1, sizeof(*g));
  g->dir = brume_test_tmpdir("guest");
  snprintf(g->sock, sizeof(g->sock), "%s", path_in(g->dir, "control.sock"));
  snprintf(g->log, sizeof(g->log), "%s", path_in(g->dir, "init.log"));
  snprintf(g->task, sizeof(g->task), "%s", path_in(g->dir, "task"));
  g->port = brume_test_free_port();
  char listen[64];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", g->port);
  char *argv[] = {
      (char *)init_bin, "--channel-socket", g->sock,       "--task-root", g->task, "--listen",
      listen,           "--no-system",      "--log-level", "debug",       NULL};
  g->pid = brume_test_spawn(argv, g->log);
  assert_true(g->pid > 0);
  g->fd = -1;
  guest_connect(g);
  expect_ready(g, false);
  *state = g;
  return 0;
}

static int guest_teardown(void **state) {
  guest *g = *state;
  guest_disconnect(g);
  int st = brume_test_stop(g->pid, SIGTERM, WAIT_MS);
  /* A clean exit matters: under the sanitizer build a leak makes it non-zero. */
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    dump_log(g);
    fprintf(stderr, "brume-init-host ended with wait status %d\n", st);
    return -1;
  }
  brume_test_rmtree(g->dir);
  free(g->dir);
  free(g);
  return 0;
}

/* --- the host's side of the protocol ---------------------------------------------------------- */

typedef struct init_args {
  const char *zip;
  const Brume__GuestCode *code; /* instead of zip: the files, as the worker sends them */
  Brume__HandlerMode mode;
  const char *handler;
  const char *const *env; /* NAME, value, ..., NULL */
  uint32_t init_timeout_ms;
} init_args;

static void send_init(guest *g, const init_args *a) {
  Brume__GuestInit in = BRUME__GUEST_INIT__INIT;
  if (a->code) {
    in.code = (Brume__GuestCode *)a->code;
  } else {
    in.code_zip.data = brume_test_read_file(a->zip, &in.code_zip.len);
    assert_non_null(in.code_zip.data);
  }
  in.handler_mode = a->mode;
  in.handler = (char *)(a->handler ? a->handler : "echo.handler");
  in.function_name = "echo";
  in.function_version = "7";
  in.memory_mib = 128;
  in.function_arn = "arn:brume:lambda:local:acct1:function:echo";
  in.init_timeout_ms = a->init_timeout_ms;
  in.tmp_mib = 512;
  in.host_time_unix_ms = (int64_t)time(NULL) * 1000;
  Brume__GuestInit__EnvironmentEntry entries[8], *ptrs[8];
  size_t n = 0;
  for (; a->env && a->env[2 * n]; n++) {
    brume__guest_init__environment_entry__init(&entries[n]);
    entries[n].key = (char *)a->env[2 * n];
    entries[n].value = (char *)a->env[2 * n + 1];
    ptrs[n] = &entries[n];
  }
  in.n_environment = n;
  in.environment = ptrs;
  Brume__GuestMessage m = BRUME__GUEST_MESSAGE__INIT;
  m.body_case = BRUME__GUEST_MESSAGE__BODY_INIT;
  m.init = &in;
  send_msg(g, &m);
  free(in.code_zip.data);
}

/* Sends Init and returns InitDone. */
static Brume__GuestMessage *init(guest *g, const init_args *a) {
  send_init(g, a);
  return expect_msg(g, BRUME__GUEST_MESSAGE__BODY_INIT_DONE, WAIT_MS);
}

static void init_ok(guest *g, const init_args *a) {
  Brume__GuestMessage *m = init(g, a);
  if (m->init_done->error)
    fail_msg("InitDone: %s: %s", m->init_done->error->type, m->init_done->error->message);
  free_msg(m);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void send_invoke(guest *g, const char *id, const void *payload, size_t len, int timeout_ms) {
  Brume__GuestInvoke inv = BRUME__GUEST_INVOKE__INIT;
  inv.request_id = (char *)id;
  inv.payload.data = (uint8_t *)payload;
  inv.payload.len = len;
  inv.host_time_unix_ms = now_ms();
  inv.deadline_unix_ms = inv.host_time_unix_ms + timeout_ms;
  inv.trace_id = "Root=1-abc;Sampled=1";
  inv.client_context = "e30=";
  Brume__GuestMessage m = BRUME__GUEST_MESSAGE__INIT;
  m.body_case = BRUME__GUEST_MESSAGE__BODY_INVOKE;
  m.invoke = &inv;
  send_msg(g, &m);
}

/* Invokes with a payload string and returns InvokeDone (checked to be for id). */
static Brume__GuestMessage *invoke(guest *g, const char *id, const char *payload, int timeout_ms) {
  send_invoke(g, id, payload, strlen(payload), timeout_ms);
  Brume__GuestMessage *m =
      expect_msg(g, BRUME__GUEST_MESSAGE__BODY_INVOKE_DONE, timeout_ms + WAIT_MS);
  assert_string_equal(m->invoke_done->request_id, id);
  return m;
}

static void assert_payload(const Brume__GuestMessage *m, const char *want) {
  const Brume__GuestInvokeDone *d = m->invoke_done;
  if (d->error) fail_msg("function error %s: %s", d->error->type, d->error->message);
  if (d->payload.len != strlen(want) || memcmp(d->payload.data, want, d->payload.len) != 0)
    fail_msg("payload %.*s, want %s", (int)d->payload.len, (const char *)d->payload.data, want);
}

static void assert_fn_error(const Brume__FunctionError *e, Brume__FunctionErrorKind kind,
                            const char *type, const char *message_part) {
  assert_non_null(e);
  assert_int_equal(e->kind, kind);
  assert_string_equal(e->type, type);
  if (strstr(e->message, message_part) == NULL)
    fail_msg("error message \"%s\" does not contain \"%s\"", e->message, message_part);
}

static bool tail_has(const ProtobufCBinaryData *tail, const char *text) {
  size_t n = strlen(text);
  for (size_t i = 0; i + n <= tail->len; i++)
    if (memcmp(tail->data + i, text, n) == 0) return true;
  return false;
}

static void shutdown_expect(guest *g, uint32_t grace_ms, bool clean) {
  Brume__GuestShutdown sd = BRUME__GUEST_SHUTDOWN__INIT;
  sd.grace_ms = grace_ms;
  Brume__GuestMessage m = BRUME__GUEST_MESSAGE__INIT;
  m.body_case = BRUME__GUEST_MESSAGE__BODY_SHUTDOWN;
  m.shutdown = &sd;
  send_msg(g, &m);
  Brume__GuestMessage *r =
      expect_msg(g, BRUME__GUEST_MESSAGE__BODY_SHUTDOWN_DONE, grace_ms + WAIT_MS);
  assert_int_equal(r->shutdown_done->clean, clean);
  free_msg(r);
}

static void ping(guest *g, uint64_t nonce) {
  Brume__GuestPing p = BRUME__GUEST_PING__INIT;
  p.nonce = nonce;
  Brume__GuestMessage m = BRUME__GUEST_MESSAGE__INIT;
  m.body_case = BRUME__GUEST_MESSAGE__BODY_PING;
  m.ping = &p;
  send_msg(g, &m);
  Brume__GuestMessage *r = expect_msg(g, BRUME__GUEST_MESSAGE__BODY_PONG, WAIT_MS);
  assert_int_equal(r->pong->nonce, nonce);
  free_msg(r);
}

static const char *runtime_zip(void) {
  return path_in(workdir, "runtime.zip");
}
static const init_args runtime_init = {.mode = BRUME__HANDLER_MODE__HANDLER_MODE_RUNTIME_API};

static init_args runtime_with_env(const char *const *env) {
  init_args a = runtime_init;
  a.zip = runtime_zip();
  a.env = env;
  return a;
}

/* --- tests ------------------------------------------------------------------------------------ */

static void test_ping_and_reconnect(void **state) {
  guest *g = *state;
  ping(g, 42);
  guest_disconnect(g);
  guest_connect(g);
  hello(g, 1001, false);
  ping(g, 43);
}

static void test_invoke_before_init(void **state) {
  guest *g = *state;
  send_invoke(g, "r1", "x", 1, 1000);
  Brume__GuestMessage *m = expect_msg(g, BRUME__GUEST_MESSAGE__BODY_ERROR, WAIT_MS);
  assert_string_equal(m->error->message, "Invoke before Init");
  free_msg(m);
  expect_eof(g);
  guest_disconnect(g);
  guest_connect(g);
  expect_ready(g, false);
}

static void test_frame_too_long(void **state) {
  guest *g = *state;
  uint8_t hdr[4] = {0xff, 0xff, 0xff, 0xff};
  assert_int_equal(write(g->fd, hdr, 4), 4);
  Brume__GuestMessage *m = expect_msg(g, BRUME__GUEST_MESSAGE__BODY_ERROR, WAIT_MS);
  assert_non_null(strstr(m->error->message, "frame too long"));
  free_msg(m);
  expect_eof(g);
}

static void test_runtime_100_invocations(void **state) {
  guest *g = *state;
  const char *env[] = {"MY_VAR", "hello", "AWS_LAMBDA_FUNCTION_NAME", "not-allowed", NULL};
  init_args a = runtime_with_env(env);
  Brume__GuestMessage *m = init(g, &a);
  assert_null(m->init_done->error);
  assert_true(m->init_done->runtime_init_us > 0);
  assert_true(m->init_done->unpack_us > 0);
  assert_true(tail_has(&m->init_done->log_tail, "echo runtime starting"));
  free_msg(m);

  for (int i = 1; i <= 100; i++) {
    char id[32], payload[32], want[64];
    snprintf(id, sizeof(id), "req-%d", i);
    snprintf(payload, sizeof(payload), "payload-%d", i * 7);
    snprintf(want, sizeof(want), "payload-%d #%d", i * 7, i);
    m = invoke(g, id, payload, 3000);
    assert_payload(m, want);
    char line[64];
    snprintf(line, sizeof(line), "stdout of invocation %d", i);
    assert_true(tail_has(&m->invoke_done->log_tail, line));
    snprintf(line, sizeof(line), "got %s", payload);
    assert_true(tail_has(&m->invoke_done->log_tail, line));
    assert_false(m->invoke_done->sandbox_broken);
    assert_true(m->invoke_done->duration_us > 0);
    assert_true(m->invoke_done->max_memory_used_mib > 0);
    free_msg(m);
  }
  /* A restarted worker reconnects: Ready says the sandbox is initialised, the state is kept. */
  guest_disconnect(g);
  guest_connect(g);
  hello(g, 1002, true);
  m = invoke(g, "req-after-reconnect", "again", 3000);
  assert_payload(m, "again #101");
  free_msg(m);
  shutdown_expect(g, 2000, true);
}

static void test_runtime_api_details(void **state) {
  guest *g = *state;
  const char *env[] = {"MY_VAR", "hello", "AWS_LAMBDA_FUNCTION_NAME", "not-allowed", NULL};
  init_args a = runtime_with_env(env);
  init_ok(g, &a);
  char want[1024];

  Brume__GuestMessage *m = invoke(g, "env-1", "env", 3000);
  snprintf(want, sizeof(want),
           "AWS_LAMBDA_RUNTIME_API=127.0.0.1:%d;_HANDLER=echo.handler;LAMBDA_TASK_ROOT=%s;"
           "AWS_LAMBDA_FUNCTION_NAME=echo;AWS_LAMBDA_FUNCTION_VERSION=7;"
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128;TZ=:UTC;MY_VAR=hello;AWS_REGION=local;"
           "LANG=en_US.UTF-8;cwd=%s",
           g->port, g->task, g->task);
  assert_payload(m, want);
  free_msg(m);

  int64_t before = now_ms();
  m = invoke(g, "hdr-1", "headers", 60000);
  const Brume__GuestInvokeDone *d = m->invoke_done;
  assert_null(d->error);
  char *text = strndup((const char *)d->payload.data, d->payload.len);
  long long deadline = 0;
  const char *dl = strstr(text, "deadline=");
  assert_non_null(dl);
  deadline = atoll(dl + 9);
  assert_true(deadline >= before + 59000 && deadline <= now_ms() + 60000);
  assert_non_null(strstr(text, "id=hdr-1;"));
  assert_non_null(strstr(text, ";arn=arn:brume:lambda:local:acct1:function:echo;"));
  assert_non_null(strstr(text, ";trace=Root=1-abc;Sampled=1;cc=e30=;ci="));
  free(text);
  free_msg(m);

  /* Wrong id 400, unknown path 404, wrong method 405, /init/error after init 403. */
  m = invoke(g, "probe-1", "probe", 3000);
  assert_payload(m, "probe:400,404,405,403");
  free_msg(m);

  m = invoke(g, "chunk-1", "chunked:hello chunked world", 3000);
  assert_payload(m, "hello chunked world");
  free_msg(m);

  /* 1 MiB response, posted with Expect: 100-continue. */
  m = invoke(g, "big-1", "big:1048576", 5000);
  assert_null(m->invoke_done->error);
  assert_int_equal(m->invoke_done->payload.len, 1048576);
  assert_int_equal(m->invoke_done->payload.data[1048575], 'a' + 1048575 % 26);
  free_msg(m);

  m = invoke(g, "big-2", "big:7000000", 5000);
  assert_fn_error(m->invoke_done->error, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                  "Function.ResponseSizeTooLarge", "6291556 bytes");
  assert_false(m->invoke_done->sandbox_broken);
  free_msg(m);

  /* A 5 MiB event. */
  size_t big = 5 << 20;
  char *payload = malloc(big + 1);
  memset(payload, 'e', big);
  payload[big] = '\0';
  m = invoke(g, "big-event", payload, 5000);
  assert_null(m->invoke_done->error);
  assert_int_equal(m->invoke_done->payload.len, big + strlen(" #7"));
  free(payload);
  free_msg(m);

  m = invoke(g, "fail-1", "fail", 3000);
  assert_fn_error(m->invoke_done->error, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_HANDLED,
                  "Echo.Failed", "failed on purpose");
  assert_true(m->invoke_done->payload.len > 0); /* the document as posted */
  assert_false(m->invoke_done->sandbox_broken);
  free_msg(m);

  m = invoke(g, "fail-2", "fail-body", 3000);
  assert_fn_error(m->invoke_done->error, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_HANDLED,
                  "Echo.BodyType", "from the body line 2");
  free_msg(m);

  m = invoke(g, "after-errors", "still", 3000);
  assert_payload(m, "still #10");
  free_msg(m);

  /* Wrong for the state: a second Init. */
  send_init(g, &a);
  m = expect_msg(g, BRUME__GUEST_MESSAGE__BODY_ERROR, WAIT_MS);
  assert_string_equal(m->error->message, "Init received twice");
  free_msg(m);
  expect_eof(g);
}

static void test_runtime_timeout(void **state) {
  guest *g = *state;
  init_args a = runtime_with_env(NULL);
  init_ok(g, &a);
  long long t0 = brume_test_now_ms();
  Brume__GuestMessage *m = invoke(g, "slow-1", "sleep", 300);
  long long took = brume_test_now_ms() - t0;
  assert_true(took >= 250 && took < 3000);
  assert_fn_error(m->invoke_done->error, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                  "Sandbox.Timedout", "Task timed out after");
  assert_true(m->invoke_done->sandbox_broken);
  assert_true(tail_has(&m->invoke_done->log_tail, "got sleep"));
  free_msg(m);
  /* brume-init killed the runtime itself: no RuntimeExited, and the next event fails at once. */
  ping(g, 7);
  m = invoke(g, "after-timeout", "x", 1000);
  assert_fn_error(m->invoke_done->error, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                  "Runtime.ExitError", "not running");
  assert_true(m->invoke_done->sandbox_broken);
  free_msg(m);
  shutdown_expect(g, 500, true);
}

static void test_runtime_exit(void **state) {
  guest *g = *state;
  init_args a = runtime_with_env(NULL);
  init_ok(g, &a);
  Brume__GuestMessage *m = invoke(g, "ok-1", "fine", 3000);
  assert_payload(m, "fine #1");
  free_msg(m);
  m = invoke(g, "exit-1", "exit", 3000);
  assert_fn_error(m->invoke_done->error, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                  "Runtime.ExitError", "exit status 3");
  assert_true(m->invoke_done->sandbox_broken);
  assert_true(tail_has(&m->invoke_done->log_tail, "exiting with 3"));
  free_msg(m);
  m = expect_msg(g, BRUME__GUEST_MESSAGE__BODY_RUNTIME_EXITED, WAIT_MS);
  assert_int_equal(m->runtime_exited->status, 3);
  assert_true(tail_has(&m->runtime_exited->log_tail, "exiting with 3"));
  free_msg(m);
}

static void test_init_error(void **state) {
  guest *g = *state;
  const char *env[] = {"ECHO_RUNTIME_INIT", "error", NULL};
  init_args a = runtime_with_env(env);
  Brume__GuestMessage *m = init(g, &a);
  assert_fn_error(m->init_done->error, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                  "Echo.InitFailed", "init failed on purpose");
  assert_true(tail_has(&m->init_done->log_tail, "echo runtime starting"));
  free_msg(m);
  ping(g, 1); /* killed by brume-init: no RuntimeExited */
}

static void test_init_exit(void **state) {
  guest *g = *state;
  const char *env[] = {"ECHO_RUNTIME_INIT", "exit", NULL};
  init_args a = runtime_with_env(env);
  Brume__GuestMessage *m = init(g, &a);
  assert_fn_error(m->init_done->error, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                  "Runtime.ExitError", "exit status 2");
  assert_true(tail_has(&m->init_done->log_tail, "giving up during init"));
  free_msg(m);
  m = expect_msg(g, BRUME__GUEST_MESSAGE__BODY_RUNTIME_EXITED, WAIT_MS);
  assert_int_equal(m->runtime_exited->status, 2);
  free_msg(m);
}

static void test_init_timeout(void **state) {
  guest *g = *state;
  const char *env[] = {"ECHO_RUNTIME_INIT", "hang", NULL};
  init_args a = runtime_with_env(env);
  a.init_timeout_ms = 300;
  Brume__GuestMessage *m = init(g, &a);
  assert_fn_error(m->init_done->error, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                  "Sandbox.Timedout", "300 ms");
  free_msg(m);
}

static void test_missing_bootstrap(void **state) {
  guest *g = *state;
  init_args a = runtime_init;
  a.zip = path_in(workdir, "nobootstrap.zip");
  Brume__GuestMessage *m = init(g, &a);
  assert_fn_error(m->init_done->error, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                  "Runtime.InvalidEntrypoint", "bootstrap");
  free_msg(m);
  m = invoke(g, "r1", "x", 1000);
  assert_true(m->invoke_done->sandbox_broken);
  free_msg(m);
}

static void test_bad_zip(void **state) {
  guest *g = *state;
  init_args a = runtime_init;
  a.zip = path_in(workdir, "garbage.zip");
  Brume__GuestMessage *m = init(g, &a);
  assert_fn_error(m->init_done->error, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                  "InvalidZipFileException", "unzip failed");
  free_msg(m);
}

/* The code as files (GuestInit.code): written with their modes, symlinks last; the runtime
 * runs from them. A path that leaves the task root is InvalidZipFileException. */
static void test_code_files(void **state) {
  guest *g = *state;
  Brume__GuestCodeFile boot = BRUME__GUEST_CODE_FILE__INIT, dir = BRUME__GUEST_CODE_FILE__INIT,
                       data = BRUME__GUEST_CODE_FILE__INIT, link = BRUME__GUEST_CODE_FILE__INIT;
  boot.path = "bootstrap";
  boot.mode = 0755;
  boot.data.data = brume_test_read_file(runtime_bin, &boot.data.len);
  assert_non_null(boot.data.data);
  dir.path = "conf";
  dir.type = BRUME__GUEST_CODE_FILE__TYPE__DIRECTORY;
  dir.mode = 0700;
  data.path = "conf/a.txt";
  data.mode = 0640;
  data.data.data = (uint8_t *)"abc";
  data.data.len = 3;
  link.path = "a.txt";
  link.type = BRUME__GUEST_CODE_FILE__TYPE__SYMLINK;
  link.data.data = (uint8_t *)"conf/a.txt";
  link.data.len = 10;
  Brume__GuestCodeFile *files[] = {&link, &boot, &dir, &data};
  Brume__GuestCode code = BRUME__GUEST_CODE__INIT;
  code.files = files;
  code.n_files = 4;
  init_args a = runtime_init;
  a.code = &code;
  init_ok(g, &a);
  Brume__GuestMessage *m = invoke(g, "files-1", "hi", 5000);
  assert_payload(m, "hi #1");
  free_msg(m);
  struct stat st;
  assert_int_equal(stat(path_in(g->task, "bootstrap"), &st), 0);
  assert_int_equal(st.st_mode & 07777, 0755);
  assert_int_equal(stat(path_in(g->task, "conf"), &st), 0);
  assert_int_equal(st.st_mode & 07777, 0700);
  assert_int_equal(stat(path_in(g->task, "a.txt"), &st), 0); /* through the symlink */
  assert_int_equal(st.st_mode & 07777, 0640);
  assert_int_equal(st.st_size, 3);
  free(boot.data.data);
}

static void test_code_files_bad_path(void **state) {
  guest *g = *state;
  Brume__GuestCodeFile f = BRUME__GUEST_CODE_FILE__INIT;
  f.path = "../outside";
  f.mode = 0644;
  Brume__GuestCodeFile *files[] = {&f};
  Brume__GuestCode code = BRUME__GUEST_CODE__INIT;
  code.files = files;
  code.n_files = 1;
  init_args a = runtime_init;
  a.code = &code;
  Brume__GuestMessage *m = init(g, &a);
  assert_fn_error(m->init_done->error, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                  "InvalidZipFileException", "unusable path");
  free_msg(m);
  assert_int_not_equal(access(path_in(g->dir, "outside"), F_OK), 0);
}

static void test_shutdown_grace(void **state) {
  guest *g = *state;
  const char *env[] = {"ECHO_RUNTIME_IGNORE_TERM", "1", NULL};
  init_args a = runtime_with_env(env);
  init_ok(g, &a);
  long long t0 = brume_test_now_ms();
  shutdown_expect(g, 200, false);
  assert_true(brume_test_now_ms() - t0 >= 190);
  /* Stopped: a second Shutdown is answered again, an Invoke is refused. */
  shutdown_expect(g, 200, false);
  send_invoke(g, "late", "x", 1, 1000);
  Brume__GuestMessage *m = expect_msg(g, BRUME__GUEST_MESSAGE__BODY_ERROR, WAIT_MS);
  assert_string_equal(m->error->message, "Invoke after Shutdown");
  free_msg(m);
}

static void test_exec_mode(void **state) {
  guest *g = *state;
  init_args a = {.zip = path_in(workdir, "exec.zip"),
                 .mode = BRUME__HANDLER_MODE__HANDLER_MODE_EXEC,
                 .handler = "bin/handler.sh"};
  Brume__GuestMessage *m = init(g, &a);
  assert_null(m->init_done->error);
  assert_int_equal(m->init_done->runtime_init_us, 0);
  free_msg(m);
  for (int i = 1; i <= 100; i++) {
    char id[32], payload[64], want[64];
    snprintf(id, sizeof(id), "exec-%d", i);
    snprintf(payload, sizeof(payload), "hello number %d", i);
    snprintf(want, sizeof(want), "HELLO NUMBER %d", i);
    m = invoke(g, id, payload, 5000);
    assert_payload(m, want);
    assert_true(tail_has(&m->invoke_done->log_tail, "handling"));
    free_msg(m);
  }
  m = invoke(g, "exec-exit", "exit", 3000);
  assert_fn_error(m->invoke_done->error, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                  "Runtime.ExitError", "exit status 3");
  assert_false(m->invoke_done->sandbox_broken);
  assert_true(tail_has(&m->invoke_done->log_tail, "oops"));
  free_msg(m);
  m = invoke(g, "exec-sleep", "sleep", 300);
  assert_fn_error(m->invoke_done->error, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                  "Sandbox.Timedout", "Task timed out");
  assert_false(m->invoke_done->sandbox_broken);
  free_msg(m);
  m = invoke(g, "exec-after", "still here", 3000);
  assert_payload(m, "STILL HERE");
  free_msg(m);
  shutdown_expect(g, 500, true);
}

static void test_exec_missing_handler(void **state) {
  guest *g = *state;
  init_args a = {.zip = path_in(workdir, "exec.zip"),
                 .mode = BRUME__HANDLER_MODE__HANDLER_MODE_EXEC,
                 .handler = "bin/not-executable.txt"};
  Brume__GuestMessage *m = init(g, &a);
  assert_fn_error(m->init_done->error, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                  "Runtime.InvalidEntrypoint", "not-executable.txt");
  free_msg(m);
}

/* The code archives, made once with the zip CLI. */
static int make_zips(void **state) {
  (void)state;
  workdir = brume_test_tmpdir("guest-zips");
  assert_int_equal(brume_test_zip_bootstrap(workdir, runtime_bin, path_in(workdir, "runtime.zip")),
                   0);
  run("mkdir -p %s/ex/bin %s/none", workdir, workdir);
  FILE *f = fopen(path_in(workdir, "ex/bin/handler.sh"), "w");
  fputs(
      "#!/bin/sh\n"
      "in=$(cat)\n"
      "echo handling >&2\n"
      "case \"$in\" in\n"
      "  exit) echo oops >&2; exit 3 ;;\n"
      "  sleep) sleep 30 ;;\n"
      "  *) printf '%s' \"$in\" | tr a-z A-Z ;;\n"
      "esac\n",
      f);
  fclose(f);
  run("chmod 755 %s/ex/bin/handler.sh && echo data > %s/ex/bin/not-executable.txt", workdir,
      workdir);
  run("cd %s/ex && zip -q -r ../exec.zip .", workdir);
  run("echo nothing to run > %s/none/README && cd %s/none && zip -q -r ../nobootstrap.zip .",
      workdir, workdir);
  run("head -c 3000 /dev/urandom > %s/garbage.zip", workdir);
  return 0;
}

static int remove_zips(void **state) {
  (void)state;
  brume_test_rmtree(workdir);
  free(workdir);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s BRUME_INIT_HOST ECHO_RUNTIME\n", argv[0]);
    return 2;
  }
  init_bin = argv[1];
  runtime_bin = argv[2];
  signal(SIGPIPE, SIG_IGN);
#define T(f) cmocka_unit_test_setup_teardown(f, guest_setup, guest_teardown)
  const struct CMUnitTest tests[] = {
      T(test_ping_and_reconnect),
      T(test_invoke_before_init),
      T(test_frame_too_long),
      T(test_runtime_100_invocations),
      T(test_runtime_api_details),
      T(test_runtime_timeout),
      T(test_runtime_exit),
      T(test_init_error),
      T(test_init_exit),
      T(test_init_timeout),
      T(test_missing_bootstrap),
      T(test_bad_zip),
      T(test_code_files),
      T(test_code_files_bad_path),
      T(test_shutdown_grace),
      T(test_exec_mode),
      T(test_exec_missing_handler),
  };
  return cmocka_run_group_tests(tests, make_zips, remove_zips);
}
