/* Delivering queued events: see event_delivery.h. */
#include "event_delivery.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brume/async.pb-c.h"
#include "clock.h"
#include "event_record.h"
#include "log.h"
#include "mem.h"
#include "named_queue.h"
#include "names.h"
#include "policy.h"
#include "random.h"

/* Events fetched at most per call, and how long a fetch waits for the first. */
#define FETCH_BATCH 32
#define FETCH_WAIT_MS 1000
/* How long a delivery waits before it tries again when NATS failed it. */
#define NATS_RETRY_MS 1000
/* The tries an event's state keeps (its counts keep them all), and an error's length in one. */
#define TRIES_KEPT 20
#define TRY_ERROR_MAX 1024
/* The longest an invocation may take (a function's longest timeout), and a margin for its cold
 * start, for the deadline of a delivery's invocation. */
#define RUN_DEADLINE_MS (15 * 60 * 1000 + 2 * 60 * 1000)
/* The most of a response a destination record carries (a run's response may be 6 MiB; a NATS
 * message is at most 1 MiB). */
#define RESPONSE_KEPT_MAX (256 * 1024)

/* One try, as the state keeps it (a brume.EventTry). */
typedef struct try_rec {
  int64_t began_ms, ended_ms;
  const char *outcome; /* a static string */
  char version[17];
  char *error; /* NULL when it succeeded */
  char by[64]; /* the frontend whose delivery made it */
} try_rec;

/* An event's state (a brume.EventRecord, less what its QueuedEvent says). */
typedef struct record {
  Brume__EventState state;
  uint32_t attempts, backoffs;
  int64_t next_attempt_ms;
  const char *condition; /* a static string, or NULL */
  size_t n_tries;        /* <= TRIES_KEPT, oldest first */
  try_rec tries[TRIES_KEPT];
} record;

/* One event under way: fetched, running, then waiting to be settled. */
typedef struct running {
  brume_event_delivery *d;
  brume_event *e;
  Brume__QueuedEvent *qe;
  Brume__InvokeRequest req; /* the invocation's request: its payload is qe's */
  record rec;
  brume_fn_event_config config; /* the qualifier's settings when it was fetched */
  brume_event_policy policy;
  /* The try under way: set by run_done. */
  int64_t began_ms, ended_ms;
  brume_try_outcome outcome;
  bool function_gone; /* the function (or its qualifier) was deleted since it was accepted */
  char version[17];
  char *error;
  /* The last run's response (at most RESPONSE_KEPT_MAX) and function error type, for the
   * destination record; response NULL while it never ran. */
  uint8_t *response;
  size_t response_len;
  char function_error[129];
  struct running *next;
} running;

struct brume_event_delivery {
  brume_event_delivery_opts o;
  pthread_mutex_t mu;
  pthread_cond_t space;  /* busy fell below workers, or stopping */
  pthread_cond_t settle; /* something ended, or stopping the settler */
  int busy;              /* fetched and not yet settled */
  running *in_flight;    /* running in the invoker */
  running *ended;        /* answered, waiting for the settler */
  bool stopping;         /* no more fetching */
  bool settler_stopping; /* and the settler may go once nothing is busy */
  bool stopped;          /* brume_event_delivery_stop() ran (the stopping thread's only) */
  pthread_t fetcher, settler;
  brume_counter *tries;   /* {outcome} */
  brume_counter *ends;    /* {end} */
  brume_gauge *running_g; /* events running now */
  brume_histogram *start_delay;
  brume_counter *destinations; /* {kind, condition, result} */
};

static const char *outcome_name(brume_try_outcome o) {
  switch (o) {
    case BRUME_TRY_SUCCEEDED:
      return "succeeded";
    case BRUME_TRY_FUNCTION_ERROR:
      return "function_error";
    case BRUME_TRY_THROTTLED:
      return "throttled";
    default:
      return "platform_error";
  }
}

static void record_clear(record *r) {
  for (size_t i = 0; i < r->n_tries; i++) free(r->tries[i].error);
  memset(r, 0, sizeof(*r));
}

/* Appends a try, dropping the oldest when TRIES_KEPT are kept. error is moved in. */
static void record_add_try(record *r, const try_rec *t) {
  if (r->n_tries == TRIES_KEPT) {
    free(r->tries[0].error);
    memmove(&r->tries[0], &r->tries[1], (TRIES_KEPT - 1) * sizeof(r->tries[0]));
    r->n_tries--;
  }
  r->tries[r->n_tries++] = *t;
}

/* A stored try's outcome name as outcome_name's static string (platform_error when unknown). */
static const char *known_outcome(const char *s) {
  for (int o = BRUME_TRY_SUCCEEDED; o <= BRUME_TRY_PLATFORM_ERROR; o++)
    if (strcmp(s, outcome_name((brume_try_outcome)o)) == 0) return outcome_name(o);
  return outcome_name(BRUME_TRY_PLATFORM_ERROR);
}

/* How an event fails (FunctionNotFound: its function was deleted while it was queued). */
static const char *const condition_names[] = {"RetriesExhausted", "EventAgeExceeded",
                                              "FunctionNotFound"};
#define N_CONDITIONS (sizeof(condition_names) / sizeof(condition_names[0]))

static const char *known_condition(const char *s) {
  for (size_t i = 0; i < N_CONDITIONS; i++)
    if (strcmp(s, condition_names[i]) == 0) return condition_names[i];
  return NULL;
}

static void record_from_proto(record *r, const Brume__EventRecord *p) {
  record_clear(r);
  r->state = p->state;
  r->attempts = p->attempts;
  r->backoffs = p->backoffs;
  r->next_attempt_ms = p->next_attempt_unix_ms;
  r->condition = known_condition(p->condition);
  size_t first = p->n_tries > TRIES_KEPT ? p->n_tries - TRIES_KEPT : 0;
  for (size_t i = first; i < p->n_tries; i++) {
    const Brume__EventTry *t = p->tries[i];
    try_rec tr = {.began_ms = t->began_unix_ms,
                  .ended_ms = t->ended_unix_ms,
                  .outcome = known_outcome(t->outcome),
                  .error = *t->error ? brume_xstrdup(t->error) : NULL};
    snprintf(tr.version, sizeof(tr.version), "%s", t->executed_version);
    snprintf(tr.by, sizeof(tr.by), "%s", t->delivered_by);
    record_add_try(r, &tr);
  }
}

/* Room for a brume.EventRecord's tries that points into a running event. */
typedef struct record_view {
  Brume__EventRecord p;
  Brume__EventTry tries[TRIES_KEPT];
  Brume__EventTry *tp[TRIES_KEPT];
} record_view;

/* The state of event r as a brume.EventRecord pointing into r (valid while r is unchanged). */
static void record_view_fill(record_view *v, const running *r) {
  const Brume__QueuedEvent *qe = r->qe;
  const record *rec = &r->rec;
  Brume__EventRecord *p = &v->p;
  brume__event_record__init(p);
  p->event_id = qe->event_id;
  p->account_id = qe->account_id;
  p->function_name = qe->function_name;
  p->qualifier = qe->qualifier;
  p->request_id = qe->request_id;
  p->accepted_unix_ms = qe->accepted_unix_ms;
  p->state = rec->state;
  p->attempts = rec->attempts;
  p->backoffs = rec->backoffs;
  p->next_attempt_unix_ms = rec->next_attempt_ms;
  p->condition = (char *)(rec->condition ? rec->condition : "");
  p->updated_unix_ms = brume_wall_ms();
  for (size_t i = 0; i < rec->n_tries; i++) {
    const try_rec *t = &rec->tries[i];
    Brume__EventTry *et = &v->tries[i];
    brume__event_try__init(et);
    et->began_unix_ms = t->began_ms;
    et->ended_unix_ms = t->ended_ms;
    et->outcome = (char *)t->outcome;
    et->executed_version = (char *)t->version;
    et->error = t->error ? t->error : "";
    et->delivered_by = (char *)t->by;
    v->tp[i] = et;
  }
  p->n_tries = rec->n_tries;
  p->tries = v->tp;
}

/* The state of event r as stored: a packed brume.EventRecord (caller frees). */
static uint8_t *record_pack(const running *r, size_t *len) {
  record_view v;
  record_view_fill(&v, r);
  *len = brume__event_record__get_packed_size(&v.p);
  uint8_t *buf = brume_xmalloc(*len ? *len : 1);
  brume__event_record__pack(&v.p, buf);
  return buf;
}

static void running_free(running *r) {
  if (r == NULL) return;
  brume_event_free(r->e);
  brume__queued_event__free_unpacked(r->qe, NULL);
  record_clear(&r->rec);
  free(r->error);
  free(r->response);
  free(r);
}

/* Writes r's state. A failure is logged: the event is then settled all the same, and a frontend
 * that fetches it again finds the state before this step. */
static void save_state(brume_event_queue *q, running *r) {
  size_t len = 0;
  brume_autofree uint8_t *buf = record_pack(r, &len);
  brume_autoptr(brume_err) err = NULL;
  if (brume_event_state_put(q, r->e->id, buf, len, &err) < 0)
    brume_warn("An event's state could not be written.", "event_id=%s err=%s", r->e->id, err->msg);
}

/* Settles the event with JetStream: acknowledged (ended: removed from the stream), or handed
 * back for delay_ms. */
static void settle_with(running *r, bool ended, int64_t delay_ms) {
  brume_autoptr(brume_err) err = NULL;
  int rc = ended ? brume_event_done(r->e, &err) : brume_event_retry_in(r->e, delay_ms, &err);
  if (rc < 0)
    brume_warn("An event could not be settled; JetStream hands it out again after its ack wait.",
               "event_id=%s err=%s", r->e->id, err->msg);
}

/* Puts the record of r, which ended (condition NULL: succeeded), in its destination: 0 when it
 * has none or the destination took it, -1 when it did not. */
static int send_destination(brume_event_delivery *d, brume_event_queue *q, running *r,
                            const char *condition) {
  const brume_fn_event_config *c = &r->config;
  const char *to = !condition         ? c->on_success
                   : c->on_failure[0] ? c->on_failure
                                      : c->dead_letter_queue;
  brume_destination dest;
  brume_autoptr(brume_err) err = NULL;
  if (*to == '\0') return 0;
  if (brume_destination_parse(to, "destination", &dest, &err) < 0) {
    /* Checked when it was set: only a document written by hand gets here. */
    brume_warn("An event's destination is malformed; no record is sent.", "event_id=%s to=%s",
               r->e->id, to);
    return 0;
  }
  record_view v;
  record_view_fill(&v, r);
  brume_autofree char *arn =
      brume_function_arn(d->o.region, r->qe->account_id, r->qe->function_name,
                         *r->qe->qualifier ? r->qe->qualifier : BRUME_LATEST);
  brume_event_outcome o = {.event = r->qe,
                           .record = &v.p,
                           .function_arn = arn,
                           .condition = condition,
                           .response = r->response,
                           .response_len = r->response_len,
                           .function_error = r->function_error,
                           .now_unix_ms = brume_wall_ms()};
  size_t len = 0;
  brume_autofree char *doc = brume_event_destination_record(&o, true, &len);
  /* One record per event and ending: a delivery that dies after sending it and sends it again
   * names it the same, and JetStream keeps it once. */
  char msg_id[BRUME_EVENT_ID_MAX + 16];
  snprintf(msg_id, sizeof(msg_id), "%s-%s", r->e->id, condition ? "failure" : "success");
  int rc;
  const char *kind = dest.kind == BRUME_DESTINATION_QUEUE ? "queue" : "function";
  if (dest.kind == BRUME_DESTINATION_QUEUE) {
    rc = brume_named_queue_put(q, r->qe->account_id, dest.name, msg_id, doc, len, &err);
  } else {
    if (len > BRUME_PAYLOAD_EVENT_MAX) {
      free(doc);
      doc = brume_event_destination_record(&o, false, &len);
    }
    Brume__QueuedEvent ev = BRUME__QUEUED_EVENT__INIT;
    char event_id[37];
    brume_event_id(r->qe->account_id, msg_id, event_id);
    ev.event_id = event_id;
    ev.account_id = r->qe->account_id;
    ev.function_name = dest.name;
    ev.qualifier = dest.qualifier;
    ev.payload.data = (uint8_t *)doc;
    ev.payload.len = len;
    ev.request_id = msg_id;
    ev.accepted_unix_ms = brume_wall_ms();
    ev.accepted_by = (char *)d->o.delivered_by;
    size_t plen = 0;
    brume_autofree uint8_t *buf = brume_queued_event_pack(&ev, &plen);
    rc = brume_event_queue_put(q, r->qe->account_id, event_id, buf, plen, NULL, &err);
  }
  brume_counter_inc(d->destinations, 1, kind, condition ? condition : "Success",
                    rc == 0 ? "sent" : "failed");
  if (rc < 0)
    brume_warn(
        "An event's record could not be sent to its destination; the event is tried "
        "again.",
        "event_id=%s to=%s err=%s", r->e->id, to, err->msg);
  else
    brume_debug("An event's record went to its destination.", "event_id=%s to=%s bytes=%zu",
                r->e->id, to, len);
  return rc;
}

/* Ends the event for good: succeeded, or failed with condition. Its record goes to its
 * destination first: when that fails, the event is handed back as after a platform error (it
 * runs again: at least once). */
static void end_event(brume_event_delivery *d, brume_event_queue *q, running *r,
                      const char *condition) {
  r->rec.state = condition ? BRUME__EVENT_STATE__EVENT_FAILED : BRUME__EVENT_STATE__EVENT_SUCCEEDED;
  r->rec.condition = condition;
  r->rec.next_attempt_ms = 0;
  if (send_destination(d, q, r, condition) < 0) {
    r->rec.state = BRUME__EVENT_STATE__EVENT_RETRY_SCHEDULED;
    r->rec.condition = NULL;
    r->rec.next_attempt_ms = brume_wall_ms() + NATS_RETRY_MS;
    save_state(q, r);
    settle_with(r, false, NATS_RETRY_MS);
    return;
  }
  save_state(q, r);
  settle_with(r, true, 0);
  brume_counter_inc(d->ends, 1, condition ? condition : "succeeded");
  /* A failure is worth an operator's eye; a success, as a synchronous invocation's, is not. */
  brume_log(condition ? BRUME_LOG_INFO : BRUME_LOG_DEBUG,
            condition ? "An event failed." : "An event succeeded.",
            "event_id=%s request_id=%s account_id=%s function=%s qualifier=%s attempts=%u "
            "backoffs=%u condition=%s age_ms=%lld",
            r->e->id, r->qe->request_id, r->qe->account_id, r->qe->function_name,
            *r->qe->qualifier ? r->qe->qualifier : "-", r->rec.attempts, r->rec.backoffs,
            condition ? condition : "-", (long long)(brume_wall_ms() - r->qe->accepted_unix_ms));
}

/* ---- Settling (the settler thread) ---- */

static double uniform(void) {
  return (double)(brume_random_u64() >> 11) / (double)(1ull << 53);
}

static void settle(brume_event_delivery *d, running *r) {
  brume_event_queue *q = brume_event_accept_queue(d->o.accept);
  try_rec t = {.began_ms = r->began_ms,
               .ended_ms = r->ended_ms,
               .outcome = outcome_name(r->outcome),
               .error = r->error};
  r->error = NULL; /* moved into the record */
  snprintf(t.version, sizeof(t.version), "%s", r->version);
  snprintf(t.by, sizeof(t.by), "%s", d->o.delivered_by);
  record_add_try(&r->rec, &t);
  brume_counter_inc(d->tries, 1, t.outcome);
  if (r->outcome == BRUME_TRY_FUNCTION_ERROR) r->rec.attempts++;
  if (r->outcome == BRUME_TRY_THROTTLED || r->outcome == BRUME_TRY_PLATFORM_ERROR)
    r->rec.backoffs++;
  if (r->function_gone) {
    end_event(d, q, r, "FunctionNotFound");
    return;
  }
  brume_event_tries so_far = {.attempts = (int)r->rec.attempts,
                              .backoffs = (int)r->rec.backoffs,
                              .queued_ms = r->qe->accepted_unix_ms};
  int64_t now = brume_wall_ms();
  brume_event_next next = brume_event_policy_next(&r->policy, r->outcome, &so_far, now, uniform());
  switch (next.fate) {
    case BRUME_EVENT_SUCCEEDED:
      end_event(d, q, r, NULL);
      break;
    case BRUME_EVENT_FAILED:
      end_event(d, q, r, next.condition);
      break;
    case BRUME_EVENT_RETRY:
      r->rec.state = BRUME__EVENT_STATE__EVENT_RETRY_SCHEDULED;
      r->rec.next_attempt_ms = now + next.delay_ms;
      save_state(q, r);
      settle_with(r, false, next.delay_ms);
      brume_debug("An event will be tried again.",
                  "event_id=%s outcome=%s attempts=%u backoffs=%u delay_ms=%lld", r->e->id,
                  outcome_name(r->outcome), r->rec.attempts, r->rec.backoffs,
                  (long long)next.delay_ms);
      break;
  }
}

/* Tells JetStream that every event running is still being worked on. Under d->mu. */
static void extend_running(brume_event_delivery *d) {
  for (running *r = d->in_flight; r; r = r->next) {
    brume_autoptr(brume_err) err = NULL;
    if (brume_event_working(r->e, &err) < 0)
      brume_warn("A running event's ack wait could not be extended.", "event_id=%s err=%s",
                 r->e->id, err->msg);
  }
}

static void *settler_main(void *arg) {
  brume_event_delivery *d = arg;
  int64_t period = d->o.ack_wait_ms / 3;
  int64_t next_extend = brume_mono_ms() + period;
  pthread_mutex_lock(&d->mu);
  for (;;) {
    while (d->ended) {
      running *r = d->ended;
      d->ended = r->next;
      pthread_mutex_unlock(&d->mu);
      settle(d, r);
      running_free(r);
      pthread_mutex_lock(&d->mu);
      d->busy--;
      pthread_cond_broadcast(&d->space);
    }
    if (d->settler_stopping && d->busy == 0) break;
    int64_t now = brume_mono_ms();
    if (now >= next_extend) {
      extend_running(d);
      next_extend = now + period;
    }
    struct timespec until = brume_timespec_in(CLOCK_MONOTONIC, next_extend - now);
    pthread_cond_timedwait(&d->settle, &d->mu, &until);
  }
  pthread_mutex_unlock(&d->mu);
  return NULL;
}

/* ---- Running (the fetcher thread, and the invoker's answer) ---- */

/* The invoker's answer (brume_invoke_done_fn): what the settler needs, kept. */
static void run_done(void *arg, const Brume__InvokeResponse *resp, const brume_err *err) {
  running *r = arg;
  brume_event_delivery *d = r->d;
  r->ended_ms = brume_wall_ms();
  if (err) {
    r->outcome =
        err->code == BRUME_RESOURCE_EXHAUSTED ? BRUME_TRY_THROTTLED : BRUME_TRY_PLATFORM_ERROR;
    r->function_gone = err->code == BRUME_NOT_FOUND;
    r->error = brume_xasprintf("%s: %.*s", brume_status_name(err->code), TRY_ERROR_MAX, err->msg);
  } else {
    snprintf(r->version, sizeof(r->version), "%s", resp->executed_version);
    free(r->response);
    r->response_len = resp->payload.len < RESPONSE_KEPT_MAX ? resp->payload.len : RESPONSE_KEPT_MAX;
    r->response = brume_xmalloc(r->response_len + 1);
    if (r->response_len) memcpy(r->response, resp->payload.data, r->response_len);
    snprintf(r->function_error, sizeof(r->function_error), "%s",
             resp->function_error ? resp->function_error->type : "");
    if (resp->function_error) {
      r->outcome = BRUME_TRY_FUNCTION_ERROR;
      r->error = brume_xasprintf("%.128s: %.*s", resp->function_error->type, TRY_ERROR_MAX,
                                 resp->function_error->message);
    } else {
      r->outcome = BRUME_TRY_SUCCEEDED;
    }
  }
  pthread_mutex_lock(&d->mu);
  running **at = &d->in_flight;
  while (*at && *at != r) at = &(*at)->next;
  if (*at) *at = r->next;
  r->next = d->ended;
  d->ended = r;
  brume_gauge_add(d->running_g, -1);
  pthread_cond_signal(&d->settle);
  pthread_mutex_unlock(&d->mu);
}

/* Reads the event's state into r->rec: 0 (none yet is a fresh state), or -1 when NATS did not
 * answer. */
static int load_state(brume_event_queue *q, running *r) {
  brume_autofree void *data = NULL;
  size_t len = 0;
  brume_autoptr(brume_err) err = NULL;
  if (brume_event_state_get(q, r->e->id, &data, &len, &err) < 0) {
    if (err->code == BRUME_NOT_FOUND) {
      r->rec.state = BRUME__EVENT_STATE__EVENT_QUEUED;
      return 0;
    }
    brume_warn("An event's state could not be read; it is handed back.", "event_id=%s err=%s",
               r->e->id, err->msg);
    return -1;
  }
  Brume__EventRecord *p = brume__event_record__unpack(NULL, len, data);
  if (p == NULL) {
    brume_warn("An event's state is unreadable; it starts afresh.", "event_id=%s bytes=%zu",
               r->e->id, len);
    r->rec.state = BRUME__EVENT_STATE__EVENT_QUEUED;
    return 0;
  }
  record_from_proto(&r->rec, p);
  brume__event_record__free_unpacked(p, NULL);
  return 0;
}

/* Starts one fetched event (or settles it at once). Takes e. */
static void begin(brume_event_delivery *d, brume_event_queue *q, brume_event *e) {
  Brume__QueuedEvent *qe = brume__queued_event__unpack(NULL, e->len, e->data);
  if (qe == NULL || strcmp(qe->event_id, e->id) != 0 || strcmp(qe->account_id, e->account) != 0) {
    /* It can never run: dropped, or it would come back for ever. */
    brume_warn("A queued event is unreadable, or not what its subject says; dropped.",
               "event_id=%s account_id=%s bytes=%zu", e->id, e->account, e->len);
    brume_autoptr(brume_err) err = NULL;
    if (brume_event_drop(e, &err) < 0)
      brume_warn("The event could not be dropped.", "event_id=%s err=%s", e->id, err->msg);
    brume__queued_event__free_unpacked(qe, NULL);
    brume_event_free(e);
    return;
  }
  running *r = brume_xcalloc(1, sizeof(*r));
  r->d = d;
  r->e = e;
  r->qe = qe;
  /* The settings as they are now: a change applies to the tries after it. */
  brume_catalog_event_config(d->o.catalog, qe->account_id, qe->function_name, qe->qualifier,
                             &r->config);
  r->policy = (brume_event_policy){.max_retries = r->config.max_retries,
                                   .max_age_s = r->config.max_age_s,
                                   .time_scale = d->o.time_scale};
  if (load_state(q, r) < 0) {
    settle_with(r, false, NATS_RETRY_MS);
    running_free(r);
    return;
  }
  if (r->rec.state == BRUME__EVENT_STATE__EVENT_SUCCEEDED ||
      r->rec.state == BRUME__EVENT_STATE__EVENT_FAILED) {
    /* A delivery ended it and was stopped before it could acknowledge it. */
    brume_info("A queued event had already ended; acknowledged.", "event_id=%s state=%d", e->id,
               (int)r->rec.state);
    settle_with(r, true, 0);
    running_free(r);
    return;
  }
  int64_t now = brume_wall_ms();
  if (brume_event_expired(&r->policy, qe->accepted_unix_ms, now)) {
    end_event(d, q, r, "EventAgeExceeded");
    running_free(r);
    return;
  }
  if (r->rec.attempts == 0 && r->rec.backoffs == 0)
    brume_histogram_observe(d->start_delay, (double)(now - qe->accepted_unix_ms) / 1000.0);
  r->rec.state = BRUME__EVENT_STATE__EVENT_RUNNING;
  r->rec.next_attempt_ms = 0;
  save_state(q, r);

  brume__invoke_request__init(&r->req);
  r->req.function_name = qe->function_name;
  r->req.qualifier = qe->qualifier;
  r->req.invocation_type = BRUME__INVOCATION_TYPE__INVOCATION_TYPE_REQUEST_RESPONSE;
  r->req.payload = qe->payload;
  r->began_ms = now;
  pthread_mutex_lock(&d->mu);
  d->busy++;
  r->next = d->in_flight;
  d->in_flight = r;
  brume_gauge_add(d->running_g, 1);
  pthread_mutex_unlock(&d->mu);
  brume_invoker_run(d->o.invoker, &r->req, qe->account_id, qe->function_name, qe->qualifier,
                    qe->request_id, brume_mono_ms() + RUN_DEADLINE_MS, run_done, r);
}

static void *fetcher_main(void *arg) {
  brume_event_delivery *d = arg;
  brume_event *batch[FETCH_BATCH];
  pthread_mutex_lock(&d->mu);
  while (!d->stopping) {
    if (d->busy >= d->o.workers) {
      pthread_cond_wait(&d->space, &d->mu);
      continue;
    }
    int room = d->o.workers - d->busy;
    pthread_mutex_unlock(&d->mu);
    brume_event_queue *q = brume_event_accept_queue(d->o.accept);
    int n = 0;
    brume_autoptr(brume_err) err = NULL;
    if (q != NULL)
      n = brume_event_queue_fetch(q, batch, room < FETCH_BATCH ? room : FETCH_BATCH, FETCH_WAIT_MS,
                                  &err);
    if (n < 0) brume_warn("Fetching queued events failed.", "err=%s", err->msg);
    for (int i = 0; i < n; i++) begin(d, q, batch[i]);
    pthread_mutex_lock(&d->mu);
    if ((q == NULL || n < 0) && !d->stopping) {
      /* No queue yet, or NATS down: look again a little later. */
      struct timespec until = brume_timespec_in(CLOCK_MONOTONIC, NATS_RETRY_MS);
      pthread_cond_timedwait(&d->space, &d->mu, &until);
    }
  }
  pthread_mutex_unlock(&d->mu);
  return NULL;
}

brume_event_delivery *brume_event_delivery_start(const brume_event_delivery_opts *opts) {
  brume_event_delivery *d = brume_xcalloc(1, sizeof(*d));
  d->o = *opts;
  if (d->o.workers < 1) d->o.workers = 1;
  if (!(d->o.time_scale > 0)) d->o.time_scale = 1;
  if (d->o.ack_wait_ms < 3) d->o.ack_wait_ms = 3;
  pthread_mutex_init(&d->mu, NULL);
  brume_cond_init_monotonic(&d->space);
  brume_cond_init_monotonic(&d->settle);
  d->tries = brume_metrics_counter(
      opts->metrics, "brume_frontend_event_tries_total",
      "Tries at running queued events by outcome: succeeded, function_error (an attempt: retried "
      "by the policy), throttled or platform_error (redelivered with backoff).",
      "outcome", NULL);
  d->ends = brume_metrics_counter(
      opts->metrics, "brume_frontend_events_ended_total",
      "Queued events that ended, by how: succeeded, RetriesExhausted, EventAgeExceeded, "
      "FunctionNotFound.",
      "end", NULL);
  d->running_g = brume_metrics_gauge(opts->metrics, "brume_frontend_events_running",
                                     "Queued events this frontend is running now.", NULL);
  d->destinations = brume_metrics_counter(
      opts->metrics, "brume_frontend_event_destinations_total",
      "Records of ended events sent to their destinations, by kind (queue, function), condition "
      "(Success, RetriesExhausted, EventAgeExceeded, FunctionNotFound) and result (sent, failed: "
      "the event is tried again).",
      "kind", "condition", "result", NULL);
  d->start_delay = brume_metrics_histogram(
      opts->metrics, "brume_frontend_event_start_delay_seconds",
      "From an event's acceptance to the start of its first try.", NULL, 0, NULL);
  if (pthread_create(&d->settler, NULL, settler_main, d) != 0 ||
      pthread_create(&d->fetcher, NULL, fetcher_main, d) != 0)
    brume_fatal("cannot start the event delivery's threads");
  brume_info("Delivering queued events.", "workers=%d time_scale=%g ack_wait_ms=%lld", d->o.workers,
             d->o.time_scale, (long long)d->o.ack_wait_ms);
  return d;
}

json_t *brume_event_delivery_figures_json(brume_event_delivery *d) {
  json_t *tries = json_object();
  for (int o = BRUME_TRY_SUCCEEDED; o <= BRUME_TRY_PLATFORM_ERROR; o++) {
    const char *name = outcome_name((brume_try_outcome)o);
    json_object_set_new(tries, name, json_integer((json_int_t)brume_counter_value(d->tries, name)));
  }
  json_t *ended =
      json_pack("{s:I}", "succeeded", (json_int_t)brume_counter_value(d->ends, "succeeded"));
  for (size_t i = 0; i < N_CONDITIONS; i++)
    json_object_set_new(ended, condition_names[i],
                        json_integer((json_int_t)brume_counter_value(d->ends, condition_names[i])));
  /* Every (kind, condition, result) that happened, in that order. */
  json_t *destinations = json_array();
  static const char *const kinds[] = {"queue", "function"}, *const results[] = {"sent", "failed"};
  for (size_t k = 0; k < 2; k++) {
    for (size_t c = 0; c <= N_CONDITIONS; c++) {
      const char *condition = c == 0 ? "Success" : condition_names[c - 1];
      for (size_t r = 0; r < 2; r++) {
        double n = brume_counter_value(d->destinations, kinds[k], condition, results[r]);
        if (n > 0)
          json_array_append_new(destinations,
                                json_pack("{s:s, s:s, s:s, s:I}", "kind", kinds[k], "condition",
                                          condition, "result", results[r], "count", (json_int_t)n));
      }
    }
  }
  return json_pack("{s:I, s:I, s:o, s:o, s:o}", "workers", (json_int_t)d->o.workers, "running",
                   (json_int_t)brume_gauge_value(d->running_g), "tries", tries, "ended", ended,
                   "destinations", destinations);
}

void brume_event_delivery_stop(brume_event_delivery *d) {
  if (d == NULL || d->stopped) return;
  d->stopped = true;
  pthread_mutex_lock(&d->mu);
  d->stopping = true;
  pthread_cond_broadcast(&d->space);
  pthread_mutex_unlock(&d->mu);
  pthread_join(d->fetcher, NULL);
  pthread_mutex_lock(&d->mu);
  d->settler_stopping = true;
  pthread_cond_signal(&d->settle);
  pthread_mutex_unlock(&d->mu);
  pthread_join(d->settler, NULL);
}

void brume_event_delivery_free(brume_event_delivery *d) {
  if (d == NULL) return;
  brume_event_delivery_stop(d);
  pthread_cond_destroy(&d->space);
  pthread_cond_destroy(&d->settle);
  pthread_mutex_destroy(&d->mu);
  free(d);
}
