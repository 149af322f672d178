/* Synchronous invocations with an idempotency key (docs/async.md, "Idempotency"): the first
 * request for a function with a key claims it in the idempotency store (async/idem_store.h),
 * runs through the invoker, and stores its answer there; a request that finds the key claimed
 * waits for that answer and returns it without running the function. A first request that
 * could not run (throttled, a daemon down, its deadline passed) releases the key, and the
 * requests waiting on it try to claim it in turn. The store's entries expire after the
 * idempotency window.
 *
 * The NATS calls block, so they run on a work queue of this module's own (never on a gRPC
 * thread, nor on the management calls' queue); a waiting request holds one of its threads while
 * it polls.
 *
 * Event invocations with a key need none of this: their event id is made from the key
 * (brume_idempotency_event_id), and JetStream stores an id once within its duplicate window. */
#ifndef BRUME_FRONTEND_IDEMPOTENCY_H
#define BRUME_FRONTEND_IDEMPOTENCY_H

#include "brume/frontend.pb-c.h"
#include "err.h"
#include "event_accept.h"
#include "invoke.h"
#include "metrics.h"
#include "rpc.h"

#define BRUME_IDEMPOTENCY_KEY_MAX 256

typedef struct brume_idempotency brume_idempotency;

typedef struct brume_idempotency_opts {
  brume_event_accept *accept; /* whose NATS connection holds the store */
  brume_invoker *invoker;
  int threads;            /* of the work queue: requests waiting at once, and claims */
  brume_metrics *metrics; /* brume_frontend_idempotent_invocations_total */
} brume_idempotency_opts;

brume_idempotency *brume_idempotency_new(const brume_idempotency_opts *opts);
/* Waits for the calls under way to be answered. The invoker must still be open. */
void brume_idempotency_free(brume_idempotency *id);

/* INVALID_ARGUMENT unless key is 1-256 printable ASCII characters. */
int brume_idempotency_check_key(const char *key, brume_err **err);

/* Starts call, a RequestResponse Invoke whose request req has an idempotency key (checked),
 * for account_id's function name at qualifier. Returns at once. */
void brume_idempotency_start(brume_idempotency *id, brume_rpc_call *call,
                             const Brume__InvokeRequest *req, const char *account_id,
                             const char *name, const char *qualifier, const char *request_id);

/* What an Event invocation with key names its event after, in place of its request id:
 * "key:<function>:<key>" (a request id has no ':', so the two never meet). Caller frees. */
char *brume_idempotency_event_name(const char *name, const char *key);

#endif
