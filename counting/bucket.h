/* The scaling rate's token bucket: how fast new execution environments may start (proto
 * ScalingBucketState, DESIGN.md "Counting without making etcd the bottleneck").
 *
 * Lambda's model: a burst of `capacity` cold starts at once (the bucket starts full), then
 * `refill_tokens` more every `refill_interval_ms`, added continuously: 500 a minute is one token
 * every 120 ms, not 500 at the top of each minute. The fraction of a token is kept exactly (in
 * integer units of 1/refill_interval_ms of a token), so any sequence of small steps adds up to the
 * same tokens as one big step: no drift.
 *
 * The clock is injected: every call takes now_ms, a monotonic time in milliseconds chosen by the
 * caller. time_scale compresses the rate for tests and cluster tests: with 60, a minute of the
 * rate passes in one real second. Below 1 it stretches it instead, for hosts that cannot start
 * environments as fast as the real rate grants them (tests/cluster on TCG hosts: 0.05). A clock
 * that goes backwards adds and removes nothing; refills resume once it has passed the latest time
 * seen again, so no stretch of time is counted twice.
 *
 * Pure state: no I/O, no locking (the caller serialises access). */
#ifndef BRUME_COUNTING_BUCKET_H
#define BRUME_COUNTING_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* Per account (Lambda's scaling rate): a burst of 1,000 new environments (regions use 500 to
 * 3,000), then 500 more a minute. */
#define BRUME_BUCKET_ACCOUNT_CAPACITY 1000
#define BRUME_BUCKET_ACCOUNT_REFILL_TOKENS 500
#define BRUME_BUCKET_ACCOUNT_REFILL_INTERVAL_MS 60000
/* Per function (Lambda's newer mode): a burst of 1,000, then 1,000 more every 10 s. */
#define BRUME_BUCKET_FUNCTION_CAPACITY 1000
#define BRUME_BUCKET_FUNCTION_REFILL_TOKENS 1000
#define BRUME_BUCKET_FUNCTION_REFILL_INTERVAL_MS 10000
/* The largest time_scale accepted: beyond it, years of elapsed time times the scale would no
 * longer fit the bucket's 64-bit arithmetic, and no test needs a rate compressed further. */
#define BRUME_BUCKET_TIME_SCALE_MAX 1e6
/* The smallest: a thousand times slower than real time. */
#define BRUME_BUCKET_TIME_SCALE_MIN 0.001
/* The latest time a bucket read from etcd may carry, in milliseconds since the epoch: 2^53 - 1,
 * the largest integer a JSON number holds exactly; real clocks read far below it. */
#define BRUME_BUCKET_TIME_MAX_MS (((int64_t)1 << 53) - 1)

typedef struct brume_bucket_params {
  uint32_t capacity;           /* the burst: the most tokens held, >= 1 */
  uint32_t refill_tokens;      /* tokens added every refill_interval_ms, >= 1 */
  uint32_t refill_interval_ms; /* in the rate's time, >= 1 */
  double time_scale; /* 1 = real time; 60 = a minute of the rate per real second; 0.001-1e6 */
} brume_bucket_params;

/* The presets in real time, as brume_bucket_params values. */
#define BRUME_BUCKET_ACCOUNT_PARAMS                                                         \
  ((brume_bucket_params){BRUME_BUCKET_ACCOUNT_CAPACITY, BRUME_BUCKET_ACCOUNT_REFILL_TOKENS, \
                         BRUME_BUCKET_ACCOUNT_REFILL_INTERVAL_MS, 1.0})
#define BRUME_BUCKET_FUNCTION_PARAMS                                                          \
  ((brume_bucket_params){BRUME_BUCKET_FUNCTION_CAPACITY, BRUME_BUCKET_FUNCTION_REFILL_TOKENS, \
                         BRUME_BUCKET_FUNCTION_REFILL_INTERVAL_MS, 1.0})

/* A bucket. Its fields are private to bucket.c; it is public so that it can live inside the
 * daemon's account and function records without an allocation. */
typedef struct brume_bucket {
  brume_bucket_params p;
  uint32_t level;    /* whole tokens, <= p.capacity */
  uint64_t fraction; /* the next token's part, in 1/p.refill_interval_ms; 0 when full */
  int64_t origin_ms; /* where the rate's clock starts: set at init and at a parameter change */
  int64_t latest_ms; /* the latest now_ms seen; refilled up to here */
} brume_bucket;

/* What the daemon reports (proto ScalingBucketState), at a given time. */
typedef struct brume_bucket_state {
  uint32_t level;
  uint32_t capacity;
  uint32_t refill_tokens;
  uint32_t refill_interval_ms;
} brume_bucket_state;

/* 0 when p is valid; otherwise -1 with INVALID_ARGUMENT saying which parameter is wrong
 * ("scaling bucket capacity 0 is out of range: at least 1"). */
int brume_bucket_check_params(const brume_bucket_params *p, brume_err **err);

/* Sets up b, full, at now_ms. -1 with INVALID_ARGUMENT (b untouched) if p is invalid. */
int brume_bucket_init(brume_bucket *b, const brume_bucket_params *p, int64_t now_ms,
                      brume_err **err);

/* Takes one token at now_ms: true if there was one. Otherwise false, and *retry_after_ms (if
 * retry_after_ms is non-NULL) is set to the real milliseconds from now_ms until a token will be
 * there, rounded up, at least 1 (left alone when a token was taken). */
bool brume_bucket_take(brume_bucket *b, int64_t now_ms, int64_t *retry_after_ms);

/* Gives back a token taken for a cold start that did not happen. Never above capacity: false if
 * the bucket was already full (the token is dropped), true otherwise. */
bool brume_bucket_give_back(brume_bucket *b, int64_t now_ms);

/* Whole tokens in the bucket at now_ms. */
uint32_t brume_bucket_level(brume_bucket *b, int64_t now_ms);

/* Live config: new parameters from now_ms on. The tokens gathered under the old rate up to now_ms
 * are kept, clipped to the new capacity, and so is the next token's fraction. -1 with
 * INVALID_ARGUMENT (b untouched) if p is invalid. */
int brume_bucket_set_params(brume_bucket *b, const brume_bucket_params *p, int64_t now_ms,
                            brume_err **err);

/* Level and parameters at now_ms, for GetState. */
void brume_bucket_get_state(brume_bucket *b, int64_t now_ms, brume_bucket_state *out);

/* The whole bucket as a JSON object, so that it can be kept in etcd (counting/bucket_share):
 * {"capacity", "refill_tokens", "refill_interval_ms", "time_scale", "level", "fraction",
 * "origin_ms", "latest_ms"}. The caller frees the string. */
char *brume_bucket_to_json(const brume_bucket *b);

/* Reads what brume_bucket_to_json() wrote into *b: 0, or -1 with INVALID_ARGUMENT when text is
 * not such an object or breaks the bucket's invariants (b untouched). */
int brume_bucket_from_json(brume_bucket *b, const char *text, size_t len, brume_err **err);

#endif
