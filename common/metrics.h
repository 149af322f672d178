/* Metrics: a Prometheus registry of counters, gauges and histograms, rendered in the text
 * exposition format 0.0.4 for GET /metrics (common/http.h).
 *
 * Naming (docs/config.md has the full list of conventions):
 *   - every name starts with brume_ and the daemon or module: brume_counting_acquire_total;
 *   - it ends with the unit in base units, plural: _seconds, _bytes; counters end with _total;
 *   - label names are few (at most BRUME_METRICS_MAX_LABELS) and their values come from small
 *     sets (method, code, reason), never from unbounded input such as request ids.
 * Names must match [a-zA-Z_:][a-zA-Z0-9_:]* and label names [a-zA-Z_][a-zA-Z0-9_]* (not "__*",
 * not "le" on a histogram); breaking this, or re-registering a name with another type or other
 * labels, is a programming error and aborts. Registering the same metric twice returns the first.
 *
 * Thread-safety: every function may be called from any thread. A metric without labels is
 * updated with atomics only; a metric with labels takes the metric's mutex to find the series
 * (counters and gauges then update it atomically). Histograms always update under their mutex,
 * so a scrape never sees a count that disagrees with the buckets. Metrics live until
 * brume_metrics_free() of their registry; the pointers returned are never invalidated before.
 *
 * Updates take the label values as trailing arguments, checked by the compiler to be strings
 * and at run time to match the registered count:
 *   brume_counter *calls = brume_metrics_counter(reg, "brume_rpc_calls_total",
 *                                                "RPCs served, by method and status.",
 *                                                "method", "code", NULL);
 *   brume_counter_inc(calls, 1, "Acquire", "OK");
 * A metric stops creating series at BRUME_METRICS_MAX_SERIES (label sets) and drops updates to
 * new ones, logging once: a bug there must not exhaust the daemon's memory. */
#ifndef BRUME_METRICS_H
#define BRUME_METRICS_H

#include <stddef.h>

#define BRUME_METRICS_MAX_LABELS 4
#define BRUME_METRICS_MAX_SERIES 10000

typedef struct brume_metrics brume_metrics;
typedef struct brume_counter brume_counter;
typedef struct brume_gauge brume_gauge;
typedef struct brume_histogram brume_histogram;

/* A new, empty registry; free it with brume_metrics_free(), which frees its metrics too. */
brume_metrics *brume_metrics_new(void);
void brume_metrics_free(brume_metrics *reg);

/* The process-wide registry, created on first use and never freed; daemons serve this one. */
brume_metrics *brume_metrics_default(void);

/* Registers (or finds) a metric. help is one sentence. The variadic arguments are the label
 * names, const char *, terminated by NULL (just NULL for none). The registry owns the metric. */
brume_counter *brume_metrics_counter(brume_metrics *reg, const char *name, const char *help, ...)
    __attribute__((sentinel));
brume_gauge *brume_metrics_gauge(brume_metrics *reg, const char *name, const char *help, ...)
    __attribute__((sentinel));
/* buckets: n_buckets strictly increasing finite upper bounds (+Inf is implicit), copied; NULL
 * and 0 select brume_metrics_latency_buckets. */
brume_histogram *brume_metrics_histogram(brume_metrics *reg, const char *name, const char *help,
                                         const double *buckets, size_t n_buckets, ...)
    __attribute__((sentinel));

/* Seconds from 100 us to 10 s: a warm invocation here takes under a millisecond, a cold start
 * about one second, and both must land in a bucket of their own. */
extern const double brume_metrics_latency_buckets[16];

/* A collector sets gauges that mirror state held elsewhere (a table of hosts, an account's
 * limits) just before each render, instead of on every change: brume_metrics_add_collect()
 * registers fn, which runs on the rendering thread before every render of reg, one render at a
 * time. It may clear and set gauges; it must not render. Remove it with
 * brume_metrics_remove_collect() before what user points to is freed: that call returns only
 * once fn is not running. At most BRUME_METRICS_MAX_COLLECTORS per registry (aborts beyond). */
#define BRUME_METRICS_MAX_COLLECTORS 8
typedef void (*brume_metrics_collect_fn)(void *user);
void brume_metrics_add_collect(brume_metrics *reg, brume_metrics_collect_fn fn, void *user);
/* Removes the collector (fn, user); nothing happens if it is not registered. reg may be NULL. */
void brume_metrics_remove_collect(brume_metrics *reg, brume_metrics_collect_fn fn, void *user);

/* One row of a collector's table of gauges: its name, help and label names (unused slots
 * NULL). brume_metrics_gauges() registers n of them into out[0..n); brume_gauges_clear()
 * clears them all (brume_gauge_clear). */
typedef struct brume_gauge_spec {
  const char *name, *help;
  const char *labels[BRUME_METRICS_MAX_LABELS];
} brume_gauge_spec;
void brume_metrics_gauges(brume_metrics *reg, const brume_gauge_spec *specs, size_t n,
                          brume_gauge **out);
void brume_gauges_clear(brume_gauge *const *gauges, size_t n);

/* Drops every series of a gauge with labels (one without labels goes back to 0), so that a
 * collector can set the current label sets afresh: a host that left stops being reported.
 * Only for gauges that nothing but collectors updates: an update on another thread could still
 * hold a series this frees. */
void brume_gauge_clear(brume_gauge *g);

/* Renders every metric of reg, sorted by name and then by label values, in the text format
 * 0.0.4. Returns a NUL-terminated heap string the caller frees; *len (if non-NULL) gets its
 * length. */
char *brume_metrics_render(brume_metrics *reg, size_t *len);

/* Array forms of the updates; the macros below build the array from their trailing arguments.
 * n must equal the number of label names the metric was registered with. A counter's v must be
 * >= 0 (it aborts otherwise: counters only go up). */
void brume_counter_add_labels(brume_counter *c, double v, size_t n, const char *const *values);
void brume_gauge_set_labels(brume_gauge *g, double v, size_t n, const char *const *values);
void brume_gauge_add_labels(brume_gauge *g, double v, size_t n, const char *const *values);
void brume_histogram_observe_labels(brume_histogram *h, double v, size_t n,
                                    const char *const *values);

/* One series' value now, 0 when it was never updated (reading does not make the series): for
 * a page that shows what /metrics has (the dashboard) without counting it a second time. */
double brume_counter_value_labels(brume_counter *c, size_t n, const char *const *values);
double brume_gauge_value_labels(brume_gauge *g, size_t n, const char *const *values);

/* (count, array) from a possibly empty list of label values. */
#define BRUME_METRICS_LABELS_(...)                                               \
  (sizeof((const char *const[]){NULL, __VA_ARGS__}) / sizeof(const char *) - 1), \
      ((const char *const[]){NULL, __VA_ARGS__} + 1)

/* brume_counter_inc(c, n, "label value", ...): adds n (>= 0). */
#define brume_counter_inc(c, v, ...) \
  brume_counter_add_labels((c), (v), BRUME_METRICS_LABELS_(__VA_ARGS__))
/* brume_gauge_set(g, v, "label value", ...) and brume_gauge_add(g, delta, ...). */
#define brume_gauge_set(g, v, ...) \
  brume_gauge_set_labels((g), (v), BRUME_METRICS_LABELS_(__VA_ARGS__))
#define brume_gauge_add(g, v, ...) \
  brume_gauge_add_labels((g), (v), BRUME_METRICS_LABELS_(__VA_ARGS__))
/* brume_counter_value(c, "label value", ...) and brume_gauge_value(g, ...). */
#define brume_counter_value(c, ...) \
  brume_counter_value_labels((c), BRUME_METRICS_LABELS_(__VA_ARGS__))
#define brume_gauge_value(g, ...) brume_gauge_value_labels((g), BRUME_METRICS_LABELS_(__VA_ARGS__))
/* brume_histogram_observe(h, seconds, "label value", ...). */
#define brume_histogram_observe(h, v, ...) \
  brume_histogram_observe_labels((h), (v), BRUME_METRICS_LABELS_(__VA_ARGS__))

#endif
