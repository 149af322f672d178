/* A caller's handle on one counting daemon (the frontend's, an async queue worker's): Acquire
 * and Release that coalesce into AcquireBatch and ReleaseBatch calls.
 *
 * Why batches. A unary gRPC call costs the daemon about 10 us of CPU on these machines, most of
 * it in gRPC and the kernel (docs/counting.md); admission itself costs well under 1 us. One call
 * that carries many requests spreads that fixed cost over all of them.
 *
 * How. Requests wait in a queue per kind (Acquire, Release). While fewer than max_in_flight batch
 * calls of that kind are under way, a new request leaves at once, alone or with whatever waits;
 * otherwise it waits for the next batch call to end and leaves with the others queued by then.
 * No timer holds a request back: a lone request waits for nothing, and batches grow only when
 * requests arrive faster than the daemon answers them.
 *
 * Waiting for etcd. Acquire batches go memory_only (proto AcquireBatchRequest): the daemon
 * answers what memory decides, and a request that must wait for etcd (a block of concurrency to
 * grow, scaling tokens to take) comes back ABORTED. Those leave again at once, together, in a
 * batch that may wait and holds no slot. So a request answered from memory never waits behind
 * one that waits for etcd, for one txn normally or up to etcd's timeout when etcd hangs. These
 * waiting batches are not bounded by max_in_flight: by the requests waiting, as unary calls
 * would be.
 *
 * Each request is answered exactly once, through its own callback, as Acquire or Release would
 * have answered it: a grant, a throttle, or its own error (INVALID_ARGUMENT, NOT_FOUND, ...). When
 * the batch call fails as a whole (UNAVAILABLE, DEADLINE_EXCEEDED, a transport error), every
 * request in it gets that error. Callbacks run on the rpc client's completion thread, or on the
 * calling thread when the call cannot start; they must not block, and may call Acquire or Release
 * again.
 *
 * Thread safety: every function may be called from any thread. _free must not run while another
 * thread is in _acquire or _release (nor from a callback): the caller stops calling first. */
#ifndef BRUME_COUNTING_CLIENT_H
#define BRUME_COUNTING_CLIENT_H

#include <stdint.h>

#include "brume/counting.pb-c.h"
#include "err.h"
#include "rpc.h"

/* The most requests one AcquireBatch or ReleaseBatch may carry; the daemon refuses more. */
#define BRUME_COUNTING_BATCH_MAX 1000

typedef struct brume_counting_client brume_counting_client;

typedef struct brume_counting_client_opts {
  brume_rpc_client_opts rpc; /* the channel to the daemon (TLS, message size, deadline) */
  unsigned max_batch;     /* requests per batch call; 0 = 256; at most BRUME_COUNTING_BATCH_MAX */
  unsigned max_in_flight; /* batch calls of one kind under way at once; 0 = 2 */
} brume_counting_client_opts;

/* One Acquire's answer: resp (granted or throttled) with err NULL, or err with resp NULL. Both
 * are valid only during the callback (copy the token to keep it). */
typedef void (*brume_counting_acquire_done)(void *user, const Brume__AcquireResponse *resp,
                                            const brume_err *err);
/* One Release's answer, likewise. */
typedef void (*brume_counting_release_done)(void *user, const Brume__ReleaseResponse *resp,
                                            const brume_err *err);

/* Opens a channel to the counting daemon at target ("127.0.0.1:7100"). opts may be NULL. NULL
 * with err when the target or the TLS settings are unusable. */
brume_counting_client *brume_counting_client_new(const char *target,
                                                 const brume_counting_client_opts *opts,
                                                 brume_err **err);

/* Queues req (copied: it may go once this returns); done(user, ...) answers it. */
void brume_counting_client_acquire(brume_counting_client *c, const Brume__AcquireRequest *req,
                                   brume_counting_acquire_done done, void *user);
void brume_counting_client_release(brume_counting_client *c, const Brume__ReleaseRequest *req,
                                   brume_counting_release_done done, void *user);

/* Batch calls made so far and the requests they carried, per kind: for metrics and tests. The
 * waiting ones are the Acquire batches sent again for requests that needed etcd. */
typedef struct brume_counting_client_stats {
  uint64_t acquire_batches, acquire_requests;
  uint64_t release_batches, release_requests;
  uint64_t acquire_waiting_batches, acquire_waiting_requests;
} brume_counting_client_stats;
void brume_counting_client_stats_get(brume_counting_client *c, brume_counting_client_stats *out);

/* Requests still queued fail with CANCELLED, batch calls under way are cancelled (their requests
 * fail with CANCELLED), and every callback has run when this returns. Not from a callback. */
void brume_counting_client_free(brume_counting_client *c);

#endif
