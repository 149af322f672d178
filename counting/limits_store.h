/* Limits store: the counting daemon's live view of the limits configured in etcd.
 *
 * Limits are set per account and per function in etcd (the frontend's management API writes
 * them; operators and tests may write them directly), and the daemon must follow every change
 * while it runs. The store reads them all once, then follows them with a watch, and answers
 * lookups from memory.
 *
 * The contract: the keys under `<root>limits/` (root is the caller's, "/brume/" in production),
 * each holding a JSON object. Every field is optional; a missing field, like a missing key,
 * means its default.
 *
 *   <root>limits/cluster
 *       {"scaling_model": "account" | "function",   default "account"
 *        "account_burst": 1000,                     the account bucket's capacity (regions use 500
 *                                                   to 3,000)
 *        "account_refill_per_minute": 500,          its refill
 *        "function_burst": 1000,                    the function bucket's capacity (function model)
 *        "function_refill_per_10s": 1000,           its refill
 *        "time_scale": 1}                           0.001-1e6, compresses time for tests (60: a
 *                                                   minute of the rate per real second); below
 *                                                   1 stretches it (tests/cluster: 0.05)
 *   <root>limits/account/<account_id>
 *       {"concurrency_limit": 1000}
 *   <root>limits/function/<account_id>/<function_name>
 *       {"reserved_concurrency": N,                 absent: none, the function shares the
 *                                                   unreserved pool; 0: switched off
 *        "provisioned": {"<qualifier>": N, ...},    per version or alias; absent: none
 *        "provisioned_modified_unix_ms": {...}}     the frontend's, for LastModified; not read here
 *
 * Defaults are Lambda's (BRUME_BUCKET_*_PARAMS, BRUME_ACCOUNT_CONCURRENCY_DEFAULT). Account ids,
 * function names and qualifiers are non-empty; ids and names hold no '/' and are at most 255
 * bytes long.
 *
 * Every count is an integer from 0 to 2^31 - 1 (a function's provisioned concurrency summed over
 * its qualifiers included); the burst and refill fields are at least 1. A value that breaks any
 * of this (not JSON, not an object, a wrong type, a number out of range, an unknown scaling
 * model) is ignored with a warning naming the key, and whatever that key set before stays in
 * force: a typo never drops an account back to the defaults. An unknown field is warned about
 * and skipped, the rest of the value applies. An unknown key under `<root>limits/` is warned
 * about and ignored. A deleted key returns its item to the defaults.
 *
 * A configuration that breaks the 100-unreserved rule (counting/concurrency.h) cannot come from
 * the management API, which checks first, but can be written by hand. It is applied anyway, with
 * a warning giving brume_concurrency_check_*'s reason: admission stays safe, since the unreserved
 * pool bottoms at 0 (a reserved_total over the limit leaves the unreserved functions nothing).
 *
 * Consistency: the initial read sees every key at one revision R and the watch starts at R + 1,
 * so no change made in between is lost. The watch resumes after etcd restarts or fails over
 * (common/etcd.h). If etcd compacted the revisions the watch missed while it was disconnected,
 * the store reads every limit again (and calls on_change once with BRUME_LIMITS_CLUSTER and no
 * account or function: anything may have changed).
 *
 * Thread safety: lookups may be called from any number of threads while the watch thread applies
 * changes (a read-write lock; lookups never wait for etcd). */
#ifndef BRUME_COUNTING_LIMITS_STORE_H
#define BRUME_COUNTING_LIMITS_STORE_H

#include <stdint.h>

#include "bucket.h"
#include "concurrency.h"
#include "err.h"
#include "etcd.h"

/* Where the scaling bucket lives: one per account (Lambda's classic model), or one per function
 * (its newer one). */
typedef enum brume_scaling_model {
  BRUME_SCALING_ACCOUNT = 0,
  BRUME_SCALING_FUNCTION = 1,
} brume_scaling_model;

/* The cluster-wide settings, from <root>limits/cluster. */
typedef struct brume_cluster_limits {
  brume_scaling_model model;
  brume_bucket_params account_bucket;  /* refill per 60,000 ms, with time_scale */
  brume_bucket_params function_bucket; /* refill per 10,000 ms, with time_scale */
} brume_cluster_limits;

/* What a change was about: which of the three key kinds. */
typedef enum brume_limits_kind {
  BRUME_LIMITS_CLUSTER,
  BRUME_LIMITS_ACCOUNT,
  BRUME_LIMITS_FUNCTION,
} brume_limits_kind;

/* Told of each change applied from the watch: account is NULL for CLUSTER, function is NULL
 * unless FUNCTION. A function change also changes its account's aggregates (reserved_total,
 * unreserved_provisioned) without a separate ACCOUNT call. The strings are valid only during the
 * call. Called on the watch thread, outside the store's lock, so it may call the lookups; it
 * must not call brume_limits_store_stop(). Not called for the initial load, nor for a value that
 * was ignored; called for a put that leaves everything as it was. */
typedef void (*brume_limits_change_fn)(void *user, brume_limits_kind kind, const char *account,
                                       const char *function);

typedef struct brume_limits_store brume_limits_store;

/* Loads every key under <root>limits/ with one range read, then watches from the revision after
 * it. root must end with '/' (INVALID_ARGUMENT otherwise); on_change may be NULL. Fails with the
 * etcd client's error (UNAVAILABLE, DEADLINE_EXCEEDED) when the read cannot be made: the daemon
 * cannot admit anything before it knows its limits. Malformed values in the initial read are
 * warned about and ignored, as later ones are. e must outlive the store. Returns NULL on error. */
brume_limits_store *brume_limits_store_start(brume_etcd *e, const char *root,
                                             brume_limits_change_fn on_change, void *user,
                                             brume_err **err);

/* Stops the watch (no on_change call runs after it returns) and frees the store. NULL is
 * allowed. */
void brume_limits_store_stop(brume_limits_store *s);

/* The cluster settings now. */
void brume_limits_store_cluster(brume_limits_store *s, brume_cluster_limits *out);

/* An account's limits now: its concurrency limit, the sum of the reserved concurrency of its
 * functions that have one, and the sum of the provisioned concurrency of those that have none
 * (each sum capped at UINT32_MAX). An account that nothing is configured for has the defaults. */
void brume_limits_store_account(brume_limits_store *s, const char *account,
                                brume_account_limits *out);

/* A function's limits now; its provisioned concurrency is summed over its qualifiers. A function
 * that nothing is configured for has no reserved and no provisioned concurrency. */
void brume_limits_store_function(brume_limits_store *s, const char *account, const char *function,
                                 brume_function_limits *out);

/* The provisioned concurrency of one qualifier (version or alias) of a function; 0 if none. */
uint32_t brume_limits_store_provisioned(brume_limits_store *s, const char *account,
                                        const char *function, const char *qualifier);

/* Everything one admission needs, read under one lock (the hot path): the cluster settings, the
 * account's and the function's limits, and the qualifier's provisioned concurrency. */
typedef struct brume_limits_view {
  brume_cluster_limits cluster;
  brume_account_limits account;
  brume_function_limits function;
  uint32_t provisioned;
} brume_limits_view;
void brume_limits_store_lookup(brume_limits_store *s, const char *account, const char *function,
                               const char *qualifier, brume_limits_view *out);

/* Calls fn for every account that limits are configured for (a key of its own, or a function
 * with one), with function NULL, and then for each of its functions that has a key, in order of
 * account id and function name. fn runs under the store's read lock: it must be quick and must
 * not call the store (nor stop it). The strings are valid during the call only. For /metrics
 * (counting/state_metrics.h), which then asks for each one's limits. */
typedef void (*brume_limits_each_fn)(void *user, const char *account, const char *function);
void brume_limits_store_each(brume_limits_store *s, brume_limits_each_fn fn, void *user);

/* The etcd revision the store reflects: the initial read's, then that of the last change under
 * <root>limits/ that the watch has handled (applied or ignored). Every on_change call for a
 * revision has returned by the time it shows here, so a test can write, take the revision of the
 * write, and wait for this to reach it. */
int64_t brume_limits_store_revision(brume_limits_store *s);

/* Checks a value for a key of the given kind exactly as the store reads it: 0, or -1 with
 * INVALID_ARGUMENT saying what is wrong (the warning the store would log). For writers that want
 * to refuse a malformed value before it reaches etcd (the management API), and the fuzz target.
 * Says nothing of the 100-unreserved rule, which needs the account's other functions
 * (counting/concurrency.h). */
int brume_limits_check_value(brume_limits_kind kind, const char *value, size_t len,
                             brume_err **err);

BRUME_DEFINE_AUTOPTR(brume_limits_store, brume_limits_store_stop)

#endif
