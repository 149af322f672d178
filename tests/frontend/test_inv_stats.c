/* Unit tests for frontend/inv_stats: counts by start and outcome, throttles by reason,
 * percentiles, the recent and error rings, the concurrency series (peaks within a second, missed
 * seconds, limits, series left out when idle) and the Prometheus mirror. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "inv_stats.h"

#define T0 1700000000000LL /* a whole second, in ms */

static void end(brume_inv_stats *s, const char *fn, const char *start, const char *outcome,
                const char *reason, int64_t duration_us, int64_t at_ms) {
  bool admitted = reason == NULL; /* a throttled invocation never was */
  char rid[32];
  snprintf(rid, sizeof(rid), "req-%lld", (long long)at_ms);
  brume_inv_outcome o = {.request_id = rid,
                         .account_id = "acme",
                         .function_name = fn,
                         .admitted = admitted,
                         .version = "1",
                         .start = start,
                         .outcome = outcome,
                         .throttle_reason = reason,
                         .error = strcmp(outcome, "ok") ? "Some: error" : NULL,
                         .duration_us = duration_us,
                         .finished_unix_ms = at_ms};
  brume_inv_stats_end(s, &o);
}

static json_int_t geti(json_t *o, const char *path1, const char *path2) {
  json_t *v = json_object_get(o, path1);
  if (path2) v = json_object_get(v, path2);
  assert_non_null(v);
  return json_integer_value(v);
}

static void test_counts_and_percentiles(void **state) {
  (void)state;
  brume_metrics *reg = brume_metrics_new();
  brume_inv_stats *s = brume_inv_stats_new(reg);
  /* 100 warm invocations of 1..100 ms, one cold of 900 ms, one function error, two throttles. */
  for (int i = 1; i <= 100; i++) {
    brume_inv_stats_begin(s, "acme", "f");
    end(s, "f", "warm", "ok", NULL, i * 1000, T0 + i);
  }
  brume_inv_stats_begin(s, "acme", "f");
  end(s, "f", "cold", "function_error", NULL, 900000, T0 + 200);
  for (int i = 0; i < 2; i++) {
    end(s, "f", "none", "throttled", "ReservedFunctionConcurrentInvocationLimitExceeded", 50,
        T0 + 300 + i);
  }
  brume_inv_stats_begin(s, "acme", "f"); /* still in flight */

  json_t *f = brume_inv_stats_function_json(s, "acme", "f");
  assert_int_equal(geti(f, "in_flight", NULL), 1);
  assert_int_equal(geti(f, "invocations", "total"), 103);
  assert_int_equal(geti(f, "invocations", "warm"), 100);
  assert_int_equal(geti(f, "invocations", "cold"), 1);
  assert_int_equal(geti(f, "invocations", "ok"), 100);
  assert_int_equal(geti(f, "invocations", "function_errors"), 1);
  assert_int_equal(geti(f, "invocations", "throttled"), 2);
  assert_int_equal(
      geti(f, "throttles_by_reason", "ReservedFunctionConcurrentInvocationLimitExceeded"), 2);
  /* Throttled invocations had no sandbox: 101 durations, 1..100 ms and 900 ms. */
  json_t *d = json_object_get(f, "duration_ms");
  assert_int_equal(geti(d, "samples", NULL), 101);
  assert_true(json_real_value(json_object_get(d, "p50")) == 51.0);
  assert_true(json_real_value(json_object_get(d, "p99")) == 100.0);
  json_decref(f);

  /* A function that never ran: zeros and nulls. */
  f = brume_inv_stats_function_json(s, "acme", "never");
  assert_int_equal(geti(f, "invocations", "total"), 0);
  assert_true(json_is_null(json_object_get(json_object_get(f, "duration_ms"), "p50")));
  json_decref(f);

  json_t *t = brume_inv_stats_totals_json(s);
  assert_int_equal(geti(t, "in_flight", NULL), 1);
  assert_int_equal(geti(t, "invocations", "total"), 103);
  json_decref(t);
  assert_int_equal(brume_inv_stats_account_in_flight(s, "acme"), 1);

  json_t *thr = brume_inv_stats_throttles_json(s);
  assert_int_equal(json_array_size(thr), 1);
  assert_int_equal(geti(json_array_get(thr, 0), "count", NULL), 2);
  assert_int_equal(geti(json_array_get(thr, 0), "last_unix_ms", NULL), T0 + 301);
  json_decref(thr);

  char *text = brume_metrics_render(reg, NULL);
  assert_non_null(strstr(text,
                         "brume_frontend_function_invocations_total{account=\"acme\","
                         "function=\"f\",start=\"warm\",outcome=\"ok\"} 100\n"));
  assert_non_null(strstr(text,
                         "brume_frontend_function_throttles_total{account=\"acme\","
                         "function=\"f\",reason=\"ReservedFunctionConcurrentInvocation"
                         "LimitExceeded\"} 2\n"));
  assert_non_null(strstr(text,
                         "brume_frontend_function_duration_seconds_count{account=\"acme\","
                         "function=\"f\"} 101\n"));
  assert_non_null(
      strstr(text, "brume_frontend_function_in_flight{account=\"acme\",function=\"f\"} 1\n"));
  free(text);
  end(s, "f", "warm", "ok", NULL, 1000, T0 + 400);
  brume_inv_stats_free(s);
  brume_metrics_free(reg);
}

static void test_recent_and_errors(void **state) {
  (void)state;
  brume_inv_stats *s = brume_inv_stats_new(NULL);
  for (int i = 0; i < BRUME_INV_STATS_RECENT + 10; i++) {
    brume_inv_stats_begin(s, "acme", "f");
    end(s, "f", "warm", i % 10 == 0 ? "error" : "ok", NULL, 1000, T0 + i);
  }
  json_t *o = brume_inv_stats_invocations_json(s, 1000); /* clamped to the ring's size */
  json_t *recent = json_object_get(o, "recent"), *errors = json_object_get(o, "errors");
  assert_int_equal(json_array_size(recent), BRUME_INV_STATS_RECENT);
  assert_int_equal(json_array_size(errors), (BRUME_INV_STATS_RECENT + 10) / 10);
  /* Newest first. */
  assert_int_equal(geti(json_array_get(recent, 0), "finished_unix_ms", NULL),
                   T0 + BRUME_INV_STATS_RECENT + 9);
  assert_int_equal(geti(json_array_get(errors, 0), "finished_unix_ms", NULL),
                   T0 + BRUME_INV_STATS_RECENT);
  assert_string_equal(json_string_value(json_object_get(json_array_get(errors, 0), "error")),
                      "Some: error");
  assert_true(json_is_null(json_object_get(json_array_get(recent, 0), "error")));
  json_decref(o);
  o = brume_inv_stats_invocations_json(s, 3);
  assert_int_equal(json_array_size(json_object_get(o, "recent")), 3);
  json_decref(o);
  brume_inv_stats_free(s);
}

/* The points of series i ("accounts" or "functions") under key, as integers (-1 for null). */
static void points(json_t *series, const char *kind, size_t i, const char *key, int *out,
                   size_t n) {
  json_t *a = json_object_get(json_array_get(json_object_get(series, kind), i), key);
  assert_int_equal(json_array_size(a), n);
  for (size_t k = 0; k < n; k++) {
    json_t *v = json_array_get(a, k);
    out[k] = json_is_null(v) ? -1 : (int)json_integer_value(v);
  }
}

static void test_series(void **state) {
  (void)state;
  brume_inv_stats *s = brume_inv_stats_new(NULL);
  brume_inv_stats_sample(s, T0); /* second 0 closes empty */
  /* Second 1: three at once, then all end: the point is the peak, 3. */
  for (int i = 0; i < 3; i++) brume_inv_stats_begin(s, "acme", "f");
  for (int i = 0; i < 3; i++) end(s, "f", "warm", "ok", NULL, 1000, T0 + 1500);
  brume_inv_stats_set_account_limits(s, "acme", 10, 7);
  brume_inv_stats_set_function_reserved(s, "acme", "f", 5);
  brume_inv_stats_sample(s, T0 + 1000);
  /* Second 2: one starts and stays in flight; seconds 3 and 4 are missed by the sampler and
   * closed with it, still 1 in flight. */
  brume_inv_stats_begin(s, "acme", "f");
  brume_inv_stats_sample(s, T0 + 2000);
  brume_inv_stats_sample(s, T0 + 4000);

  json_t *js = brume_inv_stats_series_json(s, 5);
  assert_int_equal(geti(js, "start_unix_ms", NULL), T0);
  assert_int_equal(geti(js, "interval_ms", NULL), 1000);
  int got[5];
  points(js, "accounts", 0, "concurrency", got, 5);
  assert_memory_equal(got, ((int[]){0, 3, 1, 1, 1}), sizeof(got));
  points(js, "accounts", 0, "limit", got, 5);
  assert_memory_equal(got, ((int[]){-1, 10, -1, -1, -1}), sizeof(got));
  points(js, "accounts", 0, "scaling_ceiling", got, 5);
  assert_memory_equal(got, ((int[]){-1, 7, -1, -1, -1}), sizeof(got));
  points(js, "functions", 0, "concurrency", got, 5);
  assert_memory_equal(got, ((int[]){0, 3, 1, 1, 1}), sizeof(got));
  points(js, "functions", 0, "reserved", got, 5);
  assert_memory_equal(got, ((int[]){-1, 5, -1, -1, -1}), sizeof(got));
  json_decref(js);

  /* Active: the account and the function. */
  json_t *act = brume_inv_stats_active(s);
  assert_int_equal(json_array_size(act), 2);
  json_decref(act);

  /* Once it ended and the window has passed, the series is left out. */
  end(s, "f", "warm", "ok", NULL, 1000, T0 + 4500);
  brume_inv_stats_sample(s, T0 + 5000); /* the point of second 5 is still 1 (the peak) */
  brume_inv_stats_sample(s, T0 + 9000);
  js = brume_inv_stats_series_json(s, 3);
  assert_int_equal(json_array_size(json_object_get(js, "accounts")), 0);
  assert_int_equal(json_array_size(json_object_get(js, "functions")), 0);
  json_decref(js);
  brume_inv_stats_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counts_and_percentiles),
      cmocka_unit_test(test_recent_and_errors),
      cmocka_unit_test(test_series),
  };
  return cmocka_run_group_tests_name("inv_stats", tests, NULL, NULL);
}
