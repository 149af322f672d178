/* Synchronous invocations with an idempotency key: see idempotency.h. */
#include "idempotency.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "digest_dir.h"
#include "idem_store.h"
#include "log.h"
#include "mem.h"
#include "reply.h"
#include "workq.h"

/* How often a request that found its key claimed looks for the first one's answer. */
#define POLL_MS 50
/* A call without a deadline waits and runs at most this long (a function's longest timeout and
 * a margin for its cold start). */
#define NO_DEADLINE_MS (17 * 60 * 1000)
/* The marks before an entry's content: claimed (the claimer's request id follows) and done (the
 * packed InvokeResponse follows). */
#define MARK_RUNNING 'R'
#define MARK_DONE 'D'

struct brume_idempotency {
  brume_idempotency_opts o;
  brume_workq *wq;
  atomic_bool stopping;
  brume_counter *outcomes; /* {outcome} */
};

typedef struct idem_call {
  brume_idempotency *id;
  brume_rpc_call *call;
  const Brume__InvokeRequest *req;
  char account[65], name[65], qualifier[129], request_id[80];
  char skey[48];
  int64_t deadline_mono_ms;
  /* The outcome, from ran(): the answer packed, or why it did not run. */
  uint8_t *packed;
  size_t packed_len;
  brume_err *err;
} idem_call;

int brume_idempotency_check_key(const char *key, brume_err **err) {
  size_t n = strlen(key);
  bool ok = n >= 1 && n <= BRUME_IDEMPOTENCY_KEY_MAX;
  for (size_t i = 0; ok && i < n; i++) ok = key[i] >= 0x21 && key[i] <= 0x7e;
  if (!ok)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "InvalidParameterValueException: idempotency_key must be 1-%d printable "
                         "ASCII characters without spaces",
                         BRUME_IDEMPOTENCY_KEY_MAX);
  return 0;
}

char *brume_idempotency_event_name(const char *name, const char *key) {
  return brume_xasprintf("key:%s:%s", name, key);
}

brume_idempotency *brume_idempotency_new(const brume_idempotency_opts *opts) {
  brume_idempotency *id = brume_xcalloc(1, sizeof(*id));
  id->o = *opts;
  atomic_init(&id->stopping, false);
  id->wq = brume_workq_new(opts->threads > 0 ? opts->threads : 1);
  id->outcomes = brume_metrics_counter(
      opts->metrics, "brume_frontend_idempotent_invocations_total",
      "RequestResponse invocations with an idempotency key, by outcome: ran (the first with its "
      "key), replayed (the first one's answer returned), released (the first could not run: the "
      "key is free again), failed (the store or the wait failed).",
      "outcome", NULL);
  return id;
}

void brume_idempotency_free(brume_idempotency *id) {
  if (id == NULL) return;
  atomic_store(&id->stopping, true); /* the waiting requests give up */
  brume_workq_free(id->wq);          /* runs what is queued: the answers of the last runs */
  free(id);
}

static void call_free(idem_call *ic) {
  free(ic->packed);
  brume_err_free(ic->err);
  free(ic);
}

static void fail(idem_call *ic, const brume_err *err) {
  brume_counter_inc(ic->id->outcomes, 1, "failed");
  brume_frontend_fail(ic->call, err);
  call_free(ic);
}

/* Answers with a stored answer (packed). */
static void reply_packed(idem_call *ic, const uint8_t *data, size_t len, const char *outcome) {
  Brume__InvokeResponse *resp = brume__invoke_response__unpack(NULL, len, data);
  if (resp == NULL) {
    brume_err e = {.code = BRUME_INTERNAL,
                   .msg =
                       "ServiceException: the stored answer of this idempotency key is "
                       "unreadable"};
    fail(ic, &e);
    return;
  }
  brume_counter_inc(ic->id->outcomes, 1, outcome);
  brume_rpc_call_reply(ic->call, &resp->base);
  brume__invoke_response__free_unpacked(resp, NULL);
  call_free(ic);
}

/* The run's outcome, stored (an answer) or the key released (no run), then the call answered:
 * a job on the work queue. */
static void store_job(void *arg) {
  idem_call *ic = arg;
  brume_event_queue *q = brume_event_accept_queue(ic->id->o.accept);
  brume_autoptr(brume_err) err = NULL;
  if (ic->packed) {
    brume_autofree uint8_t *entry = brume_xmalloc(ic->packed_len + 1);
    entry[0] = MARK_DONE;
    memcpy(entry + 1, ic->packed, ic->packed_len);
    /* Not stored: the waiting requests find the claim until it expires, and time out. */
    if (q == NULL || brume_idem_put(q, ic->skey, entry, ic->packed_len + 1, &err) < 0)
      brume_warn("An idempotency key's answer could not be stored.", "request_id=%s err=%s",
                 ic->request_id, err ? err->msg : "no event queue");
    reply_packed(ic, ic->packed, ic->packed_len, "ran");
    return;
  }
  if (q == NULL || brume_idem_release(q, ic->skey, &err) < 0)
    brume_warn("An idempotency key could not be released; it is free again when it expires.",
               "request_id=%s err=%s", ic->request_id, err ? err->msg : "no event queue");
  brume_counter_inc(ic->id->outcomes, 1, "released");
  brume_frontend_fail(ic->call, ic->err);
  call_free(ic);
}

/* The invoker's answer (brume_invoke_done_fn), on a client completion thread: kept, and the
 * store's part handed to the work queue. */
static void ran(void *arg, const Brume__InvokeResponse *resp, const brume_err *err) {
  idem_call *ic = arg;
  if (resp) {
    ic->packed_len = brume__invoke_response__get_packed_size(resp);
    ic->packed = brume_xmalloc(ic->packed_len ? ic->packed_len : 1);
    brume__invoke_response__pack(resp, ic->packed);
  } else {
    brume_err_set(&ic->err, err->code, "%s", err->msg);
  }
  if (brume_workq_push(ic->id->wq, store_job, ic, NULL) < 0) store_job(ic); /* stopping */
}

/* Claims the key and runs, or waits for the answer of the request that claimed it: a job. */
static void claim_job(void *arg) {
  idem_call *ic = arg;
  brume_idempotency *id = ic->id;
  brume_autoptr(brume_err) err = NULL;
  brume_event_queue *q = brume_event_accept_queue(id->o.accept);
  if (q == NULL) {
    brume_err_set(&err, BRUME_UNAVAILABLE,
                  "ServiceUnavailableException: idempotency keys are kept in NATS, which this "
                  "frontend cannot reach");
    fail(ic, err);
    return;
  }
  char mark[82];
  snprintf(mark, sizeof(mark), "%c%s", MARK_RUNNING, ic->request_id);
  for (;;) {
    bool claimed = false;
    if (brume_idem_claim(q, ic->skey, mark, strlen(mark), &claimed, &err) < 0) {
      fail(ic, err);
      return;
    }
    if (claimed) {
      brume_invoker_run(id->o.invoker, ic->req, ic->account, ic->name, ic->qualifier,
                        ic->request_id, ic->deadline_mono_ms, ran, ic);
      return;
    }
    brume_autofree uint8_t *data = NULL;
    size_t len = 0;
    if (brume_idem_get(q, ic->skey, (void **)&data, &len, &err) < 0) {
      if (err->code != BRUME_NOT_FOUND) {
        fail(ic, err);
        return;
      }
      brume_err_clear(&err); /* released (or expired) since: claim it again */
      continue;
    }
    if (len > 0 && data[0] == MARK_DONE) {
      reply_packed(ic, data + 1, len - 1, "replayed");
      return;
    }
    /* Claimed and still running. */
    if (atomic_load(&id->stopping) || brume_mono_ms() + POLL_MS >= ic->deadline_mono_ms) {
      brume_err_set(&err, atomic_load(&id->stopping) ? BRUME_UNAVAILABLE : BRUME_DEADLINE_EXCEEDED,
                    "the first request with this idempotency key (request id %.64s) is still "
                    "running; ask again for its answer",
                    len > 1 ? (const char *)data + 1 : "?");
      fail(ic, err);
      return;
    }
    usleep(POLL_MS * 1000);
  }
}

void brume_idempotency_start(brume_idempotency *id, brume_rpc_call *call,
                             const Brume__InvokeRequest *req, const char *account_id,
                             const char *name, const char *qualifier, const char *request_id) {
  idem_call *ic = brume_xcalloc(1, sizeof(*ic));
  ic->id = id;
  ic->call = call;
  ic->req = req;
  snprintf(ic->account, sizeof(ic->account), "%s", account_id);
  snprintf(ic->name, sizeof(ic->name), "%s", name);
  snprintf(ic->qualifier, sizeof(ic->qualifier), "%s", qualifier ? qualifier : "");
  snprintf(ic->request_id, sizeof(ic->request_id), "%s", request_id);
  /* The store's key: the account, the function and the key, hashed (any characters, one
   * length). */
  brume_autofree char *both = brume_xasprintf("%s\n%s\n%s", account_id, name, req->idempotency_key);
  char hex[65];
  brume_digest_dir_sha256(both, strlen(both), hex);
  snprintf(ic->skey, sizeof(ic->skey), "i-%.40s", hex);
  int64_t left = brume_rpc_call_deadline_left_ms(call);
  ic->deadline_mono_ms = brume_mono_ms() + (left > 0 ? left : NO_DEADLINE_MS);
  brume_autoptr(brume_err) err = NULL;
  if (brume_workq_push(id->wq, claim_job, ic, &err) < 0) fail(ic, err);
}
