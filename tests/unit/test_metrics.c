/* Unit tests for common/metrics: the exact text exposition of each metric type, escaping,
 * re-registration, and concurrent updates. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "mem.h"
#include "metrics.h"

static void assert_render(brume_metrics *reg, const char *want) {
  size_t len = 0;
  char *got = brume_metrics_render(reg, &len);
  assert_int_equal(len, strlen(got));
  if (strcmp(got, want) != 0) {
    fprintf(stderr, "--- want\n%s--- got\n%s---\n", want, got);
    fail();
  }
  free(got);
}

static void test_counter_with_labels(void **state) {
  (void)state;
  brume_metrics *reg = brume_metrics_new();
  brume_counter *c = brume_metrics_counter(
      reg, "brume_rpc_calls_total", "RPCs served, by method and status.", "method", "code", NULL);
  assert_render(reg,
                "# HELP brume_rpc_calls_total RPCs served, by method and status.\n"
                "# TYPE brume_rpc_calls_total counter\n");
  brume_counter_inc(c, 1, "Release", "OK");
  brume_counter_inc(c, 1, "Acquire", "OK");
  brume_counter_inc(c, 2, "Acquire", "OK");
  brume_counter_inc(c, 1, "Acquire", "RESOURCE_EXHAUSTED");
  brume_counter_inc(c, 0.5, "Odd \"name\"\\\n", "OK");
  assert_render(reg,
                "# HELP brume_rpc_calls_total RPCs served, by method and status.\n"
                "# TYPE brume_rpc_calls_total counter\n"
                "brume_rpc_calls_total{method=\"Acquire\",code=\"OK\"} 3\n"
                "brume_rpc_calls_total{method=\"Acquire\",code=\"RESOURCE_EXHAUSTED\"} 1\n"
                "brume_rpc_calls_total{method=\"Odd \\\"name\\\"\\\\\\n\",code=\"OK\"} 0.5\n"
                "brume_rpc_calls_total{method=\"Release\",code=\"OK\"} 1\n");
  /* Registering again returns the same counter. */
  assert_ptr_equal(
      brume_metrics_counter(reg, "brume_rpc_calls_total", "ignored", "method", "code", NULL), c);
  brume_metrics_free(reg);
}

/* What the dashboard reads: a series' value, 0 for one never updated, and reading it does not
 * add it to the rendering. */
static void test_read_values(void **state) {
  (void)state;
  brume_metrics *reg = brume_metrics_new();
  brume_counter *c =
      brume_metrics_counter(reg, "brume_x_total", "Xs, by kind.", "kind", "result", NULL);
  brume_gauge *g = brume_metrics_gauge(reg, "brume_y", "Ys.", NULL);
  brume_counter_inc(c, 2, "queue", "sent");
  brume_counter_inc(c, 1.5, "queue", "sent");
  brume_gauge_set(g, -4);
  assert_true(brume_counter_value(c, "queue", "sent") == 3.5);
  assert_true(brume_counter_value(c, "function", "sent") == 0);
  assert_true(brume_gauge_value(g) == -4);
  assert_render(reg,
                "# HELP brume_x_total Xs, by kind.\n"
                "# TYPE brume_x_total counter\n"
                "brume_x_total{kind=\"queue\",result=\"sent\"} 3.5\n"
                "# HELP brume_y Ys.\n"
                "# TYPE brume_y gauge\n"
                "brume_y -4\n");
  brume_metrics_free(reg);
}

static void test_gauge(void **state) {
  (void)state;
  brume_metrics *reg = brume_metrics_new();
  brume_gauge *g = brume_metrics_gauge(reg, "brume_placement_sandboxes",
                                       "Sandboxes known to placement.\nBy state.", NULL);
  brume_gauge *inflight = brume_metrics_gauge(reg, "brume_counting_holding",
                                              "Tokens held, by account.", "account", NULL);
  brume_gauge_set(g, 7);
  brume_gauge_add(g, -2.25);
  brume_gauge_set(inflight, 3, "acct-b");
  brume_gauge_add(inflight, 1e21, "acct-a");
  brume_gauge_add(inflight, -1, "acct-b");
  assert_render(reg,
                "# HELP brume_counting_holding Tokens held, by account.\n"
                "# TYPE brume_counting_holding gauge\n"
                "brume_counting_holding{account=\"acct-a\"} 1e+21\n"
                "brume_counting_holding{account=\"acct-b\"} 2\n"
                "# HELP brume_placement_sandboxes Sandboxes known to placement.\\nBy state.\n"
                "# TYPE brume_placement_sandboxes gauge\n"
                "brume_placement_sandboxes 4.75\n");
  brume_metrics_free(reg);
}

static void test_histogram(void **state) {
  (void)state;
  brume_metrics *reg = brume_metrics_new();
  static const double buckets[] = {0.001, 0.01, 0.1, 1};
  brume_histogram *h =
      brume_metrics_histogram(reg, "brume_invoke_duration_seconds",
                              "Invocation latency, end to end.", buckets, 4, "kind", NULL);
  brume_histogram_observe(h, 0.0005, "warm");
  brume_histogram_observe(h, 0.001, "warm"); /* on a bound: le is inclusive */
  brume_histogram_observe(h, 0.05, "warm");
  brume_histogram_observe(h, 2.5, "cold");
  brume_histogram *plain =
      brume_metrics_histogram(reg, "brume_a_seconds", "No labels.", NULL, 0, NULL);
  brume_histogram_observe(plain, 0.003);
  assert_render(reg,
                "# HELP brume_a_seconds No labels.\n"
                "# TYPE brume_a_seconds histogram\n"
                "brume_a_seconds_bucket{le=\"0.0001\"} 0\n"
                "brume_a_seconds_bucket{le=\"0.00025\"} 0\n"
                "brume_a_seconds_bucket{le=\"0.0005\"} 0\n"
                "brume_a_seconds_bucket{le=\"0.001\"} 0\n"
                "brume_a_seconds_bucket{le=\"0.0025\"} 0\n"
                "brume_a_seconds_bucket{le=\"0.005\"} 1\n"
                "brume_a_seconds_bucket{le=\"0.01\"} 1\n"
                "brume_a_seconds_bucket{le=\"0.025\"} 1\n"
                "brume_a_seconds_bucket{le=\"0.05\"} 1\n"
                "brume_a_seconds_bucket{le=\"0.1\"} 1\n"
                "brume_a_seconds_bucket{le=\"0.25\"} 1\n"
                "brume_a_seconds_bucket{le=\"0.5\"} 1\n"
                "brume_a_seconds_bucket{le=\"1\"} 1\n"
                "brume_a_seconds_bucket{le=\"2.5\"} 1\n"
                "brume_a_seconds_bucket{le=\"5\"} 1\n"
                "brume_a_seconds_bucket{le=\"10\"} 1\n"
                "brume_a_seconds_bucket{le=\"+Inf\"} 1\n"
                "brume_a_seconds_sum 0.003\n"
                "brume_a_seconds_count 1\n"
                "# HELP brume_invoke_duration_seconds Invocation latency, end to end.\n"
                "# TYPE brume_invoke_duration_seconds histogram\n"
                "brume_invoke_duration_seconds_bucket{kind=\"cold\",le=\"0.001\"} 0\n"
                "brume_invoke_duration_seconds_bucket{kind=\"cold\",le=\"0.01\"} 0\n"
                "brume_invoke_duration_seconds_bucket{kind=\"cold\",le=\"0.1\"} 0\n"
                "brume_invoke_duration_seconds_bucket{kind=\"cold\",le=\"1\"} 0\n"
                "brume_invoke_duration_seconds_bucket{kind=\"cold\",le=\"+Inf\"} 1\n"
                "brume_invoke_duration_seconds_sum{kind=\"cold\"} 2.5\n"
                "brume_invoke_duration_seconds_count{kind=\"cold\"} 1\n"
                "brume_invoke_duration_seconds_bucket{kind=\"warm\",le=\"0.001\"} 2\n"
                "brume_invoke_duration_seconds_bucket{kind=\"warm\",le=\"0.01\"} 2\n"
                "brume_invoke_duration_seconds_bucket{kind=\"warm\",le=\"0.1\"} 3\n"
                "brume_invoke_duration_seconds_bucket{kind=\"warm\",le=\"1\"} 3\n"
                "brume_invoke_duration_seconds_bucket{kind=\"warm\",le=\"+Inf\"} 3\n"
                "brume_invoke_duration_seconds_sum{kind=\"warm\"} 0.051500000000000004\n"
                "brume_invoke_duration_seconds_count{kind=\"warm\"} 3\n");
  brume_metrics_free(reg);
}

static void test_default_registry(void **state) {
  (void)state;
  brume_metrics *a = brume_metrics_default();
  assert_non_null(a);
  assert_ptr_equal(a, brume_metrics_default());
  brume_counter *c = brume_metrics_counter(a, "brume_test_events_total", "Events.", NULL);
  brume_counter_inc(c, 1);
  size_t len;
  char *text = brume_metrics_render(a, &len);
  assert_non_null(strstr(text, "brume_test_events_total 1\n"));
  free(text);
}

static void test_series_limit(void **state) {
  (void)state;
  brume_metrics *reg = brume_metrics_new();
  brume_counter *c = brume_metrics_counter(reg, "brume_t_total", "T.", "id", NULL);
  char id[32];
  for (int i = 0; i < BRUME_METRICS_MAX_SERIES + 10; i++) {
    snprintf(id, sizeof(id), "%d", i);
    brume_counter_inc(c, 1, id);
  }
  brume_counter_inc(c, 1, "0"); /* existing series keep counting */
  size_t len;
  char *text = brume_metrics_render(reg, &len);
  size_t lines = 0;
  for (char *p = text; *p; p++) lines += *p == '\n';
  assert_int_equal(lines, BRUME_METRICS_MAX_SERIES + 2);
  assert_non_null(strstr(text, "brume_t_total{id=\"0\"} 2\n"));
  free(text);
  brume_metrics_free(reg);
}

enum { THREADS = 4, ROUNDS = 20000 };

typedef struct worker_arg {
  brume_counter *plain, *labelled;
  brume_histogram *h;
} worker_arg;

static void *worker(void *p) {
  worker_arg *a = p;
  for (int i = 0; i < ROUNDS; i++) {
    brume_counter_inc(a->plain, 1);
    brume_counter_inc(a->labelled, 1, i % 2 ? "odd" : "even");
    brume_histogram_observe(a->h, 0.5);
  }
  return NULL;
}

static void test_concurrent(void **state) {
  (void)state;
  brume_metrics *reg = brume_metrics_new();
  static const double b[] = {1};
  worker_arg a = {
      .plain = brume_metrics_counter(reg, "brume_c_total", "C.", NULL),
      .labelled = brume_metrics_counter(reg, "brume_l_total", "L.", "parity", NULL),
      .h = brume_metrics_histogram(reg, "brume_h_seconds", "H.", b, 1, NULL),
  };
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, &a);
  for (int i = 0; i < 5; i++) free(brume_metrics_render(reg, NULL)); /* scrapes meanwhile */
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  char *text = brume_metrics_render(reg, NULL);
  assert_non_null(strstr(text, "brume_c_total 80000\n"));
  assert_non_null(strstr(text, "brume_l_total{parity=\"even\"} 40000\n"));
  assert_non_null(strstr(text, "brume_l_total{parity=\"odd\"} 40000\n"));
  assert_non_null(strstr(text, "brume_h_seconds_bucket{le=\"1\"} 80000\n"));
  assert_non_null(strstr(text, "brume_h_seconds_sum 40000\n"));
  free(text);
  brume_metrics_free(reg);
}

/* What a collector sets appears in the same render; a cleared gauge drops the label sets the
 * collector no longer sets; a removed collector runs no more. */
typedef struct hosts_state {
  brume_gauge *mem;
  const char *hosts[3];
  int runs;
} hosts_state;

static void collect_hosts(void *user) {
  hosts_state *st = user;
  st->runs++;
  brume_gauge_clear(st->mem);
  for (size_t i = 0; i < 3 && st->hosts[i]; i++)
    brume_gauge_set(st->mem, 100 * (i + 1), st->hosts[i]);
}

static void test_collect(void **state) {
  (void)state;
  brume_metrics *reg = brume_metrics_new();
  hosts_state st = {.hosts = {"h1", "h2", NULL}};
  st.mem = brume_metrics_gauge(reg, "brume_x_host_memory_bytes", "Memory.", "host", NULL);
  brume_metrics_add_collect(reg, collect_hosts, &st);
  assert_render(reg,
                "# HELP brume_x_host_memory_bytes Memory.\n"
                "# TYPE brume_x_host_memory_bytes gauge\n"
                "brume_x_host_memory_bytes{host=\"h1\"} 100\n"
                "brume_x_host_memory_bytes{host=\"h2\"} 200\n");
  st.hosts[0] = "h2";
  st.hosts[1] = NULL;
  assert_render(reg,
                "# HELP brume_x_host_memory_bytes Memory.\n"
                "# TYPE brume_x_host_memory_bytes gauge\n"
                "brume_x_host_memory_bytes{host=\"h2\"} 100\n");
  assert_int_equal(st.runs, 2);
  brume_metrics_remove_collect(reg, collect_hosts, &st);
  brume_metrics_remove_collect(reg, collect_hosts, &st); /* not registered: nothing happens */
  free(brume_metrics_render(reg, NULL));
  assert_int_equal(st.runs, 2);
  brume_metrics_free(reg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counter_with_labels),
      cmocka_unit_test(test_read_values),
      cmocka_unit_test(test_gauge),
      cmocka_unit_test(test_histogram),
      cmocka_unit_test(test_default_registry),
      cmocka_unit_test(test_series_limit),
      cmocka_unit_test(test_concurrent),
      cmocka_unit_test(test_collect),
  };
  return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
