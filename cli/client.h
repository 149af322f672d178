/* A command's run: its parsed line, its settings, the gRPC channel to brume-frontend (opened on
 * the first call), and the two ways a command fails: a usage error (exit 2) or a failed call
 * (exit 1), each reported as one line on stderr plus a hint where one helps. */
#ifndef BRUME_CLI_CLIENT_H
#define BRUME_CLI_CLIENT_H

#include <stdio.h>

#include "args.h"
#include "command.h"
#include "err.h"
#include "rpc.h"
#include "settings.h"

/* brume.Frontend's methods, in frontend.proto's order (the index brume_rpc_unary takes);
 * tests/cli/test_cli_units checks them against the generated descriptor. */
enum brume_cli_method {
  BRUME_CLI_INVOKE,
  BRUME_CLI_CREATE_FUNCTION,
  BRUME_CLI_UPDATE_FUNCTION_CODE,
  BRUME_CLI_UPDATE_FUNCTION_CONFIGURATION,
  BRUME_CLI_GET_FUNCTION,
  BRUME_CLI_LIST_FUNCTIONS,
  BRUME_CLI_DELETE_FUNCTION,
  BRUME_CLI_PUBLISH_VERSION,
  BRUME_CLI_CREATE_ALIAS,
  BRUME_CLI_UPDATE_ALIAS,
  BRUME_CLI_GET_ALIAS,
  BRUME_CLI_LIST_ALIASES,
  BRUME_CLI_DELETE_ALIAS,
  BRUME_CLI_PUT_FUNCTION_CONCURRENCY,
  BRUME_CLI_GET_FUNCTION_CONCURRENCY,
  BRUME_CLI_DELETE_FUNCTION_CONCURRENCY,
  BRUME_CLI_PUT_PROVISIONED_CONCURRENCY_CONFIG,
  BRUME_CLI_GET_PROVISIONED_CONCURRENCY_CONFIG,
  BRUME_CLI_DELETE_PROVISIONED_CONCURRENCY_CONFIG,
  BRUME_CLI_CREATE_API_KEY,
  BRUME_CLI_LIST_API_KEYS,
  BRUME_CLI_DELETE_API_KEY,
  BRUME_CLI_GET_EVENT,
  BRUME_CLI_PUT_FUNCTION_EVENT_INVOKE_CONFIG,
  BRUME_CLI_GET_FUNCTION_EVENT_INVOKE_CONFIG,
  BRUME_CLI_DELETE_FUNCTION_EVENT_INVOKE_CONFIG,
  BRUME_CLI_LIST_QUEUES,
  BRUME_CLI_READ_QUEUE,
  BRUME_CLI_DRAIN_QUEUE,
  BRUME_CLI_INVOKE_EVENTS,
  BRUME_CLI_N_METHODS,
};

/* The method's name in the service ("Invoke"), for tests and messages. */
const char *brume_cli_method_name(enum brume_cli_method m);

/* Replies up to this size are accepted: a 6 MiB payload plus its log tail and framing. */
#define BRUME_CLI_MAX_REPLY_BYTES (8u << 20)

typedef struct brume_cli_ctx {
  const brume_cli_args *args;
  const brume_cli_settings *settings;
  FILE *out; /* stdout */
  FILE *err; /* stderr */
  brume_rpc_client *client;
} brume_cli_ctx;

/* Calls method with req. The deadline is --timeout-ms when given, else default_deadline_ms; the
 * API key and request id go along as metadata. Returns 0 with *reply set (caller frees with
 * brume_proto_free), or -1 with *err set (the server's code and message, or the transport's). */
int brume_cli_call(brume_cli_ctx *ctx, enum brume_cli_method method, const ProtobufCMessage *req,
                   ProtobufCMessage **reply, int64_t default_deadline_ms, brume_err **err);

/* Whether a failed Invoke was throttled and may be retried: RESOURCE_EXHAUSTED, except gRPC's
 * own refusal of a message over the size limit ("... larger than max ..."), which would only
 * fail again. */
bool brume_cli_is_throttle(const brume_err *err);

/* The message of a failed call without the "<target> /brume.Frontend/<Method>: " that the RPC
 * client puts in front (it is the same for every call of a run): what the server said. */
const char *brume_cli_server_message(const char *msg);

/* Reports a failed call on errf as "brume: <what>: <STATUS>: <server message>", then a line
 * "brume: hint: ..." for the statuses that have one (UNAUTHENTICATED, UNAVAILABLE,
 * RESOURCE_EXHAUSTED, PERMISSION_DENIED, DEADLINE_EXCEEDED, ABORTED, UNIMPLEMENTED). Returns
 * BRUME_CLI_EXIT_FAILED. */
int brume_cli_report(FILE *errf, const brume_cli_settings *s, const char *what,
                     const brume_err *err);
/* brume_cli_report on ctx->err, and frees err. */
int brume_cli_failed(brume_cli_ctx *ctx, const char *what, brume_err *err);

/* Reports a bad command line, "brume function create: <message>" and where the help is, frees
 * err and returns BRUME_CLI_EXIT_USAGE. */
int brume_cli_usage(brume_cli_ctx *ctx, brume_err *err);
/* The same from a printf message. */
int brume_cli_usagef(brume_cli_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Reports unusable input that is no syntax error (a file that cannot be read): the message
 * alone, exit status BRUME_CLI_EXIT_USAGE; frees err. */
int brume_cli_bad_input(brume_cli_ctx *ctx, brume_err *err);

/* Frees the channel. */
void brume_cli_ctx_close(brume_cli_ctx *ctx);

#endif
