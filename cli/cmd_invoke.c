/* `brume invoke NAME`: runs a function and prints what it answered. Throttles
 * (RESOURCE_EXHAUSTED) are retried with exponential backoff and full jitter (backoff.h), each
 * retry announced on stderr; every other failure is final. With --async --batch FILE, each line
 * of FILE is one event, queued through InvokeEvents calls of up to 100 events each. */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "brume/frontend.pb-c.h"
#include "client.h"
#include "cmd.h"
#include "file.h"
#include "output.h"
#include "values.h"

/* The largest synchronous payload (frontend.proto, InvokeRequest.payload), which is also the
 * most an InvokeEvents call takes in all. */
#define MAX_PAYLOAD_BYTES ((size_t)6 << 20)
/* An InvokeEvents call's entries at most (frontend.proto), and the largest --batch file. */
#define BATCH_MAX_EVENTS 100
#define BATCH_FILE_MAX_BYTES ((size_t)256 << 20)
#define MAX_RETRIES_LIMIT 100

static void sleep_ms(int64_t ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

/* --payload: JSON text as given, @FILE, or - for standard input; absent = empty. */
static uint8_t *read_payload(const char *v, size_t *len, brume_err **err) {
  if (v == NULL) {
    *len = 0;
    return (uint8_t *)brume_xstrdup("");
  }
  uint8_t *p;
  if (strcmp(v, "-") == 0 || v[0] == '@') {
    p = brume_cli_file_read(v[0] == '@' ? v + 1 : v, MAX_PAYLOAD_BYTES, len, err);
    if (p == NULL) brume_err_wrap(err, "--payload");
    return p;
  }
  *len = strlen(v);
  return (uint8_t *)brume_xstrdup(v);
}

/* One InvokeEvents call for req's entries, then none are left in req; each result goes into
 * rows, and the refused ones add to *refused. -1 when the call itself failed (err). */
static int send_batch(brume_cli_ctx *ctx, Brume__InvokeEventsRequest *req, json_t *rows,
                      size_t *refused, brume_err **err) {
  brume_autoptr(ProtobufCMessage) m = NULL;
  int rc = brume_cli_call(ctx, BRUME_CLI_INVOKE_EVENTS, &req->base, &m, BRUME_CLI_CALL_MS, err);
  req->n_entries = 0;
  if (rc < 0) return -1;
  const Brume__InvokeEventsResponse *r = (const void *)m;
  for (size_t i = 0; i < r->n_results; i++) {
    const Brume__EventEntryResult *e = r->results[i];
    json_t *row = json_pack("{s:s, s:I}", "request_id", e->request_id, "status_code",
                            (json_int_t)e->status_code);
    if (e->status_code == 202)
      json_object_set_new(row, "event_id", json_string(e->event_id));
    else
      json_object_set_new(row, "error", json_sprintf("%s: %s", e->error_code, e->error_message));
    json_array_append_new(rows, row);
  }
  *refused += r->failed_count;
  return 0;
}

/* --async --batch FILE: each non-empty line of FILE (- for stdin) one event's payload, queued in
 * calls of up to BATCH_MAX_EVENTS events and MAX_PAYLOAD_BYTES; one row printed per event. */
static int invoke_batch(brume_cli_ctx *ctx, Brume__InvokeEventsRequest *req, const char *path) {
  brume_err *err = NULL;
  size_t len = 0;
  brume_autofree char *text = (char *)brume_cli_file_read(path, BATCH_FILE_MAX_BYTES, &len, &err);
  if (text == NULL) {
    brume_err_wrap(&err, "--batch");
    return brume_cli_bad_input(ctx, err);
  }
  Brume__EventEntry entries[BATCH_MAX_EVENTS];
  Brume__EventEntry *ptrs[BATCH_MAX_EVENTS];
  req->entries = ptrs;
  req->n_entries = 0;
  json_t *rows = json_array();
  size_t events = 0, bytes = 0, refused = 0;
  for (char *line = text; line && line < text + len && err == NULL;) {
    char *end = memchr(line, '\n', (size_t)(text + len - line));
    size_t n = end ? (size_t)(end - line) : (size_t)(text + len - line);
    if (n > 0 && line[n - 1] == '\r') n--;
    if (n > 0) {
      if (req->n_entries == BATCH_MAX_EVENTS ||
          (req->n_entries > 0 && bytes + n > MAX_PAYLOAD_BYTES)) {
        if (send_batch(ctx, req, rows, &refused, &err) < 0) break;
        bytes = 0;
      }
      Brume__EventEntry *e = &entries[req->n_entries];
      brume__event_entry__init(e);
      e->payload = (ProtobufCBinaryData){n, (uint8_t *)line};
      ptrs[req->n_entries++] = e;
      bytes += n;
      events++;
    }
    line = end ? end + 1 : NULL;
  }
  if (err == NULL && req->n_entries) send_batch(ctx, req, rows, &refused, &err);
  brume_autofree char *what = brume_xasprintf("invoke %s --async --batch", req->function_name);
  if (err) {
    json_decref(rows);
    return brume_cli_failed(ctx, what, err);
  }
  static const brume_cli_column cols[] = {{"request_id", "REQUEST ID"},
                                          {"status_code", "STATUS"},
                                          {"event_id", "EVENT ID"},
                                          {"error", "ERROR"}};
  brume_cli_print_table(ctx->out, rows, cols, BRUME_ARRAY_LEN(cols), ctx->settings->json);
  json_decref(rows);
  fprintf(ctx->err, "brume: %s: %zu of %zu events queued\n", what, events - refused, events);
  return refused ? BRUME_CLI_EXIT_FAILED : BRUME_CLI_EXIT_OK;
}

static int invoke(brume_cli_ctx *ctx) {
  const brume_cli_args *a = ctx->args;
  Brume__InvokeRequest req = BRUME__INVOKE_REQUEST__INIT;
  req.function_name = brume_cli_pos(ctx, 0);
  const char *q = brume_cli_args_get(a, "qualifier");
  req.qualifier = (char *)(q ? q : "");
  bool dry_run = brume_cli_args_has(a, "dry-run"), async = brume_cli_args_has(a, "async");
  if (dry_run && async) return brume_cli_usagef(ctx, "--dry-run and --async exclude each other");
  const char *batch = brume_cli_args_get(a, "batch");
  if (batch) {
    if (!async) return brume_cli_usagef(ctx, "--batch needs --async");
    if (brume_cli_args_has(a, "payload") || brume_cli_args_has(a, "idempotency-key") ||
        brume_cli_args_has(a, "log-tail"))
      return brume_cli_usagef(ctx,
                              "--batch takes the events from its file: no --payload, "
                              "--idempotency-key or --log-tail");
    Brume__InvokeEventsRequest breq = BRUME__INVOKE_EVENTS_REQUEST__INIT;
    breq.function_name = req.function_name;
    breq.qualifier = req.qualifier;
    return invoke_batch(ctx, &breq, batch);
  }
  req.invocation_type = dry_run ? BRUME__INVOCATION_TYPE__INVOCATION_TYPE_DRY_RUN
                        : async ? BRUME__INVOCATION_TYPE__INVOCATION_TYPE_EVENT
                                : BRUME__INVOCATION_TYPE__INVOCATION_TYPE_REQUEST_RESPONSE;
  const char *idem = brume_cli_args_get(a, "idempotency-key");
  req.idempotency_key = (char *)(idem ? idem : "");
  bool log_tail = brume_cli_args_has(a, "log-tail");
  req.log_type = log_tail ? BRUME__LOG_TYPE__LOG_TYPE_TAIL : BRUME__LOG_TYPE__LOG_TYPE_NONE;

  uint64_t max_retries = BRUME_CLI_DEFAULT_RETRIES;
  brume_err *err = NULL;
  const char *mr = brume_cli_args_get(a, "max-retries");
  if (mr && brume_cli_args_has(a, "no-retry"))
    return brume_cli_usagef(ctx, "--no-retry and --max-retries exclude each other");
  if (mr && brume_cli_parse_uint("--max-retries", mr, 0, MAX_RETRIES_LIMIT, &max_retries, &err) < 0)
    return brume_cli_usage(ctx, err);
  if (brume_cli_args_has(a, "no-retry")) max_retries = 0;

  size_t len = 0;
  brume_autofree uint8_t *payload = read_payload(brume_cli_args_get(a, "payload"), &len, &err);
  if (payload == NULL) return brume_cli_bad_input(ctx, err);
  req.payload = (ProtobufCBinaryData){len, payload};

  brume_autofree char *what = brume_xasprintf("invoke %s", req.function_name);
  brume_cli_backoff backoff = brume_cli_backoff_default();
  brume_autoptr(ProtobufCMessage) m = NULL;
  for (unsigned attempt = 0;; attempt++) {
    if (brume_cli_call(ctx, BRUME_CLI_INVOKE, &req.base, &m, BRUME_CLI_INVOKE_MS, &err) == 0) break;
    if (!brume_cli_is_throttle(err) || attempt >= max_retries)
      return brume_cli_failed(ctx, what, err);
    int64_t delay = brume_cli_backoff_delay_ms(&backoff, attempt);
    fprintf(ctx->err, "brume: %s: throttled (%s); retry %u of %u in %lld ms\n", what,
            brume_cli_server_message(err->msg), attempt + 1, (unsigned)max_retries,
            (long long)delay);
    fflush(ctx->err);
    brume_err_clear(&err);
    sleep_ms(delay);
  }
  int failed = brume_cli_print_invoke(ctx->out, ctx->err, what, (const Brume__InvokeResponse *)m,
                                      ctx->settings->json, log_tail, isatty(fileno(ctx->out)));
  return failed ? BRUME_CLI_EXIT_FAILED : BRUME_CLI_EXIT_OK;
}

static const brume_cli_flag invoke_flags[] = {
    {"qualifier", "Q", false, "a version or an alias (default $LATEST)"},
    {"payload", "JSON|@FILE|-", false, "the event: JSON text, a file, or - for stdin"},
    {"log-tail", NULL, false, "print the last 4 KiB of the invocation's log on stderr"},
    {"dry-run", NULL, false, "only check the request and the caller's access"},
    {"async", NULL, false, "queue the event and return at once (status 202)"},
    {"batch", "FILE|-", false,
     "with --async: queue each line of FILE (- for stdin) as one event, up to 100 a call, and "
     "print each event's id or why it was refused"},
    {"idempotency-key", "KEY", false,
     "the same KEY again (within the frontend's idempotency window) does not run the function "
     "again: it returns the first answer, or the same queued event"},
    {"no-retry", NULL, false, "do not retry when throttled"},
    {"max-retries", "N", false, "retries when throttled, with backoff (default 5)"},
    {NULL, NULL, false, NULL},
};

const brume_cli_command brume_cli_invoke_commands[] = {
    {"invoke", NULL, "NAME [--qualifier Q] [--payload JSON|@FILE|-] [--log-tail] [options]", 1, 1,
     invoke_flags, "Run a function and print its response.", invoke},
};
const size_t brume_cli_n_invoke_commands = BRUME_ARRAY_LEN(brume_cli_invoke_commands);
