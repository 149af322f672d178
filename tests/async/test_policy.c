/* async/policy: the retry policy's arithmetic on set clocks and set random draws. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "policy.h"

static const brume_event_policy lambda = {.max_retries = 2, .max_age_s = 21600, .time_scale = 1};

static void expect_invalid(brume_event_policy p, const char *part) {
  brume_err *err = NULL;
  assert_int_equal(brume_event_policy_check(&p, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  if (strstr(err->msg, part) == NULL) fail_msg("\"%s\" lacks \"%s\"", err->msg, part);
  assert_non_null(strstr(err->msg, "InvalidParameterValueException"));
  brume_err_free(err);
}

static void test_check(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_event_policy p = lambda;
  assert_int_equal(brume_event_policy_check(&p, &err), 0);
  p = (brume_event_policy){.max_retries = 0, .max_age_s = 60, .time_scale = 0.5};
  assert_int_equal(brume_event_policy_check(&p, &err), 0);
  p = lambda;
  p.max_retries = 3;
  expect_invalid(p, "MaximumRetryAttempts is 3; it must be 0 to 2");
  p.max_retries = -1;
  expect_invalid(p, "MaximumRetryAttempts is -1");
  p = lambda;
  p.max_age_s = 30;
  expect_invalid(p, "MaximumEventAgeInSeconds is 30; it must be 60 to 21600");
  p.max_age_s = 21601;
  expect_invalid(p, "MaximumEventAgeInSeconds is 21601");
  p = lambda;
  p.time_scale = 0;
  expect_invalid(p, "time scale");
  p.time_scale = NAN;
  expect_invalid(p, "time scale");
  p.time_scale = INFINITY;
  expect_invalid(p, "time scale");
}

static brume_event_next after(const brume_event_policy *p, brume_try_outcome o, int attempts,
                              int backoffs, int64_t now_ms, double u) {
  brume_event_tries t = {.attempts = attempts, .backoffs = backoffs, .queued_ms = 0};
  return brume_event_policy_next(p, o, &t, now_ms, u);
}

static void expect_retry(brume_event_next n, int64_t delay_ms) {
  assert_int_equal(n.fate, BRUME_EVENT_RETRY);
  assert_null(n.condition);
  if (n.delay_ms != delay_ms)
    fail_msg("delay %lld ms, expected %lld", (long long)n.delay_ms, (long long)delay_ms);
}

static void expect_failed(brume_event_next n, const char *condition) {
  assert_int_equal(n.fate, BRUME_EVENT_FAILED);
  assert_string_equal(n.condition, condition);
}

static void test_success(void **state) {
  (void)state;
  brume_event_next n = after(&lambda, BRUME_TRY_SUCCEEDED, 0, 5, 1000, 0.3);
  assert_int_equal(n.fate, BRUME_EVENT_SUCCEEDED);
  assert_null(n.condition);
}

static void test_function_errors(void **state) {
  (void)state;
  /* About a minute after the first failure, two after the second, then no more. */
  expect_retry(after(&lambda, BRUME_TRY_FUNCTION_ERROR, 1, 0, 1000, 0.5), 60000);
  expect_retry(after(&lambda, BRUME_TRY_FUNCTION_ERROR, 1, 0, 1000, 0.0), 48000);
  expect_retry(after(&lambda, BRUME_TRY_FUNCTION_ERROR, 2, 0, 1000, 0.5), 120000);
  expect_retry(after(&lambda, BRUME_TRY_FUNCTION_ERROR, 2, 0, 1000, 0.75), 132000);
  expect_failed(after(&lambda, BRUME_TRY_FUNCTION_ERROR, 3, 0, 1000, 0.5), "RetriesExhausted");
  /* Throttles before do not count as attempts. */
  expect_retry(after(&lambda, BRUME_TRY_FUNCTION_ERROR, 1, 7, 1000, 0.5), 60000);
  brume_event_policy once = lambda;
  once.max_retries = 0;
  expect_failed(after(&once, BRUME_TRY_FUNCTION_ERROR, 1, 0, 1000, 0.5), "RetriesExhausted");
  brume_event_policy twice = lambda;
  twice.max_retries = 1;
  expect_retry(after(&twice, BRUME_TRY_FUNCTION_ERROR, 1, 0, 1000, 0.5), 60000);
  expect_failed(after(&twice, BRUME_TRY_FUNCTION_ERROR, 2, 0, 1000, 0.5), "RetriesExhausted");
}

static void test_backoff(void **state) {
  (void)state;
  /* 1 s, 2 s, 4 s ... 256 s, then 5 minutes at most; throttles and platform errors alike, and
   * neither uses up a retry. */
  int64_t want[] = {1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000, 300000};
  for (int n = 1; n <= 11; n++) {
    expect_retry(after(&lambda, BRUME_TRY_THROTTLED, 2, n, 1000, 0.5), want[n - 1]);
    expect_retry(after(&lambda, BRUME_TRY_PLATFORM_ERROR, 2, n, 1000, 0.5), want[n - 1]);
  }
  expect_retry(after(&lambda, BRUME_TRY_THROTTLED, 0, 1000, 1000, 0.5), 300000);
  expect_retry(after(&lambda, BRUME_TRY_THROTTLED, 0, 0, 1000, 0.5), 1000); /* as the first */
}

static void test_jitter(void **state) {
  (void)state;
  /* Within +-20 %, over the whole draw; out-of-range draws are held to it. */
  int64_t lo = INT64_MAX, hi = 0;
  for (int i = 0; i < 1000; i++) {
    brume_event_next n = after(&lambda, BRUME_TRY_THROTTLED, 0, 4, 1000, i / 1000.0);
    if (n.delay_ms < lo) lo = n.delay_ms;
    if (n.delay_ms > hi) hi = n.delay_ms;
  }
  assert_int_equal(lo, 6400);
  assert_true(hi >= 9580 && hi < 9600);
  assert_int_equal(after(&lambda, BRUME_TRY_THROTTLED, 0, 4, 1000, -3).delay_ms, 6400);
  assert_true(after(&lambda, BRUME_TRY_THROTTLED, 0, 4, 1000, 7).delay_ms <= 9600);
  assert_int_equal(after(&lambda, BRUME_TRY_THROTTLED, 0, 4, 1000, NAN).delay_ms, 6400);
}

static void test_age(void **state) {
  (void)state;
  brume_event_policy p = {.max_retries = 2, .max_age_s = 60, .time_scale = 1};
  assert_false(brume_event_expired(&p, 0, 59999));
  assert_true(brume_event_expired(&p, 0, 60000));
  assert_false(brume_event_expired(&p, 5000, 64999));
  /* A retry that would come after the age comes at it instead. */
  expect_retry(after(&p, BRUME_TRY_FUNCTION_ERROR, 1, 0, 50000, 0.5), 10000);
  expect_retry(after(&p, BRUME_TRY_THROTTLED, 0, 6, 59000, 0.5), 1000);
  expect_retry(after(&p, BRUME_TRY_THROTTLED, 0, 1, 10000, 0.5), 1000);
  /* At the age: no more tries. */
  expect_failed(after(&p, BRUME_TRY_THROTTLED, 0, 6, 60000, 0.5), "EventAgeExceeded");
  expect_failed(after(&p, BRUME_TRY_PLATFORM_ERROR, 0, 6, 90000, 0.5), "EventAgeExceeded");
  expect_failed(after(&p, BRUME_TRY_FUNCTION_ERROR, 1, 0, 60000, 0.5), "EventAgeExceeded");
  /* Retries run out first: that is the condition then. */
  expect_failed(after(&p, BRUME_TRY_FUNCTION_ERROR, 3, 0, 60000, 0.5), "RetriesExhausted");
}

static void test_time_scale(void **state) {
  (void)state;
  /* 60: a minute in a second. */
  brume_event_policy p = {.max_retries = 2, .max_age_s = 600, .time_scale = 60};
  expect_retry(after(&p, BRUME_TRY_FUNCTION_ERROR, 1, 0, 100, 0.5), 1000);
  expect_retry(after(&p, BRUME_TRY_FUNCTION_ERROR, 2, 0, 100, 0.5), 2000);
  expect_retry(after(&p, BRUME_TRY_THROTTLED, 0, 1, 100, 0.5), 17);
  assert_false(brume_event_expired(&p, 0, 9999)); /* 10 minutes in 10 s */
  assert_true(brume_event_expired(&p, 0, 10000));
  /* A delay never rounds down to nothing. */
  p.time_scale = 1e9;
  expect_retry(after(&p, BRUME_TRY_THROTTLED, 0, 1, 0, 0.0), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_check),           cmocka_unit_test(test_success),
      cmocka_unit_test(test_function_errors), cmocka_unit_test(test_backoff),
      cmocka_unit_test(test_jitter),          cmocka_unit_test(test_age),
      cmocka_unit_test(test_time_scale),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
