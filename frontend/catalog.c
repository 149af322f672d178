/* The catalog: function documents in etcd and their live copy in memory (catalog.h). */
#include "catalog.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcd_follow.h"
#include "function_doc.h"
#include "log.h"
#include "names.h"
#include "resources.h"
#include "revision.h"
#include "sorted.h"

/* What Invoke holds. A version's target owns its spec; the targets that only name it otherwise
 * (an alias, an explicit $LATEST) point to it as base and share its spec, so a document costs one
 * spec per version however many aliases it has. */
struct brume_fn_target {
  atomic_long refs;
  Brume__SandboxSpec *spec; /* NULL when base is set */
  brume_fn_target *base;
  char *invoked_arn;
};

/* The in-memory copy. Functions live in an array of pointers sorted by "<account>/<name>", each
 * function's versions and aliases in arrays sorted by name, all searched by bisection
 * (common/sorted.h): the hot path is a few dozen string compares under a read lock. A document is
 * turned into a cat_fn outside the lock (decrypting its environments is the slow part) and
 * swapped in under the write lock. */
typedef struct cat_version {
  char *version; /* first: key_of reads it */
  brume_fn_target *target;
} cat_version;

typedef struct cat_alias {
  char *name; /* first */
  brume_fn_target *primary;
  brume_fn_target *additional; /* NULL: no routing */
  double weight;
} cat_alias;

typedef struct cat_fn {
  char *key;                 /* first: "<account>/<name>" */
  brume_fn_target *latest;   /* invoked without a qualifier */
  brume_fn_target *latest_q; /* invoked as $LATEST */
  size_t n_versions;
  cat_version **versions;
  size_t n_aliases;
  cat_alias **aliases;
  size_t n_event_configs;
  brume_fn_event_config *event_configs; /* ascending qualifiers, as in the document */
} cat_fn;

struct brume_catalog {
  pthread_rwlock_t lock; /* guards fns, n_fns, cap_fns */
  cat_fn **fns;
  size_t n_fns, cap_fns;

  brume_revision applied; /* what brume_catalog_wait waits on */

  brume_etcd *etcd;
  brume_etcd_follow *follow;
  char *prefix; /* <prefix>/functions/ */
  size_t prefix_len;
  char *region;
  char *code_url_base;
  brume_env_key env_key;
  bool has_env_key;
};

static const char *named_key(const void *item) {
  return *(char *const *)item;
}

/* ---- Targets ---- */

static brume_fn_target *target_ref(brume_fn_target *t) {
  atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
  return t;
}

void brume_fn_target_unref(const brume_fn_target *ct) {
  brume_fn_target *t = (brume_fn_target *)ct;
  while (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1) {
    brume_fn_target *base = t->base;
    if (t->spec) protobuf_c_message_free_unpacked(&t->spec->base, NULL);
    free(t->invoked_arn);
    free(t);
    t = base;
  }
}

const Brume__SandboxSpec *brume_fn_target_spec(const brume_fn_target *t) {
  return t->base ? t->base->spec : t->spec;
}

const char *brume_fn_target_invoked_arn(const brume_fn_target *t) {
  return t->invoked_arn;
}

/* A target naming base's version under another ARN. Takes a reference to base. */
static brume_fn_target *target_alias(brume_fn_target *base, char *arn) {
  brume_fn_target *t = brume_xcalloc(1, sizeof(*t));
  atomic_init(&t->refs, 1);
  t->base = target_ref(base);
  t->invoked_arn = arn;
  return t;
}

char *brume_catalog_code_url(const brume_catalog *c, const char *sha256) {
  return brume_xasprintf("%s/code/%s", c->code_url_base, sha256);
}

/* A version's target: its sandbox spec, built once here. The spec is assembled on the stack,
 * packed and unpacked, so that the stored one is a plain unpacked message that
 * protobuf_c_message_free_unpacked frees. */
static brume_fn_target *target_new(brume_catalog *c, const char *account, const char *name,
                                   const brume_fn_config *cfg, brume_err **err) {
  brume_fn_env_var *vars = NULL;
  size_t n_vars = 0;
  if (cfg->env_sealed) {
    if (!c->has_env_key) {
      brume_err_set(err, BRUME_FAILED_PRECONDITION,
                    "version %s has environment variables but the frontend has no env key",
                    cfg->version);
      return NULL;
    }
    size_t len = 0;
    char *plain = brume_env_open(&c->env_key, cfg->env_sealed, &len, err);
    if (plain == NULL) return NULL;
    int rc = brume_fn_env_parse(plain, len, &vars, &n_vars, err);
    OPENSSL_cleanse(plain, len);
    free(plain);
    if (rc < 0) return NULL;
  }
  brume_autofree char *url = brume_catalog_code_url(c, cfg->code_sha256);
  brume_autofree char *arn = brume_function_arn(c->region, account, name, NULL);
  Brume__FunctionVersionRef fv = BRUME__FUNCTION_VERSION_REF__INIT;
  fv.account_id = (char *)account;
  fv.function_name = (char *)name;
  fv.version = (char *)cfg->version;
  fv.revision_id = (char *)cfg->revision_id;
  Brume__FunctionCode code = BRUME__FUNCTION_CODE__INIT;
  code.sha256 = (char *)cfg->code_sha256;
  code.url = url;
  code.size_bytes = cfg->code_size;
  Brume__ResourceSpec res = BRUME__RESOURCE_SPEC__INIT;
  res.memory_mib = cfg->memory_mib;
  res.ephemeral_storage_mib = cfg->ephemeral_mib;
  res.vcpu_milli = brume_resources_vcpu_milli(cfg->memory_mib);
  Brume__SandboxSpec spec = BRUME__SANDBOX_SPEC__INIT;
  spec.function = &fv;
  spec.code = &code;
  spec.resources = &res;
  spec.timeout_ms = cfg->timeout_ms;
  spec.handler_mode = (Brume__HandlerMode)cfg->handler_mode;
  spec.handler = cfg->handler;
  spec.runtime = cfg->runtime;
  spec.function_arn = arn;
  brume_autofree Brume__SandboxSpec__EnvironmentEntry *entries =
      brume_xcalloc(n_vars + 1, sizeof(*entries));
  brume_autofree Brume__SandboxSpec__EnvironmentEntry **ptrs =
      brume_xcalloc(n_vars + 1, sizeof(*ptrs));
  for (size_t i = 0; i < n_vars; i++) {
    brume__sandbox_spec__environment_entry__init(&entries[i]);
    entries[i].key = vars[i].name;
    entries[i].value = vars[i].value;
    ptrs[i] = &entries[i];
  }
  spec.n_environment = n_vars;
  spec.environment = ptrs;
  size_t len = brume__sandbox_spec__get_packed_size(&spec);
  uint8_t *buf = brume_xmalloc(len + 1);
  brume__sandbox_spec__pack(&spec, buf);
  brume_fn_env_free(vars, n_vars);
  brume_fn_target *t = brume_xcalloc(1, sizeof(*t));
  atomic_init(&t->refs, 1);
  t->spec = brume__sandbox_spec__unpack(NULL, len, buf);
  OPENSSL_cleanse(buf, len);
  free(buf);
  BRUME_ENSURE(t->spec != NULL);
  t->invoked_arn = strcmp(cfg->version, BRUME_LATEST) == 0
                       ? brume_xstrdup(arn)
                       : brume_function_arn(c->region, account, name, cfg->version);
  return t;
}

/* ---- Functions in memory ---- */

static void cat_fn_free(cat_fn *f) {
  if (f == NULL) return;
  brume_fn_target_unref(f->latest);
  brume_fn_target_unref(f->latest_q);
  for (size_t i = 0; i < f->n_versions; i++) {
    brume_fn_target_unref(f->versions[i]->target);
    free(f->versions[i]->version);
    free(f->versions[i]);
  }
  free(f->versions);
  for (size_t i = 0; i < f->n_aliases; i++) {
    brume_fn_target_unref(f->aliases[i]->primary);
    brume_fn_target_unref(f->aliases[i]->additional);
    free(f->aliases[i]->name);
    free(f->aliases[i]);
  }
  free(f->aliases);
  free(f->event_configs);
  free(f->key);
  free(f);
}
BRUME_DEFINE_AUTOPTR(cat_fn, cat_fn_free)

static brume_fn_target *find_version(const cat_fn *f, const char *version) {
  if (strcmp(version, BRUME_LATEST) == 0) return f->latest;
  bool found;
  size_t i =
      brume_sorted_find((void *const *)f->versions, f->n_versions, named_key, version, &found);
  return found ? f->versions[i]->target : NULL;
}

static int cmp_named(const void *a, const void *b) {
  return strcmp(**(char *const *const *)a, **(char *const *const *)b);
}

/* Builds what the catalog keeps of one document. */
static cat_fn *cat_fn_build(brume_catalog *c, const char *account, const char *name,
                            const brume_fn_doc *d, brume_err **err) {
  brume_autoptr(cat_fn) f = brume_xcalloc(1, sizeof(*f));
  f->key = brume_xasprintf("%s/%s", account, name);
  if ((f->latest = target_new(c, account, name, &d->latest, err)) == NULL) return NULL;
  f->latest_q = target_alias(f->latest, brume_function_arn(c->region, account, name, BRUME_LATEST));
  f->versions = brume_xcalloc(d->n_versions + 1, sizeof(*f->versions));
  for (size_t i = 0; i < d->n_versions; i++) {
    brume_fn_target *t = target_new(c, account, name, &d->versions[i], err);
    if (t == NULL) return NULL;
    cat_version *v = brume_xcalloc(1, sizeof(*v));
    v->version = brume_xstrdup(d->versions[i].version);
    v->target = t;
    f->versions[f->n_versions++] = v;
  }
  /* The document orders versions by number; bisection needs strcmp order. */
  qsort(f->versions, f->n_versions, sizeof(*f->versions), cmp_named);
  f->aliases = brume_xcalloc(d->n_aliases + 1, sizeof(*f->aliases));
  for (size_t i = 0; i < d->n_aliases; i++) {
    const brume_fn_alias *a = &d->aliases[i];
    /* brume_fn_doc_parse checked that both versions exist. */
    brume_fn_target *primary = find_version(f, a->version);
    brume_fn_target *additional =
        a->routing_version[0] ? find_version(f, a->routing_version) : NULL;
    BRUME_ENSURE(primary != NULL && (additional != NULL || a->routing_version[0] == '\0'));
    cat_alias *ca = brume_xcalloc(1, sizeof(*ca));
    ca->name = brume_xstrdup(a->name);
    ca->primary = target_alias(primary, brume_function_arn(c->region, account, name, a->name));
    if (additional)
      ca->additional =
          target_alias(additional, brume_function_arn(c->region, account, name, a->name));
    ca->weight = a->routing_weight;
    f->aliases[f->n_aliases++] = ca;
  }
  f->event_configs = brume_xcalloc(d->n_event_configs + 1, sizeof(*f->event_configs));
  memcpy(f->event_configs, d->event_configs, d->n_event_configs * sizeof(*f->event_configs));
  f->n_event_configs = d->n_event_configs;
  return brume_steal(&f);
}

/* Splits a document's key into account and name; -1 when it names no function. */
static int parse_key(const brume_catalog *c, const char *key,
                     char account[BRUME_ACCOUNT_ID_MAX + 1],
                     char name[BRUME_FUNCTION_NAME_MAX + 1]) {
  if (strncmp(key, c->prefix, c->prefix_len) != 0) return -1;
  const char *rest = key + c->prefix_len, *slash = strchr(rest, '/');
  if (slash == NULL || (size_t)(slash - rest) > BRUME_ACCOUNT_ID_MAX ||
      strlen(slash + 1) > BRUME_FUNCTION_NAME_MAX)
    return -1;
  memcpy(account, rest, (size_t)(slash - rest));
  account[slash - rest] = '\0';
  strcpy(name, slash + 1);
  if (brume_check_account_id(account, "account_id", NULL) < 0 ||
      brume_check_function_name(name, "function_name", NULL) < 0)
    return -1;
  return 0;
}

/* Builds the cat_fn of a put: NULL (with a warning) when the key or value is not a function's. */
static cat_fn *cat_fn_from_kv(brume_catalog *c, const brume_etcd_kv *kv) {
  char account[BRUME_ACCOUNT_ID_MAX + 1], name[BRUME_FUNCTION_NAME_MAX + 1], q[512], qr[512];
  if (parse_key(c, kv->key, account, name) < 0) {
    brume_warn("Ignoring a key under the functions prefix in etcd that names no function.",
               "key=%s", brume_log_quote(q, sizeof(q), kv->key));
    return NULL;
  }
  brume_autoptr(brume_err) err = NULL;
  brume_autoptr(brume_fn_doc) d = brume_fn_doc_parse(kv->value, kv->value_len, &err);
  cat_fn *f = d ? cat_fn_build(c, account, name, d, &err) : NULL;
  if (f == NULL)
    brume_warn("A function document in etcd cannot be used; the function cannot be invoked.",
               "key=%s mod_revision=%lld reason=%s", brume_log_quote(q, sizeof(q), kv->key),
               (long long)kv->mod_revision, brume_log_quote(qr, sizeof(qr), err->msg));
  return f;
}

/* Puts f in place of the function of key (f NULL: removes it). Returns what it replaced, which
 * the caller frees outside the lock. Under the write lock. */
static cat_fn *swap_fn(brume_catalog *c, const char *key, cat_fn *f) {
  bool found;
  size_t i = brume_sorted_find((void *const *)c->fns, c->n_fns, named_key, key, &found);
  cat_fn *old = found ? c->fns[i] : NULL;
  if (f && found) {
    c->fns[i] = f;
  } else if (f) {
    if (c->n_fns == c->cap_fns) {
      c->cap_fns = c->cap_fns ? 2 * c->cap_fns : 64;
      c->fns = brume_xrealloc(c->fns, c->cap_fns * sizeof(*c->fns));
    }
    memmove(&c->fns[i + 1], &c->fns[i], (c->n_fns - i) * sizeof(*c->fns));
    c->fns[i] = f;
    c->n_fns++;
  } else if (found) {
    memmove(&c->fns[i], &c->fns[i + 1], (c->n_fns - i - 1) * sizeof(*c->fns));
    c->n_fns--;
  }
  return old;
}

/* etcd_follow's load: replaces everything with what etcd holds now. */
static void load_all(void *user, const brume_etcd_kv *kvs, size_t n_kvs, bool again) {
  (void)again;
  brume_catalog *c = user;
  cat_fn **fns = brume_xcalloc(n_kvs + 1, sizeof(*fns));
  size_t n = 0;
  for (size_t i = 0; i < n_kvs; i++) {
    cat_fn *f = cat_fn_from_kv(c, &kvs[i]);
    if (f) fns[n++] = f;
  }
  /* Keys come sorted by etcd, and "<account>/<name>" keeps their order. */
  qsort(fns, n, sizeof(*fns), cmp_named);
  pthread_rwlock_wrlock(&c->lock);
  cat_fn **old = c->fns;
  size_t n_old = c->n_fns;
  c->fns = fns;
  c->n_fns = n;
  c->cap_fns = n_kvs + 1;
  pthread_rwlock_unlock(&c->lock);
  for (size_t i = 0; i < n_old; i++) cat_fn_free(old[i]);
  free(old);
}

static void apply_event(void *user, const brume_etcd_event *ev) {
  brume_catalog *c = user;
  cat_fn *f = ev->type == BRUME_ETCD_EVENT_PUT ? cat_fn_from_kv(c, &ev->kv) : NULL;
  char account[BRUME_ACCOUNT_ID_MAX + 1], name[BRUME_FUNCTION_NAME_MAX + 1];
  if (parse_key(c, ev->kv.key, account, name) < 0) {
    cat_fn_free(f);
    return;
  }
  char key[BRUME_ACCOUNT_ID_MAX + BRUME_FUNCTION_NAME_MAX + 2];
  snprintf(key, sizeof(key), "%s/%s", account, name);
  pthread_rwlock_wrlock(&c->lock);
  cat_fn *old = swap_fn(c, key, f);
  pthread_rwlock_unlock(&c->lock);
  cat_fn_free(old);
}

static void synced(void *user, int64_t revision) {
  brume_catalog *c = user;
  brume_revision_advance(&c->applied, revision);
}

/* ---- The API ---- */

brume_catalog *brume_catalog_new(const brume_catalog_opts *opts, brume_err **err) {
  brume_catalog *c = brume_xcalloc(1, sizeof(*c));
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  /* Lookups come in a steady stream; a change must not wait for a gap in it. */
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&c->lock, &attr);
  pthread_rwlockattr_destroy(&attr);
  brume_revision_init(&c->applied, 0);
  size_t plen = strlen(opts->prefix);
  while (plen > 0 && opts->prefix[plen - 1] == '/') plen--;
  c->prefix = brume_xasprintf("%.*s/functions/", (int)plen, opts->prefix);
  c->prefix_len = strlen(c->prefix);
  c->region = brume_xstrdup(opts->region ? opts->region : "local");
  size_t ulen = opts->code_url_base ? strlen(opts->code_url_base) : 0;
  while (ulen > 0 && opts->code_url_base[ulen - 1] == '/') ulen--;
  c->code_url_base = brume_xstrndup(opts->code_url_base ? opts->code_url_base : "", ulen);
  if (opts->env_key) {
    c->env_key = *opts->env_key;
    c->has_env_key = true;
  }
  c->etcd = opts->etcd;
  static const brume_etcd_follow_ops ops = {
      .what = "the function documents", .load = load_all, .apply = apply_event, .synced = synced};
  c->follow = brume_etcd_follow_start(c->etcd, c->prefix, &ops, c, err);
  if (c->follow == NULL) {
    brume_catalog_free(c);
    return NULL;
  }
  return c;
}

void brume_catalog_free(brume_catalog *c) {
  if (c == NULL) return;
  brume_etcd_follow_stop(c->follow);
  for (size_t i = 0; i < c->n_fns; i++) cat_fn_free(c->fns[i]);
  free(c->fns);
  free(c->prefix);
  free(c->region);
  free(c->code_url_base);
  OPENSSL_cleanse(&c->env_key, sizeof(c->env_key));
  pthread_rwlock_destroy(&c->lock);
  brume_revision_destroy(&c->applied);
  free(c);
}

int brume_catalog_resolve(brume_catalog *c, const char *account_id, const char *name,
                          const char *qualifier, double pick, const brume_fn_target **out,
                          brume_err **err) {
  *out = NULL;
  if (qualifier == NULL) qualifier = "";
  char key[BRUME_ACCOUNT_ID_MAX + BRUME_FUNCTION_NAME_MAX + 2];
  size_t na = strlen(account_id), nn = strlen(name);
  brume_fn_target *t = NULL;
  if (na <= BRUME_ACCOUNT_ID_MAX && nn <= BRUME_FUNCTION_NAME_MAX) {
    memcpy(key, account_id, na);
    key[na] = '/';
    memcpy(key + na + 1, name, nn + 1);
    pthread_rwlock_rdlock(&c->lock);
    bool found;
    size_t i = brume_sorted_find((void *const *)c->fns, c->n_fns, named_key, key, &found);
    if (found) {
      const cat_fn *f = c->fns[i];
      if (qualifier[0] == '\0') {
        t = f->latest;
      } else if (strcmp(qualifier, BRUME_LATEST) == 0) {
        t = f->latest_q;
      } else if (qualifier[0] >= '0' && qualifier[0] <= '9' && brume_is_version(qualifier)) {
        t = find_version(f, qualifier);
      } else {
        size_t j = brume_sorted_find((void *const *)f->aliases, f->n_aliases, named_key, qualifier,
                                     &found);
        if (found) {
          const cat_alias *a = f->aliases[j];
          t = a->additional && pick < a->weight ? a->additional : a->primary;
        }
      }
      if (t) target_ref(t);
    }
    pthread_rwlock_unlock(&c->lock);
  }
  if (t == NULL) {
    brume_autofree char *arn = brume_function_arn(c->region, account_id, name, qualifier);
    return brume_err_set(err, BRUME_NOT_FOUND, "ResourceNotFoundException: Function not found: %s",
                         arn);
  }
  *out = t;
  return 0;
}

static const char *cat_event_config_at(const void *f, size_t i) {
  return ((const cat_fn *)f)->event_configs[i].qualifier;
}

int brume_catalog_event_config(brume_catalog *c, const char *account_id, const char *name,
                               const char *qualifier, brume_fn_event_config *out) {
  brume_fn_event_config_init(out, qualifier);
  brume_autofree char *key = brume_xasprintf("%s/%s", account_id, name);
  int rc = -1;
  pthread_rwlock_rdlock(&c->lock);
  bool found;
  size_t i = brume_sorted_find((void *const *)c->fns, c->n_fns, named_key, key, &found);
  if (found) {
    const cat_fn *f = c->fns[i];
    size_t j =
        brume_sorted_search(f->n_event_configs, cat_event_config_at, f, out->qualifier, &found);
    rc = found;
    if (found) *out = f->event_configs[j];
  }
  pthread_rwlock_unlock(&c->lock);
  return rc;
}

int64_t brume_catalog_revision(brume_catalog *c) {
  return brume_revision_applied(&c->applied);
}

int brume_catalog_wait(brume_catalog *c, int64_t revision, int timeout_ms, brume_err **err) {
  if (!brume_revision_wait(&c->applied, revision, timeout_ms))
    return brume_err_set(err, BRUME_DEADLINE_EXCEEDED,
                         "the catalog has applied revision %lld, not yet %lld, after %d ms",
                         (long long)brume_revision_applied(&c->applied), (long long)revision,
                         timeout_ms);
  return 0;
}

json_t *brume_catalog_list_json(brume_catalog *c) {
  json_t *out = json_array();
  pthread_rwlock_rdlock(&c->lock);
  for (size_t i = 0; i < c->n_fns; i++) {
    const cat_fn *f = c->fns[i];
    const Brume__SandboxSpec *spec = brume_fn_target_spec(f->latest);
    json_t *versions = json_array(), *aliases = json_array();
    for (size_t v = 0; v < f->n_versions; v++)
      json_array_append_new(versions, json_string(f->versions[v]->version));
    for (size_t a = 0; a < f->n_aliases; a++) {
      const cat_alias *al = f->aliases[a];
      json_array_append_new(
          aliases,
          json_pack("{s:s, s:s, s:o, s:f}", "name", al->name, "function_version",
                    brume_fn_target_spec(al->primary)->function->version, "additional_version",
                    al->additional
                        ? json_string(brume_fn_target_spec(al->additional)->function->version)
                        : json_null(),
                    "additional_weight", al->additional ? al->weight : 0.0));
    }
    json_array_append_new(
        out, json_pack("{s:s, s:s, s:I, s:I, s:o, s:o}", "account_id", spec->function->account_id,
                       "function_name", spec->function->function_name, "memory_mib",
                       (json_int_t)spec->resources->memory_mib, "timeout_ms",
                       (json_int_t)spec->timeout_ms, "versions", versions, "aliases", aliases));
  }
  pthread_rwlock_unlock(&c->lock);
  return out;
}

json_t *brume_catalog_code_digests(brume_catalog *c) {
  json_t *set = json_object();
  pthread_rwlock_rdlock(&c->lock);
  for (size_t i = 0; i < c->n_fns; i++) {
    const cat_fn *f = c->fns[i];
    json_object_set_new(set, brume_fn_target_spec(f->latest)->code->sha256, json_true());
    for (size_t v = 0; v < f->n_versions; v++)
      json_object_set_new(set, brume_fn_target_spec(f->versions[v]->target)->code->sha256,
                          json_true());
  }
  pthread_rwlock_unlock(&c->lock);
  json_t *out = json_array();
  const char *sha;
  json_t *v;
  json_object_foreach(set, sha, v) json_array_append_new(out, json_string(sha));
  json_decref(set);
  return out;
}
