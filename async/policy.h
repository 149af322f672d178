/* What becomes of an asynchronous invocation after each try: run again later, or end in a
 * destination (docs/async.md, "Policy"). Pure arithmetic: the clock and the random draw are the
 * caller's, so the unit tests set both.
 *
 * - A function error or timeout is an attempt. After attempt k (1, 2) the event runs again about
 *   k minutes later, as long as k <= max_retries; after that it fails RetriesExhausted.
 * - A throttle or a platform error (worker lost, no capacity, a daemon or NATS down) is no
 *   attempt: the event comes back after 1 s, 2 s, 4 s ... (the n-th such backoff 2^(n-1) s), at
 *   most 5 minutes, as often as its age allows.
 * - Every delay is drawn uniformly within +-20 % of its base (jitter, so that events that failed
 *   together do not all come back together), and no retry is set past the event's maximum age:
 *   one that would be comes back at that age instead, and then fails EventAgeExceeded.
 * - time_scale divides every delay and the maximum age (60: a minute in a second), for tests. */
#ifndef BRUME_ASYNC_POLICY_H
#define BRUME_ASYNC_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* Lambda's ranges and defaults. */
#define BRUME_EVENT_RETRIES_MAX 2
#define BRUME_EVENT_RETRIES_DEFAULT 2
#define BRUME_EVENT_AGE_MIN_S 60
#define BRUME_EVENT_AGE_MAX_S 21600
#define BRUME_EVENT_AGE_DEFAULT_S 21600
/* The throttle backoff's ceiling, and the first retry's base after a function error. */
#define BRUME_EVENT_BACKOFF_MAX_MS (5 * 60 * 1000)
#define BRUME_EVENT_RETRY_BASE_MS (60 * 1000)

typedef struct brume_event_policy {
  int max_retries;   /* MaximumRetryAttempts, 0-2 */
  int64_t max_age_s; /* MaximumEventAgeInSeconds, 60-21,600 */
  double time_scale; /* > 0; 1 is real time */
} brume_event_policy;

/* INVALID_ARGUMENT "InvalidParameterValueException: ..." naming the setting and its range when
 * max_retries or max_age_s is out of range or time_scale is not positive. */
int brume_event_policy_check(const brume_event_policy *p, brume_err **err);

/* How a try ended. */
typedef enum brume_try_outcome {
  BRUME_TRY_SUCCEEDED,
  BRUME_TRY_FUNCTION_ERROR, /* the function failed or timed out: an attempt */
  BRUME_TRY_THROTTLED,      /* counting refused it: no attempt */
  BRUME_TRY_PLATFORM_ERROR, /* Brume could not run it: no attempt */
} brume_try_outcome;

typedef enum brume_event_fate {
  BRUME_EVENT_SUCCEEDED, /* to on_success */
  BRUME_EVENT_RETRY,     /* to be fetched again after delay_ms */
  BRUME_EVENT_FAILED,    /* to on_failure (or the dead-letter queue), with condition */
} brume_event_fate;

typedef struct brume_event_next {
  brume_event_fate fate;
  int64_t delay_ms;      /* BRUME_EVENT_RETRY */
  const char *condition; /* BRUME_EVENT_FAILED: "RetriesExhausted" or "EventAgeExceeded" */
} brume_event_next;

/* The event's state so far. */
typedef struct brume_event_tries {
  int attempts;      /* function errors and timeouts, this try's included */
  int backoffs;      /* throttles and platform errors, this try's included */
  int64_t queued_ms; /* when JetStream stored it (Unix ms) */
} brume_event_tries;

/* True when an event queued at queued_ms is past its maximum age at now_ms: it must not run
 * again (it fails EventAgeExceeded). */
bool brume_event_expired(const brume_event_policy *p, int64_t queued_ms, int64_t now_ms);

/* What to do after a try that ended with outcome, given t (already counting this try) at now_ms;
 * u is a uniform draw in [0, 1) for the jitter. */
brume_event_next brume_event_policy_next(const brume_event_policy *p, brume_try_outcome outcome,
                                         const brume_event_tries *t, int64_t now_ms, double u);

#endif
