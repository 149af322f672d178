/* `brume function ...` and `brume version publish`: a function's code and configuration, and
 * its published versions. */
#include <string.h>

#include "brume/frontend.pb-c.h"
#include "cmd.h"
#include "file.h"
#include "message_json.h"
#include "output.h"
#include "values.h"

/* A zip archive's largest size (frontend.proto, CreateFunctionRequest.zip_file). */
#define MAX_ZIP_BYTES ((size_t)50 << 20)
/* The handler when --handler is absent: a custom runtime's own executable. */
#define DEFAULT_HANDLER "bootstrap"

/* Environment variables from repeated --env NAME=VALUE flags. */
typedef struct env_vars {
  Brume__Environment env;
  Brume__Environment__VariablesEntry *entries;
  Brume__Environment__VariablesEntry **ptrs;
} env_vars;

/* The configuration flags that create and update-config share. */
typedef struct fn_config {
  int handler_mode;
  uint32_t memory_mib;
  uint32_t timeout_ms;
  uint32_t storage_mib;
  bool has_env;
  env_vars env;
} fn_config;

static void env_free(env_vars *ev) {
  for (size_t i = 0; i < ev->env.n_variables; i++) {
    free(ev->entries[i].key);
    free(ev->entries[i].value);
  }
  free(ev->entries);
  free(ev->ptrs);
}

static int parse_env(const brume_cli_args *a, env_vars *ev, brume_err **err) {
  size_t n = 0;
  while (brume_cli_args_nth(a, "env", n)) n++;
  brume__environment__init(&ev->env);
  ev->entries = brume_xcalloc(n + 1, sizeof(*ev->entries));
  ev->ptrs = brume_xcalloc(n + 1, sizeof(*ev->ptrs));
  ev->env.variables = ev->ptrs;
  for (size_t i = 0; i < n; i++) {
    char *name, *value;
    if (brume_cli_parse_pair("--env", brume_cli_args_nth(a, "env", i), &name, &value, err) < 0)
      return -1;
    for (size_t j = 0; j < i; j++) {
      if (strcmp(ev->entries[j].key, name) == 0) {
        brume_err_set(err, BRUME_INVALID_ARGUMENT, "--env: %s is given twice", name);
        free(name);
        free(value);
        return -1;
      }
    }
    brume__environment__variables_entry__init(&ev->entries[i]);
    ev->entries[i].key = name;
    ev->entries[i].value = value;
    ev->ptrs[i] = &ev->entries[i];
    ev->env.n_variables = i + 1;
  }
  return 0;
}

static int parse_config(const brume_cli_args *a, fn_config *c, brume_err **err) {
  const char *v;
  if ((v = brume_cli_args_get(a, "handler-mode")) &&
      brume_cli_parse_handler_mode("--handler-mode", v, &c->handler_mode, err) < 0)
    return -1;
  if ((v = brume_cli_args_get(a, "memory")) &&
      brume_cli_parse_mib("--memory", v, &c->memory_mib, err) < 0)
    return -1;
  if ((v = brume_cli_args_get(a, "timeout")) &&
      brume_cli_parse_duration_ms("--timeout", v, &c->timeout_ms, err) < 0)
    return -1;
  if ((v = brume_cli_args_get(a, "ephemeral-storage")) &&
      brume_cli_parse_mib("--ephemeral-storage", v, &c->storage_mib, err) < 0)
    return -1;
  if ((v = brume_cli_args_get(a, "handler")) && *v == '\0')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "--handler cannot be empty");
  c->has_env = brume_cli_args_has(a, "env");
  if (c->has_env && parse_env(a, &c->env, err) < 0) return -1;
  return 0;
}

static void config_free(fn_config *c) {
  if (c->has_env) env_free(&c->env);
}

static uint8_t *read_zip(brume_cli_ctx *ctx, size_t *len, brume_err **err) {
  const char *path = brume_cli_args_get(ctx->args, "zip");
  uint8_t *zip = brume_cli_file_read(path, MAX_ZIP_BYTES, len, err);
  if (zip == NULL) brume_err_wrap(err, "--zip");
  return zip;
}

static const char *get_or(const brume_cli_args *a, const char *name, const char *def) {
  const char *v = brume_cli_args_get(a, name);
  return v ? v : def;
}

static json_t *configuration(const Brume__FunctionConfiguration *c) {
  return c ? brume_cli_json_function(c) : json_object();
}

static json_t *created_json(const ProtobufCMessage *m) {
  return configuration(((const Brume__CreateFunctionResponse *)m)->configuration);
}

static json_t *code_json(const ProtobufCMessage *m) {
  return configuration(((const Brume__UpdateFunctionCodeResponse *)m)->configuration);
}

static json_t *config_json(const ProtobufCMessage *m) {
  return configuration(((const Brume__UpdateFunctionConfigurationResponse *)m)->configuration);
}

static json_t *get_json(const ProtobufCMessage *m) {
  return brume_cli_json_get_function((const Brume__GetFunctionResponse *)m);
}

static json_t *published_json(const ProtobufCMessage *m) {
  return configuration(((const Brume__PublishVersionResponse *)m)->configuration);
}

static int function_create(brume_cli_ctx *ctx) {
  const brume_cli_args *a = ctx->args;
  char *name = brume_cli_pos(ctx, 0);
  if (!brume_cli_args_has(a, "zip")) return brume_cli_usagef(ctx, "--zip FILE is required");
  fn_config c = {0};
  brume_err *err = NULL;
  if (parse_config(a, &c, &err) < 0) {
    config_free(&c);
    return brume_cli_usage(ctx, err);
  }
  size_t len = 0;
  brume_autofree uint8_t *zip = read_zip(ctx, &len, &err);
  if (zip == NULL) {
    config_free(&c);
    return brume_cli_bad_input(ctx, err);
  }
  Brume__CreateFunctionRequest req = BRUME__CREATE_FUNCTION_REQUEST__INIT;
  req.function_name = name;
  req.description = (char *)get_or(a, "description", "");
  req.handler_mode = (Brume__HandlerMode)c.handler_mode;
  req.handler = (char *)get_or(a, "handler", DEFAULT_HANDLER);
  req.memory_size_mib = c.memory_mib;
  req.timeout_ms = c.timeout_ms;
  req.ephemeral_storage_mib = c.storage_mib;
  req.environment = c.has_env ? &c.env.env : NULL;
  req.zip_file = (ProtobufCBinaryData){len, zip};
  req.publish = brume_cli_args_has(a, "publish");
  brume_autofree char *what = brume_xasprintf("create function %s", name);
  int rc = brume_cli_call_print(ctx, what, BRUME_CLI_CREATE_FUNCTION, &req.base,
                                BRUME_CLI_UPLOAD_MS, created_json);
  config_free(&c);
  return rc;
}

static int function_update_code(brume_cli_ctx *ctx) {
  const brume_cli_args *a = ctx->args;
  char *name = brume_cli_pos(ctx, 0);
  if (!brume_cli_args_has(a, "zip")) return brume_cli_usagef(ctx, "--zip FILE is required");
  brume_err *err = NULL;
  size_t len = 0;
  brume_autofree uint8_t *zip = read_zip(ctx, &len, &err);
  if (zip == NULL) return brume_cli_bad_input(ctx, err);
  Brume__UpdateFunctionCodeRequest req = BRUME__UPDATE_FUNCTION_CODE_REQUEST__INIT;
  req.function_name = name;
  req.zip_file = (ProtobufCBinaryData){len, zip};
  req.publish = brume_cli_args_has(a, "publish");
  req.revision_id = (char *)get_or(a, "revision-id", "");
  brume_autofree char *what = brume_xasprintf("update code of function %s", name);
  return brume_cli_call_print(ctx, what, BRUME_CLI_UPDATE_FUNCTION_CODE, &req.base,
                              BRUME_CLI_UPLOAD_MS, code_json);
}

static int function_update_config(brume_cli_ctx *ctx) {
  static const char *const changes[] = {"handler", "handler-mode",      "memory",
                                        "timeout", "ephemeral-storage", "env",
                                        "no-env",  "description"};
  const brume_cli_args *a = ctx->args;
  char *name = brume_cli_pos(ctx, 0);
  bool any = false;
  for (size_t i = 0; i < BRUME_ARRAY_LEN(changes); i++)
    any = any || brume_cli_args_has(a, changes[i]);
  if (!any)
    return brume_cli_usagef(ctx,
                            "nothing to change: give --handler, --handler-mode, --memory, "
                            "--timeout, --ephemeral-storage, --env, --no-env or --description");
  if (brume_cli_args_has(a, "env") && brume_cli_args_has(a, "no-env"))
    return brume_cli_usagef(ctx, "--env and --no-env exclude each other");
  fn_config c = {0};
  brume_err *err = NULL;
  if (parse_config(a, &c, &err) < 0) {
    config_free(&c);
    return brume_cli_usage(ctx, err);
  }
  Brume__Environment none = BRUME__ENVIRONMENT__INIT;
  Brume__UpdateFunctionConfigurationRequest req =
      BRUME__UPDATE_FUNCTION_CONFIGURATION_REQUEST__INIT;
  req.function_name = name;
  const char *desc = brume_cli_args_get(a, "description");
  req.description = (char *)(desc ? desc : "");
  req.clear_description = desc != NULL && *desc == '\0';
  req.handler_mode = (Brume__HandlerMode)c.handler_mode;
  req.handler = (char *)get_or(a, "handler", "");
  req.memory_size_mib = c.memory_mib;
  req.timeout_ms = c.timeout_ms;
  req.ephemeral_storage_mib = c.storage_mib;
  req.environment = c.has_env ? &c.env.env : brume_cli_args_has(a, "no-env") ? &none : NULL;
  req.revision_id = (char *)get_or(a, "revision-id", "");
  brume_autofree char *what = brume_xasprintf("update configuration of function %s", name);
  int rc = brume_cli_call_print(ctx, what, BRUME_CLI_UPDATE_FUNCTION_CONFIGURATION, &req.base,
                                BRUME_CLI_CALL_MS, config_json);
  config_free(&c);
  return rc;
}

static int function_get(brume_cli_ctx *ctx) {
  Brume__GetFunctionRequest req = BRUME__GET_FUNCTION_REQUEST__INIT;
  req.function_name = brume_cli_pos(ctx, 0);
  req.qualifier = (char *)get_or(ctx->args, "qualifier", "");
  brume_autofree char *what = brume_xasprintf("get function %s", req.function_name);
  return brume_cli_call_print(ctx, what, BRUME_CLI_GET_FUNCTION, &req.base, BRUME_CLI_CALL_MS,
                              get_json);
}

static int function_list(brume_cli_ctx *ctx) {
  static const brume_cli_column cols[] = {
      {"function_name", "NAME"},         {"handler_mode", "MODE"},
      {"memory_size_mib", "MEMORY_MIB"}, {"timeout_ms", "TIMEOUT_MS"},
      {"code_size_bytes", "CODE_BYTES"}, {"last_modified_unix_ms", "LAST_MODIFIED"},
      {"description", "DESCRIPTION"},
  };
  uint64_t max;
  brume_err *err = NULL;
  if (brume_cli_max_items(ctx, &max, &err) < 0) return brume_cli_usage(ctx, err);
  brume_autoptr(json_t) rows = json_array();
  brume_autofree char *marker = brume_xstrdup("");
  do {
    Brume__ListFunctionsRequest req = BRUME__LIST_FUNCTIONS_REQUEST__INIT;
    uint64_t left = max ? max - json_array_size(rows) : 50;
    req.max_items = (uint32_t)(left < 50 ? left : 50);
    req.marker = marker;
    brume_autoptr(ProtobufCMessage) m = NULL;
    if (brume_cli_call(ctx, BRUME_CLI_LIST_FUNCTIONS, &req.base, &m, BRUME_CLI_CALL_MS, &err) < 0)
      return brume_cli_failed(ctx, "list functions", err);
    const Brume__ListFunctionsResponse *r = (const Brume__ListFunctionsResponse *)m;
    for (size_t i = 0; i < r->n_functions && (!max || json_array_size(rows) < max); i++)
      json_array_append_new(rows, brume_cli_json_function(r->functions[i]));
    if (*marker && strcmp(marker, r->next_marker) == 0) {
      brume_err_set(&err, BRUME_INTERNAL, "the frontend answered the same marker twice");
      return brume_cli_failed(ctx, "list functions", err);
    }
    free(marker);
    marker = brume_xstrdup(r->next_marker);
  } while (*marker && (!max || json_array_size(rows) < max));
  brume_cli_print_table(ctx->out, rows, cols, BRUME_ARRAY_LEN(cols), ctx->settings->json);
  return BRUME_CLI_EXIT_OK;
}

static int function_delete(brume_cli_ctx *ctx) {
  Brume__DeleteFunctionRequest req = BRUME__DELETE_FUNCTION_REQUEST__INIT;
  req.function_name = brume_cli_pos(ctx, 0);
  req.qualifier = (char *)get_or(ctx->args, "qualifier", "");
  brume_autofree char *what = brume_xasprintf("delete function %s", req.function_name);
  brume_autofree char *done =
      *req.qualifier
          ? brume_xasprintf("Deleted version %s of function %s.", req.qualifier, req.function_name)
          : brume_xasprintf("Deleted function %s.", req.function_name);
  return brume_cli_call_done(ctx, what, BRUME_CLI_DELETE_FUNCTION, &req.base, done);
}

static int version_publish(brume_cli_ctx *ctx) {
  Brume__PublishVersionRequest req = BRUME__PUBLISH_VERSION_REQUEST__INIT;
  req.function_name = brume_cli_pos(ctx, 0);
  req.description = (char *)get_or(ctx->args, "description", "");
  req.code_sha256 = (char *)get_or(ctx->args, "code-sha256", "");
  req.revision_id = (char *)get_or(ctx->args, "revision-id", "");
  brume_autofree char *what =
      brume_xasprintf("publish a version of function %s", req.function_name);
  return brume_cli_call_print(ctx, what, BRUME_CLI_PUBLISH_VERSION, &req.base, BRUME_CLI_CALL_MS,
                              published_json);
}

static const brume_cli_flag create_flags[] = {
    {"zip", "FILE", false, "the code: a zip archive (at most 50 MiB) with bootstrap or handler"},
    {"handler", "H", false, "the handler (default bootstrap)"},
    {"handler-mode", "MODE", false, "runtime-api (a Lambda custom runtime; default) or exec"},
    {"memory", "MIB", false, "memory, 128-10240 MiB (default 128)"},
    {"timeout", "DURATION", false, "timeout of one invocation: 3s, 500ms, 15m (default 3s)"},
    {"ephemeral-storage", "MIB", false, "size of /tmp, 512-10240 MiB (default 512)"},
    {"env", "NAME=VALUE", true, "an environment variable; repeat for more"},
    {"description", "TEXT", false, "free text, at most 256 characters"},
    {"publish", NULL, false, "also publish version 1"},
    {NULL, NULL, false, NULL},
};

static const brume_cli_flag update_code_flags[] = {
    {"zip", "FILE", false, "the new code: a zip archive (at most 50 MiB)"},
    {"publish", NULL, false, "also publish a version with the new code"},
    {"revision-id", "R", false, "update only if $LATEST's revision id is still R"},
    {NULL, NULL, false, NULL},
};

static const brume_cli_flag update_config_flags[] = {
    {"handler", "H", false, "new handler"},
    {"handler-mode", "MODE", false, "new handler mode: runtime-api or exec"},
    {"memory", "MIB", false, "new memory, 128-10240 MiB"},
    {"timeout", "DURATION", false, "new timeout: 3s, 500ms, 15m"},
    {"ephemeral-storage", "MIB", false, "new size of /tmp, 512-10240 MiB"},
    {"env", "NAME=VALUE", true, "replaces every variable; repeat for more"},
    {"no-env", NULL, false, "removes every environment variable"},
    {"description", "TEXT", false, "new description (\"\" clears it)"},
    {"revision-id", "R", false, "update only if $LATEST's revision id is still R"},
    {NULL, NULL, false, NULL},
};

static const brume_cli_flag get_flags[] = {
    {"qualifier", "Q", false, "a version or an alias (default $LATEST)"},
    {NULL, NULL, false, NULL},
};

static const brume_cli_flag list_flags[] = {
    {"max-items", "N", false, "list at most N (default all, a page of 50 at a time)"},
    {NULL, NULL, false, NULL},
};

static const brume_cli_flag delete_flags[] = {
    {"qualifier", "VERSION", false, "delete only this version (default the whole function)"},
    {NULL, NULL, false, NULL},
};

static const brume_cli_flag publish_flags[] = {
    {"description", "TEXT", false, "the version's description (default $LATEST's)"},
    {"revision-id", "R", false, "publish only if $LATEST's revision id is still R"},
    {"code-sha256", "HEX", false, "publish only if $LATEST's code digest is still HEX"},
    {NULL, NULL, false, NULL},
};

const brume_cli_command brume_cli_function_commands[] = {
    {"function", "create", "NAME --zip FILE [options]", 1, 1, create_flags,
     "Create a function ($LATEST) from a zip archive.", function_create},
    {"function", "update-code", "NAME --zip FILE [--publish] [--revision-id R]", 1, 1,
     update_code_flags, "Replace $LATEST's code.", function_update_code},
    {"function", "update-config", "NAME [options]", 1, 1, update_config_flags,
     "Change $LATEST's configuration.", function_update_config},
    {"function", "get", "NAME [--qualifier Q]", 1, 1, get_flags,
     "Show a version's configuration, code URL and reserved concurrency.", function_get},
    {"function", "list", "[--max-items N]", 0, 0, list_flags, "List the account's functions.",
     function_list},
    {"function", "delete", "NAME [--qualifier VERSION]", 1, 1, delete_flags,
     "Delete a function, or one of its versions.", function_delete},
    {"function", "event-config", "put|get|delete NAME [--qualifier Q] [--max-retries N] ...", 2, 2,
     brume_cli_event_config_flags,
     "A qualifier's asynchronous invocation settings: retries, maximum event age, destinations.",
     brume_cli_event_config},
};
const size_t brume_cli_n_function_commands = BRUME_ARRAY_LEN(brume_cli_function_commands);

const brume_cli_command brume_cli_version_commands[] = {
    {"version", "publish", "NAME [--description D]", 1, 1, publish_flags,
     "Publish $LATEST as a new numbered version.", version_publish},
};
const size_t brume_cli_n_version_commands = BRUME_ARRAY_LEN(brume_cli_version_commands);
