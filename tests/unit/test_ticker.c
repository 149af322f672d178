/* Unit tests for common/ticker and common/clock: a ticker calls its function about once per
 * period, never before the first period, and a stop returns at once (not after a period) with
 * no call after it; brume_timespec_in normalises across a second. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "clock.h"
#include "ticker.h"

static atomic_int calls;
static atomic_llong first_call_us;

static void count(void *arg) {
  (void)arg;
  long long zero = 0;
  atomic_compare_exchange_strong(&first_call_us, &zero, brume_mono_us());
  atomic_fetch_add(&calls, 1);
}

static void test_ticks(void **state) {
  (void)state;
  atomic_store(&calls, 0);
  atomic_store(&first_call_us, 0);
  int64_t t0 = brume_mono_us();
  brume_ticker *t = brume_ticker_start(20, count, NULL);
  usleep(300 * 1000);
  int64_t s0 = brume_mono_us();
  brume_ticker_stop(t);
  int64_t stop_us = brume_mono_us() - s0;
  int n = atomic_load(&calls);
  print_message("# %d calls in 300 ms at 20 ms; stop took %lld us\n", n, (long long)stop_us);
  /* 15 periods fit; a loaded machine runs late, never early. */
  assert_true(n >= 5 && n <= 15);
  assert_true(atomic_load(&first_call_us) - t0 >= 19000);
  assert_true(stop_us < 20000);
  usleep(60 * 1000);
  assert_int_equal(atomic_load(&calls), n);
}

static void test_stop_before_first(void **state) {
  (void)state;
  atomic_store(&calls, 0);
  brume_ticker *t = brume_ticker_start(60000, count, NULL);
  int64_t s0 = brume_mono_us();
  brume_ticker_stop(t);
  assert_true(brume_mono_us() - s0 < 1000000);
  assert_int_equal(atomic_load(&calls), 0);
  brume_ticker_stop(NULL);
}

static void test_timespec_in(void **state) {
  (void)state;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  struct timespec ts = brume_timespec_in(CLOCK_MONOTONIC, 2750);
  assert_true(ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000);
  int64_t diff_ms = (int64_t)(ts.tv_sec - now.tv_sec) * 1000 + (ts.tv_nsec - now.tv_nsec) / 1000000;
  assert_true(diff_ms >= 2749 && diff_ms <= 2800);
  assert_true(brume_wall_ms() > 1600000000000LL); /* after 2020 */
  int64_t a = brume_mono_ms();
  usleep(5000);
  assert_true(brume_mono_ms() - a >= 5);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ticks),
      cmocka_unit_test(test_stop_before_first),
      cmocka_unit_test(test_timespec_in),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
