/* The Placement gRPC service (proto/brume/placement.proto) over the placer (placer.h).
 *
 * Every request is checked here, at the boundary: a missing field or a value out of range is
 * INVALID_ARGUMENT with an "InvalidParameterValueException: " message, and never reaches the
 * placer. Handlers never block: AcquireSandbox is answered on the handler's thread when a warm
 * sandbox is idle, otherwise when its cold start ends (on another thread); ReleaseSandbox and the
 * queries answer from memory; PutProvisionedConcurrency, which writes etcd, runs on the work
 * queue. Failed calls carry a message led by common.proto's ErrorReason name. */
#ifndef BRUME_PLACEMENT_SERVICE_H
#define BRUME_PLACEMENT_SERVICE_H

#include <stdatomic.h>

#include "placer.h"
#include "rpc.h"
#include "workq.h"

typedef struct brume_placement_service {
  brume_placer *placer;
  brume_workq *wq;
  atomic_bool stopping;
} brume_placement_service;

void brume_placement_service_init(brume_placement_service *svc, brume_placer *placer,
                                  brume_workq *wq);
/* From now on every new call fails with UNAVAILABLE. */
void brume_placement_service_stop(brume_placement_service *svc);
/* The handlers in placement.proto's method order (aborts if the descriptor's order differs). */
const brume_rpc_handler *brume_placement_service_handlers(void);

#endif
