/* The alias calls: CreateAlias, UpdateAlias, GetAlias, ListAliases, DeleteAlias. */
#include <string.h>

#include "clock.h"
#include "manage_impl.h"

#define INVALID "InvalidParameterValueException: "

/* Replies with a as the alias of desc, a response that has no other field. */
static brume_status reply_alias(brume_manage *m, brume_rpc_call *call, const char *account,
                                const char *name, const brume_fn_alias *a,
                                const ProtobufCMessageDescriptor *desc) {
  mg_pool pool = {0};
  Brume__AliasConfiguration ac;
  mg_alias_proto(m, account, name, a, &ac, &pool);
  brume_status s = mg_reply_with(call, desc, &ac);
  mg_pool_free(&pool);
  return s;
}

/* Copies a request's routing into a: absent leaves a as it is; an empty additional_version
 * removes the routing. */
static int set_routing(brume_fn_alias *a, const Brume__AliasRoutingConfig *r, brume_err **err) {
  if (r == NULL) return 0;
  const char *v = r->additional_version ? r->additional_version : "";
  if (strlen(v) >= sizeof(a->routing_version) || (v[0] && !brume_is_version(v)))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID
                         "routing_config.additional_version must be a published version "
                         "number");
  strcpy(a->routing_version, v);
  a->routing_weight = v[0] ? r->additional_version_weight : 0;
  return 0;
}

static int set_version(brume_fn_alias *a, const char *v, brume_err **err) {
  if (!brume_is_version(v))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID "function_version must be $LATEST or a version number");
  strcpy(a->version, v);
  return 0;
}

/* CreateAlias's or UpdateAlias's change: the alias, with the request's fields that are set. */
typedef struct alias_change {
  const char *alias;
  bool create;
  const char *version;
  const char *description;
  bool clear_description;
  const Brume__AliasRoutingConfig *routing;
  const char *revision_id;      /* UpdateAlias's; NULL or "" for any */
  const char *arn;              /* the function's, for messages */
  const brume_fn_alias *stored; /* the alias as changed */
} alias_change;

static int change_alias(brume_fn_doc *doc, void *ctx, brume_err **err) {
  alias_change *ch = ctx;
  brume_fn_alias a = {0};
  if (ch->create) {
    a.name = brume_xstrdup(ch->alias);
    a.description = brume_xstrdup("");
  } else {
    const brume_fn_alias *old = brume_fn_doc_alias(doc, ch->alias);
    if (old == NULL)
      return brume_err_set(err, BRUME_NOT_FOUND,
                           "ResourceNotFoundException: Alias not found: %s:%s", ch->arn, ch->alias);
    if (ch->revision_id && ch->revision_id[0] && strcmp(ch->revision_id, old->revision_id) != 0)
      return brume_err_set(err, BRUME_ABORTED,
                           "PreconditionFailedException: revision_id %.40s is not alias %s's "
                           "current revision; read the alias again and retry",
                           ch->revision_id, ch->alias);
    brume_fn_alias_copy(&a, old);
  }
  int rc = 0;
  if (ch->version && ch->version[0]) rc = set_version(&a, ch->version, err);
  if (ch->clear_description) brume_fn_set_string(&a.description, "");
  if (ch->description && ch->description[0]) brume_fn_set_string(&a.description, ch->description);
  if (rc == 0) rc = set_routing(&a, ch->routing, err);
  ch->stored = rc == 0 ? brume_fn_doc_put_alias(doc, &a, ch->create, ch->arn, err) : NULL;
  brume_fn_alias_clear(&a);
  return ch->stored ? 1 : -1;
}

/* Creates (ch->create) or updates an alias of function_name. */
static brume_status put_alias(brume_manage *m, brume_rpc_call *call, const char *account,
                              const char *function_name, alias_change *ch) {
  brume_autoptr(brume_err) err = NULL;
  brume_function_name fn;
  if (mg_function(m, function_name, NULL, &fn, NULL, &err) < 0 ||
      brume_check_alias(ch->alias, "name", &err) < 0)
    return mg_fail(call, err);
  if (ch->create && (ch->version == NULL || ch->version[0] == '\0')) {
    brume_err_set(&err, BRUME_INVALID_ARGUMENT, INVALID "function_version is required");
    return mg_fail(call, err);
  }
  if (ch->clear_description && ch->description && ch->description[0]) {
    brume_err_set(&err, BRUME_INVALID_ARGUMENT,
                  INVALID "description and clear_description cannot both be set");
    return mg_fail(call, err);
  }
  brume_autofree char *arn = mg_arn(m, account, fn.name, NULL);
  ch->arn = arn;
  brume_autoptr(brume_fn_doc) doc = mg_update_doc(m, account, fn.name, change_alias, ch, &err);
  if (doc == NULL) return mg_fail(call, err);
  return reply_alias(m, call, account, fn.name, ch->stored,
                     ch->create ? &brume__create_alias_response__descriptor
                                : &brume__update_alias_response__descriptor);
}

brume_status mg_create_alias(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *msg,
                             const char *account) {
  const Brume__CreateAliasRequest *req = (const Brume__CreateAliasRequest *)msg;
  alias_change ch = {.alias = req->name,
                     .create = true,
                     .version = req->function_version,
                     .description = req->description,
                     .routing = req->routing_config};
  return put_alias(m, call, account, req->function_name, &ch);
}

brume_status mg_update_alias(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *msg,
                             const char *account) {
  const Brume__UpdateAliasRequest *req = (const Brume__UpdateAliasRequest *)msg;
  alias_change ch = {.alias = req->name,
                     .version = req->function_version,
                     .description = req->description,
                     .clear_description = req->clear_description,
                     .routing = req->routing_config,
                     .revision_id = req->revision_id};
  return put_alias(m, call, account, req->function_name, &ch);
}

brume_status mg_get_alias(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *msg,
                          const char *account) {
  const Brume__GetAliasRequest *req = (const Brume__GetAliasRequest *)msg;
  brume_autoptr(brume_err) err = NULL;
  brume_function_name fn;
  if (mg_function(m, req->function_name, NULL, &fn, NULL, &err) < 0 ||
      brume_check_alias(req->name, "name", &err) < 0)
    return mg_fail(call, err);
  brume_autoptr(brume_fn_doc) doc = NULL;
  int64_t mod = 0;
  if (mg_load(m, account, fn.name, &doc, &mod, &err) < 0) return mg_fail(call, err);
  const brume_fn_alias *a = brume_fn_doc_alias(doc, req->name);
  if (a == NULL) {
    brume_autofree char *arn = mg_arn(m, account, fn.name, NULL);
    brume_err_set(&err, BRUME_NOT_FOUND, "ResourceNotFoundException: Alias not found: %s:%s", arn,
                  req->name);
    return mg_fail(call, err);
  }
  return reply_alias(m, call, account, fn.name, a, &brume__get_alias_response__descriptor);
}

brume_status mg_list_aliases(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *msg,
                             const char *account) {
  const Brume__ListAliasesRequest *req = (const Brume__ListAliasesRequest *)msg;
  brume_autoptr(brume_err) err = NULL;
  brume_function_name fn;
  if (mg_function(m, req->function_name, NULL, &fn, NULL, &err) < 0) return mg_fail(call, err);
  const char *version = req->function_version ? req->function_version : "";
  const char *marker = req->marker ? req->marker : "";
  if (version[0] && !brume_is_version(version))
    brume_err_set(&err, BRUME_INVALID_ARGUMENT,
                  INVALID "function_version must be $LATEST or a version number");
  else if (req->max_items > MG_PAGE_MAX)
    brume_err_set(&err, BRUME_INVALID_ARGUMENT, INVALID "max_items %u is out of range 1-%d",
                  req->max_items, MG_PAGE_MAX);
  else if (marker[0])
    brume_check_alias(marker, "marker", &err);
  if (err) return mg_fail(call, err);
  size_t max = req->max_items ? req->max_items : MG_PAGE_MAX;
  brume_autoptr(brume_fn_doc) doc = NULL;
  int64_t mod = 0;
  if (mg_load(m, account, fn.name, &doc, &mod, &err) < 0) return mg_fail(call, err);
  mg_pool pool = {0};
  Brume__AliasConfiguration *acs = mg_keep(&pool, brume_xcalloc(max + 1, sizeof(*acs)), NULL);
  Brume__AliasConfiguration **ptrs = mg_keep(&pool, brume_xcalloc(max + 1, sizeof(*ptrs)), NULL);
  Brume__ListAliasesResponse resp = BRUME__LIST_ALIASES_RESPONSE__INIT;
  resp.aliases = ptrs;
  for (size_t i = 0; i < doc->n_aliases; i++) {
    const brume_fn_alias *a = &doc->aliases[i];
    if (strcmp(a->name, marker) <= 0) continue;
    if (version[0] && strcmp(a->version, version) != 0 && strcmp(a->routing_version, version) != 0)
      continue;
    if (resp.n_aliases == max) {
      resp.next_marker = ptrs[max - 1]->name;
      break;
    }
    mg_alias_proto(m, account, fn.name, a, &acs[resp.n_aliases], &pool);
    ptrs[resp.n_aliases] = &acs[resp.n_aliases];
    resp.n_aliases++;
  }
  brume_status s = mg_reply(call, &resp.base);
  mg_pool_free(&pool);
  return s;
}

brume_status mg_delete_alias(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *msg,
                             const char *account) {
  const Brume__DeleteAliasRequest *req = (const Brume__DeleteAliasRequest *)msg;
  brume_autoptr(brume_err) err = NULL;
  brume_function_name fn;
  if (mg_function(m, req->function_name, NULL, &fn, NULL, &err) < 0 ||
      brume_check_alias(req->name, "name", &err) < 0)
    return mg_fail(call, err);
  brume_autofree char *arn = mg_arn(m, account, fn.name, NULL);
  brume_autofree char *lkey = mg_limits_key(m, account, fn.name);
  for (int attempt = 0; attempt < MG_CAS_ATTEMPTS; attempt++) {
    brume_autoptr(brume_fn_doc) doc = NULL;
    int64_t mod = 0;
    brume_autoptr(json_t) limits = NULL;
    int64_t lmod = 0;
    if (mg_load(m, account, fn.name, &doc, &mod, &err) < 0 ||
        mg_limits_load(m, account, fn.name, &limits, &lmod, &err) < 0)
      return mg_fail(call, err);
    /* The alias's provisioned concurrency config goes with it. */
    json_t *n = json_object_get(json_object_get(limits, "provisioned"), req->name);
    brume_autoptr(json_t) dropped =
        n ? json_pack("{s:{s:O}}", "provisioned", req->name, n) : json_object();
    mg_prov_sync sync = {0};
    mg_prov_collect(m, account, fn.name, doc, json_object_get(dropped, "provisioned"), &sync);
    if (brume_fn_doc_delete_alias(doc, req->name, arn, &err) < 0) {
      mg_prov_sync_free(&sync);
      return mg_fail(call, err);
    }
    brume_autofree char *ltext = NULL;
    brume_etcd_cmp cmp = {
        .key = lkey, .target = BRUME_ETCD_MOD, .result = BRUME_ETCD_EQUAL, .number = lmod};
    brume_etcd_op op = {0};
    if (n) {
      mg_limits_drop_provisioned(limits, req->name);
      op = mg_limits_op(lkey, limits, &ltext);
    }
    int64_t rev = 0;
    int rc = mg_store(m, account, fn.name, doc, mod, &cmp, 1, &op, n ? 1 : 0, &rev, &err);
    if (rc <= 0) mg_prov_sync_free(&sync);
    if (rc < 0) return mg_fail(call, err);
    if (rc == 0) continue;
    mg_wait(m, rev);
    mg_prov_push(m, account, fn.name, doc, limits, &sync, NULL);
    mg_prov_sync_free(&sync);
    return mg_reply_with(call, &brume__delete_alias_response__descriptor, NULL);
  }
  mg_too_busy(account, fn.name, &err);
  return mg_fail(call, err);
}
