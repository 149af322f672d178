/* worker-agent/guest_link against brume-init-host: the real guest agent as an ordinary process,
 * listening on a UNIX socket as QEMU's end of the virtio port does. The function is the C echo
 * runtime of tests/guest_init (answers "<payload> #<count>", the count kept in its memory),
 * zipped with the zip CLI.
 *
 *   test_worker_guest_link BRUME_INIT_HOST ECHO_RUNTIME
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
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

#include "guest_link.h"
#include "log.h"
#include "proc.h"
#include "testutil.h"

#define WAIT_MS 5000

static const char *init_bin;
static const char *runtime_bin;
static char *zipdir;

typedef struct guest {
  pid_t pid;
  char *dir;
  char sock[108];
  char log[512];
} guest;

static void dump_log(const guest *g) {
  brume_test_dump_file(g->log);
}

static int guest_setup(void **state) {
  guest *g = calloc(1, sizeof(*g));
  g->dir = brume_test_tmpdir("guest-link");
  g->pid = brume_test_spawn_init_host(init_bin, g->dir, g->sock, g->log);
  assert_true(g->pid > 0);
  *state = g;
  return 0;
}

static int guest_teardown(void **state) {
  guest *g = *state;
  int rc = 0;
  if (g->pid > 0) {
    int st = brume_test_stop(g->pid, SIGTERM, WAIT_MS);
    /* Under the sanitizer build a leak in brume-init-host makes its exit non-zero. */
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      dump_log(g);
      fprintf(stderr, "brume-init-host ended with wait status %d\n", st);
      rc = -1;
    }
  }
  brume_test_rmtree(g->dir);
  free(g->dir);
  free(g);
  return rc;
}

static brume_guest_link *link_connect(guest *g) {
  brume_err *err = NULL;
  /* The socket does not exist yet when brume-init-host has just been spawned: connect retries. */
  brume_guest_link *l = brume_guest_link_connect(g->sock, WAIT_MS, &err);
  if (l == NULL) {
    dump_log(g);
    fail_msg("connect: %s", err->msg);
  }
  return l;
}

static void init_ok(guest *g, brume_guest_link *l) {
  Brume__GuestInit in = BRUME__GUEST_INIT__INIT;
  char zip[512];
  snprintf(zip, sizeof(zip), "%s/runtime.zip", zipdir);
  in.code_zip.data = brume_test_read_file(zip, &in.code_zip.len);
  assert_non_null(in.code_zip.data);
  in.handler = "echo.handler";
  in.function_name = "echo";
  in.function_version = "1";
  in.memory_mib = 128;
  in.function_arn = "arn:brume:lambda:local:acct1:function:echo";
  in.tmp_mib = 512;
  Brume__GuestInitDone *done = NULL;
  brume_err *err = NULL;
  int r = brume_guest_link_init(l, &in, &done, WAIT_MS, &err);
  free(in.code_zip.data);
  if (r < 0) {
    dump_log(g);
    fail_msg("init: %s", err->msg);
  }
  if (done->error) fail_msg("InitDone: %s: %s", done->error->type, done->error->message);
  assert_true(done->unpack_us > 0);
  brume__guest_init_done__free_unpacked(done, NULL);
}

/* Invokes with payload; returns InvokeDone (checked for the request id). */
static Brume__GuestInvokeDone *invoke(brume_guest_link *l, const char *id, const char *payload) {
  Brume__GuestInvoke inv = BRUME__GUEST_INVOKE__INIT;
  inv.request_id = (char *)id;
  inv.payload.data = (uint8_t *)payload;
  inv.payload.len = strlen(payload);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  inv.deadline_unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 3000;
  Brume__GuestInvokeDone *done = NULL;
  brume_err *err = NULL;
  if (brume_guest_link_invoke(l, &inv, &done, WAIT_MS, &err) < 0)
    fail_msg("invoke %s: %s", id, err->msg);
  assert_string_equal(done->request_id, id);
  return done;
}

static void invoke_expect(brume_guest_link *l, const char *id, const char *payload,
                          const char *want) {
  Brume__GuestInvokeDone *d = invoke(l, id, payload);
  if (d->error) fail_msg("function error %s: %s", d->error->type, d->error->message);
  if (d->payload.len != strlen(want) || memcmp(d->payload.data, want, d->payload.len) != 0)
    fail_msg("payload %.*s, want %s", (int)d->payload.len, (const char *)d->payload.data, want);
  brume__guest_invoke_done__free_unpacked(d, NULL);
}

/* The whole life of a sandbox: connect, Init, 100 invocations, a function error, a reconnect
 * that finds the runtime (and its counter) as it was, shutdown. */
static void test_lifecycle(void **state) {
  guest *g = *state;
  brume_guest_link *l = link_connect(g);
  assert_false(brume_guest_link_ready(l)->initialised);
  assert_int_equal(brume_guest_link_ready(l)->protocol_version, 1);
  assert_true(brume_guest_link_ready(l)->uptime_us > 0);
  brume_err *err = NULL;
  assert_int_equal(brume_guest_link_ping(l, WAIT_MS, &err), 0);
  init_ok(g, l);

  char id[32], payload[64], want[96];
  for (int i = 1; i <= 100; i++) {
    snprintf(id, sizeof(id), "req-%d", i);
    snprintf(payload, sizeof(payload), "event %d of the lifecycle %x", i, i * 7919);
    snprintf(want, sizeof(want), "%s #%d", payload, i);
    invoke_expect(l, id, payload, want);
  }

  Brume__GuestInvokeDone *d = invoke(l, "req-fail", "fail");
  assert_non_null(d->error);
  assert_int_equal(d->error->kind, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_HANDLED);
  assert_string_equal(d->error->type, "Echo.Failed");
  assert_false(d->sandbox_broken);
  brume__guest_invoke_done__free_unpacked(d, NULL);

  /* A worker restart: a new connection, Hello, and a Ready that says Init already happened. */
  brume_guest_link_close(l);
  l = link_connect(g);
  assert_true(brume_guest_link_ready(l)->initialised);
  invoke_expect(l, "req-after", "after the reconnect", "after the reconnect #102");
  assert_false(brume_guest_link_runtime_exited(l, NULL));

  bool clean = false;
  assert_int_equal(brume_guest_link_shutdown(l, 500, &clean, WAIT_MS, &err), 0);
  assert_true(clean);
  brume_guest_link_close(l);
}

/* Several reconnects without reading anything in between, and a connection left with an
 * unanswered Ping: each new link still finds its own Ready. */
static void test_reconnect_skips_leftovers(void **state) {
  guest *g = *state;
  brume_guest_link *l = link_connect(g);
  init_ok(g, l);
  invoke_expect(l, "r1", "one", "one #1");
  brume_guest_link_close(l);
  for (int i = 0; i < 5; i++) {
    l = link_connect(g);
    assert_true(brume_guest_link_ready(l)->initialised);
    brume_guest_link_close(l);
  }
  l = link_connect(g);
  invoke_expect(l, "r2", "two", "two #2");
  brume_guest_link_close(l);
}

/* A GuestError (a second Init) is an INTERNAL error with the guest's words, and the link is
 * unusable afterwards. */
static void test_guest_error(void **state) {
  guest *g = *state;
  brume_guest_link *l = link_connect(g);
  init_ok(g, l);
  Brume__GuestInit in = BRUME__GUEST_INIT__INIT;
  Brume__GuestInitDone *done = NULL;
  brume_err *err = NULL;
  assert_int_equal(brume_guest_link_init(l, &in, &done, WAIT_MS, &err), -1);
  assert_null(done);
  assert_int_equal(err->code, BRUME_INTERNAL);
  assert_non_null(strstr(err->msg, "Init received twice"));
  brume_err_clear(&err);
  assert_int_equal(brume_guest_link_ping(l, WAIT_MS, &err), -1);
  assert_int_equal(err->code, BRUME_INTERNAL);
  assert_non_null(strstr(err->msg, "unusable"));
  brume_err_clear(&err);
  brume_guest_link_close(l);
}

/* A runtime that exits: its InvokeDone says so, and the unprompted RuntimeExited that follows is
 * recorded by the next call instead of failing it. */
static void test_runtime_exit(void **state) {
  guest *g = *state;
  brume_guest_link *l = link_connect(g);
  init_ok(g, l);
  Brume__GuestInvokeDone *d = invoke(l, "r-exit", "exit");
  assert_non_null(d->error);
  assert_string_equal(d->error->type, "Runtime.ExitError");
  assert_true(d->sandbox_broken);
  brume__guest_invoke_done__free_unpacked(d, NULL);
  brume_err *err = NULL;
  /* RuntimeExited may trail InvokeDone: a ping or two picks it up. */
  for (int i = 0; i < 50 && !brume_guest_link_runtime_exited(l, NULL); i++) {
    assert_int_equal(brume_guest_link_ping(l, WAIT_MS, &err), 0);
    usleep(10 * 1000);
  }
  int status = -1;
  assert_true(brume_guest_link_runtime_exited(l, &status));
  assert_int_equal(status, 3);
  brume_guest_link_close(l);
}

/* Timeouts are DEADLINE_EXCEEDED and leave the link usable: the late answer is skipped. A
 * closed channel is UNAVAILABLE. */
static void test_timeouts_and_close(void **state) {
  guest *g = *state;
  brume_err *err = NULL;
  long long t0 = brume_test_now_ms();
  assert_null(brume_guest_link_connect("/nonexistent/brume/control.sock", 200, &err));
  assert_int_equal(err->code, BRUME_DEADLINE_EXCEEDED);
  assert_true(brume_test_now_ms() - t0 >= 190);
  brume_err_clear(&err);

  brume_guest_link *l = link_connect(g);
  init_ok(g, l);
  Brume__GuestInvoke inv = BRUME__GUEST_INVOKE__INIT;
  inv.request_id = "r-sleep";
  inv.payload.data = (uint8_t *)"sleep";
  inv.payload.len = 5;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  inv.deadline_unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 300;
  Brume__GuestInvokeDone *done = NULL;
  assert_int_equal(brume_guest_link_invoke(l, &inv, &done, 50, &err), -1);
  assert_int_equal(err->code, BRUME_DEADLINE_EXCEEDED);
  brume_err_clear(&err);
  /* The link is still usable: the guest answers a Ping while the function runs. */
  assert_int_equal(brume_guest_link_ping(l, WAIT_MS, &err), 0);
  /* The guest times the function out itself after 300 ms, and kills the runtime; the next
   * invocation skips that late answer for r-sleep and gets its own (the runtime is gone). */
  usleep(600 * 1000);
  Brume__GuestInvokeDone *d = invoke(l, "r-next", "next");
  assert_non_null(d->error);
  assert_string_equal(d->error->type, "Runtime.ExitError");
  assert_true(d->sandbox_broken);
  brume__guest_invoke_done__free_unpacked(d, NULL);

  /* The guest goes away: UNAVAILABLE. */
  int st = brume_test_stop(g->pid, SIGTERM, WAIT_MS);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  g->pid = 0;
  assert_int_equal(brume_guest_link_ping(l, WAIT_MS, &err), -1);
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  assert_non_null(strstr(err->msg, "the guest's channel closed"));
  brume_err_clear(&err);
  brume_guest_link_close(l);
}

static int make_zip(void **state) {
  (void)state;
  zipdir = brume_test_tmpdir("guest-link-zip");
  char zip[512];
  snprintf(zip, sizeof(zip), "%s/runtime.zip", zipdir);
  assert_int_equal(brume_test_zip_bootstrap(zipdir, runtime_bin, zip), 0);
  return 0;
}

static int remove_zip(void **state) {
  (void)state;
  brume_test_rmtree(zipdir);
  free(zipdir);
  return 0;
}

int main(int argc, char **argv) {
  brume_log_init("test-guest-link", BRUME_LOG_WARN);
  if (argc != 3) {
    fprintf(stderr, "usage: %s BRUME_INIT_HOST ECHO_RUNTIME (run it through ctest)\n", argv[0]);
    return 1;
  }
  init_bin = argv[1];
  runtime_bin = argv[2];
  signal(SIGPIPE, SIG_IGN);
#define T(f) cmocka_unit_test_setup_teardown(f, guest_setup, guest_teardown)
  const struct CMUnitTest tests[] = {
      T(test_lifecycle),    T(test_reconnect_skips_leftovers), T(test_guest_error),
      T(test_runtime_exit), T(test_timeouts_and_close),
  };
  return cmocka_run_group_tests_name("worker_guest_link", tests, make_zip, remove_zip);
}
