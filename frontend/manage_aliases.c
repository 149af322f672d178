/* The alias calls: CreateAlias, UpdateAlias, GetAlias, ListAliases, DeleteAlias. */
#include <string.h>

#include "clock.h"
#include "manage_impl.h"

BRUME_DEFINE_AUTOPTR(json_t, json_decref)

#define INVALID "InvalidParameterValueException: "

static brume_status reply_alias(brume_manage *m, brume_rpc_call *call, const char *account,
                                const char *name, const brume_fn_alias *a,
                                const ProtobufCMessageDescriptor *desc) {
  mg_pool pool = {0};
  Brume__AliasConfiguration ac;
  mg_alias_proto(m, account, name, a, &ac, &pool);
  union {
    Brume__CreateAliasResponse create;
    Brume__UpdateAliasResponse update;
    Brume__GetAliasResponse get;
  } r;
  if (desc == &brume__create_alias_response__descriptor) {
    brume__create_alias_response__init(&r.create);
    r.create.alias = &ac;
  } else if (desc == &brume__update_alias_response__descriptor) {
    brume__update_alias_response__init(&r.update);
    r.update.alias = &ac;
  } else {
    BRUME_ENSURE(desc == &brume__get_alias_response__descriptor);
    brume__get_alias_response__init(&r.get);
    r.get.alias = &ac;
  }
  brume_status s = mg_reply(call, &r.create.base);
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

/* Creates (create) or updates an alias: read, change, check, write, until a write wins. */
static brume_status put_alias(brume_manage *m, brume_rpc_call *call, const char *account,
                              const char *function_name, const char *alias, bool create,
                              const char *version, const char *description, bool clear_description,
                              const Brume__AliasRoutingConfig *routing, const char *revision_id) {
  brume_autoptr(brume_err) err = NULL;
  brume_function_name fn;
  if (mg_function(m, function_name, NULL, &fn, NULL, &err) < 0 ||
      brume_check_alias(alias, "name", &err) < 0)
    return mg_fail(call, err);
  if (create && (version == NULL || version[0] == '\0')) {
    brume_err_set(&err, BRUME_INVALID_ARGUMENT, INVALID "function_version is required");
    return mg_fail(call, err);
  }
  if (clear_description && description && description[0]) {
    brume_err_set(&err, BRUME_INVALID_ARGUMENT,
                  INVALID "description and clear_description cannot both be set");
    return mg_fail(call, err);
  }
  brume_autofree char *arn = mg_arn(m, account, fn.name, NULL);
  for (int attempt = 0; attempt < MG_CAS_ATTEMPTS; attempt++) {
    brume_autoptr(brume_fn_doc) doc = NULL;
    int64_t mod = 0;
    if (mg_load(m, account, fn.name, &doc, &mod, &err) < 0) return mg_fail(call, err);
    brume_fn_alias a = {0};
    if (create) {
      a.name = brume_xstrdup(alias);
      a.description = brume_xstrdup("");
    } else {
      const brume_fn_alias *old = brume_fn_doc_alias(doc, alias);
      if (old == NULL) {
        brume_err_set(&err, BRUME_NOT_FOUND, "ResourceNotFoundException: Alias not found: %s:%s",
                      arn, alias);
        return mg_fail(call, err);
      }
      if (revision_id && revision_id[0] && strcmp(revision_id, old->revision_id) != 0) {
        brume_err_set(&err, BRUME_ABORTED,
                      "PreconditionFailedException: revision_id %.40s is not alias %s's current "
                      "revision; read the alias again and retry",
                      revision_id, alias);
        return mg_fail(call, err);
      }
      brume_fn_alias_copy(&a, old);
    }
    int rc = 0;
    if (version && version[0]) rc = set_version(&a, version, &err);
    if (clear_description) brume_fn_set_string(&a.description, "");
    if (description && description[0]) brume_fn_set_string(&a.description, description);
    if (rc == 0) rc = set_routing(&a, routing, &err);
    const brume_fn_alias *stored =
        rc == 0 ? brume_fn_doc_put_alias(doc, &a, create, arn, &err) : NULL;
    brume_fn_alias_clear(&a);
    if (stored == NULL) return mg_fail(call, err);
    int64_t rev = 0;
    rc = mg_store(m, account, fn.name, doc, mod, NULL, 0, NULL, 0, &rev, &err);
    if (rc < 0) return mg_fail(call, err);
    if (rc == 0) continue;
    mg_wait(m, rev);
    return reply_alias(m, call, account, fn.name, stored,
                       create ? &brume__create_alias_response__descriptor
                              : &brume__update_alias_response__descriptor);
  }
  mg_too_busy(account, fn.name, &err);
  return mg_fail(call, err);
}

brume_status mg_create_alias(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *msg,
                             const char *account) {
  const Brume__CreateAliasRequest *req = (const Brume__CreateAliasRequest *)msg;
  return put_alias(m, call, account, req->function_name, req->name, true, req->function_version,
                   req->description, false, req->routing_config, NULL);
}

brume_status mg_update_alias(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *msg,
                             const char *account) {
  const Brume__UpdateAliasRequest *req = (const Brume__UpdateAliasRequest *)msg;
  return put_alias(m, call, account, req->function_name, req->name, false, req->function_version,
                   req->description, req->clear_description, req->routing_config, req->revision_id);
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
    Brume__DeleteAliasResponse resp = BRUME__DELETE_ALIAS_RESPONSE__INIT;
    return mg_reply(call, &resp.base);
  }
  mg_too_busy(account, fn.name, &err);
  return mg_fail(call, err);
}
