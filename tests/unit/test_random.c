/* common/random: numbers that differ from call to call, across all bits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "random.h"

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* 4,096 draws: all distinct, and every bit is both set and clear in some of them. */
static void test_distinct_and_spread(void **state) {
  (void)state;
  enum { N = 4096 };
  static uint64_t v[N];
  uint64_t any = 0, all = ~0ull;
  for (int i = 0; i < N; i++) {
    v[i] = brume_random_u64();
    any |= v[i];
    all &= v[i];
  }
  assert_true(any == ~0ull);
  assert_true(all == 0);
  qsort(v, N, sizeof(v[0]), cmp_u64);
  for (int i = 1; i < N; i++) assert_true(v[i] != v[i - 1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_distinct_and_spread)};
  return cmocka_run_group_tests_name("random", tests, NULL, NULL);
}
