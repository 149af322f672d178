#include "sandbox_store.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"

char *brume_sandbox_store_dir(const char *prefix) {
  return brume_xasprintf("%s/placement/sandboxes/", prefix);
}

static char *key_of(const char *prefix, const char *id) {
  return brume_xasprintf("%s/placement/sandboxes/%s", prefix, id);
}

char *brume_sandbox_record_json(const brume_sandbox_record *r) {
  json_t *o = json_pack(
      "{s:s, s:s, s:s, s:I, s:I, s:b, s:I}", "owner", r->owner, "host", r->host_id, "function",
      r->function, "memory_mib", (json_int_t)r->memory_mib, "vcpu_milli", (json_int_t)r->vcpu_milli,
      "provisioned", r->provisioned, "created_unix_ms", (json_int_t)r->created_unix_ms);
  BRUME_ENSURE(o != NULL);
  char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  BRUME_ENSURE(s != NULL);
  return s;
}

int brume_sandbox_record_parse(const char *json, brume_sandbox_record *r, brume_err **err) {
  json_error_t je;
  json_t *o = json_loads(json, 0, &je);
  if (o == NULL) return brume_err_set(err, BRUME_INVALID_ARGUMENT, "not JSON: %s", je.text);
  const char *owner = NULL, *host = NULL, *fn = NULL;
  json_int_t mem = 0, vcpu = 0, created = 0;
  int prov = 0;
  int rc = json_unpack_ex(o, &je, 0, "{s:s, s:s, s:s, s:I, s:I, s?b, s?I}", "owner", &owner, "host",
                          &host, "function", &fn, "memory_mib", &mem, "vcpu_milli", &vcpu,
                          "provisioned", &prov, "created_unix_ms", &created);
  if (rc == 0 && (mem <= 0 || mem > UINT32_MAX || vcpu < 0 || vcpu > UINT32_MAX)) {
    rc = -1;
    snprintf(je.text, sizeof(je.text), "memory_mib or vcpu_milli out of range");
  }
  if (rc < 0) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "not a sandbox record: %s", je.text);
    json_decref(o);
    return -1;
  }
  r->owner = brume_xstrdup(owner);
  r->host_id = brume_xstrdup(host);
  r->function = brume_xstrdup(fn);
  r->memory_mib = (uint32_t)mem;
  r->vcpu_milli = (uint32_t)vcpu;
  r->provisioned = prov;
  r->created_unix_ms = created;
  json_decref(o);
  return 0;
}

int brume_sandbox_store_put(brume_etcd *e, const char *prefix, const brume_sandbox_record *r,
                            brume_err **err) {
  brume_autofree char *key = key_of(prefix, r->id);
  brume_autofree char *value = brume_sandbox_record_json(r);
  return brume_etcd_put(e, key, value, strlen(value), 0, NULL, err);
}

int brume_sandbox_store_delete(brume_etcd *e, const char *prefix, const char *id,
                               int64_t mod_revision, brume_err **err) {
  brume_autofree char *key = key_of(prefix, id);
  if (mod_revision <= 0) return brume_etcd_delete(e, key, false, NULL, err);
  brume_etcd_cmp cmp = {
      .key = key, .target = BRUME_ETCD_MOD, .result = BRUME_ETCD_EQUAL, .number = mod_revision};
  brume_etcd_op del = {.type = BRUME_ETCD_OP_DELETE, .key = key};
  brume_etcd_txn_req req = {.compare = &cmp, .n_compare = 1, .success = &del, .n_success = 1};
  brume_autoptr(brume_etcd_txn_result) res = brume_etcd_txn(e, &req, err);
  return res ? 0 : -1;
}

int brume_sandbox_store_adopt(brume_etcd *e, const char *prefix, const brume_sandbox_record *r,
                              const char *owner, bool *adopted, brume_err **err) {
  brume_sandbox_record mine = *r;
  mine.owner = (char *)owner;
  brume_autofree char *key = key_of(prefix, r->id);
  brume_autofree char *value = brume_sandbox_record_json(&mine);
  brume_etcd_cmp cmp = {
      .key = key, .target = BRUME_ETCD_MOD, .result = BRUME_ETCD_EQUAL, .number = r->mod_revision};
  brume_etcd_op put = {
      .type = BRUME_ETCD_OP_PUT, .key = key, .value = value, .value_len = strlen(value)};
  brume_etcd_txn_req req = {.compare = &cmp, .n_compare = 1, .success = &put, .n_success = 1};
  brume_autoptr(brume_etcd_txn_result) res = brume_etcd_txn(e, &req, err);
  if (res == NULL) return -1;
  *adopted = res->succeeded;
  return 0;
}

brume_sandbox_record *brume_sandbox_store_list(brume_etcd *e, const char *prefix, size_t *n,
                                               brume_err **err) {
  brume_autofree char *dir = brume_sandbox_store_dir(prefix);
  brume_autoptr(brume_etcd_range) r = brume_etcd_get_prefix(e, dir, err);
  if (r == NULL) return NULL;
  brume_sandbox_record *v = brume_xcalloc(r->n, sizeof(*v));
  size_t k = 0, dlen = strlen(dir);
  for (size_t i = 0; i < r->n; i++) {
    const brume_etcd_kv *kv = &r->kvs[i];
    brume_autoptr(brume_err) perr = NULL;
    if (kv->key_len <= dlen || brume_sandbox_record_parse(kv->value, &v[k], &perr) < 0) {
      char q[256];
      brume_warn("A sandbox record in etcd cannot be read; it is left alone.", "key=%s err=%s",
                 kv->key, brume_log_quote(q, sizeof(q), perr ? perr->msg : "no sandbox id"));
      continue;
    }
    v[k].id = brume_xstrdup(kv->key + dlen);
    v[k].mod_revision = kv->mod_revision;
    k++;
  }
  *n = k;
  return v;
}

void brume_sandbox_records_free(brume_sandbox_record *v, size_t n) {
  if (v == NULL) return;
  for (size_t i = 0; i < n; i++) {
    free(v[i].id);
    free(v[i].owner);
    free(v[i].host_id);
    free(v[i].function);
  }
  free(v);
}
