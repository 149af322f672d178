/* `brume alias ...`: names that point to a version, optionally routing a share of invocations
 * to a second one. */
#include <string.h>

#include "brume/frontend.pb-c.h"
#include "cmd.h"
#include "message_json.h"
#include "output.h"
#include "values.h"

static const char *get_or(const brume_cli_args *a, const char *name, const char *def) {
  const char *v = brume_cli_args_get(a, name);
  return v ? v : def;
}

static json_t *alias_json(const Brume__AliasConfiguration *a) {
  return a ? brume_cli_json_alias(a) : json_object();
}

static json_t *created_json(const ProtobufCMessage *m) {
  return alias_json(((const Brume__CreateAliasResponse *)m)->alias);
}

static json_t *updated_json(const ProtobufCMessage *m) {
  return alias_json(((const Brume__UpdateAliasResponse *)m)->alias);
}

static json_t *got_json(const ProtobufCMessage *m) {
  return alias_json(((const Brume__GetAliasResponse *)m)->alias);
}

/* --routing VERSION=WEIGHT into routing (its additional_version a heap copy). */
static int parse_routing(const brume_cli_args *a, Brume__AliasRoutingConfig *routing,
                         brume_err **err) {
  brume__alias_routing_config__init(routing);
  const char *v = brume_cli_args_get(a, "routing");
  return brume_cli_parse_routing("--routing", v, &routing->additional_version,
                                 &routing->additional_version_weight, err);
}

static int alias_create(brume_cli_ctx *ctx) {
  const brume_cli_args *a = ctx->args;
  Brume__CreateAliasRequest req = BRUME__CREATE_ALIAS_REQUEST__INIT;
  req.function_name = brume_cli_pos(ctx, 0);
  req.name = brume_cli_pos(ctx, 1);
  const char *version = brume_cli_args_get(a, "version");
  if (version == NULL || *version == '\0')
    return brume_cli_usagef(ctx, "--version V is required (a version number or $LATEST)");
  req.function_version = (char *)version;
  req.description = (char *)get_or(a, "description", "");
  Brume__AliasRoutingConfig routing;
  brume_err *err = NULL;
  if (brume_cli_args_has(a, "routing")) {
    if (parse_routing(a, &routing, &err) < 0) return brume_cli_usage(ctx, err);
    req.routing_config = &routing;
  }
  brume_autofree char *what =
      brume_xasprintf("create alias %s of function %s", req.name, req.function_name);
  int rc = brume_cli_call_print(ctx, what, BRUME_CLI_CREATE_ALIAS, &req.base, BRUME_CLI_CALL_MS,
                                created_json);
  if (req.routing_config) free(routing.additional_version);
  return rc;
}

static int alias_update(brume_cli_ctx *ctx) {
  const brume_cli_args *a = ctx->args;
  Brume__UpdateAliasRequest req = BRUME__UPDATE_ALIAS_REQUEST__INIT;
  req.function_name = brume_cli_pos(ctx, 0);
  req.name = brume_cli_pos(ctx, 1);
  bool routing_flag = brume_cli_args_has(a, "routing");
  bool no_routing = brume_cli_args_has(a, "no-routing");
  const char *version = brume_cli_args_get(a, "version");
  const char *desc = brume_cli_args_get(a, "description");
  if (routing_flag && no_routing)
    return brume_cli_usagef(ctx, "--routing and --no-routing exclude each other");
  if (!routing_flag && !no_routing && !version && !desc)
    return brume_cli_usagef(
        ctx, "nothing to change: give --version, --routing, --no-routing or --description");
  if (version && *version == '\0') return brume_cli_usagef(ctx, "--version cannot be empty");
  req.function_version = (char *)(version ? version : "");
  req.description = (char *)(desc ? desc : "");
  req.clear_description = desc != NULL && *desc == '\0';
  req.revision_id = (char *)get_or(a, "revision-id", "");
  /* Present with an empty additional_version: no routing (frontend.proto). */
  Brume__AliasRoutingConfig routing = BRUME__ALIAS_ROUTING_CONFIG__INIT;
  brume_err *err = NULL;
  if (routing_flag && parse_routing(a, &routing, &err) < 0) return brume_cli_usage(ctx, err);
  if (routing_flag || no_routing) req.routing_config = &routing;
  brume_autofree char *what =
      brume_xasprintf("update alias %s of function %s", req.name, req.function_name);
  int rc = brume_cli_call_print(ctx, what, BRUME_CLI_UPDATE_ALIAS, &req.base, BRUME_CLI_CALL_MS,
                                updated_json);
  if (routing_flag) free(routing.additional_version);
  return rc;
}

static int alias_get(brume_cli_ctx *ctx) {
  Brume__GetAliasRequest req = BRUME__GET_ALIAS_REQUEST__INIT;
  req.function_name = brume_cli_pos(ctx, 0);
  req.name = brume_cli_pos(ctx, 1);
  brume_autofree char *what =
      brume_xasprintf("get alias %s of function %s", req.name, req.function_name);
  return brume_cli_call_print(ctx, what, BRUME_CLI_GET_ALIAS, &req.base, BRUME_CLI_CALL_MS,
                              got_json);
}

static int alias_delete(brume_cli_ctx *ctx) {
  Brume__DeleteAliasRequest req = BRUME__DELETE_ALIAS_REQUEST__INIT;
  req.function_name = brume_cli_pos(ctx, 0);
  req.name = brume_cli_pos(ctx, 1);
  brume_autofree char *what =
      brume_xasprintf("delete alias %s of function %s", req.name, req.function_name);
  brume_autofree char *done =
      brume_xasprintf("Deleted alias %s of function %s.", req.name, req.function_name);
  return brume_cli_call_done(ctx, what, BRUME_CLI_DELETE_ALIAS, &req.base, done);
}

/* A table row's "routing" column: "2=0.1", or empty. */
static void add_routing_column(json_t *row) {
  const json_t *r = json_object_get(row, "routing_config");
  if (!json_is_object(r)) return;
  char buf[128];
  snprintf(buf, sizeof(buf), "%s=%g", json_string_value(json_object_get(r, "additional_version")),
           json_real_value(json_object_get(r, "additional_version_weight")));
  json_object_set_new(row, "routing", json_string(buf));
}

static int alias_list(brume_cli_ctx *ctx) {
  static const brume_cli_column cols[] = {
      {"name", "ALIAS"},
      {"function_version", "VERSION"},
      {"routing", "ROUTING"},
      {"description", "DESCRIPTION"},
  };
  char *function = brume_cli_pos(ctx, 0);
  uint64_t max;
  brume_err *err = NULL;
  if (brume_cli_max_items(ctx, &max, &err) < 0) return brume_cli_usage(ctx, err);
  brume_autofree char *what = brume_xasprintf("list aliases of function %s", function);
  brume_autoptr(json_t) rows = json_array();
  brume_autofree char *marker = brume_xstrdup("");
  do {
    Brume__ListAliasesRequest req = BRUME__LIST_ALIASES_REQUEST__INIT;
    req.function_name = function;
    req.function_version = (char *)get_or(ctx->args, "version", "");
    uint64_t left = max ? max - json_array_size(rows) : 50;
    req.max_items = (uint32_t)(left < 50 ? left : 50);
    req.marker = marker;
    brume_autoptr(ProtobufCMessage) m = NULL;
    if (brume_cli_call(ctx, BRUME_CLI_LIST_ALIASES, &req.base, &m, BRUME_CLI_CALL_MS, &err) < 0)
      return brume_cli_failed(ctx, what, err);
    const Brume__ListAliasesResponse *r = (const Brume__ListAliasesResponse *)m;
    for (size_t i = 0; i < r->n_aliases && (!max || json_array_size(rows) < max); i++)
      json_array_append_new(rows, brume_cli_json_alias(r->aliases[i]));
    if (*marker && strcmp(marker, r->next_marker) == 0) {
      brume_err_set(&err, BRUME_INTERNAL, "the frontend answered the same marker twice");
      return brume_cli_failed(ctx, what, err);
    }
    free(marker);
    marker = brume_xstrdup(r->next_marker);
  } while (*marker && (!max || json_array_size(rows) < max));
  if (!ctx->settings->json) {
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) add_routing_column(row);
  }
  brume_cli_print_table(ctx->out, rows, cols, BRUME_ARRAY_LEN(cols), ctx->settings->json);
  return BRUME_CLI_EXIT_OK;
}

static const brume_cli_flag create_flags[] = {
    {"version", "V", false, "the version it points to: a number or $LATEST"},
    {"routing", "VERSION=WEIGHT", false, "send a share (0-1) of invocations to VERSION"},
    {"description", "TEXT", false, "free text, at most 256 characters"},
    {NULL, NULL, false, NULL},
};

static const brume_cli_flag update_flags[] = {
    {"version", "V", false, "the version it points to from now on"},
    {"routing", "VERSION=WEIGHT", false, "send a share (0-1) of invocations to VERSION"},
    {"no-routing", NULL, false, "stop routing to a second version"},
    {"description", "TEXT", false, "new description (\"\" clears it)"},
    {"revision-id", "R", false, "update only if the alias's revision id is still R"},
    {NULL, NULL, false, NULL},
};

static const brume_cli_flag list_flags[] = {
    {"version", "V", false, "only aliases that point or route to version V"},
    {"max-items", "N", false, "list at most N (default all)"},
    {NULL, NULL, false, NULL},
};

const brume_cli_command brume_cli_alias_commands[] = {
    {"alias", "create", "NAME ALIAS --version V [--routing VERSION=WEIGHT] [--description D]", 2, 2,
     create_flags, "Create an alias of a function's version.", alias_create},
    {"alias", "update", "NAME ALIAS [--version V] [--routing VERSION=WEIGHT | --no-routing]", 2, 2,
     update_flags, "Repoint an alias, or change its routing or description.", alias_update},
    {"alias", "get", "NAME ALIAS", 2, 2, NULL, "Show an alias.", alias_get},
    {"alias", "delete", "NAME ALIAS", 2, 2, NULL, "Delete an alias.", alias_delete},
    {"alias", "list", "NAME [--version V] [--max-items N]", 1, 1, list_flags,
     "List a function's aliases.", alias_list},
};
const size_t brume_cli_n_alias_commands = BRUME_ARRAY_LEN(brume_cli_alias_commands);
