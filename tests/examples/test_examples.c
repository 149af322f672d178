/* The example functions of examples/ behave as examples/README.md says, without a VM:
 *   - hello-shell's handler.sh under busybox sh (the guest's shell), on sample events: its
 *     stdout, stderr and exit status;
 *   - the zips the build made: what brume_code_zip_check accepts (the frontend's upload check)
 *     and the entries the worker would send (names, types, mode 0755);
 *   - both zips run by brume-init-host (the real guest agent as a host process, the Runtime API
 *     on a loopback port), driven over its control socket as the worker drives a sandbox: the C
 *     runtime's answers, its invocation count across warm invocations and its function error
 *     for a bad event; the shell handler in EXEC mode, its answer and its Runtime.ExitError.
 * In a real microVM they run in the end-to-end tests (deploy/quickstart.sh's path).
 *
 *   test_examples EXAMPLES_SRC_DIR EXAMPLES_ZIP_DIR BRUME_INIT_HOST
 */
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

#include "code_zip.h"
#include "guest_link.h"
#include "log.h"
#include "proc.h"
#include "testutil.h"

#define BUSYBOX "/bin/busybox"
#define WAIT_MS 10000

static const char *src_dir, *zip_dir, *init_bin;
static char *tmp;

/* ---- handler.sh under busybox sh ---- */

typedef struct run {
  int status; /* exit status, -1 when it did not exit normally */
  char *out, *err;
} run;

static char *slurp(const char *path) {
  size_t len = 0;
  char *s = (char *)brume_test_read_file(path, &len);
  assert_non_null(s);
  s[len] = '\0';
  return s;
}

/* Runs handler.sh with busybox sh, event on stdin, in the guest's environment: nothing on PATH
 * but busybox's applets (a directory of links to it, as the guest image has). */
static run run_handler(const char *event) {
  char in[512], out[512], err[512], cmd[4096];
  snprintf(in, sizeof(in), "%s/event", tmp);
  snprintf(out, sizeof(out), "%s/stdout", tmp);
  snprintf(err, sizeof(err), "%s/stderr", tmp);
  FILE *f = fopen(in, "w");
  assert_non_null(f);
  fputs(event, f);
  fclose(f);
  snprintf(cmd, sizeof(cmd),
           "cd %s && env -i PATH=%s/bin %s sh %s/hello-shell/handler.sh < %s > %s 2> %s", tmp, tmp,
           BUSYBOX, src_dir, in, out, err);
  int st = system(cmd);
  run r = {.status = st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1};
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

static void expect_answer(const char *event, const char *answer) {
  run r = run_handler(event);
  if (r.status != 0 || strcmp(r.out, answer) != 0)
    fail_msg("event %s: status %d, stdout '%s' (want '%s'), stderr '%s'", event, r.status, r.out,
             answer, r.err);
  assert_string_equal(r.err, "");
  free(r.out);
  free(r.err);
}

static void test_shell_handler(void **state) {
  (void)state;
  if (access(BUSYBOX, X_OK) != 0) fail_msg("no %s (deploy/install-deps.sh installs it)", BUSYBOX);
  assert_int_equal(brume_test_run("set -e; mkdir -p %s/bin; for a in $(%s --list); do "
                                  "ln -sf %s %s/bin/$a; done",
                                  tmp, BUSYBOX, BUSYBOX, tmp),
                   0);
  expect_answer("{\"name\":\"Brume\"}", "{\"message\": \"Hello, Brume!\"}");
  expect_answer("{ \"fail\" : false, \"name\" : \"two words\" }",
                "{\"message\": \"Hello, two words!\"}");
  expect_answer("{\n  \"name\": \"pretty\",\n  \"n\": 1\n}\n", "{\"message\": \"Hello, pretty!\"}");
  expect_answer("{}", "{\"message\": \"Hello, world!\"}");
  expect_answer("", "{\"message\": \"Hello, world!\"}");
  expect_answer("{\"name\": 42}", "{\"message\": \"Hello, world!\"}");
  expect_answer("{\"name\": \"\", \"x\": 1}", "{\"message\": \"Hello, world!\"}");
  expect_answer("{\"a\": 1, \"name\": \"first\", \"b\": {\"name\": \"second\"}}",
                "{\"message\": \"Hello, first!\"}");
  /* A name the little awk parser does not take: world, and the answer is still valid JSON. */
  expect_answer("{\"name\":\"a\\\"b\"}", "{\"message\": \"Hello, world!\"}");

  run r = run_handler("{\"name\":\"Brume\",\"fail\": true}");
  assert_int_equal(r.status, 1);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err, "hello-shell: the event asked me to fail\n");
  free(r.out);
  free(r.err);
}

/* ---- the zips ---- */

static uint8_t *read_zip(const char *name, size_t *len) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/%s", zip_dir, name);
  uint8_t *z = brume_test_read_file(path, len);
  if (z == NULL) fail_msg("no %s: build the examples target", path);
  return z;
}

/* The zip's entries as the worker sends them to the guest: exactly one executable file. */
static Brume__GuestCode *expect_one_executable(const char *zip, const char *entry) {
  size_t len = 0;
  uint8_t *z = read_zip(zip, &len);
  brume_err *err = NULL;
  if (brume_code_zip_check(z, len, BRUME_CODE_UNPACKED_MAX, &err) < 0)
    fail_msg("%s: %s", zip, err->msg);
  const char *why = NULL;
  Brume__GuestCode *code = brume_code_zip_unpack(z, len, 64u << 20, &why);
  if (code == NULL) fail_msg("%s: %s", zip, why);
  assert_int_equal(code->n_files, 1);
  assert_string_equal(code->files[0]->path, entry);
  assert_int_equal(code->files[0]->type, BRUME__GUEST_CODE_FILE__TYPE__REGULAR);
  assert_int_equal(code->files[0]->mode, 0755);
  free(z);
  return code;
}

static void test_zips(void **state) {
  (void)state;
  Brume__GuestCode *code = expect_one_executable("hello-shell.zip", "handler.sh");
  /* The script itself, byte for byte. */
  char path[1024];
  snprintf(path, sizeof(path), "%s/hello-shell/handler.sh", src_dir);
  size_t len = 0;
  uint8_t *src = brume_test_read_file(path, &len);
  assert_non_null(src);
  assert_int_equal(code->files[0]->data.len, len);
  assert_memory_equal(code->files[0]->data.data, src, len);
  free(src);
  brume__guest_code__free_unpacked(code, NULL);

  code = expect_one_executable("hello-c.zip", "bootstrap");
  /* A static executable: the guest has no dynamic loader, so no PT_INTERP program header. */
  const uint8_t *elf = code->files[0]->data.data;
  size_t elf_len = code->files[0]->data.len;
  assert_true(elf_len > 64);
  assert_memory_equal(elf, "\177ELF\2", 5); /* 64-bit */
  uint64_t phoff;
  uint16_t phentsize, phnum;
  memcpy(&phoff, elf + 0x20, 8);
  memcpy(&phentsize, elf + 0x36, 2);
  memcpy(&phnum, elf + 0x38, 2);
  assert_true(phnum > 0 && phoff + (uint64_t)phnum * phentsize <= elf_len);
  for (uint16_t i = 0; i < phnum; i++) {
    uint32_t type;
    memcpy(&type, elf + phoff + (uint64_t)i * phentsize, 4);
    assert_int_not_equal(type, 3 /* PT_INTERP */);
  }
  brume__guest_code__free_unpacked(code, NULL);
}

/* ---- under brume-init-host ---- */

typedef struct guest {
  pid_t pid;
  char *dir;
  char sock[108];
  char log[512];
  brume_guest_link *link;
} guest;

/* Starts brume-init-host and initialises it with the zip's files in mode, as a worker would. */
static void guest_start(guest *g, const char *zip, Brume__HandlerMode mode, const char *handler) {
  g->dir = brume_xasprintf("%s/guest-%s", tmp, zip);
  assert_int_equal(brume_test_run("mkdir -p %s", g->dir), 0);
  g->pid = brume_test_spawn_init_host(init_bin, g->dir, g->sock, g->log);
  assert_true(g->pid > 0);
  brume_err *err = NULL;
  g->link = brume_guest_link_connect(g->sock, WAIT_MS, &err);
  if (g->link == NULL) {
    brume_test_dump_file(g->log);
    fail_msg("connect: %s", err->msg);
  }

  size_t len = 0;
  uint8_t *z = read_zip(zip, &len);
  const char *why = NULL;
  Brume__GuestInit in = BRUME__GUEST_INIT__INIT;
  in.code = brume_code_zip_unpack(z, len, 64u << 20, &why);
  assert_non_null(in.code);
  in.handler_mode = mode;
  in.handler = (char *)handler;
  in.function_name = "example";
  in.function_version = "$LATEST";
  in.memory_mib = 128;
  in.function_arn = "arn:brume:lambda:local:acct1:function:example";
  in.tmp_mib = 512;
  Brume__GuestInitDone *done = NULL;
  int r = brume_guest_link_init(g->link, &in, &done, WAIT_MS, &err);
  brume__guest_code__free_unpacked(in.code, NULL);
  free(z);
  if (r < 0) {
    brume_test_dump_file(g->log);
    fail_msg("init: %s", err->msg);
  }
  if (done->error) fail_msg("InitDone: %s: %s", done->error->type, done->error->message);
  brume__guest_init_done__free_unpacked(done, NULL);
}

static void guest_stop(guest *g) {
  brume_guest_link_close(g->link);
  int st = brume_test_stop(g->pid, SIGTERM, WAIT_MS);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    brume_test_dump_file(g->log);
    fail_msg("brume-init-host ended with wait status %d", st);
  }
  brume_test_rmtree(g->dir);
  free(g->dir);
}

static Brume__GuestInvokeDone *invoke(guest *g, const char *payload) {
  static int n;
  char id[32];
  snprintf(id, sizeof(id), "req-%d", ++n);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  Brume__GuestInvoke inv = BRUME__GUEST_INVOKE__INIT;
  inv.request_id = id;
  inv.payload.data = (uint8_t *)payload;
  inv.payload.len = strlen(payload);
  inv.deadline_unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 5000;
  Brume__GuestInvokeDone *done = NULL;
  brume_err *err = NULL;
  if (brume_guest_link_invoke(g->link, &inv, &done, WAIT_MS, &err) < 0) {
    brume_test_dump_file(g->log);
    fail_msg("invoke %s: %s", payload, err->msg);
  }
  assert_string_equal(done->request_id, id);
  return done;
}

static void expect_payload(guest *g, const char *event, const char *want) {
  Brume__GuestInvokeDone *d = invoke(g, event);
  if (d->error) fail_msg("event %s: error %s: %s", event, d->error->type, d->error->message);
  if (d->payload.len != strlen(want) || memcmp(d->payload.data, want, d->payload.len) != 0)
    fail_msg("event %s: answered '%.*s', want '%s'", event, (int)d->payload.len,
             (const char *)d->payload.data, want);
  brume__guest_invoke_done__free_unpacked(d, NULL);
}

static void expect_error(guest *g, const char *event, Brume__FunctionErrorKind kind,
                         const char *type, const char *message) {
  Brume__GuestInvokeDone *d = invoke(g, event);
  if (d->error == NULL)
    fail_msg("event %s: answered '%.*s', want error %s", event, (int)d->payload.len,
             (const char *)d->payload.data, type);
  assert_int_equal(d->error->kind, kind);
  assert_string_equal(d->error->type, type);
  if (message) assert_string_equal(d->error->message, message);
  assert_false(d->sandbox_broken);
  brume__guest_invoke_done__free_unpacked(d, NULL);
}

static void test_hello_c_runtime(void **state) {
  (void)state;
  guest g = {0};
  guest_start(&g, "hello-c.zip", BRUME__HANDLER_MODE__HANDLER_MODE_RUNTIME_API, "hello");
  expect_payload(&g, "{\"name\":\"Brume\"}", "{\"message\": \"Hello, Brume!\", \"invocation\": 1}");
  /* The same process answers again: the count shows the warm reuse. */
  expect_payload(&g, "{}", "{\"message\": \"Hello, world!\", \"invocation\": 2}");
  /* Nested values are skipped, and the name is copied with its JSON escapes. */
  expect_payload(&g, " {\"a\": {\"name\": [1, \"}\"]}, \"name\": \"caf\\u00e9 \\\"q\\\"\"} ",
                 "{\"message\": \"Hello, caf\\u00e9 \\\"q\\\"!\", \"invocation\": 3}");
  Brume__GuestInvokeDone *d = invoke(&g, "{\"name\":\"log\"}");
  assert_null(d->error);
  assert_non_null(memmem(d->log_tail.data, d->log_tail.len, "hello-c: invocation 4, request", 30));
  brume__guest_invoke_done__free_unpacked(d, NULL);

  /* Bad events: a function error (Handled, the runtime's own type), and the runtime carries on. */
  const Brume__FunctionErrorKind handled = BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_HANDLED;
  expect_error(&g, "not json", handled, "HelloC.BadEvent", "The event is not a JSON object.");
  expect_error(&g, "{\"name\": 5}", handled, "HelloC.BadEvent",
               "The event's 'name' is not a string.");
  expect_error(&g, "{\"name\": \"x\"", handled, "HelloC.BadEvent", "The event is not valid JSON.");
  expect_error(&g, "{\"name\": \"x\"} trailing", handled, "HelloC.BadEvent",
               "The event is not valid JSON.");
  expect_payload(&g, "{\"name\":\"again\"}", "{\"message\": \"Hello, again!\", \"invocation\": 9}");
  /* sleep_ms holds the answer back that long; a bad one is refused. */
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  expect_payload(&g, "{\"sleep_ms\": 300, \"name\": \"slow\"}",
                 "{\"message\": \"Hello, slow!\", \"invocation\": 10}");
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  assert_true(ms >= 300);
  expect_error(&g, "{\"sleep_ms\": \"x\"}", handled, "HelloC.BadEvent",
               "The event's 'sleep_ms' is not a whole number from 0 to 900000.");
  expect_error(&g, "{\"sleep_ms\": 900001}", handled, "HelloC.BadEvent",
               "The event's 'sleep_ms' is not a whole number from 0 to 900000.");
  guest_stop(&g);
}

static void test_hello_shell_exec(void **state) {
  (void)state;
  guest g = {0};
  /* EXEC mode runs handler.sh by its #!/bin/sh line: here the host's sh, busybox's in a guest. */
  guest_start(&g, "hello-shell.zip", BRUME__HANDLER_MODE__HANDLER_MODE_EXEC, "handler.sh");
  expect_payload(&g, "{\"name\":\"Brume\"}", "{\"message\": \"Hello, Brume!\"}");
  expect_payload(&g, "{}", "{\"message\": \"Hello, world!\"}");
  expect_error(&g, "{\"fail\": true}", BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
               "Runtime.ExitError", NULL);
  expect_payload(&g, "{\"name\":\"after\"}", "{\"message\": \"Hello, after!\"}");
  guest_stop(&g);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s EXAMPLES_SRC_DIR EXAMPLES_ZIP_DIR BRUME_INIT_HOST\n", argv[0]);
    return 2;
  }
  src_dir = argv[1];
  zip_dir = argv[2];
  init_bin = argv[3];
  brume_log_init("test-examples", BRUME_LOG_WARN);
  tmp = brume_test_tmpdir("examples");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shell_handler),
      cmocka_unit_test(test_zips),
      cmocka_unit_test(test_hello_c_runtime),
      cmocka_unit_test(test_hello_shell_exec),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  brume_test_rmtree(tmp);
  free(tmp);
  return rc;
}
