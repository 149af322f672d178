/* `brume invoke NAME`: runs a function and prints what it answered. Throttles
 * (RESOURCE_EXHAUSTED) are retried with exponential backoff and full jitter (backoff.h), each
 * retry announced on stderr; every other failure is final. */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "brume/frontend.pb-c.h"
#include "cmd.h"
#include "file.h"
#include "output.h"
#include "values.h"

/* The largest synchronous payload (frontend.proto, InvokeRequest.payload). */
#define MAX_PAYLOAD_BYTES ((size_t)6 << 20)
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

static int invoke(brume_cli_ctx *ctx) {
  const brume_cli_args *a = ctx->args;
  Brume__InvokeRequest req = BRUME__INVOKE_REQUEST__INIT;
  req.function_name = brume_cli_pos(ctx, 0);
  const char *q = brume_cli_args_get(a, "qualifier");
  req.qualifier = (char *)(q ? q : "");
  bool dry_run = brume_cli_args_has(a, "dry-run"), async = brume_cli_args_has(a, "async");
  if (dry_run && async) return brume_cli_usagef(ctx, "--dry-run and --async exclude each other");
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
