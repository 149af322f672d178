/* `brume keys ...`: API keys (admin scope). A new key is printed once, and never again: the
 * frontend keeps only a salted hash of its secret. */
#include "brume/frontend.pb-c.h"
#include "cmd.h"
#include "message_json.h"
#include "output.h"
#include "values.h"

static int keys_create(brume_cli_ctx *ctx) {
  Brume__CreateApiKeyRequest req = BRUME__CREATE_API_KEY_REQUEST__INIT;
  req.account_id = brume_cli_pos(ctx, 0);
  const char *scopes = brume_cli_args_get(ctx->args, "scopes");
  if (scopes == NULL) return brume_cli_usagef(ctx, "--scopes is required (e.g. invoke,manage)");
  brume_err *err = NULL;
  if (brume_cli_parse_scopes("--scopes", scopes, &req.scopes, &req.n_scopes, &err) < 0)
    return brume_cli_usage(ctx, err);
  const char *desc = brume_cli_args_get(ctx->args, "description");
  req.description = (char *)(desc ? desc : "");
  brume_autofree char *what = brume_xasprintf("create an API key for account %s", req.account_id);
  brume_autoptr(ProtobufCMessage) m = NULL;
  int rc = brume_cli_call(ctx, BRUME_CLI_CREATE_API_KEY, &req.base, &m, BRUME_CLI_CALL_MS, &err);
  brume_cli_strv_free(req.scopes, req.n_scopes);
  if (rc < 0) return brume_cli_failed(ctx, what, err);
  const Brume__CreateApiKeyResponse *r = (const Brume__CreateApiKeyResponse *)m;
  brume_autoptr(json_t) j = json_object();
  json_object_set_new(j, "api_key", json_string(r->api_key ? r->api_key : ""));
  if (r->key) {
    /* Text: one flat list of fields; JSON: the key as stored under "key". */
    brume_autoptr(json_t) info = brume_cli_json_api_key(r->key);
    if (ctx->settings->json)
      json_object_set(j, "key", info);
    else
      json_object_update(j, info);
  }
  brume_cli_print_object(ctx->out, j, ctx->settings->json);
  fprintf(ctx->err,
          "brume: this is the only time the API key is shown: store it now (for example in a "
          "file with mode 0600, for --api-key-file)\n");
  return BRUME_CLI_EXIT_OK;
}

static int keys_list(brume_cli_ctx *ctx) {
  static const brume_cli_column cols[] = {
      {"key_id", "KEY_ID"},           {"account_id", "ACCOUNT"},      {"scopes", "SCOPES"},
      {"created_unix_ms", "CREATED"}, {"description", "DESCRIPTION"},
  };
  Brume__ListApiKeysRequest req = BRUME__LIST_API_KEYS_REQUEST__INIT;
  req.account_id = ctx->args->n_pos ? brume_cli_pos(ctx, 0) : "";
  brume_autoptr(ProtobufCMessage) m = NULL;
  brume_err *err = NULL;
  if (brume_cli_call(ctx, BRUME_CLI_LIST_API_KEYS, &req.base, &m, BRUME_CLI_CALL_MS, &err) < 0)
    return brume_cli_failed(ctx, "list API keys", err);
  const Brume__ListApiKeysResponse *r = (const Brume__ListApiKeysResponse *)m;
  brume_autoptr(json_t) rows = json_array();
  for (size_t i = 0; i < r->n_keys; i++)
    json_array_append_new(rows, brume_cli_json_api_key(r->keys[i]));
  brume_cli_print_table(ctx->out, rows, cols, BRUME_ARRAY_LEN(cols), ctx->settings->json);
  return BRUME_CLI_EXIT_OK;
}

static int keys_delete(brume_cli_ctx *ctx) {
  Brume__DeleteApiKeyRequest req = BRUME__DELETE_API_KEY_REQUEST__INIT;
  req.key_id = brume_cli_pos(ctx, 0);
  brume_autofree char *what = brume_xasprintf("delete API key %s", req.key_id);
  brume_autofree char *done = brume_xasprintf("Deleted API key %s.", req.key_id);
  return brume_cli_call_done(ctx, what, BRUME_CLI_DELETE_API_KEY, &req.base, done);
}

static const brume_cli_flag create_flags[] = {
    {"scopes", "LIST", false, "what the key may do: invoke, manage, admin (comma-separated)"},
    {"description", "TEXT", false, "free text, at most 256 characters"},
    {NULL, NULL, false, NULL},
};

const brume_cli_command brume_cli_keys_commands[] = {
    {"keys", "create", "ACCOUNT --scopes invoke,manage[,admin] [--description D]", 1, 1,
     create_flags, "Make an API key for an account and print it, this once.", keys_create},
    {"keys", "list", "[ACCOUNT]", 0, 1, NULL, "List API keys (without their secrets).", keys_list},
    {"keys", "delete", "KEY_ID", 1, 1, NULL, "Revoke an API key.", keys_delete},
};
const size_t brume_cli_n_keys_commands = BRUME_ARRAY_LEN(brume_cli_keys_commands);
