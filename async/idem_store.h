/* Idempotency keys' outcomes (docs/async.md, "Idempotency"): the NATS key-value bucket
 * brume_idempotency, on the event queue's connection (event_queue.h, which makes sure of the
 * bucket when it opens), each entry kept for the window after it was last written.
 *
 * The first request with a key claims it (an atomic create: one claimer wins), runs, and writes
 * its outcome; a request that finds the key claimed waits for that outcome. A claimer that could
 * not run (throttled, a daemon down) releases the key, so that a retry runs. Keys are opaque
 * tokens made by the caller (letters, digits, '-', '_', '.' and '=': what NATS allows). */
#ifndef BRUME_ASYNC_IDEM_STORE_H
#define BRUME_ASYNC_IDEM_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "event_queue.h"

/* Claims key with data (the claimer's mark): *claimed true when this call made the entry, false
 * when it existed (nothing written). UNAVAILABLE when NATS did not answer. */
int brume_idem_claim(brume_event_queue *q, const char *key, const void *data, size_t len,
                     bool *claimed, brume_err **err);
/* The entry of key into *data and *len (caller frees *data); NOT_FOUND when there is none (never
 * claimed, released, or expired). */
int brume_idem_get(brume_event_queue *q, const char *key, void **data, size_t *len,
                   brume_err **err);
/* Replaces the entry of key (the outcome, once known). */
int brume_idem_put(brume_event_queue *q, const char *key, const void *data, size_t len,
                   brume_err **err);
/* Removes the entry of key: the next request with it runs. */
int brume_idem_release(brume_event_queue *q, const char *key, brume_err **err);

#endif
