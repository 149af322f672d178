/* `brume concurrency ...` (a function's reserved concurrency) and `brume provisioned ...`
 * (initialised sandboxes kept for a version or alias). */
#include "brume/frontend.pb-c.h"
#include "cmd.h"
#include "message_json.h"
#include "values.h"

static json_t *put_json(const ProtobufCMessage *m) {
  return brume_cli_json_concurrency(
      ((const Brume__PutFunctionConcurrencyResponse *)m)->concurrency);
}

static json_t *get_json(const ProtobufCMessage *m) {
  return brume_cli_json_concurrency(
      ((const Brume__GetFunctionConcurrencyResponse *)m)->concurrency);
}

static json_t *provisioned(const Brume__ProvisionedConcurrencyConfig *c) {
  return c ? brume_cli_json_provisioned(c) : json_object();
}

static json_t *put_provisioned_json(const ProtobufCMessage *m) {
  return provisioned(((const Brume__PutProvisionedConcurrencyConfigResponse *)m)->config);
}

static json_t *get_provisioned_json(const ProtobufCMessage *m) {
  return provisioned(((const Brume__GetProvisionedConcurrencyConfigResponse *)m)->config);
}

static int concurrency_put(brume_cli_ctx *ctx) {
  Brume__PutFunctionConcurrencyRequest req = BRUME__PUT_FUNCTION_CONCURRENCY_REQUEST__INIT;
  req.function_name = brume_cli_pos(ctx, 0);
  uint64_t n;
  brume_err *err = NULL;
  if (brume_cli_parse_uint("N", brume_cli_pos(ctx, 1), 0, UINT32_MAX, &n, &err) < 0)
    return brume_cli_usage(ctx, err);
  req.reserved_concurrent_executions = (uint32_t)n;
  brume_autofree char *what =
      brume_xasprintf("set reserved concurrency of function %s", req.function_name);
  return brume_cli_call_print(ctx, what, BRUME_CLI_PUT_FUNCTION_CONCURRENCY, &req.base,
                              BRUME_CLI_CALL_MS, put_json);
}

static int concurrency_get(brume_cli_ctx *ctx) {
  Brume__GetFunctionConcurrencyRequest req = BRUME__GET_FUNCTION_CONCURRENCY_REQUEST__INIT;
  req.function_name = brume_cli_pos(ctx, 0);
  brume_autofree char *what =
      brume_xasprintf("get reserved concurrency of function %s", req.function_name);
  return brume_cli_call_print(ctx, what, BRUME_CLI_GET_FUNCTION_CONCURRENCY, &req.base,
                              BRUME_CLI_CALL_MS, get_json);
}

static int concurrency_delete(brume_cli_ctx *ctx) {
  Brume__DeleteFunctionConcurrencyRequest req = BRUME__DELETE_FUNCTION_CONCURRENCY_REQUEST__INIT;
  req.function_name = brume_cli_pos(ctx, 0);
  brume_autofree char *what =
      brume_xasprintf("delete reserved concurrency of function %s", req.function_name);
  brume_autofree char *done =
      brume_xasprintf("Deleted the reserved concurrency of function %s.", req.function_name);
  return brume_cli_call_done(ctx, what, BRUME_CLI_DELETE_FUNCTION_CONCURRENCY, &req.base, done);
}

static int provisioned_put(brume_cli_ctx *ctx) {
  Brume__PutProvisionedConcurrencyConfigRequest req =
      BRUME__PUT_PROVISIONED_CONCURRENCY_CONFIG_REQUEST__INIT;
  req.function_name = brume_cli_pos(ctx, 0);
  req.qualifier = brume_cli_pos(ctx, 1);
  uint64_t n;
  brume_err *err = NULL;
  if (brume_cli_parse_uint("N", brume_cli_pos(ctx, 2), 1, UINT32_MAX, &n, &err) < 0)
    return brume_cli_usage(ctx, err);
  req.provisioned_concurrent_executions = (uint32_t)n;
  brume_autofree char *what = brume_xasprintf("set provisioned concurrency of function %s:%s",
                                              req.function_name, req.qualifier);
  return brume_cli_call_print(ctx, what, BRUME_CLI_PUT_PROVISIONED_CONCURRENCY_CONFIG, &req.base,
                              BRUME_CLI_CALL_MS, put_provisioned_json);
}

static int provisioned_get(brume_cli_ctx *ctx) {
  Brume__GetProvisionedConcurrencyConfigRequest req =
      BRUME__GET_PROVISIONED_CONCURRENCY_CONFIG_REQUEST__INIT;
  req.function_name = brume_cli_pos(ctx, 0);
  req.qualifier = brume_cli_pos(ctx, 1);
  brume_autofree char *what = brume_xasprintf("get provisioned concurrency of function %s:%s",
                                              req.function_name, req.qualifier);
  return brume_cli_call_print(ctx, what, BRUME_CLI_GET_PROVISIONED_CONCURRENCY_CONFIG, &req.base,
                              BRUME_CLI_CALL_MS, get_provisioned_json);
}

static int provisioned_delete(brume_cli_ctx *ctx) {
  Brume__DeleteProvisionedConcurrencyConfigRequest req =
      BRUME__DELETE_PROVISIONED_CONCURRENCY_CONFIG_REQUEST__INIT;
  req.function_name = brume_cli_pos(ctx, 0);
  req.qualifier = brume_cli_pos(ctx, 1);
  brume_autofree char *what = brume_xasprintf("delete provisioned concurrency of function %s:%s",
                                              req.function_name, req.qualifier);
  brume_autofree char *done = brume_xasprintf(
      "Deleted the provisioned concurrency of function %s:%s.", req.function_name, req.qualifier);
  return brume_cli_call_done(ctx, what, BRUME_CLI_DELETE_PROVISIONED_CONCURRENCY_CONFIG, &req.base,
                             done);
}

const brume_cli_command brume_cli_concurrency_commands[] = {
    {"concurrency", "put", "NAME N", 2, 2, NULL,
     "Reserve N concurrent executions for a function (0 switches it off).", concurrency_put},
    {"concurrency", "get", "NAME", 1, 1, NULL, "Show a function's reserved concurrency.",
     concurrency_get},
    {"concurrency", "delete", "NAME", 1, 1, NULL,
     "Return a function's reserved concurrency to the account's pool.", concurrency_delete},
};
const size_t brume_cli_n_concurrency_commands = BRUME_ARRAY_LEN(brume_cli_concurrency_commands);

const brume_cli_command brume_cli_provisioned_commands[] = {
    {"provisioned", "put", "NAME QUALIFIER N", 3, 3, NULL,
     "Keep N initialised sandboxes for a version or alias.", provisioned_put},
    {"provisioned", "get", "NAME QUALIFIER", 2, 2, NULL,
     "Show a version's or alias's provisioned concurrency and its progress.", provisioned_get},
    {"provisioned", "delete", "NAME QUALIFIER", 2, 2, NULL,
     "Release a version's or alias's provisioned sandboxes.", provisioned_delete},
};
const size_t brume_cli_n_provisioned_commands = BRUME_ARRAY_LEN(brume_cli_provisioned_commands);
