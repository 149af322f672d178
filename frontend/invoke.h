/* Invoke: one synchronous invocation driven through the cluster without a thread of its own
 * (every step is an asynchronous call whose completion starts the next), so thousands of slow
 * functions in flight never hold up a fast one:
 *
 *   resolve the qualifier (catalog, in memory; an alias with routing picks a version by weight)
 *   -> Counting Acquire WARM_ENVIRONMENT (counting/client_set.h: coalesced into batches, on
 *      another counting daemon when one fails)
 *   -> Placement AcquireSandbox warm_only
 *      -> no idle sandbox: Counting Acquire NEW_ENVIRONMENT upgrading the token (the scaling
 *         rate applies to cold starts only), then Placement AcquireSandbox (a cold start);
 *         after it, a token whose daemon failed meanwhile, or that counting would take back
 *         before the function's timeout, is given up for a new one (throttled if none)
 *   -> Worker Invoke on the sandbox's host, deadline = the function's timeout (+ a margin for the
 *      RPC itself: a function past its timeout answers OK with Sandbox.Timedout)
 *   -> Placement ReleaseSandbox and Counting Release, together -> the answer.
 *
 * A throttle answers RESOURCE_EXHAUSTED at once with the ThrottleReason name leading the message;
 * a failure after the token was granted always gives the token (and the sandbox, marked BROKEN
 * when the worker failed) back before answering. The request id is sent on every call. DryRun
 * stops after the resolution. */
#ifndef BRUME_FRONTEND_INVOKE_H
#define BRUME_FRONTEND_INVOKE_H

#include "brume/frontend.pb-c.h"
#include "catalog.h"
#include "client_set.h"
#include "inv_stats.h"
#include "metrics.h"
#include "rpc.h"

/* Lambda's limits on a payload. */
#define BRUME_PAYLOAD_SYNC_MAX (6u * 1024 * 1024)
#define BRUME_PAYLOAD_EVENT_MAX (256u * 1024)

typedef struct brume_invoker brume_invoker;

typedef struct brume_invoker_opts {
  brume_catalog *catalog;
  brume_counting_set *counting; /* Acquire fails over; an upgrade and Release go to the token's */
  brume_rpc_client *placement;  /* used for asynchronous calls only */
  brume_rpc_pool *workers;      /* one client per worker address */
  const char *caller_id;        /* "frontend/<id>" */
  brume_metrics *metrics;       /* brume_frontend_invocations_total and friends */
  brume_inv_stats *stats;       /* where every resolved invocation is counted (may be NULL) */
  /* How long counting holds a token beyond the function's timeout before it takes the token back
   * by itself (0 allowed, at most 60000: counting holds a token 960 s at most, and a timeout is
   * 900 s at most). It covers a cold start: one that leaves the token too little for the
   * function's timeout asks counting for a new token before it runs. */
  uint32_t token_hold_margin_ms;
} brume_invoker_opts;

brume_invoker *brume_invoker_new(const brume_invoker_opts *opts);
/* Waits until every invocation under way has answered. The clients in opts must still be open
 * (their callbacks finish the invocations); stop accepting calls first. */
void brume_invoker_drain(brume_invoker *inv);
void brume_invoker_free(brume_invoker *inv);

/* Starts call (a Frontend.Invoke whose request is req, already authenticated) for account_id's
 * function name (plain, from the function_name field or its ARN), at qualifier (the request's,
 * or the ARN's). request_id is the call's (the client's x-request-id or one made up). Returns at
 * once; the call is answered later from a client completion thread. */
void brume_invoker_start(brume_invoker *inv, brume_rpc_call *call, const Brume__InvokeRequest *req,
                         const char *account_id, const char *name, const char *qualifier,
                         const char *request_id);

/* How an invocation that no gRPC call waits for is answered: resp (the function ran: its payload,
 * its function error if any) or err (it did not: throttled RESOURCE_EXHAUSTED, the function or
 * a daemon not found or down, ...), exactly one of them non-NULL, valid during the call only.
 * Called once, from a client completion thread (or from brume_invoker_run itself when the
 * request fails at once). */
typedef void (*brume_invoke_done_fn)(void *arg, const Brume__InvokeResponse *resp,
                                     const brume_err *err);

/* The same invocation for a caller that is no gRPC call (the delivery of a queued event): the
 * answer goes to done(done_arg, ...), and deadline_mono_ms (brume_mono_ms()'s clock) stands for
 * the call's deadline. req and the strings must stay valid until done was called. */
void brume_invoker_run(brume_invoker *inv, const Brume__InvokeRequest *req, const char *account_id,
                       const char *name, const char *qualifier, const char *request_id,
                       int64_t deadline_mono_ms, brume_invoke_done_fn done, void *done_arg);

#endif
