/* Unit tests for counting/limits: the default account limit, the unreserved pool, admission of a
 * reserved function (up to R, whatever room the account has; R = 0 switches it off) and of
 * unreserved ones (up to the pool, while a reserved function keeps its share), the
 * 100-unreserved rule on reserved concurrency and on the account limit, provisioned concurrency
 * against reserved concurrency or the unreserved pool, and the reason strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "concurrency.h"

static const brume_function_limits unreserved_fn = {.reserved = false};

static brume_function_limits reserved_fn(uint32_t r) {
  return (brume_function_limits){.reserved = true, .reserved_concurrency = r};
}

/* Asserts that err holds INVALID_ARGUMENT with msg, and clears it. */
static void expect_invalid(brume_err **err, const char *msg) {
  assert_non_null(*err);
  assert_int_equal((*err)->code, BRUME_INVALID_ARGUMENT);
  assert_string_equal((*err)->msg, msg);
  brume_err_clear(err);
}

static void test_default_and_pool(void **state) {
  (void)state;
  assert_int_equal(BRUME_ACCOUNT_CONCURRENCY_DEFAULT, 1000);
  assert_int_equal(BRUME_UNRESERVED_MIN, 100);
  brume_account_limits a = {.limit = BRUME_ACCOUNT_CONCURRENCY_DEFAULT};
  assert_int_equal(brume_concurrency_unreserved(&a), 1000);
  a.reserved_total = 300;
  assert_int_equal(brume_concurrency_unreserved(&a), 700);
  a.reserved_total = 900;
  assert_int_equal(brume_concurrency_unreserved(&a), 100);
  /* Over-reserved (never allowed by the checks): no pool, not a wrap-around. */
  a.reserved_total = 1200;
  assert_int_equal(brume_concurrency_unreserved(&a), 0);

  /* With nothing reserved, unreserved functions share the whole limit. */
  a.reserved_total = 0;
  assert_int_equal(brume_concurrency_admit(&a, &unreserved_fn, 0, 0), BRUME_THROTTLE_NONE);
  assert_int_equal(brume_concurrency_admit(&a, &unreserved_fn, 999, 999), BRUME_THROTTLE_NONE);
  assert_int_equal(brume_concurrency_admit(&a, &unreserved_fn, 1000, 1000), BRUME_THROTTLE_ACCOUNT);
  /* What counts is the pool's use, not the function's own. */
  assert_int_equal(brume_concurrency_admit(&a, &unreserved_fn, 0, 1000), BRUME_THROTTLE_ACCOUNT);
  assert_int_equal(brume_concurrency_admit(&a, &unreserved_fn, 1, 1001), BRUME_THROTTLE_ACCOUNT);
}

static void test_reserved_admission(void **state) {
  (void)state;
  brume_account_limits a = {.limit = 1000, .reserved_total = 50};
  brume_function_limits f = reserved_fn(50);
  /* Admitted up to R... */
  for (uint32_t n = 0; n < 50; n++)
    assert_int_equal(brume_concurrency_admit(&a, &f, n, 0), BRUME_THROTTLE_NONE);
  /* ...then throttled with the reserved reason even though the account has 950 free. */
  assert_int_equal(brume_concurrency_admit(&a, &f, 50, 0), BRUME_THROTTLE_RESERVED);
  assert_int_equal(brume_concurrency_admit(&a, &f, 51, 0), BRUME_THROTTLE_RESERVED);
  /* The unreserved pool's use does not touch it. */
  assert_int_equal(brume_concurrency_admit(&a, &f, 10, 950), BRUME_THROTTLE_NONE);
  assert_int_equal(brume_concurrency_admit(&a, &f, 10, 5000), BRUME_THROTTLE_NONE);

  /* Reserved 0: switched off, every invocation throttled. */
  brume_function_limits off = reserved_fn(0);
  a.reserved_total = 0;
  assert_int_equal(brume_concurrency_admit(&a, &off, 0, 0), BRUME_THROTTLE_RESERVED);
}

/* A reserved-concurrency function keeps its share while unreserved ones flood the account. */
static void test_reserved_keeps_share(void **state) {
  (void)state;
  brume_account_limits a = {.limit = 1000, .reserved_total = 200};
  brume_function_limits f = reserved_fn(200);
  /* The unreserved functions get 800 between them, and no more. */
  assert_int_equal(brume_concurrency_admit(&a, &unreserved_fn, 500, 799), BRUME_THROTTLE_NONE);
  assert_int_equal(brume_concurrency_admit(&a, &unreserved_fn, 500, 800), BRUME_THROTTLE_ACCOUNT);
  assert_int_equal(brume_concurrency_admit(&a, &unreserved_fn, 0, 800), BRUME_THROTTLE_ACCOUNT);
  /* With the pool full, the reserved function still gets all 200. */
  for (uint32_t n = 0; n < 200; n++)
    assert_int_equal(brume_concurrency_admit(&a, &f, n, 800), BRUME_THROTTLE_NONE);
  assert_int_equal(brume_concurrency_admit(&a, &f, 200, 800), BRUME_THROTTLE_RESERVED);
}

static void test_reserved_rule(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_account_limits a = {.limit = 1000};
  /* Exactly 100 left is fine, 99 is refused. */
  assert_int_equal(brume_concurrency_check_reserved(&a, "f", &unreserved_fn, 900, &err), 0);
  assert_null(err);
  assert_int_equal(brume_concurrency_check_reserved(&a, "f", &unreserved_fn, 901, &err), -1);
  expect_invalid(&err,
                 "reserved concurrency 901 for f would leave 99 unreserved of the account's "
                 "1000; at least 100 must stay unreserved");
  assert_int_equal(brume_concurrency_check_reserved(&a, "f", &unreserved_fn, 950, &err), -1);
  expect_invalid(&err,
                 "reserved concurrency 950 for f would leave 50 unreserved of the account's "
                 "1000; at least 100 must stay unreserved");
  /* More than the limit: the numbers say how far over. */
  assert_int_equal(brume_concurrency_check_reserved(&a, "f", &unreserved_fn, 1500, &err), -1);
  expect_invalid(&err,
                 "reserved concurrency 1500 for f would leave -500 unreserved of the account's "
                 "1000; at least 100 must stay unreserved");
  assert_int_equal(brume_concurrency_check_reserved(&a, "f", &unreserved_fn, UINT32_MAX, NULL), -1);
  /* 0 (switched off) is always fine. */
  assert_int_equal(brume_concurrency_check_reserved(&a, "f", &unreserved_fn, 0, NULL), 0);

  /* Other functions' reservations count. */
  a.reserved_total = 600;
  assert_int_equal(brume_concurrency_check_reserved(&a, "g", &unreserved_fn, 300, NULL), 0);
  assert_int_equal(brume_concurrency_check_reserved(&a, "g", &unreserved_fn, 301, &err), -1);
  expect_invalid(&err,
                 "reserved concurrency 301 for g would leave 99 unreserved of the account's "
                 "1000; at least 100 must stay unreserved");
  /* Changing a function's own reservation replaces it instead of adding to it: h holds 500 of
   * the 600. */
  brume_function_limits h = reserved_fn(500);
  assert_int_equal(brume_concurrency_check_reserved(&a, "h", &h, 800, NULL), 0);
  assert_int_equal(brume_concurrency_check_reserved(&a, "h", &h, 801, NULL), -1);
  assert_int_equal(brume_concurrency_check_reserved(&a, "h", &h, 0, NULL), 0);
}

static void test_account_limit_rule(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_account_limits a = {.limit = 1000, .reserved_total = 400};
  assert_int_equal(brume_concurrency_check_account_limit(&a, 2000, &err), 0);
  assert_int_equal(brume_concurrency_check_account_limit(&a, 500, &err), 0);
  assert_null(err);
  assert_int_equal(brume_concurrency_check_account_limit(&a, 499, &err), -1);
  expect_invalid(&err,
                 "account concurrency limit 499 would leave 99 unreserved (400 is reserved); at "
                 "least 100 must stay unreserved");
  assert_int_equal(brume_concurrency_check_account_limit(&a, 100, &err), -1);
  expect_invalid(&err,
                 "account concurrency limit 100 would leave -300 unreserved (400 is reserved); "
                 "at least 100 must stay unreserved");
  /* Nothing reserved: 100 is the smallest limit. */
  a.reserved_total = 0;
  assert_int_equal(brume_concurrency_check_account_limit(&a, 100, NULL), 0);
  assert_int_equal(brume_concurrency_check_account_limit(&a, 99, NULL), -1);
  assert_int_equal(brume_concurrency_check_account_limit(&a, 0, NULL), -1);
  /* Provisioned concurrency of unreserved functions must fit as well. */
  a.reserved_total = 400;
  a.unreserved_provisioned = 200;
  assert_int_equal(brume_concurrency_check_account_limit(&a, 700, NULL), 0);
  assert_int_equal(brume_concurrency_check_account_limit(&a, 699, &err), -1);
  expect_invalid(&err,
                 "account concurrency limit 699 would leave 299 unreserved, 200 of it "
                 "provisioned; at least 100 must stay unreserved and unprovisioned");
}

static void test_provisioned_reserved(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_account_limits a = {.limit = 1000, .reserved_total = 300};
  brume_function_limits f = reserved_fn(300);
  /* Provisioned <= reserved, whatever the pool. */
  assert_int_equal(brume_concurrency_check_provisioned(&a, "f", &f, 300, &err), 0);
  assert_int_equal(brume_concurrency_check_provisioned(&a, "f", &f, 0, &err), 0);
  assert_null(err);
  assert_int_equal(brume_concurrency_check_provisioned(&a, "f", &f, 301, &err), -1);
  expect_invalid(&err, "provisioned concurrency 301 for f exceeds its reserved concurrency 300");
  f.reserved_concurrency = 0;
  assert_int_equal(brume_concurrency_check_provisioned(&a, "f", &f, 1, NULL), -1);

  /* Lowering reserved concurrency below the provisioned concurrency is refused. */
  f = reserved_fn(300);
  f.provisioned = 250;
  assert_int_equal(brume_concurrency_check_reserved(&a, "f", &f, 250, NULL), 0);
  assert_int_equal(brume_concurrency_check_reserved(&a, "f", &f, 249, &err), -1);
  expect_invalid(&err,
                 "reserved concurrency 249 for f is less than its provisioned concurrency 250; "
                 "lower the provisioned concurrency first");
  /* An unreserved function with provisioned concurrency that gets reserved concurrency: its
   * provisioned concurrency moves from the pool into the reservation. */
  a = (brume_account_limits){.limit = 1000, .reserved_total = 0, .unreserved_provisioned = 400};
  brume_function_limits g = {.reserved = false, .provisioned = 400};
  assert_int_equal(brume_concurrency_check_reserved(&a, "g", &g, 399, NULL), -1);
  assert_int_equal(brume_concurrency_check_reserved(&a, "g", &g, 900, NULL), 0);
}

static void test_provisioned_unreserved(void **state) {
  (void)state;
  brume_err *err = NULL;
  /* Pool of 700 (300 reserved); 100 of it must stay unprovisioned. */
  brume_account_limits a = {.limit = 1000, .reserved_total = 300};
  brume_function_limits f = unreserved_fn;
  assert_int_equal(brume_concurrency_check_provisioned(&a, "f", &f, 600, &err), 0);
  assert_null(err);
  assert_int_equal(brume_concurrency_check_provisioned(&a, "f", &f, 601, &err), -1);
  expect_invalid(&err,
                 "provisioned concurrency 601 for f would leave 99 of the account's 700 "
                 "unreserved concurrency unprovisioned; at least 100 must stay unreserved and "
                 "unprovisioned");
  /* Other unreserved functions' provisioned concurrency counts; the function's own current
   * value is replaced. */
  a.unreserved_provisioned = 500; /* 200 of it f's */
  f.provisioned = 200;
  assert_int_equal(brume_concurrency_check_provisioned(&a, "f", &f, 300, NULL), 0);
  assert_int_equal(brume_concurrency_check_provisioned(&a, "f", &f, 301, NULL), -1);
  assert_int_equal(brume_concurrency_check_provisioned(&a, "f", &f, 0, NULL), 0);
  assert_int_equal(brume_concurrency_check_provisioned(&a, "f", &f, UINT32_MAX, NULL), -1);

  /* A new reservation elsewhere shrinks the pool under the provisioned concurrency: 500
   * provisioned in the pool, so at most 400 may be reserved. */
  brume_function_limits g = unreserved_fn;
  a.reserved_total = 0;
  assert_int_equal(brume_concurrency_check_reserved(&a, "g", &g, 400, NULL), 0);
  assert_int_equal(brume_concurrency_check_reserved(&a, "g", &g, 401, &err), -1);
  expect_invalid(&err,
                 "reserved concurrency 401 for g would leave 599 unreserved of the account's "
                 "1000, 500 of it provisioned; at least 100 must stay unreserved and "
                 "unprovisioned");
}

static void test_reasons(void **state) {
  (void)state;
  assert_string_equal(brume_throttle_reason(BRUME_THROTTLE_ACCOUNT),
                      "ConcurrentInvocationLimitExceeded");
  assert_string_equal(brume_throttle_reason(BRUME_THROTTLE_RESERVED),
                      "ReservedFunctionConcurrentInvocationLimitExceeded");
  assert_string_equal(brume_throttle_reason(BRUME_THROTTLE_SCALING_RATE),
                      "ConcurrencyScalingRateExceeded");
  assert_string_equal(brume_throttle_reason(BRUME_THROTTLE_NONE), "");
  assert_string_equal(brume_throttle_reason((brume_throttle)42), "");
  /* The numbers are proto ThrottleReason's. */
  assert_int_equal(BRUME_THROTTLE_NONE, 0);
  assert_int_equal(BRUME_THROTTLE_ACCOUNT, 1);
  assert_int_equal(BRUME_THROTTLE_RESERVED, 2);
  assert_int_equal(BRUME_THROTTLE_SCALING_RATE, 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_default_and_pool),       cmocka_unit_test(test_reserved_admission),
      cmocka_unit_test(test_reserved_keeps_share),   cmocka_unit_test(test_reserved_rule),
      cmocka_unit_test(test_account_limit_rule),     cmocka_unit_test(test_provisioned_reserved),
      cmocka_unit_test(test_provisioned_unreserved), cmocka_unit_test(test_reasons),
  };
  return cmocka_run_group_tests_name("counting_limits", tests, NULL, NULL);
}
