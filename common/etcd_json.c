#include "etcd_json.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

BRUME_DEFINE_AUTOPTR(json_t, json_decref)

/* ---- base64 and key ranges ---- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *brume_etcd_json_b64_encode(const void *data, size_t len) {
  const unsigned char *in = data;
  char *out = brume_xmalloc((len + 2) / 3 * 4 + 1);
  char *p = out;
  size_t i = 0;
  for (; i + 3 <= len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    *p++ = b64_alphabet[v >> 18 & 63];
    *p++ = b64_alphabet[v >> 12 & 63];
    *p++ = b64_alphabet[v >> 6 & 63];
    *p++ = b64_alphabet[v & 63];
  }
  if (i < len) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
    *p++ = b64_alphabet[v >> 18 & 63];
    *p++ = b64_alphabet[v >> 12 & 63];
    *p++ = i + 1 < len ? b64_alphabet[v >> 6 & 63] : '=';
    *p++ = '=';
  }
  *p = '\0';
  return out;
}

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int brume_etcd_json_b64_decode(const char *in, size_t in_len, char **out, size_t *out_len) {
  /* Padding is optional, but when present it must close the last group of four. */
  size_t pad = 0;
  while (pad < 2 && in_len > pad && in[in_len - 1 - pad] == '=') pad++;
  if (pad > 0 && in_len % 4 != 0) return -1;
  size_t n = in_len - pad;
  if (n % 4 == 1) return -1;
  brume_autofree char *buf = brume_xmalloc(n / 4 * 3 + 3);
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64_value((unsigned char)in[i]);
    if (v < 0) return -1;
    acc = (acc << 6 | (uint32_t)v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      buf[o++] = (char)(acc >> bits & 0xff);
    }
  }
  buf[o] = '\0';
  *out = brume_steal(&buf);
  *out_len = o;
  return 0;
}

char *brume_etcd_json_prefix_end(const char *prefix, size_t len, size_t *out_len) {
  for (size_t i = len; i > 0; i--) {
    if ((unsigned char)prefix[i - 1] != 0xff) {
      char *end = brume_xstrndup(prefix, i);
      end[i - 1] = (char)((unsigned char)end[i - 1] + 1);
      *out_len = i;
      return end;
    }
  }
  *out_len = 1;
  return brume_xcalloc(1, 2);
}

/* ---- requests ---- */

static json_t *j_bytes(const void *data, size_t len) {
  brume_autofree char *s = brume_etcd_json_b64_encode(data, len);
  return json_string(s);
}

static json_t *j_int64(int64_t v) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%" PRId64, v);
  return json_string(buf);
}

static char *dump(json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT);
  if (s == NULL) brume_fatal("out of memory encoding an etcd request");
  return s;
}

/* Sets "key" and, for a prefix, "range_end" on o. An empty prefix reads from "\0", since etcd
 * refuses an empty key. */
static void set_key_range(json_t *o, const char *key, bool prefix) {
  size_t len = strlen(key);
  if (prefix && len == 0) {
    json_object_set_new(o, "key", j_bytes("", 1));
  } else {
    json_object_set_new(o, "key", j_bytes(key, len));
  }
  if (prefix) {
    size_t end_len;
    brume_autofree char *end = brume_etcd_json_prefix_end(key, len, &end_len);
    json_object_set_new(o, "range_end", j_bytes(end, end_len));
  }
}

char *brume_etcd_json_range_req(const char *key, bool prefix, bool count_only) {
  brume_autoptr(json_t) o = json_object();
  set_key_range(o, key, prefix);
  if (count_only) json_object_set_new(o, "count_only", json_true());
  return dump(o);
}

static json_t *put_obj(const char *key, const void *value, size_t value_len, int64_t lease) {
  json_t *o = json_object();
  json_object_set_new(o, "key", j_bytes(key, strlen(key)));
  json_object_set_new(o, "value", j_bytes(value ? value : "", value ? value_len : 0));
  if (lease != 0) json_object_set_new(o, "lease", j_int64(lease));
  return o;
}

char *brume_etcd_json_put_req(const char *key, const void *value, size_t value_len, int64_t lease) {
  brume_autoptr(json_t) o = put_obj(key, value, value_len, lease);
  return dump(o);
}

char *brume_etcd_json_delete_req(const char *key, bool prefix) {
  brume_autoptr(json_t) o = json_object();
  set_key_range(o, key, prefix);
  return dump(o);
}

static json_t *txn_ops(const brume_etcd_op *ops, size_t n, const char *which, brume_err **err) {
  brume_autoptr(json_t) arr = json_array();
  for (size_t i = 0; i < n; i++) {
    const brume_etcd_op *op = &ops[i];
    if (op->key == NULL) {
      brume_err_set(err, BRUME_INVALID_ARGUMENT, "etcd txn: %s op %zu has no key", which, i);
      return NULL;
    }
    json_t *req = NULL;
    const char *name = NULL;
    switch (op->type) {
      case BRUME_ETCD_OP_PUT:
        name = "request_put";
        req = put_obj(op->key, op->value, op->value_len, op->lease);
        break;
      case BRUME_ETCD_OP_DELETE:
        name = "request_delete_range";
        req = json_object();
        set_key_range(req, op->key, op->prefix);
        break;
      case BRUME_ETCD_OP_RANGE:
        name = "request_range";
        req = json_object();
        set_key_range(req, op->key, op->prefix);
        break;
      default:
        brume_err_set(err, BRUME_INVALID_ARGUMENT, "etcd txn: %s op %zu has unknown type %d", which,
                      i, (int)op->type);
        return NULL;
    }
    json_t *wrap = json_object();
    json_object_set_new(wrap, name, req);
    json_array_append_new(arr, wrap);
  }
  return brume_steal(&arr);
}

char *brume_etcd_json_txn_req(const brume_etcd_txn_req *req, brume_err **err) {
  static const char *const targets[] = {"VALUE", "VERSION", "CREATE", "MOD"};
  static const char *const results[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};
  static const char *const number_fields[] = {NULL, "version", "create_revision", "mod_revision"};
  brume_autoptr(json_t) cmps = json_array();
  for (size_t i = 0; i < req->n_compare; i++) {
    const brume_etcd_cmp *c = &req->compare[i];
    if (c->key == NULL) {
      brume_err_set(err, BRUME_INVALID_ARGUMENT, "etcd txn: compare %zu has no key", i);
      return NULL;
    }
    if ((unsigned)c->target >= BRUME_ARRAY_LEN(targets) ||
        (unsigned)c->result >= BRUME_ARRAY_LEN(results)) {
      brume_err_set(err, BRUME_INVALID_ARGUMENT,
                    "etcd txn: compare %zu has unknown target %d or result %d", i, (int)c->target,
                    (int)c->result);
      return NULL;
    }
    json_t *o = json_object();
    set_key_range(o, c->key, c->prefix);
    json_object_set_new(o, "target", json_string(targets[c->target]));
    json_object_set_new(o, "result", json_string(results[c->result]));
    if (c->target == BRUME_ETCD_VALUE) {
      json_object_set_new(o, "value",
                          j_bytes(c->value ? c->value : "", c->value ? c->value_len : 0));
    } else {
      json_object_set_new(o, number_fields[c->target], j_int64(c->number));
    }
    json_array_append_new(cmps, o);
  }
  brume_autoptr(json_t) success = txn_ops(req->success, req->n_success, "success", err);
  if (success == NULL) return NULL;
  brume_autoptr(json_t) failure = txn_ops(req->failure, req->n_failure, "failure", err);
  if (failure == NULL) return NULL;
  brume_autoptr(json_t) o = json_object();
  json_object_set(o, "compare", cmps);
  json_object_set(o, "success", success);
  json_object_set(o, "failure", failure);
  return dump(o);
}

char *brume_etcd_json_lease_grant_req(int64_t ttl_s) {
  brume_autoptr(json_t) o = json_object();
  json_object_set_new(o, "TTL", j_int64(ttl_s));
  return dump(o);
}

char *brume_etcd_json_lease_id_req(int64_t id) {
  brume_autoptr(json_t) o = json_object();
  json_object_set_new(o, "ID", j_int64(id));
  return dump(o);
}

char *brume_etcd_json_watch_req(const char *prefix, int64_t start_revision) {
  json_t *c = json_object();
  set_key_range(c, prefix, true);
  if (start_revision > 0) json_object_set_new(c, "start_revision", j_int64(start_revision));
  brume_autoptr(json_t) o = json_object();
  json_object_set_new(o, "create_request", c);
  return dump(o);
}

/* ---- responses ---- */

/* Every parser below reports a problem through this, naming the response it was reading. */
static int malformed(brume_err **err, const char *what, const char *detail, const char *field) {
  if (field)
    return brume_err_set(err, BRUME_INTERNAL, "etcd sent a malformed %s response: %s \"%s\"", what,
                         detail, field);
  return brume_err_set(err, BRUME_INTERNAL, "etcd sent a malformed %s response: %s", what, detail);
}

static json_t *load(const char *body, size_t len, const char *what, brume_err **err) {
  json_error_t je;
  json_t *j = json_loadb(body ? body : "", body ? len : 0, 0, &je);
  if (j == NULL) {
    malformed(err, what, je.text, NULL);
    return NULL;
  }
  if (!json_is_object(j)) {
    json_decref(j);
    malformed(err, what, "not a JSON object", NULL);
    return NULL;
  }
  return j;
}

/* Parses a decimal int64 that fills the whole string, as the gateway writes them. */
static int parse_int64_text(const char *s, int64_t *out) {
  if (*s == '\0' || !(*s == '-' || (*s >= '0' && *s <= '9'))) return -1;
  errno = 0;
  char *end = NULL;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0') return -1;
  *out = v;
  return 0;
}

/* An int64 field: absent or null reads as 0; a JSON string or, leniently, a JSON integer. */
static int get_int64(json_t *o, const char *name, int64_t *out, const char *what, brume_err **err) {
  json_t *v = json_object_get(o, name);
  if (v == NULL || json_is_null(v)) {
    *out = 0;
    return 0;
  }
  if (json_is_integer(v)) {
    *out = json_integer_value(v);
    return 0;
  }
  if (json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v) &&
      parse_int64_text(json_string_value(v), out) == 0)
    return 0;
  return malformed(err, what, "bad int64 field", name);
}

static int get_bool(json_t *o, const char *name, bool *out, const char *what, brume_err **err) {
  json_t *v = json_object_get(o, name);
  if (v == NULL || json_is_null(v)) {
    *out = false;
    return 0;
  }
  if (!json_is_boolean(v)) return malformed(err, what, "bad boolean field", name);
  *out = json_is_true(v);
  return 0;
}

/* A bytes field (base64): absent reads as an empty string. *out is always allocated on success. */
static int get_bytes(json_t *o, const char *name, char **out, size_t *out_len, const char *what,
                     brume_err **err) {
  json_t *v = json_object_get(o, name);
  if (v == NULL || json_is_null(v)) {
    *out = brume_xstrdup("");
    *out_len = 0;
    return 0;
  }
  if (!json_is_string(v)) return malformed(err, what, "bad bytes field", name);
  if (brume_etcd_json_b64_decode(json_string_value(v), json_string_length(v), out, out_len) < 0)
    return malformed(err, what, "invalid base64 in field", name);
  return 0;
}

/* An object field: absent or null gives NULL, which callers read as "all fields zero". */
static int get_object(json_t *o, const char *name, json_t **out, const char *what,
                      brume_err **err) {
  json_t *v = json_object_get(o, name);
  *out = NULL;
  if (v == NULL || json_is_null(v)) return 0;
  if (!json_is_object(v)) return malformed(err, what, "bad object field", name);
  *out = v;
  return 0;
}

static int get_array(json_t *o, const char *name, json_t **out, const char *what, brume_err **err) {
  json_t *v = json_object_get(o, name);
  *out = NULL;
  if (v == NULL || json_is_null(v)) return 0;
  if (!json_is_array(v)) return malformed(err, what, "bad array field", name);
  *out = v;
  return 0;
}

static int get_header_revision(json_t *o, int64_t *rev, const char *what, brume_err **err) {
  json_t *h;
  if (get_object(o, "header", &h, what, err) < 0) return -1;
  if (h == NULL) {
    *rev = 0;
    return 0;
  }
  return get_int64(h, "revision", rev, what, err);
}

static void kv_clear(brume_etcd_kv *kv) {
  free(kv->key);
  free(kv->value);
  memset(kv, 0, sizeof(*kv));
}

/* On failure *kv holds nothing that needs freeing. */
static int parse_kv(json_t *o, brume_etcd_kv *kv, const char *what, brume_err **err) {
  memset(kv, 0, sizeof(*kv));
  if (!json_is_object(o)) return malformed(err, what, "a kv is not an object", NULL);
  if (get_bytes(o, "key", &kv->key, &kv->key_len, what, err) < 0 ||
      get_bytes(o, "value", &kv->value, &kv->value_len, what, err) < 0 ||
      get_int64(o, "create_revision", &kv->create_revision, what, err) < 0 ||
      get_int64(o, "mod_revision", &kv->mod_revision, what, err) < 0 ||
      get_int64(o, "version", &kv->version, what, err) < 0 ||
      get_int64(o, "lease", &kv->lease, what, err) < 0) {
    kv_clear(kv);
    return -1;
  }
  return 0;
}

static void range_clear(brume_etcd_range *r) {
  for (size_t i = 0; i < r->n; i++) kv_clear(&r->kvs[i]);
  free(r->kvs);
  memset(r, 0, sizeof(*r));
}

/* Fills r from a RangeResponse object; on failure r holds nothing that needs freeing. */
static int parse_range_fields(json_t *o, brume_etcd_range *r, const char *what, brume_err **err) {
  memset(r, 0, sizeof(*r));
  json_t *kvs;
  if (get_header_revision(o, &r->revision, what, err) < 0 ||
      get_int64(o, "count", &r->count, what, err) < 0 ||
      get_bool(o, "more", &r->more, what, err) < 0 || get_array(o, "kvs", &kvs, what, err) < 0)
    return -1;
  size_t n = kvs ? json_array_size(kvs) : 0;
  if (n == 0) return 0;
  r->kvs = brume_xcalloc(n, sizeof(*r->kvs));
  for (size_t i = 0; i < n; i++) {
    if (parse_kv(json_array_get(kvs, i), &r->kvs[i], what, err) < 0) {
      range_clear(r);
      return -1;
    }
    r->n = i + 1;
  }
  return 0;
}

int brume_etcd_json_parse_error(const char *body, size_t len, brume_status *code, char **message) {
  json_error_t je;
  brume_autoptr(json_t) o = json_loadb(body ? body : "", body ? len : 0, 0, &je);
  if (o == NULL || !json_is_object(o)) return 0;
  json_t *e = json_object_get(o, "error");
  json_t *src = o; /* the object holding code and message */
  json_t *c;
  if (json_is_object(e)) {
    src = e;
    c = json_object_get(e, "grpc_code");
    if (c == NULL) c = json_object_get(e, "code");
  } else {
    /* A unary error has "code" next to "error"/"message"; an answer that merely has an "error"
     * string (LeaseGrantResponse does) is not one. */
    c = json_object_get(o, "code");
    if (!json_is_integer(c) ||
        !(json_is_string(e) || json_is_string(json_object_get(o, "message"))))
      return 0;
  }
  json_int_t n = json_is_integer(c) ? json_integer_value(c) : BRUME_UNKNOWN;
  *code = n >= 0 && n <= BRUME_UNAUTHENTICATED ? (brume_status)n : BRUME_UNKNOWN;
  if (*code == BRUME_OK) *code = BRUME_UNKNOWN; /* an error that says "OK" is still an error */
  json_t *m = json_object_get(src, "message");
  if (!json_is_string(m) || json_string_length(m) == 0) m = json_is_string(e) ? e : NULL;
  /* %s stops at an embedded NUL, which keeps the message a C string. */
  *message = brume_xasprintf("%s", m ? json_string_value(m) : "(no message)");
  return 1;
}

brume_etcd_range *brume_etcd_json_parse_range(const char *body, size_t len, brume_err **err) {
  brume_autoptr(json_t) o = load(body, len, "range", err);
  if (o == NULL) return NULL;
  brume_etcd_range *r = brume_xcalloc(1, sizeof(*r));
  if (parse_range_fields(o, r, "range", err) < 0) {
    free(r);
    return NULL;
  }
  return r;
}

int brume_etcd_json_parse_put(const char *body, size_t len, int64_t *revision, brume_err **err) {
  brume_autoptr(json_t) o = load(body, len, "put", err);
  if (o == NULL) return -1;
  return get_header_revision(o, revision, "put", err);
}

int brume_etcd_json_parse_delete(const char *body, size_t len, int64_t *deleted, int64_t *revision,
                                 brume_err **err) {
  brume_autoptr(json_t) o = load(body, len, "deleterange", err);
  if (o == NULL) return -1;
  if (get_header_revision(o, revision, "deleterange", err) < 0) return -1;
  return get_int64(o, "deleted", deleted, "deleterange", err);
}

static int parse_op_result(json_t *item, brume_etcd_op_result *r, brume_err **err) {
  static const char *what = "txn";
  memset(r, 0, sizeof(*r));
  if (!json_is_object(item)) return malformed(err, what, "a response is not an object", NULL);
  json_t *v;
  if (get_object(item, "response_put", &v, what, err) < 0) return -1;
  if (v != NULL) {
    r->type = BRUME_ETCD_OP_PUT;
    return 0;
  }
  if (get_object(item, "response_delete_range", &v, what, err) < 0) return -1;
  if (v != NULL) {
    r->type = BRUME_ETCD_OP_DELETE;
    return get_int64(v, "deleted", &r->deleted, what, err);
  }
  if (get_object(item, "response_range", &v, what, err) < 0) return -1;
  if (v != NULL) {
    r->type = BRUME_ETCD_OP_RANGE;
    return parse_range_fields(v, &r->range, what, err);
  }
  return malformed(err, what, "a response of unknown type", NULL);
}

brume_etcd_txn_result *brume_etcd_json_parse_txn(const char *body, size_t len, brume_err **err) {
  static const char *what = "txn";
  brume_autoptr(json_t) o = load(body, len, what, err);
  if (o == NULL) return NULL;
  brume_autoptr(brume_etcd_txn_result) t = brume_xcalloc(1, sizeof(*t));
  json_t *responses;
  if (get_header_revision(o, &t->revision, what, err) < 0 ||
      get_bool(o, "succeeded", &t->succeeded, what, err) < 0 ||
      get_array(o, "responses", &responses, what, err) < 0)
    return NULL;
  size_t n = responses ? json_array_size(responses) : 0;
  if (n == 0) return brume_steal(&t);
  t->results = brume_xcalloc(n, sizeof(*t->results));
  for (size_t i = 0; i < n; i++) {
    if (parse_op_result(json_array_get(responses, i), &t->results[i], err) < 0) return NULL;
    t->n = i + 1;
  }
  for (size_t i = 0; i < t->n; i++)
    if (t->results[i].type == BRUME_ETCD_OP_RANGE) t->results[i].range.revision = t->revision;
  return brume_steal(&t);
}

int brume_etcd_json_parse_lease_grant(const char *body, size_t len, int64_t *id, int64_t *ttl,
                                      brume_err **err) {
  static const char *what = "lease grant";
  brume_autoptr(json_t) o = load(body, len, what, err);
  if (o == NULL) return -1;
  json_t *e = json_object_get(o, "error");
  if (json_is_string(e) && json_string_length(e) > 0)
    return brume_err_set(err, BRUME_UNAVAILABLE, "etcd refused the lease: %s",
                         json_string_value(e));
  if (get_int64(o, "ID", id, what, err) < 0 || get_int64(o, "TTL", ttl, what, err) < 0) return -1;
  if (*id == 0) return malformed(err, what, "no lease", "ID");
  return 0;
}

int brume_etcd_json_parse_lease_keepalive(const char *body, size_t len, int64_t *ttl,
                                          brume_err **err) {
  static const char *what = "lease keepalive";
  brume_autoptr(json_t) o = load(body, len, what, err);
  if (o == NULL) return -1;
  json_t *r;
  if (get_object(o, "result", &r, what, err) < 0) return -1;
  return get_int64(r ? r : o, "TTL", ttl, what, err);
}

static int parse_event(json_t *o, brume_etcd_event *ev, brume_err **err) {
  static const char *what = "watch";
  memset(ev, 0, sizeof(*ev));
  if (!json_is_object(o)) return malformed(err, what, "an event is not an object", NULL);
  json_t *type = json_object_get(o, "type");
  if (type == NULL || json_is_null(type) ||
      (json_is_string(type) && !strcmp(json_string_value(type), "PUT")) ||
      (json_is_integer(type) && json_integer_value(type) == 0)) {
    ev->type = BRUME_ETCD_EVENT_PUT;
  } else if ((json_is_string(type) && !strcmp(json_string_value(type), "DELETE")) ||
             (json_is_integer(type) && json_integer_value(type) == 1)) {
    ev->type = BRUME_ETCD_EVENT_DELETE;
  } else {
    return malformed(err, what, "an event of unknown type", NULL);
  }
  json_t *kv;
  if (get_object(o, "kv", &kv, what, err) < 0) return -1;
  if (kv == NULL) return malformed(err, what, "an event without", "kv");
  return parse_kv(kv, &ev->kv, what, err);
}

int brume_etcd_json_parse_watch_chunk(const char *body, size_t len, brume_etcd_watch_chunk *out,
                                      brume_err **err) {
  static const char *what = "watch";
  memset(out, 0, sizeof(*out));
  brume_autoptr(json_t) o = load(body, len, what, err);
  if (o == NULL) return -1;
  json_t *r;
  if (get_object(o, "result", &r, what, err) < 0) return -1;
  if (r == NULL) return malformed(err, what, "no field", "result");
  json_t *events, *reason;
  if (get_header_revision(r, &out->revision, what, err) < 0 ||
      get_bool(r, "created", &out->created, what, err) < 0 ||
      get_bool(r, "canceled", &out->canceled, what, err) < 0 ||
      get_int64(r, "compact_revision", &out->compact_revision, what, err) < 0 ||
      get_array(r, "events", &events, what, err) < 0)
    return -1;
  reason = json_object_get(r, "cancel_reason");
  if (json_is_string(reason) && json_string_length(reason) > 0)
    out->cancel_reason = brume_xasprintf("%s", json_string_value(reason));
  size_t n = events ? json_array_size(events) : 0;
  if (n > 0) out->events = brume_xcalloc(n, sizeof(*out->events));
  for (size_t i = 0; i < n; i++) {
    if (parse_event(json_array_get(events, i), &out->events[i], err) < 0) {
      brume_etcd_json_watch_chunk_clear(out);
      return -1;
    }
    out->n = i + 1;
  }
  return 0;
}

void brume_etcd_json_watch_chunk_clear(brume_etcd_watch_chunk *c) {
  for (size_t i = 0; i < c->n; i++) kv_clear(&c->events[i].kv);
  free(c->events);
  free(c->cancel_reason);
  memset(c, 0, sizeof(*c));
}

/* The result types are plain data; their destructors live here with the parsers that build them. */

void brume_etcd_kv_free(brume_etcd_kv *kv) {
  if (kv == NULL) return;
  kv_clear(kv);
  free(kv);
}

void brume_etcd_range_free(brume_etcd_range *r) {
  if (r == NULL) return;
  range_clear(r);
  free(r);
}

void brume_etcd_txn_result_free(brume_etcd_txn_result *t) {
  if (t == NULL) return;
  for (size_t i = 0; i < t->n; i++) range_clear(&t->results[i].range);
  free(t->results);
  free(t);
}
