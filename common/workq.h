/* A small fixed pool of threads that runs blocking jobs (brume-worker: libvirt and the guest;
 * brume-counting: etcd).
 *
 * gRPC handlers must not block (rpc.h): a handler parks its call, queues a job here,
 * and the job (a libvirt boot, a guest invocation, a shutdown) answers the call when it is done.
 * Jobs run in the order they were queued, at most `threads` at a time.
 *
 * Thread safety: push may be called from any thread; stop and free from one thread. */
#ifndef BRUME_WORKQ_H
#define BRUME_WORKQ_H

#include "err.h"

typedef struct brume_workq brume_workq;
typedef void (*brume_workq_fn)(void *arg);

/* Starts threads (>= 1) threads. Aborts if a thread cannot be created. */
brume_workq *brume_workq_new(int threads);

/* Queues fn(arg). Returns 0, or -1 with UNAVAILABLE once the queue is stopping (the job is not
 * run: the caller still owns arg). */
int brume_workq_push(brume_workq *q, brume_workq_fn fn, void *arg, brume_err **err);

/* Refuses new jobs, runs every job already queued, and joins the threads. Idempotent. */
void brume_workq_stop(brume_workq *q);

/* Stops (if not stopped) and frees. NULL is fine. */
void brume_workq_free(brume_workq *q);

#endif
