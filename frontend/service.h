/* The Frontend gRPC service (proto/brume/frontend.proto): every call is authenticated (its API
 * key, key_store.h), authorised (the scope its method needs; an ARN naming another account needs
 * admin), given a request id, and audited when it is refused or changes something; then Invoke
 * goes down the invocation path (invoke.h), or into the event queue when it is an Event
 * (event_accept.h), and the other calls to a work queue thread, since they wait for etcd
 * (manage.h; the API key calls here). */
#ifndef BRUME_FRONTEND_SERVICE_H
#define BRUME_FRONTEND_SERVICE_H

#include <stdatomic.h>

#include "audit.h"
#include "event_accept.h"
#include "idempotency.h"
#include "invoke.h"
#include "key_store.h"
#include "manage.h"
#include "rpc.h"
#include "workq.h"

typedef struct brume_frontend_service {
  brume_key_store *keys;
  brume_audit *audit;
  brume_invoker *invoker;
  brume_event_accept *events;     /* NULL: Event invocations are refused (no NATS configured) */
  brume_idempotency *idempotency; /* NULL with events: idempotency keys are refused */
  brume_manage *manage;
  brume_workq *wq;
  const char *region;
  atomic_bool stopping;
} brume_frontend_service;

/* svc's fields are set by the caller; this readies the rest. */
void brume_frontend_service_init(brume_frontend_service *svc);
/* New calls are refused with UNAVAILABLE from now on. */
void brume_frontend_service_stop(brume_frontend_service *svc);
/* The handler table for brume__frontend__descriptor (user = the service). */
const brume_rpc_handler *brume_frontend_service_handlers(void);

#endif
