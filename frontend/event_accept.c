/* Accepting an asynchronous invocation: see event_accept.h. */
#include "event_accept.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brume/async.pb-c.h"
#include "clock.h"
#include "digest_dir.h"
#include "idempotency.h"
#include "invoke.h"
#include "log.h"
#include "mem.h"
#include "names.h"
#include "reply.h"
#include "ticker.h"

struct brume_event_accept {
  brume_event_accept_opts o;
  pthread_mutex_t mu;     /* guards q against the reopening ticker */
  brume_event_queue *q;   /* NULL while NATS could not be reached */
  brume_ticker *reopener; /* while q is NULL */
  brume_ticker *sampler;  /* the queue's depth and oldest event, every STATS_PERIOD_MS */
  brume_counter *events;  /* {outcome} */
  brume_gauge *depth, *oldest_age;
};

/* How often the queue's figures are read for /metrics (a JetStream request: not on every
 * scrape, which must not wait for NATS). */
#define STATS_PERIOD_MS 5000

typedef struct batch batch;

/* One event on its way to JetStream: what the answer needs. Its answer goes to call (an Event
 * Invoke), or to entry `index` of an InvokeEvents call's batch. */
typedef struct accepting {
  brume_event_accept *a;
  brume_rpc_call *call;
  batch *batch;
  size_t index;
  char event_id[37];
  char request_id[80];
} accepting;

/* An InvokeEvents call on its way: answered once the last of its entries is. */
struct batch {
  brume_rpc_call *call;
  atomic_size_t left; /* entries not answered yet, and 1 while they are being sent */
  atomic_uint failed;
  size_t n;
  Brume__EventEntryResult *results;
  Brume__EventEntryResult **result_ptrs;
  accepting *entries;
};

uint8_t *brume_queued_event_pack(const Brume__QueuedEvent *ev, size_t *len) {
  *len = brume__queued_event__get_packed_size(ev);
  uint8_t *buf = brume_xmalloc(*len ? *len : 1);
  brume__queued_event__pack(ev, buf);
  return buf;
}

void brume_event_id(const char *account_id, const char *request_id, char out[37]) {
  brume_autofree char *both = brume_xasprintf("%s\n%s", account_id, request_id);
  char hex[65];
  brume_digest_dir_sha256(both, strlen(both), hex);
  snprintf(out, 37, "evt-%.32s", hex);
}

/* Opens the queue if it is not open; true when it is. Called at start and by the reopening
 * ticker only: an Event invocation never waits for a connection attempt. */
static bool queue_ready(brume_event_accept *a) {
  pthread_mutex_lock(&a->mu);
  if (a->q == NULL) {
    brume_autoptr(brume_err) err = NULL;
    a->q = brume_event_queue_open(&a->o.queue, &err);
    if (a->q == NULL)
      brume_warn("The event queue cannot be opened; Event invocations are refused until it is.",
                 "err=%s retry_ms=%lld", err->msg, (long long)a->o.retry_ms);
  }
  bool ready = a->q != NULL;
  pthread_mutex_unlock(&a->mu);
  return ready;
}

static void reopen_tick(void *arg) {
  queue_ready(arg);
}

brume_event_queue *brume_event_accept_queue(brume_event_accept *a) {
  pthread_mutex_lock(&a->mu);
  brume_event_queue *q = a->q;
  pthread_mutex_unlock(&a->mu);
  return q;
}

/* The queue's depth and the age of its oldest event, for /metrics (cleared while unknown). */
static void sample_tick(void *arg) {
  brume_event_accept *a = arg;
  brume_event_queue *q = brume_event_accept_queue(a);
  uint64_t depth = 0;
  int64_t oldest = 0;
  brume_autoptr(brume_err) err = NULL;
  if (q == NULL || brume_event_queue_stats(q, &depth, &oldest, &err) < 0) {
    brume_gauge_set(a->depth, -1);
    brume_gauge_set(a->oldest_age, -1);
    return;
  }
  brume_gauge_set(a->depth, (double)depth);
  int64_t age = oldest ? brume_wall_ms() - oldest : 0;
  brume_gauge_set(a->oldest_age, age > 0 ? (double)age / 1000.0 : 0);
}

brume_event_accept *brume_event_accept_new(const brume_event_accept_opts *opts) {
  brume_event_accept *a = brume_xcalloc(1, sizeof(*a));
  a->o = *opts;
  pthread_mutex_init(&a->mu, NULL);
  a->events = brume_metrics_counter(
      opts->metrics, "brume_frontend_events_total",
      "Event (asynchronous) invocations by outcome: queued (acknowledged by JetStream), duplicate "
      "(the same request id again: queued once), refused (bad request, unknown function, the "
      "account's queue full), unavailable (the event queue did not take it).",
      "outcome", NULL);
  a->depth = brume_metrics_gauge(opts->metrics, "brume_frontend_event_queue_depth",
                                 "Events queued in JetStream (all accounts, every frontend's), "
                                 "waiting or running; -1 while NATS does not answer.",
                                 NULL);
  a->oldest_age =
      brume_metrics_gauge(opts->metrics, "brume_frontend_event_queue_oldest_age_seconds",
                          "How long the oldest queued event has waited; 0 when none, "
                          "-1 while NATS does not answer.",
                          NULL);
  if (!queue_ready(a)) a->reopener = brume_ticker_start(opts->retry_ms, reopen_tick, a);
  a->sampler = brume_ticker_start(STATS_PERIOD_MS, sample_tick, a);
  return a;
}

json_t *brume_event_accept_figures_json(brume_event_accept *a) {
  static const char *const outcomes[] = {"queued", "duplicate", "refused", "unavailable"};
  json_t *o = json_object();
  for (size_t i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++)
    json_object_set_new(o, outcomes[i],
                        json_integer((json_int_t)brume_counter_value(a->events, outcomes[i])));
  return o;
}

void brume_event_accept_free(brume_event_accept *a) {
  if (a == NULL) return;
  brume_ticker_stop(a->sampler);
  brume_ticker_stop(a->reopener);
  brume_event_queue_close(a->q); /* answers what is still on its way */
  pthread_mutex_destroy(&a->mu);
  free(a);
}

static void refuse(brume_event_accept *a, brume_rpc_call *call, const char *outcome,
                   const brume_err *err) {
  brume_counter_inc(a->events, 1, outcome);
  brume_frontend_fail(call, err);
}

static void batch_free(batch *b) {
  for (size_t i = 0; i < b->n; i++)
    if (b->results[i].error_message != protobuf_c_empty_string) free(b->results[i].error_message);
  free(b->results);
  free(b->result_ptrs);
  free(b->entries);
  free(b);
}

/* One entry of b answered (or the sending of them all ended): the last answers the call. */
static void batch_entry_done(batch *b) {
  if (atomic_fetch_sub_explicit(&b->left, 1, memory_order_acq_rel) != 1) return;
  Brume__InvokeEventsResponse resp = BRUME__INVOKE_EVENTS_RESPONSE__INIT;
  resp.results = b->result_ptrs;
  resp.n_results = b->n;
  resp.failed_count = atomic_load(&b->failed);
  brume_rpc_call_reply(b->call, &resp.base);
  batch_free(b);
}

/* Entry ac of a batch refused: its result says why, as an Event Invoke of it would have. */
static void batch_entry_refused(accepting *ac, const char *outcome, const brume_err *err) {
  brume_counter_inc(ac->a->events, 1, outcome);
  Brume__EventEntryResult *r = &ac->batch->results[ac->index];
  r->status_code = 0;
  r->error_code = (char *)brume_status_name(err->code);
  r->error_message = brume_xstrdup(err->msg);
  atomic_fetch_add(&ac->batch->failed, 1);
  batch_entry_done(ac->batch);
}

/* JetStream's answer (brume_event_put_done_fn): the call's, or its batch entry's. */
static void queued(void *arg, bool duplicate, const brume_err *err) {
  accepting *ac = arg;
  brume_event_accept *a = ac->a;
  const char *outcome = err == NULL ? (duplicate ? "duplicate" : "queued")
                        : err->code == BRUME_RESOURCE_EXHAUSTED ? "refused"
                                                                : "unavailable";
  if (ac->batch) {
    if (err) {
      batch_entry_refused(ac, outcome, err);
      return;
    }
    brume_counter_inc(a->events, 1, outcome);
    Brume__EventEntryResult *r = &ac->batch->results[ac->index];
    r->status_code = 202;
    r->event_id = ac->event_id;
    batch_entry_done(ac->batch);
    return;
  }
  if (err) {
    refuse(a, ac->call, outcome, err);
  } else {
    brume_counter_inc(a->events, 1, outcome);
    brume_debug("An event was queued.", "request_id=%s event_id=%s duplicate=%s", ac->request_id,
                ac->event_id, duplicate ? "true" : "false");
    Brume__InvokeResponse resp = BRUME__INVOKE_RESPONSE__INIT;
    resp.status_code = 202;
    resp.request_id = ac->request_id;
    resp.event_id = ac->event_id;
    brume_rpc_call_reply(ac->call, &resp.base);
  }
  free(ac);
}

static int check_payload(size_t len, brume_err **err) {
  if (len > BRUME_PAYLOAD_EVENT_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "RequestTooLargeException: the payload is %zu bytes; an Event "
                         "(asynchronous) invocation takes at most %u (256 KiB)",
                         len, BRUME_PAYLOAD_EVENT_MAX);
  return 0;
}

/* The function qualifier: checked once for all the events of a call. */
static int check_function(brume_event_accept *a, const char *account_id, const char *name,
                          const char *qualifier, brume_err **err) {
  if (brume_check_qualifier(qualifier, "qualifier", err) < 0) return -1;
  /* The function must exist now; its version (and an alias's routing) is chosen when it runs. */
  const brume_fn_target *target = NULL;
  if (brume_catalog_resolve(a->o.catalog, account_id, name, qualifier, 0, &target, err) < 0)
    return -1;
  brume_fn_target_unref(target);
  return 0;
}

/* Names ac's event, packs it and sends it to JetStream; queued() answers it. -1 and err when it
 * could not even be sent (ac is then the caller's to answer). */
static int send_event(brume_event_accept *a, brume_event_queue *q, accepting *ac,
                      const char *account_id, const char *name, const char *qualifier,
                      ProtobufCBinaryData payload, const char *idempotency_key, brume_err **err) {
  /* With an idempotency key, the event is named after it: the same key again is the same event,
   * queued once. */
  brume_autofree char *keyed =
      *idempotency_key ? brume_idempotency_event_name(name, idempotency_key) : NULL;
  brume_event_id(account_id, keyed ? keyed : ac->request_id, ac->event_id);
  Brume__QueuedEvent ev = BRUME__QUEUED_EVENT__INIT;
  ev.event_id = ac->event_id;
  ev.account_id = (char *)account_id;
  ev.function_name = (char *)name;
  ev.qualifier = (char *)qualifier;
  ev.payload = payload;
  ev.request_id = ac->request_id;
  ev.accepted_unix_ms = brume_wall_ms();
  ev.accepted_by = (char *)a->o.accepted_by;
  size_t len = 0;
  brume_autofree uint8_t *buf = brume_queued_event_pack(&ev, &len);
  return brume_event_queue_put_async(q, account_id, ac->event_id, buf, len, queued, ac, err);
}

/* The event queue, or NULL and UNAVAILABLE while NATS could not be reached. */
static brume_event_queue *open_queue(brume_event_accept *a, brume_err **err) {
  brume_event_queue *q = brume_event_accept_queue(a);
  if (q == NULL)
    brume_err_set(err, BRUME_UNAVAILABLE,
                  "ServiceUnavailableException: the event queue (NATS at %s) cannot be reached; "
                  "the event was not queued",
                  a->o.queue.urls);
  return q;
}

void brume_event_accept_start(brume_event_accept *a, brume_rpc_call *call,
                              const Brume__InvokeRequest *req, const char *account_id,
                              const char *name, const char *qualifier, const char *request_id) {
  brume_autoptr(brume_err) err = NULL;
  if (check_payload(req->payload.len, &err) < 0 ||
      check_function(a, account_id, name, qualifier, &err) < 0) {
    refuse(a, call, "refused", err);
    return;
  }
  brume_event_queue *q = open_queue(a, &err);
  if (q == NULL) {
    refuse(a, call, "unavailable", err);
    return;
  }
  accepting *ac = brume_xcalloc(1, sizeof(*ac));
  ac->a = a;
  ac->call = call;
  snprintf(ac->request_id, sizeof(ac->request_id), "%s", request_id);
  if (send_event(a, q, ac, account_id, name, qualifier, req->payload, req->idempotency_key, &err) <
      0) {
    refuse(a, call, "unavailable", err);
    free(ac);
  }
}

void brume_event_accept_batch(brume_event_accept *a, brume_rpc_call *call,
                              const Brume__InvokeEventsRequest *req, const char *account_id,
                              const char *name, const char *qualifier, const char *request_id) {
  brume_autoptr(brume_err) err = NULL;
  size_t total = 0;
  for (size_t i = 0; i < req->n_entries; i++) total += req->entries[i]->payload.len;
  if (req->n_entries == 0 || req->n_entries > BRUME_EVENT_BATCH_MAX)
    brume_err_set(&err, BRUME_INVALID_ARGUMENT,
                  "InvalidParameterValueException: entries holds %zu events; a call takes 1-%d",
                  req->n_entries, BRUME_EVENT_BATCH_MAX);
  else if (total > BRUME_PAYLOAD_SYNC_MAX)
    brume_err_set(&err, BRUME_INVALID_ARGUMENT,
                  "RequestTooLargeException: the entries' payloads are %zu bytes together; a "
                  "call takes at most %u (6 MiB)",
                  total, BRUME_PAYLOAD_SYNC_MAX);
  if (err || check_function(a, account_id, name, qualifier, &err) < 0) {
    brume_counter_inc(a->events, (double)req->n_entries, "refused");
    brume_frontend_fail(call, err);
    return;
  }
  brume_event_queue *q = open_queue(a, &err);
  if (q == NULL) {
    brume_counter_inc(a->events, (double)req->n_entries, "unavailable");
    brume_frontend_fail(call, err);
    return;
  }
  batch *b = brume_xcalloc(1, sizeof(*b));
  b->call = call;
  b->n = req->n_entries;
  b->results = brume_xcalloc(b->n, sizeof(*b->results));
  b->result_ptrs = brume_xcalloc(b->n, sizeof(*b->result_ptrs));
  b->entries = brume_xcalloc(b->n, sizeof(*b->entries));
  atomic_init(&b->left, b->n + 1);
  atomic_init(&b->failed, 0);
  for (size_t i = 0; i < b->n; i++) {
    const Brume__EventEntry *e = req->entries[i];
    accepting *ac = &b->entries[i];
    *ac = (accepting){.a = a, .batch = b, .index = i};
    brume__event_entry_result__init(&b->results[i]);
    b->result_ptrs[i] = &b->results[i];
    b->results[i].request_id = ac->request_id;
    brume_autoptr(brume_err) entry_err = NULL;
    if (*e->request_id) {
      if (brume_request_id(e->request_id, "entries.request_id", ac->request_id, &entry_err) < 0)
        snprintf(ac->request_id, sizeof(ac->request_id), "%.64s", e->request_id);
    } else {
      snprintf(ac->request_id, sizeof(ac->request_id), "%.56s-%zu", request_id, i);
    }
    if (entry_err == NULL && check_payload(e->payload.len, &entry_err) == 0 && *e->idempotency_key)
      brume_idempotency_check_key(e->idempotency_key, &entry_err);
    if (entry_err == NULL && send_event(a, q, ac, account_id, name, qualifier, e->payload,
                                        e->idempotency_key, &entry_err) == 0)
      continue;
    batch_entry_refused(ac, entry_err->code == BRUME_INVALID_ARGUMENT ? "refused" : "unavailable",
                        entry_err);
  }
  batch_entry_done(b); /* every entry sent: the last answer may come now */
}
