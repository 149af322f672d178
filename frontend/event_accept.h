/* Accepting an asynchronous invocation (Invoke with invocation_type EVENT, docs/async.md): the
 * request checked (payload at most 256 KiB, the qualifier, the function known to the catalog),
 * the event named ("evt-" and 32 hex digits of the SHA-256 of the account and the request id, or
 * of the function and the idempotency key when the request has one),
 * stored as a brume.QueuedEvent in the event queue (async/event_queue.h), and the call answered
 * 202 with the event id once JetStream acknowledged it, never before.
 *
 * The queue is opened when this is made; when NATS cannot be reached then, it is opened again in
 * the background every retry_ms, and Event invocations are refused UNAVAILABLE until it is (at
 * once: none waits for a connection attempt).
 * Nothing is held by a thread while JetStream answers: the answer comes from the NATS client's
 * thread.
 *
 * Thread safety: brume_event_accept_start may be called from any thread. */
#ifndef BRUME_FRONTEND_EVENT_ACCEPT_H
#define BRUME_FRONTEND_EVENT_ACCEPT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "brume/async.pb-c.h"
#include "brume/frontend.pb-c.h"
#include "catalog.h"
#include "event_queue.h"
#include "metrics.h"
#include "rpc.h"

typedef struct brume_event_accept brume_event_accept;

typedef struct brume_event_accept_opts {
  brume_catalog *catalog;
  brume_event_queue_opts queue; /* its strings must outlive this */
  const char *accepted_by;      /* this frontend's daemon id, recorded in each event */
  int64_t retry_ms;             /* how often a queue that would not open is tried again */
  brume_metrics *metrics;       /* brume_frontend_events_total */
} brume_event_accept_opts;

brume_event_accept *brume_event_accept_new(const brume_event_accept_opts *opts);
/* Waits for the events being queued to be answered, then closes the queue. */
void brume_event_accept_free(brume_event_accept *a);

/* The event queue, once open (it stays open until brume_event_accept_free), or NULL while NATS
 * could not be reached yet: what the deliveries (event_delivery.h) pull from. */
brume_event_queue *brume_event_accept_queue(brume_event_accept *a);

/* This frontend's Event invocations since it started, by outcome, from its /metrics counter:
 * {"queued", "duplicate", "refused", "unavailable"}, for the dashboard (/api/events). */
json_t *brume_event_accept_figures_json(brume_event_accept *a);

/* Starts call (an Invoke whose request is req, already authenticated, invocation_type EVENT) for
 * account_id's function name at qualifier, with the call's request_id. Returns at once. */
void brume_event_accept_start(brume_event_accept *a, brume_rpc_call *call,
                              const Brume__InvokeRequest *req, const char *account_id,
                              const char *name, const char *qualifier, const char *request_id);

/* The most entries an InvokeEvents call takes. */
#define BRUME_EVENT_BATCH_MAX 100

/* Starts call, an InvokeEvents (already authenticated) of account_id's function name at
 * qualifier: each entry checked, named (its request_id, else "<request_id>-<index>"), queued and
 * answered on its own, as brume_event_accept_start would; the call answered once every entry is.
 * The whole call is refused for a function that does not exist, a bad qualifier, no entries or
 * more than BRUME_EVENT_BATCH_MAX, payloads over 6 MiB together, or the queue not open. */
void brume_event_accept_batch(brume_event_accept *a, brume_rpc_call *call,
                              const Brume__InvokeEventsRequest *req, const char *account_id,
                              const char *name, const char *qualifier, const char *request_id);

/* ev as the event queue stores it (caller frees): what an accepted event and a function
 * destination's record are put as. */
uint8_t *brume_queued_event_pack(const Brume__QueuedEvent *ev, size_t *len);

/* The event id of request_id in account_id: "evt-" and 32 hex digits (out: at least 37 bytes). */
void brume_event_id(const char *account_id, const char *request_id, char out[37]);

#endif
