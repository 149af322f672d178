/* The function and version calls: CreateFunction, UpdateFunctionCode,
 * UpdateFunctionConfiguration, GetFunction, ListFunctions, DeleteFunction, PublishVersion. */
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "manage_impl.h"

#define INVALID "InvalidParameterValueException: "

/* Replies with cfg as the configuration of desc, a response that has no other field. */
static brume_status reply_config(brume_manage *m, brume_rpc_call *call, const char *account,
                                 const char *name, const brume_fn_config *cfg,
                                 const ProtobufCMessageDescriptor *desc) {
  mg_pool pool = {0};
  Brume__FunctionConfiguration fc;
  brume_autoptr(brume_err) err = NULL;
  brume_status s = mg_config_proto(m, account, name, cfg, &fc, &pool, &err) < 0
                       ? mg_fail(call, err)
                       : mg_reply_with(call, desc, &fc);
  mg_pool_free(&pool);
  return s;
}

/* Stores zip in the code store: fills sha256 and *size. */
static int put_code(brume_manage *m, const ProtobufCBinaryData *zip, char sha256[65],
                    uint64_t *size, brume_err **err) {
  if (zip->len == 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, INVALID "zip_file is required");
  if (brume_code_store_put(m->code, zip->data, zip->len, sha256, err) < 0) return -1;
  *size = zip->len;
  return 0;
}

brume_status mg_create_function(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *msg,
                                const char *account) {
  const Brume__CreateFunctionRequest *req = (const Brume__CreateFunctionRequest *)msg;
  brume_autoptr(brume_err) err = NULL;
  brume_function_name fn;
  if (mg_function(m, req->function_name, NULL, &fn, NULL, &err) < 0) return mg_fail(call, err);

  /* Everything is checked before anything is written. */
  brume_fn_config cfg;
  brume_fn_config_init(&cfg);
  brume_fn_set_string(&cfg.description, req->description);
  if (req->handler_mode != BRUME__HANDLER_MODE__HANDLER_MODE_UNSPECIFIED)
    cfg.handler_mode = req->handler_mode;
  brume_fn_set_string(&cfg.handler, req->handler);
  if (req->runtime && req->runtime[0]) brume_fn_set_string(&cfg.runtime, req->runtime);
  if (req->memory_size_mib) cfg.memory_mib = req->memory_size_mib;
  if (req->timeout_ms) cfg.timeout_ms = req->timeout_ms;
  if (req->ephemeral_storage_mib) cfg.ephemeral_mib = req->ephemeral_storage_mib;
  if (brume_fn_config_check(&cfg, &err) < 0 ||
      mg_seal_env(m, req->environment, &cfg.env_sealed, &err) < 0) {
    brume_fn_config_clear(&cfg);
    return mg_fail(call, err);
  }
  if (req->zip_file.len == 0) {
    brume_fn_config_clear(&cfg);
    brume_err_set(&err, BRUME_INVALID_ARGUMENT, INVALID "zip_file is required");
    return mg_fail(call, err);
  }
  /* A function that exists is refused before its code is stored for nothing; the txn below
   * still decides a race. */
  brume_autofree char *key = mg_doc_key(m, account, fn.name);
  brume_autoptr(brume_etcd_kv) kv = NULL;
  int rc = brume_etcd_get(m->etcd, key, &kv, NULL, &err);
  if (rc == 0 && kv == NULL)
    rc = put_code(m, &req->zip_file, cfg.code_sha256, &cfg.code_size, &err);
  if (rc < 0 || kv) {
    brume_fn_config_clear(&cfg);
    if (kv)
      brume_err_set(&err, BRUME_ALREADY_EXISTS,
                    "ResourceConflictException: Function already exist: %s", fn.name);
    return mg_fail(call, err);
  }
  int64_t now = brume_wall_ms();
  brume_autoptr(brume_fn_doc) doc = brume_fn_doc_new(&cfg, now);
  bool created = false;
  const brume_fn_config *published = NULL;
  if (req->publish && (published = brume_fn_doc_publish(doc, NULL, now, &created, &err)) == NULL)
    return mg_fail(call, err);
  int64_t rev = 0;
  rc = mg_store(m, account, fn.name, doc, 0, NULL, 0, NULL, 0, &rev, &err);
  if (rc < 0) return mg_fail(call, err);
  if (rc == 0) {
    brume_err_set(&err, BRUME_ALREADY_EXISTS,
                  "ResourceConflictException: Function already exist: %s", fn.name);
    return mg_fail(call, err);
  }
  mg_wait(m, rev);
  return reply_config(m, call, account, fn.name, published ? published : &doc->latest,
                      &brume__create_function_response__descriptor);
}

/* UpdateFunctionCode's change: the stored code on $LATEST, then a version of it if asked. */
typedef struct code_change {
  const Brume__UpdateFunctionCodeRequest *req;
  char sha[65];
  uint64_t size;
  const brume_fn_config *published; /* NULL unless req->publish */
} code_change;

static int change_code(brume_fn_doc *doc, void *ctx, brume_err **err) {
  code_change *c = ctx;
  if (brume_fn_doc_check_latest(doc, c->req->revision_id, NULL, err) < 0) return -1;
  int64_t now = brume_wall_ms();
  memcpy(doc->latest.code_sha256, c->sha, sizeof(c->sha));
  doc->latest.code_size = c->size;
  brume_fn_doc_touch_latest(doc, now);
  c->published = NULL;
  bool created;
  if (c->req->publish &&
      (c->published = brume_fn_doc_publish(doc, NULL, now, &created, err)) == NULL)
    return -1;
  return 1;
}

brume_status mg_update_function_code(brume_manage *m, brume_rpc_call *call,
                                     const ProtobufCMessage *msg, const char *account) {
  const Brume__UpdateFunctionCodeRequest *req = (const Brume__UpdateFunctionCodeRequest *)msg;
  brume_autoptr(brume_err) err = NULL;
  brume_function_name fn;
  if (mg_function(m, req->function_name, NULL, &fn, NULL, &err) < 0) return mg_fail(call, err);
  if (req->zip_file.len == 0) {
    brume_err_set(&err, BRUME_INVALID_ARGUMENT, INVALID "zip_file is required");
    return mg_fail(call, err);
  }
  /* An unknown function or a stale revision is refused before the code is stored. */
  brume_autoptr(brume_fn_doc) current = NULL;
  int64_t mod = 0;
  if (mg_load(m, account, fn.name, &current, &mod, &err) < 0 ||
      brume_fn_doc_check_latest(current, req->revision_id, NULL, &err) < 0)
    return mg_fail(call, err);
  code_change c = {.req = req};
  if (put_code(m, &req->zip_file, c.sha, &c.size, &err) < 0) return mg_fail(call, err);
  brume_autoptr(brume_fn_doc) doc = mg_update_doc(m, account, fn.name, change_code, &c, &err);
  if (doc == NULL) return mg_fail(call, err);
  return reply_config(m, call, account, fn.name, c.published ? c.published : &doc->latest,
                      &brume__update_function_code_response__descriptor);
}

/* UpdateFunctionConfiguration's change: the request's fields that are set, on $LATEST. */
typedef struct config_change {
  const Brume__UpdateFunctionConfigurationRequest *req;
  const char *sealed; /* the request's environment, sealed */
} config_change;

static int change_config(brume_fn_doc *doc, void *ctx, brume_err **err) {
  const config_change *ch = ctx;
  const Brume__UpdateFunctionConfigurationRequest *req = ch->req;
  if (brume_fn_doc_check_latest(doc, req->revision_id, NULL, err) < 0) return -1;
  brume_fn_config *c = &doc->latest;
  if (req->clear_description) brume_fn_set_string(&c->description, "");
  if (req->description && req->description[0])
    brume_fn_set_string(&c->description, req->description);
  if (req->handler_mode != BRUME__HANDLER_MODE__HANDLER_MODE_UNSPECIFIED)
    c->handler_mode = req->handler_mode;
  if (req->handler && req->handler[0]) brume_fn_set_string(&c->handler, req->handler);
  if (req->runtime && req->runtime[0]) brume_fn_set_string(&c->runtime, req->runtime);
  if (req->memory_size_mib) c->memory_mib = req->memory_size_mib;
  if (req->timeout_ms) c->timeout_ms = req->timeout_ms;
  if (req->ephemeral_storage_mib) c->ephemeral_mib = req->ephemeral_storage_mib;
  if (req->environment) {
    free(c->env_sealed);
    c->env_sealed = ch->sealed ? brume_xstrdup(ch->sealed) : NULL;
  }
  if (brume_fn_config_check(c, err) < 0) return -1;
  brume_fn_doc_touch_latest(doc, brume_wall_ms());
  return 1;
}

brume_status mg_update_function_configuration(brume_manage *m, brume_rpc_call *call,
                                              const ProtobufCMessage *msg, const char *account) {
  const Brume__UpdateFunctionConfigurationRequest *req =
      (const Brume__UpdateFunctionConfigurationRequest *)msg;
  brume_autoptr(brume_err) err = NULL;
  brume_function_name fn;
  if (mg_function(m, req->function_name, NULL, &fn, NULL, &err) < 0) return mg_fail(call, err);
  if (req->clear_description && req->description && req->description[0]) {
    brume_err_set(&err, BRUME_INVALID_ARGUMENT,
                  INVALID "description and clear_description cannot both be set");
    return mg_fail(call, err);
  }
  brume_autofree char *sealed = NULL;
  if (req->environment && mg_seal_env(m, req->environment, &sealed, &err) < 0)
    return mg_fail(call, err);
  config_change ch = {.req = req, .sealed = sealed};
  brume_autoptr(brume_fn_doc) doc = mg_update_doc(m, account, fn.name, change_config, &ch, &err);
  if (doc == NULL) return mg_fail(call, err);
  return reply_config(m, call, account, fn.name, &doc->latest,
                      &brume__update_function_configuration_response__descriptor);
}

brume_status mg_get_function(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *msg,
                             const char *account) {
  const Brume__GetFunctionRequest *req = (const Brume__GetFunctionRequest *)msg;
  brume_autoptr(brume_err) err = NULL;
  brume_function_name fn;
  const char *qualifier;
  if (mg_function(m, req->function_name, req->qualifier, &fn, &qualifier, &err) < 0)
    return mg_fail(call, err);
  brume_autoptr(brume_fn_doc) doc = NULL;
  int64_t mod = 0;
  if (mg_load(m, account, fn.name, &doc, &mod, &err) < 0) return mg_fail(call, err);
  brume_autofree char *arn = mg_arn(m, account, fn.name, NULL);
  /* An alias shows the version it points to, never its routing. */
  const brume_fn_config *cfg = brume_fn_doc_resolve(doc, qualifier, 1.0, arn, &err);
  if (cfg == NULL) return mg_fail(call, err);
  brume_autoptr(json_t) limits = NULL;
  int64_t lmod = 0;
  if (mg_limits_load(m, account, fn.name, &limits, &lmod, &err) < 0) return mg_fail(call, err);
  mg_pool pool = {0};
  Brume__GetFunctionResponse r = BRUME__GET_FUNCTION_RESPONSE__INIT;
  Brume__FunctionConfiguration fc;
  if (mg_config_proto(m, account, fn.name, cfg, &fc, &pool, &err) < 0) {
    mg_pool_free(&pool);
    return mg_fail(call, err);
  }
  r.configuration = &fc;
  r.code_url = mg_keep(&pool, brume_catalog_code_url(m->catalog, cfg->code_sha256), NULL);
  Brume__FunctionConcurrency conc = BRUME__FUNCTION_CONCURRENCY__INIT;
  json_t *reserved = json_object_get(limits, "reserved_concurrency");
  if (json_is_integer(reserved)) {
    conc.reserved_concurrent_executions = (uint32_t)json_integer_value(reserved);
    r.concurrency = &conc;
  }
  brume_status s = mg_reply(call, &r.base);
  mg_pool_free(&pool);
  return s;
}

static void doc_free_void(void *p) {
  brume_fn_doc_free(p);
}

brume_status mg_list_functions(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *msg,
                               const char *account) {
  const Brume__ListFunctionsRequest *req = (const Brume__ListFunctionsRequest *)msg;
  brume_autoptr(brume_err) err = NULL;
  if (req->max_items > MG_PAGE_MAX) {
    brume_err_set(&err, BRUME_INVALID_ARGUMENT, INVALID "max_items %u is out of range 1-%d",
                  req->max_items, MG_PAGE_MAX);
    return mg_fail(call, err);
  }
  const char *marker = req->marker ? req->marker : "";
  if (marker[0] && brume_check_function_name(marker, "marker", &err) < 0) return mg_fail(call, err);
  size_t max = req->max_items ? req->max_items : MG_PAGE_MAX;
  brume_autofree char *prefix = brume_xasprintf("%s/functions/%s/", m->prefix, account);
  brume_autoptr(brume_etcd_range) r = brume_etcd_get_prefix(m->etcd, prefix, &err);
  if (r == NULL) {
    brume_err_wrap(&err, "ServiceUnavailableException: list functions");
    return mg_fail(call, err);
  }
  mg_pool pool = {0};
  Brume__FunctionConfiguration **items =
      mg_keep(&pool, brume_xcalloc(max + 1, sizeof(*items)), NULL);
  Brume__ListFunctionsResponse resp = BRUME__LIST_FUNCTIONS_RESPONSE__INIT;
  resp.functions = items;
  /* etcd returns the keys sorted, so names come in order. */
  for (size_t i = 0; i < r->n; i++) {
    const char *name = r->kvs[i].key + strlen(prefix);
    if (strchr(name, '/') || strcmp(name, marker) <= 0) continue;
    if (resp.n_functions == max) {
      resp.next_marker = (char *)items[max - 1]->function_name;
      break;
    }
    brume_autoptr(brume_err) perr = NULL;
    brume_fn_doc *doc = brume_fn_doc_parse(r->kvs[i].value, r->kvs[i].value_len, &perr);
    if (doc == NULL) {
      char q[256], qr[512];
      brume_warn("Leaving an unusable function document out of a list.", "key=%s reason=%s",
                 brume_log_quote(q, sizeof(q), r->kvs[i].key),
                 brume_log_quote(qr, sizeof(qr), perr->msg));
      continue;
    }
    mg_keep(&pool, doc, doc_free_void);
    Brume__FunctionConfiguration *fc = mg_keep(&pool, brume_xcalloc(1, sizeof(*fc)), NULL);
    if (mg_config_proto(m, account, name, &doc->latest, fc, &pool, &err) < 0) {
      mg_pool_free(&pool);
      return mg_fail(call, err);
    }
    items[resp.n_functions++] = fc;
  }
  brume_status s = mg_reply(call, &resp.base);
  mg_pool_free(&pool);
  return s;
}

brume_status mg_delete_function(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *msg,
                                const char *account) {
  const Brume__DeleteFunctionRequest *req = (const Brume__DeleteFunctionRequest *)msg;
  brume_autoptr(brume_err) err = NULL;
  brume_function_name fn;
  const char *qualifier;
  if (mg_function(m, req->function_name, req->qualifier, &fn, &qualifier, &err) < 0)
    return mg_fail(call, err);
  if (qualifier[0] && !brume_is_version(qualifier)) {
    brume_err_set(&err, BRUME_INVALID_ARGUMENT,
                  INVALID
                  "qualifier must be a version number to delete one version (an alias "
                  "is deleted with DeleteAlias)");
    return mg_fail(call, err);
  }
  brume_autofree char *lkey = mg_limits_key(m, account, fn.name);
  for (int attempt = 0; attempt < MG_CAS_ATTEMPTS; attempt++) {
    brume_autoptr(brume_fn_doc) doc = NULL;
    int64_t mod = 0;
    if (mg_load(m, account, fn.name, &doc, &mod, &err) < 0) return mg_fail(call, err);
    brume_autoptr(json_t) limits = NULL;
    int64_t lmod = 0;
    if (mg_limits_load(m, account, fn.name, &limits, &lmod, &err) < 0) return mg_fail(call, err);
    brume_autofree char *arn = mg_arn(m, account, fn.name, NULL);
    brume_autofree char *ltext = NULL;
    brume_etcd_cmp cmp = {
        .key = lkey, .target = BRUME_ETCD_MOD, .result = BRUME_ETCD_EQUAL, .number = lmod};
    brume_etcd_op op = {.type = BRUME_ETCD_OP_DELETE, .key = lkey};
    /* The version's provisioned concurrency goes with it; the whole function takes its limits
     * key (reserved and provisioned) along. */
    brume_autoptr(json_t) dropped = json_object();
    size_t n_ops = 1;
    if (qualifier[0]) {
      if (brume_fn_doc_delete_version(doc, qualifier, arn, &err) < 0) return mg_fail(call, err);
      json_t *p = json_object_get(limits, "provisioned");
      json_t *n = json_object_get(p, qualifier);
      if (n) {
        json_object_set_new(dropped, "provisioned", json_pack("{s:O}", qualifier, n));
        mg_limits_drop_provisioned(limits, qualifier);
        op = mg_limits_op(lkey, limits, &ltext);
      } else {
        n_ops = 0;
      }
    } else {
      json_object_update(dropped, limits);
    }
    mg_prov_sync sync = {0};
    mg_prov_collect(m, account, fn.name, doc, json_object_get(dropped, "provisioned"), &sync);
    int64_t rev = 0;
    int rc = mg_store(m, account, fn.name, qualifier[0] ? doc : NULL, mod, &cmp, 1, &op, n_ops,
                      &rev, &err);
    if (rc <= 0) mg_prov_sync_free(&sync);
    if (rc < 0) return mg_fail(call, err);
    if (rc == 0) continue;
    mg_wait(m, rev);
    mg_prov_push(m, account, fn.name, qualifier[0] ? doc : NULL, limits, &sync, NULL);
    mg_prov_sync_free(&sync);
    return mg_reply_with(call, &brume__delete_function_response__descriptor, NULL);
  }
  mg_too_busy(account, fn.name, &err);
  return mg_fail(call, err);
}

/* PublishVersion's change: a version of $LATEST, unless its latest version is the same. */
typedef struct publish_change {
  const Brume__PublishVersionRequest *req;
  const brume_fn_config *version; /* the version published, or the same one before */
} publish_change;

static int change_publish(brume_fn_doc *doc, void *ctx, brume_err **err) {
  publish_change *p = ctx;
  if (brume_fn_doc_check_latest(doc, p->req->revision_id, p->req->code_sha256, err) < 0) return -1;
  bool created = false;
  p->version = brume_fn_doc_publish(doc, p->req->description, brume_wall_ms(), &created, err);
  if (p->version == NULL) return -1;
  return created ? 1 : 0;
}

brume_status mg_publish_version(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *msg,
                                const char *account) {
  const Brume__PublishVersionRequest *req = (const Brume__PublishVersionRequest *)msg;
  brume_autoptr(brume_err) err = NULL;
  brume_function_name fn;
  if (mg_function(m, req->function_name, NULL, &fn, NULL, &err) < 0) return mg_fail(call, err);
  if (req->description && strlen(req->description) > BRUME_DESCRIPTION_MAX) {
    brume_err_set(&err, BRUME_INVALID_ARGUMENT,
                  INVALID "description is %zu characters long, over %d", strlen(req->description),
                  BRUME_DESCRIPTION_MAX);
    return mg_fail(call, err);
  }
  publish_change p = {.req = req};
  brume_autoptr(brume_fn_doc) doc = mg_update_doc(m, account, fn.name, change_publish, &p, &err);
  if (doc == NULL) return mg_fail(call, err);
  return reply_config(m, call, account, fn.name, p.version,
                      &brume__publish_version_response__descriptor);
}
