#include "limits_store.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "etcd_follow.h"
#include "log.h"
#include "revision.h"

BRUME_DEFINE_AUTOPTR(json_t, json_decref)

/* The largest count a value may hold. */
#define COUNT_MAX INT32_MAX

/* The records. Accounts live in an array of pointers sorted by id, and each account's functions
 * in an array sorted by name, both searched by bisection; a function's qualifiers likewise. Why
 * not a hash table: lookups (the hot path) are O(log n), a dozen string compares for thousands
 * of accounts, while writes, which insert with a memmove, come from configuration changes and
 * are rare. An account's aggregates are recomputed from its functions on each change to one of
 * them, which keeps them right by construction. An account has a record while it has a key of
 * its own or a function with one; otherwise it has the defaults and no record. */

typedef struct qualifier_rec {
  char *name;
  uint32_t n;
} qualifier_rec;

typedef struct function_rec {
  char *name; /* first: find_named() reads it */
  bool reserved;
  uint32_t reserved_concurrency;
  uint32_t provisioned; /* the sum over qualifiers */
  size_t n_qualifiers;
  qualifier_rec *qualifiers; /* sorted by name */
} function_rec;

typedef struct account_rec {
  char *id;     /* first: find_named() reads it */
  bool has_key; /* <root>limits/account/<id> exists */
  uint32_t limit;
  uint64_t reserved_total;         /* recomputed by sum_functions() */
  uint64_t unreserved_provisioned; /* likewise */
  uint64_t provisioned_total;      /* likewise */
  size_t n_functions, cap_functions;
  function_rec **functions; /* sorted by name */
} account_rec;

struct brume_limits_store {
  pthread_rwlock_t lock; /* guards everything below but revision */
  char *prefix;          /* <root>limits/ */
  size_t prefix_len;
  brume_cluster_limits cluster;
  size_t n_accounts, cap_accounts;
  account_rec **accounts;  /* sorted by id */
  brume_revision revision; /* never moves back: after a reload, replayed events are older */
  brume_limits_change_fn on_change;
  void *user;
  brume_etcd_follow *follow;
};

/* ---- Records ---- */

static brume_cluster_limits cluster_defaults(void) {
  return (brume_cluster_limits){BRUME_SCALING_ACCOUNT, BRUME_BUCKET_ACCOUNT_PARAMS,
                                BRUME_BUCKET_FUNCTION_PARAMS};
}

static void free_qualifiers(qualifier_rec *q, size_t n) {
  for (size_t i = 0; i < n; i++) free(q[i].name);
  free(q);
}

static void function_free(function_rec *f) {
  free(f->name);
  free_qualifiers(f->qualifiers, f->n_qualifiers);
  free(f);
}

static void account_free(account_rec *a) {
  for (size_t i = 0; i < a->n_functions; i++) function_free(a->functions[i]);
  free(a->functions);
  free(a->id);
  free(a);
}

/* The index of name in a sorted array of records that each start with their name (account_rec,
 * function_rec), or where it would go; *found says which. */
static size_t find_named(void *const *recs, size_t n, const char *name, bool *found) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (strcmp(*(char *const *)recs[mid], name) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = lo < n && strcmp(*(char *const *)recs[lo], name) == 0;
  return lo;
}

static size_t find_account(const brume_limits_store *s, const char *id, bool *found) {
  return find_named((void *const *)s->accounts, s->n_accounts, id, found);
}

static size_t find_function(const account_rec *a, const char *name, bool *found) {
  return find_named((void *const *)a->functions, a->n_functions, name, found);
}

static account_rec *get_account(const brume_limits_store *s, const char *id) {
  bool found;
  size_t i = find_account(s, id, &found);
  return found ? s->accounts[i] : NULL;
}

static function_rec *get_function(const account_rec *a, const char *name) {
  bool found;
  size_t i = find_function(a, name, &found);
  return found ? a->functions[i] : NULL;
}

static account_rec *add_account(brume_limits_store *s, const char *id) {
  bool found;
  size_t i = find_account(s, id, &found);
  if (found) return s->accounts[i];
  if (s->n_accounts == s->cap_accounts) {
    s->cap_accounts = s->cap_accounts ? 2 * s->cap_accounts : 16;
    s->accounts = brume_xrealloc(s->accounts, s->cap_accounts * sizeof(*s->accounts));
  }
  memmove(&s->accounts[i + 1], &s->accounts[i], (s->n_accounts - i) * sizeof(*s->accounts));
  account_rec *a = brume_xcalloc(1, sizeof(*a));
  a->id = brume_xstrdup(id);
  a->limit = BRUME_ACCOUNT_CONCURRENCY_DEFAULT;
  s->accounts[i] = a;
  s->n_accounts++;
  return a;
}

static function_rec *add_function(account_rec *a, const char *name) {
  bool found;
  size_t i = find_function(a, name, &found);
  if (found) return a->functions[i];
  if (a->n_functions == a->cap_functions) {
    a->cap_functions = a->cap_functions ? 2 * a->cap_functions : 4;
    a->functions = brume_xrealloc(a->functions, a->cap_functions * sizeof(*a->functions));
  }
  memmove(&a->functions[i + 1], &a->functions[i], (a->n_functions - i) * sizeof(*a->functions));
  function_rec *f = brume_xcalloc(1, sizeof(*f));
  f->name = brume_xstrdup(name);
  a->functions[i] = f;
  a->n_functions++;
  return f;
}

static void remove_function(account_rec *a, const char *name) {
  bool found;
  size_t i = find_function(a, name, &found);
  if (!found) return;
  function_free(a->functions[i]);
  memmove(&a->functions[i], &a->functions[i + 1], (a->n_functions - i - 1) * sizeof(*a->functions));
  a->n_functions--;
}

/* Drops the account's record once nothing of it is configured any more. */
static void forget_account_if_default(brume_limits_store *s, const char *id) {
  bool found;
  size_t i = find_account(s, id, &found);
  if (!found || s->accounts[i]->has_key || s->accounts[i]->n_functions > 0) return;
  account_free(s->accounts[i]);
  memmove(&s->accounts[i], &s->accounts[i + 1], (s->n_accounts - i - 1) * sizeof(*s->accounts));
  s->n_accounts--;
}

static void sum_functions(account_rec *a) {
  a->reserved_total = 0;
  a->unreserved_provisioned = 0;
  a->provisioned_total = 0;
  for (size_t i = 0; i < a->n_functions; i++) {
    const function_rec *f = a->functions[i];
    a->provisioned_total += f->provisioned;
    if (f->reserved)
      a->reserved_total += f->reserved_concurrency;
    else
      a->unreserved_provisioned += f->provisioned;
  }
}

static uint32_t cap_u32(uint64_t v) {
  return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static brume_account_limits account_limits(const account_rec *a) {
  if (a == NULL) return (brume_account_limits){.limit = BRUME_ACCOUNT_CONCURRENCY_DEFAULT};
  return (brume_account_limits){a->limit, cap_u32(a->reserved_total),
                                cap_u32(a->unreserved_provisioned), cap_u32(a->provisioned_total)};
}

static brume_function_limits function_limits(const function_rec *f) {
  if (f == NULL) return (brume_function_limits){0};
  return (brume_function_limits){f->reserved, f->reserved_concurrency, f->provisioned};
}

/* Warns when account a breaks the 100-unreserved rule, or when a reserved function's provisioned
 * concurrency exceeds its reserved concurrency: function f's only, or with all set every
 * function's (after the initial load). The configuration stays applied: see the header. */
static void check_rules(const account_rec *a, const function_rec *f, bool all) {
  brume_account_limits al = account_limits(a);
  brume_autoptr(brume_err) err = NULL;
  const char *fn = NULL;
  if (brume_concurrency_check_account_limit(&al, al.limit, &err) == 0) {
    for (size_t i = 0; i < a->n_functions && err == NULL; i++) {
      const function_rec *g = a->functions[i];
      if ((!all && g != f) || !g->reserved) continue;
      brume_function_limits gl = function_limits(g);
      if (brume_concurrency_check_provisioned(&al, g->name, &gl, g->provisioned, &err) < 0)
        fn = g->name;
    }
  }
  if (err == NULL) return;
  char qa[256], qf[256], qr[512];
  brume_warn("An account's limits in etcd break the concurrency rules; they are applied anyway.",
             "account=%s function=%s reason=%s", brume_log_quote(qa, sizeof(qa), a->id),
             brume_log_quote(qf, sizeof(qf), fn ? fn : ""),
             brume_log_quote(qr, sizeof(qr), err->msg));
}

/* ---- Values ---- */

/* Reads obj's field name as a count from min to COUNT_MAX into *out, if there is one: 1 if
 * there was, 0 if not, -1 with err if it is not such a count. */
static int get_count(const json_t *obj, const char *name, uint32_t min, uint32_t *out,
                     brume_err **err) {
  json_t *v = json_object_get(obj, name);
  if (v == NULL) return 0;
  if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > COUNT_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "\"%s\" must be an integer from %u to %d",
                         name, min, COUNT_MAX);
  *out = (uint32_t)json_integer_value(v);
  return 1;
}

/* Warns about each field of obj that is not in known (NULL-terminated). */
static void warn_unknown_fields(const char *key, json_t *obj, const char *const *known) {
  const char *field;
  json_t *v;
  json_object_foreach(obj, field, v) {
    bool ok = false;
    for (size_t i = 0; known[i] && !ok; i++) ok = strcmp(field, known[i]) == 0;
    if (ok) continue;
    char qk[512], qf[256];
    brume_warn("Skipping an unknown field of a limits value in etcd.", "key=%s field=%s",
               brume_log_quote(qk, sizeof(qk), key), brume_log_quote(qf, sizeof(qf), field));
  }
}

static json_t *parse_object(const char *value, size_t len, brume_err **err) {
  json_error_t jerr;
  json_t *o = json_loadb(value, len, JSON_REJECT_DUPLICATES, &jerr);
  if (o == NULL) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "not JSON: %s", jerr.text);
    return NULL;
  }
  if (!json_is_object(o)) {
    json_decref(o);
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "not a JSON object");
    return NULL;
  }
  return o;
}

static const char *const cluster_fields[] = {"scaling_model",
                                             "account_burst",
                                             "account_refill_per_minute",
                                             "function_burst",
                                             "function_refill_per_10s",
                                             "time_scale",
                                             NULL};

static int parse_cluster(const char *key, const char *value, size_t len, brume_cluster_limits *out,
                         brume_err **err) {
  brume_autoptr(json_t) o = parse_object(value, len, err);
  if (o == NULL) return -1;
  brume_cluster_limits c = cluster_defaults();
  json_t *m = json_object_get(o, "scaling_model");
  if (m && json_is_string(m) && strcmp(json_string_value(m), "account") == 0)
    c.model = BRUME_SCALING_ACCOUNT;
  else if (m && json_is_string(m) && strcmp(json_string_value(m), "function") == 0)
    c.model = BRUME_SCALING_FUNCTION;
  else if (m)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "\"scaling_model\" must be \"account\" or \"function\"");
  if (get_count(o, "account_burst", 1, &c.account_bucket.capacity, err) < 0 ||
      get_count(o, "account_refill_per_minute", 1, &c.account_bucket.refill_tokens, err) < 0 ||
      get_count(o, "function_burst", 1, &c.function_bucket.capacity, err) < 0 ||
      get_count(o, "function_refill_per_10s", 1, &c.function_bucket.refill_tokens, err) < 0)
    return -1;
  json_t *ts = json_object_get(o, "time_scale");
  if (ts) {
    double v = json_number_value(ts);
    if (!json_is_number(ts) ||
        !(v >= BRUME_BUCKET_TIME_SCALE_MIN && v <= BRUME_BUCKET_TIME_SCALE_MAX))
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           "\"time_scale\" must be a number from %g to %g",
                           BRUME_BUCKET_TIME_SCALE_MIN, BRUME_BUCKET_TIME_SCALE_MAX);
    c.account_bucket.time_scale = c.function_bucket.time_scale = v;
  }
  /* The checks above cover the bucket's own; this only guards against them drifting apart. */
  if (brume_bucket_check_params(&c.account_bucket, err) < 0 ||
      brume_bucket_check_params(&c.function_bucket, err) < 0)
    return -1;
  warn_unknown_fields(key, o, cluster_fields);
  *out = c;
  return 0;
}

static const char *const account_fields[] = {"concurrency_limit", NULL};

static int parse_account(const char *key, const char *value, size_t len, uint32_t *limit,
                         brume_err **err) {
  brume_autoptr(json_t) o = parse_object(value, len, err);
  if (o == NULL) return -1;
  uint32_t l = BRUME_ACCOUNT_CONCURRENCY_DEFAULT;
  if (get_count(o, "concurrency_limit", 0, &l, err) < 0) return -1;
  warn_unknown_fields(key, o, account_fields);
  *limit = l;
  return 0;
}

static int cmp_qualifier(const void *a, const void *b) {
  return strcmp(((const qualifier_rec *)a)->name, ((const qualifier_rec *)b)->name);
}

/* provisioned_modified_unix_ms: when the frontend last put each qualifier's provisioned
 * concurrency, for its GetProvisionedConcurrencyConfig; counting has no use for it. */
static const char *const function_fields[] = {"reserved_concurrency", "provisioned",
                                              "provisioned_modified_unix_ms", NULL};

/* Fills out (but its name) from a function's value; out->qualifiers is the caller's on success. */
static int parse_function(const char *key, const char *value, size_t len, function_rec *out,
                          brume_err **err) {
  brume_autoptr(json_t) o = parse_object(value, len, err);
  if (o == NULL) return -1;
  function_rec f = {0};
  int has = get_count(o, "reserved_concurrency", 0, &f.reserved_concurrency, err);
  if (has < 0) return -1;
  f.reserved = has == 1;
  json_t *p = json_object_get(o, "provisioned");
  if (p && !json_is_object(p))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "\"provisioned\" must be an object of qualifiers and counts");
  if (p && json_object_size(p) > 0) {
    f.qualifiers = brume_xcalloc(json_object_size(p), sizeof(*f.qualifiers));
    uint64_t sum = 0;
    const char *q;
    json_t *v;
    json_object_foreach(p, q, v) {
      (void)v;
      uint32_t n = 0;
      int rc = q[0] == '\0' ? brume_err_set(err, BRUME_INVALID_ARGUMENT, "a qualifier is empty")
                            : get_count(p, q, 0, &n, err);
      if (rc < 0) {
        free_qualifiers(f.qualifiers, f.n_qualifiers);
        return brume_err_wrap(err, "\"provisioned\"");
      }
      f.qualifiers[f.n_qualifiers++] = (qualifier_rec){brume_xstrdup(q), n};
      sum += n;
    }
    if (sum > COUNT_MAX) {
      free_qualifiers(f.qualifiers, f.n_qualifiers);
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           "the provisioned concurrency sums to %llu, over %d",
                           (unsigned long long)sum, COUNT_MAX);
    }
    f.provisioned = (uint32_t)sum;
    qsort(f.qualifiers, f.n_qualifiers, sizeof(*f.qualifiers), cmp_qualifier);
  }
  warn_unknown_fields(key, o, function_fields);
  *out = f;
  return 0;
}

/* ---- Applying changes ---- */

/* What a key names: its kind, and its account and function ("" where the kind has none). */
typedef struct key_ref {
  brume_limits_kind kind;
  char account[256];
  char function[256];
} key_ref;

/* Sorts out the key (under s->prefix): 0, or -1 when it names no limit, which includes an id or
 * name longer than 255 bytes. */
static int parse_key(const brume_limits_store *s, const char *key, key_ref *out) {
  if (strncmp(key, s->prefix, s->prefix_len) != 0) return -1;
  const char *rest = key + s->prefix_len;
  memset(out, 0, sizeof(*out));
  if (strcmp(rest, "cluster") == 0) {
    out->kind = BRUME_LIMITS_CLUSTER;
    return 0;
  }
  const char *slash;
  if (strncmp(rest, "account/", 8) == 0) {
    rest += 8;
    size_t n = strlen(rest);
    if (n == 0 || n >= sizeof(out->account) || strchr(rest, '/')) return -1;
    out->kind = BRUME_LIMITS_ACCOUNT;
    memcpy(out->account, rest, n);
    return 0;
  }
  if (strncmp(rest, "function/", 9) == 0 && (slash = strchr(rest + 9, '/')) != NULL) {
    rest += 9;
    size_t na = (size_t)(slash - rest), nf = strlen(slash + 1);
    if (na == 0 || na >= sizeof(out->account) || nf == 0 || nf >= sizeof(out->function) ||
        strchr(slash + 1, '/'))
      return -1;
    out->kind = BRUME_LIMITS_FUNCTION;
    memcpy(out->account, rest, na);
    memcpy(out->function, slash + 1, nf);
    return 0;
  }
  return -1;
}

/* Applies one put (value non-NULL) or delete of kv->key, under the write lock. Returns true if
 * the store changed, false if the change was ignored (a malformed value or an unknown key,
 * warned about). With check set, warns when the account now breaks the concurrency rules. */
static bool apply(brume_limits_store *s, const brume_etcd_kv *kv, bool put, bool check,
                  key_ref *k) {
  char qk[512], qr[512];
  if (parse_key(s, kv->key, k) < 0) {
    if (put)
      brume_warn("Ignoring a key under the limits prefix in etcd that names no limit.", "key=%s",
                 brume_log_quote(qk, sizeof(qk), kv->key));
    return false;
  }
  brume_autoptr(brume_err) err = NULL;
  account_rec *a = NULL;
  function_rec *f = NULL;
  switch (k->kind) {
    case BRUME_LIMITS_CLUSTER: {
      brume_cluster_limits c = cluster_defaults();
      if (put && parse_cluster(kv->key, kv->value, kv->value_len, &c, &err) < 0) break;
      s->cluster = c;
      return true;
    }
    case BRUME_LIMITS_ACCOUNT: {
      uint32_t limit = BRUME_ACCOUNT_CONCURRENCY_DEFAULT;
      if (put && parse_account(kv->key, kv->value, kv->value_len, &limit, &err) < 0) break;
      if (put) {
        a = add_account(s, k->account);
        a->has_key = true;
      } else if ((a = get_account(s, k->account)) != NULL) {
        a->has_key = false;
      }
      if (a) a->limit = limit;
      if (a && check) check_rules(a, NULL, false);
      forget_account_if_default(s, k->account);
      return true;
    }
    case BRUME_LIMITS_FUNCTION: {
      function_rec parsed = {0};
      if (put && parse_function(kv->key, kv->value, kv->value_len, &parsed, &err) < 0) break;
      if (put) {
        a = add_account(s, k->account);
        f = add_function(a, k->function);
        free_qualifiers(f->qualifiers, f->n_qualifiers);
        parsed.name = f->name;
        *f = parsed;
      } else if ((a = get_account(s, k->account)) != NULL) {
        remove_function(a, k->function);
      }
      if (a) sum_functions(a);
      if (a && check) check_rules(a, f, false);
      forget_account_if_default(s, k->account);
      return true;
    }
  }
  brume_warn("Ignoring a malformed limits value in etcd; the previous setting stays.",
             "key=%s reason=%s", brume_log_quote(qk, sizeof(qk), kv->key),
             brume_log_quote(qr, sizeof(qr), err->msg));
  return false;
}

/* etcd_follow's load: replaces everything the store holds with what etcd has under the prefix
 * (at start, and again after a watch gap). The rules are checked once everything is loaded, not
 * at each key on the way. After a gap anything may have changed: the listener hears so once. */
static void load_all(void *user, const brume_etcd_kv *kvs, size_t n, bool again) {
  brume_limits_store *s = user;
  pthread_rwlock_wrlock(&s->lock);
  for (size_t i = 0; i < s->n_accounts; i++) account_free(s->accounts[i]);
  s->n_accounts = 0;
  s->cluster = cluster_defaults();
  for (size_t i = 0; i < n; i++) {
    key_ref k;
    apply(s, &kvs[i], true, false, &k);
  }
  for (size_t i = 0; i < s->n_accounts; i++) check_rules(s->accounts[i], NULL, true);
  pthread_rwlock_unlock(&s->lock);
  if (again && s->on_change) s->on_change(s->user, BRUME_LIMITS_CLUSTER, NULL, NULL);
}

static void synced(void *user, int64_t rev) {
  brume_revision_advance(&((brume_limits_store *)user)->revision, rev);
}

static void apply_event(void *user, const brume_etcd_event *ev) {
  brume_limits_store *s = user;
  key_ref k;
  pthread_rwlock_wrlock(&s->lock);
  bool changed = apply(s, &ev->kv, ev->type == BRUME_ETCD_EVENT_PUT, true, &k);
  pthread_rwlock_unlock(&s->lock);
  if (changed && s->on_change)
    s->on_change(s->user, k.kind, k.kind == BRUME_LIMITS_CLUSTER ? NULL : k.account,
                 k.kind == BRUME_LIMITS_FUNCTION ? k.function : NULL);
}

/* ---- The API ---- */

int brume_limits_check_value(brume_limits_kind kind, const char *value, size_t len,
                             brume_err **err) {
  const char *what = kind == BRUME_LIMITS_CLUSTER   ? "limits/cluster"
                     : kind == BRUME_LIMITS_ACCOUNT ? "limits/account"
                                                    : "limits/function";
  switch (kind) {
    case BRUME_LIMITS_CLUSTER: {
      brume_cluster_limits c = cluster_defaults();
      return parse_cluster(what, value, len, &c, err);
    }
    case BRUME_LIMITS_ACCOUNT: {
      uint32_t limit;
      return parse_account(what, value, len, &limit, err);
    }
    case BRUME_LIMITS_FUNCTION: {
      function_rec f = {0};
      if (parse_function(what, value, len, &f, err) < 0) return -1;
      free_qualifiers(f.qualifiers, f.n_qualifiers);
      return 0;
    }
  }
  return brume_err_set(err, BRUME_INVALID_ARGUMENT, "unknown limits kind %d", (int)kind);
}

brume_limits_store *brume_limits_store_start(brume_etcd *e, const char *root,
                                             brume_limits_change_fn on_change, void *user,
                                             brume_err **err) {
  size_t n = root ? strlen(root) : 0;
  if (n == 0 || root[n - 1] != '/') {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "limits root \"%s\" must end with '/'",
                  root ? root : "(null)");
    return NULL;
  }
  brume_limits_store *s = brume_xcalloc(1, sizeof(*s));
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  /* Lookups come in a steady stream; a change must not wait for a gap in it. */
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&s->lock, &attr);
  brume_revision_init(&s->revision, 0);
  pthread_rwlockattr_destroy(&attr);
  s->prefix = brume_xasprintf("%slimits/", root);
  s->prefix_len = strlen(s->prefix);
  s->cluster = cluster_defaults();
  s->on_change = on_change;
  s->user = user;

  static const brume_etcd_follow_ops ops = {
      .what = "the limits", .load = load_all, .apply = apply_event, .synced = synced};
  s->follow = brume_etcd_follow_start(e, s->prefix, &ops, s, err);
  if (s->follow == NULL) {
    brume_limits_store_stop(s);
    return NULL;
  }
  return s;
}

void brume_limits_store_stop(brume_limits_store *s) {
  if (s == NULL) return;
  brume_etcd_follow_stop(s->follow);
  for (size_t i = 0; i < s->n_accounts; i++) account_free(s->accounts[i]);
  free(s->accounts);
  free(s->prefix);
  pthread_rwlock_destroy(&s->lock);
  brume_revision_destroy(&s->revision);
  free(s);
}

void brume_limits_store_cluster(brume_limits_store *s, brume_cluster_limits *out) {
  pthread_rwlock_rdlock(&s->lock);
  *out = s->cluster;
  pthread_rwlock_unlock(&s->lock);
}

void brume_limits_store_account(brume_limits_store *s, const char *account,
                                brume_account_limits *out) {
  pthread_rwlock_rdlock(&s->lock);
  *out = account_limits(get_account(s, account));
  pthread_rwlock_unlock(&s->lock);
}

void brume_limits_store_function(brume_limits_store *s, const char *account, const char *function,
                                 brume_function_limits *out) {
  pthread_rwlock_rdlock(&s->lock);
  account_rec *a = get_account(s, account);
  *out = function_limits(a ? get_function(a, function) : NULL);
  pthread_rwlock_unlock(&s->lock);
}

/* A qualifier's provisioned concurrency in f (NULL: none). Under the lock. */
static uint32_t provisioned_of(const function_rec *f, const char *qualifier) {
  if (f == NULL || f->n_qualifiers == 0) return 0;
  qualifier_rec want = {(char *)qualifier, 0};
  qualifier_rec *q =
      bsearch(&want, f->qualifiers, f->n_qualifiers, sizeof(*f->qualifiers), cmp_qualifier);
  return q ? q->n : 0;
}

uint32_t brume_limits_store_provisioned(brume_limits_store *s, const char *account,
                                        const char *function, const char *qualifier) {
  pthread_rwlock_rdlock(&s->lock);
  account_rec *a = get_account(s, account);
  uint32_t n = provisioned_of(a ? get_function(a, function) : NULL, qualifier);
  pthread_rwlock_unlock(&s->lock);
  return n;
}

void brume_limits_store_lookup(brume_limits_store *s, const char *account, const char *function,
                               const char *qualifier, brume_limits_view *out) {
  pthread_rwlock_rdlock(&s->lock);
  account_rec *a = get_account(s, account);
  function_rec *f = a ? get_function(a, function) : NULL;
  out->cluster = s->cluster;
  out->account = account_limits(a);
  out->function = function_limits(f);
  out->provisioned = provisioned_of(f, qualifier);
  pthread_rwlock_unlock(&s->lock);
}

void brume_limits_store_each(brume_limits_store *s, brume_limits_each_fn fn, void *user) {
  pthread_rwlock_rdlock(&s->lock);
  for (size_t i = 0; i < s->n_accounts; i++) {
    const account_rec *a = s->accounts[i];
    fn(user, a->id, NULL);
    for (size_t k = 0; k < a->n_functions; k++) fn(user, a->id, a->functions[k]->name);
  }
  pthread_rwlock_unlock(&s->lock);
}

int64_t brume_limits_store_revision(brume_limits_store *s) {
  return brume_revision_applied(&s->revision);
}
