/* Brume's named queues: see named_queue.h. */
#include "named_queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_queue_impl.h"
#include "mem.h"

#define STREAM "BRUME_QUEUES"
#define SUBJECT_PREFIX "brume.queue."
#define SUBJECT_MAX \
  (sizeof(SUBJECT_PREFIX) + BRUME_EVENT_ACCOUNT_MAX + 1 + BRUME_QUEUE_NAME_LEN_MAX)

int brume_eq_ensure_named_queues(brume_event_queue *q, brume_err **err) {
  jsStreamConfig sc;
  jsStreamConfig_Init(&sc);
  const char *subjects[] = {SUBJECT_PREFIX ">"};
  sc.Name = STREAM;
  sc.Description = "Brume's named queues: the records of ended asynchronous invocations";
  sc.Subjects = subjects;
  sc.SubjectsLen = 1;
  sc.Retention = js_LimitsPolicy; /* a record stays until drained or too old */
  sc.Storage = js_FileStorage;
  sc.Replicas = q->o.replicas;
  sc.MaxAge = BRUME_QUEUE_RETENTION_MS * NS_PER_MS;
  sc.Duplicates = q->o.duplicate_window_ms * NS_PER_MS;
  sc.AllowDirect = true; /* read by direct gets, without a consumer */
  return brume_eq_put_stream(q, &sc, err);
}

/* brume.queue.<account>.<name>, after checking both. */
static int subject_of(const char *account, const char *name, char out[SUBJECT_MAX],
                      brume_err **err) {
  if (!brume_eq_token_ok(account, BRUME_EVENT_ACCOUNT_MAX) ||
      !brume_eq_token_ok(name, BRUME_QUEUE_NAME_LEN_MAX + 1))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "InvalidParameterValueException: a queue name is 1-64 letters, digits, "
                         "'-' or '_'");
  snprintf(out, SUBJECT_MAX, SUBJECT_PREFIX "%s.%s", account, name);
  return 0;
}

int brume_named_queue_put(brume_event_queue *q, const char *account, const char *name,
                          const char *msg_id, const void *data, size_t len, brume_err **err) {
  char subject[SUBJECT_MAX];
  if (subject_of(account, name, subject, err) < 0) return -1;
  if (len > (size_t)INT32_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "a queue message of %zu bytes", len);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MsgId = msg_id;
  po.MaxWait = q->o.timeout_ms;
  po.ExpectStream = STREAM;
  jsPubAck *pa = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_Publish(&pa, q->js, subject, data, (int)len, &po, &jerr);
  jsPubAck_Destroy(pa);
  if (s == NATS_OK) return 0;
  return brume_err_set(err, BRUME_UNAVAILABLE,
                       "ServiceUnavailableException: queue %s did not take a record: %s "
                       "(JetStream error %d)",
                       name, brume_eq_nats_why(s), (int)jerr);
}

int brume_named_queue_list(brume_event_queue *q, const char *account, brume_named_queue_info **out,
                           size_t *n, brume_err **err) {
  *out = NULL;
  *n = 0;
  if (!brume_eq_token_ok(account, BRUME_EVENT_ACCOUNT_MAX))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "a malformed account id");
  brume_autofree char *filter = brume_xasprintf(SUBJECT_PREFIX "%s.*", account);
  jsOptions o = q->jo;
  o.Stream.Info.SubjectsFilter = filter;
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetStreamInfo(&si, q->js, STREAM, &o, &jerr);
  if (s != NATS_OK)
    return brume_err_set(err, BRUME_UNAVAILABLE, "the queues (stream %s): %s", STREAM,
                         brume_eq_nats_why(s));
  const jsStreamStateSubjects *subs = si->State.Subjects;
  size_t count = subs ? (size_t)subs->Count : 0;
  brume_named_queue_info *list = brume_xcalloc(count + 1, sizeof(*list));
  size_t prefix = strlen(filter) - 1; /* up to the '*' */
  for (size_t i = 0; i < count; i++) {
    const char *subject = subs->List[i].Subject;
    if (strlen(subject) <= prefix) continue;
    snprintf(list[*n].name, sizeof(list[*n].name), "%s", subject + prefix);
    list[*n].messages = subs->List[i].Msgs;
    (*n)++;
  }
  jsStreamInfo_Destroy(si);
  /* By name, whatever order the server answered in. */
  for (size_t i = 1; i < *n; i++)
    for (size_t j = i; j > 0 && strcmp(list[j - 1].name, list[j].name) > 0; j--) {
      brume_named_queue_info t = list[j];
      list[j] = list[j - 1];
      list[j - 1] = t;
    }
  *out = list;
  return 0;
}

int brume_named_queue_read(brume_event_queue *q, const char *account, const char *name,
                           uint64_t from_seq, size_t max, brume_queue_message **out, size_t *n,
                           brume_err **err) {
  *out = NULL;
  *n = 0;
  char subject[SUBJECT_MAX];
  if (subject_of(account, name, subject, err) < 0) return -1;
  brume_queue_message *msgs = brume_xcalloc(max + 1, sizeof(*msgs));
  uint64_t seq = from_seq ? from_seq : 1;
  while (*n < max) {
    jsDirectGetMsgOptions dg;
    jsDirectGetMsgOptions_Init(&dg);
    dg.Sequence = seq;
    dg.NextBySubject = subject;
    natsMsg *m = NULL;
    natsStatus s = js_DirectGetMsg(&m, q->js, STREAM, &q->jo, &dg);
    if (s == NATS_NOT_FOUND) break; /* no more */
    if (s != NATS_OK) {
      brume_queue_messages_free(msgs, *n);
      *n = 0;
      return brume_err_set(err, BRUME_UNAVAILABLE, "reading queue %s: %s", name,
                           brume_eq_nats_why(s));
    }
    brume_queue_message *qm = &msgs[(*n)++];
    qm->seq = natsMsg_GetSequence(m);
    qm->len = (size_t)natsMsg_GetDataLength(m);
    qm->data = brume_xmalloc(qm->len + 1);
    memcpy(qm->data, natsMsg_GetData(m), qm->len);
    qm->data[qm->len] = '\0';
    natsMsg_Destroy(m);
    seq = qm->seq + 1;
  }
  *out = msgs;
  return 0;
}

void brume_queue_messages_free(brume_queue_message *m, size_t n) {
  if (m == NULL) return;
  for (size_t i = 0; i < n; i++) free(m[i].data);
  free(m);
}

int brume_named_queue_remove(brume_event_queue *q, const char *account, const char *name,
                             uint64_t up_to_seq, brume_err **err) {
  char subject[SUBJECT_MAX];
  if (subject_of(account, name, subject, err) < 0) return -1;
  jsOptions o = q->jo;
  o.Stream.Purge.Subject = subject;
  o.Stream.Purge.Sequence = up_to_seq + 1; /* up to, not including */
  jsErrCode jerr = 0;
  natsStatus s = js_PurgeStream(q->js, STREAM, &o, &jerr);
  if (s != NATS_OK)
    return brume_err_set(err, BRUME_UNAVAILABLE, "draining queue %s: %s (JetStream error %d)", name,
                         brume_eq_nats_why(s), (int)jerr);
  return 0;
}
