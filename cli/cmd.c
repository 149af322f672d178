/* What the commands share: see cmd.h. */
#include "cmd.h"

#include "message_json.h"
#include "output.h"
#include "values.h"

int brume_cli_call_print(brume_cli_ctx *ctx, const char *what, enum brume_cli_method method,
                         const ProtobufCMessage *req, int64_t deadline_ms,
                         brume_cli_to_json_fn to_json) {
  brume_autoptr(ProtobufCMessage) reply = NULL;
  brume_err *err = NULL;
  if (brume_cli_call(ctx, method, req, &reply, deadline_ms, &err) < 0)
    return brume_cli_failed(ctx, what, err);
  brume_autoptr(json_t) j = to_json(reply);
  brume_cli_print_object(ctx->out, j, ctx->settings->json);
  return BRUME_CLI_EXIT_OK;
}

int brume_cli_call_done(brume_cli_ctx *ctx, const char *what, enum brume_cli_method method,
                        const ProtobufCMessage *req, const char *sentence) {
  brume_autoptr(ProtobufCMessage) reply = NULL;
  brume_err *err = NULL;
  if (brume_cli_call(ctx, method, req, &reply, BRUME_CLI_CALL_MS, &err) < 0)
    return brume_cli_failed(ctx, what, err);
  if (ctx->settings->json)
    fputs("{}\n", ctx->out);
  else
    fprintf(ctx->out, "%s\n", sentence);
  return BRUME_CLI_EXIT_OK;
}

char *brume_cli_pos(const brume_cli_ctx *ctx, size_t i) {
  BRUME_ENSURE(i < ctx->args->n_pos);
  return (char *)ctx->args->pos[i];
}

int brume_cli_max_items(brume_cli_ctx *ctx, uint64_t *max, brume_err **err) {
  const char *v = brume_cli_args_get(ctx->args, "max-items");
  *max = 0;
  return v ? brume_cli_parse_uint("--max-items", v, 1, UINT32_MAX, max, err) : 0;
}
