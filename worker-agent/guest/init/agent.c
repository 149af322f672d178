#include "agent.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "env.h"
#include "log.h"
#include "logring.h"
#include "mem.h"
#include "runner.h"
#include "runtime_api.h"
#include "system.h"
#include "unpack.h"

/* The longest that Max Memory Used may go without a fresh sample (see finish_invoke). */
#define MEM_SAMPLE_EVERY_US 50000
#define PROTOCOL_VERSION 1
#define DEFAULT_INIT_TIMEOUT_MS 10000
#define DEFAULT_GRACE_MS 500
/* Lambda's limit on unpacked code, the size of the task root's tmpfs. */
#define TASK_ROOT_MAX_MIB 250
/* A /next answer needs a deadline even when the host sets none. */
#define NO_DEADLINE_MS (15 * 60 * 1000)
/* A guest clock further than this from the host's is stepped (it stood still while frozen). */
#define CLOCK_SLACK_MS 5
#define MAX_ERROR_TYPE 128
#define MAX_ERROR_MESSAGE 1024
#define MAX_REQUEST_ID 64

typedef enum agent_state {
  AGENT_WAIT_INIT,     /* booted, waiting for GuestInit */
  AGENT_INITIALISING,  /* RUNTIME_API: bootstrap started, waiting for its first /next */
  AGENT_IDLE,          /* ready for GuestInvoke */
  AGENT_INVOKING,      /* one invocation in flight */
  AGENT_BROKEN,        /* init failed or the runtime is gone: invocations fail at once */
  AGENT_SHUTTING_DOWN, /* SIGTERM sent, waiting for an exit or the end of the grace period */
  AGENT_STOPPED,       /* ShutdownDone sent */
} agent_state;

static const char *const state_names[] = {
    "wait_init", "initialising", "idle", "invoking", "broken", "shutting_down", "stopped",
};

struct init_agent {
  init_loop *loop;
  init_agent_config cfg;
  init_channel *ch;
  agent_state state;
  bool exec_mode;
  char **env;
  char *exec_path; /* EXEC: <task root>/<handler> */
  char *function_arn;
  uint32_t init_timeout_ms;
  init_rtapi *api;            /* RUNTIME_API */
  init_proc *runtime;         /* RUNTIME_API: the bootstrap process while it runs */
  init_proc *handler;         /* EXEC: the invocation's process while it runs */
  Brume__GuestInvoke *invoke; /* the invocation in flight, owned */
  int64_t started_us;         /* monotonic: when the runtime or the invocation started */
  uint64_t unpack_us;
  init_logring init_log;   /* output before InitDone */
  init_logring invoke_log; /* output during the invocation in flight (or the last one) */
  init_logring recent_log; /* the last output, whenever it came */
  init_loop_watch timer_w; /* init timeout, deadline or grace period, by state */
  uint64_t mem_peak;
  int64_t mem_sampled_us; /* monotonic: the last sample of mem_peak */
  bool shutdown_clean;
};

/* A FunctionError with its strings cleaned: one line, valid UTF-8, bounded. */
typedef struct fn_error {
  Brume__FunctionError pb;
  char type[MAX_ERROR_TYPE + 1];
  char message[MAX_ERROR_MESSAGE + 1];
} fn_error;

/* The length of the valid UTF-8 sequence at s (at most n bytes), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  size_t len = s[0] < 0x80           ? 1
               : (s[0] >> 5) == 0x6  ? 2
               : (s[0] >> 4) == 0xe  ? 3
               : (s[0] >> 3) == 0x1e ? 4
                                     : 0;
  if (len == 0 || len > n) return 0;
  for (size_t i = 1; i < len; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  return len;
}

/* Copies src into dst (size max + 1) as one line of valid UTF-8: control characters become
 * spaces, invalid bytes '?', and the text is cut at a character boundary. */
static void clean_text(char *dst, size_t max, const char *src) {
  size_t o = 0;
  const unsigned char *s = (const unsigned char *)(src ? src : "");
  size_t n = strlen((const char *)s);
  for (size_t i = 0; i < n;) {
    size_t len = utf8_len(s + i, n - i);
    if (len == 0) {
      if (o + 1 > max) break;
      dst[o++] = '?';
      i++;
      continue;
    }
    if (o + len > max) break;
    if (len == 1 && (s[i] < 0x20 || s[i] == 0x7f))
      dst[o++] = ' ';
    else
      memcpy(dst + o, s + i, len), o += len;
    i += len;
  }
  dst[o] = '\0';
}

static fn_error *fn_error_set(fn_error *e, Brume__FunctionErrorKind kind, const char *type,
                              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static fn_error *fn_error_set(fn_error *e, Brume__FunctionErrorKind kind, const char *type,
                              const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  brume_autofree char *msg = brume_xvasprintf(fmt, ap);
  va_end(ap);
  brume__function_error__init(&e->pb);
  e->pb.kind = kind;
  clean_text(e->type, MAX_ERROR_TYPE, type);
  clean_text(e->message, MAX_ERROR_MESSAGE, msg);
  e->pb.type = e->type;
  e->pb.message = e->message;
  return e;
}

/* "exit status 3" or "signal 9 (Killed)", as Lambda words a runtime's end. */
static void describe_exit(char *buf, size_t n, int status) {
  if (status > 128)
    snprintf(buf, n, "signal %d (%s)", status - 128, strsignal(status - 128));
  else
    snprintf(buf, n, "exit status %d", status);
}

static void enter(init_agent *a, agent_state s) {
  if (a->state != s)
    brume_debug("The sandbox changes state.", "from=%s to=%s", state_names[a->state],
                state_names[s]);
  a->state = s;
  init_timer_arm(a->timer_w.fd, -1);
}

static void send_msg(init_agent *a, Brume__GuestMessage__BodyCase c, void *body) {
  Brume__GuestMessage m = BRUME__GUEST_MESSAGE__INIT;
  m.body_case = c;
  m.ready = body; /* every member of the oneof is a pointer at the same place */
  init_channel_send(a->ch, &m);
}

static void mem_sample(init_agent *a) {
  uint64_t total, used;
  if (init_system_mem_used(&total, &used, NULL) == 0 && used > a->mem_peak) a->mem_peak = used;
  a->mem_sampled_us = brume_mono_us();
}

static void drain_output(init_agent *a) {
  if (a->runtime) init_proc_drain(a->runtime);
  if (a->handler) init_proc_drain(a->handler);
}

/* --- messages to the host -------------------------------------------------------------------- */

/* Ready: on every connection (hello_nonce 0), and as the answer to a Hello. */
static void send_ready(init_agent *a, uint64_t hello_nonce) {
  uint64_t total = 0, used;
  init_system_mem_used(&total, &used, NULL);
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  Brume__GuestReady r = BRUME__GUEST_READY__INIT;
  r.protocol_version = PROTOCOL_VERSION;
  r.uptime_us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
  r.initialised = a->state != AGENT_WAIT_INIT;
  r.mem_total_bytes = total;
  r.hello_nonce = hello_nonce;
  send_msg(a, BRUME__GUEST_MESSAGE__BODY_READY, &r);
}

static void on_connected(void *arg) {
  send_ready(arg, 0);
}

static void send_init_done(init_agent *a, fn_error *err, uint64_t runtime_init_us) {
  Brume__GuestInitDone d = BRUME__GUEST_INIT_DONE__INIT;
  d.error = err ? &err->pb : NULL;
  d.unpack_us = a->unpack_us;
  d.runtime_init_us = runtime_init_us;
  brume_autofree uint8_t *tail = init_logring_dup(&a->init_log, &d.log_tail.len);
  d.log_tail.data = tail;
  send_msg(a, BRUME__GUEST_MESSAGE__BODY_INIT_DONE, &d);
  if (err) {
    char q[1200];
    brume_warn("The function failed to initialise.", "function_arn=%s type=%s error=%s",
               a->function_arn, err->type, brume_log_quote(q, sizeof(q), err->message));
  } else {
    brume_info("The function is initialised.",
               "function_arn=%s mode=%s unpack_us=%llu runtime_init_us=%llu", a->function_arn,
               a->exec_mode ? "exec" : "runtime_api", (unsigned long long)a->unpack_us,
               (unsigned long long)runtime_init_us);
  }
}

/* Init failed: the sandbox cannot serve; the host destroys it. */
static void init_failed(init_agent *a, fn_error *err) {
  send_init_done(a, err, 0);
  enter(a, AGENT_BROKEN);
}

static void send_runtime_exited(init_agent *a, int status) {
  Brume__GuestRuntimeExited x = BRUME__GUEST_RUNTIME_EXITED__INIT;
  x.status = status;
  brume_autofree uint8_t *tail = init_logring_dup(&a->recent_log, &x.log_tail.len);
  x.log_tail.data = tail;
  send_msg(a, BRUME__GUEST_MESSAGE__BODY_RUNTIME_EXITED, &x);
  brume_warn("The runtime exited.", "status=%d", status);
}

/* Ends the invocation in flight with a payload or an error and moves to next. */
static void finish_invoke(init_agent *a, const uint8_t *payload, size_t len, fn_error *err,
                          bool broken, agent_state next) {
  BRUME_ENSURE(a->invoke != NULL);
  drain_output(a);
  /* Under TCG reading /proc/meminfo costs 70-140 us, a tenth of a warm invocation: back-to-back
   * invocations share one sample per MEM_SAMPLE_EVERY_US, and any invocation longer than that
   * gets its own. */
  if (brume_mono_us() - a->mem_sampled_us >= MEM_SAMPLE_EVERY_US) mem_sample(a);
  Brume__GuestInvokeDone d = BRUME__GUEST_INVOKE_DONE__INIT;
  d.request_id = a->invoke->request_id;
  d.payload.data = (uint8_t *)payload;
  d.payload.len = len;
  d.error = err ? &err->pb : NULL;
  brume_autofree uint8_t *tail = init_logring_dup(&a->invoke_log, &d.log_tail.len);
  d.log_tail.data = tail;
  d.duration_us = (uint64_t)(brume_mono_us() - a->started_us);
  d.max_memory_used_mib = (uint32_t)((a->mem_peak + (1 << 20) - 1) >> 20);
  d.sandbox_broken = broken;
  send_msg(a, BRUME__GUEST_MESSAGE__BODY_INVOKE_DONE, &d);
  if (err)
    brume_debug("The invocation failed.", "request_id=%s type=%s", a->invoke->request_id,
                err->type);
  brume__guest_invoke__free_unpacked(a->invoke, NULL);
  a->invoke = NULL;
  if (a->api) init_rtapi_cancel(a->api);
  enter(a, next);
}

/* Ends the invocation in flight with Lambda's error for a response over the limit. */
static void finish_too_large(init_agent *a) {
  fn_error e;
  finish_invoke(a, NULL, 0,
                fn_error_set(&e, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                             "Function.ResponseSizeTooLarge",
                             "Response payload size exceeded maximum allowed payload size (%u "
                             "bytes).",
                             INIT_RTAPI_MAX_BODY),
                false, AGENT_IDLE);
}

static void shutdown_done(init_agent *a, bool clean) {
  a->shutdown_clean = clean;
  enter(a, AGENT_STOPPED);
  Brume__GuestShutdownDone d = BRUME__GUEST_SHUTDOWN_DONE__INIT;
  d.clean = clean;
  send_msg(a, BRUME__GUEST_MESSAGE__BODY_SHUTDOWN_DONE, &d);
  brume_info("The function is stopped.", "clean=%s", clean ? "true" : "false");
}

/* --- the function's processes ---------------------------------------------------------------- */

static void on_output(void *arg, const uint8_t *data, size_t len) {
  init_agent *a = arg;
  if (a->state == AGENT_INITIALISING) init_logring_append(&a->init_log, data, len);
  if (a->state == AGENT_INVOKING) init_logring_append(&a->invoke_log, data, len);
  init_logring_append(&a->recent_log, data, len);
  if (brume_log_enabled(BRUME_LOG_DEBUG)) {
    brume_autofree char *text = brume_xstrndup((const char *)data, len);
    char q[4200];
    brume_debug("The function wrote output.", "text=%s", brume_log_quote(q, sizeof(q), text));
  }
}

static void on_runtime_exited(void *arg, init_proc *p, int status) {
  init_agent *a = arg;
  init_proc_free(p);
  a->runtime = NULL;
  if (a->api) init_rtapi_cancel(a->api);
  char how[96];
  describe_exit(how, sizeof(how), status);
  fn_error e;
  switch (a->state) {
    case AGENT_SHUTTING_DOWN:
      shutdown_done(a, true);
      return;
    case AGENT_INITIALISING:
      init_failed(a, fn_error_set(&e, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                                  "Runtime.ExitError", "Runtime exited with error: %s", how));
      break;
    case AGENT_INVOKING:
      finish_invoke(a, NULL, 0,
                    fn_error_set(&e, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                                 "Runtime.ExitError", "Runtime exited with error: %s", how),
                    true, AGENT_BROKEN);
      break;
    default:
      enter(a, AGENT_BROKEN);
      break;
  }
  send_runtime_exited(a, status);
}

static void on_handler_exited(void *arg, init_proc *p, int status) {
  init_agent *a = arg;
  a->handler = NULL;
  if (a->state == AGENT_SHUTTING_DOWN) {
    init_proc_free(p);
    shutdown_done(a, true);
    return;
  }
  BRUME_ENSURE(a->state == AGENT_INVOKING);
  size_t len;
  bool truncated;
  const uint8_t *out = init_proc_stdout(p, &len, &truncated);
  fn_error e;
  char how[96];
  describe_exit(how, sizeof(how), status);
  if (status != 0)
    finish_invoke(a, NULL, 0,
                  fn_error_set(&e, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                               "Runtime.ExitError", "Runtime exited with error: %s", how),
                  false, AGENT_IDLE);
  else if (truncated)
    finish_too_large(a);
  else
    finish_invoke(a, out, len, NULL, false, AGENT_IDLE);
  init_proc_free(p);
}

static const init_proc_ops runtime_ops = {.output = on_output, .exited = on_runtime_exited};
static const init_proc_ops handler_ops = {.output = on_output, .exited = on_handler_exited};

/* --- the Runtime API ------------------------------------------------------------------------- */

static void on_next(void *arg) {
  init_agent *a = arg;
  if (a->state != AGENT_INITIALISING) return;
  if (a->runtime) init_proc_drain(a->runtime);
  send_init_done(a, NULL, (uint64_t)(brume_mono_us() - a->started_us));
  mem_sample(a); /* InitDone does not carry it: the host need not wait for /proc/meminfo */
  enter(a, AGENT_IDLE);
}

static bool is_current(init_agent *a, const char *request_id) {
  return a->state == AGENT_INVOKING && !a->exec_mode &&
         strcmp(request_id, a->invoke->request_id) == 0;
}

static init_rtapi_verdict on_response(void *arg, const char *request_id, const uint8_t *body,
                                      size_t len) {
  init_agent *a = arg;
  if (!is_current(a, request_id)) return INIT_RTAPI_INVALID_ID;
  finish_invoke(a, body, len, NULL, false, AGENT_IDLE);
  return INIT_RTAPI_ACCEPTED;
}

static init_rtapi_verdict on_error(void *arg, const char *request_id, const char *error_type,
                                   const uint8_t *body, size_t len) {
  init_agent *a = arg;
  if (!is_current(a, request_id)) return INIT_RTAPI_INVALID_ID;
  brume_autofree char *doc_type = NULL;
  brume_autofree char *doc_message = NULL;
  init_rtapi_parse_error_doc(body, len, &doc_type, &doc_message);
  const char *type = error_type[0] ? error_type : doc_type ? doc_type : "Unhandled";
  fn_error e;
  fn_error_set(&e, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_HANDLED, type, "%s",
               doc_message ? doc_message : "");
  finish_invoke(a, body, len, &e, false, AGENT_IDLE);
  return INIT_RTAPI_ACCEPTED;
}

static init_rtapi_verdict on_init_error(void *arg, const char *error_type, const uint8_t *body,
                                        size_t len) {
  init_agent *a = arg;
  if (a->state != AGENT_INITIALISING) return INIT_RTAPI_INVALID_STATE;
  brume_autofree char *doc_type = NULL;
  brume_autofree char *doc_message = NULL;
  init_rtapi_parse_error_doc(body, len, &doc_type, &doc_message);
  const char *type = error_type[0] ? error_type : doc_type ? doc_type : "Runtime.InitError";
  /* As Lambda does, the runtime does not outlive its init error. */
  init_proc_drain(a->runtime);
  init_proc_abandon(a->runtime);
  a->runtime = NULL;
  fn_error e;
  init_failed(a, fn_error_set(&e, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED, type,
                              "%s", doc_message ? doc_message : ""));
  return INIT_RTAPI_ACCEPTED;
}

static void on_too_large(void *arg, const char *request_id) {
  init_agent *a = arg;
  if (!is_current(a, request_id)) return;
  finish_too_large(a);
}

static const init_rtapi_ops rtapi_ops = {
    .next = on_next,
    .response = on_response,
    .error = on_error,
    .init_error = on_init_error,
    .too_large = on_too_large,
};

/* --- timers ---------------------------------------------------------------------------------- */

static void on_timer(init_loop_watch *w, uint32_t events) {
  (void)events;
  init_agent *a = w->arg;
  init_timer_ack(w->fd);
  fn_error e;
  switch (a->state) {
    case AGENT_INITIALISING:
      init_proc_drain(a->runtime);
      init_proc_abandon(a->runtime);
      a->runtime = NULL;
      init_failed(a, fn_error_set(&e, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                                  "Sandbox.Timedout",
                                  "The runtime did not call /runtime/invocation/next within %u ms.",
                                  a->init_timeout_ms));
      break;
    case AGENT_INVOKING: {
      double secs = (double)(brume_mono_us() - a->started_us) / 1e6;
      fn_error_set(&e, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                   "Sandbox.Timedout", "Task timed out after %.2f seconds", secs);
      drain_output(a);
      /* A runtime that missed its deadline is in an unknown state: it goes, and the sandbox
       * with it. An EXEC handler is one process per event: the next event gets a fresh one. */
      if (a->exec_mode) {
        init_proc_abandon(a->handler);
        a->handler = NULL;
        finish_invoke(a, NULL, 0, &e, false, AGENT_IDLE);
      } else {
        init_proc_abandon(a->runtime);
        a->runtime = NULL;
        finish_invoke(a, NULL, 0, &e, true, AGENT_BROKEN);
      }
      break;
    }
    case AGENT_SHUTTING_DOWN: {
      init_proc *p = a->runtime ? a->runtime : a->handler;
      if (p) init_proc_abandon(p);
      a->runtime = a->handler = NULL;
      shutdown_done(a, false);
      break;
    }
    default:
      break;
  }
}

/* --- messages from the host ------------------------------------------------------------------ */

static bool valid_request_id(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > MAX_REQUEST_ID) return false;
  return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* Printable ASCII only: the value goes into an HTTP header. */
static bool header_safe(const char *s) {
  for (; *s; s++)
    if (*s < 0x20 || *s > 0x7e) return false;
  return true;
}

/* EXEC: a relative path inside the task root. */
static bool valid_handler_path(const char *h) {
  if (h[0] == '\0' || h[0] == '/') return false;
  for (const char *p = h;;) {
    if (strncmp(p, "..", 2) == 0 && (p[2] == '/' || p[2] == '\0')) return false;
    p = strchr(p, '/');
    if (p == NULL) return true;
    p++;
  }
}

/* Checks an Init before anything is done with it; a sentence for GuestError, or NULL. */
static const char *init_refusal(const Brume__GuestInit *in, brume_err **err) {
  if (in->handler_mode != BRUME__HANDLER_MODE__HANDLER_MODE_RUNTIME_API &&
      in->handler_mode != BRUME__HANDLER_MODE__HANDLER_MODE_UNSPECIFIED &&
      in->handler_mode != BRUME__HANDLER_MODE__HANDLER_MODE_EXEC)
    return "Init: unknown handler_mode";
  if (in->handler_mode == BRUME__HANDLER_MODE__HANDLER_MODE_EXEC &&
      !valid_handler_path(in->handler))
    return "Init: an EXEC handler must be a relative path inside the task root";
  if (!header_safe(in->function_arn)) return "Init: function_arn holds characters a header cannot";
  if (init_env_validate(in, err) < 0) return "Init: an environment variable has an invalid name";
  return NULL;
}

/* Steps the clock and resizes /tmp: what the guest must know before the function's code. */
static int init_system_settings(init_agent *a, const Brume__GuestInit *in, brume_err **err) {
  if (!a->cfg.system) return 0;
  if (in->host_time_unix_ms > 0 && init_system_set_clock(in->host_time_unix_ms, err) < 0) return -1;
  if (in->tmp_mib > 0 && init_system_set_tmp_size(in->tmp_mib, err) < 0) return -1;
  return 0;
}

static int unpack_code(init_agent *a, const Brume__GuestInit *in, brume_err **err) {
  int64_t t0 = brume_mono_us();
  if (a->cfg.system && init_system_mount_task_root(a->cfg.task_root, TASK_ROOT_MAX_MIB, err) < 0)
    return -1;
  int rc = in->code ? init_unpack_files(in->code, a->cfg.task_root, err)
                    : init_unpack_zip(in->code_zip.data, in->code_zip.len, a->cfg.task_root,
                                      a->cfg.unzip, err);
  if (rc < 0) return -1;
  if (a->cfg.system && init_system_seal_task_root(a->cfg.task_root, err) < 0) return -1;
  a->unpack_us = (uint64_t)(brume_mono_us() - t0);
  return 0;
}

static void start_runtime(init_agent *a) {
  brume_autoptr(brume_err) err = NULL;
  fn_error e;
  if (a->api == NULL) a->api = init_rtapi_listen(a->loop, a->cfg.runtime_api, &rtapi_ops, a, &err);
  if (a->api == NULL) {
    init_failed(a, fn_error_set(&e, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                                "Runtime.InitError", "Runtime API: %s", err->msg));
    return;
  }
  brume_autofree char *bootstrap = brume_xasprintf("%s/bootstrap", a->cfg.task_root);
  init_proc_spec spec = {.path = bootstrap, .envp = a->env, .cwd = a->cfg.task_root};
  a->started_us = brume_mono_us();
  a->runtime = init_proc_start(a->loop, &spec, &runtime_ops, a, &err);
  if (a->runtime == NULL) {
    init_failed(a, fn_error_set(&e, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                                "Runtime.InvalidEntrypoint",
                                "Couldn't find valid bootstrap(s): [%s]: %s", bootstrap, err->msg));
    return;
  }
  enter(a, AGENT_INITIALISING);
  init_timer_arm(a->timer_w.fd, a->init_timeout_ms);
}

static void check_handler(init_agent *a) {
  fn_error e;
  struct stat st;
  if (stat(a->exec_path, &st) < 0 || !S_ISREG(st.st_mode) || access(a->exec_path, X_OK) < 0) {
    init_failed(a, fn_error_set(&e, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                                "Runtime.InvalidEntrypoint",
                                "The handler %s is not an executable file.", a->exec_path));
    return;
  }
  send_init_done(a, NULL, 0);
  enter(a, AGENT_IDLE);
}

static void handle_init(init_agent *a, const Brume__GuestInit *in) {
  brume_autoptr(brume_err) err = NULL;
  const char *refusal = init_refusal(in, &err);
  if (refusal) {
    init_channel_fail(a->ch, "%s%s%s", refusal, err ? ": " : "", err ? err->msg : "");
    return;
  }
  a->exec_mode = in->handler_mode == BRUME__HANDLER_MODE__HANDLER_MODE_EXEC;
  a->init_timeout_ms = in->init_timeout_ms ? in->init_timeout_ms : DEFAULT_INIT_TIMEOUT_MS;
  a->function_arn = brume_xstrdup(in->function_arn);
  /* Leave WAIT_INIT now: a reconnect during unpacking must not invite a second Init. */
  enter(a, AGENT_INITIALISING);
  /* Debug only: under TCG a console line costs 0.5-3 ms, and this one would be on the way to
   * InitDone; the line after it says the same. */
  brume_debug("Initialising the function.",
              "function=%s version=%s mode=%s code_bytes=%zu code_files=%zu", in->function_name,
              in->function_version, a->exec_mode ? "exec" : "runtime_api", in->code_zip.len,
              in->code ? in->code->n_files : 0);
  fn_error e;
  if (init_system_settings(a, in, &err) < 0) {
    init_failed(a, fn_error_set(&e, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                                "Runtime.InitError", "%s", err->msg));
    return;
  }
  if (unpack_code(a, in, &err) < 0) {
    init_failed(a, fn_error_set(&e, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                                err->code == BRUME_INVALID_ARGUMENT ? "InvalidZipFileException"
                                                                    : "Runtime.InitError",
                                "unpack the code: %s", err->msg));
    return;
  }
  a->env = init_env_build(in, a->cfg.runtime_api, a->cfg.task_root);
  if (a->exec_mode) {
    a->exec_path = brume_xasprintf("%s/%s", a->cfg.task_root, in->handler);
    check_handler(a);
  } else {
    start_runtime(a);
  }
}

static void reply_broken(init_agent *a, const Brume__GuestInvoke *inv) {
  fn_error e;
  fn_error_set(&e, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED, "Runtime.ExitError",
               "The runtime is not running: it exited, was stopped, or failed to initialise.");
  Brume__GuestInvokeDone d = BRUME__GUEST_INVOKE_DONE__INIT;
  d.request_id = inv->request_id;
  d.error = &e.pb;
  d.sandbox_broken = true;
  send_msg(a, BRUME__GUEST_MESSAGE__BODY_INVOKE_DONE, &d);
}

/* Takes ownership of inv. */
static void handle_invoke(init_agent *a, Brume__GuestInvoke *inv) {
  if (a->cfg.system && inv->host_time_unix_ms > 0) {
    int64_t off = inv->host_time_unix_ms - brume_wall_ms();
    if (off > CLOCK_SLACK_MS || off < -CLOCK_SLACK_MS)
      init_system_set_clock(inv->host_time_unix_ms, NULL);
  }
  int64_t now = inv->host_time_unix_ms > 0 ? inv->host_time_unix_ms : brume_wall_ms();
  init_logring_reset(&a->invoke_log);
  a->invoke = inv;
  a->started_us = brume_mono_us();
  enter(a, AGENT_INVOKING);
  if (inv->deadline_unix_ms > 0) {
    int64_t left = inv->deadline_unix_ms - now;
    init_timer_arm(a->timer_w.fd, left > 0 ? left : 0);
  }
  if (!a->exec_mode) {
    init_rtapi_event ev = {
        .request_id = inv->request_id,
        .payload = inv->payload.data,
        .payload_len = inv->payload.len,
        .deadline_unix_ms =
            inv->deadline_unix_ms > 0 ? inv->deadline_unix_ms : now + NO_DEADLINE_MS,
        .function_arn = a->function_arn,
        .trace_id = inv->trace_id,
        .client_context = inv->client_context,
        .cognito_identity = inv->cognito_identity,
    };
    init_rtapi_deliver(a->api, &ev);
    return;
  }
  brume_autoptr(brume_err) err = NULL;
  init_proc_spec spec = {
      .path = a->exec_path,
      .envp = a->env,
      .cwd = a->cfg.task_root,
      .exec_mode = true,
      .stdin_data = inv->payload.data,
      .stdin_len = inv->payload.len,
      .stdout_max = INIT_RTAPI_MAX_BODY,
  };
  a->handler = init_proc_start(a->loop, &spec, &handler_ops, a, &err);
  if (a->handler == NULL) {
    fn_error e;
    finish_invoke(a, NULL, 0,
                  fn_error_set(&e, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                               "Runtime.InvalidEntrypoint", "%s", err->msg),
                  false, AGENT_IDLE);
  }
}

static void handle_shutdown(init_agent *a, const Brume__GuestShutdown *sd) {
  if (a->state == AGENT_SHUTTING_DOWN) return;
  if (a->state == AGENT_STOPPED) {
    Brume__GuestShutdownDone d = BRUME__GUEST_SHUTDOWN_DONE__INIT;
    d.clean = a->shutdown_clean;
    send_msg(a, BRUME__GUEST_MESSAGE__BODY_SHUTDOWN_DONE, &d);
    return;
  }
  if (a->state == AGENT_INVOKING) {
    fn_error e;
    finish_invoke(a, NULL, 0,
                  fn_error_set(&e, BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED,
                               "Runtime.ExitError", "The sandbox shut down during the invocation."),
                  true, AGENT_BROKEN);
  }
  if (a->api) init_rtapi_cancel(a->api);
  init_proc *p = a->runtime ? a->runtime : a->handler;
  if (p == NULL) {
    shutdown_done(a, true);
    return;
  }
  init_proc_signal(p, SIGTERM);
  enter(a, AGENT_SHUTTING_DOWN);
  init_timer_arm(a->timer_w.fd, sd->grace_ms ? sd->grace_ms : DEFAULT_GRACE_MS);
}

/* The protocol's one dispatch point: each message, in each state. */
static void on_message(void *arg, Brume__GuestMessage *msg) {
  init_agent *a = arg;
  agent_state s = a->state;
  switch (msg->body_case) {
    case BRUME__GUEST_MESSAGE__BODY_HELLO:
      send_ready(a, msg->hello->nonce);
      break;
    case BRUME__GUEST_MESSAGE__BODY_PING: {
      Brume__GuestPong p = BRUME__GUEST_PONG__INIT;
      p.nonce = msg->ping->nonce;
      send_msg(a, BRUME__GUEST_MESSAGE__BODY_PONG, &p);
      break;
    }
    case BRUME__GUEST_MESSAGE__BODY_INIT:
      if (s != AGENT_WAIT_INIT) {
        init_channel_fail(a->ch, "Init received twice");
        break;
      }
      handle_init(a, msg->init);
      break;
    case BRUME__GUEST_MESSAGE__BODY_INVOKE: {
      Brume__GuestInvoke *inv = msg->invoke;
      if (s == AGENT_WAIT_INIT) {
        init_channel_fail(a->ch, "Invoke before Init");
      } else if (s == AGENT_INITIALISING) {
        init_channel_fail(a->ch, "Invoke before InitDone");
      } else if (s == AGENT_INVOKING) {
        init_channel_fail(a->ch, "Invoke while request %s is in flight", a->invoke->request_id);
      } else if (s == AGENT_SHUTTING_DOWN || s == AGENT_STOPPED) {
        init_channel_fail(a->ch, "Invoke after Shutdown");
      } else if (!valid_request_id(inv->request_id)) {
        init_channel_fail(a->ch, "Invoke: request_id must be 1-64 characters of [A-Za-z0-9._-]");
      } else if (!header_safe(inv->trace_id) || !header_safe(inv->client_context) ||
                 !header_safe(inv->cognito_identity)) {
        init_channel_fail(a->ch, "Invoke: a header field holds characters a header cannot");
      } else if (s == AGENT_BROKEN) {
        reply_broken(a, inv);
      } else {
        /* The invocation outlives this message: keep it, free the rest. */
        msg->invoke = NULL;
        msg->body_case = BRUME__GUEST_MESSAGE__BODY__NOT_SET;
        handle_invoke(a, inv);
      }
      break;
    }
    case BRUME__GUEST_MESSAGE__BODY_SHUTDOWN:
      handle_shutdown(a, msg->shutdown);
      break;
    case BRUME__GUEST_MESSAGE__BODY_ERROR: {
      char q[512];
      brume_warn("The host reported a protocol error.", "error=%s",
                 brume_log_quote(q, sizeof(q), msg->error->message));
      break;
    }
    case BRUME__GUEST_MESSAGE__BODY__NOT_SET:
      init_channel_fail(a->ch, "a message without a body (unknown to protocol version %d?)",
                        PROTOCOL_VERSION);
      break;
    default:
      init_channel_fail(a->ch, "message %d is sent by the guest, not the host",
                        (int)msg->body_case);
      break;
  }
  brume__guest_message__free_unpacked(msg, NULL);
}

const init_channel_ops init_agent_channel_ops = {.connected = on_connected, .message = on_message};

init_agent *init_agent_new(init_loop *loop, const init_agent_config *cfg) {
  init_agent *a = brume_xcalloc(1, sizeof(*a));
  a->loop = loop;
  a->cfg = *cfg;
  a->state = AGENT_WAIT_INIT;
  a->timer_w = (init_loop_watch){.fd = init_timer_new(), .fn = on_timer, .arg = a};
  init_loop_add(loop, &a->timer_w, EPOLLIN);
  return a;
}

void init_agent_set_channel(init_agent *a, init_channel *ch) {
  a->ch = ch;
}

void init_agent_free(init_agent *a) {
  if (a == NULL) return;
  if (a->runtime) init_proc_abandon(a->runtime);
  if (a->handler) init_proc_abandon(a->handler);
  init_rtapi_free(a->api);
  if (a->invoke) brume__guest_invoke__free_unpacked(a->invoke, NULL);
  init_loop_del(a->loop, &a->timer_w);
  close(a->timer_w.fd);
  init_env_free(a->env);
  free(a->exec_path);
  free(a->function_arn);
  free(a);
}
