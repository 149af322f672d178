/* Account and function concurrency arithmetic, as Lambda documents it.
 *
 * An account has a concurrency limit (1,000 by default). A function may have reserved
 * concurrency R: both its guarantee and its cap (R = 0 switches it off: every invocation is
 * throttled). The account's unreserved pool is its limit minus every function's reserved
 * concurrency; functions without reserved concurrency share it, so a flood of them cannot take a
 * reserved function's share. At least 100 must always stay unreserved.
 *
 * Provisioned concurrency P (the sum over a function's versions and aliases) counts against the
 * function's reserved concurrency when it has one (P <= R), or else against the unreserved pool,
 * which must keep at least 100 that is not provisioned either.
 *
 * The checks below guard configuration changes (PutFunctionConcurrency, provisioned concurrency,
 * the account's limit); brume_concurrency_admit() is the decision on the hot path. Pure functions:
 * no I/O, no state. */
#ifndef BRUME_COUNTING_CONCURRENCY_H
#define BRUME_COUNTING_CONCURRENCY_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* An account's concurrency limit unless configured otherwise (Lambda's default). */
#define BRUME_ACCOUNT_CONCURRENCY_DEFAULT 1000
/* What must stay unreserved (and unprovisioned) in every account. */
#define BRUME_UNRESERVED_MIN 100

/* Why an invocation is refused. The values are proto ThrottleReason's numbers, so a cast converts
 * one into the other. */
typedef enum brume_throttle {
  /* Admitted. THROTTLE_REASON_UNSPECIFIED. */
  BRUME_THROTTLE_NONE = 0,
  /* The account's unreserved pool is all in use (a function without reserved concurrency).
   * THROTTLE_REASON_CONCURRENT_INVOCATION_LIMIT_EXCEEDED, "ConcurrentInvocationLimitExceeded". */
  BRUME_THROTTLE_ACCOUNT = 1,
  /* The function's reserved concurrency is all in use, or is 0.
   * THROTTLE_REASON_RESERVED_FUNCTION_CONCURRENT_INVOCATION_LIMIT_EXCEEDED,
   * "ReservedFunctionConcurrentInvocationLimitExceeded". */
  BRUME_THROTTLE_RESERVED = 2,
  /* Concurrency is available but the scaling bucket is empty (counting/bucket.h).
   * THROTTLE_REASON_CONCURRENCY_SCALING_RATE_EXCEEDED, "ConcurrencyScalingRateExceeded". */
  BRUME_THROTTLE_SCALING_RATE = 3,
} brume_throttle;

/* An account's configuration, as far as admission needs it. */
typedef struct brume_account_limits {
  uint32_t limit;          /* the concurrency limit */
  uint32_t reserved_total; /* sum of its functions' reserved concurrency */
  /* Sum of the provisioned concurrency of its functions without reserved concurrency. */
  uint32_t unreserved_provisioned;
  /* Sum of the provisioned concurrency of all its functions (reported, not checked). */
  uint32_t provisioned_total;
} brume_account_limits;

/* A function's configuration. */
typedef struct brume_function_limits {
  bool reserved;                 /* false: it shares the account's unreserved pool */
  uint32_t reserved_concurrency; /* R, when reserved; 0 = switched off */
  uint32_t provisioned;          /* P, summed over its versions and aliases */
} brume_function_limits;

/* Lambda's reason string ("ReservedFunctionConcurrentInvocationLimitExceeded"), which starts the
 * frontend's throttle message; "" for BRUME_THROTTLE_NONE or an unknown value. */
const char *brume_throttle_reason(brume_throttle t);

/* The unreserved pool: limit - reserved_total (0 if the account is somehow over-reserved). */
uint32_t brume_concurrency_unreserved(const brume_account_limits *a);

/* May function `name` (configured as fn now, and counted in a) have reserved concurrency
 * new_reserved? 0 if so; otherwise -1 with INVALID_ARGUMENT saying the numbers: when fewer than
 * 100 would stay unreserved, or unreserved and unprovisioned, or when new_reserved is below the
 * function's provisioned concurrency. */
int brume_concurrency_check_reserved(const brume_account_limits *a, const char *name,
                                     const brume_function_limits *fn, uint32_t new_reserved,
                                     brume_err **err);

/* May function `name` (configured as fn now, and counted in a) have new_provisioned as the sum
 * of its versions' and aliases' provisioned concurrency? With reserved concurrency it must fit
 * in it; without, the unreserved pool must keep 100 unprovisioned. -1 with INVALID_ARGUMENT
 * otherwise. */
int brume_concurrency_check_provisioned(const brume_account_limits *a, const char *name,
                                        const brume_function_limits *fn, uint32_t new_provisioned,
                                        brume_err **err);

/* May the account a have new_limit as its concurrency limit? -1 with INVALID_ARGUMENT when fewer
 * than 100 would stay unreserved, or unreserved and unprovisioned. */
int brume_concurrency_check_account_limit(const brume_account_limits *a, uint32_t new_limit,
                                          brume_err **err);

/* Is one more concurrent invocation of a function (configured as fn) admitted? fn_in_use is the
 * function's invocations in flight, unreserved_in_use those of all the account's functions
 * without reserved concurrency (provisioned ones included). BRUME_THROTTLE_NONE if admitted;
 * BRUME_THROTTLE_RESERVED for a reserved function at or over R, whatever room the account has;
 * BRUME_THROTTLE_ACCOUNT for an unreserved function when the pool is all in use. The scaling
 * rate is the caller's next check. */
brume_throttle brume_concurrency_admit(const brume_account_limits *a,
                                       const brume_function_limits *fn, uint32_t fn_in_use,
                                       uint32_t unreserved_in_use);

#endif
