/* Invocation statistics: what this frontend's invocations did, kept in memory for the operator
 * dashboard (frontend/dashboard.h) and mirrored into Prometheus metrics.
 *
 * Per function and per account: invocations by start (warm, cold) and outcome, throttles by
 * reason, the durations of the last BRUME_INV_STATS_DURATIONS answered invocations (for p50 and
 * p99), the invocations in flight; the most recent invocations and errors; and one point a second
 * of concurrency (the most invocations in flight at once during that second) over the last
 * BRUME_INV_STATS_WINDOW_S seconds, beside the limits the dashboard's sampler reads from counting.
 *
 * Only invocations that got past validation and resolution are kept here (a request for an
 * unknown function counts only in brume_frontend_invocations_total). Payloads are never kept.
 * Memory is bounded: a function costs about 16 KiB and an account about 7 KiB, and at most
 * BRUME_INV_STATS_MAX_FUNCTIONS functions are tracked (the next ones only count in the totals),
 * so that invocations of unknown names cannot grow it.
 *
 * Metrics (labels account and function come from the catalog's names, a set operators make):
 *   brume_frontend_function_invocations_total{account,function,start,outcome}
 *   brume_frontend_function_throttles_total{account,function,reason}
 *   brume_frontend_function_duration_seconds{account,function}   (histogram)
 *   brume_frontend_function_in_flight{account,function}          (gauge, set at scrape time)
 *
 * Thread safety: every function may be called from any thread; one mutex guards the state and
 * is held for a few hundred nanoseconds per invocation. */
#ifndef BRUME_FRONTEND_INV_STATS_H
#define BRUME_FRONTEND_INV_STATS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "metrics.h"

#define BRUME_INV_STATS_DURATIONS 1024
#define BRUME_INV_STATS_WINDOW_S 600
#define BRUME_INV_STATS_RECENT 200
#define BRUME_INV_STATS_MAX_FUNCTIONS 4096

typedef struct brume_inv_stats brume_inv_stats;

/* metrics may be NULL (no metrics: unit tests). */
brume_inv_stats *brume_inv_stats_new(brume_metrics *metrics);
void brume_inv_stats_free(brume_inv_stats *s);

/* An invocation of account_id's function_name was admitted (counting granted its concurrency):
 * one more in flight, until its brume_inv_stats_end with admitted true. In flight means holding
 * concurrency, cold start included, as counting counts it: a request that is being refused is
 * not in flight. */
void brume_inv_stats_begin(brume_inv_stats *s, const char *account_id, const char *function_name);

/* How an invocation ended. */
typedef struct brume_inv_outcome {
  const char *request_id;
  const char *account_id;
  const char *function_name;
  bool admitted;               /* brume_inv_stats_begin counted it in flight */
  const char *version;         /* the version that ran or was resolved; NULL when none */
  const char *start;           /* "warm", "cold" or "none" (no sandbox: throttled, failed before) */
  const char *outcome;         /* "ok", "function_error", "throttled" or "error" */
  const char *throttle_reason; /* the ThrottleReason name when throttled, else NULL */
  const char *error;           /* "<type or code>: <message>" unless ok; NULL when ok */
  int64_t duration_us;         /* the whole call as the frontend saw it */
  int64_t finished_unix_ms;
} brume_inv_outcome;

/* An invocation that got past validation and resolution has been answered: it is counted and
 * kept among the recent ones, and, if it was admitted, it is no longer in flight. */
void brume_inv_stats_end(brume_inv_stats *s, const brume_inv_outcome *o);

/* ---- the concurrency series ---- */

/* Closes every second up to now_unix_ms / 1000 (seconds the sampler missed get the same point):
 * each series gets the most invocations it had in flight at once since the last close. Called
 * once a second by the dashboard's sampler, after it set the second's limits. */
void brume_inv_stats_sample(brume_inv_stats *s, int64_t now_unix_ms);

/* The accounts and functions that had something in flight within the window, for the sampler to
 * ask counting about: a JSON array of {"account_id", "function_name"} (function_name absent for
 * an account). Caller owns the reference. */
json_t *brume_inv_stats_active(brume_inv_stats *s);

/* What counting said this second (until the next sample): an account's limit and scaling ceiling
 * (min(limit, in_use + bucket level)), or a function's reserved concurrency; -1 for unknown.
 * Unknown series are ignored. */
void brume_inv_stats_set_account_limits(brume_inv_stats *s, const char *account_id, int64_t limit,
                                        int64_t ceiling);
void brume_inv_stats_set_function_reserved(brume_inv_stats *s, const char *account_id,
                                           const char *function_name, int64_t reserved);

/* ---- what the dashboard shows (docs/dashboard.md), each a new JSON reference ---- */

/* {"in_flight": N, "invocations": {...}}: this frontend's totals. */
json_t *brume_inv_stats_totals_json(brume_inv_stats *s);
/* One function's figures: {"in_flight", "invocations", "throttles_by_reason", "duration_ms"},
 * zeros and nulls for a function that never ran here. */
json_t *brume_inv_stats_function_json(brume_inv_stats *s, const char *account_id,
                                      const char *function_name);
/* An account's invocations in flight here now. */
int64_t brume_inv_stats_account_in_flight(brume_inv_stats *s, const char *account_id);
/* {"recent": [...], "errors": [...]}: the last limit (1-BRUME_INV_STATS_RECENT) of each. */
json_t *brume_inv_stats_invocations_json(brume_inv_stats *s, size_t limit);
/* [{"account_id", "function_name", "reason", "count", "last_unix_ms"}], most recent first. */
json_t *brume_inv_stats_throttles_json(brume_inv_stats *s);
/* {"interval_ms", "start_unix_ms", "accounts": [...], "functions": [...]} over the last seconds
 * (1-BRUME_INV_STATS_WINDOW_S) closed seconds; series with nothing in flight are left out. */
json_t *brume_inv_stats_series_json(brume_inv_stats *s, int seconds);

#endif
