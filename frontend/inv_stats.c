#include "inv_stats.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "names.h"
#include "sorted.h"

#define W BRUME_INV_STATS_WINDOW_S
#define MAX_REASONS 4 /* counting.proto has three ThrottleReasons; one spare */

typedef struct counts {
  uint64_t total, warm, cold, ok, function_errors, errors, throttled;
} counts;

/* One series of points, a ring indexed by second % W. limit and ceiling are -1 when unknown. */
typedef struct series {
  int32_t conc[W], limit[W], ceiling[W];
  int64_t first_sec;       /* the first closed second this series existed for */
  int64_t last_active_sec; /* the last second with a point above 0 (or in flight) */
  int32_t in_flight, peak; /* now, and the most since the last closed second */
  int64_t pend_limit, pend_ceiling;
} series;

typedef struct throttle_count {
  char *reason;
  uint64_t count;
  int64_t last_unix_ms;
} throttle_count;

typedef struct fn_stats {
  char *key; /* first: "<account>/<function>", the sort key */
  char *account, *name;
  counts c;
  throttle_count thr[MAX_REASONS];
  double dur_ms[BRUME_INV_STATS_DURATIONS];
  size_t dur_n, dur_pos;
  series ser;
} fn_stats;

typedef struct acct_stats {
  char *account; /* first: the sort key */
  counts c;
  series ser;
} acct_stats;

typedef struct recent_entry {
  char request_id[80];
  char account[BRUME_ACCOUNT_ID_MAX + 1];
  char function[BRUME_FUNCTION_NAME_MAX + 1];
  char version[32];
  char start[8];
  char outcome[16];
  char error[256]; /* "" when ok */
  int64_t duration_us, finished_unix_ms;
} recent_entry;

typedef struct ring {
  recent_entry e[BRUME_INV_STATS_RECENT];
  size_t n, next;
} ring;

struct brume_inv_stats {
  pthread_mutex_t mu;
  fn_stats **fns;
  size_t n_fns, cap_fns;
  acct_stats **accts;
  size_t n_accts, cap_accts;
  counts total;
  int64_t in_flight;
  ring recent, errors;
  int64_t last_sec; /* the last closed second; 0 before the first sample */
  brume_metrics *metrics;
  brume_counter *m_invocations;
  brume_counter *m_throttles;
  brume_histogram *m_duration;
  brume_gauge *m_in_flight;
};

static const char *first_key(const void *item) {
  return *(char *const *)item;
}

static void series_init(series *se, int64_t last_sec) {
  for (size_t i = 0; i < W; i++) se->limit[i] = se->ceiling[i] = -1;
  se->first_sec = last_sec + 1;
  se->last_active_sec = -1;
  se->pend_limit = se->pend_ceiling = -1;
}

/* Inserts item (whose first member is its key) into a sorted array of pointers at index i. */
static void insert_at(void ***items, size_t *n, size_t *cap, size_t i, void *item) {
  if (*n == *cap) {
    *cap = *cap ? *cap * 2 : 16;
    *items = brume_xrealloc(*items, *cap * sizeof(void *));
  }
  memmove(&(*items)[i + 1], &(*items)[i], (*n - i) * sizeof(void *));
  (*items)[i] = item;
  (*n)++;
}

/* Under mu: the account's stats, created on first use. */
static acct_stats *account_locked(brume_inv_stats *s, const char *account) {
  bool found;
  size_t i = brume_sorted_find((void *const *)s->accts, s->n_accts, first_key, account, &found);
  if (found) return s->accts[i];
  acct_stats *a = brume_xcalloc(1, sizeof(*a));
  a->account = brume_xstrdup(account);
  series_init(&a->ser, s->last_sec);
  insert_at((void ***)&s->accts, &s->n_accts, &s->cap_accts, i, a);
  return a;
}

/* Under mu: the function's stats, created on first use unless there are too many (NULL) or
 * create is false. */
static fn_stats *function_locked(brume_inv_stats *s, const char *account, const char *name,
                                 bool create) {
  char key[BRUME_ACCOUNT_ID_MAX + BRUME_FUNCTION_NAME_MAX + 2];
  snprintf(key, sizeof(key), "%s/%s", account, name);
  bool found;
  size_t i = brume_sorted_find((void *const *)s->fns, s->n_fns, first_key, key, &found);
  if (found) return s->fns[i];
  if (!create || s->n_fns >= BRUME_INV_STATS_MAX_FUNCTIONS) return NULL;
  fn_stats *f = brume_xcalloc(1, sizeof(*f));
  f->key = brume_xstrdup(key);
  f->account = brume_xstrdup(account);
  f->name = brume_xstrdup(name);
  series_init(&f->ser, s->last_sec);
  insert_at((void ***)&s->fns, &s->n_fns, &s->cap_fns, i, f);
  return f;
}

static void collect_in_flight(void *user) {
  brume_inv_stats *s = user;
  brume_gauge_clear(s->m_in_flight);
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->n_fns; i++)
    brume_gauge_set(s->m_in_flight, s->fns[i]->ser.in_flight, s->fns[i]->account, s->fns[i]->name);
  pthread_mutex_unlock(&s->mu);
}

brume_inv_stats *brume_inv_stats_new(brume_metrics *metrics) {
  brume_inv_stats *s = brume_xcalloc(1, sizeof(*s));
  pthread_mutex_init(&s->mu, NULL);
  s->metrics = metrics;
  if (metrics == NULL) return s;
  s->m_invocations = brume_metrics_counter(
      metrics, "brume_frontend_function_invocations_total",
      "Synchronous invocations this frontend answered, by account, function, start (warm, cold, "
      "none) and outcome (ok, function_error, throttled, error).",
      "account", "function", "start", "outcome", NULL);
  s->m_throttles = brume_metrics_counter(
      metrics, "brume_frontend_function_throttles_total",
      "Invocations this frontend answered throttled, by account, function and ThrottleReason.",
      "account", "function", "reason", NULL);
  s->m_duration = brume_metrics_histogram(
      metrics, "brume_frontend_function_duration_seconds",
      "Time from an Invoke call's arrival to its answer, for invocations that had a sandbox, by "
      "account and function.",
      NULL, 0, "account", "function", NULL);
  s->m_in_flight = brume_metrics_gauge(metrics, "brume_frontend_function_in_flight",
                                       "Invocations in flight in this frontend, by account and "
                                       "function.",
                                       "account", "function", NULL);
  brume_metrics_add_collect(metrics, collect_in_flight, s);
  return s;
}

void brume_inv_stats_free(brume_inv_stats *s) {
  if (s == NULL) return;
  if (s->metrics) brume_metrics_remove_collect(s->metrics, collect_in_flight, s);
  for (size_t i = 0; i < s->n_fns; i++) {
    fn_stats *f = s->fns[i];
    for (size_t r = 0; r < MAX_REASONS; r++) free(f->thr[r].reason);
    free(f->key);
    free(f->account);
    free(f->name);
    free(f);
  }
  for (size_t i = 0; i < s->n_accts; i++) {
    free(s->accts[i]->account);
    free(s->accts[i]);
  }
  free(s->fns);
  free(s->accts);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

static void series_begin(series *se) {
  se->in_flight++;
  if (se->in_flight > se->peak) se->peak = se->in_flight;
}

void brume_inv_stats_begin(brume_inv_stats *s, const char *account_id, const char *function_name) {
  pthread_mutex_lock(&s->mu);
  s->in_flight++;
  series_begin(&account_locked(s, account_id)->ser);
  fn_stats *f = function_locked(s, account_id, function_name, true);
  if (f) series_begin(&f->ser);
  pthread_mutex_unlock(&s->mu);
}

static void count(counts *c, const brume_inv_outcome *o) {
  c->total++;
  if (strcmp(o->start, "warm") == 0) c->warm++;
  if (strcmp(o->start, "cold") == 0) c->cold++;
  if (strcmp(o->outcome, "ok") == 0)
    c->ok++;
  else if (strcmp(o->outcome, "function_error") == 0)
    c->function_errors++;
  else if (strcmp(o->outcome, "throttled") == 0)
    c->throttled++;
  else
    c->errors++;
}

static void ring_push(ring *r, const brume_inv_outcome *o) {
  recent_entry *e = &r->e[r->next];
  snprintf(e->request_id, sizeof(e->request_id), "%s", o->request_id ? o->request_id : "");
  snprintf(e->account, sizeof(e->account), "%s", o->account_id);
  snprintf(e->function, sizeof(e->function), "%s", o->function_name);
  snprintf(e->version, sizeof(e->version), "%s", o->version ? o->version : "");
  snprintf(e->start, sizeof(e->start), "%s", o->start);
  snprintf(e->outcome, sizeof(e->outcome), "%s", o->outcome);
  snprintf(e->error, sizeof(e->error), "%s", o->error ? o->error : "");
  e->duration_us = o->duration_us;
  e->finished_unix_ms = o->finished_unix_ms;
  r->next = (r->next + 1) % BRUME_INV_STATS_RECENT;
  if (r->n < BRUME_INV_STATS_RECENT) r->n++;
}

static void count_throttle(fn_stats *f, const char *reason, int64_t now_ms) {
  for (size_t r = 0; r < MAX_REASONS; r++) {
    if (f->thr[r].reason == NULL) f->thr[r].reason = brume_xstrdup(reason);
    if (strcmp(f->thr[r].reason, reason) == 0) {
      f->thr[r].count++;
      f->thr[r].last_unix_ms = now_ms;
      return;
    }
  }
}

void brume_inv_stats_end(brume_inv_stats *s, const brume_inv_outcome *o) {
  bool had_sandbox = strcmp(o->start, "none") != 0;
  bool throttled = o->throttle_reason != NULL;
  int d = o->admitted ? 1 : 0;
  pthread_mutex_lock(&s->mu);
  s->in_flight -= d;
  count(&s->total, o);
  acct_stats *a = account_locked(s, o->account_id);
  a->ser.in_flight -= d;
  count(&a->c, o);
  /* A function is tracked from its first end or admission, up to the cap. */
  fn_stats *f = function_locked(s, o->account_id, o->function_name, true);
  if (f) {
    f->ser.in_flight -= d;
    count(&f->c, o);
    if (throttled) count_throttle(f, o->throttle_reason, o->finished_unix_ms);
    if (had_sandbox) {
      f->dur_ms[f->dur_pos] = (double)o->duration_us / 1000.0;
      f->dur_pos = (f->dur_pos + 1) % BRUME_INV_STATS_DURATIONS;
      if (f->dur_n < BRUME_INV_STATS_DURATIONS) f->dur_n++;
    }
  }
  ring_push(&s->recent, o);
  if (strcmp(o->outcome, "ok") != 0) ring_push(&s->errors, o);
  pthread_mutex_unlock(&s->mu);

  if (s->metrics == NULL || f == NULL) return; /* untracked functions stay out of the labels */
  brume_counter_inc(s->m_invocations, 1, o->account_id, o->function_name, o->start, o->outcome);
  if (throttled)
    brume_counter_inc(s->m_throttles, 1, o->account_id, o->function_name, o->throttle_reason);
  if (had_sandbox)
    brume_histogram_observe(s->m_duration, (double)o->duration_us / 1e6, o->account_id,
                            o->function_name);
}

/* ---- the concurrency series ---- */

static void series_close(series *se, int64_t sec) {
  size_t i = (size_t)(sec % W);
  se->conc[i] = se->peak;
  se->limit[i] = (int32_t)se->pend_limit;
  se->ceiling[i] = (int32_t)se->pend_ceiling;
  if (se->peak > 0) se->last_active_sec = sec;
  se->peak = se->in_flight; /* what is still in flight counts in the next second too */
}

void brume_inv_stats_sample(brume_inv_stats *s, int64_t now_unix_ms) {
  int64_t sec = now_unix_ms / 1000;
  pthread_mutex_lock(&s->mu);
  int64_t from = s->last_sec ? s->last_sec + 1 : sec;
  if (from < sec - W + 1) from = sec - W + 1;
  for (int64_t t = from; t <= sec; t++) {
    for (size_t i = 0; i < s->n_accts; i++) series_close(&s->accts[i]->ser, t);
    for (size_t i = 0; i < s->n_fns; i++) series_close(&s->fns[i]->ser, t);
  }
  for (size_t i = 0; i < s->n_accts; i++)
    s->accts[i]->ser.pend_limit = s->accts[i]->ser.pend_ceiling = -1;
  for (size_t i = 0; i < s->n_fns; i++) s->fns[i]->ser.pend_limit = -1;
  if (sec > s->last_sec) s->last_sec = sec;
  pthread_mutex_unlock(&s->mu);
}

static bool active(const brume_inv_stats *s, const series *se) {
  return se->in_flight > 0 || se->peak > 0 || se->last_active_sec > s->last_sec - W;
}

json_t *brume_inv_stats_active(brume_inv_stats *s) {
  json_t *out = json_array();
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->n_accts; i++)
    if (active(s, &s->accts[i]->ser))
      json_array_append_new(out, json_pack("{s:s}", "account_id", s->accts[i]->account));
  for (size_t i = 0; i < s->n_fns; i++)
    if (active(s, &s->fns[i]->ser))
      json_array_append_new(out, json_pack("{s:s, s:s}", "account_id", s->fns[i]->account,
                                           "function_name", s->fns[i]->name));
  pthread_mutex_unlock(&s->mu);
  return out;
}

static int32_t clamp32(int64_t v) {
  return v < 0 ? -1 : v > INT32_MAX ? INT32_MAX : (int32_t)v;
}

void brume_inv_stats_set_account_limits(brume_inv_stats *s, const char *account_id, int64_t limit,
                                        int64_t ceiling) {
  pthread_mutex_lock(&s->mu);
  bool found;
  size_t i = brume_sorted_find((void *const *)s->accts, s->n_accts, first_key, account_id, &found);
  if (found) {
    s->accts[i]->ser.pend_limit = clamp32(limit);
    s->accts[i]->ser.pend_ceiling = clamp32(ceiling);
  }
  pthread_mutex_unlock(&s->mu);
}

void brume_inv_stats_set_function_reserved(brume_inv_stats *s, const char *account_id,
                                           const char *function_name, int64_t reserved) {
  pthread_mutex_lock(&s->mu);
  fn_stats *f = function_locked(s, account_id, function_name, false);
  if (f) f->ser.pend_limit = clamp32(reserved);
  pthread_mutex_unlock(&s->mu);
}

/* ---- JSON ---- */

static json_t *counts_json(const counts *c) {
  return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "total", (json_int_t)c->total, "warm",
                   (json_int_t)c->warm, "cold", (json_int_t)c->cold, "ok", (json_int_t)c->ok,
                   "function_errors", (json_int_t)c->function_errors, "errors",
                   (json_int_t)c->errors, "throttled", (json_int_t)c->throttled);
}

json_t *brume_inv_stats_totals_json(brume_inv_stats *s) {
  pthread_mutex_lock(&s->mu);
  json_t *o = json_pack("{s:I, s:o}", "in_flight", (json_int_t)s->in_flight, "invocations",
                        counts_json(&s->total));
  pthread_mutex_unlock(&s->mu);
  return o;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Milliseconds to the microsecond: what the durations were measured to. */
static double ms3(double ms) {
  return round(ms * 1000.0) / 1000.0;
}

/* The nearest-rank percentile p (0-1] of sorted[0..n). */
static double percentile(const double *sorted, size_t n, double p) {
  size_t rank = (size_t)ceil(p * (double)n);
  return ms3(sorted[rank ? rank - 1 : 0]);
}

json_t *brume_inv_stats_function_json(brume_inv_stats *s, const char *account_id,
                                      const char *function_name) {
  static const counts zero;
  double sorted[BRUME_INV_STATS_DURATIONS];
  pthread_mutex_lock(&s->mu);
  fn_stats *f = function_locked(s, account_id, function_name, false);
  size_t n = f ? f->dur_n : 0;
  if (n) memcpy(sorted, f->dur_ms, n * sizeof(double));
  json_t *reasons = json_object();
  for (size_t r = 0; f && r < MAX_REASONS && f->thr[r].reason; r++)
    json_object_set_new(reasons, f->thr[r].reason, json_integer((json_int_t)f->thr[r].count));
  json_t *o =
      json_pack("{s:I, s:o, s:o}", "in_flight", (json_int_t)(f ? f->ser.in_flight : 0),
                "invocations", counts_json(f ? &f->c : &zero), "throttles_by_reason", reasons);
  pthread_mutex_unlock(&s->mu);
  qsort(sorted, n, sizeof(double), cmp_double);
  json_object_set_new(
      o, "duration_ms",
      json_pack("{s:o, s:o, s:I}", "p50", n ? json_real(percentile(sorted, n, 0.50)) : json_null(),
                "p99", n ? json_real(percentile(sorted, n, 0.99)) : json_null(), "samples",
                (json_int_t)n));
  return o;
}

int64_t brume_inv_stats_account_in_flight(brume_inv_stats *s, const char *account_id) {
  pthread_mutex_lock(&s->mu);
  bool found;
  size_t i = brume_sorted_find((void *const *)s->accts, s->n_accts, first_key, account_id, &found);
  int64_t n = found ? s->accts[i]->ser.in_flight : 0;
  pthread_mutex_unlock(&s->mu);
  return n;
}

static json_t *ring_json(const ring *r, size_t limit) {
  json_t *a = json_array();
  for (size_t k = 0; k < r->n && k < limit; k++) {
    const recent_entry *e =
        &r->e[(r->next + BRUME_INV_STATS_RECENT - 1 - k) % BRUME_INV_STATS_RECENT];
    json_array_append_new(
        a, json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:f, s:o, s:I}", "request_id", e->request_id,
                     "account_id", e->account, "function_name", e->function, "version",
                     e->version[0] ? json_string(e->version) : json_null(), "start", e->start,
                     "outcome", e->outcome, "duration_ms", ms3((double)e->duration_us / 1000.0),
                     "error", e->error[0] ? json_string(e->error) : json_null(), "finished_unix_ms",
                     (json_int_t)e->finished_unix_ms));
  }
  return a;
}

json_t *brume_inv_stats_invocations_json(brume_inv_stats *s, size_t limit) {
  if (limit < 1) limit = 1;
  if (limit > BRUME_INV_STATS_RECENT) limit = BRUME_INV_STATS_RECENT;
  pthread_mutex_lock(&s->mu);
  json_t *o = json_pack("{s:o, s:o}", "recent", ring_json(&s->recent, limit), "errors",
                        ring_json(&s->errors, limit));
  pthread_mutex_unlock(&s->mu);
  return o;
}

static int cmp_last_desc(const void *a, const void *b) {
  json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "last_unix_ms"));
  json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "last_unix_ms"));
  return (x < y) - (x > y);
}

json_t *brume_inv_stats_throttles_json(brume_inv_stats *s) {
  size_t n = 0, cap = 16;
  json_t **rows = brume_xcalloc(cap, sizeof(json_t *));
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->n_fns; i++) {
    const fn_stats *f = s->fns[i];
    for (size_t r = 0; r < MAX_REASONS && f->thr[r].reason; r++) {
      if (n == cap) rows = brume_xrealloc(rows, (cap *= 2) * sizeof(json_t *));
      rows[n++] =
          json_pack("{s:s, s:s, s:s, s:I, s:I}", "account_id", f->account, "function_name", f->name,
                    "reason", f->thr[r].reason, "count", (json_int_t)f->thr[r].count,
                    "last_unix_ms", (json_int_t)f->thr[r].last_unix_ms);
    }
  }
  pthread_mutex_unlock(&s->mu);
  qsort(rows, n, sizeof(json_t *), cmp_last_desc);
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(a, rows[i]);
  free(rows);
  return a;
}

/* The points of one ring from second start to end, oldest first; -1 (unknown) as null, and
 * seconds before the series existed as 0 (nothing was in flight) or null (no limit known). */
static json_t *points_json(const int32_t *ring, const series *se, int64_t start, int64_t end,
                           bool is_count) {
  json_t *a = json_array();
  for (int64_t t = start; t <= end; t++) {
    int32_t v = t < se->first_sec ? (is_count ? 0 : -1) : ring[t % W];
    json_array_append_new(a, v < 0 ? json_null() : json_integer(v));
  }
  return a;
}

json_t *brume_inv_stats_series_json(brume_inv_stats *s, int seconds) {
  if (seconds < 1) seconds = 1;
  if (seconds > W) seconds = W;
  json_t *accts = json_array(), *fns = json_array();
  pthread_mutex_lock(&s->mu);
  int64_t end = s->last_sec, start = end - seconds + 1;
  for (size_t i = 0; s->last_sec && i < s->n_accts; i++) {
    const acct_stats *a = s->accts[i];
    if (a->ser.last_active_sec < start) continue;
    json_array_append_new(
        accts, json_pack("{s:s, s:o, s:o, s:o}", "account_id", a->account, "concurrency",
                         points_json(a->ser.conc, &a->ser, start, end, true), "limit",
                         points_json(a->ser.limit, &a->ser, start, end, false), "scaling_ceiling",
                         points_json(a->ser.ceiling, &a->ser, start, end, false)));
  }
  for (size_t i = 0; s->last_sec && i < s->n_fns; i++) {
    const fn_stats *f = s->fns[i];
    if (f->ser.last_active_sec < start) continue;
    json_array_append_new(
        fns, json_pack("{s:s, s:s, s:o, s:o}", "account_id", f->account, "function_name", f->name,
                       "concurrency", points_json(f->ser.conc, &f->ser, start, end, true),
                       "reserved", points_json(f->ser.limit, &f->ser, start, end, false)));
  }
  pthread_mutex_unlock(&s->mu);
  return json_pack("{s:i, s:I, s:o, s:o}", "interval_ms", 1000, "start_unix_ms",
                   (json_int_t)(start * 1000), "accounts", accts, "functions", fns);
}
