/* The queue of asynchronous invocations on NATS JetStream: see event_queue.h. */
#include "event_queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_queue_impl.h"
#include "log.h"
#include "mem.h"

#define STREAM "BRUME_EVENTS"
#define CONSUMER "deliver"
#define STATE_BUCKET "brume_events"
#define SUBJECT_PREFIX "brume.events."
#define PUBLISH_MAX_PENDING 65536

static void put_answered(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure);

/* JetStream's "stream store failed", which a publish over max_msgs_per_subject gets with
 * discard_new_per_subject (the enum of libnats 3.4 lacks it). */
#define JS_STREAM_STORE_FAILED 10077

const char *brume_eq_nats_why(natsStatus s) {
  natsStatus last = NATS_OK;
  const char *text = nats_GetLastError(&last);
  return last == s && text && *text ? text : natsStatus_GetText(s);
}

static const char *conn_status_name(natsConnStatus cs) {
  switch (cs) {
    case NATS_CONN_STATUS_DISCONNECTED:
      return "disconnected";
    case NATS_CONN_STATUS_CONNECTING:
      return "connecting";
    case NATS_CONN_STATUS_CONNECTED:
      return "connected";
    case NATS_CONN_STATUS_CLOSED:
      return "closed";
    case NATS_CONN_STATUS_RECONNECTING:
      return "reconnecting";
    default:
      return "draining";
  }
}

bool brume_eq_token_ok(const char *s, size_t max) {
  size_t n = 0;
  for (; s[n]; n++) {
    char c = s[n];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_'))
      return false;
  }
  return n > 0 && n < max;
}

static void fill_stream_config(jsStreamConfig *sc, const brume_event_queue_opts *o,
                               const char **subjects) {
  jsStreamConfig_Init(sc);
  sc->Name = STREAM;
  sc->Description = "Brume's queued asynchronous invocations (docs/async.md)";
  subjects[0] = SUBJECT_PREFIX ">";
  sc->Subjects = subjects;
  sc->SubjectsLen = 1;
  sc->Retention = js_WorkQueuePolicy; /* an event leaves once its delivery settled it */
  sc->Storage = js_FileStorage;
  sc->Replicas = o->replicas;
  sc->MaxAge = o->max_age_ms * NS_PER_MS;
  sc->Duplicates = o->duplicate_window_ms * NS_PER_MS;
  /* Refusing the new event, never dropping an old one: an event that was acknowledged must run. */
  sc->Discard = js_DiscardNew;
  if (o->max_queued_per_account > 0) {
    sc->MaxMsgsPerSubject = o->max_queued_per_account;
    sc->DiscardNewPerSubject = true;
  }
}

static void fill_consumer_config(jsConsumerConfig *cc, const brume_event_queue_opts *o) {
  jsConsumerConfig_Init(cc);
  cc->Durable = CONSUMER;
  cc->Description = "every frontend's deliveries of queued events";
  cc->AckPolicy = js_AckExplicit;
  cc->AckWait = o->ack_wait_ms * NS_PER_MS;
  cc->MaxDeliver = -1; /* throttles redeliver an event until its maximum age: no count limit */
  /* An event waiting for its retry is unacknowledged too: the default (1,000) would stop every
   * delivery behind a thousand events that wait for a throttled function. */
  cc->MaxAckPending = -1;
  cc->Replicas = o->replicas;
}

int brume_eq_put_stream(brume_event_queue *q, jsStreamConfig *sc, brume_err **err) {
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_AddStream(&si, q->js, sc, &q->jo, &jerr);
  if (s != NATS_OK && jerr == JSStreamNameExistErr) {
    jerr = 0;
    s = js_UpdateStream(&si, q->js, sc, &q->jo, &jerr);
  }
  jsStreamInfo_Destroy(si);
  if (s == NATS_OK) return 0;
  return brume_err_set(err, jerr ? BRUME_FAILED_PRECONDITION : BRUME_UNAVAILABLE,
                       "the event queue (NATS JetStream): cannot create or update the stream %s: "
                       "%s (JetStream error %d)",
                       sc->Name, brume_eq_nats_why(s), (int)jerr);
}

static int ensure_stream(brume_event_queue *q, brume_err **err) {
  jsStreamConfig sc;
  const char *subjects[1];
  fill_stream_config(&sc, &q->o, subjects);
  return brume_eq_put_stream(q, &sc, err);
}

static int ensure_consumer(brume_event_queue *q, brume_err **err) {
  jsConsumerConfig cc;
  fill_consumer_config(&cc, &q->o);
  jsConsumerInfo *ci = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_AddConsumer(&ci, q->js, STREAM, &cc, &q->jo, &jerr);
  if (s != NATS_OK && (jerr == JSConsumerNameExistErr || jerr == JSConsumerExistingActiveErr ||
                       jerr == JSConsumerCreateErr)) {
    jerr = 0;
    s = js_UpdateConsumer(&ci, q->js, STREAM, &cc, &q->jo, &jerr);
  }
  jsConsumerInfo_Destroy(ci);
  if (s == NATS_OK) return 0;
  return brume_err_set(err, jerr ? BRUME_FAILED_PRECONDITION : BRUME_UNAVAILABLE,
                       "the event queue (NATS JetStream): cannot create or update the consumer "
                       "%s: %s (JetStream error %d)",
                       CONSUMER, brume_eq_nats_why(s), (int)jerr);
}

int brume_eq_put_bucket(brume_event_queue *q, const char *bucket, const char *description,
                        int64_t ttl_ms, kvStore **out, brume_err **err) {
  kvConfig kc;
  kvConfig_Init(&kc);
  kc.Bucket = bucket;
  kc.Description = description;
  kc.History = 1;
  kc.TTL = ttl_ms * NS_PER_MS; /* nanoseconds, as the streams' ages */
  kc.StorageType = js_FileStorage;
  kc.Replicas = q->o.replicas;
  natsStatus s = js_CreateKeyValue(out, q->js, &kc);
  /* It exists with another configuration (a TTL from another frontend's options): as it is. */
  if (s != NATS_OK) s = js_KeyValue(out, q->js, bucket);
  if (s == NATS_OK) return 0;
  return brume_err_set(err, BRUME_UNAVAILABLE,
                       "the event queue (NATS JetStream): cannot create or open the key-value "
                       "bucket %s: %s",
                       bucket, brume_eq_nats_why(s));
}

static int ensure_states(brume_event_queue *q, brume_err **err) {
  return brume_eq_put_bucket(q, STATE_BUCKET,
                             "the state of each queued asynchronous invocation, by event id",
                             q->o.max_age_ms, &q->states, err);
}

static int check_opts(const brume_event_queue_opts *o, brume_err **err) {
  if (o->urls == NULL || *o->urls == '\0')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "the event queue: no NATS URL");
  if (o->replicas != 1 && o->replicas != 3)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "the event queue: replicas is %d; 1 (one NATS server) or 3", o->replicas);
  if ((o->tls_cert == NULL) != (o->tls_key == NULL))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "the event queue: a TLS certificate needs its key, and a key its "
                         "certificate");
  if (o->ack_wait_ms < 1000 || o->timeout_ms < 1 || o->duplicate_window_ms < 0 ||
      o->idempotency_window_ms < 0 || o->max_age_ms < 0 || o->max_queued_per_account < 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "the event queue: ack_wait_ms (%lld) must be at least 1000, timeout_ms "
                         "(%lld) positive, and the windows, ages and limits not negative",
                         (long long)o->ack_wait_ms, (long long)o->timeout_ms);
  return 0;
}

/* The servers of urls, one or several comma-separated (natsOptions_SetURL takes one only). */
static natsStatus set_servers(natsOptions *no, const char *urls) {
  brume_autofree char *copy = brume_xstrdup(urls);
  const char *list[16];
  int n = 0;
  for (char *save = NULL, *u = strtok_r(copy, ", ", &save); u && n < 16;
       u = strtok_r(NULL, ", ", &save))
    list[n++] = u;
  return n == 1 ? natsOptions_SetURL(no, list[0]) : natsOptions_SetServers(no, list, n);
}

static int nats_open(brume_event_queue *q, brume_err **err) {
  const brume_event_queue_opts *o = &q->o;
  natsOptions *no = NULL;
  natsStatus s = natsOptions_Create(&no);
  if (s == NATS_OK) s = set_servers(no, o->urls);
  if (s == NATS_OK) s = natsOptions_SetName(no, "brume");
  if (s == NATS_OK) s = natsOptions_SetTimeout(no, o->timeout_ms);
  /* Once connected, reconnect for ever: a NATS restart must not need a frontend restart. */
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(no, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(no, 250);
  if (s == NATS_OK && o->tls_ca) {
    s = natsOptions_SetSecure(no, true);
    if (s == NATS_OK) s = natsOptions_LoadCATrustedCertificates(no, o->tls_ca);
    if (s == NATS_OK && o->tls_cert)
      s = natsOptions_LoadCertificatesChain(no, o->tls_cert, o->tls_key);
  }
  if (s != NATS_OK) {
    natsOptions_Destroy(no);
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "the event queue: NATS options: %s",
                         brume_eq_nats_why(s));
  }
  s = natsConnection_Connect(&q->nc, no);
  natsOptions_Destroy(no);
  if (s != NATS_OK)
    return brume_err_set(err, BRUME_UNAVAILABLE,
                         "the event queue: cannot connect to NATS at %s: %s", o->urls,
                         brume_eq_nats_why(s));
  jsOptions_Init(&q->jo);
  q->jo.Wait = o->timeout_ms;
  q->jo.PublishAsync.AckHandler = put_answered;
  q->jo.PublishAsync.AckHandlerClosure = q;
  q->jo.PublishAsync.MaxPending = PUBLISH_MAX_PENDING;
  s = natsConnection_JetStream(&q->js, q->nc, &q->jo);
  if (s != NATS_OK)
    return brume_err_set(err, BRUME_UNAVAILABLE, "the event queue: NATS JetStream: %s",
                         brume_eq_nats_why(s));
  return 0;
}

brume_event_queue *brume_event_queue_open(const brume_event_queue_opts *opts, brume_err **err) {
  if (check_opts(opts, err) < 0) return NULL;
  brume_event_queue *q = brume_xcalloc(1, sizeof(*q));
  q->o = *opts;
  pthread_mutex_init(&q->fetch_mu, NULL);
  pthread_mutex_init(&q->pending_mu, NULL);
  if (nats_open(q, err) < 0 || ensure_stream(q, err) < 0 || ensure_consumer(q, err) < 0 ||
      ensure_states(q, err) < 0 || brume_eq_ensure_named_queues(q, err) < 0 ||
      brume_eq_ensure_idem_bucket(q, err) < 0) {
    brume_event_queue_close(q);
    return NULL;
  }
  brume_info("The event queue is open.",
             "urls=%s stream=%s consumer=%s replicas=%d max_queued_per_account=%lld "
             "ack_wait_ms=%lld",
             opts->urls, STREAM, CONSUMER, opts->replicas, (long long)opts->max_queued_per_account,
             (long long)opts->ack_wait_ms);
  return q;
}

void brume_event_queue_close(brume_event_queue *q) {
  if (q == NULL) return;
  if (q->js) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = q->o.timeout_ms;
    js_PublishAsyncComplete(q->js, &po);
  }
  /* What no answer came for by now gets one (taken under the lock: a late answer from the
   * client's thread finds it gone). */
  for (size_t b = 0; b < PENDING_BUCKETS; b++) {
    pthread_mutex_lock(&q->pending_mu);
    pending *left = q->pending[b];
    q->pending[b] = NULL;
    pthread_mutex_unlock(&q->pending_mu);
    pending *p;
    while ((p = left) != NULL) {
      left = p->next;
      brume_err *err = NULL;
      brume_err_set(&err, BRUME_UNAVAILABLE,
                    "ServiceUnavailableException: the event queue closed before NATS JetStream "
                    "acknowledged event %s; sending it again with the same id is safe",
                    p->id);
      p->done(p->arg, false, err);
      brume_err_free(err);
      free(p);
    }
  }
  natsSubscription_Destroy(q->sub);
  kvStore_Destroy(q->states);
  kvStore_Destroy(q->idem);
  jsCtx_Destroy(q->js);
  natsConnection_Destroy(q->nc);
  pthread_mutex_destroy(&q->fetch_mu);
  pthread_mutex_destroy(&q->pending_mu);
  free(q);
}

/* Why JetStream did not take event_id: status s, JetStream error jerr, words why. */
static int put_failed(const brume_event_queue *q, const char *account, const char *event_id,
                      natsStatus s, jsErrCode jerr, const char *why, brume_err **err) {
  /* JetStream refuses with "maximum messages per subject exceeded" when the account's subject is
   * full (discard_new_per_subject). */
  if (jerr == JS_STREAM_STORE_FAILED && why && strstr(why, "maximum messages per subject") != NULL)
    return brume_err_set(err, BRUME_RESOURCE_EXHAUSTED,
                         "TooManyQueuedEventsException: account %s has %lld events queued, its "
                         "limit; retry later",
                         account, (long long)q->o.max_queued_per_account);
  return brume_err_set(err, BRUME_UNAVAILABLE,
                       "ServiceUnavailableException: the event queue (NATS JetStream) did not "
                       "acknowledge event %s: %s (JetStream error %d); sending it again with the "
                       "same id is safe",
                       event_id, why && *why ? why : natsStatus_GetText(s), (int)jerr);
}

/* What put and put_async check before sending: the names, the size, the connection. */
/* 0 when connected to NATS; else (NATS down, or reconnecting) UNAVAILABLE at once, ending with
 * what: a request now would wait in the client's reconnect buffer for its whole timeout. */
static int require_connected(brume_event_queue *q, const char *what, brume_err **err) {
  natsConnStatus cs = natsConnection_Status(q->nc);
  if (cs == NATS_CONN_STATUS_CONNECTED) return 0;
  return brume_err_set(err, BRUME_UNAVAILABLE,
                       "ServiceUnavailableException: the event queue (NATS at %s) is not "
                       "connected (%s)%s",
                       q->o.urls, conn_status_name(cs), what);
}

static int can_put(brume_event_queue *q, const char *account, const char *event_id, size_t len,
                   brume_err **err) {
  if (!brume_eq_token_ok(account, BRUME_EVENT_ACCOUNT_MAX) ||
      !brume_eq_token_ok(event_id, BRUME_EVENT_ID_MAX))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "the event queue: account and event id must be 1-64 letters, digits, "
                         "'-' or '_'");
  if (len > (size_t)INT32_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "the event queue: an event of %zu bytes",
                         len);
  /* A publish now would also have waited for the whole timeout, and might still reach the
   * stream after the caller was told it did not. */
  char what[BRUME_EVENT_ID_MAX + 32];
  snprintf(what, sizeof(what), "; event %s was not queued", event_id);
  return require_connected(q, what, err);
}

#define SUBJECT_MAX (sizeof(SUBJECT_PREFIX) + BRUME_EVENT_ACCOUNT_MAX)

/* The subject of account's events: brume.events.<account>. */
static void subject_of(const char *account, char out[SUBJECT_MAX]) {
  snprintf(out, SUBJECT_MAX, SUBJECT_PREFIX "%s", account);
}

int brume_event_queue_put(brume_event_queue *q, const char *account, const char *event_id,
                          const void *data, size_t len, bool *duplicate, brume_err **err) {
  if (duplicate) *duplicate = false;
  if (can_put(q, account, event_id, len, err) < 0) return -1;
  char subject[SUBJECT_MAX];
  subject_of(account, subject);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MsgId = event_id;
  po.MaxWait = q->o.timeout_ms;
  po.ExpectStream = STREAM;
  jsPubAck *pa = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_Publish(&pa, q->js, subject, data, (int)len, &po, &jerr);
  if (s == NATS_OK) {
    if (duplicate) *duplicate = pa->Duplicate;
    jsPubAck_Destroy(pa);
    return 0;
  }
  return put_failed(q, account, event_id, s, jerr, brume_eq_nats_why(s), err);
}

static size_t bucket_of(const natsMsg *m) {
  return ((uintptr_t)m >> 4) % PENDING_BUCKETS;
}

static void pending_add(brume_event_queue *q, pending *p) {
  size_t b = bucket_of(p->msg);
  pthread_mutex_lock(&q->pending_mu);
  p->next = q->pending[b];
  q->pending[b] = p;
  pthread_mutex_unlock(&q->pending_mu);
}

static pending *pending_take(brume_event_queue *q, const natsMsg *m) {
  size_t b = bucket_of(m);
  pthread_mutex_lock(&q->pending_mu);
  pending **at = &q->pending[b];
  while (*at && (*at)->msg != m) at = &(*at)->next;
  pending *p = *at;
  if (p) *at = p->next;
  pthread_mutex_unlock(&q->pending_mu);
  return p;
}

/* JetStream's answer to an asynchronous put (jsOptions.PublishAsync.AckHandler). */
static void put_answered(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
  (void)js;
  brume_event_queue *q = closure;
  pending *p = pending_take(q, msg);
  if (p != NULL) {
    brume_err *err = NULL;
    if (pa == NULL)
      put_failed(q, p->account, p->id, pae ? pae->Err : NATS_ERR, pae ? pae->ErrCode : 0,
                 pae ? pae->ErrText : NULL, &err);
    p->done(p->arg, pa ? pa->Duplicate : false, err);
    brume_err_free(err);
    free(p);
  }
  natsMsg_Destroy(msg);
}

int brume_event_queue_put_async(brume_event_queue *q, const char *account, const char *event_id,
                                const void *data, size_t len, brume_event_put_done_fn done,
                                void *arg, brume_err **err) {
  if (can_put(q, account, event_id, len, err) < 0) return -1;
  char subject[SUBJECT_MAX];
  subject_of(account, subject);
  natsMsg *m = NULL;
  natsStatus s = natsMsg_Create(&m, subject, NULL, data, (int)len);
  if (s == NATS_OK) s = natsMsgHeader_Set(m, "Nats-Msg-Id", event_id);
  if (s == NATS_OK) s = natsMsgHeader_Set(m, "Nats-Expected-Stream", STREAM);
  if (s != NATS_OK) {
    natsMsg_Destroy(m);
    return put_failed(q, account, event_id, s, 0, brume_eq_nats_why(s), err);
  }
  pending *p = brume_xcalloc(1, sizeof(*p));
  p->msg = m;
  p->done = done;
  p->arg = arg;
  snprintf(p->account, sizeof(p->account), "%s", account);
  snprintf(p->id, sizeof(p->id), "%s", event_id);
  /* Recorded first: the answer may come before js_PublishMsgAsync returns. */
  pending_add(q, p);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = q->o.timeout_ms;
  natsMsg *sent = m;
  s = js_PublishMsgAsync(q->js, &sent, &po);
  if (s == NATS_OK) return 0;
  /* Not sent: the library gave the message back (sent is still set), and no answer will come. */
  pending *mine = pending_take(q, m);
  free(mine);
  natsMsg_Destroy(sent);
  return put_failed(q, account, event_id, s, 0, brume_eq_nats_why(s), err);
}

int brume_event_queue_stats(brume_event_queue *q, uint64_t *depth, int64_t *oldest_unix_ms,
                            brume_err **err) {
  if (require_connected(q, "", err) < 0) return -1;
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetStreamInfo(&si, q->js, STREAM, &q->jo, &jerr);
  if (s != NATS_OK)
    return brume_err_set(err, BRUME_UNAVAILABLE, "the event queue: stream %s: %s", STREAM,
                         brume_eq_nats_why(s));
  *depth = si->State.Msgs;
  *oldest_unix_ms = si->State.Msgs ? si->State.FirstTime / NS_PER_MS : 0;
  jsStreamInfo_Destroy(si);
  return 0;
}

int brume_event_queue_depth(brume_event_queue *q, uint64_t *depth, brume_err **err) {
  int64_t oldest;
  return brume_event_queue_stats(q, depth, &oldest, err);
}

static int subscribe(brume_event_queue *q, brume_err **err) {
  if (q->sub) return 0;
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = STREAM;
  so.Consumer = CONSUMER; /* bind to the consumer ensure_consumer() made: never make another */
  jsErrCode jerr = 0;
  natsStatus s = js_PullSubscribe(&q->sub, q->js, SUBJECT_PREFIX ">", CONSUMER, &q->jo, &so, &jerr);
  if (s != NATS_OK)
    return brume_err_set(err, BRUME_UNAVAILABLE,
                         "the event queue: cannot pull from consumer %s: %s (JetStream error %d)",
                         CONSUMER, brume_eq_nats_why(s), (int)jerr);
  return 0;
}

/* Fills e from its message; false if the message is no event of ours (no id, another subject). */
static bool event_from(brume_event *e, natsMsg *m) {
  const char *subject = natsMsg_GetSubject(m);
  const char *id = NULL;
  if (subject == NULL || strncmp(subject, SUBJECT_PREFIX, strlen(SUBJECT_PREFIX)) != 0 ||
      natsMsgHeader_Get(m, "Nats-Msg-Id", &id) != NATS_OK || id == NULL)
    return false;
  const char *account = subject + strlen(SUBJECT_PREFIX);
  if (!brume_eq_token_ok(account, sizeof(e->account)) || !brume_eq_token_ok(id, sizeof(e->id)))
    return false;
  snprintf(e->account, sizeof(e->account), "%s", account);
  snprintf(e->id, sizeof(e->id), "%s", id);
  e->data = natsMsg_GetData(m);
  e->len = (size_t)natsMsg_GetDataLength(m);
  jsMsgMetaData *meta = NULL;
  if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
    e->delivery = meta->NumDelivered;
    e->queued_ms = meta->Timestamp / NS_PER_MS;
    jsMsgMetaData_Destroy(meta);
  }
  e->msg = m;
  return true;
}

int brume_event_queue_fetch(brume_event_queue *q, brume_event **out, int max, int64_t wait_ms,
                            brume_err **err) {
  if (max <= 0) return 0;
  pthread_mutex_lock(&q->fetch_mu);
  if (subscribe(q, err) < 0) {
    pthread_mutex_unlock(&q->fetch_mu);
    return -1;
  }
  natsMsgList list = {0};
  jsErrCode jerr = 0;
  natsStatus s = natsSubscription_Fetch(&list, q->sub, max, wait_ms, &jerr);
  pthread_mutex_unlock(&q->fetch_mu);
  if (s == NATS_TIMEOUT) return 0; /* nothing queued within wait_ms */
  if (s != NATS_OK)
    return brume_err_set(err, BRUME_UNAVAILABLE,
                         "the event queue: fetching from consumer %s: %s (JetStream error %d)",
                         CONSUMER, brume_eq_nats_why(s), (int)jerr);
  int n = 0;
  for (int i = 0; i < list.Count; i++) {
    natsMsg *m = list.Msgs[i];
    brume_event *e = brume_xcalloc(1, sizeof(*e));
    if (!event_from(e, m)) {
      /* Someone else's message on our subjects: it can never run, and must not come back. */
      brume_warn("A message on the event queue is no event; dropped.", "subject=%s bytes=%d",
                 natsMsg_GetSubject(m) ? natsMsg_GetSubject(m) : "-", natsMsg_GetDataLength(m));
      natsMsg_Term(m, &q->jo);
      free(e);
      continue;
    }
    list.Msgs[i] = NULL; /* the event owns it now */
    out[n++] = e;
  }
  natsMsgList_Destroy(&list);
  return n;
}

static int settled(brume_event *e, natsStatus s, const char *what, brume_err **err) {
  if (s == NATS_OK) return 0;
  return brume_err_set(err, BRUME_UNAVAILABLE, "the event queue: %s event %s: %s", what, e->id,
                       brume_eq_nats_why(s));
}

int brume_event_done(brume_event *e, brume_err **err) {
  jsErrCode jerr = 0;
  return settled(e, natsMsg_AckSync(e->msg, NULL, &jerr), "acknowledging", err);
}

int brume_event_retry_in(brume_event *e, int64_t delay_ms, brume_err **err) {
  return settled(e, natsMsg_NakWithDelay(e->msg, delay_ms < 0 ? 0 : delay_ms, NULL), "handing back",
                 err);
}

int brume_event_working(brume_event *e, brume_err **err) {
  return settled(e, natsMsg_InProgress(e->msg, NULL), "extending", err);
}

int brume_event_drop(brume_event *e, brume_err **err) {
  return settled(e, natsMsg_Term(e->msg, NULL), "terminating", err);
}

void brume_event_free(brume_event *e) {
  if (e == NULL) return;
  natsMsg_Destroy(e->msg);
  free(e);
}

int brume_event_state_get(brume_event_queue *q, const char *event_id, void **data, size_t *len,
                          brume_err **err) {
  *data = NULL;
  *len = 0;
  if (!brume_eq_token_ok(event_id, BRUME_EVENT_ID_MAX))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "an event id is 1-64 letters, digits, '-' or '_'");
  kvEntry *e = NULL;
  natsStatus s = kvStore_Get(&e, q->states, event_id);
  if (s == NATS_NOT_FOUND)
    return brume_err_set(err, BRUME_NOT_FOUND, "ResourceNotFoundException: no event %s", event_id);
  if (s != NATS_OK)
    return brume_err_set(err, BRUME_UNAVAILABLE, "the event queue: reading the state of %s: %s",
                         event_id, brume_eq_nats_why(s));
  int n = kvEntry_ValueLen(e);
  *data = brume_xmalloc(n > 0 ? (size_t)n : 1);
  if (n > 0) memcpy(*data, kvEntry_Value(e), (size_t)n);
  *len = n > 0 ? (size_t)n : 0;
  kvEntry_Destroy(e);
  return 0;
}

int brume_event_state_put(brume_event_queue *q, const char *event_id, const void *data, size_t len,
                          brume_err **err) {
  if (!brume_eq_token_ok(event_id, BRUME_EVENT_ID_MAX))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "an event id is 1-64 letters, digits, '-' or '_'");
  if (len > (size_t)INT32_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "the event queue: a state of %zu bytes", len);
  natsStatus s = kvStore_Put(NULL, q->states, event_id, data, (int)len);
  if (s != NATS_OK)
    return brume_err_set(err, BRUME_UNAVAILABLE, "the event queue: writing the state of %s: %s",
                         event_id, brume_eq_nats_why(s));
  return 0;
}
