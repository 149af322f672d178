/* The Counting gRPC service (proto/brume/counting.proto): Acquire, Release, GetState, and
 * AcquireBatch and ReleaseBatch (each request of a batch answered as Acquire or Release would),
 * over the engine (engine.h).
 *
 * Every request is validated here, at the boundary, before it reaches the engine: a missing
 * field or a value out of range is INVALID_ARGUMENT with an "InvalidParameterValueException: "
 * message. Handlers never block: Acquire hands its call to the engine, whose completion answers
 * it (on the handler's thread when memory decides, else later on a work-queue thread); Release
 * answers at once from memory; GetState, which reads etcd, is parked on the work queue. Failed
 * calls carry the code of the engine's error and a message that starts with the reason name of
 * common.proto's ErrorReason (ServiceUnavailableException, ...).
 *
 * Throttles are answers, not errors: they are counted in brume_counting_throttles_total{reason}
 * and logged at debug level only (the hot path); grants in brume_counting_grants_total{kind}. */
#ifndef BRUME_COUNTING_SERVICE_H
#define BRUME_COUNTING_SERVICE_H

#include <stdatomic.h>

#include "client.h" /* BRUME_COUNTING_BATCH_MAX */
#include "engine.h"
#include "metrics.h"
#include "rpc.h"
#include "workq.h"

typedef struct brume_counting_service {
  /* Set by brume_counting_service_init before serving; read-only afterwards. */
  brume_engine *engine;
  brume_workq *wq;          /* runs GetState's etcd reads */
  brume_counter *throttles; /* {reason} */
  brume_counter *grants;    /* {kind}: "new" or "warm" */
  atomic_bool stopping;     /* brume_counting_service_stop() */
} brume_counting_service;

/* Fills svc and registers its metrics in reg (which must outlive the service). The engine and
 * the work queue must outlive the rpc server that serves svc. */
void brume_counting_service_init(brume_counting_service *svc, brume_engine *engine, brume_workq *wq,
                                 brume_metrics *reg);

/* From now on every new call fails with UNAVAILABLE. The daemon's stop calls this first, then
 * stops the work queue (which answers the calls parked there) before freeing the rpc server
 * (which frees calls still unanswered): no job is then left holding a freed call. */
void brume_counting_service_stop(brume_counting_service *svc);

/* The handlers in counting.proto's method order (checked against the descriptor: aborts if the
 * order differs), for brume_rpc_server_add_service with the service as user. */
const brume_rpc_handler *brume_counting_service_handlers(void);

#endif
