/* The Placement service's handlers (service.h). */
#include "service.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "sandbox_spec.h"

/* Fails call with err: its code, and its message led by the reason name unless it has one
 * already (the placer's and the workers' messages do). */
static void fail(brume_rpc_call *call, const brume_err *err) {
  const char *colon = strchr(err->msg, ':');
  size_t lead = colon ? (size_t)(colon - err->msg) : 0;
  bool has_reason = lead >= 9 && memcmp(err->msg + lead - 9, "Exception", 9) == 0 &&
                    memchr(err->msg, ' ', lead) == NULL;
  if (err->code != BRUME_NOT_FOUND && err->code != BRUME_FAILED_PRECONDITION) {
    char q[512];
    const char *rid = brume_rpc_call_metadata(call, BRUME_MD_REQUEST_ID);
    brume_warn("Placement call failed.", "request_id=%s method=%s code=%d err=%s", rid ? rid : "-",
               brume_rpc_call_method(call), (int)err->code,
               brume_log_quote(q, sizeof(q), err->msg));
  }
  if (has_reason)
    brume_rpc_call_fail(call, err->code, "%s", err->msg);
  else
    brume_rpc_call_fail(call, err->code, "%s: %s", brume_status_reason(err->code), err->msg);
}

static bool refuse_if_stopping(brume_placement_service *svc, brume_rpc_call *call) {
  if (!atomic_load(&svc->stopping)) return false;
  brume_rpc_call_fail(call, BRUME_UNAVAILABLE,
                      "ServiceUnavailableException: this placement daemon is shutting down");
  return true;
}

/* The spec's check (the worker makes the same) and the parts placement matches on. */
static int check_spec(const Brume__SandboxSpec *spec, brume_err **err) {
  if (brume_sandbox_spec_check(spec, err) < 0) return -1;
  brume_autofree char *key = brume_placer_function_key(spec->function, err);
  return key ? 0 : -1;
}

/* ---- AcquireSandbox ---- */

static void acquire_done(void *user, const brume_placer_acquired *a, const brume_err *err) {
  brume_rpc_call *call = user;
  if (a == NULL) {
    fail(call, err);
    return;
  }
  Brume__AcquireSandboxResponse resp = BRUME__ACQUIRE_SANDBOX_RESPONSE__INIT;
  if (!a->no_idle_sandbox) {
    resp.worker_address = (char *)a->worker_address;
    resp.host_id = (char *)a->host_id;
    resp.sandbox_id = a->sandbox_id ? (char *)a->sandbox_id : "";
  }
  resp.cold = a->cold;
  resp.pool_hit = a->pool_hit;
  resp.init_duration_us = a->init_duration_us;
  resp.no_idle_sandbox = a->no_idle_sandbox;
  resp.init_error = (Brume__FunctionError *)a->init_error;
  resp.lease_deadline_unix_ms = a->lease_deadline_unix_ms;
  brume_rpc_call_reply(call, &resp.base);
}

static bool acquire_gone(void *user) {
  return brume_rpc_call_cancelled(user);
}

static void acquire_handler(brume_rpc_call *call, const ProtobufCMessage *request, void *user) {
  brume_placement_service *svc = user;
  const Brume__AcquireSandboxRequest *req = (const void *)request;
  if (refuse_if_stopping(svc, call)) return;
  brume_autoptr(brume_err) err = NULL;
  if (check_spec(req->spec, &err) < 0) {
    fail(call, err);
    return;
  }
  if (req->caller_id[0] == '\0') {
    brume_err_set(&err, BRUME_INVALID_ARGUMENT, "caller_id is missing");
    fail(call, err);
    return;
  }
  /* A cold start may take what is left of the caller's deadline, less a margin to answer. */
  int64_t left = brume_rpc_call_deadline_left_ms(call);
  int64_t deadline = left < 0 ? 0 : (left > 100 ? left - 50 : 1);
  brume_placer_acquire(svc->placer, req, deadline,
                       brume_rpc_call_metadata(call, BRUME_MD_REQUEST_ID), acquire_done,
                       acquire_gone, call);
}

/* ---- ReleaseSandbox ---- */

static void release_handler(brume_rpc_call *call, const ProtobufCMessage *request, void *user) {
  brume_placement_service *svc = user;
  const Brume__ReleaseSandboxRequest *req = (const void *)request;
  if (refuse_if_stopping(svc, call)) return;
  brume_autoptr(brume_err) err = NULL;
  bool reusable = false;
  switch (req->outcome) {
    case BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_OK:
    case BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_NOT_USED:
      reusable = true;
      break;
    case BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_FUNCTION_FAILED:
    case BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_BROKEN:
      break;
    default:
      brume_err_set(&err, BRUME_INVALID_ARGUMENT,
                    "outcome %d is not OK, NOT_USED, "
                    "FUNCTION_FAILED or BROKEN",
                    (int)req->outcome);
  }
  if (err == NULL && req->sandbox_id[0] == '\0')
    brume_err_set(&err, BRUME_INVALID_ARGUMENT, "sandbox_id is missing");
  if (err == NULL && req->caller_id[0] == '\0')
    brume_err_set(&err, BRUME_INVALID_ARGUMENT, "caller_id is missing");
  Brume__SandboxState state = BRUME__SANDBOX_STATE__SANDBOX_STATE_UNSPECIFIED;
  if (err || brume_placer_release(svc->placer, req->sandbox_id, req->caller_id, reusable, &state,
                                  &err) < 0) {
    fail(call, err);
    return;
  }
  Brume__ReleaseSandboxResponse resp = BRUME__RELEASE_SANDBOX_RESPONSE__INIT;
  resp.state = state;
  brume_rpc_call_reply(call, &resp.base);
}

/* ---- the queries ---- */

static void list_hosts_handler(brume_rpc_call *call, const ProtobufCMessage *request, void *user) {
  brume_placement_service *svc = user;
  const Brume__ListHostsRequest *req = (const void *)request;
  if (refuse_if_stopping(svc, call)) return;
  Brume__ListHostsResponse resp = BRUME__LIST_HOSTS_RESPONSE__INIT;
  resp.hosts = brume_placer_hosts(svc->placer, req->host_id, &resp.n_hosts);
  brume_rpc_call_reply(call, &resp.base);
  brume_placer_hosts_free(resp.hosts, resp.n_hosts);
}

static void list_sandboxes_handler(brume_rpc_call *call, const ProtobufCMessage *request,
                                   void *user) {
  brume_placement_service *svc = user;
  const Brume__ListSandboxesRequest *req = (const void *)request;
  if (refuse_if_stopping(svc, call)) return;
  brume_autoptr(brume_err) err = NULL;
  if (req->function_name[0] && req->account_id[0] == '\0')
    brume_err_set(&err, BRUME_INVALID_ARGUMENT, "function_name needs account_id");
  else if (req->version[0] && req->function_name[0] == '\0')
    brume_err_set(&err, BRUME_INVALID_ARGUMENT, "version needs function_name");
  if (err) {
    fail(call, err);
    return;
  }
  Brume__ListSandboxesResponse resp = BRUME__LIST_SANDBOXES_RESPONSE__INIT;
  resp.sandboxes = brume_placer_sandboxes(svc->placer, req, &resp.n_sandboxes);
  brume_rpc_call_reply(call, &resp.base);
  brume_placer_sandboxes_free(resp.sandboxes, resp.n_sandboxes);
}

/* ---- PutProvisionedConcurrency ---- */

/* The most provisioned sandboxes of one version: a bound on one setting's work. */
#define PROVISIONED_MAX 10000

typedef struct put_job {
  brume_placement_service *svc;
  brume_rpc_call *call;
  const Brume__PutProvisionedConcurrencyRequest *req;
} put_job;

static void put_job_run(void *arg) {
  brume_autofree put_job *j = arg;
  brume_autoptr(brume_err) err = NULL;
  if (brume_placer_put_provisioned(j->svc->placer, j->req, &err) < 0) {
    fail(j->call, err);
    return;
  }
  Brume__PutProvisionedConcurrencyResponse resp = BRUME__PUT_PROVISIONED_CONCURRENCY_RESPONSE__INIT;
  brume_rpc_call_reply(j->call, &resp.base);
}

static void put_provisioned_handler(brume_rpc_call *call, const ProtobufCMessage *request,
                                    void *user) {
  brume_placement_service *svc = user;
  const Brume__PutProvisionedConcurrencyRequest *req = (const void *)request;
  if (refuse_if_stopping(svc, call)) return;
  brume_autoptr(brume_err) err = NULL;
  if (check_spec(req->spec, &err) < 0 ||
      (req->count > PROVISIONED_MAX &&
       brume_err_set(&err, BRUME_INVALID_ARGUMENT, "count %" PRIu32 " is over %d", req->count,
                     PROVISIONED_MAX) < 0)) {
    fail(call, err);
    return;
  }
  put_job *j = brume_xmalloc(sizeof(*j));
  *j = (put_job){.svc = svc, .call = call, .req = req};
  if (brume_workq_push(svc->wq, put_job_run, j, &err) < 0) {
    free(j);
    fail(call, err);
  }
}

/* ---- the handler table ---- */

void brume_placement_service_init(brume_placement_service *svc, brume_placer *placer,
                                  brume_workq *wq) {
  *svc = (brume_placement_service){.placer = placer, .wq = wq};
  atomic_init(&svc->stopping, false);
}

void brume_placement_service_stop(brume_placement_service *svc) {
  atomic_store(&svc->stopping, true);
}

static const char *const method_names[] = {"AcquireSandbox", "ReleaseSandbox", "ListHosts",
                                           "ListSandboxes", "PutProvisionedConcurrency"};
static const brume_rpc_handler handlers[] = {acquire_handler, release_handler, list_hosts_handler,
                                             list_sandboxes_handler, put_provisioned_handler};

const brume_rpc_handler *brume_placement_service_handlers(void) {
  BRUME_ENSURE(brume__placement__descriptor.n_methods == BRUME_ARRAY_LEN(handlers));
  for (size_t i = 0; i < BRUME_ARRAY_LEN(handlers); i++)
    BRUME_ENSURE(strcmp(brume__placement__descriptor.methods[i].name, method_names[i]) == 0);
  return handlers;
}
