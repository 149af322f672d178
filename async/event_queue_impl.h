/* What event_queue.c and named_queue.c share: the queue's connection and its helpers. Not a
 * public header. */
#ifndef BRUME_ASYNC_EVENT_QUEUE_IMPL_H
#define BRUME_ASYNC_EVENT_QUEUE_IMPL_H

#include <nats/nats.h>
#include <pthread.h>
#include <stdbool.h>

#include "event_queue.h"

#define NS_PER_MS 1000000LL
/* Asynchronous puts under way, by their message's address (what the ack handler is given). */
#define PENDING_BUCKETS 4096

typedef struct pending {
  natsMsg *msg;
  brume_event_put_done_fn done;
  void *arg;
  char account[BRUME_EVENT_ACCOUNT_MAX];
  char id[BRUME_EVENT_ID_MAX];
  struct pending *next;
} pending;

struct brume_event_queue {
  natsConnection *nc;
  jsCtx *js;
  jsOptions jo;
  kvStore *states;          /* the events' states */
  kvStore *idem;            /* idempotency keys' outcomes (idem_store.c) */
  natsSubscription *sub;    /* the pull subscription on the consumer, made at the first fetch */
  pthread_mutex_t fetch_mu; /* one Fetch at a time on sub (the client allows no more) */
  brume_event_queue_opts o;
  pthread_mutex_t pending_mu;
  pending *pending[PENDING_BUCKETS];
};

/* Words for failure s: the client library's last error on this thread when it is s's (it keeps
 * the last one until another replaces it, and some failures, such as a timeout, set none), else
 * the status's name. */
const char *brume_eq_nats_why(natsStatus s);

/* Account ids, event ids and queue names become subject tokens and header values: letters,
 * digits, '-' and '_' only, so that no '.', '*', '>' or space changes what a subject means; at
 * most max - 1 characters. */
bool brume_eq_token_ok(const char *s, size_t max);

/* Creates stream sc->Name as sc says, or brings the existing one to sc. */
int brume_eq_put_stream(brume_event_queue *q, jsStreamConfig *sc, brume_err **err);

/* Creates key-value bucket (one revision per key, entries kept ttl_ms, 0: for ever) into *out,
 * or opens it as it is when it exists with another configuration. */
int brume_eq_put_bucket(brume_event_queue *q, const char *bucket, const char *description,
                        int64_t ttl_ms, kvStore **out, brume_err **err);

/* Creates the idempotency keys' bucket, or opens it as it is (idem_store.c). */
int brume_eq_ensure_idem_bucket(brume_event_queue *q, brume_err **err);

/* Creates the named queues' stream, or brings it to its configuration (named_queue.c). */
int brume_eq_ensure_named_queues(brume_event_queue *q, brume_err **err);

#endif
