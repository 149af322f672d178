/* The queue of asynchronous invocations: a NATS JetStream stream, and the consumer from which
 * every frontend's deliveries pull (docs/async.md, "JetStream layout").
 *
 * brume_event_queue_open() connects and makes sure that the stream BRUME_EVENTS (subjects
 * brume.events.<account>, work-queue retention, file storage) and its durable pull consumer
 * "deliver" (explicit acks) exist with the configuration given: created when missing, updated when
 * they differ, so that every frontend may open the queue, in any order.
 *
 * It also makes sure of the key-value bucket brume_events, where each event's state is kept
 * (below).
 *
 * Publishing waits for JetStream's acknowledgement: an event is queued once brume_event_queue_put()
 * returned 0, and only then may the frontend answer "accepted". The event id goes in the
 * Nats-Msg-Id header: the same id twice within the duplicate window is stored once.
 *
 * A fetched event is held by its fetcher until it is settled (done, retried later, dropped) or
 * until the consumer's ack wait passes without brume_event_working(): then JetStream hands it to
 * another fetcher, so a frontend that dies loses nothing.
 *
 * Thread safety: the queue may be used from any thread; an event, by one thread at a time. */
#ifndef BRUME_ASYNC_EVENT_QUEUE_H
#define BRUME_ASYNC_EVENT_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define BRUME_EVENT_ID_MAX 65
#define BRUME_EVENT_ACCOUNT_MAX 65

typedef struct brume_event_queue brume_event_queue;

typedef struct brume_event_queue_opts {
  const char *urls; /* "nats://127.0.0.1:4222", several comma-separated for a cluster */
  /* TLS: the CA that signed the servers' certificates; cert and key, the client's (mutual TLS).
   * All NULL: plain TCP (loopback, tests). */
  const char *tls_ca, *tls_cert, *tls_key;
  int replicas;                   /* the stream's and consumer's: 1, or 3 with three servers */
  int64_t max_queued_per_account; /* events an account may have queued (0: no limit) */
  int64_t duplicate_window_ms;    /* a repeated event id within it is stored once */
  int64_t max_age_ms;             /* how long the stream keeps an event at most (0: for ever) */
  int64_t ack_wait_ms;            /* a fetched event unsettled this long goes to another fetcher */
  int64_t idempotency_window_ms;  /* how long an idempotency key's outcome is kept (0: for ever) */
  int64_t timeout_ms;             /* a publish's or an API call's wait for its answer */
} brume_event_queue_opts;

/* Connects and makes sure that the stream and the consumer exist as opts says. NULL and
 * UNAVAILABLE when NATS cannot be reached or has no JetStream, INVALID_ARGUMENT for bad opts. */
brume_event_queue *brume_event_queue_open(const brume_event_queue_opts *opts, brume_err **err);
/* Waits up to timeout_ms for the asynchronous puts under way to be answered, answers those left
 * UNAVAILABLE, and closes the connection. */
void brume_event_queue_close(brume_event_queue *q);

/* Queues data as the event event_id of account (both made of [A-Za-z0-9_-]), and waits for
 * JetStream to acknowledge it. *duplicate (may be NULL) says the id was already queued within the
 * duplicate window: nothing was added. Errors: RESOURCE_EXHAUSTED
 * "TooManyQueuedEventsException: ..." when the account has max_queued_per_account queued,
 * UNAVAILABLE when NATS did not acknowledge (the event may or may not be queued: publishing it
 * again with the same id is safe), INVALID_ARGUMENT for a bad account or id. */
int brume_event_queue_put(brume_event_queue *q, const char *account, const char *event_id,
                          const void *data, size_t len, bool *duplicate, brume_err **err);

/* The answer to brume_event_queue_put_async(): err NULL once JetStream acknowledged the event
 * (duplicate as in brume_event_queue_put()), else why not (the same codes). Called exactly once,
 * from a NATS client thread; err is valid during the call only. */
typedef void (*brume_event_put_done_fn)(void *arg, bool duplicate, const brume_err *err);

/* brume_event_queue_put() without waiting: many events in flight at once, each answered through
 * done when JetStream acknowledges it, refuses it, or does not answer within timeout_ms. Returns
 * -1 and err, without calling done, when the event cannot even be sent (bad input, not
 * connected); 0 otherwise. */
int brume_event_queue_put_async(brume_event_queue *q, const char *account, const char *event_id,
                                const void *data, size_t len, brume_event_put_done_fn done,
                                void *arg, brume_err **err);

/* How many events are queued (stored in the stream, fetched or not), for /metrics. */
int brume_event_queue_depth(brume_event_queue *q, uint64_t *depth, brume_err **err);
/* The same, and when the oldest of them was queued (Unix ms; 0 when there is none). Both
 * UNAVAILABLE at once while NATS is not connected. */
int brume_event_queue_stats(brume_event_queue *q, uint64_t *depth, int64_t *oldest_unix_ms,
                            brume_err **err);

/* One fetched event. id, account, data and len are valid until brume_event_free(). */
typedef struct brume_event {
  char id[BRUME_EVENT_ID_MAX];
  char account[BRUME_EVENT_ACCOUNT_MAX];
  const void *data;
  size_t len;
  uint64_t delivery; /* 1 the first time it is fetched, then 2, 3 ... */
  int64_t queued_ms; /* when JetStream stored it (Unix ms) */
  void *msg;         /* the NATS message (private) */
} brume_event;

/* Fetches at most max events into out, waiting up to wait_ms for the first. Returns how many
 * (0 when none came), or -1 and err. Each returned event must be settled and freed. */
int brume_event_queue_fetch(brume_event_queue *q, brume_event **out, int max, int64_t wait_ms,
                            brume_err **err);
/* Settles e as done: JetStream removes it. Waits for the server's confirmation. */
int brume_event_done(brume_event *e, brume_err **err);
/* Hands e back to be fetched again after delay_ms (a retry, or a backoff). */
int brume_event_retry_in(brume_event *e, int64_t delay_ms, brume_err **err);
/* Tells JetStream that e is still being worked on: its ack wait starts again. */
int brume_event_working(brume_event *e, brume_err **err);
/* Settles e for good without a further delivery (it went to its destination otherwise). */
int brume_event_drop(brume_event *e, brume_err **err);
void brume_event_free(brume_event *e);

/* ---- The events' states ----
 * The key-value bucket brume_events holds each event's state (a packed brume.EventRecord,
 * proto/brume/async.proto) by event id, one revision kept, for max_age_ms after its last change. */

/* The state of event_id into *data and *len (caller frees *data). NOT_FOUND
 * "ResourceNotFoundException: ..." when there is none (never delivered yet, or gone with its age),
 * UNAVAILABLE when NATS did not answer. */
int brume_event_state_get(brume_event_queue *q, const char *event_id, void **data, size_t *len,
                          brume_err **err);
/* Replaces the state of event_id, waiting for JetStream's acknowledgement. */
int brume_event_state_put(brume_event_queue *q, const char *event_id, const void *data, size_t len,
                          brume_err **err);

#endif
