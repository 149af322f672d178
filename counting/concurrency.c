#include "concurrency.h"

const char *brume_throttle_reason(brume_throttle t) {
  switch (t) {
    case BRUME_THROTTLE_ACCOUNT:
      return "ConcurrentInvocationLimitExceeded";
    case BRUME_THROTTLE_RESERVED:
      return "ReservedFunctionConcurrentInvocationLimitExceeded";
    case BRUME_THROTTLE_SCALING_RATE:
      return "ConcurrencyScalingRateExceeded";
    case BRUME_THROTTLE_NONE:
      break;
  }
  return "";
}

uint32_t brume_concurrency_unreserved(const brume_account_limits *a) {
  return a->reserved_total >= a->limit ? 0 : a->limit - a->reserved_total;
}

/* Signed 64-bit arithmetic throughout: a change may push a total past the limit, and the
 * message then shows how far. */

int brume_concurrency_check_reserved(const brume_account_limits *a, const char *name,
                                     const brume_function_limits *fn, uint32_t new_reserved,
                                     brume_err **err) {
  int64_t reserved =
      (int64_t)a->reserved_total - (fn->reserved ? fn->reserved_concurrency : 0) + new_reserved;
  int64_t unreserved = (int64_t)a->limit - reserved;
  if (unreserved < BRUME_UNRESERVED_MIN)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "reserved concurrency %u for %s would leave %lld unreserved of the "
                         "account's %u; at least %d must stay unreserved",
                         new_reserved, name, (long long)unreserved, a->limit, BRUME_UNRESERVED_MIN);
  if (fn->provisioned > new_reserved)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "reserved concurrency %u for %s is less than its provisioned concurrency "
                         "%u; lower the provisioned concurrency first",
                         new_reserved, name, fn->provisioned);
  /* A function that had no reserved concurrency takes its provisioned concurrency out of the
   * pool; the other unreserved functions' provisioned concurrency must still leave 100. */
  int64_t provisioned = (int64_t)a->unreserved_provisioned - (fn->reserved ? 0 : fn->provisioned);
  if (unreserved - provisioned < BRUME_UNRESERVED_MIN)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "reserved concurrency %u for %s would leave %lld unreserved of the "
                         "account's %u, %lld of it provisioned; at least %d must stay unreserved "
                         "and unprovisioned",
                         new_reserved, name, (long long)unreserved, a->limit,
                         (long long)provisioned, BRUME_UNRESERVED_MIN);
  return 0;
}

int brume_concurrency_check_provisioned(const brume_account_limits *a, const char *name,
                                        const brume_function_limits *fn, uint32_t new_provisioned,
                                        brume_err **err) {
  if (fn->reserved) {
    if (new_provisioned > fn->reserved_concurrency)
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           "provisioned concurrency %u for %s exceeds its reserved concurrency %u",
                           new_provisioned, name, fn->reserved_concurrency);
    return 0;
  }
  int64_t unreserved = (int64_t)a->limit - a->reserved_total;
  int64_t provisioned = (int64_t)a->unreserved_provisioned - fn->provisioned + new_provisioned;
  if (unreserved - provisioned < BRUME_UNRESERVED_MIN)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "provisioned concurrency %u for %s would leave %lld of the account's "
                         "%lld unreserved concurrency unprovisioned; at least %d must stay "
                         "unreserved and unprovisioned",
                         new_provisioned, name, (long long)(unreserved - provisioned),
                         (long long)unreserved, BRUME_UNRESERVED_MIN);
  return 0;
}

int brume_concurrency_check_account_limit(const brume_account_limits *a, uint32_t new_limit,
                                          brume_err **err) {
  int64_t unreserved = (int64_t)new_limit - a->reserved_total;
  if (unreserved < BRUME_UNRESERVED_MIN)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "account concurrency limit %u would leave %lld unreserved (%u is "
                         "reserved); at least %d must stay unreserved",
                         new_limit, (long long)unreserved, a->reserved_total, BRUME_UNRESERVED_MIN);
  if (unreserved - a->unreserved_provisioned < BRUME_UNRESERVED_MIN)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "account concurrency limit %u would leave %lld unreserved, %u of it "
                         "provisioned; at least %d must stay unreserved and unprovisioned",
                         new_limit, (long long)unreserved, a->unreserved_provisioned,
                         BRUME_UNRESERVED_MIN);
  return 0;
}

brume_throttle brume_concurrency_admit(const brume_account_limits *a,
                                       const brume_function_limits *fn, uint32_t fn_in_use,
                                       uint32_t unreserved_in_use) {
  if (fn->reserved)
    return fn_in_use >= fn->reserved_concurrency ? BRUME_THROTTLE_RESERVED : BRUME_THROTTLE_NONE;
  return unreserved_in_use >= brume_concurrency_unreserved(a) ? BRUME_THROTTLE_ACCOUNT
                                                              : BRUME_THROTTLE_NONE;
}
