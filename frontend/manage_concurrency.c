/* Reserved and provisioned concurrency: Put/Get/DeleteFunctionConcurrency and
 * Put/Get/DeleteProvisionedConcurrencyConfig. Both live in counting's limits key of the function,
 * <prefix>/limits/function/<account>/<name> = {"reserved_concurrency": N, "provisioned":
 * {"<qualifier>": N}, "provisioned_modified_unix_ms": {"<qualifier>": T}} (counting/limits_store.h;
 * counting reads no times); each call keeps the other's fields as they are.
 * A change that the account's rules constrain (counting/concurrency.h: at least 100 unreserved
 * and unprovisioned) is committed by a txn guarded by the mod revision of every function's limits
 * key in the account and of the account's own key, read at once, so that two concurrent changes
 * cannot together break the rule. */
#include <stdio.h>
#include <string.h>

#include "brume/placement.pb-c.h"
#include "clock.h"
#include "concurrency.h"
#include "log.h"
#include "manage_impl.h"
#include "reply.h"

#define INVALID "InvalidParameterValueException: "
#define CONFLICT "ResourceConflictException: "
/* Placement's limit on one version's provisioned sandboxes. */
#define PROVISIONED_MAX 10000
/* When each qualifier's provisioned concurrency was last put (its LastModified). */
#define PROVISIONED_MODIFIED "provisioned_modified_unix_ms"
/* Placement's method indices (placement.proto's service order). */
#define PLACEMENT_LIST_SANDBOXES 3
#define PLACEMENT_PUT_PROVISIONED 4

/* ---- The limits key ---- */

int mg_limits_load(brume_manage *m, const char *account, const char *name, json_t **value,
                   int64_t *mod, brume_err **err) {
  *value = NULL;
  *mod = 0;
  brume_autofree char *key = mg_limits_key(m, account, name);
  brume_autoptr(brume_etcd_kv) kv = NULL;
  if (brume_etcd_get(m->etcd, key, &kv, NULL, err) < 0)
    return brume_err_wrap(err, "ServiceUnavailableException: read the limits of %s", name);
  json_t *v = kv ? json_loadb(kv->value, kv->value_len, 0, NULL) : NULL;
  if (v && !json_is_object(v)) {
    json_decref(v);
    v = NULL;
  }
  *value = v ? v : json_object();
  *mod = kv ? kv->mod_revision : 0;
  return 0;
}

brume_etcd_op mg_limits_op(const char *key, json_t *value, char **text) {
  const char *maps[] = {"provisioned", PROVISIONED_MODIFIED};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(maps); i++) {
    json_t *p = json_object_get(value, maps[i]);
    if (p && json_object_size(p) == 0) json_object_del(value, maps[i]);
  }
  if (json_object_size(value) == 0) {
    *text = NULL;
    return (brume_etcd_op){.type = BRUME_ETCD_OP_DELETE, .key = key};
  }
  *text = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS);
  BRUME_ENSURE(*text != NULL);
  return (brume_etcd_op){
      .type = BRUME_ETCD_OP_PUT, .key = key, .value = *text, .value_len = strlen(*text)};
}

bool mg_limits_drop_provisioned(json_t *value, const char *qualifier) {
  json_t *modified = json_object_get(value, PROVISIONED_MODIFIED);
  if (json_is_object(modified)) json_object_del(modified, qualifier);
  json_t *p = json_object_get(value, "provisioned");
  return json_is_object(p) && json_object_del(p, qualifier) == 0;
}

/* When qualifier's provisioned concurrency was last put (0 for a config written before this was
 * kept). */
static int64_t provisioned_modified(json_t *value, const char *qualifier) {
  json_t *ms = json_object_get(json_object_get(value, PROVISIONED_MODIFIED), qualifier);
  return json_is_integer(ms) ? (int64_t)json_integer_value(ms) : 0;
}

/* A count field as counting reads it: a non-negative integer that fits. */
static bool get_count(json_t *o, const char *field, uint32_t *out) {
  json_t *v = json_object_get(o, field);
  if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
    return false;
  *out = (uint32_t)json_integer_value(v);
  return true;
}

static brume_function_limits function_limits(json_t *value) {
  brume_function_limits f = {0};
  f.reserved = get_count(value, "reserved_concurrency", &f.reserved_concurrency);
  json_t *p = json_object_get(value, "provisioned");
  const char *q;
  json_t *n;
  uint64_t sum = 0;
  json_object_foreach(p, q, n) {
    uint32_t c;
    if (get_count(p, q, &c)) sum += c;
  }
  f.provisioned = sum > INT32_MAX ? INT32_MAX : (uint32_t)sum;
  return f;
}

/* What the account's rules need, read so that a txn can be guarded by it. */
typedef struct account_view {
  brume_account_limits account;
  brume_function_limits function; /* the function's own */
  json_t *value;                  /* the function's limits value (an empty object when none) */
  int64_t functions_revision;     /* the read of every function's limits key */
  int64_t account_revision;       /* the read of the account's key */
  char *functions_prefix;
  char *account_key;
} account_view;

static void account_view_clear(account_view *v) {
  json_decref(v->value);
  free(v->functions_prefix);
  free(v->account_key);
  memset(v, 0, sizeof(*v));
}

static int account_view_load(brume_manage *m, const char *account, const char *name,
                             account_view *v, brume_err **err) {
  memset(v, 0, sizeof(*v));
  v->functions_prefix = brume_xasprintf("%s/limits/function/%s/", m->prefix, account);
  v->account_key = brume_xasprintf("%s/limits/account/%s", m->prefix, account);
  brume_autoptr(brume_etcd_range) r = brume_etcd_get_prefix(m->etcd, v->functions_prefix, err);
  if (r == NULL) return brume_err_wrap(err, "ServiceUnavailableException: read account limits");
  v->functions_revision = r->revision;
  uint64_t reserved = 0, unreserved_prov = 0, prov = 0;
  size_t plen = strlen(v->functions_prefix);
  for (size_t i = 0; i < r->n; i++) {
    json_t *o = json_loadb(r->kvs[i].value, r->kvs[i].value_len, 0, NULL);
    if (!json_is_object(o)) {
      json_decref(o);
      o = json_object();
    }
    brume_function_limits f = function_limits(o);
    if (f.reserved)
      reserved += f.reserved_concurrency;
    else
      unreserved_prov += f.provisioned;
    prov += f.provisioned;
    if (strcmp(r->kvs[i].key + plen, name) == 0) {
      v->function = f;
      v->value = json_incref(o);
    }
    json_decref(o);
  }
  if (v->value == NULL) v->value = json_object();
  v->account.reserved_total = reserved > UINT32_MAX ? UINT32_MAX : (uint32_t)reserved;
  v->account.unreserved_provisioned =
      unreserved_prov > UINT32_MAX ? UINT32_MAX : (uint32_t)unreserved_prov;
  v->account.provisioned_total = prov > UINT32_MAX ? UINT32_MAX : (uint32_t)prov;
  v->account.limit = BRUME_ACCOUNT_CONCURRENCY_DEFAULT;
  brume_autoptr(brume_etcd_kv) kv = NULL;
  if (brume_etcd_get(m->etcd, v->account_key, &kv, &v->account_revision, err) < 0)
    return brume_err_wrap(err, "ServiceUnavailableException: read account limits");
  if (kv) {
    brume_autoptr(json_t) o = json_loadb(kv->value, kv->value_len, 0, NULL);
    uint32_t limit;
    if (get_count(o, "concurrency_limit", &limit)) v->account.limit = limit;
  }
  return 0;
}

/* Writes the function's limits value, guarded by the view's reads and the document's mod
 * revision (the function must still exist). 1 written, 0 lost a race, -1 error. */
static int account_view_commit(brume_manage *m, const char *account, const char *name,
                               account_view *v, int64_t doc_mod, int64_t *revision,
                               brume_err **err) {
  brume_autofree char *lkey = mg_limits_key(m, account, name);
  brume_autofree char *dkey = mg_doc_key(m, account, name);
  brume_autofree char *text = NULL;
  brume_etcd_cmp cmps[] = {
      {.key = v->functions_prefix,
       .prefix = true,
       .target = BRUME_ETCD_MOD,
       .result = BRUME_ETCD_LESS,
       .number = v->functions_revision + 1},
      {.key = v->account_key,
       .target = BRUME_ETCD_MOD,
       .result = BRUME_ETCD_LESS,
       .number = v->account_revision + 1},
      {.key = dkey, .target = BRUME_ETCD_MOD, .result = BRUME_ETCD_EQUAL, .number = doc_mod},
  };
  brume_etcd_op op = mg_limits_op(lkey, v->value, &text);
  brume_etcd_txn_req req = {
      .compare = cmps, .n_compare = BRUME_ARRAY_LEN(cmps), .success = &op, .n_success = 1};
  brume_autoptr(brume_etcd_txn_result) r = brume_etcd_txn(m->etcd, &req, err);
  if (r == NULL)
    return brume_err_wrap(err, "ServiceUnavailableException: write the limits of %s", name);
  if (!r->succeeded) return 0;
  *revision = r->revision;
  return 1;
}

/* counting's rule checks answer INVALID_ARGUMENT; for the API they are a conflict with the
 * account's state. */
static int as_conflict(brume_err **err) {
  if (err && *err) {
    (*err)->code = BRUME_FAILED_PRECONDITION;
    char *msg = brume_xasprintf(CONFLICT "%s", (*err)->msg);
    free((*err)->msg);
    (*err)->msg = msg;
  }
  return -1;
}

/* ---- Reserved concurrency ---- */

/* Sets (set) or removes the function's reserved concurrency under the account's rules. */
static brume_status change_reserved(brume_manage *m, brume_rpc_call *call, const char *account,
                                    const char *function_name, bool set, uint32_t n) {
  brume_autoptr(brume_err) err = NULL;
  brume_function_name fn;
  if (mg_function(m, function_name, NULL, &fn, NULL, &err) < 0) return mg_fail(call, err);
  if (set && n > INT32_MAX) {
    brume_err_set(&err, BRUME_INVALID_ARGUMENT,
                  INVALID "reserved_concurrent_executions %u is out of range", n);
    return mg_fail(call, err);
  }
  for (int attempt = 0; attempt < MG_CAS_ATTEMPTS; attempt++) {
    brume_autoptr(brume_fn_doc) doc = NULL;
    int64_t mod = 0;
    if (mg_load(m, account, fn.name, &doc, &mod, &err) < 0) return mg_fail(call, err);
    account_view v;
    if (account_view_load(m, account, fn.name, &v, &err) < 0) {
      account_view_clear(&v);
      return mg_fail(call, err);
    }
    int rc;
    if (set) {
      rc = brume_concurrency_check_reserved(&v.account, fn.name, &v.function, n, &err);
      json_object_set_new(v.value, "reserved_concurrency", json_integer(n));
    } else {
      /* Without reserved concurrency, its provisioned concurrency moves to the unreserved
       * pool, which must keep its 100. */
      brume_account_limits a = v.account;
      brume_function_limits f = {.reserved = false, .provisioned = v.function.provisioned};
      if (v.function.reserved) {
        a.reserved_total -= v.function.reserved_concurrency;
        a.unreserved_provisioned += v.function.provisioned;
      }
      rc = brume_concurrency_check_provisioned(&a, fn.name, &f, f.provisioned, &err);
      json_object_del(v.value, "reserved_concurrency");
    }
    if (rc < 0) {
      account_view_clear(&v);
      as_conflict(&err);
      return mg_fail(call, err);
    }
    int64_t rev = 0;
    rc = account_view_commit(m, account, fn.name, &v, mod, &rev, &err);
    account_view_clear(&v);
    if (rc < 0) return mg_fail(call, err);
    if (rc == 0) continue;
    if (!set)
      return mg_reply_with(call, &brume__delete_function_concurrency_response__descriptor, NULL);
    Brume__FunctionConcurrency c = BRUME__FUNCTION_CONCURRENCY__INIT;
    c.reserved_concurrent_executions = n;
    return mg_reply_with(call, &brume__put_function_concurrency_response__descriptor, &c);
  }
  mg_too_busy(account, fn.name, &err);
  return mg_fail(call, err);
}

brume_status mg_put_function_concurrency(brume_manage *m, brume_rpc_call *call,
                                         const ProtobufCMessage *msg, const char *account) {
  const Brume__PutFunctionConcurrencyRequest *req =
      (const Brume__PutFunctionConcurrencyRequest *)msg;
  return change_reserved(m, call, account, req->function_name, true,
                         req->reserved_concurrent_executions);
}

brume_status mg_delete_function_concurrency(brume_manage *m, brume_rpc_call *call,
                                            const ProtobufCMessage *msg, const char *account) {
  const Brume__DeleteFunctionConcurrencyRequest *req =
      (const Brume__DeleteFunctionConcurrencyRequest *)msg;
  return change_reserved(m, call, account, req->function_name, false, 0);
}

brume_status mg_get_function_concurrency(brume_manage *m, brume_rpc_call *call,
                                         const ProtobufCMessage *msg, const char *account) {
  const Brume__GetFunctionConcurrencyRequest *req =
      (const Brume__GetFunctionConcurrencyRequest *)msg;
  brume_autoptr(brume_err) err = NULL;
  brume_function_name fn;
  if (mg_function(m, req->function_name, NULL, &fn, NULL, &err) < 0) return mg_fail(call, err);
  brume_autoptr(brume_fn_doc) doc = NULL;
  int64_t mod = 0, lmod = 0;
  brume_autoptr(json_t) limits = NULL;
  if (mg_load(m, account, fn.name, &doc, &mod, &err) < 0 ||
      mg_limits_load(m, account, fn.name, &limits, &lmod, &err) < 0)
    return mg_fail(call, err);
  Brume__FunctionConcurrency c = BRUME__FUNCTION_CONCURRENCY__INIT;
  bool reserved = get_count(limits, "reserved_concurrency", &c.reserved_concurrent_executions);
  return mg_reply_with(call, &brume__get_function_concurrency_response__descriptor,
                       reserved ? &c : NULL);
}

/* ---- Provisioned concurrency ---- */

/* The published version a provisioned qualifier stands for in doc: a version number, or an
 * alias's version (its own, not its routing's). NOT_FOUND for none; INVALID_ARGUMENT for $LATEST
 * or an alias to it. */
static const brume_fn_config *provisioned_version(brume_manage *m, const char *account,
                                                  const char *name, const brume_fn_doc *doc,
                                                  const char *qualifier, brume_err **err) {
  if (qualifier[0] == '\0' || strcmp(qualifier, BRUME_LATEST) == 0) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT,
                  INVALID "qualifier must be a published version or an alias, not $LATEST");
    return NULL;
  }
  brume_autofree char *arn = mg_arn(m, account, name, NULL);
  const brume_fn_config *c = brume_fn_doc_resolve(doc, qualifier, 1.0, arn, err);
  if (c && strcmp(c->version, BRUME_LATEST) == 0) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT,
                  INVALID "alias %s points to $LATEST, which cannot have provisioned concurrency",
                  qualifier);
    return NULL;
  }
  return c;
}

void mg_prov_sync_free(mg_prov_sync *s) {
  for (size_t i = 0; i < s->n; i++) brume_fn_target_unref(s->targets[i]);
  free(s->targets);
  memset(s, 0, sizeof(*s));
}

void mg_prov_collect(brume_manage *m, const char *account, const char *name,
                     const brume_fn_doc *doc, json_t *provisioned, mg_prov_sync *out) {
  memset(out, 0, sizeof(*out));
  if (!json_is_object(provisioned) || json_object_size(provisioned) == 0) return;
  out->targets = brume_xcalloc(json_object_size(provisioned), sizeof(*out->targets));
  const char *q;
  json_t *n;
  json_object_foreach(provisioned, q, n) {
    const brume_fn_config *c = provisioned_version(m, account, name, doc, q, NULL);
    if (c == NULL) continue;
    bool seen = false;
    for (size_t i = 0; i < out->n && !seen; i++)
      seen = strcmp(brume_fn_target_spec(out->targets[i])->function->version, c->version) == 0;
    const brume_fn_target *t = NULL;
    if (!seen && brume_catalog_resolve(m->catalog, account, name, c->version, 1.0, &t, NULL) == 0)
      out->targets[out->n++] = t;
  }
}

/* The provisioned count of version: the sum over the qualifiers of limits that resolve to it. */
static uint32_t version_count(brume_manage *m, const char *account, const char *name,
                              const brume_fn_doc *doc, json_t *limits, const char *version) {
  if (doc == NULL) return 0;
  json_t *p = json_object_get(limits, "provisioned");
  const char *q;
  json_t *n;
  uint64_t sum = 0;
  json_object_foreach(p, q, n) {
    const brume_fn_config *c = provisioned_version(m, account, name, doc, q, NULL);
    uint32_t v;
    if (c && strcmp(c->version, version) == 0 && get_count(p, q, &v)) sum += v;
  }
  return sum > PROVISIONED_MAX ? PROVISIONED_MAX : (uint32_t)sum;
}

int mg_prov_push(brume_manage *m, const char *account, const char *name, const brume_fn_doc *after,
                 json_t *after_limits, mg_prov_sync *s, brume_err **err) {
  int rc = 0;
  for (size_t i = 0; i < s->n; i++) {
    const Brume__SandboxSpec *spec = brume_fn_target_spec(s->targets[i]);
    Brume__PutProvisionedConcurrencyRequest req = BRUME__PUT_PROVISIONED_CONCURRENCY_REQUEST__INIT;
    req.spec = (Brume__SandboxSpec *)spec;
    req.count = version_count(m, account, name, after, after_limits, spec->function->version);
    brume_autoptr(brume_err) e = NULL;
    brume_autoptr(ProtobufCMessage) reply = NULL;
    if (m->placement == NULL) {
      brume_err_set(&e, BRUME_UNAVAILABLE,
                    "ServiceUnavailableException: this frontend has no placement client");
    } else if (brume_rpc_unary(m->placement, &brume__placement__descriptor,
                               PLACEMENT_PUT_PROVISIONED, &req.base, &reply, NULL, &e) == 0) {
      continue;
    }
    char q[512];
    brume_warn("Placement did not take a provisioned concurrency change.",
               "account=%s function=%s version=%s count=%u err=%s", account, name,
               spec->function->version, req.count, brume_log_quote(q, sizeof(q), e->msg));
    if (rc == 0 && err && *err == NULL) {
      *err = brume_steal(&e);
      if (!brume_has_reason((*err)->msg))
        brume_err_wrap(err, "ServiceUnavailableException: placement");
    }
    rc = -1;
  }
  return rc;
}

/* Fills a config reply: allocated and available from placement's sandboxes of the version. */
static int provisioned_config(brume_manage *m, const char *account, const char *name,
                              const char *qualifier, const char *version, uint32_t requested,
                              Brume__ProvisionedConcurrencyConfig *out, brume_err **err) {
  brume__provisioned_concurrency_config__init(out);
  out->function_name = (char *)name;
  out->qualifier = (char *)qualifier;
  out->requested_provisioned_concurrent_executions = requested;
  if (m->placement == NULL)
    return brume_err_set(err, BRUME_UNAVAILABLE,
                         "ServiceUnavailableException: this frontend has no placement client");
  Brume__ListSandboxesRequest req = BRUME__LIST_SANDBOXES_REQUEST__INIT;
  req.account_id = (char *)account;
  req.function_name = (char *)name;
  req.version = (char *)version;
  brume_autoptr(ProtobufCMessage) reply = NULL;
  if (brume_rpc_unary(m->placement, &brume__placement__descriptor, PLACEMENT_LIST_SANDBOXES,
                      &req.base, &reply, NULL, err) < 0) {
    if (err && *err && !brume_has_reason((*err)->msg))
      brume_err_wrap(err, "ServiceUnavailableException: placement");
    return -1;
  }
  const Brume__ListSandboxesResponse *r = (const Brume__ListSandboxesResponse *)reply;
  uint32_t allocated = 0, available = 0;
  for (size_t i = 0; i < r->n_sandboxes; i++) {
    const Brume__SandboxInfo *sb = r->sandboxes[i];
    if (sb->function == NULL || strcmp(sb->function->version, version) != 0) continue;
    if (sb->state == BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE) available++;
    if (sb->state == BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE ||
        sb->state == BRUME__SANDBOX_STATE__SANDBOX_STATE_INVOKING)
      allocated++;
  }
  out->allocated_provisioned_concurrent_executions = allocated < requested ? allocated : requested;
  out->available_provisioned_concurrent_executions = available < requested ? available : requested;
  out->status =
      allocated >= requested
          ? BRUME__PROVISIONED_CONCURRENCY_STATUS__PROVISIONED_CONCURRENCY_STATUS_READY
          : BRUME__PROVISIONED_CONCURRENCY_STATUS__PROVISIONED_CONCURRENCY_STATUS_IN_PROGRESS;
  return 0;
}

/* What a provisioned concurrency call is about. */
typedef struct prov_target {
  brume_function_name fn;
  const char *qualifier; /* the request's, or its ARN's */
  brume_fn_doc *doc;
  int64_t mod;                    /* doc's */
  const brume_fn_config *version; /* what qualifier resolves to in doc */
  json_t *limits;                 /* provisioned_config_load: the function's limits value */
  int64_t lmod;                   /* and their mod revision */
  json_t *count;                  /* and qualifier's entry in their "provisioned" map */
} prov_target;

static void prov_target_clear(prov_target *t) {
  brume_fn_doc_free(t->doc);
  json_decref(t->limits);
  memset(t, 0, sizeof(*t));
}
#define prov_target_auto __attribute__((cleanup(prov_target_clear)))

/* Checks function_name and qualifier, loads the document and resolves the qualifier. */
static int provisioned_target(brume_manage *m, const char *account, const char *function_name,
                              const char *qualifier_field, prov_target *t, brume_err **err) {
  if (mg_function(m, function_name, qualifier_field ? qualifier_field : "", &t->fn, &t->qualifier,
                  err) < 0)
    return -1;
  if (t->qualifier[0] == '\0')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, INVALID "qualifier is required");
  if (mg_load(m, account, t->fn.name, &t->doc, &t->mod, err) < 0) return -1;
  t->version = provisioned_version(m, account, t->fn.name, t->doc, t->qualifier, err);
  return t->version ? 0 : -1;
}

/* NOT_FOUND: the target's qualifier has no provisioned concurrency config. */
static int no_config(brume_manage *m, const char *account, const prov_target *t, brume_err **err) {
  brume_autofree char *arn = mg_arn(m, account, t->fn.name, t->qualifier);
  return brume_err_set(err, BRUME_NOT_FOUND,
                       "ResourceNotFoundException: No provisioned concurrency config for %s", arn);
}

/* provisioned_target, then the function's limits and the qualifier's entry in them: no_config()
 * when there is none. */
static int provisioned_config_load(brume_manage *m, const char *account, const char *function_name,
                                   const char *qualifier_field, prov_target *t, brume_err **err) {
  if (provisioned_target(m, account, function_name, qualifier_field, t, err) < 0 ||
      mg_limits_load(m, account, t->fn.name, &t->limits, &t->lmod, err) < 0)
    return -1;
  t->count = json_object_get(json_object_get(t->limits, "provisioned"), t->qualifier);
  return t->count ? 0 : no_config(m, account, t, err);
}

brume_status mg_put_provisioned(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *msg,
                                const char *account) {
  const Brume__PutProvisionedConcurrencyConfigRequest *req =
      (const Brume__PutProvisionedConcurrencyConfigRequest *)msg;
  brume_autoptr(brume_err) err = NULL;
  uint32_t n = req->provisioned_concurrent_executions;
  if (n < 1 || n > PROVISIONED_MAX) {
    brume_err_set(&err, BRUME_INVALID_ARGUMENT,
                  INVALID "provisioned_concurrent_executions %u is out of range 1-%d", n,
                  PROVISIONED_MAX);
    return mg_fail(call, err);
  }
  if (m->placement == NULL) {
    brume_err_set(&err, BRUME_UNAVAILABLE,
                  "ServiceUnavailableException: this frontend has no placement client");
    return mg_fail(call, err);
  }
  for (int attempt = 0; attempt < MG_CAS_ATTEMPTS; attempt++) {
    prov_target_auto prov_target t = {0};
    if (provisioned_target(m, account, req->function_name, req->qualifier, &t, &err) < 0)
      return mg_fail(call, err);
    const char *name = t.fn.name;
    account_view v;
    if (account_view_load(m, account, name, &v, &err) < 0) {
      account_view_clear(&v);
      return mg_fail(call, err);
    }
    uint32_t old = 0;
    json_t *p = json_object_get(v.value, "provisioned");
    if (!json_is_object(p)) {
      p = json_object();
      json_object_set_new(v.value, "provisioned", p);
    }
    get_count(p, t.qualifier, &old);
    uint64_t total = (uint64_t)v.function.provisioned - old + n;
    int rc = total > INT32_MAX ? brume_err_set(&err, BRUME_INVALID_ARGUMENT,
                                               INVALID "too much provisioned concurrency")
                               : brume_concurrency_check_provisioned(&v.account, name, &v.function,
                                                                     (uint32_t)total, &err);
    if (rc < 0) {
      account_view_clear(&v);
      if (err->code == BRUME_INVALID_ARGUMENT && total <= INT32_MAX) as_conflict(&err);
      return mg_fail(call, err);
    }
    json_object_set_new(p, t.qualifier, json_integer(n));
    int64_t now_ms = brume_wall_ms();
    json_t *modified = json_object_get(v.value, PROVISIONED_MODIFIED);
    if (!json_is_object(modified)) {
      modified = json_object();
      json_object_set_new(v.value, PROVISIONED_MODIFIED, modified);
    }
    json_object_set_new(modified, t.qualifier, json_integer(now_ms));
    /* The catalog must hold the version's spec for placement: a document written through
     * another frontend may not have reached it yet. */
    mg_wait(m, t.mod);
    mg_prov_sync sync = {0};
    mg_prov_collect(m, account, name, t.doc, json_object_get(v.value, "provisioned"), &sync);
    int64_t rev = 0;
    rc = account_view_commit(m, account, name, &v, t.mod, &rev, &err);
    if (rc <= 0) {
      account_view_clear(&v);
      mg_prov_sync_free(&sync);
    }
    if (rc < 0) return mg_fail(call, err);
    if (rc == 0) continue;
    /* Only the version of this qualifier changes; the others are sent their counts again,
     * which placement takes as no change. */
    rc = mg_prov_push(m, account, name, t.doc, v.value, &sync, &err);
    account_view_clear(&v);
    mg_prov_sync_free(&sync);
    if (rc < 0) return mg_fail(call, err);
    Brume__ProvisionedConcurrencyConfig cfg;
    brume__provisioned_concurrency_config__init(&cfg);
    cfg.function_name = t.fn.name;
    cfg.qualifier = (char *)t.qualifier;
    cfg.requested_provisioned_concurrent_executions = n;
    cfg.status = BRUME__PROVISIONED_CONCURRENCY_STATUS__PROVISIONED_CONCURRENCY_STATUS_IN_PROGRESS;
    cfg.last_modified_unix_ms = now_ms;
    return mg_reply_with(call, &brume__put_provisioned_concurrency_config_response__descriptor,
                         &cfg);
  }
  mg_too_busy(account, req->function_name, &err);
  return mg_fail(call, err);
}

brume_status mg_get_provisioned(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *msg,
                                const char *account) {
  const Brume__GetProvisionedConcurrencyConfigRequest *req =
      (const Brume__GetProvisionedConcurrencyConfigRequest *)msg;
  brume_autoptr(brume_err) err = NULL;
  prov_target_auto prov_target t = {0};
  if (provisioned_config_load(m, account, req->function_name, req->qualifier, &t, &err) < 0)
    return mg_fail(call, err);
  uint32_t n;
  if (!get_count(json_object_get(t.limits, "provisioned"), t.qualifier, &n)) {
    no_config(m, account, &t, &err);
    return mg_fail(call, err);
  }
  Brume__ProvisionedConcurrencyConfig cfg;
  if (provisioned_config(m, account, t.fn.name, t.qualifier, t.version->version, n, &cfg, &err) < 0)
    return mg_fail(call, err);
  cfg.last_modified_unix_ms = provisioned_modified(t.limits, t.qualifier);
  return mg_reply_with(call, &brume__get_provisioned_concurrency_config_response__descriptor, &cfg);
}

brume_status mg_delete_provisioned(brume_manage *m, brume_rpc_call *call,
                                   const ProtobufCMessage *msg, const char *account) {
  const Brume__DeleteProvisionedConcurrencyConfigRequest *req =
      (const Brume__DeleteProvisionedConcurrencyConfigRequest *)msg;
  brume_autoptr(brume_err) err = NULL;
  for (int attempt = 0; attempt < MG_CAS_ATTEMPTS; attempt++) {
    prov_target_auto prov_target t = {0};
    if (provisioned_config_load(m, account, req->function_name, req->qualifier, &t, &err) < 0)
      return mg_fail(call, err);
    const char *name = t.fn.name;
    brume_autoptr(json_t) dropped = json_pack("{s:O}", t.qualifier, t.count);
    mg_prov_sync sync = {0};
    mg_prov_collect(m, account, name, t.doc, dropped, &sync);
    mg_limits_drop_provisioned(t.limits, t.qualifier);
    brume_autofree char *lkey = mg_limits_key(m, account, name);
    brume_autofree char *dkey = mg_doc_key(m, account, name);
    brume_autofree char *text = NULL;
    brume_etcd_cmp cmps[] = {
        {.key = lkey, .target = BRUME_ETCD_MOD, .result = BRUME_ETCD_EQUAL, .number = t.lmod},
        {.key = dkey, .target = BRUME_ETCD_MOD, .result = BRUME_ETCD_EQUAL, .number = t.mod},
    };
    brume_etcd_op op = mg_limits_op(lkey, t.limits, &text);
    brume_etcd_txn_req treq = {
        .compare = cmps, .n_compare = BRUME_ARRAY_LEN(cmps), .success = &op, .n_success = 1};
    brume_autoptr(brume_etcd_txn_result) r = brume_etcd_txn(m->etcd, &treq, &err);
    if (r == NULL || !r->succeeded) mg_prov_sync_free(&sync);
    if (r == NULL) {
      brume_err_wrap(&err, "ServiceUnavailableException: write the limits of %s", name);
      return mg_fail(call, err);
    }
    if (!r->succeeded) continue;
    int rc = mg_prov_push(m, account, name, t.doc, t.limits, &sync, &err);
    mg_prov_sync_free(&sync);
    if (rc < 0) return mg_fail(call, err);
    return mg_reply_with(call, &brume__delete_provisioned_concurrency_config_response__descriptor,
                         NULL);
  }
  mg_too_busy(account, req->function_name, &err);
  return mg_fail(call, err);
}
