/* The collector of GetState's figures (state_metrics.h).
 *
 * Each scrape gathers one entry per account and per function from the three sources (the limits
 * store's names, the engine's records, the blocks in etcd), each source filling its own fields;
 * sorted, entries for the same name merge by adding their fields. The gauges are then cleared and
 * set afresh from the merged list, which is how a name that left every source leaves /metrics. */
#include "state_metrics.h"

#include <stdlib.h>
#include <string.h>

#include "bucket_share.h"
#include "clock.h"
#include "holdings.h"
#include "log.h"
#include "mem.h"

enum {
  G_ACCOUNT_LIMIT,
  G_ACCOUNT_UNRESERVED,
  G_ACCOUNT_RESERVED,
  G_ACCOUNT_PROVISIONED,
  G_ACCOUNT_IN_USE,
  G_ACCOUNT_HELD,
  G_ACCOUNT_CLUSTER_HELD,
  G_ACCOUNT_SCALING_TOKENS,
  G_ACCOUNT_SCALING_CAPACITY,
  G_FUNCTION_RESERVED,
  G_FUNCTION_PROVISIONED,
  G_FUNCTION_IN_USE,
  G_FUNCTION_HELD,
  G_FUNCTION_CLUSTER_HELD,
  G_FUNCTION_SCALING_TOKENS,
  G_FUNCTION_SCALING_CAPACITY,
  G_COUNT
};

static const brume_gauge_spec gauge_specs[G_COUNT] = {
    [G_ACCOUNT_LIMIT] = {"brume_counting_account_concurrency_limit",
                         "The account's concurrency limit (ConcurrentExecutions).",
                         {"account"}},
    [G_ACCOUNT_UNRESERVED] = {"brume_counting_account_unreserved_limit",
                              "The account's limit minus every function's reserved concurrency: "
                              "the pool of the functions without reserved concurrency.",
                              {"account"}},
    [G_ACCOUNT_RESERVED] = {"brume_counting_account_reserved_concurrency",
                            "Sum of the reserved concurrency of the account's functions.",
                            {"account"}},
    [G_ACCOUNT_PROVISIONED] = {"brume_counting_account_provisioned_concurrency",
                               "Sum of the provisioned concurrency configured on the account's "
                               "versions and aliases.",
                               {"account"}},
    [G_ACCOUNT_IN_USE] = {"brume_counting_account_in_use",
                          "Tokens of the account this counting daemon granted and has not had "
                          "back.",
                          {"account"}},
    [G_ACCOUNT_HELD] = {"brume_counting_account_held",
                        "Concurrency of the account this counting daemon holds in etcd (its "
                        "blocks of the unreserved pool and of reserved functions).",
                        {"account"}},
    [G_ACCOUNT_CLUSTER_HELD] = {"brume_counting_account_cluster_held",
                                "Concurrency of the account all counting daemons hold in etcd "
                                "(the same on every daemon).",
                                {"account"}},
    [G_ACCOUNT_SCALING_TOKENS] = {"brume_counting_account_scaling_tokens",
                                  "Tokens in the account's scaling bucket now: new execution "
                                  "environments that may start at once (account scaling model).",
                                  {"account"}},
    [G_ACCOUNT_SCALING_CAPACITY] = {"brume_counting_account_scaling_capacity",
                                    "The most the account's scaling bucket holds (the burst).",
                                    {"account"}},
    [G_FUNCTION_RESERVED] = {"brume_counting_function_reserved_concurrency",
                             "The function's reserved concurrency (only functions that have one; "
                             "0 means switched off).",
                             {"account", "function"}},
    [G_FUNCTION_PROVISIONED] = {"brume_counting_function_provisioned_concurrency",
                                "Sum of the provisioned concurrency on the function's versions "
                                "and aliases.",
                                {"account", "function"}},
    [G_FUNCTION_IN_USE] = {"brume_counting_function_in_use",
                           "Tokens of the function this counting daemon granted and has not had "
                           "back.",
                           {"account", "function"}},
    [G_FUNCTION_HELD] = {"brume_counting_function_held",
                         "Concurrency of the function's reserved pool this counting daemon holds "
                         "in etcd.",
                         {"account", "function"}},
    [G_FUNCTION_CLUSTER_HELD] = {"brume_counting_function_cluster_held",
                                 "Concurrency of the function's reserved pool all counting "
                                 "daemons hold in etcd (the same on every daemon).",
                                 {"account", "function"}},
    [G_FUNCTION_SCALING_TOKENS] = {"brume_counting_function_scaling_tokens",
                                   "Tokens in the function's scaling bucket now (function "
                                   "scaling model).",
                                   {"account", "function"}},
    [G_FUNCTION_SCALING_CAPACITY] = {"brume_counting_function_scaling_capacity",
                                     "The most the function's scaling bucket holds (the burst).",
                                     {"account", "function"}},
};

struct brume_state_metrics {
  brume_state_metrics_opts o;
  char *root;
  brume_gauge *g[G_COUNT];
  bool etcd_failing; /* warned once; told again when etcd answers */
};

/* One account (function NULL) or function, and what the sources said of it. */
typedef struct entry {
  char *account, *function;
  uint64_t in_use, held, cluster_held;
} entry;

typedef struct entries {
  entry *v;
  size_t n, cap;
} entries;

static entry *push(entries *es, const char *account, const char *function) {
  if (es->n == es->cap) {
    es->cap = es->cap ? 2 * es->cap : 64;
    es->v = brume_xrealloc(es->v, es->cap * sizeof(*es->v));
  }
  entry *e = &es->v[es->n++];
  *e = (entry){.account = brume_xstrdup(account),
               .function = function ? brume_xstrdup(function) : NULL};
  return e;
}

static void push_configured(void *user, const char *account, const char *function) {
  push(user, account, function);
}

/* Under the engine's mutex: copies only. A function's block counts in its account's held too. */
static void push_use(void *user, const brume_engine_use *u) {
  entry *e = push(user, u->account_id, u->function_name);
  e->in_use = u->in_use;
  e->held = u->held;
  if (u->function_name) push(user, u->account_id, NULL)->held = u->held;
}

static int cmp_entry(const void *a, const void *b) {
  const entry *x = a, *y = b;
  int c = strcmp(x->account, y->account);
  if (c || x->function == y->function) return c;
  if (x->function == NULL || y->function == NULL) return x->function == NULL ? -1 : 1;
  return strcmp(x->function, y->function);
}

/* Sorts es and merges the entries of each name, adding their fields. */
static void merge(entries *es) {
  if (es->n == 0) return;
  qsort(es->v, es->n, sizeof(*es->v), cmp_entry);
  size_t k = 0;
  for (size_t i = 1; i < es->n; i++) {
    entry *last = &es->v[k], *e = &es->v[i];
    if (cmp_entry(last, e) != 0) {
      es->v[++k] = *e;
      continue;
    }
    last->in_use += e->in_use;
    last->held += e->held;
    last->cluster_held += e->cluster_held;
    free(e->account);
    free(e->function);
  }
  es->n = k + 1;
}

static void entries_free(entries *es) {
  for (size_t i = 0; i < es->n; i++) {
    free(es->v[i].account);
    free(es->v[i].function);
  }
  free(es->v);
}

static void etcd_failed(brume_state_metrics *m, const char *what, const brume_err *err) {
  if (m->etcd_failing) return;
  m->etcd_failing = true;
  char q[512];
  brume_warn(
      "etcd did not answer a scrape of /metrics: the cluster-wide figures are left out "
      "until it does.",
      "read=%s err=%s", what, brume_log_quote(q, sizeof(q), err->msg));
}

/* Every block under <root>count/ ("<account>/unreserved/<daemon>" or
 * "<account>/fn/<function>/<daemon>"), as cluster_held of its account and, for a reserved pool,
 * of its function. False when etcd did not answer. */
static bool push_blocks(brume_state_metrics *m, entries *es) {
  brume_autofree char *prefix = brume_xasprintf("%scount/", m->root);
  brume_autoptr(brume_err) err = NULL;
  brume_autoptr(brume_etcd_range) r = brume_etcd_get_prefix(m->o.etcd, prefix, &err);
  if (r == NULL) {
    etcd_failed(m, prefix, err);
    return false;
  }
  size_t plen = strlen(prefix);
  for (size_t i = 0; i < r->n; i++) {
    const brume_etcd_kv *kv = &r->kvs[i];
    uint32_t block;
    if (kv->key_len <= plen || !brume_holdings_parse_block(kv->value, kv->value_len, &block))
      continue; /* not a block: the engine's grows report it */
    brume_autofree char *rest = brume_xstrdup(kv->key + plen);
    char *slash = strchr(rest, '/');
    if (slash == NULL || slash == rest) continue;
    *slash = '\0';
    char *pool = slash + 1;
    if (strncmp(pool, "unreserved/", 11) == 0) {
      push(es, rest, NULL)->cluster_held = block;
    } else if (strncmp(pool, "fn/", 3) == 0) {
      char *fn = pool + 3, *end = strchr(fn, '/');
      if (end == NULL || end == fn) continue;
      *end = '\0';
      push(es, rest, NULL)->cluster_held = block;
      push(es, rest, fn)->cluster_held = block;
    }
  }
  return true;
}

static int cmp_kv_key(const void *key, const void *kv) {
  return strcmp(key, ((const brume_etcd_kv *)kv)->key);
}

/* The buckets of the scaling model in force, read with one range read; NULL when etcd did not
 * answer. */
static brume_etcd_range *read_buckets(brume_state_metrics *m, brume_scaling_model model) {
  brume_autofree char *prefix = brume_xasprintf(
      "%sscaling/%s/", m->root, model == BRUME_SCALING_ACCOUNT ? "account" : "function");
  brume_autoptr(brume_err) err = NULL;
  brume_etcd_range *r = brume_etcd_get_prefix(m->o.etcd, prefix, &err);
  if (r == NULL) etcd_failed(m, prefix, err);
  return r;
}

/* Sets the scaling gauges of e from its bucket in r (absent: a full bucket). */
static void set_bucket(brume_state_metrics *m, const entry *e, const brume_etcd_range *r,
                       const brume_bucket_params *p, int64_t now_ms) {
  brume_autofree char *key =
      e->function ? brume_xasprintf("%sscaling/function/%s/%s", m->root, e->account, e->function)
                  : brume_xasprintf("%sscaling/account/%s", m->root, e->account);
  /* An empty range has no array at all, which bsearch must not be given. */
  const brume_etcd_kv *kv = r->n ? bsearch(key, r->kvs, r->n, sizeof(*r->kvs), cmp_kv_key) : NULL;
  brume_bucket_state s;
  if (brume_bucket_share_state_of(key, kv, p, now_ms, &s, NULL) < 0)
    return; /* p is invalid: the limits store never lets one through */
  if (e->function) {
    brume_gauge_set(m->g[G_FUNCTION_SCALING_TOKENS], s.level, e->account, e->function);
    brume_gauge_set(m->g[G_FUNCTION_SCALING_CAPACITY], s.capacity, e->account, e->function);
  } else {
    brume_gauge_set(m->g[G_ACCOUNT_SCALING_TOKENS], s.level, e->account);
    brume_gauge_set(m->g[G_ACCOUNT_SCALING_CAPACITY], s.capacity, e->account);
  }
}

static void set_account(brume_state_metrics *m, const entry *e, bool cluster) {
  brume_account_limits al;
  brume_limits_store_account(m->o.limits, e->account, &al);
  brume_gauge **g = m->g;
  brume_gauge_set(g[G_ACCOUNT_LIMIT], al.limit, e->account);
  brume_gauge_set(g[G_ACCOUNT_UNRESERVED], brume_concurrency_unreserved(&al), e->account);
  brume_gauge_set(g[G_ACCOUNT_RESERVED], al.reserved_total, e->account);
  brume_gauge_set(g[G_ACCOUNT_PROVISIONED], al.provisioned_total, e->account);
  brume_gauge_set(g[G_ACCOUNT_IN_USE], (double)e->in_use, e->account);
  brume_gauge_set(g[G_ACCOUNT_HELD], (double)e->held, e->account);
  if (cluster) brume_gauge_set(g[G_ACCOUNT_CLUSTER_HELD], (double)e->cluster_held, e->account);
}

static void set_function(brume_state_metrics *m, const entry *e, bool cluster) {
  brume_function_limits fl;
  brume_limits_store_function(m->o.limits, e->account, e->function, &fl);
  brume_gauge **g = m->g;
  const char *a = e->account, *f = e->function;
  if (fl.reserved) brume_gauge_set(g[G_FUNCTION_RESERVED], fl.reserved_concurrency, a, f);
  brume_gauge_set(g[G_FUNCTION_PROVISIONED], fl.provisioned, a, f);
  brume_gauge_set(g[G_FUNCTION_IN_USE], (double)e->in_use, a, f);
  brume_gauge_set(g[G_FUNCTION_HELD], (double)e->held, a, f);
  if (cluster) brume_gauge_set(g[G_FUNCTION_CLUSTER_HELD], (double)e->cluster_held, a, f);
}

static void collect(void *user) {
  brume_state_metrics *m = user;
  entries es = {0};
  brume_limits_store_each(m->o.limits, push_configured, &es);
  brume_engine_each_use(m->o.engine, push_use, &es);
  bool cluster = push_blocks(m, &es);
  merge(&es);

  brume_cluster_limits cl;
  brume_limits_store_cluster(m->o.limits, &cl);
  brume_etcd_range *buckets = cluster ? read_buckets(m, cl.model) : NULL;
  if (buckets && m->etcd_failing) {
    m->etcd_failing = false;
    brume_info("etcd answers a scrape of /metrics again.", "root=%s", m->root);
  }
  const brume_bucket_params *bp =
      cl.model == BRUME_SCALING_ACCOUNT ? &cl.account_bucket : &cl.function_bucket;
  int64_t now_ms = brume_wall_ms();

  brume_gauges_clear(m->g, G_COUNT);
  for (size_t i = 0; i < es.n; i++) {
    const entry *e = &es.v[i];
    if (e->function)
      set_function(m, e, cluster);
    else
      set_account(m, e, cluster);
    bool model_bucket = (e->function != NULL) == (cl.model == BRUME_SCALING_FUNCTION);
    if (buckets && model_bucket) set_bucket(m, e, buckets, bp, now_ms);
  }
  brume_etcd_range_free(buckets);
  entries_free(&es);
}

brume_state_metrics *brume_state_metrics_start(const brume_state_metrics_opts *opts) {
  brume_state_metrics *m = brume_xcalloc(1, sizeof(*m));
  m->o = *opts;
  m->root = brume_xstrdup(opts->root);
  brume_metrics_gauges(opts->metrics, gauge_specs, G_COUNT, m->g);
  brume_metrics_add_collect(opts->metrics, collect, m);
  return m;
}

void brume_state_metrics_stop(brume_state_metrics *m) {
  if (m == NULL) return;
  brume_metrics_remove_collect(m->o.metrics, collect, m);
  brume_gauges_clear(m->g, G_COUNT);
  free(m->root);
  free(m);
}
