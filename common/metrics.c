#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "mem.h"

const double brume_metrics_latency_buckets[16] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

typedef enum metric_type { COUNTER, GAUGE, HISTOGRAM } metric_type;

static const char *const type_names[] = {"counter", "gauge", "histogram"};

/* One label set of a metric. Counters and gauges keep their value as the bits of a double in
 * an atomic word (C11 has no portable atomic add on doubles). Histogram fields are guarded by
 * the metric's mutex. */
typedef struct series {
  struct series *next; /* hash chain */
  uint64_t hash;
  size_t n_values;
  char *values[BRUME_METRICS_MAX_LABELS];
  _Atomic uint64_t bits;
  uint64_t *counts; /* histogram: per bucket (not cumulative), n_bounds + 1 for +Inf */
  double sum;
  uint64_t count;
} series;

typedef struct metric {
  struct metric *next; /* registry list */
  metric_type type;
  char *name;
  char *help;
  size_t n_labels;
  char *labels[BRUME_METRICS_MAX_LABELS];
  double *bounds;
  size_t n_bounds;
  pthread_mutex_t mu;
  series *solo; /* the only series of a metric without labels, created with it */
  series **table;
  size_t table_size;
  size_t n_series;
  bool overflow_logged;
} metric;

/* The public types are the same object; distinct names let the compiler catch a gauge passed
 * where a counter is expected. */
struct brume_counter {
  metric m;
};
struct brume_gauge {
  metric m;
};
struct brume_histogram {
  metric m;
};

typedef struct collector {
  brume_metrics_collect_fn fn;
  void *user;
} collector;

struct brume_metrics {
  pthread_mutex_t mu;
  metric *metrics;
  /* Run before each render, in the order added; collect_mu is held while they run, so that
   * brume_metrics_remove_collect() returns only once none of them runs any more. */
  pthread_mutex_t collect_mu;
  collector collectors[BRUME_METRICS_MAX_COLLECTORS];
  size_t n_collectors;
};

/* ---- values ---- */

static double bits_to_double(uint64_t b) {
  double d;
  memcpy(&d, &b, sizeof(d));
  return d;
}

static uint64_t double_to_bits(double d) {
  uint64_t b;
  memcpy(&b, &d, sizeof(b));
  return b;
}

static void atomic_add_double(_Atomic uint64_t *p, double v) {
  uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(p, &old, double_to_bits(bits_to_double(old) + v),
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
}

/* Shortest text that reads back as the same double, as Prometheus clients print values. */
static const char *format_double(double v, char *buf, size_t size) {
  if (isnan(v)) return snprintf(buf, size, "NaN"), buf;
  if (isinf(v)) return snprintf(buf, size, v > 0 ? "+Inf" : "-Inf"), buf;
  if (v == floor(v) && fabs(v) < 9007199254740992.0) return snprintf(buf, size, "%.0f", v), buf;
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, size, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) break;
  }
  return buf;
}

/* ---- names ---- */

static bool valid_metric_name(const char *s) {
  if (!s || !*s) return false;
  for (const char *p = s; *p; p++) {
    char c = *p;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
              (p != s && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

static bool valid_label_name(const char *s) {
  if (!s || !*s || strncmp(s, "__", 2) == 0) return false;
  for (const char *p = s; *p; p++) {
    char c = *p;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (p != s && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

/* ---- series lookup ---- */

static uint64_t hash_values(size_t n, const char *const *values) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) {
    for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++)
      h = (h ^ *p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull; /* separator: ("ab","c") != ("a","bc") */
  }
  return h;
}

static series *series_new(metric *m, uint64_t hash, const char *const *values) {
  series *s = brume_xcalloc(1, sizeof(*s));
  s->hash = hash;
  s->n_values = m->n_labels;
  for (size_t i = 0; i < m->n_labels; i++) s->values[i] = brume_xstrdup(values[i]);
  atomic_init(&s->bits, double_to_bits(0));
  if (m->type == HISTOGRAM) s->counts = brume_xcalloc(m->n_bounds + 1, sizeof(uint64_t));
  return s;
}

static void series_free(series *s) {
  for (size_t i = 0; i < BRUME_METRICS_MAX_LABELS; i++) free(s->values[i]);
  free(s->counts);
  free(s);
}

static void table_grow(metric *m) {
  size_t size = m->table_size ? m->table_size * 2 : 16;
  series **t = brume_xcalloc(size, sizeof(series *));
  for (size_t i = 0; i < m->table_size; i++) {
    series *s = m->table[i];
    while (s) {
      series *next = s->next;
      s->next = t[s->hash & (size - 1)];
      t[s->hash & (size - 1)] = s;
      s = next;
    }
  }
  free(m->table);
  m->table = t;
  m->table_size = size;
}

/* Finds or creates the series for values; called with m->mu held. NULL when the metric is full. */
/* The series of values, or NULL when there is none yet. */
static series *find_locked(const metric *m, uint64_t h, const char *const *values) {
  if (m->table_size == 0) return NULL;
  for (series *s = m->table[h & (m->table_size - 1)]; s; s = s->next) {
    if (s->hash != h) continue;
    size_t i = 0;
    while (i < m->n_labels && strcmp(s->values[i], values[i]) == 0) i++;
    if (i == m->n_labels) return s;
  }
  return NULL;
}

static series *lookup_locked(metric *m, const char *const *values) {
  uint64_t h = hash_values(m->n_labels, values);
  series *found = find_locked(m, h, values);
  if (found) return found;
  if (m->n_series >= BRUME_METRICS_MAX_SERIES) {
    if (!m->overflow_logged) {
      m->overflow_logged = true;
      brume_warn("A metric reached its series limit; updates to new label sets are dropped.",
                 "metric=%s limit=%d", m->name, BRUME_METRICS_MAX_SERIES);
    }
    return NULL;
  }
  if (m->n_series >= m->table_size) table_grow(m);
  series *s = series_new(m, h, values);
  s->next = m->table[h & (m->table_size - 1)];
  m->table[h & (m->table_size - 1)] = s;
  m->n_series++;
  return s;
}

static void check_labels(const metric *m, size_t n, const char *const *values) {
  if (n != m->n_labels)
    brume_fatal("metric %s has %zu labels, updated with %zu values", m->name, m->n_labels, n);
  for (size_t i = 0; i < n; i++)
    if (!values[i]) brume_fatal("metric %s updated with a NULL label value", m->name);
}

/* Series for an atomic update (counter, gauge): the mutex is only held for the lookup. */
static series *series_for(metric *m, size_t n, const char *const *values) {
  check_labels(m, n, values);
  if (m->solo) return m->solo;
  pthread_mutex_lock(&m->mu);
  series *s = lookup_locked(m, values);
  pthread_mutex_unlock(&m->mu);
  return s;
}

void brume_counter_add_labels(brume_counter *c, double v, size_t n, const char *const *values) {
  if (!(v >= 0)) brume_fatal("counter %s: increment %g is negative or NaN", c->m.name, v);
  series *s = series_for(&c->m, n, values);
  if (s) atomic_add_double(&s->bits, v);
}

void brume_gauge_set_labels(brume_gauge *g, double v, size_t n, const char *const *values) {
  series *s = series_for(&g->m, n, values);
  if (s) atomic_store_explicit(&s->bits, double_to_bits(v), memory_order_relaxed);
}

void brume_gauge_add_labels(brume_gauge *g, double v, size_t n, const char *const *values) {
  series *s = series_for(&g->m, n, values);
  if (s) atomic_add_double(&s->bits, v);
}

/* A series' value without making it: reading must not add a series to /metrics. */
static double value_of(metric *m, size_t n, const char *const *values) {
  check_labels(m, n, values);
  if (m->solo) return bits_to_double(atomic_load_explicit(&m->solo->bits, memory_order_relaxed));
  pthread_mutex_lock(&m->mu);
  series *s = find_locked(m, hash_values(m->n_labels, values), values);
  double v = s ? bits_to_double(atomic_load_explicit(&s->bits, memory_order_relaxed)) : 0;
  pthread_mutex_unlock(&m->mu);
  return v;
}

double brume_counter_value_labels(brume_counter *c, size_t n, const char *const *values) {
  return value_of(&c->m, n, values);
}

double brume_gauge_value_labels(brume_gauge *g, size_t n, const char *const *values) {
  return value_of(&g->m, n, values);
}

void brume_histogram_observe_labels(brume_histogram *h, double v, size_t n,
                                    const char *const *values) {
  metric *m = &h->m;
  check_labels(m, n, values);
  /* The first bucket whose upper bound holds v; NaN lands in +Inf. Linear: buckets are few. */
  size_t b = 0;
  while (b < m->n_bounds && !(v <= m->bounds[b])) b++;
  pthread_mutex_lock(&m->mu);
  series *s = m->solo ? m->solo : lookup_locked(m, values);
  if (s) {
    s->counts[b]++;
    s->count++;
    s->sum += v;
  }
  pthread_mutex_unlock(&m->mu);
}

/* ---- registration ---- */

brume_metrics *brume_metrics_new(void) {
  brume_metrics *reg = brume_xcalloc(1, sizeof(*reg));
  pthread_mutex_init(&reg->mu, NULL);
  pthread_mutex_init(&reg->collect_mu, NULL);
  return reg;
}

/* Frees every series of m's table (not its solo series) and empties the table. */
static void free_table_series(metric *m) {
  for (size_t i = 0; i < m->table_size; i++) {
    series *s = m->table[i];
    while (s) {
      series *next = s->next;
      series_free(s);
      s = next;
    }
    m->table[i] = NULL;
  }
  m->n_series = 0;
}

static void metric_free(metric *m) {
  free_table_series(m);
  if (m->solo) series_free(m->solo);
  for (size_t i = 0; i < m->n_labels; i++) free(m->labels[i]);
  free(m->table);
  free(m->bounds);
  free(m->name);
  free(m->help);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

void brume_metrics_free(brume_metrics *reg) {
  if (!reg) return;
  metric *m = reg->metrics;
  while (m) {
    metric *next = m->next;
    metric_free(m);
    m = next;
  }
  pthread_mutex_destroy(&reg->mu);
  pthread_mutex_destroy(&reg->collect_mu);
  free(reg);
}

static brume_metrics *default_registry;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void default_init(void) {
  default_registry = brume_metrics_new();
}

brume_metrics *brume_metrics_default(void) {
  pthread_once(&default_once, default_init);
  return default_registry;
}

static bool same_shape(const metric *m, metric_type type, size_t n_labels,
                       const char *const *labels, const double *bounds, size_t n_bounds) {
  if (m->type != type || m->n_labels != n_labels || m->n_bounds != n_bounds) return false;
  for (size_t i = 0; i < n_labels; i++)
    if (strcmp(m->labels[i], labels[i]) != 0) return false;
  for (size_t i = 0; i < n_bounds; i++)
    if (m->bounds[i] != bounds[i]) return false;
  return true;
}

static metric *do_register(brume_metrics *reg, metric_type type, const char *name, const char *help,
                           const double *bounds, size_t n_bounds, va_list ap) {
  BRUME_ENSURE(reg != NULL);
  if (!valid_metric_name(name)) brume_fatal("metric name '%s' is not valid", name ? name : "");
  const char *labels[BRUME_METRICS_MAX_LABELS];
  size_t n_labels = 0;
  for (const char *l; (l = va_arg(ap, const char *)) != NULL;) {
    if (n_labels == BRUME_METRICS_MAX_LABELS)
      brume_fatal("metric %s has more than %d labels", name, BRUME_METRICS_MAX_LABELS);
    if (!valid_label_name(l) || (type == HISTOGRAM && strcmp(l, "le") == 0))
      brume_fatal("metric %s: label name '%s' is not valid", name, l);
    for (size_t i = 0; i < n_labels; i++)
      if (strcmp(labels[i], l) == 0) brume_fatal("metric %s: label '%s' appears twice", name, l);
    labels[n_labels++] = l;
  }
  if (type == HISTOGRAM) {
    if (!bounds || n_bounds == 0) {
      bounds = brume_metrics_latency_buckets;
      n_bounds = BRUME_ARRAY_LEN(brume_metrics_latency_buckets);
    }
    for (size_t i = 0; i < n_bounds; i++)
      if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
        brume_fatal("histogram %s: buckets must be finite and strictly increasing", name);
  }

  pthread_mutex_lock(&reg->mu);
  for (metric *m = reg->metrics; m; m = m->next) {
    if (strcmp(m->name, name) != 0) continue;
    if (!same_shape(m, type, n_labels, labels, bounds, n_bounds))
      brume_fatal("metric %s is registered twice with different types, labels or buckets", name);
    pthread_mutex_unlock(&reg->mu);
    return m;
  }
  metric *m = brume_xcalloc(1, sizeof(*m));
  m->type = type;
  m->name = brume_xstrdup(name);
  m->help = brume_xstrdup(help ? help : "");
  m->n_labels = n_labels;
  for (size_t i = 0; i < n_labels; i++) m->labels[i] = brume_xstrdup(labels[i]);
  if (type == HISTOGRAM) {
    m->n_bounds = n_bounds;
    m->bounds = brume_xmalloc(n_bounds * sizeof(double));
    memcpy(m->bounds, bounds, n_bounds * sizeof(double));
  }
  pthread_mutex_init(&m->mu, NULL);
  if (n_labels == 0) m->solo = series_new(m, 0, NULL);
  m->next = reg->metrics;
  reg->metrics = m;
  pthread_mutex_unlock(&reg->mu);
  return m;
}

brume_counter *brume_metrics_counter(brume_metrics *reg, const char *name, const char *help, ...) {
  va_list ap;
  va_start(ap, help);
  metric *m = do_register(reg, COUNTER, name, help, NULL, 0, ap);
  va_end(ap);
  return (brume_counter *)m;
}

brume_gauge *brume_metrics_gauge(brume_metrics *reg, const char *name, const char *help, ...) {
  va_list ap;
  va_start(ap, help);
  metric *m = do_register(reg, GAUGE, name, help, NULL, 0, ap);
  va_end(ap);
  return (brume_gauge *)m;
}

brume_histogram *brume_metrics_histogram(brume_metrics *reg, const char *name, const char *help,
                                         const double *buckets, size_t n_buckets, ...) {
  va_list ap;
  va_start(ap, n_buckets);
  metric *m = do_register(reg, HISTOGRAM, name, help, buckets, n_buckets, ap);
  va_end(ap);
  return (brume_histogram *)m;
}

/* ---- rendering ---- */

typedef struct buf {
  char *p;
  size_t len, cap;
} buf;

static void buf_put(buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    while (b->len + n + 1 > b->cap) b->cap = b->cap ? b->cap * 2 : 4096;
    b->p = brume_xrealloc(b->p, b->cap);
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void buf_puts(buf *b, const char *s) {
  buf_put(b, s, strlen(s));
}

/* HELP escapes backslash and newline; label values also escape the double quote. */
static void buf_escaped(buf *b, const char *s, bool quote) {
  for (; *s; s++) {
    if (*s == '\\')
      buf_puts(b, "\\\\");
    else if (*s == '\n')
      buf_puts(b, "\\n");
    else if (quote && *s == '"')
      buf_puts(b, "\\\"");
    else
      buf_put(b, s, 1);
  }
}

/* {a="x",b="y"} plus an optional le; nothing at all when there is no label. */
static void buf_labels(buf *b, const metric *m, const series *s, const char *le) {
  if (m->n_labels == 0 && !le) return;
  buf_puts(b, "{");
  for (size_t i = 0; i < m->n_labels; i++) {
    if (i) buf_puts(b, ",");
    buf_puts(b, m->labels[i]);
    buf_puts(b, "=\"");
    buf_escaped(b, s->values[i], true);
    buf_puts(b, "\"");
  }
  if (le) {
    if (m->n_labels) buf_puts(b, ",");
    buf_puts(b, "le=\"");
    buf_puts(b, le);
    buf_puts(b, "\"");
  }
  buf_puts(b, "}");
}

static void buf_sample(buf *b, const metric *m, const char *suffix, const series *s, const char *le,
                       double v) {
  char num[64];
  buf_puts(b, m->name);
  buf_puts(b, suffix);
  buf_labels(b, m, s, le);
  buf_puts(b, " ");
  buf_puts(b, format_double(v, num, sizeof(num)));
  buf_puts(b, "\n");
}

static int cmp_series(const void *a, const void *b) {
  const series *x = *(const series *const *)a, *y = *(const series *const *)b;
  for (size_t i = 0; i < x->n_values; i++) {
    int c = strcmp(x->values[i], y->values[i]);
    if (c) return c;
  }
  return 0;
}

static int cmp_metric(const void *a, const void *b) {
  const metric *x = *(const metric *const *)a, *y = *(const metric *const *)b;
  return strcmp(x->name, y->name);
}

static void render_metric(buf *b, metric *m) {
  buf_puts(b, "# HELP ");
  buf_puts(b, m->name);
  buf_puts(b, " ");
  buf_escaped(b, m->help, false);
  buf_puts(b, "\n# TYPE ");
  buf_puts(b, m->name);
  buf_puts(b, " ");
  buf_puts(b, type_names[m->type]);
  buf_puts(b, "\n");

  /* Held across the render so a histogram's buckets, sum and count agree; series with labels
   * cannot be created meanwhile. Label-less counters and gauges keep updating atomically. */
  pthread_mutex_lock(&m->mu);
  size_t n = m->solo ? 1 : m->n_series;
  series **all = brume_xcalloc(n + 1, sizeof(series *));
  if (m->solo) {
    all[0] = m->solo;
  } else {
    size_t k = 0;
    for (size_t i = 0; i < m->table_size; i++)
      for (series *s = m->table[i]; s; s = s->next) all[k++] = s;
    qsort(all, n, sizeof(series *), cmp_series);
  }
  for (size_t i = 0; i < n; i++) {
    series *s = all[i];
    if (m->type != HISTOGRAM) {
      buf_sample(b, m, "", s, NULL,
                 bits_to_double(atomic_load_explicit(&s->bits, memory_order_relaxed)));
      continue;
    }
    uint64_t cumulative = 0;
    char le[64];
    for (size_t j = 0; j <= m->n_bounds; j++) {
      cumulative += s->counts[j];
      const char *bound = j < m->n_bounds ? format_double(m->bounds[j], le, sizeof(le)) : "+Inf";
      buf_sample(b, m, "_bucket", s, bound, (double)cumulative);
    }
    buf_sample(b, m, "_sum", s, NULL, s->sum);
    buf_sample(b, m, "_count", s, NULL, (double)s->count);
  }
  pthread_mutex_unlock(&m->mu);
  free(all);
}

void brume_metrics_add_collect(brume_metrics *reg, brume_metrics_collect_fn fn, void *user) {
  pthread_mutex_lock(&reg->collect_mu);
  if (reg->n_collectors == BRUME_METRICS_MAX_COLLECTORS)
    brume_fatal("brume_metrics_add_collect: more than %d collectors", BRUME_METRICS_MAX_COLLECTORS);
  reg->collectors[reg->n_collectors++] = (collector){fn, user};
  pthread_mutex_unlock(&reg->collect_mu);
}

void brume_metrics_remove_collect(brume_metrics *reg, brume_metrics_collect_fn fn, void *user) {
  if (reg == NULL) return;
  pthread_mutex_lock(&reg->collect_mu);
  for (size_t i = 0; i < reg->n_collectors; i++) {
    if (reg->collectors[i].fn != fn || reg->collectors[i].user != user) continue;
    memmove(&reg->collectors[i], &reg->collectors[i + 1],
            (reg->n_collectors - i - 1) * sizeof(collector));
    reg->n_collectors--;
    break;
  }
  pthread_mutex_unlock(&reg->collect_mu);
}

void brume_gauge_clear(brume_gauge *g) {
  metric *m = &g->m;
  if (m->n_labels == 0) {
    atomic_store(&m->solo->bits, double_to_bits(0));
    return;
  }
  pthread_mutex_lock(&m->mu);
  free_table_series(m);
  pthread_mutex_unlock(&m->mu);
}

void brume_metrics_gauges(brume_metrics *reg, const brume_gauge_spec *specs, size_t n,
                          brume_gauge **out) {
  _Static_assert(BRUME_METRICS_MAX_LABELS == 4, "pass every label slot below");
  for (size_t i = 0; i < n; i++) {
    const char *const *l = specs[i].labels;
    /* The first NULL slot ends the label list, as the sentinel would. */
    out[i] = brume_metrics_gauge(reg, specs[i].name, specs[i].help, l[0], l[1], l[2], l[3], NULL);
  }
}

void brume_gauges_clear(brume_gauge *const *gauges, size_t n) {
  for (size_t i = 0; i < n; i++) brume_gauge_clear(gauges[i]);
}

char *brume_metrics_render(brume_metrics *reg, size_t *len) {
  buf b = {0};
  buf_puts(&b, "");
  pthread_mutex_lock(&reg->collect_mu);
  for (size_t i = 0; i < reg->n_collectors; i++) reg->collectors[i].fn(reg->collectors[i].user);
  pthread_mutex_lock(&reg->mu);
  size_t n = 0;
  for (metric *m = reg->metrics; m; m = m->next) n++;
  metric **all = brume_xcalloc(n + 1, sizeof(metric *));
  n = 0;
  for (metric *m = reg->metrics; m; m = m->next) all[n++] = m;
  pthread_mutex_unlock(&reg->mu);
  /* Metrics are never removed before the registry is freed, so the snapshot stays valid. */
  qsort(all, n, sizeof(metric *), cmp_metric);
  for (size_t i = 0; i < n; i++) render_metric(&b, all[i]);
  free(all);
  pthread_mutex_unlock(&reg->collect_mu);
  if (len) *len = b.len;
  return b.p;
}
