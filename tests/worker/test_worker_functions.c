/* brume-worker end to end, several functions: the daemon as its own process, a real etcd, real
 * microVMs, driven through the Worker gRPC service.
 *
 *   test_worker_functions GUEST_DIR BRUME_INIT ECHO_RUNTIME_STATIC BRUME_WORKER
 *
 * The code server holds two zips, each at its own URL under its own SHA-256: the static echo
 * runtime (RUNTIME_API) and a shell function (EXEC: handler.sh, run by busybox sh once per event
 * with the event on stdin). The worker runs with pool_size 1, so sandboxes come both from the
 * pool and from a boot. In order, sharing the sandboxes they create:
 *   - the code server: each zip answers at its URL with bytes of its digest, any other path 404,
 *     and a CreateSandbox whose code URL is not served fails CodeUnavailableException;
 *   - the shell function answers 100 distinct events exactly (its name, an environment variable
 *     from the spec, the event upper-cased, its length); a handler exiting 7 is
 *     Runtime.ExitError and one past its timeout Sandbox.Timedout, and in EXEC mode the sandbox
 *     stays IDLE and answers the next event;
 *   - an echo runtime posting /error is a Handled function error with the type and message it
 *     sent, and the same runtime answers the next event;
 *   - an echo runtime sleeping past its 1 s timeout is Sandbox.Timedout within a bounded time,
 *     and the sandbox TERMINATING, then GONE: no domain, no QEMU, NOT_FOUND, not listed;
 *   - an echo runtime that exits is Runtime.ExitError ("exit status 3") and TERMINATING; the
 *     replacement for the same function answers with a fresh runtime;
 *   - sandboxes of two functions and of two accounts with the same function name have distinct
 *     ids, domains and QEMU processes, List shows each with its function, and after a Destroy
 *     the next CreateSandbox gets neither the destroyed id nor its domain;
 *   - Destroy leaves no QEMU process (by /proc, not only libvirt), and a SIGTERM of the worker
 *     leaves none of its host at all.
 * Exit 77 (skip) when not root, libvirtd does not answer, etcd is absent or the guest image
 * cannot be built. */
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

#include "brume/worker.pb-c.h"
#include "log.h"
#include "mem.h"
#include "proc.h"
#include "testutil.h"
#include "worker_calls.h"
#include "worker_fixture.h"

/* The echo function's timeout, and how much later than it the answer to a runtime that sleeps
 * may come: the guest's timer, then the worker destroys the domain before it answers (0.3-0.9 s
 * here). Without the guest's answer the worker would give up 2 s after the deadline and fail the
 * call INTERNAL. */
#define TIMEOUT_MS 1000
#define TIMEOUT_SLACK_MS 1500
/* The shell function's: an EXEC event (fork and exec of sh and tr under TCG) takes about 0.2 s
 * in the guest here and up to 1 s when the host is busy. */
#define SHELL_TIMEOUT_MS 3000
/* How late the guest's timer may fire, by the duration the guest measures. */
#define TIMER_SLACK_MS 500

#define HANDLED BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_HANDLED
#define UNHANDLED BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED
#define IDLE BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE
#define TERMINATING BRUME__SANDBOX_STATE__SANDBOX_STATE_TERMINATING

static brume_test_worker *w;

/* The shell function: one process per event, the event on stdin, the answer on stdout. */
static const char handler_sh[] =
    "#!/bin/sh\n"
    "ev=$(cat)\n"
    "case \"$ev\" in\n"
    "  exit) echo 'exiting on purpose' >&2; exit 7 ;;\n"
    "  sleep) exec sleep 60 ;;\n"
    "esac\n"
    "printf '%s %s %s %d' \"$AWS_LAMBDA_FUNCTION_NAME\" \"$GREETING\" "
    "\"$(printf '%s' \"$ev\" | tr a-z A-Z)\" \"${#ev}\"\n";
static const brume_test_code *shell_code;
static const char *const shell_env[] = {"GREETING", "hello from the spec", NULL};

/* A whole vCPU: with the share of 128 MiB (7.2 %) a fork of sh and tr under TCG takes over a
 * second. */
static brume_test_fn shell_fn = {.function_name = "shell",
                                 .vcpu_milli = 1000,
                                 /* .code: shell_code, set in setup */
                                 .timeout_ms = SHELL_TIMEOUT_MS,
                                 .mode = BRUME__HANDLER_MODE__HANDLER_MODE_EXEC,
                                 .handler = "handler.sh",
                                 .env = shell_env};
static const brume_test_fn echo_fn = {.timeout_ms = TIMEOUT_MS}; /* acct1/echo */
static const brume_test_fn echo2_fn = {.account_id = "acct2"};   /* acct2/echo */

/* Every sandbox id the worker handed out, and the sandboxes still alive. */
static char seen[16][80];
static size_t n_seen;
static char shell_id[80], echo_id[80], acct2_id[80];

/* CreateSandbox of fn into id: a new id never handed out before, with its own domain running and
 * its own QEMU process. */
static void create(const brume_test_fn *fn, char *id) {
  brume_err *err = NULL;
  bool hit = false;
  if (brume_test_worker_create(w, fn, id, 80, NULL, &hit, &err) != 0) {
    brume_test_worker_dump_log(w);
    fail_msg("CreateSandbox %s: %s", fn->function_name ? fn->function_name : "echo", err->msg);
  }
  for (size_t i = 0; i < n_seen; i++)
    if (strcmp(seen[i], id) == 0) fail_msg("CreateSandbox handed out %s a second time", id);
  assert_true(n_seen < sizeof(seen) / sizeof(seen[0]));
  snprintf(seen[n_seen++], sizeof(seen[0]), "%s", id);
  assert_true(brume_test_worker_domain_state(w, id) >= 0);
  brume_autofree char *name = brume_test_worker_domain_name(w, id);
  if (brume_test_qemu_pid(name) == 0) fail_msg("no QEMU process runs %s", name);
}

/* Invokes id with payload; the answer must be a function error of kind and type (and message,
 * unless NULL) with the sandbox left in state. *ms (may be NULL) gets the round trip. Returns the
 * response for more checks (caller frees). */
static Brume__WorkerInvokeResponse *expect_error(const char *id, const char *rid,
                                                 const char *payload, Brume__FunctionErrorKind kind,
                                                 const char *type, const char *message,
                                                 Brume__SandboxState state, double *ms) {
  brume_err *err = NULL;
  Brume__WorkerInvokeResponse *r = NULL;
  double t0 = brume_test_mono_ms();
  if (brume_test_worker_invoke(w, id, rid, payload, strlen(payload), &r, &err) < 0)
    fail_msg("Invoke %s of %s: %s", rid, id, err->msg);
  if (ms) *ms = brume_test_mono_ms() - t0;
  if (r->function_error == NULL)
    fail_msg("Invoke %s of %s: answered \"%.*s\", want a function error", rid, id,
             (int)r->payload.len, (const char *)r->payload.data);
  print_message("# %s: %s \"%s\" (kind %d), state %d\n", rid, r->function_error->type,
                r->function_error->message, r->function_error->kind, r->state);
  assert_int_equal(r->function_error->kind, kind);
  assert_string_equal(r->function_error->type, type);
  if (message) assert_string_equal(r->function_error->message, message);
  assert_int_equal(r->state, state);
  return r;
}

/* A Sandbox.Timedout answer r, after a round trip of ms, for a function of timeout_ms: the
 * guest's timer fired neither early nor much late (by its message and duration_us), and the
 * answer came within TIMEOUT_SLACK_MS. */
static void expect_timed_out(const Brume__WorkerInvokeResponse *r, double ms, int timeout_ms) {
  double secs = 0;
  if (sscanf(r->function_error->message, "Task timed out after %lf seconds", &secs) != 1)
    fail_msg("message \"%s\"", r->function_error->message);
  assert_true(secs >= (timeout_ms - 50) / 1000.0 && secs <= (timeout_ms + TIMER_SLACK_MS) / 1000.0);
  assert_true(r->duration_us >= (uint64_t)(timeout_ms - 50) * 1000u &&
              r->duration_us <= (uint64_t)(timeout_ms + TIMER_SLACK_MS) * 1000u);
  assert_true(ms >= timeout_ms - 50 && ms <= timeout_ms + TIMEOUT_SLACK_MS);
}

/* The sandbox becomes GONE: no domain, no QEMU, then (once the worker has recorded it, within
 * 5 s) not in List and NOT_FOUND for an Invoke. */
static void expect_gone(const char *id) {
  double ms = brume_test_worker_expect_no_vm(w, id);
  print_message("# %s: QEMU gone %.0f ms after the answer\n", id, ms);
  brume_err *err = NULL;
  for (double t0 = brume_test_mono_ms(); brume_test_mono_ms() - t0 < 5000; usleep(20 * 1000)) {
    Brume__WorkerListRequest lr = BRUME__WORKER_LIST_REQUEST__INIT;
    Brume__WorkerListResponse *l = NULL;
    assert_int_equal(brume_test_worker_call(w, BRUME_TEST_W_LIST, &lr, &l, &err), 0);
    bool listed = false;
    for (size_t i = 0; i < l->n_sandboxes; i++)
      if (strcmp(l->sandboxes[i]->sandbox_id, id) == 0) listed = true;
    brume__worker_list_response__free_unpacked(l, NULL);
    if (!listed) break;
  }
  Brume__WorkerInvokeResponse *r = NULL;
  int rc = brume_test_worker_invoke(w, id, "req-after-gone", "x", 1, &r, &err);
  brume_test_expect_code(rc, err, BRUME_NOT_FOUND, "Invoke of a GONE sandbox");
  brume_err_clear(&err);
  Brume__WorkerListRequest lr = BRUME__WORKER_LIST_REQUEST__INIT;
  Brume__WorkerListResponse *l = NULL;
  assert_int_equal(brume_test_worker_call(w, BRUME_TEST_W_LIST, &lr, &l, &err), 0);
  for (size_t i = 0; i < l->n_sandboxes; i++)
    if (strcmp(l->sandboxes[i]->sandbox_id, id) == 0) fail_msg("List still shows %s", id);
  brume__worker_list_response__free_unpacked(l, NULL);
}

/* What the shell function answers to payload (ASCII). */
static void shell_answer(const char *payload, char *out, size_t size) {
  int n = snprintf(out, size, "shell %s ", shell_env[1]);
  for (const char *p = payload; *p && (size_t)n + 1 < size; p++)
    out[n++] = (*p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;
  snprintf(out + n, size - (size_t)n, " %zu", strlen(payload));
}

static void test_code_server(void **state) {
  (void)state;
  const brume_test_code *echo = &w->codes[0];
  assert_int_equal(w->n_codes, 2);
  assert_string_not_equal(echo->sha, shell_code->sha);
  assert_string_not_equal(echo->url, shell_code->url);
  const brume_test_code *codes[] = {echo, shell_code};
  char cmd[512];
  for (size_t i = 0; i < 2; i++) {
    snprintf(cmd, sizeof(cmd), "curl -sf --max-time 5 %s | sha256sum", codes[i]->url);
    brume_autofree char *sum = brume_test_last_line(cmd);
    assert_non_null(sum);
    if (strncmp(sum, codes[i]->sha, 64) != 0)
      fail_msg("%s serves %.64s, want %s", codes[i]->url, sum, codes[i]->sha);
  }
  /* Another digest, and a path that is not a digest: 404. */
  char url[sizeof(echo->url)];
  snprintf(url, sizeof(url), "%.*s%064d.zip", (int)(strrchr(echo->url, '/') + 1 - echo->url),
           echo->url, 0);
  snprintf(cmd, sizeof(cmd), "curl -s -o /dev/null -w '%%{http_code}' --max-time 5 %s", url);
  brume_autofree char *st1 = brume_test_last_line(cmd);
  assert_non_null(st1);
  assert_string_equal(st1, "404");
  snprintf(cmd, sizeof(cmd), "curl -s -o /dev/null -w '%%{http_code}' --max-time 5 %.*s",
           (int)(strlen(echo->url) - 4), echo->url);
  brume_autofree char *st2 = brume_test_last_line(cmd);
  assert_non_null(st2);
  assert_string_equal(st2, "404");

  /* The worker fetches by URL: a code whose URL is not served starts nothing. */
  brume_test_code missing = *echo;
  snprintf(missing.url, sizeof(missing.url), "%s", url);
  memset(missing.sha, '0', 64);
  brume_test_fn fn = {.code = &missing};
  brume_err *err = NULL;
  char id[80];
  int rc = brume_test_worker_create(w, &fn, id, sizeof(id), NULL, NULL, &err);
  brume_test_expect_code(rc, err, BRUME_UNAVAILABLE, "CreateSandbox of code that is not served");
  print_message("# unserved code: %s\n", err->msg);
  assert_non_null(strstr(err->msg, "CodeUnavailableException: "));
  assert_non_null(strstr(err->msg, "HTTP 404"));
  brume_err_clear(&err);
}

static void test_exec_function(void **state) {
  (void)state;
  create(&shell_fn, shell_id);
  char rid[32], payload[64], want[160];
  double rtt[100], guest[100];
  for (int i = 1; i <= 100; i++) {
    snprintf(rid, sizeof(rid), "req-sh-%d", i);
    snprintf(payload, sizeof(payload), "shell event %d %08x", i, (unsigned)i * 2654435761u);
    shell_answer(payload, want, sizeof(want));
    double t0 = brume_test_mono_ms();
    guest[i - 1] = brume_test_worker_expect_reply(w, shell_id, rid, payload, want) / 1000.0;
    rtt[i - 1] = brume_test_mono_ms() - t0;
  }
  print_message(
      "# EXEC Invoke (sh, a subshell and tr per event): round trip p50 %.1f ms, max %.1f ms; in "
      "the guest p50 %.1f ms, max %.1f ms (100, TCG)\n",
      brume_test_percentile(rtt, 100, 50), brume_test_percentile(rtt, 100, 100),
      brume_test_percentile(guest, 100, 50), brume_test_percentile(guest, 100, 100));

  /* A handler that exits non-zero: an unhandled error; the sandbox serves on (a new process
   * per event). */
  brume__worker_invoke_response__free_unpacked(
      expect_error(shell_id, "req-sh-exit", "exit", UNHANDLED, "Runtime.ExitError",
                   "Runtime exited with error: exit status 7", IDLE, NULL),
      NULL);
  shell_answer("after exit", want, sizeof(want));
  brume_test_worker_expect_reply(w, shell_id, "req-sh-101", "after exit", want);

  /* A handler past its timeout: killed, Sandbox.Timedout, and in EXEC mode the sandbox stays. */
  double ms = 0;
  Brume__WorkerInvokeResponse *r = expect_error(shell_id, "req-sh-sleep", "sleep", UNHANDLED,
                                                "Sandbox.Timedout", NULL, IDLE, &ms);
  print_message("# EXEC timeout answered after %.0f ms (timeout %d ms)\n", ms, SHELL_TIMEOUT_MS);
  expect_timed_out(r, ms, SHELL_TIMEOUT_MS);
  brume__worker_invoke_response__free_unpacked(r, NULL);
  assert_true(brume_test_worker_domain_state(w, shell_id) >= 0);
  shell_answer("after sleep", want, sizeof(want));
  brume_test_worker_expect_reply(w, shell_id, "req-sh-102", "after sleep", want);
}

static void test_function_error(void **state) {
  (void)state;
  create(&echo_fn, echo_id);
  brume_test_worker_expect_reply(w, echo_id, "req-e-1", "before", "before #1");

  /* The type from the runtime's header, the message from its document. */
  Brume__WorkerInvokeResponse *r = expect_error(echo_id, "req-e-fail", "fail", HANDLED,
                                                "Echo.Failed", "failed on purpose", IDLE, NULL);
  const char *doc = "{\"errorMessage\":\"failed on purpose\",\"errorType\":\"Ignored\"}";
  assert_int_equal(r->payload.len, strlen(doc));
  assert_memory_equal(r->payload.data, doc, r->payload.len);
  brume__worker_invoke_response__free_unpacked(r, NULL);

  /* The type from the document when there is no header; the message made one line. */
  brume__worker_invoke_response__free_unpacked(
      expect_error(echo_id, "req-e-fail-body", "fail-body", HANDLED, "Echo.BodyType",
                   "from the body line 2", IDLE, NULL),
      NULL);

  /* The same runtime process serves on: its count goes on from 3. */
  brume_test_worker_expect_reply(w, echo_id, "req-e-4", "after", "after #4");
}

static void test_timeout(void **state) {
  (void)state;
  double ms = 0;
  /* The runtime missed its deadline: it is killed and the sandbox with it (service.c,
   * invoke_job: the guest says sandbox_broken; the answer says TERMINATING and the worker
   * destroys the domain after it). */
  Brume__WorkerInvokeResponse *r =
      expect_error(echo_id, "req-e-sleep", "sleep", UNHANDLED, "Sandbox.Timedout", NULL, TERMINATING, &ms);
  print_message("# RUNTIME_API timeout answered after %.0f ms (timeout %d ms)\n", ms, TIMEOUT_MS);
  expect_timed_out(r, ms, TIMEOUT_MS);
  brume__worker_invoke_response__free_unpacked(r, NULL);
  expect_gone(echo_id);
}

static void test_runtime_exit(void **state) {
  (void)state;
  create(&echo_fn, echo_id);
  brume_test_worker_expect_reply(w, echo_id, "req-x-1", "alive", "alive #1");
  brume__worker_invoke_response__free_unpacked(
      expect_error(echo_id, "req-x-exit", "exit", UNHANDLED, "Runtime.ExitError",
                   "Runtime exited with error: exit status 3", TERMINATING, NULL),
      NULL);
  expect_gone(echo_id);

  /* The replacement: a new sandbox for the same function, a fresh runtime (count 1). */
  char old[80];
  snprintf(old, sizeof(old), "%s", echo_id);
  create(&echo_fn, echo_id);
  assert_string_not_equal(echo_id, old);
  brume_test_worker_expect_reply(w, echo_id, "req-x-2", "replacement", "replacement #1");
}

/* Fails unless List (all accounts) shows exactly the n ids, each with its function. */
static void expect_list(const char *const *ids, const brume_test_fn *const *fns, size_t n) {
  brume_err *err = NULL;
  Brume__WorkerListRequest lr = BRUME__WORKER_LIST_REQUEST__INIT;
  Brume__WorkerListResponse *l = NULL;
  assert_int_equal(brume_test_worker_call(w, BRUME_TEST_W_LIST, &lr, &l, &err), 0);
  assert_int_equal(l->n_sandboxes, n);
  for (size_t k = 0; k < n; k++) {
    const Brume__SandboxInfo *info = NULL;
    for (size_t i = 0; i < l->n_sandboxes; i++)
      if (strcmp(l->sandboxes[i]->sandbox_id, ids[k]) == 0) info = l->sandboxes[i];
    if (info == NULL) fail_msg("List does not show %s", ids[k]);
    assert_string_equal(info->function->account_id,
                        fns[k]->account_id ? fns[k]->account_id : "acct1");
    assert_string_equal(info->function->function_name,
                        fns[k]->function_name ? fns[k]->function_name : "echo");
    assert_string_equal(info->host_id, w->host_id);
  }
  brume__worker_list_response__free_unpacked(l, NULL);
}

/* Fails unless List with account_id (and function_name, may be NULL) shows exactly id. */
static void expect_list_only(const char *account, const char *function, const char *id) {
  brume_err *err = NULL;
  Brume__WorkerListRequest lr = BRUME__WORKER_LIST_REQUEST__INIT;
  lr.account_id = (char *)account;
  if (function) lr.function_name = (char *)function;
  Brume__WorkerListResponse *l = NULL;
  assert_int_equal(brume_test_worker_call(w, BRUME_TEST_W_LIST, &lr, &l, &err), 0);
  assert_int_equal(l->n_sandboxes, 1);
  assert_string_equal(l->sandboxes[0]->sandbox_id, id);
  brume__worker_list_response__free_unpacked(l, NULL);
}

static void test_isolation(void **state) {
  (void)state;
  create(&echo2_fn, acct2_id);
  /* Each answers as its own function, from its own runtime (acct2's count starts at 1). */
  brume_test_worker_expect_reply(w, acct2_id, "req-a2-1", "other account", "other account #1");
  brume_test_worker_expect_reply(w, echo_id, "req-x-3", "first account", "first account #2");
  char want[160];
  shell_answer("still shell", want, sizeof(want));
  brume_test_worker_expect_reply(w, shell_id, "req-sh-103", "still shell", want);

  const char *ids[] = {shell_id, echo_id, acct2_id};
  const brume_test_fn *fns[] = {&shell_fn, &echo_fn, &echo2_fn};
  char *names[3];
  pid_t pids[3];
  for (size_t i = 0; i < 3; i++) {
    names[i] = brume_test_worker_domain_name(w, ids[i]);
    pids[i] = brume_test_qemu_pid(names[i]);
    print_message("# %s/%s: %s, QEMU pid %d\n", fns[i]->account_id ? fns[i]->account_id : "acct1",
                  fns[i]->function_name ? fns[i]->function_name : "echo", names[i], (int)pids[i]);
    assert_true(pids[i] > 0);
    assert_true(brume_test_worker_domain_state(w, ids[i]) >= 0);
    for (size_t k = 0; k < i; k++) {
      assert_string_not_equal(ids[i], ids[k]);
      assert_string_not_equal(names[i], names[k]);
      assert_int_not_equal(pids[i], pids[k]);
    }
  }
  expect_list(ids, fns, 3);
  expect_list_only("acct2", NULL, acct2_id);
  expect_list_only("acct1", "shell", shell_id);
  expect_list_only("acct1", "echo", echo_id);

  /* Destroy acct2's sandbox: its VM goes, and the next one is a new VM under a new id. */
  char old[80];
  snprintf(old, sizeof(old), "%s", acct2_id);
  brume_test_worker_destroy(w, acct2_id);
  expect_gone(old);
  create(&echo2_fn, acct2_id);
  assert_string_not_equal(acct2_id, old);
  brume_autofree char *name = brume_test_worker_domain_name(w, acct2_id);
  assert_string_not_equal(name, names[2]);
  assert_int_equal(brume_test_worker_domain_state(w, old), -1);
  pid_t pid = brume_test_qemu_pid(name);
  assert_true(pid != pids[0] && pid != pids[1]);
  brume_test_worker_expect_reply(w, acct2_id, "req-a2-2", "new sandbox", "new sandbox #1");
  expect_list(ids, fns, 3);
  expect_list_only("acct2", NULL, acct2_id);
  for (size_t i = 0; i < 3; i++) free(names[i]);
}

static void test_destroy_leaves_nothing(void **state) {
  (void)state;
  const char *ids[] = {shell_id, echo_id, acct2_id};
  for (size_t i = 0; i < 3; i++) {
    brume_autofree char *name = brume_test_worker_domain_name(w, ids[i]);
    assert_true(brume_test_qemu_pid(name) > 0);
    brume_test_worker_destroy(w, ids[i]);
    expect_gone(ids[i]);
  }
  expect_list(NULL, NULL, 0);

  /* A clean stop takes the pooled VM with it: no QEMU of this host is left. */
  int status = brume_test_worker_stop(w, SIGTERM, 30000);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(brume_test_worker_domains(w), 0);
  long long end = brume_test_now_ms() + 5000;
  while (brume_test_qemu_count(w->name_prefix) != 0 && brume_test_now_ms() < end) usleep(20 * 1000);
  assert_int_equal(brume_test_qemu_count(w->name_prefix), 0);
}

/* The shell function's zip beside the echo runtime's, and the worker. */
static int setup(void **state) {
  (void)state;
  const brume_test_file files[] = {{"handler.sh", handler_sh, 0755}};
  shell_fn.code = shell_code = brume_test_worker_add_code(w, "shell", files, 1);
  if (shell_code == NULL) return -1;
  const char *flags[] = {"--pool-size", "1", NULL};
  brume_test_worker_run(w, flags);
  return 0;
}

int main(int argc, char **argv) {
  brume_log_init("test-worker-functions", BRUME_LOG_WARN);
  int code = 0;
  w = brume_test_worker_prepare(argc, argv, "worker-functions", "wf", &code);
  if (w == NULL) return code;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_code_server),
      cmocka_unit_test(test_exec_function),
      cmocka_unit_test(test_function_error),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_runtime_exit),
      cmocka_unit_test(test_isolation),
      cmocka_unit_test(test_destroy_leaves_nothing),
  };
  int rc = cmocka_run_group_tests_name("worker_functions", tests, setup, NULL);
  if (rc != 0) brume_test_worker_dump_log(w);
  brume_test_worker_free(w);
  return rc;
}
