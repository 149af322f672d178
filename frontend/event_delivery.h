/* Delivering queued events (docs/async.md, "Delivery"): each frontend runs up to `workers` events
 * at once, pulled from the event queue's consumer that every frontend shares, each through the
 * frontend's own invoker (counting -> placement -> worker, as a synchronous Invoke), and settles
 * each by the retry policy (async/policy.h):
 *
 *   fetch -> read its state (brume_events) -> already ended? acknowledge it, done
 *         -> past its maximum age? failed EventAgeExceeded
 *         -> state RUNNING -> brume_invoker_run()
 *   answer -> succeeded: state SUCCEEDED, acknowledged (removed from the stream)
 *          -> function error or timeout (an attempt), throttle or platform error (a backoff):
 *             state RETRY_SCHEDULED at its time, handed back to JetStream with that delay
 *          -> retries exhausted, age exceeded, function deleted: state FAILED, acknowledged
 *   an event that ended puts its record (event_record.h) in its destination first: on_success,
 *   or on_failure (else dead_letter_queue): a named queue (async/named_queue.h), or another
 *   function, as an Event invocation of it
 *
 * The state is written before the event is settled, so a frontend killed between the two leaves
 * an event that JetStream redelivers after its ack wait, and that the next delivery finds
 * already counted (or already ended). An event runs at least once; it runs twice only when its
 * frontend died while it ran. While an event runs, JetStream is told so every third of the ack
 * wait, so that a long function does not look like a dead frontend.
 *
 * Nothing waits on a thread per event: a fetching thread takes events while fewer than
 * `workers` run, and a settling thread writes the outcomes the invoker's callbacks leave it. */
#ifndef BRUME_FRONTEND_EVENT_DELIVERY_H
#define BRUME_FRONTEND_EVENT_DELIVERY_H

#include <jansson.h>
#include <stdint.h>

#include "event_accept.h"
#include "invoke.h"
#include "metrics.h"

typedef struct brume_event_delivery brume_event_delivery;

typedef struct brume_event_delivery_opts {
  brume_event_accept *accept; /* whose queue the events come from (brume_event_accept_queue) */
  brume_catalog *catalog;     /* each function qualifier's settings (retries, age, destinations) */
  const char *region;         /* for the ARNs in destination records */
  brume_invoker *invoker;
  const char *delivered_by; /* this frontend's daemon id, recorded in each try */
  int workers;              /* events run at once, > 0 */
  int64_t ack_wait_ms;      /* the consumer's: a running event is extended every third of it */
  double time_scale;        /* divides every policy delay and age (tests: 60, a minute a second) */
  brume_metrics *metrics;   /* brume_frontend_event_* */
} brume_event_delivery_opts;

/* Starts fetching and running events. */
brume_event_delivery *brume_event_delivery_start(const brume_event_delivery_opts *opts);
/* This frontend's delivery since it started, for the dashboard (docs/dashboard.md, /api/events):
 * {"workers", "running", "tries": {outcome: n}, "ended": {"succeeded" or condition: n},
 *  "destinations": [{"kind", "condition", "result", "count"}]}, from its /metrics counters. */
json_t *brume_event_delivery_figures_json(brume_event_delivery *d);
/* Stops fetching and waits for the events running to end and be settled. The invoker and the
 * queue must still be open. Once is enough; NULL is fine. */
void brume_event_delivery_stop(brume_event_delivery *d);
/* Stops d if it still runs, and frees it: after the dashboard's last read of its figures. */
void brume_event_delivery_free(brume_event_delivery *d);

#endif
