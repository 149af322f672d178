/* Unit tests for cli/backoff: the ceilings grow from the base by doubling up to the cap, every
 * delay lies in [0, ceiling], the random source decides where (its extremes reach both ends),
 * and real randomness spreads the delays over the window. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "backoff.h"

static uint64_t fixed(void *user) {
  return *(uint64_t *)user;
}

static void test_ceilings(void **state) {
  (void)state;
  brume_cli_backoff b = brume_cli_backoff_default();
  assert_int_equal(b.base_ms, 100);
  assert_int_equal(b.cap_ms, 5000);
  static const int64_t want[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000};
  for (unsigned n = 0; n < sizeof(want) / sizeof(want[0]); n++)
    assert_int_equal(brume_cli_backoff_ceiling_ms(&b, n), want[n]);
  /* No overflow however many retries. */
  assert_int_equal(brume_cli_backoff_ceiling_ms(&b, 64), 5000);
  assert_int_equal(brume_cli_backoff_ceiling_ms(&b, 100000), 5000);
  brume_cli_backoff odd = {.base_ms = 3, .cap_ms = 10, .random = b.random};
  assert_int_equal(brume_cli_backoff_ceiling_ms(&odd, 0), 3);
  assert_int_equal(brume_cli_backoff_ceiling_ms(&odd, 1), 6);
  assert_int_equal(brume_cli_backoff_ceiling_ms(&odd, 2), 10);
}

static void test_injected_random(void **state) {
  (void)state;
  uint64_t r = 0;
  brume_cli_backoff b = {.base_ms = 100, .cap_ms = 5000, .random = fixed, .random_user = &r};
  for (unsigned n = 0; n < 10; n++) {
    int64_t ceiling = brume_cli_backoff_ceiling_ms(&b, n);
    r = 0;
    assert_int_equal(brume_cli_backoff_delay_ms(&b, n), 0);
    r = UINT64_MAX;
    assert_int_equal(brume_cli_backoff_delay_ms(&b, n), ceiling);
    r = UINT64_C(1) << 63; /* one half */
    int64_t half = brume_cli_backoff_delay_ms(&b, n);
    assert_in_range(half, ceiling / 2 - 1, ceiling / 2 + 1);
  }
}

static void test_real_jitter(void **state) {
  (void)state;
  brume_cli_backoff b = brume_cli_backoff_default();
  for (unsigned n = 0; n < 8; n++) {
    int64_t ceiling = brume_cli_backoff_ceiling_ms(&b, n);
    int64_t lo = INT64_MAX, hi = -1, sum = 0;
    const int draws = 2000;
    for (int i = 0; i < draws; i++) {
      int64_t d = brume_cli_backoff_delay_ms(&b, n);
      assert_in_range(d, 0, ceiling);
      lo = d < lo ? d : lo;
      hi = d > hi ? d : hi;
      sum += d;
    }
    /* Full jitter: the draws cover the window, around its middle on average (the chance of
     * failing these by bad luck is far below 1e-9). */
    assert_true(lo < ceiling / 10);
    assert_true(hi > ceiling * 9 / 10);
    int64_t mean = sum / draws;
    assert_in_range(mean, ceiling * 4 / 10, ceiling * 6 / 10);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ceilings),
      cmocka_unit_test(test_injected_random),
      cmocka_unit_test(test_real_jitter),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
