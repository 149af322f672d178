#include "bucket.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "mem.h"

/* Where the rate's clock saturates: far beyond any real elapsed time, and small enough that
 * differences of two readings never overflow. */
#define RATE_MS_MAX ((int64_t)1 << 62)

int brume_bucket_check_params(const brume_bucket_params *p, brume_err **err) {
  if (p->capacity < 1)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "scaling bucket capacity %u is out of range: at least 1", p->capacity);
  if (p->refill_tokens < 1)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "scaling bucket refill of %u tokens is out of range: at least 1",
                         p->refill_tokens);
  if (p->refill_interval_ms < 1)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "scaling bucket refill interval %u ms is out of range: at least 1 ms",
                         p->refill_interval_ms);
  /* Written so that NaN fails too. */
  if (!(p->time_scale >= BRUME_BUCKET_TIME_SCALE_MIN &&
        p->time_scale <= BRUME_BUCKET_TIME_SCALE_MAX))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "scaling bucket time scale %g is out of range: a finite number from "
                         "0.001 to 1,000,000",
                         p->time_scale);
  return 0;
}

/* The rate's time at real time t, in whole milliseconds since origin_ms: floor((t - origin) *
 * time_scale). Refills take differences of these readings, which telescope, so the rounding
 * of one step is made up by the next instead of being lost. */
static int64_t rate_ms(const brume_bucket *b, int64_t t) {
  int64_t elapsed;
  if (__builtin_sub_overflow(t, b->origin_ms, &elapsed)) elapsed = t < 0 ? INT64_MIN : INT64_MAX;
  double r = floor((double)elapsed * b->p.time_scale);
  if (r > (double)RATE_MS_MAX) return RATE_MS_MAX;
  if (r < -(double)RATE_MS_MAX) return -RATE_MS_MAX;
  return (int64_t)r;
}

/* Adds rate_elapsed milliseconds of the rate's time: refill_tokens units per millisecond, a
 * token being refill_interval_ms units. */
static void add(brume_bucket *b, uint64_t rate_elapsed) {
  if (b->level >= b->p.capacity) return;
  /* Both products fit: (2^32 - 1)^2 < 2^64, and rate_elapsed * refill_tokens is only computed
   * when it is less than missing. */
  uint64_t missing = (uint64_t)(b->p.capacity - b->level) * b->p.refill_interval_ms - b->fraction;
  if (rate_elapsed >= (missing + b->p.refill_tokens - 1) / b->p.refill_tokens) {
    b->level = b->p.capacity;
    b->fraction = 0;
    return;
  }
  uint64_t total = b->fraction + rate_elapsed * b->p.refill_tokens;
  b->level += (uint32_t)(total / b->p.refill_interval_ms);
  b->fraction = total % b->p.refill_interval_ms;
}

/* Brings b up to now_ms. A now_ms at or before the latest time seen changes nothing: time is
 * only counted once, whichever way the clock jumped. */
static void refill(brume_bucket *b, int64_t now_ms) {
  if (now_ms <= b->latest_ms) return;
  int64_t d = rate_ms(b, now_ms) - rate_ms(b, b->latest_ms);
  b->latest_ms = now_ms;
  if (d > 0) add(b, (uint64_t)d);
}

/* Real milliseconds from now_ms until the next token, for an empty bucket refilled up to
 * latest_ms: the fewest whole real milliseconds d whose rate time brings the missing units.
 * rate_ms() does not decrease as t grows, so d is found by bisection, in at most 63 steps
 * whatever the state. A search that stepped one millisecond at a time would never end once the
 * rate's clock saturates (latest_ms far in the future, as a hand-written etcd value may put it);
 * then no time brings the token and the answer is the farthest time the clock can read. */
static int64_t until_next_token(const brume_bucket *b, int64_t now_ms) {
  uint64_t missing = b->p.refill_interval_ms - b->fraction;
  int64_t need = (int64_t)((missing + b->p.refill_tokens - 1) / b->p.refill_tokens);
  int64_t base = rate_ms(b, b->latest_ms);
  int64_t lo = 0; /* brings too little: d = 0 adds no rate time, and need >= 1 */
  int64_t hi = INT64_MAX - (b->latest_ms > 0 ? b->latest_ms : 0); /* the answer, or the end */
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    if (rate_ms(b, b->latest_ms + mid) - base >= need)
      hi = mid;
    else
      lo = mid;
  }
  int64_t behind = 0; /* a clock behind latest_ms waits for it first */
  if (now_ms < b->latest_ms && __builtin_sub_overflow(b->latest_ms, now_ms, &behind))
    behind = INT64_MAX;
  int64_t d;
  if (__builtin_add_overflow(hi, behind, &d)) d = INT64_MAX;
  return d;
}

int brume_bucket_init(brume_bucket *b, const brume_bucket_params *p, int64_t now_ms,
                      brume_err **err) {
  if (brume_bucket_check_params(p, err) < 0) return -1;
  *b = (brume_bucket){
      .p = *p,
      .level = p->capacity,
      .fraction = 0,
      .origin_ms = now_ms,
      .latest_ms = now_ms,
  };
  return 0;
}

bool brume_bucket_take(brume_bucket *b, int64_t now_ms, int64_t *retry_after_ms) {
  refill(b, now_ms);
  if (b->level > 0) {
    /* A full bucket holds no fraction; the refill of the next token starts now. */
    b->level--;
    return true;
  }
  if (retry_after_ms) *retry_after_ms = until_next_token(b, now_ms);
  return false;
}

bool brume_bucket_give_back(brume_bucket *b, int64_t now_ms) {
  refill(b, now_ms);
  if (b->level >= b->p.capacity) return false;
  b->level++;
  if (b->level == b->p.capacity) b->fraction = 0;
  return true;
}

uint32_t brume_bucket_level(brume_bucket *b, int64_t now_ms) {
  refill(b, now_ms);
  return b->level;
}

int brume_bucket_set_params(brume_bucket *b, const brume_bucket_params *p, int64_t now_ms,
                            brume_err **err) {
  if (brume_bucket_check_params(p, err) < 0) return -1;
  refill(b, now_ms);
  /* The same part of a token, in the new interval's units (fraction < old interval, so the
   * result stays below the new one). */
  b->fraction = b->fraction * p->refill_interval_ms / b->p.refill_interval_ms;
  b->p = *p;
  if (b->level >= p->capacity) {
    b->level = p->capacity;
    b->fraction = 0;
  }
  /* The rate's clock restarts here, since time_scale may have changed. */
  b->origin_ms = b->latest_ms;
  return 0;
}

void brume_bucket_get_state(brume_bucket *b, int64_t now_ms, brume_bucket_state *out) {
  refill(b, now_ms);
  *out = (brume_bucket_state){
      .level = b->level,
      .capacity = b->p.capacity,
      .refill_tokens = b->p.refill_tokens,
      .refill_interval_ms = b->p.refill_interval_ms,
  };
}

char *brume_bucket_to_json(const brume_bucket *b) {
  /* Integers up to 2^53 survive a JSON number exactly; fraction is below refill_interval_ms and
   * the times are milliseconds, all far below it. */
  json_t *o =
      json_pack("{s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I}", "capacity", (json_int_t)b->p.capacity,
                "refill_tokens", (json_int_t)b->p.refill_tokens, "refill_interval_ms",
                (json_int_t)b->p.refill_interval_ms, "time_scale", b->p.time_scale, "level",
                (json_int_t)b->level, "fraction", (json_int_t)b->fraction, "origin_ms",
                (json_int_t)b->origin_ms, "latest_ms", (json_int_t)b->latest_ms);
  char *text = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if (text == NULL) brume_fatal("bucket: out of memory");
  return text;
}

int brume_bucket_from_json(brume_bucket *b, const char *text, size_t len, brume_err **err) {
  json_error_t je;
  json_t *o = json_loadb(text, len, 0, &je);
  json_int_t cap, tokens, interval, level, fraction, origin, latest;
  double scale;
  int rc = o ? json_unpack_ex(o, &je, JSON_STRICT, "{s:I, s:I, s:I, s:F, s:I, s:I, s:I, s:I}",
                              "capacity", &cap, "refill_tokens", &tokens, "refill_interval_ms",
                              &interval, "time_scale", &scale, "level", &level, "fraction",
                              &fraction, "origin_ms", &origin, "latest_ms", &latest)
             : -1;
  json_decref(o);
  if (rc < 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "scaling bucket state: %s", je.text);
  if (cap < 1 || cap > UINT32_MAX || tokens < 1 || tokens > UINT32_MAX || interval < 1 ||
      interval > UINT32_MAX || level < 0 || level > cap || fraction < 0 || fraction >= interval ||
      origin < 0 || latest < origin || latest > BRUME_BUCKET_TIME_MAX_MS)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "scaling bucket state: a field is out of range (level %lld of %lld, "
                         "fraction %lld of %lld, origin_ms %lld and latest_ms %lld: 0 <= origin "
                         "<= latest <= 2^53 - 1)",
                         (long long)level, (long long)cap, (long long)fraction, (long long)interval,
                         (long long)origin, (long long)latest);
  brume_bucket_params p = {(uint32_t)cap, (uint32_t)tokens, (uint32_t)interval, scale};
  if (brume_bucket_check_params(&p, err) < 0) return brume_err_wrap(err, "scaling bucket state");
  *b = (brume_bucket){.p = p,
                      .level = (uint32_t)level,
                      .fraction = (uint64_t)fraction,
                      .origin_ms = origin,
                      .latest_ms = latest};
  return 0;
}
