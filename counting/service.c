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

/* Fails call with err (its code; the message led by the reason name) and logs it at warn. */
static void fail(brume_rpc_call *call, const brume_err *err) {
  const char *rid = brume_rpc_call_metadata(call, BRUME_MD_REQUEST_ID);
  char q[512];
  brume_warn("Counting call failed.", "request_id=%s method=%s code=%d err=%s", rid ? rid : "-",
             brume_rpc_call_method(call), (int)err->code, brume_log_quote(q, sizeof(q), err->msg));
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

/* The engine's answer: on the handler's thread, or later on a work-queue thread. */
static void acquire_done(void *user, const brume_acquire_result *res, const brume_err *err) {
  acquire_ctx *c = user;
  if (res == NULL) {
    fail(c->call, err);
    free(c);
    return;
  }
  Brume__AcquireResponse resp = BRUME__ACQUIRE_RESPONSE__INIT;
  resp.granted = res->granted;
  resp.provisioned = res->provisioned;
  if (res->granted) {
    resp.token = (char *)res->token;
    resp.token_deadline_unix_ms = res->token_deadline_unix_ms;
    bool warm = c->req->kind == BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT;
    brume_counter_inc(c->svc->grants, 1, warm ? "warm" : "new");
  } else {
    resp.throttle_reason = (Brume__ThrottleReason)res->reason;
    resp.retry_after_ms = res->retry_after_ms;
    const char *reason = brume_throttle_reason(res->reason);
    if (reason[0] == '\0') reason = "Unknown";
    brume_counter_inc(c->svc->throttles, 1, reason);
    const Brume__FunctionRef *fn = c->req->function;
    brume_debug("Acquire throttled.",
                "account=%s function=%s qualifier=%s reason=%s retry_after_ms=%" PRIu32,
                fn->account_id, fn->function_name, fn->qualifier[0] ? fn->qualifier : "$LATEST",
                reason, res->retry_after_ms);
  }
  brume_rpc_call_reply(c->call, &resp.base);
  free(c);
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
  brume_acquire_req ar = {
      .account_id = req->function->account_id,
      .function_name = req->function->function_name,
      .qualifier = req->function->qualifier,
      .caller_id = req->caller_id,
      .kind = (brume_token_kind)req->kind, /* the same numbers (tokens.h) */
      .hold_ms = req->hold_ms,
      .upgrade_token = req->upgrade_token,
  };
  acquire_ctx *c = brume_xmalloc(sizeof(*c));
  *c = (acquire_ctx){.svc = svc, .call = call, .req = req};
  brume_engine_acquire(svc->engine, &ar, acquire_done, c);
}

/* ---- Release ---- */

static void release_handler(brume_rpc_call *call, const ProtobufCMessage *request, void *user) {
  brume_counting_service *svc = user;
  const Brume__ReleaseRequest *req = (const void *)request;
  if (refuse_if_stopping(svc, call)) return;
  brume_autoptr(brume_err) err = NULL;
  if (req->token[0] == '\0') {
    fail_with(call, BRUME_INVALID_ARGUMENT, "token is missing");
    return;
  }
  bool was_held = false;
  if (brume_engine_release(svc->engine, req->token, &was_held, &err) < 0) {
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

static const char *const method_names[] = {"Acquire", "Release", "GetState"};
static const brume_rpc_handler handlers[] = {acquire_handler, release_handler, get_state_handler};

const brume_rpc_handler *brume_counting_service_handlers(void) {
  BRUME_ENSURE(brume__counting__descriptor.n_methods == BRUME_ARRAY_LEN(handlers));
  for (size_t i = 0; i < BRUME_ARRAY_LEN(handlers); i++)
    BRUME_ENSURE(strcmp(brume__counting__descriptor.methods[i].name, method_names[i]) == 0);
  return handlers;
}
