/* Calls to brume-frontend and how their failures are reported: see client.h. */
#include "client.h"

#include <stdarg.h>
#include <string.h>

#include "brume/frontend.pb-c.h"

static const char *const method_names[BRUME_CLI_N_METHODS] = {
    [BRUME_CLI_INVOKE] = "Invoke",
    [BRUME_CLI_CREATE_FUNCTION] = "CreateFunction",
    [BRUME_CLI_UPDATE_FUNCTION_CODE] = "UpdateFunctionCode",
    [BRUME_CLI_UPDATE_FUNCTION_CONFIGURATION] = "UpdateFunctionConfiguration",
    [BRUME_CLI_GET_FUNCTION] = "GetFunction",
    [BRUME_CLI_LIST_FUNCTIONS] = "ListFunctions",
    [BRUME_CLI_DELETE_FUNCTION] = "DeleteFunction",
    [BRUME_CLI_PUBLISH_VERSION] = "PublishVersion",
    [BRUME_CLI_CREATE_ALIAS] = "CreateAlias",
    [BRUME_CLI_UPDATE_ALIAS] = "UpdateAlias",
    [BRUME_CLI_GET_ALIAS] = "GetAlias",
    [BRUME_CLI_LIST_ALIASES] = "ListAliases",
    [BRUME_CLI_DELETE_ALIAS] = "DeleteAlias",
    [BRUME_CLI_PUT_FUNCTION_CONCURRENCY] = "PutFunctionConcurrency",
    [BRUME_CLI_GET_FUNCTION_CONCURRENCY] = "GetFunctionConcurrency",
    [BRUME_CLI_DELETE_FUNCTION_CONCURRENCY] = "DeleteFunctionConcurrency",
    [BRUME_CLI_PUT_PROVISIONED_CONCURRENCY_CONFIG] = "PutProvisionedConcurrencyConfig",
    [BRUME_CLI_GET_PROVISIONED_CONCURRENCY_CONFIG] = "GetProvisionedConcurrencyConfig",
    [BRUME_CLI_DELETE_PROVISIONED_CONCURRENCY_CONFIG] = "DeleteProvisionedConcurrencyConfig",
    [BRUME_CLI_CREATE_API_KEY] = "CreateApiKey",
    [BRUME_CLI_LIST_API_KEYS] = "ListApiKeys",
    [BRUME_CLI_DELETE_API_KEY] = "DeleteApiKey",
    [BRUME_CLI_GET_EVENT] = "GetEvent",
    [BRUME_CLI_PUT_FUNCTION_EVENT_INVOKE_CONFIG] = "PutFunctionEventInvokeConfig",
    [BRUME_CLI_GET_FUNCTION_EVENT_INVOKE_CONFIG] = "GetFunctionEventInvokeConfig",
    [BRUME_CLI_DELETE_FUNCTION_EVENT_INVOKE_CONFIG] = "DeleteFunctionEventInvokeConfig",
    [BRUME_CLI_LIST_QUEUES] = "ListQueues",
    [BRUME_CLI_READ_QUEUE] = "ReadQueue",
    [BRUME_CLI_DRAIN_QUEUE] = "DrainQueue",
    [BRUME_CLI_INVOKE_EVENTS] = "InvokeEvents",
};

const char *brume_cli_method_name(enum brume_cli_method m) {
  return m < BRUME_CLI_N_METHODS ? method_names[m] : NULL;
}

int brume_cli_call(brume_cli_ctx *ctx, enum brume_cli_method method, const ProtobufCMessage *req,
                   ProtobufCMessage **reply, int64_t default_deadline_ms, brume_err **err) {
  BRUME_ENSURE(ctx->client != NULL && method < BRUME_CLI_N_METHODS);
  const brume_cli_settings *s = ctx->settings;
  brume_rpc_call_opts opts = {
      .deadline_ms = s->timeout_ms > 0 ? s->timeout_ms : default_deadline_ms,
      .api_key = s->api_key,
      .request_id = s->request_id,
  };
  return brume_rpc_unary(ctx->client, &brume__frontend__descriptor, method, req, reply, &opts, err);
}

const char *brume_cli_server_message(const char *msg) {
  const char *path = strstr(msg, " /brume.Frontend/");
  if (path == NULL || strcspn(msg, " ") != (size_t)(path - msg)) return msg;
  const char *colon = strstr(path, ": ");
  return colon ? colon + 2 : msg;
}

bool brume_cli_is_throttle(const brume_err *err) {
  return err && err->code == BRUME_RESOURCE_EXHAUSTED &&
         !(err->msg && strstr(err->msg, "larger than max"));
}

static const char *hint(const brume_cli_settings *s, const brume_err *err, char *buf, size_t size) {
  brume_status code = err->code;
  switch (code) {
    case BRUME_UNAUTHENTICATED:
      if (s->api_key == NULL)
        return "no API key was given: use --api-key-file, --api-key or BRUME_API_KEY";
      snprintf(buf, size, "check --api-key or BRUME_API_KEY (the key came from %s)", s->key_from);
      return buf;
    case BRUME_UNAVAILABLE:
      /* The frontend answered, naming what is down behind it: no doubt about the frontend. */
      if (err->msg &&
          strncmp(brume_cli_server_message(err->msg), "ServiceUnavailableException", 27) == 0)
        return NULL;
      snprintf(buf, size, "is brume-frontend running at %s%s?", s->endpoint,
               s->tls_ca ? " and serving TLS with a certificate that --tls-ca trusts" : "");
      return buf;
    case BRUME_RESOURCE_EXHAUSTED:
      return "throttled: the concurrency it needs is all in use (try again later)";
    case BRUME_PERMISSION_DENIED:
      return "the API key lacks the scope this call needs (invoke, manage or admin)";
    case BRUME_DEADLINE_EXCEEDED:
      return "no answer before the deadline: raise --timeout-ms";
    case BRUME_ABORTED:
      return "it changed meanwhile: read it again and retry";
    case BRUME_UNIMPLEMENTED:
      snprintf(buf, size, "is %s brume-frontend, and as new as this brume?", s->endpoint);
      return buf;
    default:
      return NULL;
  }
}

int brume_cli_report(FILE *errf, const brume_cli_settings *s, const char *what,
                     const brume_err *err) {
  fprintf(errf, "brume: %s: %s: %s\n", what, brume_status_name(err->code),
          brume_cli_server_message(err->msg ? err->msg : ""));
  char buf[512];
  const char *h = hint(s, err, buf, sizeof(buf));
  if (h) fprintf(errf, "brume: hint: %s\n", h);
  return BRUME_CLI_EXIT_FAILED;
}

int brume_cli_failed(brume_cli_ctx *ctx, const char *what, brume_err *err) {
  int rc = brume_cli_report(ctx->err, ctx->settings, what, err);
  brume_err_free(err);
  return rc;
}

int brume_cli_usage(brume_cli_ctx *ctx, brume_err *err) {
  brume_autofree char *name = brume_cli_command_name(ctx->args->group, ctx->args->cmd);
  fprintf(ctx->err, "%s: %s\n", name, err ? err->msg : "bad usage");
  fprintf(ctx->err, "See '%s --help'.\n", name);
  brume_err_free(err);
  return BRUME_CLI_EXIT_USAGE;
}

int brume_cli_usagef(brume_cli_ctx *ctx, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  brume_err *err = brume_xcalloc(1, sizeof(*err));
  err->code = BRUME_INVALID_ARGUMENT;
  err->msg = brume_xvasprintf(fmt, ap);
  va_end(ap);
  return brume_cli_usage(ctx, err);
}

int brume_cli_bad_input(brume_cli_ctx *ctx, brume_err *err) {
  brume_autofree char *name = brume_cli_command_name(ctx->args->group, ctx->args->cmd);
  fprintf(ctx->err, "%s: %s\n", name, err ? err->msg : "bad input");
  brume_err_free(err);
  return BRUME_CLI_EXIT_USAGE;
}

void brume_cli_ctx_close(brume_cli_ctx *ctx) {
  brume_rpc_client_free(ctx->client);
  ctx->client = NULL;
}
