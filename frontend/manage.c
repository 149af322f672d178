/* The management calls: dispatch, and what their files share (manage.h, manage_impl.h). */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "manage_impl.h"
#include "reply.h"

/* ---- Replies ---- */

brume_status mg_fail(brume_rpc_call *call, const brume_err *err) {
  brume_status code = err->code;
  brume_frontend_fail(call, err);
  return code == BRUME_UNKNOWN ? BRUME_INTERNAL : code;
}

brume_status mg_reply(brume_rpc_call *call, const ProtobufCMessage *reply) {
  brume_rpc_call_reply(call, reply);
  return BRUME_OK;
}

brume_status mg_reply_with(brume_rpc_call *call, const ProtobufCMessageDescriptor *desc,
                           const void *field) {
  BRUME_ENSURE(desc->n_fields == 0
                   ? field == NULL
                   : desc->n_fields == 1 && desc->fields[0].type == PROTOBUF_C_TYPE_MESSAGE &&
                         desc->fields[0].label != PROTOBUF_C_LABEL_REPEATED);
  brume_autofree ProtobufCMessage *r = brume_xmalloc(desc->sizeof_message);
  protobuf_c_message_init(desc, r);
  if (field) memcpy((char *)r + desc->fields[0].offset, &field, sizeof(field));
  return mg_reply(call, r);
}

void *mg_keep(mg_pool *pool, void *p, void (*free_fn)(void *)) {
  if (pool->n == pool->cap) {
    pool->cap = pool->cap ? 2 * pool->cap : 16;
    pool->items = brume_xrealloc(pool->items, pool->cap * sizeof(*pool->items));
  }
  pool->items[pool->n++] = (struct mg_kept){p, free_fn ? free_fn : free};
  return p;
}

void mg_pool_free(mg_pool *pool) {
  for (size_t i = pool->n; i-- > 0;) pool->items[i].free_fn(pool->items[i].p);
  free(pool->items);
  memset(pool, 0, sizeof(*pool));
}

/* ---- Names and keys ---- */

int mg_function(const brume_manage *m, const char *function_name, const char *qualifier,
                brume_function_name *out, const char **qualifier_out, brume_err **err) {
  if (brume_function_name_parse(function_name, m->region, "function_name", out, err) < 0) return -1;
  const char *q = qualifier ? qualifier : "";
  if (out->qualifier[0]) {
    if (qualifier == NULL)
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           "InvalidParameterValueException: function_name must not be a "
                           "qualified ARN for this call");
    if (q[0] && strcmp(q, out->qualifier) != 0)
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           "InvalidParameterValueException: the qualifier of function_name's ARN "
                           "differs from the qualifier field");
    q = out->qualifier;
  }
  if (qualifier && brume_check_qualifier(q, "qualifier", err) < 0) return -1;
  if (qualifier_out) *qualifier_out = q;
  return 0;
}

char *mg_doc_key(const brume_manage *m, const char *account, const char *name) {
  return brume_xasprintf("%s/functions/%s/%s", m->prefix, account, name);
}

char *mg_limits_key(const brume_manage *m, const char *account, const char *name) {
  return brume_xasprintf("%s/limits/function/%s/%s", m->prefix, account, name);
}

char *mg_arn(const brume_manage *m, const char *account, const char *name, const char *qualifier) {
  return brume_function_arn(m->region, account, name, qualifier);
}

/* ---- Documents ---- */

int mg_load(brume_manage *m, const char *account, const char *name, brume_fn_doc **doc,
            int64_t *mod, brume_err **err) {
  *doc = NULL;
  *mod = 0;
  brume_autofree char *key = mg_doc_key(m, account, name);
  brume_autoptr(brume_etcd_kv) kv = NULL;
  if (brume_etcd_get(m->etcd, key, &kv, NULL, err) < 0)
    return brume_err_wrap(err, "ServiceUnavailableException: read function %s", name);
  if (kv == NULL) {
    brume_autofree char *arn = mg_arn(m, account, name, NULL);
    return brume_err_set(err, BRUME_NOT_FOUND, "ResourceNotFoundException: Function not found: %s",
                         arn);
  }
  brume_autoptr(brume_err) perr = NULL;
  *doc = brume_fn_doc_parse(kv->value, kv->value_len, &perr);
  if (*doc == NULL)
    return brume_err_set(err, BRUME_INTERNAL, "the document at %s is unusable: %s", key, perr->msg);
  *mod = kv->mod_revision;
  return 0;
}

int mg_store(brume_manage *m, const char *account, const char *name, const brume_fn_doc *doc,
             int64_t mod, const brume_etcd_cmp *cmps, size_t n_cmps, const brume_etcd_op *ops,
             size_t n_ops, int64_t *revision, brume_err **err) {
  brume_autofree char *key = mg_doc_key(m, account, name);
  brume_autofree char *json = doc ? brume_fn_doc_json(doc) : NULL;
  brume_autofree brume_etcd_cmp *c = brume_xcalloc(n_cmps + 1, sizeof(*c));
  brume_autofree brume_etcd_op *o = brume_xcalloc(n_ops + 1, sizeof(*o));
  c[0] = (brume_etcd_cmp){.key = key,
                          .target = mod ? BRUME_ETCD_MOD : BRUME_ETCD_CREATE,
                          .result = BRUME_ETCD_EQUAL,
                          .number = mod};
  if (n_cmps) memcpy(c + 1, cmps, n_cmps * sizeof(*c));
  o[0] = doc ? (brume_etcd_op){.type = BRUME_ETCD_OP_PUT,
                               .key = key,
                               .value = json,
                               .value_len = strlen(json)}
             : (brume_etcd_op){.type = BRUME_ETCD_OP_DELETE, .key = key};
  if (n_ops) memcpy(o + 1, ops, n_ops * sizeof(*o));
  brume_etcd_txn_req req = {
      .compare = c, .n_compare = n_cmps + 1, .success = o, .n_success = n_ops + 1};
  brume_autoptr(brume_etcd_txn_result) r = brume_etcd_txn(m->etcd, &req, err);
  if (r == NULL) return brume_err_wrap(err, "ServiceUnavailableException: write function %s", name);
  if (!r->succeeded) return 0;
  *revision = r->revision;
  return 1;
}

void mg_wait(brume_manage *m, int64_t revision) {
  brume_autoptr(brume_err) err = NULL;
  if (brume_catalog_wait(m->catalog, revision, MG_CATALOG_WAIT_MS, &err) < 0) {
    char q[512];
    brume_warn("The catalog did not apply a management write in time; answering anyway.",
               "revision=%lld err=%s", (long long)revision,
               brume_log_quote(q, sizeof(q), err->msg));
  }
}

int mg_too_busy(const char *account, const char *name, brume_err **err) {
  return brume_err_set(err, BRUME_ABORTED,
                       "PreconditionFailedException: function %s of account %s kept changing "
                       "under this request (%d attempts); read it again and retry",
                       name, account, MG_CAS_ATTEMPTS);
}

brume_fn_doc *mg_update_doc(brume_manage *m, const char *account, const char *name,
                            mg_change *change, void *ctx, brume_err **err) {
  for (int attempt = 0; attempt < MG_CAS_ATTEMPTS; attempt++) {
    brume_autoptr(brume_fn_doc) doc = NULL;
    int64_t mod = 0, rev = 0;
    if (mg_load(m, account, name, &doc, &mod, err) < 0) return NULL;
    int rc = change(doc, ctx, err);
    if (rc < 0) return NULL;
    if (rc == 0) return brume_steal(&doc);
    rc = mg_store(m, account, name, doc, mod, NULL, 0, NULL, 0, &rev, err);
    if (rc < 0) return NULL;
    if (rc == 0) continue;
    mg_wait(m, rev);
    return brume_steal(&doc);
  }
  mg_too_busy(account, name, err);
  return NULL;
}

/* ---- Replies from documents ---- */

static void env_proto_free(void *p) {
  Brume__Environment *env = p;
  for (size_t i = 0; i < env->n_variables; i++) {
    Brume__Environment__VariablesEntry *e = env->variables[i];
    free(e->key);
    if (e->value) OPENSSL_cleanse(e->value, strlen(e->value));
    free(e->value);
    free(e);
  }
  free(env->variables);
  free(env);
}

int mg_config_proto(brume_manage *m, const char *account, const char *name,
                    const brume_fn_config *cfg, Brume__FunctionConfiguration *out, mg_pool *pool,
                    brume_err **err) {
  brume__function_configuration__init(out);
  out->function_name = mg_keep(pool, brume_xstrdup(name), NULL);
  bool latest = strcmp(cfg->version, BRUME_LATEST) == 0;
  out->function_arn = mg_keep(pool, mg_arn(m, account, name, latest ? NULL : cfg->version), NULL);
  out->version = (char *)cfg->version;
  out->description = cfg->description;
  out->handler_mode = (Brume__HandlerMode)cfg->handler_mode;
  out->handler = cfg->handler;
  out->runtime = cfg->runtime;
  out->memory_size_mib = cfg->memory_mib;
  out->timeout_ms = cfg->timeout_ms;
  out->ephemeral_storage_mib = cfg->ephemeral_mib;
  out->code_sha256 = (char *)cfg->code_sha256;
  out->code_size_bytes = cfg->code_size;
  out->last_modified_unix_ms = cfg->last_modified_unix_ms;
  out->revision_id = (char *)cfg->revision_id;
  Brume__Environment *env = mg_keep(pool, brume_xcalloc(1, sizeof(*env)), env_proto_free);
  brume__environment__init(env);
  out->environment = env;
  if (cfg->env_sealed == NULL) return 0;
  if (!m->has_env_key)
    return brume_err_set(err, BRUME_INTERNAL, "version %s has an environment but no env key",
                         cfg->version);
  size_t len = 0;
  char *plain = brume_env_open(&m->env_key, cfg->env_sealed, &len, err);
  if (plain == NULL) return brume_err_set(err, BRUME_INTERNAL, "environment of %s", name);
  brume_fn_env_var *vars = NULL;
  size_t n = 0;
  int rc = brume_fn_env_parse(plain, len, &vars, &n, err);
  OPENSSL_cleanse(plain, len);
  free(plain);
  if (rc < 0) return brume_err_set(err, BRUME_INTERNAL, "environment of %s", name);
  env->variables = brume_xcalloc(n + 1, sizeof(*env->variables));
  for (size_t i = 0; i < n; i++) {
    Brume__Environment__VariablesEntry *e = brume_xcalloc(1, sizeof(*e));
    brume__environment__variables_entry__init(e);
    e->key = brume_steal(&vars[i].name);
    e->value = brume_steal(&vars[i].value);
    env->variables[env->n_variables++] = e;
  }
  brume_fn_env_free(vars, n);
  return 0;
}

void mg_alias_proto(brume_manage *m, const char *account, const char *name, const brume_fn_alias *a,
                    Brume__AliasConfiguration *out, mg_pool *pool) {
  brume__alias_configuration__init(out);
  out->alias_arn = mg_keep(pool, mg_arn(m, account, name, a->name), NULL);
  out->name = a->name;
  out->function_version = (char *)a->version;
  out->description = a->description;
  out->revision_id = (char *)a->revision_id;
  if (a->routing_version[0]) {
    Brume__AliasRoutingConfig *r = mg_keep(pool, brume_xcalloc(1, sizeof(*r)), NULL);
    brume__alias_routing_config__init(r);
    r->additional_version = (char *)a->routing_version;
    r->additional_version_weight = a->routing_weight;
    out->routing_config = r;
  }
}

int mg_seal_env(brume_manage *m, const Brume__Environment *env, char **sealed, brume_err **err) {
  *sealed = NULL;
  if (brume_fn_env_check(env, err) < 0) return -1;
  if (env == NULL || env->n_variables == 0) return 0;
  if (!m->has_env_key)
    return brume_err_set(err, BRUME_FAILED_PRECONDITION,
                         "ResourceConflictException: this frontend has no env key, so it cannot "
                         "store environment variables");
  char *json = brume_fn_env_to_json(env);
  *sealed = brume_env_seal(&m->env_key, json, strlen(json));
  OPENSSL_cleanse(json, strlen(json));
  free(json);
  return 0;
}

/* ---- Dispatch ---- */

static const struct {
  const char *method;
  mg_handler *fn;
} handlers[] = {
    {"CreateFunction", mg_create_function},
    {"UpdateFunctionCode", mg_update_function_code},
    {"UpdateFunctionConfiguration", mg_update_function_configuration},
    {"GetFunction", mg_get_function},
    {"ListFunctions", mg_list_functions},
    {"DeleteFunction", mg_delete_function},
    {"PublishVersion", mg_publish_version},
    {"CreateAlias", mg_create_alias},
    {"UpdateAlias", mg_update_alias},
    {"GetAlias", mg_get_alias},
    {"ListAliases", mg_list_aliases},
    {"DeleteAlias", mg_delete_alias},
    {"PutFunctionConcurrency", mg_put_function_concurrency},
    {"GetFunctionConcurrency", mg_get_function_concurrency},
    {"DeleteFunctionConcurrency", mg_delete_function_concurrency},
    {"PutProvisionedConcurrencyConfig", mg_put_provisioned},
    {"GetProvisionedConcurrencyConfig", mg_get_provisioned},
    {"DeleteProvisionedConcurrencyConfig", mg_delete_provisioned},
    {"PutFunctionEventInvokeConfig", mg_put_event_config},
    {"GetFunctionEventInvokeConfig", mg_get_event_config},
    {"DeleteFunctionEventInvokeConfig", mg_delete_event_config},
};

brume_manage *brume_manage_new(const brume_manage_opts *opts) {
  brume_manage *m = brume_xcalloc(1, sizeof(*m));
  m->etcd = opts->etcd;
  size_t plen = strlen(opts->prefix);
  while (plen > 0 && opts->prefix[plen - 1] == '/') plen--;
  m->prefix = brume_xstrndup(opts->prefix, plen);
  m->region = brume_xstrdup(opts->region ? opts->region : "local");
  m->catalog = opts->catalog;
  m->code = opts->code;
  if (opts->env_key) {
    m->env_key = *opts->env_key;
    m->has_env_key = true;
  }
  m->placement = opts->placement;
  m->caller_id = brume_xstrdup(opts->caller_id ? opts->caller_id : "frontend/-");
  return m;
}

void brume_manage_free(brume_manage *m) {
  if (m == NULL) return;
  free(m->prefix);
  free(m->region);
  free(m->caller_id);
  OPENSSL_cleanse(&m->env_key, sizeof(m->env_key));
  free(m);
}

brume_status brume_manage_serve(brume_manage *m, brume_rpc_call *call, unsigned method,
                                const ProtobufCMessage *req, const char *account_id,
                                const brume_principal *who) {
  (void)who;
  const char *name = method < brume__frontend__descriptor.n_methods
                         ? brume__frontend__descriptor.methods[method].name
                         : "";
  for (size_t i = 0; i < BRUME_ARRAY_LEN(handlers); i++)
    if (strcmp(handlers[i].method, name) == 0) {
      BRUME_ENSURE(req->descriptor == brume__frontend__descriptor.methods[method].input);
      return handlers[i].fn(m, call, req, account_id);
    }
  brume_frontend_failf(call, BRUME_UNIMPLEMENTED, "ServiceException: %s is not a management call",
                       name[0] ? name : "this method");
  return BRUME_UNIMPLEMENTED;
}
