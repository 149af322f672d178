/* The retry policy of asynchronous invocations: see policy.h. */
#include "policy.h"

#include <math.h>

int brume_event_policy_check(const brume_event_policy *p, brume_err **err) {
  if (p->max_retries < 0 || p->max_retries > BRUME_EVENT_RETRIES_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "InvalidParameterValueException: MaximumRetryAttempts is %d; it must be "
                         "0 to %d",
                         p->max_retries, BRUME_EVENT_RETRIES_MAX);
  if (p->max_age_s < BRUME_EVENT_AGE_MIN_S || p->max_age_s > BRUME_EVENT_AGE_MAX_S)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "InvalidParameterValueException: MaximumEventAgeInSeconds is %lld; it "
                         "must be %d to %d",
                         (long long)p->max_age_s, BRUME_EVENT_AGE_MIN_S, BRUME_EVENT_AGE_MAX_S);
  if (!(p->time_scale > 0) || !isfinite(p->time_scale))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "InvalidParameterValueException: the time scale must be a positive "
                         "number");
  return 0;
}

/* A duration of base_ms real milliseconds on the policy's clock. */
static int64_t scaled(const brume_event_policy *p, double base_ms) {
  double v = base_ms / p->time_scale;
  return v < 1 ? 1 : v > 1e15 ? (int64_t)1e15 : (int64_t)llround(v);
}

static int64_t expires_at(const brume_event_policy *p, int64_t queued_ms) {
  return queued_ms + scaled(p, (double)p->max_age_s * 1000);
}

bool brume_event_expired(const brume_event_policy *p, int64_t queued_ms, int64_t now_ms) {
  return now_ms >= expires_at(p, queued_ms);
}

/* base_ms within +-20 %, by u in [0, 1). */
static double jittered(double base_ms, double u) {
  if (!(u >= 0)) u = 0;
  if (u >= 1) u = nextafter(1, 0);
  return base_ms * (0.8 + 0.4 * u);
}

brume_event_next brume_event_policy_next(const brume_event_policy *p, brume_try_outcome outcome,
                                         const brume_event_tries *t, int64_t now_ms, double u) {
  brume_event_next next = {.fate = BRUME_EVENT_SUCCEEDED};
  if (outcome == BRUME_TRY_SUCCEEDED) return next;
  double base_ms;
  if (outcome == BRUME_TRY_FUNCTION_ERROR) {
    if (t->attempts > p->max_retries) {
      next.fate = BRUME_EVENT_FAILED;
      next.condition = "RetriesExhausted";
      return next;
    }
    base_ms = (double)BRUME_EVENT_RETRY_BASE_MS * (t->attempts < 1 ? 1 : t->attempts);
  } else {
    int n = t->backoffs < 1 ? 1 : t->backoffs;
    base_ms = n > 20 ? BRUME_EVENT_BACKOFF_MAX_MS : ldexp(1000.0, n - 1);
    if (base_ms > BRUME_EVENT_BACKOFF_MAX_MS) base_ms = BRUME_EVENT_BACKOFF_MAX_MS;
  }
  int64_t end = expires_at(p, t->queued_ms);
  if (now_ms >= end) {
    next.fate = BRUME_EVENT_FAILED;
    next.condition = "EventAgeExceeded";
    return next;
  }
  next.fate = BRUME_EVENT_RETRY;
  next.delay_ms = scaled(p, jittered(base_ms, u));
  /* Never past the event's age: it comes back then, and fails EventAgeExceeded. */
  if (next.delay_ms > end - now_ms) next.delay_ms = end - now_ms;
  return next;
}
