/* The Counting service's handlers (service.h). */
#include "service.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brume/counting.pb-c.h"
#include "log.h"
#include "mem.h"

/* Logs at warn that call (or, index >= 0, that request of its batch) failed with err; rid is the
 * call's request id (NULL: none). */
static void log_failure(brume_rpc_call *call, const char *rid, long index, const brume_err *err) {
  char q[512];
  brume_warn("Counting call failed.", "request_id=%s method=%s index=%ld code=%d err=%s",
             rid ? rid : "-", brume_rpc_call_method(call), index, (int)err->code,
             brume_log_quote(q, sizeof(q), err->msg));
}

/* Fails call with err (its code; the message led by the reason name) and logs it at warn. */
static void fail(brume_rpc_call *call, const brume_err *err) {
  log_failure(call, brume_rpc_call_metadata(call, BRUME_MD_REQUEST_ID), -1, err);
  brume_rpc_call_fail(call, err->code, "%s: %s", brume_status_reason(err->code), err->msg);
}

/* fail() with a new INVALID_ARGUMENT or UNAVAILABLE error. */
static void fail_with(brume_rpc_call *call, brume_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_with(brume_rpc_call *call, brume_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  brume_autofree char *msg = brume_xvasprintf(fmt, ap);
  va_end(ap);
  brume_autoptr(brume_err) err = NULL;
  brume_err_set(&err, code, "%s", msg);
  fail(call, err);
}

/* Once the daemon is stopping, new calls are refused so that none is left for the engine or the
 * work queue to answer after the rpc server has freed it. */
static bool refuse_if_stopping(brume_counting_service *svc, brume_rpc_call *call) {
  if (!atomic_load(&svc->stopping)) return false;
  fail_with(call, BRUME_UNAVAILABLE, "this counting daemon is shutting down");
  return true;
}

/* ---- Acquire ---- */

/* What only the message can get wrong; the engine checks the rest (names, kind, upgrade_token,
 * hold_ms), so that every caller of it gets the same answers. */
static int validate_acquire(const Brume__AcquireRequest *req, brume_err **err) {
  if (req->function == NULL)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "function is missing");
  return 0;
}

/* An Acquire handed to the engine: what its completion needs to answer. The request stays valid
 * until the call is answered. */
typedef struct acquire_ctx {
  brume_counting_service *svc;
  brume_rpc_call *call;
  const Brume__AcquireRequest *req;
} acquire_ctx;

/* Fills resp with the engine's grant or throttle and counts it in the metrics. resp->token points
 * into res: copy it when resp outlives res. */
static void acquire_answer(brume_counting_service *svc, const Brume__AcquireRequest *req,
                           const brume_acquire_result *res, Brume__AcquireResponse *resp) {
  brume__acquire_response__init(resp);
  resp->granted = res->granted;
  resp->provisioned = res->provisioned;
  if (res->granted) {
    resp->token = (char *)res->token;
    resp->token_deadline_unix_ms = res->token_deadline_unix_ms;
    bool warm = req->kind == BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT;
    brume_counter_inc(svc->grants, 1, warm ? "warm" : "new");
  } else {
    resp->throttle_reason = (Brume__ThrottleReason)res->reason;
    resp->retry_after_ms = res->retry_after_ms;
    const char *reason = brume_throttle_reason(res->reason);
    if (reason[0] == '\0') reason = "Unknown";
    brume_counter_inc(svc->throttles, 1, reason);
    const Brume__FunctionRef *fn = req->function;
    brume_debug("Acquire throttled.",
                "account=%s function=%s qualifier=%s reason=%s retry_after_ms=%" PRIu32,
                fn->account_id, fn->function_name, fn->qualifier[0] ? fn->qualifier : "$LATEST",
                reason, res->retry_after_ms);
  }
}

/* Takes back a grant whose caller has gone (brume_rpc_call_cancelled: cancelled or past its
 * deadline, so the answer would be dropped): otherwise nobody could release it before its
 * hold_ms. The call is still answered, which ends it. True if the token was held. */
static bool take_back(brume_counting_service *svc, const char *token) {
  bool was_held = false;
  return brume_engine_release(svc->engine, token, &was_held, NULL) == 0 && was_held;
}

static void log_taken_back(brume_rpc_call *call, size_t n) {
  brume_info("Grants were taken back at once: their caller had gone.", "method=%s grants=%zu",
             brume_rpc_call_method(call), n);
}

/* The engine's answer: on the handler's thread, or later on a work-queue thread. */
static void acquire_done(void *user, const brume_acquire_result *res, const brume_err *err) {
  acquire_ctx *c = user;
  if (res == NULL) {
    fail(c->call, err);
    free(c);
    return;
  }
  if (res->granted && brume_rpc_call_cancelled(c->call) && take_back(c->svc, res->token))
    log_taken_back(c->call, 1);
  Brume__AcquireResponse resp;
  acquire_answer(c->svc, c->req, res, &resp);
  brume_rpc_call_reply(c->call, &resp.base);
  free(c);
}

/* The engine's request for a validated AcquireRequest; its strings point into req. */
static brume_acquire_req engine_request(const Brume__AcquireRequest *req) {
  return (brume_acquire_req){
      .account_id = req->function->account_id,
      .function_name = req->function->function_name,
      .qualifier = req->function->qualifier,
      .caller_id = req->caller_id,
      .kind = (brume_token_kind)req->kind, /* the same numbers (tokens.h) */
      .hold_ms = req->hold_ms,
      .upgrade_token = req->upgrade_token,
  };
}

static void acquire_handler(brume_rpc_call *call, const ProtobufCMessage *request, void *user) {
  brume_counting_service *svc = user;
  const Brume__AcquireRequest *req = (const void *)request;
  if (refuse_if_stopping(svc, call)) return;
  brume_autoptr(brume_err) err = NULL;
  if (validate_acquire(req, &err) < 0) {
    fail(call, err);
    return;
  }
  brume_acquire_req ar = engine_request(req);
  acquire_ctx *c = brume_xmalloc(sizeof(*c));
  *c = (acquire_ctx){.svc = svc, .call = call, .req = req};
  brume_engine_acquire(svc->engine, &ar, acquire_done, c);
}

/* ---- Release ---- */

/* One Release: 0 with *was_held, or -1 with err. */
static int release_one(brume_counting_service *svc, const Brume__ReleaseRequest *req,
                       bool *was_held, brume_err **err) {
  if (req->token[0] == '\0') return brume_err_set(err, BRUME_INVALID_ARGUMENT, "token is missing");
  return brume_engine_release(svc->engine, req->token, was_held, err);
}

static void release_handler(brume_rpc_call *call, const ProtobufCMessage *request, void *user) {
  brume_counting_service *svc = user;
  const Brume__ReleaseRequest *req = (const void *)request;
  if (refuse_if_stopping(svc, call)) return;
  brume_autoptr(brume_err) err = NULL;
  bool was_held = false;
  if (release_one(svc, req, &was_held, &err) < 0) {
    fail(call, err);
    return;
  }
  Brume__ReleaseResponse resp = BRUME__RELEASE_RESPONSE__INIT;
  resp.was_held = was_held;
  brume_rpc_call_reply(call, &resp.base);
}

/* ---- GetState ---- */

typedef struct state_job {
  brume_counting_service *svc;
  brume_rpc_call *call;
  const Brume__GetStateRequest *req;
} state_job;

static uint32_t clamp_u32(uint64_t v) {
  return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static void fill_bucket(Brume__ScalingBucketState *out, const brume_bucket_state *s) {
  brume__scaling_bucket_state__init(out);
  out->level = s->level;
  out->capacity = s->capacity;
  out->refill_tokens = s->refill_tokens;
  out->refill_interval_ms = s->refill_interval_ms;
}

/* On a work-queue thread: brume_engine_state reads etcd. */
static void state_job_run(void *arg) {
  brume_autofree state_job *j = arg;
  const Brume__GetStateRequest *req = j->req;
  if (brume_rpc_call_cancelled(j->call)) {
    /* The caller is gone: spare etcd the reads. */
    brume_rpc_call_fail(j->call, BRUME_CANCELLED, "ServiceException: the call was cancelled");
    return;
  }
  bool want_fn = req->function_name[0] != '\0';
  brume_engine_account_state as = {0};
  brume_engine_function_state fs = {0};
  brume_autoptr(brume_err) err = NULL;
  if (brume_engine_state(j->svc->engine, req->account_id, want_fn ? req->function_name : NULL, &as,
                         want_fn ? &fs : NULL, &err) < 0) {
    fail(j->call, err);
    return;
  }
  Brume__ScalingBucketState acct_bucket, fn_bucket;
  Brume__AccountConcurrencyState acct = BRUME__ACCOUNT_CONCURRENCY_STATE__INIT;
  acct.account_id = req->account_id;
  acct.concurrency_limit = as.concurrency_limit;
  acct.unreserved_limit = as.unreserved_limit;
  acct.reserved_total = as.reserved_total;
  acct.provisioned_total = as.provisioned_total;
  acct.in_use = as.in_use;
  acct.held = as.held;
  acct.cluster_held = clamp_u32(as.cluster_held);
  if (as.has_scaling) {
    fill_bucket(&acct_bucket, &as.scaling);
    acct.scaling = &acct_bucket;
  }
  Brume__FunctionConcurrencyState fn = BRUME__FUNCTION_CONCURRENCY_STATE__INIT;
  Brume__GetStateResponse resp = BRUME__GET_STATE_RESPONSE__INIT;
  resp.account = &acct;
  if (want_fn) {
    fn.function_name = req->function_name;
    fn.reserved = fs.reserved;
    fn.reserved_concurrency = fs.reserved_concurrency;
    fn.provisioned = fs.provisioned;
    fn.in_use = fs.in_use;
    fn.held = fs.held;
    fn.cluster_held = clamp_u32(fs.cluster_held);
    if (fs.has_scaling) {
      fill_bucket(&fn_bucket, &fs.scaling);
      fn.scaling = &fn_bucket;
    }
    resp.function = &fn;
  }
  brume_rpc_call_reply(j->call, &resp.base);
}

static void get_state_handler(brume_rpc_call *call, const ProtobufCMessage *request, void *user) {
  brume_counting_service *svc = user;
  const Brume__GetStateRequest *req = (const void *)request;
  if (refuse_if_stopping(svc, call)) return;
  brume_autoptr(brume_err) err = NULL;
  /* The engine checks the names (INVALID_ARGUMENT) where it reads them. */
  state_job *j = brume_xmalloc(sizeof(*j));
  *j = (state_job){.svc = svc, .call = call, .req = req};
  if (brume_workq_push(svc->wq, state_job_run, j, &err) < 0) {
    free(j);
    fail(call, err);
  }
}

/* ---- AcquireBatch and ReleaseBatch ---- */

/* The parts of a batch's answer, one entry per request: the messages and the pointer arrays
 * protobuf-c's repeated fields want. */
typedef struct batch_answer {
  size_t n;
  /* Read once by the handler: brume_rpc_call_metadata is not for several threads at once, and
   * a batch's requests may fail on several. */
  const char *request_id;
  Brume__BatchStatus *statuses;
  Brume__BatchStatus **status_ptrs;
  char **messages; /* heap-allocated error messages, NULL where OK */
} batch_answer;

static void batch_answer_init(batch_answer *a, brume_rpc_call *call, size_t n) {
  a->n = n;
  a->request_id = brume_rpc_call_metadata(call, BRUME_MD_REQUEST_ID);
  a->statuses = brume_xcalloc(n, sizeof(*a->statuses));
  a->status_ptrs = brume_xcalloc(n, sizeof(*a->status_ptrs));
  a->messages = brume_xcalloc(n, sizeof(*a->messages));
  for (size_t i = 0; i < n; i++) {
    brume__batch_status__init(&a->statuses[i]);
    a->status_ptrs[i] = &a->statuses[i];
  }
}

/* Entry i failed with err: its status carries what a call of its own would have failed with.
 * ABORTED (memory_only: sent again by the caller to wait) is flow control, not a failure: it is
 * not logged. */
static void batch_answer_fail(batch_answer *a, brume_rpc_call *call, size_t i,
                              const brume_err *err) {
  if (err->code != BRUME_ABORTED) log_failure(call, a->request_id, (long)i, err);
  a->messages[i] = brume_xasprintf("%s: %s", brume_status_reason(err->code), err->msg);
  a->statuses[i].code = (int32_t)err->code;
  a->statuses[i].message = a->messages[i];
}

static void batch_answer_free(batch_answer *a) {
  for (size_t i = 0; i < a->n; i++) free(a->messages[i]);
  free(a->messages);
  free(a->status_ptrs);
  free(a->statuses);
}

/* Refuses a batch that is too large as a whole: the limit bounds the work of one call. */
static bool refuse_if_too_large(brume_rpc_call *call, size_t n) {
  if (n <= BRUME_COUNTING_BATCH_MAX) return false;
  fail_with(call, BRUME_INVALID_ARGUMENT, "a batch of %zu requests is over the %d allowed", n,
            BRUME_COUNTING_BATCH_MAX);
  return true;
}

/* An AcquireBatch under way: answered when the last of its requests is (the engine answers
 * each on the handler's thread or later on a work-queue thread, in any order). */
typedef struct acquire_batch acquire_batch;

/* One request of it: the engine's callback argument, and its answer. */
typedef struct batch_item {
  acquire_batch *batch;
  size_t index;
  Brume__AcquireResponse response;
  char token[BRUME_TOKEN_STRING_MAX]; /* response.token, copied: the engine's is transient */
} batch_item;

struct acquire_batch {
  brume_counting_service *svc;
  brume_rpc_call *call;
  const Brume__AcquireBatchRequest *req;
  atomic_size_t pending; /* requests not answered yet, plus one while the handler runs */
  batch_answer answer;
  batch_item *items;
  Brume__AcquireResponse **response_ptrs; /* to items[i].response, for protobuf-c */
};

static void acquire_batch_unref(acquire_batch *b) {
  if (atomic_fetch_sub(&b->pending, 1) != 1) return;
  if (brume_rpc_call_cancelled(b->call)) {
    /* Those decided from memory at once as well as those that waited. */
    size_t taken = 0;
    for (size_t i = 0; i < b->answer.n; i++)
      taken += b->items[i].response.granted && take_back(b->svc, b->items[i].token);
    if (taken) log_taken_back(b->call, taken);
  }
  Brume__AcquireBatchResponse resp = BRUME__ACQUIRE_BATCH_RESPONSE__INIT;
  resp.n_responses = resp.n_statuses = b->answer.n;
  resp.responses = b->response_ptrs;
  resp.statuses = b->answer.status_ptrs;
  brume_rpc_call_reply(b->call, &resp.base);
  batch_answer_free(&b->answer);
  free(b->response_ptrs);
  free(b->items);
  free(b);
}

static void acquire_batch_done(void *user, const brume_acquire_result *res, const brume_err *err) {
  batch_item *it = user;
  acquire_batch *b = it->batch;
  if (res == NULL) {
    batch_answer_fail(&b->answer, b->call, it->index, err);
  } else {
    acquire_answer(b->svc, b->req->requests[it->index], res, &it->response);
    if (res->granted) {
      memcpy(it->token, res->token, sizeof(it->token));
      it->response.token = it->token;
    }
  }
  acquire_batch_unref(b);
}

static void acquire_batch_handler(brume_rpc_call *call, const ProtobufCMessage *request,
                                  void *user) {
  brume_counting_service *svc = user;
  const Brume__AcquireBatchRequest *req = (const void *)request;
  if (refuse_if_stopping(svc, call) || refuse_if_too_large(call, req->n_requests)) return;
  size_t n = req->n_requests;
  acquire_batch *b = brume_xcalloc(1, sizeof(*b));
  b->svc = svc;
  b->call = call;
  b->req = req;
  atomic_init(&b->pending, n + 1);
  batch_answer_init(&b->answer, call, n);
  b->items = brume_xcalloc(n, sizeof(*b->items));
  b->response_ptrs = brume_xcalloc(n, sizeof(*b->response_ptrs));
  /* Each answer fills only its own item; the reply waits for the handler's reference too. */
  for (size_t i = 0; i < n; i++) {
    b->items[i].batch = b;
    b->items[i].index = i;
    brume__acquire_response__init(&b->items[i].response);
    b->response_ptrs[i] = &b->items[i].response;
    brume_autoptr(brume_err) err = NULL;
    if (validate_acquire(req->requests[i], &err) < 0) {
      acquire_batch_done(&b->items[i], NULL, err);
      continue;
    }
    brume_acquire_req ar = engine_request(req->requests[i]);
    ar.memory_only = req->memory_only;
    brume_engine_acquire(svc->engine, &ar, acquire_batch_done, &b->items[i]);
  }
  acquire_batch_unref(b);
}

static void release_batch_handler(brume_rpc_call *call, const ProtobufCMessage *request,
                                  void *user) {
  brume_counting_service *svc = user;
  const Brume__ReleaseBatchRequest *req = (const void *)request;
  if (refuse_if_stopping(svc, call) || refuse_if_too_large(call, req->n_requests)) return;
  size_t n = req->n_requests;
  batch_answer answer;
  batch_answer_init(&answer, call, n);
  Brume__ReleaseResponse *responses = brume_xcalloc(n, sizeof(*responses));
  Brume__ReleaseResponse **ptrs = brume_xcalloc(n, sizeof(*ptrs));
  for (size_t i = 0; i < n; i++) {
    brume__release_response__init(&responses[i]);
    ptrs[i] = &responses[i];
    brume_autoptr(brume_err) err = NULL;
    bool was_held = false;
    if (release_one(svc, req->requests[i], &was_held, &err) < 0)
      batch_answer_fail(&answer, call, i, err);
    else
      responses[i].was_held = was_held;
  }
  Brume__ReleaseBatchResponse resp = BRUME__RELEASE_BATCH_RESPONSE__INIT;
  resp.n_responses = resp.n_statuses = n;
  resp.responses = ptrs;
  resp.statuses = answer.status_ptrs;
  brume_rpc_call_reply(call, &resp.base);
  batch_answer_free(&answer);
  free(ptrs);
  free(responses);
}

/* ---- the handler table ---- */

void brume_counting_service_init(brume_counting_service *svc, brume_engine *engine, brume_workq *wq,
                                 brume_metrics *reg) {
  *svc = (brume_counting_service){.engine = engine, .wq = wq};
  atomic_init(&svc->stopping, false);
  svc->throttles =
      brume_metrics_counter(reg, "brume_counting_throttles_total",
                            "Acquire calls answered with a throttle, by reason.", "reason", NULL);
  svc->grants = brume_metrics_counter(
      reg, "brume_counting_grants_total",
      "Acquire calls granted, by kind (new or warm execution environment).", "kind", NULL);
  /* Every series from 0, so that a rate over the first throttle is not lost. */
  static const brume_throttle reasons[] = {BRUME_THROTTLE_ACCOUNT, BRUME_THROTTLE_RESERVED,
                                           BRUME_THROTTLE_SCALING_RATE};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(reasons); i++)
    brume_counter_inc(svc->throttles, 0, brume_throttle_reason(reasons[i]));
  brume_counter_inc(svc->grants, 0, "new");
  brume_counter_inc(svc->grants, 0, "warm");
}

void brume_counting_service_stop(brume_counting_service *svc) {
  atomic_store(&svc->stopping, true);
}

static const char *const method_names[] = {"Acquire", "Release", "GetState", "AcquireBatch",
                                           "ReleaseBatch"};
static const brume_rpc_handler handlers[] = {acquire_handler, release_handler, get_state_handler,
                                             acquire_batch_handler, release_batch_handler};

const brume_rpc_handler *brume_counting_service_handlers(void) {
  BRUME_ENSURE(brume__counting__descriptor.n_methods == BRUME_ARRAY_LEN(handlers));
  for (size_t i = 0; i < BRUME_ARRAY_LEN(handlers); i++)
    BRUME_ENSURE(strcmp(brume__counting__descriptor.methods[i].name, method_names[i]) == 0);
  return handlers;
}
