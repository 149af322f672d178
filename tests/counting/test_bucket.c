/* Unit tests for counting/bucket, the scaling rate's token bucket, on made-up times: the burst
 * then the throttle with its retry_after, the per-account (+500 a minute, one token per 120 ms)
 * and per-function (1,000 per 10 s) presets, no drift over many small steps, time_scale, a clock
 * that goes backwards, live parameter changes, giving tokens back, and parameter checks. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "bucket.h"

/* A start time that is not 0, as a monotonic clock's would be. */
#define T0 1000000

static void init_ok(brume_bucket *b, brume_bucket_params p, int64_t now_ms) {
  brume_err *err = NULL;
  assert_int_equal(brume_bucket_init(b, &p, now_ms, &err), 0);
  assert_null(err);
}

/* Takes until throttled at now_ms; returns how many were taken. */
static uint32_t drain(brume_bucket *b, int64_t now_ms, int64_t *retry_after_ms) {
  uint32_t n = 0;
  while (brume_bucket_take(b, now_ms, retry_after_ms)) n++;
  return n;
}

static void test_burst_then_throttled(void **state) {
  (void)state;
  brume_bucket b;
  init_ok(&b, BRUME_BUCKET_ACCOUNT_PARAMS, T0);
  assert_int_equal(brume_bucket_level(&b, T0), 1000);
  int64_t retry = -1;
  for (int i = 0; i < 1000; i++) assert_true(brume_bucket_take(&b, T0, &retry));
  assert_int_equal(retry, -1); /* left alone while tokens are granted */
  assert_false(brume_bucket_take(&b, T0, &retry));
  /* 500 a minute: one token every 120 ms. */
  assert_int_equal(retry, 120);
  assert_int_equal(brume_bucket_level(&b, T0), 0);
  /* NULL retry_after is allowed. */
  assert_false(brume_bucket_take(&b, T0, NULL));
}

static void test_account_refill(void **state) {
  (void)state;
  brume_bucket b;
  init_ok(&b, BRUME_BUCKET_ACCOUNT_PARAMS, T0);
  assert_int_equal(drain(&b, T0, NULL), 1000);
  /* +500 after 60 s. */
  assert_int_equal(brume_bucket_level(&b, T0 + 60000), 500);
  assert_int_equal(drain(&b, T0 + 60000, NULL), 500);

  /* One token per 120 ms, not before. */
  int64_t t = T0 + 60000, retry = 0;
  for (int i = 0; i < 10; i++) {
    assert_false(brume_bucket_take(&b, t + 119, &retry));
    assert_int_equal(retry, 1);
    assert_true(brume_bucket_take(&b, t + 120, &retry));
    t += 120;
  }
  assert_false(brume_bucket_take(&b, t, &retry));
  assert_int_equal(retry, 120);
  assert_false(brume_bucket_take(&b, t + 50, &retry));
  assert_int_equal(retry, 70);
}

static void test_never_above_capacity(void **state) {
  (void)state;
  brume_bucket b;
  init_ok(&b, BRUME_BUCKET_ACCOUNT_PARAMS, T0);
  /* Idle while full adds nothing. */
  assert_int_equal(brume_bucket_level(&b, T0 + 3600000), 1000);
  assert_int_equal(drain(&b, T0 + 3600000, NULL), 1000);
  /* A day idle, and a very long time idle, fill it to the brim and no more. */
  assert_int_equal(brume_bucket_level(&b, T0 + 3600000 + 86400000), 1000);
  assert_int_equal(drain(&b, T0 + 3600000 + 86400000, NULL), 1000);
  assert_int_equal(brume_bucket_level(&b, INT64_MAX / 4), 1000);
  assert_int_equal(drain(&b, INT64_MAX / 4, NULL), 1000);
  assert_int_equal(brume_bucket_level(&b, INT64_MAX / 2), 1000);
  /* Absurd times saturate instead of overflowing. */
  assert_true(brume_bucket_level(&b, INT64_MAX) <= 1000);

  /* Time spent full is not banked: the refill after a full bucket starts from the take. */
  init_ok(&b, BRUME_BUCKET_ACCOUNT_PARAMS, T0);
  assert_true(brume_bucket_take(&b, T0 + 100000, NULL));
  assert_int_equal(brume_bucket_level(&b, T0 + 100119), 999);
  assert_int_equal(brume_bucket_level(&b, T0 + 100120), 1000);
}

static void test_time_scale(void **state) {
  (void)state;
  brume_bucket b;
  brume_bucket_params p = BRUME_BUCKET_ACCOUNT_PARAMS;
  p.time_scale = 60;
  init_ok(&b, p, T0);
  assert_int_equal(drain(&b, T0, NULL), 1000);
  /* A minute of the rate in one real second. */
  assert_int_equal(brume_bucket_level(&b, T0 + 999), 499);
  assert_int_equal(brume_bucket_level(&b, T0 + 1000), 500);
  assert_int_equal(drain(&b, T0 + 1000, NULL), 500);
  /* retry_after is in real milliseconds: 120 ms of the rate is 2 real ms. */
  int64_t retry = 0;
  assert_false(brume_bucket_take(&b, T0 + 1000, &retry));
  assert_int_equal(retry, 2);
  assert_false(brume_bucket_take(&b, T0 + 1001, &retry));
  assert_int_equal(retry, 1);
  assert_true(brume_bucket_take(&b, T0 + 1002, &retry));

  /* A scale that does not divide evenly: rounded up, at least 1. 120 / 7 = 17.1 -> 18. */
  p.time_scale = 7;
  init_ok(&b, p, T0);
  assert_int_equal(drain(&b, T0, NULL), 1000);
  assert_false(brume_bucket_take(&b, T0, &retry));
  assert_int_equal(retry, 18);
  assert_false(brume_bucket_take(&b, T0 + 17, &retry));
  assert_int_equal(retry, 1);
  assert_true(brume_bucket_take(&b, T0 + 18, NULL));

  /* A huge scale: a token is there within the next millisecond. */
  p.time_scale = BRUME_BUCKET_TIME_SCALE_MAX;
  init_ok(&b, p, T0);
  assert_int_equal(drain(&b, T0, NULL), 1000);
  assert_false(brume_bucket_take(&b, T0, &retry));
  assert_int_equal(retry, 1);
  assert_int_equal(brume_bucket_level(&b, T0 + 1), 1000);

  /* A fractional scale, stepping 1 ms: 1.5 ms of the rate per real ms, exactly 500 tokens in
   * 40 real seconds. */
  p.time_scale = 1.5;
  init_ok(&b, p, T0);
  assert_int_equal(drain(&b, T0, NULL), 1000);
  uint32_t got = 0;
  for (int64_t t = T0 + 1; t <= T0 + 40000; t++) got += drain(&b, t, NULL);
  assert_int_equal(got, 500);

  /* Below 1 the rate slows: 500 a minute at 0.08 is 40 in a real minute, one every 1.5 s. */
  p.time_scale = 0.08;
  init_ok(&b, p, T0);
  assert_int_equal(drain(&b, T0, NULL), 1000);
  got = 0;
  for (int64_t t = T0 + 100; t <= T0 + 60000; t += 100) got += drain(&b, t, NULL);
  assert_int_equal(got, 40);
  assert_int_equal(drain(&b, T0 + 61499, NULL), 0);
  assert_int_equal(drain(&b, T0 + 61500, NULL), 1);
}

static void test_function_preset(void **state) {
  (void)state;
  brume_bucket b;
  init_ok(&b, BRUME_BUCKET_FUNCTION_PARAMS, T0);
  int64_t retry = 0;
  assert_int_equal(drain(&b, T0, &retry), 1000);
  /* 1,000 per 10 s: one token per 10 ms. */
  assert_int_equal(retry, 10);
  /* 100 per second. */
  assert_int_equal(brume_bucket_level(&b, T0 + 1000), 100);
  assert_int_equal(drain(&b, T0 + 1000, NULL), 100);
  assert_int_equal(brume_bucket_level(&b, T0 + 2000), 100);
  /* 1,000 more after 10 s (900 more on top of the 100 there). */
  assert_int_equal(brume_bucket_level(&b, T0 + 11000), 1000);
  assert_int_equal(drain(&b, T0 + 11000, NULL), 1000);
  assert_int_equal(brume_bucket_level(&b, T0 + 21000), 1000);
}

static void test_no_drift(void **state) {
  (void)state;
  brume_bucket b;
  init_ok(&b, BRUME_BUCKET_ACCOUNT_PARAMS, T0);
  /* Stepping 1 ms at a time for 60 s, taking whenever possible: the burst plus exactly 500. */
  uint32_t got = 0;
  for (int64_t t = T0; t <= T0 + 60000; t++) got += drain(&b, t, NULL);
  assert_int_equal(got, 1000 + 500);
  assert_int_equal(brume_bucket_level(&b, T0 + 60000), 0);

  /* An awkward rate (7 tokens per 1,000 ms: 142.857 ms each) over odd steps: the number of
   * tokens equals floor(elapsed * 7 / 1000) at every step. */
  brume_bucket_params p = {
      .capacity = 3, .refill_tokens = 7, .refill_interval_ms = 1000, .time_scale = 1};
  init_ok(&b, p, T0);
  assert_int_equal(drain(&b, T0, NULL), 3);
  got = 0;
  for (int64_t t = T0 + 13; t <= T0 + 100000; t += 13) {
    got += drain(&b, t, NULL);
    assert_int_equal(got, (t - T0) * 7 / 1000);
  }
}

static void test_retry_after_rounding(void **state) {
  (void)state;
  brume_bucket b;
  /* 3 tokens per 1,000 ms: 333.33 ms each, so the first is there at 334 ms (1,002 units of the
   * 1,000 needed), the second at 667, the third at 1,000. */
  brume_bucket_params p = {
      .capacity = 5, .refill_tokens = 3, .refill_interval_ms = 1000, .time_scale = 1};
  init_ok(&b, p, T0);
  int64_t retry = 0;
  assert_int_equal(drain(&b, T0, &retry), 5);
  assert_int_equal(retry, 334);
  assert_false(brume_bucket_take(&b, T0 + 333, &retry));
  assert_int_equal(retry, 1);
  assert_true(brume_bucket_take(&b, T0 + 334, &retry));
  /* 2 units carried over: 998 missing, 333 ms (999 units). */
  assert_false(brume_bucket_take(&b, T0 + 334, &retry));
  assert_int_equal(retry, 333);
  assert_true(brume_bucket_take(&b, T0 + 667, &retry));
  assert_false(brume_bucket_take(&b, T0 + 667, &retry));
  assert_int_equal(retry, 333);
  assert_true(brume_bucket_take(&b, T0 + 1000, &retry));

  /* With a capacity of 1, the token at 334 ms fills the bucket, which then holds no fraction:
   * the next one takes the whole 334 ms again. */
  p.capacity = 1;
  init_ok(&b, p, T0);
  assert_true(brume_bucket_take(&b, T0, &retry));
  assert_false(brume_bucket_take(&b, T0, &retry));
  assert_int_equal(retry, 334);
  assert_true(brume_bucket_take(&b, T0 + 334, &retry));
  assert_false(brume_bucket_take(&b, T0 + 334, &retry));
  assert_int_equal(retry, 334);

  /* Slow: one token an hour. */
  p = (brume_bucket_params){
      .capacity = 1, .refill_tokens = 1, .refill_interval_ms = 3600000, .time_scale = 1};
  init_ok(&b, p, T0);
  assert_true(brume_bucket_take(&b, T0, &retry));
  assert_false(brume_bucket_take(&b, T0 + 1, &retry));
  assert_int_equal(retry, 3599999);
}

static void test_backwards_clock(void **state) {
  (void)state;
  brume_bucket b;
  init_ok(&b, BRUME_BUCKET_ACCOUNT_PARAMS, T0);
  assert_int_equal(drain(&b, T0 + 1000, NULL), 1000);
  /* 600 ms on: 5 tokens. */
  assert_int_equal(brume_bucket_level(&b, T0 + 1600), 5);
  /* Backwards: nothing added or removed. */
  assert_int_equal(brume_bucket_level(&b, T0), 5);
  assert_int_equal(brume_bucket_level(&b, T0 - 1000000), 5);
  assert_int_equal(brume_bucket_level(&b, INT64_MIN), 5);
  assert_int_equal(drain(&b, T0 + 1500, NULL), 5);
  /* The retry counts from the time given, up to the latest time seen and on. */
  int64_t retry = 0;
  assert_false(brume_bucket_take(&b, T0 + 1500, &retry));
  assert_int_equal(retry, 100 + 120);
  /* Coming back to the latest time seen adds nothing; later refills count from there. */
  assert_int_equal(brume_bucket_level(&b, T0 + 1600), 0);
  assert_int_equal(brume_bucket_level(&b, T0 + 1719), 0);
  assert_int_equal(brume_bucket_level(&b, T0 + 1720), 1);
  assert_int_equal(brume_bucket_level(&b, T0 + 61600), 500);
  /* A jitter back and forth does not count time twice. */
  for (int i = 0; i < 100; i++) {
    assert_int_equal(brume_bucket_level(&b, T0 + 61590), 500);
    assert_int_equal(brume_bucket_level(&b, T0 + 61600), 500);
  }
}

static void test_set_params(void **state) {
  (void)state;
  brume_bucket b;
  brume_err *err = NULL;
  init_ok(&b, BRUME_BUCKET_ACCOUNT_PARAMS, T0);
  /* A smaller capacity clips the level. */
  brume_bucket_params p = BRUME_BUCKET_ACCOUNT_PARAMS;
  p.capacity = 500;
  assert_int_equal(brume_bucket_set_params(&b, &p, T0, &err), 0);
  assert_null(err);
  assert_int_equal(brume_bucket_level(&b, T0), 500);
  /* A larger capacity keeps the level, then refills up to it. */
  p.capacity = 3000;
  assert_int_equal(brume_bucket_set_params(&b, &p, T0, &err), 0);
  assert_int_equal(brume_bucket_level(&b, T0), 500);
  assert_int_equal(brume_bucket_level(&b, T0 + 60000), 1000);
  assert_int_equal(brume_bucket_level(&b, T0 + 4 * 60000), 2500);
  assert_int_equal(brume_bucket_level(&b, T0 + 60 * 60000), 3000);

  /* Tokens gathered under the old rate are kept, the fraction of the next one too. */
  init_ok(&b, BRUME_BUCKET_ACCOUNT_PARAMS, T0);
  assert_int_equal(drain(&b, T0, NULL), 1000);
  assert_int_equal(brume_bucket_level(&b, T0 + 300), 2); /* and half a token */
  p = BRUME_BUCKET_FUNCTION_PARAMS;                      /* one token per 10 ms */
  assert_int_equal(brume_bucket_set_params(&b, &p, T0 + 300, &err), 0);
  assert_int_equal(brume_bucket_level(&b, T0 + 300), 2);
  assert_int_equal(brume_bucket_level(&b, T0 + 304), 2);
  assert_int_equal(brume_bucket_level(&b, T0 + 305), 3);
  assert_int_equal(brume_bucket_level(&b, T0 + 315), 4);

  /* A new time scale applies from the change on. */
  p = BRUME_BUCKET_ACCOUNT_PARAMS;
  assert_int_equal(brume_bucket_set_params(&b, &p, T0 + 315, &err), 0);
  assert_int_equal(drain(&b, T0 + 315, NULL), 4);
  p.time_scale = 60;
  assert_int_equal(brume_bucket_set_params(&b, &p, T0 + 435, &err), 0); /* one token at 1x */
  assert_int_equal(brume_bucket_level(&b, T0 + 435), 1);
  assert_int_equal(brume_bucket_level(&b, T0 + 1435), 501);

  /* Invalid parameters leave the bucket as it was. */
  brume_bucket_state before, after;
  brume_bucket_get_state(&b, T0 + 1435, &before);
  p.capacity = 0;
  assert_int_equal(brume_bucket_set_params(&b, &p, T0 + 1435, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_clear(&err);
  brume_bucket_get_state(&b, T0 + 1435, &after);
  assert_memory_equal(&before, &after, sizeof(before));
}

static void test_give_back(void **state) {
  (void)state;
  brume_bucket b;
  init_ok(&b, BRUME_BUCKET_ACCOUNT_PARAMS, T0);
  /* Full: a token given back is dropped. */
  assert_false(brume_bucket_give_back(&b, T0));
  assert_int_equal(brume_bucket_level(&b, T0), 1000);
  assert_int_equal(drain(&b, T0, NULL), 1000);
  assert_true(brume_bucket_give_back(&b, T0));
  assert_int_equal(brume_bucket_level(&b, T0), 1);
  assert_true(brume_bucket_take(&b, T0, NULL));
  assert_false(brume_bucket_take(&b, T0, NULL));
  /* The refill goes on underneath a give-back. */
  assert_true(brume_bucket_give_back(&b, T0 + 60));
  assert_int_equal(brume_bucket_level(&b, T0 + 119), 1);
  assert_int_equal(brume_bucket_level(&b, T0 + 120), 2);
  /* Up to capacity, never above. */
  brume_bucket_params p = {
      .capacity = 2, .refill_tokens = 1, .refill_interval_ms = 1000, .time_scale = 1};
  init_ok(&b, p, T0);
  assert_true(brume_bucket_take(&b, T0, NULL));
  assert_true(brume_bucket_give_back(&b, T0 + 500));
  assert_false(brume_bucket_give_back(&b, T0 + 500));
  assert_int_equal(brume_bucket_level(&b, T0 + 500), 2);
  /* Full again, so the half token gathered before the give-back is gone. */
  assert_true(brume_bucket_take(&b, T0 + 500, NULL));
  assert_int_equal(brume_bucket_level(&b, T0 + 1499), 1);
  assert_int_equal(brume_bucket_level(&b, T0 + 1500), 2);
}

static void test_state(void **state) {
  (void)state;
  brume_bucket b;
  init_ok(&b, BRUME_BUCKET_FUNCTION_PARAMS, T0);
  assert_int_equal(drain(&b, T0, NULL), 1000);
  brume_bucket_state s;
  brume_bucket_get_state(&b, T0 + 250, &s);
  assert_int_equal(s.level, 25);
  assert_int_equal(s.capacity, 1000);
  assert_int_equal(s.refill_tokens, 1000);
  assert_int_equal(s.refill_interval_ms, 10000);
}

static void expect_invalid(brume_bucket_params p, const char *msg) {
  brume_bucket b;
  memset(&b, 0x5a, sizeof(b));
  brume_bucket copy = b;
  brume_err *err = NULL;
  assert_int_equal(brume_bucket_check_params(&p, NULL), -1);
  assert_int_equal(brume_bucket_init(&b, &p, T0, &err), -1);
  assert_non_null(err);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  assert_string_equal(err->msg, msg);
  brume_err_clear(&err);
  assert_memory_equal(&b, &copy, sizeof(b));
}

static void test_invalid_params(void **state) {
  (void)state;
  brume_bucket_params ok = BRUME_BUCKET_ACCOUNT_PARAMS, p;
  assert_int_equal(brume_bucket_check_params(&ok, NULL), 0);
  p = ok;
  p.capacity = 0;
  expect_invalid(p, "scaling bucket capacity 0 is out of range: at least 1");
  p = ok;
  p.refill_tokens = 0;
  expect_invalid(p, "scaling bucket refill of 0 tokens is out of range: at least 1");
  p = ok;
  p.refill_interval_ms = 0;
  expect_invalid(p, "scaling bucket refill interval 0 ms is out of range: at least 1 ms");
  p = ok;
  p.time_scale = 0.0005;
  expect_invalid(p,
                 "scaling bucket time scale 0.0005 is out of range: a finite number from 0.001 "
                 "to 1,000,000");
  p.time_scale = 0;
  expect_invalid(p,
                 "scaling bucket time scale 0 is out of range: a finite number from 0.001 to "
                 "1,000,000");
  p.time_scale = -60;
  assert_int_equal(brume_bucket_check_params(&p, NULL), -1);
  p.time_scale = NAN;
  assert_int_equal(brume_bucket_check_params(&p, NULL), -1);
  p.time_scale = INFINITY;
  assert_int_equal(brume_bucket_check_params(&p, NULL), -1);
  p.time_scale = 2e6;
  assert_int_equal(brume_bucket_check_params(&p, NULL), -1);
  /* The edges are fine. */
  p = (brume_bucket_params){
      .capacity = 1, .refill_tokens = 1, .refill_interval_ms = 1, .time_scale = 1};
  assert_int_equal(brume_bucket_check_params(&p, NULL), 0);
  p = (brume_bucket_params){.capacity = UINT32_MAX,
                            .refill_tokens = UINT32_MAX,
                            .refill_interval_ms = UINT32_MAX,
                            .time_scale = BRUME_BUCKET_TIME_SCALE_MAX};
  assert_int_equal(brume_bucket_check_params(&p, NULL), 0);
}

/* The largest parameters do not overflow: a full refill from empty, and a partial one. */
static void test_extremes(void **state) {
  (void)state;
  brume_bucket b;
  brume_bucket_params p = {.capacity = UINT32_MAX,
                           .refill_tokens = UINT32_MAX,
                           .refill_interval_ms = UINT32_MAX,
                           .time_scale = 1};
  init_ok(&b, p, T0);
  brume_err *err = NULL;
  p.capacity = 1;
  assert_int_equal(brume_bucket_set_params(&b, &p, T0, &err), 0);
  assert_true(brume_bucket_take(&b, T0, NULL));
  p.capacity = UINT32_MAX;
  assert_int_equal(brume_bucket_set_params(&b, &p, T0, &err), 0);
  assert_int_equal(brume_bucket_level(&b, T0 + 1), 1);
  assert_int_equal(brume_bucket_level(&b, T0 + 1 + 1000), 1001);
  assert_int_equal(brume_bucket_level(&b, INT64_MAX), UINT32_MAX);
}

/* Once the rate's clock saturates (a time near the end of int64_t, which only a bad clock or a
 * hand-written etcd value brings), no time refills a token: an empty bucket then answers at once
 * with the farthest retry time the clock can read, instead of searching for ever. */
static void test_saturated_clock(void **state) {
  (void)state;
  brume_bucket b;
  brume_bucket_params p = {
      .capacity = 1, .refill_tokens = 1, .refill_interval_ms = 1, .time_scale = 1};
  init_ok(&b, p, 0);
  int64_t retry = 0;
  assert_true(brume_bucket_take(&b, INT64_MAX - 10, &retry));
  assert_false(brume_bucket_take(&b, INT64_MAX - 10, &retry));
  assert_int_equal(retry, 10);
  /* A clock behind the latest time seen waits for it too, without overflowing. */
  assert_false(brume_bucket_take(&b, INT64_MIN, &retry));
  assert_int_equal(retry, INT64_MAX);
  /* At the largest scale the clock saturates after 2^62 / 10^6 ms (146 years) past origin_ms. */
  p.time_scale = BRUME_BUCKET_TIME_SCALE_MAX;
  init_ok(&b, p, 0);
  assert_true(brume_bucket_take(&b, (int64_t)1 << 53, &retry));
  assert_false(brume_bucket_take(&b, (int64_t)1 << 53, &retry));
  assert_int_equal(retry, INT64_MAX - ((int64_t)1 << 53));
}

/* The JSON kept in etcd (counting/bucket_share) gives back the same bucket, which then refills
 * exactly as the original does; malformed or inconsistent text is refused. */
static void test_json_round_trip(void **state) {
  (void)state;
  brume_bucket_params p = {7, 3, 1000, 2.5};
  brume_bucket a, b;
  assert_int_equal(brume_bucket_init(&a, &p, 1000, NULL), 0);
  for (int i = 0; i < 7; i++) assert_true(brume_bucket_take(&a, 1000, NULL));
  assert_int_equal(brume_bucket_level(&a, 1123), 0); /* a fraction of a token gathered */
  char *text = brume_bucket_to_json(&a);
  assert_int_equal(brume_bucket_from_json(&b, text, strlen(text), NULL), 0);
  free(text);
  assert_int_equal(a.p.capacity, b.p.capacity);
  assert_int_equal(a.p.refill_tokens, b.p.refill_tokens);
  assert_int_equal(a.p.refill_interval_ms, b.p.refill_interval_ms);
  assert_true(a.p.time_scale == b.p.time_scale);
  assert_int_equal(a.level, b.level);
  assert_int_equal(a.fraction, b.fraction);
  assert_int_equal(a.origin_ms, b.origin_ms);
  assert_int_equal(a.latest_ms, b.latest_ms);
  for (int64_t t = 1200; t < 5000; t += 77)
    assert_int_equal(brume_bucket_level(&a, t), brume_bucket_level(&b, t));

  const char *bad[] = {
      "",
      "[]",
      "{\"capacity\": 7}",
      "{\"capacity\":7,\"refill_tokens\":3,\"refill_interval_ms\":1000,\"time_scale\":1,"
      "\"level\":8,\"fraction\":0,\"origin_ms\":0,\"latest_ms\":0}",
      "{\"capacity\":7,\"refill_tokens\":3,\"refill_interval_ms\":1000,\"time_scale\":0.0005,"
      "\"level\":1,\"fraction\":0,\"origin_ms\":0,\"latest_ms\":0}",
      "{\"capacity\":7,\"refill_tokens\":3,\"refill_interval_ms\":1000,\"time_scale\":1,"
      "\"level\":1,\"fraction\":1000,\"origin_ms\":0,\"latest_ms\":0}",
      /* Times: before the epoch, past 2^53 - 1, or latest before origin. */
      "{\"capacity\":7,\"refill_tokens\":3,\"refill_interval_ms\":1000,\"time_scale\":1,"
      "\"level\":0,\"fraction\":0,\"origin_ms\":-1,\"latest_ms\":0}",
      "{\"capacity\":7,\"refill_tokens\":3,\"refill_interval_ms\":1000,\"time_scale\":1,"
      "\"level\":0,\"fraction\":0,\"origin_ms\":0,\"latest_ms\":9007199254740992}",
      "{\"capacity\":7,\"refill_tokens\":3,\"refill_interval_ms\":1000,\"time_scale\":1,"
      "\"level\":0,\"fraction\":0,\"origin_ms\":5,\"latest_ms\":4}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    brume_err *err = NULL;
    assert_int_equal(brume_bucket_from_json(&b, bad[i], strlen(bad[i]), &err), -1);
    assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
    brume_err_free(err);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_burst_then_throttled),
      cmocka_unit_test(test_account_refill),
      cmocka_unit_test(test_never_above_capacity),
      cmocka_unit_test(test_time_scale),
      cmocka_unit_test(test_function_preset),
      cmocka_unit_test(test_no_drift),
      cmocka_unit_test(test_retry_after_rounding),
      cmocka_unit_test(test_backwards_clock),
      cmocka_unit_test(test_set_params),
      cmocka_unit_test(test_give_back),
      cmocka_unit_test(test_state),
      cmocka_unit_test(test_invalid_params),
      cmocka_unit_test(test_extremes),
      cmocka_unit_test(test_saturated_clock),
      cmocka_unit_test(test_json_round_trip),
  };
  return cmocka_run_group_tests_name("counting_bucket", tests, NULL, NULL);
}
