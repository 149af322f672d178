/* One synchronous invocation, as a chain of asynchronous calls (invoke.h). */
#include "invoke.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brume/placement.pb-c.h"
#include "brume/worker.pb-c.h"
#include "clock.h"
#include "concurrency.h"
#include "log.h"
#include "mem.h"
#include "names.h"
#include "random.h"
#include "reply.h"

/* What the Worker.Invoke call may take beyond the function's timeout: the worker answers a
 * function that ran out of time itself (Sandbox.Timedout), so this only covers the RPC. */
#define WORKER_RPC_MARGIN_MS 5000
/* A warm-only AcquireSandbox is answered from placement's memory. */
#define WARM_ACQUIRE_DEADLINE_MS 5000
/* A cold start's deadline when the client set none. */
#define COLD_ACQUIRE_DEADLINE_MS 120000

enum { PLACEMENT_ACQUIRE = 0, PLACEMENT_RELEASE = 1 };
enum { WORKER_INVOKE = 1 };

struct brume_invoker {
  brume_invoker_opts o;
  pthread_mutex_t mu; /* guards in_flight, releasing and waiters */
  pthread_cond_t idle;
  size_t in_flight;
  /* Releases this frontend has sent and not yet seen answered, and the invocations that wait
   * for one of them to end (see wait_for_release). */
  size_t releasing;
  struct invocation *waiters;
  brume_counter *invocations; /* {start, outcome} */
  brume_histogram *duration;  /* {start}: the whole call, as the frontend sees it */
  brume_counter *throttles;   /* {reason} */
  brume_counter *release_waits;
  brume_counter *reissues; /* {reason}: tokens given up and asked for again before a run */
};

typedef struct invocation {
  brume_invoker *inv;
  /* Who gets the answer: a gRPC call (Frontend.Invoke), or done (a queued event's delivery),
   * which also sets the deadline (deadline_mono_ms, brume_mono_ms()). */
  brume_rpc_call *call;
  brume_invoke_done_fn done;
  void *done_arg;
  int64_t deadline_mono_ms;
  const Brume__InvokeRequest *req; /* the caller's: valid until it is answered */
  char account[BRUME_ACCOUNT_ID_MAX + 1];
  char name[BRUME_FUNCTION_NAME_MAX + 1];
  char qualifier[BRUME_QUALIFIER_MAX + 1];
  char request_id[80];
  const brume_fn_target *target;
  char *token; /* counting's, once granted */
  /* When the last Acquire of a warm token left (brume_mono_us): counting holds the token it
   * grants for the function's timeout + token_hold_margin_ms from the grant, which comes later,
   * so at least that long from here. An upgrade keeps the deadline. */
  int64_t token_asked_us;
  Brume__AcquireSandboxResponse *sb; /* placement's answer, once a sandbox is held */
  Brume__WorkerInvokeResponse *res;  /* the worker's answer */
  Brume__SandboxOutcome outcome;     /* how the sandbox is given back */
  brume_err *err;                    /* the failure to answer with, if any */
  atomic_int releases_left;
  /* The first step asks counting and placement at once (see brume_invoker_start); the second of
   * the two answers goes on. What each answered, until then: */
  atomic_int first_left;
  brume_err *counting_err, *placement_err;
  bool throttled;
  Brume__ThrottleReason throttle_reason;
  uint32_t retry_after_ms;
  bool no_idle;
  bool cold;      /* the second step (a cold start) has begun */
  bool admitted;  /* counting granted and placement answered: counted in flight (inv_stats) */
  bool retried;   /* the first step ran again after a release (wait_for_release) */
  bool reissuing; /* its token's daemon failed during the cold start: another is asked for */
  bool regaining; /* its token's daemon failed before the upgrade: a new token is asked for */
  bool regained;  /* and that happened once already */
  struct invocation *next_waiter;
  /* When the call arrived, and when counting granted, placement placed and the worker answered
   * (debug logs: where the time goes). */
  int64_t t0_us, granted_us, placed_us, invoked_us;
} invocation;

brume_invoker *brume_invoker_new(const brume_invoker_opts *opts) {
  brume_invoker *inv = brume_xcalloc(1, sizeof(*inv));
  inv->o = *opts;
  pthread_mutex_init(&inv->mu, NULL);
  pthread_cond_init(&inv->idle, NULL);
  inv->invocations = brume_metrics_counter(
      opts->metrics, "brume_frontend_invocations_total",
      "Synchronous invocations answered, by start (warm, cold, none) and outcome (ok, "
      "function_error, throttled, error).",
      "start", "outcome", NULL);
  inv->duration = brume_metrics_histogram(
      opts->metrics, "brume_frontend_invocation_duration_seconds",
      "Time from an Invoke call's arrival to its answer, by start (warm, cold).", NULL, 0, "start",
      NULL);
  inv->release_waits = brume_metrics_counter(
      opts->metrics, "brume_frontend_release_waits_total",
      "Invocations that found no idle sandbox or no concurrency while this frontend had releases "
      "in flight, and waited for one before trying again.",
      NULL);
  inv->throttles =
      brume_metrics_counter(opts->metrics, "brume_frontend_throttles_total",
                            "Invocations throttled, by ThrottleReason name.", "reason", NULL);
  inv->reissues = brume_metrics_counter(
      opts->metrics, "brume_frontend_tokens_reissued_total",
      "Concurrency tokens given up and asked for again before the invocation ran, by reason: "
      "daemon_failed (its counting daemon failed during the cold start), upgrade_failed (the "
      "daemon could not upgrade it for the cold start), deadline (the cold start took so long "
      "that counting would take it back before the function's timeout).",
      "reason", NULL);
  return inv;
}

void brume_invoker_drain(brume_invoker *inv) {
  if (inv == NULL) return;
  pthread_mutex_lock(&inv->mu);
  while (inv->in_flight > 0) pthread_cond_wait(&inv->idle, &inv->mu);
  pthread_mutex_unlock(&inv->mu);
}

void brume_invoker_free(brume_invoker *inv) {
  if (inv == NULL) return;
  brume_invoker_drain(inv);
  pthread_mutex_destroy(&inv->mu);
  pthread_cond_destroy(&inv->idle);
  free(inv);
}

/* ---- the end of an invocation ---- */

static void invocation_free(invocation *iv) {
  brume_invoker *inv = iv->inv;
  if (iv->target) brume_fn_target_unref(iv->target);
  free(iv->token);
  if (iv->sb) protobuf_c_message_free_unpacked(&iv->sb->base, NULL);
  if (iv->res) protobuf_c_message_free_unpacked(&iv->res->base, NULL);
  brume_err_free(iv->err);
  brume_err_free(iv->counting_err);
  brume_err_free(iv->placement_err);
  free(iv);
  pthread_mutex_lock(&inv->mu);
  if (--inv->in_flight == 0) pthread_cond_broadcast(&inv->idle);
  pthread_mutex_unlock(&inv->mu);
}

static const char *start_label(const invocation *iv) {
  if (iv->sb == NULL) return "none";
  return iv->sb->cold ? "cold" : "warm";
}

/* The error document of a failure the function did not report itself (an init error). */
static char *error_document(const Brume__FunctionError *fe) {
  json_t *o = json_pack("{s:s, s:s}", "errorType", fe->type, "errorMessage", fe->message);
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  return s ? s : brume_xstrdup("{\"errorType\":\"Runtime.Unknown\"}");
}

/* Counts the invocation's end in the dashboard's statistics. */
static void record(invocation *iv, const char *start, const char *outcome, const char *error) {
  if (iv->inv->o.stats == NULL) return;
  brume_inv_outcome o = {
      .request_id = iv->request_id,
      .account_id = iv->account,
      .function_name = iv->name,
      .version = brume_fn_target_spec(iv->target)->function->version,
      .admitted = iv->admitted,
      .start = start,
      .outcome = outcome,
      .throttle_reason =
          iv->throttled ? brume_throttle_reason((brume_throttle)iv->throttle_reason) : NULL,
      .error = error,
      .duration_us = brume_mono_us() - iv->t0_us,
      .finished_unix_ms = brume_wall_ms(),
  };
  brume_inv_stats_end(iv->inv->o.stats, &o);
}

/* Hands err, or else resp, to whoever waits for the answer. */
static void deliver_answer(brume_rpc_call *call, brume_invoke_done_fn done, void *done_arg,
                           const Brume__InvokeResponse *resp, const brume_err *err) {
  if (call == NULL)
    done(done_arg, err ? NULL : resp, err);
  else if (err)
    brume_frontend_fail(call, err);
  else
    brume_rpc_call_reply(call, (const ProtobufCMessage *)&resp->base);
}

/* Milliseconds left before the caller's deadline (<= 0: none, or past). */
static int64_t deadline_left_ms(const invocation *iv) {
  return iv->call ? brume_rpc_call_deadline_left_ms(iv->call)
                  : iv->deadline_mono_ms - brume_mono_ms();
}

/* Answers the call: with iv->err if set, else the function's outcome. */
static void answer(invocation *iv) {
  brume_invoker *inv = iv->inv;
  const char *start = start_label(iv);
  if (iv->err) {
    const char *outcome = iv->err->code == BRUME_RESOURCE_EXHAUSTED ? "throttled" : "error";
    brume_counter_inc(inv->invocations, 1, start, outcome);
    brume_autofree char *error =
        iv->throttled ? brume_xstrdup(iv->err->msg)
                      : brume_xasprintf("%s: %s", brume_status_name(iv->err->code), iv->err->msg);
    record(iv, start, outcome, error);
    deliver_answer(iv->call, iv->done, iv->done_arg, NULL, iv->err);
    return;
  }
  const Brume__SandboxSpec *spec = brume_fn_target_spec(iv->target);
  Brume__InvokeResponse resp = BRUME__INVOKE_RESPONSE__INIT;
  resp.status_code = 200;
  resp.executed_version = spec->function->version;
  resp.request_id = iv->request_id;
  resp.memory_size_mib = spec->resources->memory_mib;
  resp.cold_start = iv->sb->cold;
  resp.pool_hit = iv->sb->pool_hit;
  resp.init_duration_us = iv->sb->init_duration_us;
  brume_autofree char *doc = NULL;
  if (iv->sb->init_error) {
    resp.function_error = iv->sb->init_error;
    doc = error_document(iv->sb->init_error);
    resp.payload.data = (uint8_t *)doc;
    resp.payload.len = strlen(doc);
  } else {
    const Brume__WorkerInvokeResponse *r = iv->res;
    resp.payload = r->payload;
    resp.function_error = r->function_error;
    if (r->function_error && r->payload.len == 0) {
      doc = error_document(r->function_error);
      resp.payload.data = (uint8_t *)doc;
      resp.payload.len = strlen(doc);
    }
    resp.duration_us = r->duration_us;
    resp.billed_duration_ms = r->billed_duration_ms;
    resp.max_memory_used_mib = r->max_memory_used_mib;
    if (iv->req->log_type == BRUME__LOG_TYPE__LOG_TYPE_TAIL) resp.log_tail = r->log_tail;
  }
  brume_counter_inc(inv->invocations, 1, start, resp.function_error ? "function_error" : "ok");
  brume_autofree char *error =
      resp.function_error
          ? brume_xasprintf("%s: %s", resp.function_error->type, resp.function_error->message)
          : NULL;
  record(iv, start, resp.function_error ? "function_error" : "ok", error);
  brume_histogram_observe(inv->duration, (double)(brume_mono_us() - iv->t0_us) / 1e6, start);
  int64_t now = brume_mono_us();
  brume_debug("An invocation was answered.",
              "request_id=%s account_id=%s function=%s version=%s start=%s function_error=%s "
              "duration_us=%" PRIu64 " granted_at_us=%" PRId64 " placed_at_us=%" PRId64
              " invoked_at_us=%" PRId64 " total_us=%" PRId64,
              iv->request_id, iv->account, iv->name, resp.executed_version, start,
              resp.function_error ? resp.function_error->type : "-", resp.duration_us,
              iv->granted_us - iv->t0_us, iv->placed_us - iv->t0_us, iv->invoked_us - iv->t0_us,
              now - iv->t0_us);
  deliver_answer(iv->call, iv->done, iv->done_arg, &resp, NULL);
}

static void retry_first_step(invocation *iv);

/* One release sent by this frontend ended: the invocations waiting for one try again. */
static void release_ended(brume_invoker *inv) {
  pthread_mutex_lock(&inv->mu);
  inv->releasing--;
  invocation *w = inv->waiters;
  inv->waiters = NULL;
  pthread_mutex_unlock(&inv->mu);
  while (w) {
    invocation *next = w->next_waiter;
    retry_first_step(w);
    w = next;
  }
}

static void release_done(invocation *iv) {
  if (atomic_fetch_sub(&iv->releases_left, 1) == 1) invocation_free(iv);
}

static void placement_released(void *user, ProtobufCMessage *reply, const brume_err *err) {
  invocation *iv = user;
  if (reply) protobuf_c_message_free_unpacked(reply, NULL);
  /* Placement takes an unreleased sandbox back at its lease deadline: the client need not
   * wait for that, nor fail for it. */
  if (err)
    brume_warn("Releasing a sandbox failed; placement takes it back at its lease deadline.",
               "request_id=%s sandbox_id=%s err=%s", iv->request_id, iv->sb->sandbox_id, err->msg);
  release_ended(iv->inv);
  release_done(iv);
}

static void counting_released(void *user, const Brume__ReleaseResponse *resp,
                              const brume_err *err) {
  invocation *iv = user;
  (void)resp;
  if (err)
    brume_warn("Releasing a concurrency token failed; counting takes it back at its deadline.",
               "request_id=%s err=%s", iv->request_id, err->msg);
  release_ended(iv->inv);
  release_done(iv);
}

/* Gives back what the invocation holds (the sandbox, the token) and answers; iv goes once the
 * releases have ended.
 *
 * The answer goes first: the releases take nothing from the client's time. They are counted as
 * in flight before it, so a next call of the client that overtakes them (it can only start
 * once this answer reached it) finds them counted: its first step, short of an idle sandbox or a
 * token, waits for this frontend's releases in flight and tries once more (wait_for_release)
 * instead of a needless cold start or throttle. */
static void release_and_answer(invocation *iv) {
  brume_invoker *inv = iv->inv;
  bool sandbox = iv->sb && iv->sb->sandbox_id[0] != '\0';
  bool token = iv->token != NULL;
  atomic_store(&iv->releases_left, 1 + (int)sandbox + (int)token);
  pthread_mutex_lock(&inv->mu);
  inv->releasing += (size_t)sandbox + (size_t)token;
  pthread_mutex_unlock(&inv->mu);
  answer(iv);
  if (sandbox) {
    Brume__ReleaseSandboxRequest req = BRUME__RELEASE_SANDBOX_REQUEST__INIT;
    req.sandbox_id = iv->sb->sandbox_id;
    req.outcome = iv->outcome;
    req.caller_id = (char *)inv->o.caller_id;
    brume_rpc_call_opts co = {.deadline_ms = WARM_ACQUIRE_DEADLINE_MS,
                              .request_id = iv->request_id};
    brume_autoptr(brume_err) err = NULL;
    if (brume_rpc_unary_async(inv->o.placement, &brume__placement__descriptor, PLACEMENT_RELEASE,
                              &req.base, &co, placement_released, iv, &err) < 0)
      placement_released(iv, NULL, err);
  }
  if (token) {
    Brume__ReleaseRequest req = BRUME__RELEASE_REQUEST__INIT;
    req.token = iv->token;
    req.caller_id = (char *)inv->o.caller_id;
    brume_counting_set_release(inv->o.counting, &req, counting_released, iv);
  }
  release_done(iv);
}

/* Ends the invocation with an error: code and message, after releasing what it holds. */
static void fail_with(invocation *iv, const brume_err *err) {
  brume_err_set(&iv->err, err->code, "%s", err->msg);
  release_and_answer(iv);
}

/* Ends the invocation throttled (iv->throttle_reason, iv->retry_after_ms). */
static void throttled(invocation *iv) {
  iv->throttled = true; /* the cold start's refusal too: record() names the reason */
  const char *reason = brume_throttle_reason((brume_throttle)iv->throttle_reason);
  brume_counter_inc(iv->inv->throttles, 1, reason);
  if (iv->retry_after_ms)
    brume_err_set(&iv->err, BRUME_RESOURCE_EXHAUSTED,
                  "%s: Rate Exceeded (function %s); retry after about %" PRIu32 " ms", reason,
                  iv->name, iv->retry_after_ms);
  else
    brume_err_set(&iv->err, BRUME_RESOURCE_EXHAUSTED, "%s: Rate Exceeded (function %s)", reason,
                  iv->name);
  release_and_answer(iv);
}

/* ---- the steps ---- */

static void worker_answered(void *user, ProtobufCMessage *reply, const brume_err *err) {
  invocation *iv = user;
  if (err) {
    iv->outcome = BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_BROKEN;
    brume_err_set(
        &iv->err,
        err->code == BRUME_DEADLINE_EXCEEDED ? BRUME_DEADLINE_EXCEEDED : BRUME_UNAVAILABLE,
        "ServiceUnavailableException: the worker %s did not run the invocation: %s",
        iv->sb->host_id, err->msg);
    release_and_answer(iv);
    return;
  }
  iv->res = (Brume__WorkerInvokeResponse *)reply;
  iv->invoked_us = brume_mono_us();
  bool reset = iv->res->state == BRUME__SANDBOX_STATE__SANDBOX_STATE_TERMINATING ||
               iv->res->state == BRUME__SANDBOX_STATE__SANDBOX_STATE_GONE;
  iv->outcome = reset ? BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_FUNCTION_FAILED
                      : BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_OK;
  release_and_answer(iv);
}

static void invoke_worker(invocation *iv) {
  brume_invoker *inv = iv->inv;
  const Brume__SandboxSpec *spec = brume_fn_target_spec(iv->target);
  brume_autoptr(brume_err) err = NULL;
  brume_rpc_client *w = brume_rpc_pool_get(inv->o.workers, iv->sb->worker_address, &err);
  if (w == NULL) {
    iv->outcome = BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_BROKEN;
    fail_with(iv, err);
    return;
  }
  Brume__WorkerInvokeRequest req = BRUME__WORKER_INVOKE_REQUEST__INIT;
  req.sandbox_id = iv->sb->sandbox_id;
  req.request_id = iv->request_id;
  req.payload = iv->req->payload;
  req.deadline_unix_ms = brume_wall_ms() + spec->timeout_ms;
  req.invoked_function_arn = (char *)brume_fn_target_invoked_arn(iv->target);
  req.want_log_tail = iv->req->log_type == BRUME__LOG_TYPE__LOG_TYPE_TAIL;
  brume_rpc_call_opts co = {.deadline_ms = (int64_t)spec->timeout_ms + WORKER_RPC_MARGIN_MS,
                            .request_id = iv->request_id};
  if (brume_rpc_unary_async(w, &brume__worker__descriptor, WORKER_INVOKE, &req.base, &co,
                            worker_answered, iv, &err) < 0)
    worker_answered(iv, NULL, err);
}

static void acquire_sandbox(invocation *iv, bool warm_only);
static void acquire_concurrency(invocation *iv, Brume__AcquireKind kind);

/* The release of a token given up: user is the invocation that asks for a new token once the
 * release has ended, or NULL when it did not wait for it. Its outcome changes nothing: a daemon
 * that failed takes the token back with its lease, or at its deadline. */
static void stale_token_released(void *user, const Brume__ReleaseResponse *resp,
                                 const brume_err *err) {
  (void)resp;
  (void)err;
  if (user) acquire_concurrency(user, BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT);
}

/* Drops iv's token and asks the daemons that answer for a warm token of its own (granted() gets
 * the answer). The old token is released:
 * - its daemon failed (after_release false): for form's sake, since a daemon that only stumbled
 *   takes it back now rather than at its deadline; the new token is asked for at once, not after
 *   a release that may wait for a dead daemon's deadline;
 * - its daemon is well and holds it (after_release true): the new token is asked for once the
 *   release has ended, so that at the limit the token's own room is free for it, rather than
 *   throttled because the Acquire overtook the Release. */
static void ask_for_new_token(invocation *iv, bool after_release) {
  /* Out of iv first: the release's answer may come before the call returns, and with it the
   * new token. */
  brume_autofree char *old = iv->token;
  iv->token = NULL;
  Brume__ReleaseRequest rel = BRUME__RELEASE_REQUEST__INIT;
  rel.token = old;
  rel.caller_id = (char *)iv->inv->o.caller_id;
  brume_counting_set_release(iv->inv->o.counting, &rel, stale_token_released,
                             after_release ? iv : NULL);
  if (!after_release) acquire_concurrency(iv, BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT);
}

/* A cold start is over, but iv's token may no longer hold its room while the function runs:
 * - its daemon died or failed meanwhile (a slow boot can outlast a counting daemon's lease TTL):
 *   once its lease expires, the other daemons grow into its room and the token is counted
 *   nowhere;
 * - or the boot took so long that counting takes the token back at its deadline (the function's
 *   timeout plus token_hold_margin_ms, from the first Acquire) before the function could end.
 * Run with it, and the limit can be passed. So the invocation asks the daemons that answer for a
 * token of its own first (a warm one: the sandbox exists), and is throttled like any other when
 * there is no room. reason and why name the case in brume_frontend_tokens_reissued_total and the
 * log; daemon_well: the token's daemon answers (ask_for_new_token). */
static void reissue_token(invocation *iv, const char *reason, const char *why, bool daemon_well) {
  brume_info(why, "request_id=%s token=%s", iv->request_id, iv->token);
  brume_counter_inc(iv->inv->reissues, 1, reason);
  iv->reissuing = true;
  ask_for_new_token(iv, daemon_well);
}

/* Whether counting holds iv's token until the invocation ends at the latest. It holds the token
 * for the function's timeout + token_hold_margin_ms from token_asked_us at least; the
 * invocation ends by the function's timeout + WORKER_RPC_MARGIN_MS from now. So: whether at most
 * token_hold_margin_ms - WORKER_RPC_MARGIN_MS have passed since the Acquire left. */
static bool token_outlasts_run(const invocation *iv) {
  int64_t since_us = brume_mono_us() - iv->token_asked_us;
  return since_us <= ((int64_t)iv->inv->o.token_hold_margin_ms - WORKER_RPC_MARGIN_MS) * 1000;
}

/* The daemon that granted iv's token died or failed while asked to upgrade it for a cold start
 * (an Acquire with upgrade_token goes to that daemon only), or no longer holds the token. The
 * token returns with that daemon's lease (or has returned), so the invocation asks the daemons
 * that answer for a token of its own, then upgrades that one: the cold start goes on as another
 * daemon allows it, or is throttled. Once only. */
static void regain_token(invocation *iv, const brume_err *err) {
  brume_info(
      "The counting daemon of this invocation's token could not upgrade it for its cold start; "
      "asking the others.",
      "request_id=%s token=%s err=%s", iv->request_id, iv->token, err->msg);
  brume_counter_inc(iv->inv->reissues, 1, "upgrade_failed");
  iv->regaining = true;
  iv->regained = true;
  ask_for_new_token(iv, false);
}

/* A throttle or no idle sandbox in the first step while this frontend has releases in flight:
 * one of them may free what the step lacked (the client's previous invocation, overtaken by
 * this one). Parks iv until a release ends and returns true; false when none is in flight or iv
 * tried again already. */
static bool wait_for_release(invocation *iv) {
  brume_invoker *inv = iv->inv;
  if (iv->retried) return false;
  pthread_mutex_lock(&inv->mu);
  bool wait = inv->releasing > 0;
  if (wait) brume_counter_inc(inv->release_waits, 1);
  if (wait) {
    iv->next_waiter = inv->waiters;
    inv->waiters = iv;
  }
  pthread_mutex_unlock(&inv->mu);
  return wait;
}

/* Both answers of the first step are in: a warm sandbox and a token, or what to do instead. */
static void first_step_done(invocation *iv) {
  bool lacking = (iv->throttled && iv->counting_err == NULL) ||
                 (iv->no_idle && iv->placement_err == NULL && iv->counting_err == NULL);
  if (lacking && wait_for_release(iv)) return;
  if (iv->counting_err || iv->throttled) {
    /* Not admitted: a warm sandbox placement handed out goes back unused. */
    iv->outcome = BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_NOT_USED;
    if (iv->throttled) {
      throttled(iv);
      return;
    }
    fail_with(iv, iv->counting_err);
    return;
  }
  if (iv->placement_err) {
    fail_with(iv, iv->placement_err);
    return;
  }
  /* Admitted: from here on the invocation holds a unit of the function's concurrency. */
  iv->admitted = true;
  if (iv->inv->o.stats) brume_inv_stats_begin(iv->inv->o.stats, iv->account, iv->name);
  if (iv->no_idle) {
    /* No warm sandbox: a cold start, which the scaling rate must allow first. */
    iv->cold = true;
    acquire_concurrency(iv, BRUME__ACQUIRE_KIND__ACQUIRE_KIND_NEW_ENVIRONMENT);
    return;
  }
  invoke_worker(iv);
}

static void first_answer(invocation *iv) {
  if (atomic_fetch_sub(&iv->first_left, 1) == 1) first_step_done(iv);
}

/* The first step again, for what it lacked (wait_for_release); once. */
static void retry_first_step(invocation *iv) {
  iv->retried = true;
  bool counting = iv->throttled, placement = iv->no_idle;
  iv->throttled = false;
  iv->no_idle = false;
  atomic_store(&iv->first_left, (int)counting + (int)placement);
  if (counting) acquire_concurrency(iv, BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT);
  if (placement) acquire_sandbox(iv, true);
}

static void sandbox_acquired(void *user, ProtobufCMessage *reply, const brume_err *err) {
  invocation *iv = user;
  Brume__AcquireSandboxResponse *sb = (Brume__AcquireSandboxResponse *)reply;
  if (!iv->cold) {
    if (err)
      brume_err_set(&iv->placement_err, err->code, "%s", err->msg);
    else if (sb->no_idle_sandbox)
      iv->no_idle = true;
    else {
      iv->sb = sb;
      iv->placed_us = brume_mono_us();
    }
    if (sb && iv->sb != sb) protobuf_c_message_free_unpacked(reply, NULL);
    first_answer(iv);
    return;
  }
  if (err) {
    fail_with(iv, err);
    return;
  }
  iv->sb = sb;
  iv->placed_us = brume_mono_us();
  if (sb->init_error) {
    /* The sandbox is gone; the invocation answers with the init error, as Lambda does. */
    release_and_answer(iv);
    return;
  }
  if (!brume_counting_set_token_trusted(iv->inv->o.counting, iv->token)) {
    reissue_token(iv, "daemon_failed",
                  "The counting daemon of this invocation's token failed during its cold start; "
                  "asking again before it runs.",
                  false);
    return;
  }
  if (!token_outlasts_run(iv)) {
    reissue_token(iv, "deadline",
                  "This invocation's cold start took so long that counting would take its token "
                  "back before the function's timeout; asking again before it runs.",
                  true);
    return;
  }
  invoke_worker(iv);
}

static void acquire_sandbox(invocation *iv, bool warm_only) {
  brume_invoker *inv = iv->inv;
  Brume__AcquireSandboxRequest req = BRUME__ACQUIRE_SANDBOX_REQUEST__INIT;
  req.spec = (Brume__SandboxSpec *)brume_fn_target_spec(iv->target);
  req.caller_id = (char *)inv->o.caller_id;
  req.warm_only = warm_only;
  int64_t left = deadline_left_ms(iv);
  int64_t deadline = warm_only  ? WARM_ACQUIRE_DEADLINE_MS
                     : left > 0 ? left
                                : COLD_ACQUIRE_DEADLINE_MS;
  brume_rpc_call_opts co = {.deadline_ms = deadline, .request_id = iv->request_id};
  brume_autoptr(brume_err) err = NULL;
  if (brume_rpc_unary_async(inv->o.placement, &brume__placement__descriptor, PLACEMENT_ACQUIRE,
                            &req.base, &co, sandbox_acquired, iv, &err) < 0)
    sandbox_acquired(iv, NULL, err);
}

/* Counting's answer: to the first step's Acquire of a warm environment, or to its upgrade to a
 * new environment (the cold start of the second step). */
static void granted(void *user, const Brume__AcquireResponse *resp, const brume_err *err) {
  invocation *iv = user;
  if (iv->reissuing) {
    /* reissue_token's answer: the sandbox is ready and goes back unused unless granted. */
    iv->reissuing = false;
    if (err == NULL && resp->granted) {
      iv->token = brume_xstrdup(resp->token);
      invoke_worker(iv);
      return;
    }
    iv->outcome = BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_NOT_USED;
    if (err) {
      fail_with(iv, err);
      return;
    }
    iv->throttle_reason = resp->throttle_reason;
    iv->retry_after_ms = resp->retry_after_ms;
    throttled(iv);
    return;
  }
  if (iv->regaining) {
    /* regain_token's answer: a token of its own, upgraded next. */
    iv->regaining = false;
    if (err == NULL && resp->granted) {
      iv->token = brume_xstrdup(resp->token);
      acquire_concurrency(iv, BRUME__ACQUIRE_KIND__ACQUIRE_KIND_NEW_ENVIRONMENT);
      return;
    }
  } else if (!iv->cold) {
    if (err) {
      brume_err_set(&iv->counting_err, err->code, "%s", err->msg);
    } else if (!resp->granted) {
      iv->throttled = true;
      iv->throttle_reason = resp->throttle_reason;
      iv->retry_after_ms = resp->retry_after_ms;
    } else {
      iv->token = brume_xstrdup(resp->token);
      iv->granted_us = brume_mono_us();
    }
    first_answer(iv);
    return;
  } else if (err && (err->code == BRUME_UNAVAILABLE || err->code == BRUME_NOT_FOUND) &&
             !iv->regained) {
    /* UNAVAILABLE: the daemon died or failed; NOT_FOUND: it no longer holds the token (it
     * restarted, or took the token back at its deadline). */
    regain_token(iv, err);
    return;
  }
  if (err) {
    fail_with(iv, err);
    return;
  }
  if (!resp->granted) {
    iv->throttle_reason = resp->throttle_reason;
    iv->retry_after_ms = resp->retry_after_ms;
    throttled(iv);
    return;
  }
  acquire_sandbox(iv, false);
}

static void acquire_concurrency(invocation *iv, Brume__AcquireKind kind) {
  Brume__FunctionRef fn = BRUME__FUNCTION_REF__INIT;
  fn.account_id = iv->account;
  fn.function_name = iv->name;
  fn.qualifier = iv->qualifier;
  Brume__AcquireRequest req = BRUME__ACQUIRE_REQUEST__INIT;
  req.function = &fn;
  req.caller_id = (char *)iv->inv->o.caller_id;
  req.kind = kind;
  if (kind == BRUME__ACQUIRE_KIND__ACQUIRE_KIND_NEW_ENVIRONMENT) {
    req.upgrade_token = iv->token;
  } else {
    req.hold_ms = brume_fn_target_spec(iv->target)->timeout_ms + iv->inv->o.token_hold_margin_ms;
    iv->token_asked_us = brume_mono_us();
  }
  brume_counting_set_acquire(iv->inv->o.counting, &req, granted, iv);
}

/* ---- the start ---- */

static int check_request(const Brume__InvokeRequest *req, const char *qualifier, brume_err **err) {
  if (brume_check_qualifier(qualifier, "qualifier", err) < 0) return -1;
  switch (req->invocation_type) {
    case BRUME__INVOCATION_TYPE__INVOCATION_TYPE_UNSPECIFIED:
    case BRUME__INVOCATION_TYPE__INVOCATION_TYPE_REQUEST_RESPONSE:
    case BRUME__INVOCATION_TYPE__INVOCATION_TYPE_DRY_RUN:
      break;
    case BRUME__INVOCATION_TYPE__INVOCATION_TYPE_EVENT:
      /* The service hands Event invocations to the event queue (event_accept.h); their
       * delivery runs them as REQUEST_RESPONSE. */
      return brume_err_set(err, BRUME_INTERNAL,
                           "ServiceException: an Event invocation reached the synchronous path");
    default:
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           "InvalidParameterValueException: invocation_type %d is not "
                           "REQUEST_RESPONSE, EVENT or DRY_RUN",
                           (int)req->invocation_type);
  }
  switch (req->log_type) {
    case BRUME__LOG_TYPE__LOG_TYPE_UNSPECIFIED:
    case BRUME__LOG_TYPE__LOG_TYPE_NONE:
    case BRUME__LOG_TYPE__LOG_TYPE_TAIL:
      break;
    default:
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           "InvalidParameterValueException: log_type %d is not NONE or TAIL",
                           (int)req->log_type);
  }
  if (req->payload.len > BRUME_PAYLOAD_SYNC_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "RequestTooLargeException: the payload is %zu bytes; a synchronous "
                         "invocation takes at most %u (6 MiB)",
                         req->payload.len, BRUME_PAYLOAD_SYNC_MAX);
  return 0;
}

static void start(brume_invoker *inv, brume_rpc_call *call, brume_invoke_done_fn done,
                  void *done_arg, int64_t deadline_mono_ms, const Brume__InvokeRequest *req,
                  const char *account_id, const char *name, const char *qualifier,
                  const char *request_id) {
  int64_t t0 = brume_mono_us();
  brume_autoptr(brume_err) err = NULL;
  const brume_fn_target *target = NULL;
  if (check_request(req, qualifier, &err) < 0 ||
      brume_catalog_resolve(inv->o.catalog, account_id, name, qualifier,
                            (double)(brume_random_u64() >> 11) / 9007199254740992.0, &target,
                            &err) < 0) {
    brume_counter_inc(inv->invocations, 1, "none", "error");
    deliver_answer(call, done, done_arg, NULL, err);
    return;
  }
  if (req->invocation_type == BRUME__INVOCATION_TYPE__INVOCATION_TYPE_DRY_RUN) {
    Brume__InvokeResponse resp = BRUME__INVOKE_RESPONSE__INIT;
    resp.status_code = 204;
    resp.executed_version = brume_fn_target_spec(target)->function->version;
    resp.request_id = (char *)request_id;
    deliver_answer(call, done, done_arg, &resp, NULL);
    brume_fn_target_unref(target);
    return;
  }
  invocation *iv = brume_xcalloc(1, sizeof(*iv));
  iv->inv = inv;
  iv->call = call;
  iv->done = done;
  iv->done_arg = done_arg;
  iv->deadline_mono_ms = deadline_mono_ms;
  iv->req = req;
  iv->target = target;
  iv->t0_us = t0;
  snprintf(iv->account, sizeof(iv->account), "%s", account_id);
  snprintf(iv->name, sizeof(iv->name), "%s", name);
  snprintf(iv->qualifier, sizeof(iv->qualifier), "%s", qualifier);
  snprintf(iv->request_id, sizeof(iv->request_id), "%s", request_id);
  pthread_mutex_lock(&inv->mu);
  inv->in_flight++;
  pthread_mutex_unlock(&inv->mu);
  /* The first step asks counting for a warm environment's token and placement for an idle
   * sandbox at once: neither needs the other's answer, and the invocation waits for one round
   * trip instead of two. The rare refusal by counting then hands the sandbox back unused. */
  atomic_store(&iv->first_left, 2);
  acquire_concurrency(iv, BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT);
  acquire_sandbox(iv, true);
}

void brume_invoker_start(brume_invoker *inv, brume_rpc_call *call, const Brume__InvokeRequest *req,
                         const char *account_id, const char *name, const char *qualifier,
                         const char *request_id) {
  start(inv, call, NULL, NULL, 0, req, account_id, name, qualifier, request_id);
}

void brume_invoker_run(brume_invoker *inv, const Brume__InvokeRequest *req, const char *account_id,
                       const char *name, const char *qualifier, const char *request_id,
                       int64_t deadline_mono_ms, brume_invoke_done_fn done, void *done_arg) {
  start(inv, NULL, done, done_arg, deadline_mono_ms, req, account_id, name, qualifier, request_id);
}
