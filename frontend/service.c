/* The Frontend service: authentication, authorisation, audit, dispatch (service.h). */
#include "service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brume/async.pb-c.h"
#include "brume/frontend.pb-c.h"
#include "log.h"
#include "mem.h"
#include "named_queue.h"
#include "names.h"
#include "reply.h"

void brume_frontend_service_init(brume_frontend_service *svc) {
  atomic_init(&svc->stopping, false);
}

void brume_frontend_service_stop(brume_frontend_service *svc) {
  atomic_store(&svc->stopping, true);
}

/* ---- what each method needs ---- */

typedef enum method_kind {
  KIND_INVOKE,
  KIND_INVOKE_EVENTS,
  KIND_EVENTS,
  KIND_QUEUES,
  KIND_MANAGE,
  KIND_KEYS
} method_kind;

static const char *method_short(brume_rpc_call *call) {
  const char *m = brume_rpc_call_method(call);
  const char *slash = strrchr(m, '/');
  return slash ? slash + 1 : m;
}

static method_kind kind_of(const char *method) {
  if (strcmp(method, "Invoke") == 0) return KIND_INVOKE;
  if (strcmp(method, "InvokeEvents") == 0) return KIND_INVOKE_EVENTS;
  if (strcmp(method, "GetEvent") == 0) return KIND_EVENTS;
  if (strstr(method, "Queue")) return KIND_QUEUES;
  if (strstr(method, "ApiKey")) return KIND_KEYS;
  return KIND_MANAGE;
}

/* Calls that change nothing, which the audit log leaves out when they succeed. */
static bool read_only(const char *method) {
  return strncmp(method, "Get", 3) == 0 || strncmp(method, "List", 4) == 0 ||
         strncmp(method, "Invoke", 6) == 0;
}

/* The request's function_name field, if its message has one (every function call does). */
static const char *function_name_of(const ProtobufCMessage *req) {
  const ProtobufCFieldDescriptor *f =
      protobuf_c_message_descriptor_get_field_by_name(req->descriptor, "function_name");
  if (f == NULL || f->type != PROTOBUF_C_TYPE_STRING) return NULL;
  return *(const char *const *)((const char *)req + f->offset);
}

/* ---- the queued calls ---- */

typedef struct job {
  brume_frontend_service *svc;
  brume_rpc_call *call;
  const ProtobufCMessage *req;
  unsigned method;
  brume_principal who;
  char account[sizeof(((brume_principal *)0)->account_id)];
  char request_id[80];
} job;

static void key_info(const brume_api_key_record *rec, Brume__ApiKeyInfo *info, char **scopes,
                     size_t *n_scopes) {
  static const char *const names[] = {"invoke", "manage", "admin"};
  *n_scopes = 0;
  for (unsigned i = 0; i < 3; i++)
    if (rec->scopes & (1u << i)) scopes[(*n_scopes)++] = (char *)names[i];
  info->key_id = (char *)rec->key_id;
  info->account_id = (char *)rec->account_id;
  info->scopes = scopes;
  info->n_scopes = *n_scopes;
  info->description = (char *)rec->description;
  info->created_unix_ms = rec->created_unix_ms;
}

/* The API key calls. Returns the code answered. */
static brume_status serve_keys(job *j, const char *method) {
  brume_frontend_service *svc = j->svc;
  brume_autoptr(brume_err) err = NULL;
  if (strcmp(method, "CreateApiKey") == 0) {
    const Brume__CreateApiKeyRequest *req = (const void *)j->req;
    unsigned scopes = 0;
    for (size_t i = 0; i < req->n_scopes && err == NULL; i++) {
      unsigned bit;
      if (brume_scopes_parse(req->scopes[i], &bit, &err) == 0) scopes |= bit;
    }
    if (err == NULL && scopes == 0)
      brume_err_set(&err, BRUME_INVALID_ARGUMENT,
                    "scopes must hold at least one of invoke, manage, admin");
    char key[BRUME_API_KEY_STRING_LEN + 1];
    brume_api_key_record rec;
    if (err || brume_check_account_id(req->account_id, "account_id", &err) < 0 ||
        brume_key_store_create(svc->keys, req->account_id, scopes, req->description, key, &rec,
                               &err) < 0) {
      brume_frontend_fail(j->call, err);
      return err->code;
    }
    Brume__ApiKeyInfo info = BRUME__API_KEY_INFO__INIT;
    char *sc[3];
    size_t nsc;
    key_info(&rec, &info, sc, &nsc);
    Brume__CreateApiKeyResponse resp = BRUME__CREATE_API_KEY_RESPONSE__INIT;
    resp.api_key = key;
    resp.key = &info;
    brume_rpc_call_reply(j->call, &resp.base);
    explicit_bzero(key, sizeof(key));
    return BRUME_OK;
  }
  if (strcmp(method, "DeleteApiKey") == 0) {
    const Brume__DeleteApiKeyRequest *req = (const void *)j->req;
    if (brume_key_store_delete(svc->keys, req->key_id, &err) < 0) {
      brume_frontend_fail(j->call, err);
      return err->code;
    }
    Brume__DeleteApiKeyResponse resp = BRUME__DELETE_API_KEY_RESPONSE__INIT;
    brume_rpc_call_reply(j->call, &resp.base);
    return BRUME_OK;
  }
  /* ListApiKeys */
  const Brume__ListApiKeysRequest *req = (const void *)j->req;
  size_t n;
  brume_autofree brume_api_key_record *recs = brume_key_store_list(svc->keys, req->account_id, &n);
  brume_autofree Brume__ApiKeyInfo *infos = brume_xcalloc(n ? n : 1, sizeof(*infos));
  brume_autofree Brume__ApiKeyInfo **ptrs = brume_xcalloc(n ? n : 1, sizeof(*ptrs));
  brume_autofree char **scopes = brume_xcalloc(3 * (n ? n : 1), sizeof(*scopes));
  for (size_t i = 0; i < n; i++) {
    brume__api_key_info__init(&infos[i]);
    size_t ns;
    key_info(&recs[i], &infos[i], scopes + 3 * i, &ns);
    ptrs[i] = &infos[i];
  }
  Brume__ListApiKeysResponse resp = BRUME__LIST_API_KEYS_RESPONSE__INIT;
  resp.keys = ptrs;
  resp.n_keys = n;
  brume_rpc_call_reply(j->call, &resp.base);
  return BRUME_OK;
}

/* The event queue, or NULL and UNAVAILABLE. */
static brume_event_queue *event_queue_of(brume_frontend_service *svc, brume_err **err) {
  brume_event_queue *q = svc->events ? brume_event_accept_queue(svc->events) : NULL;
  if (q == NULL)
    brume_err_set(err, BRUME_UNAVAILABLE,
                  "ServiceUnavailableException: this frontend has no event queue (nats_urls "
                  "unset, or NATS unreachable)");
  return q;
}

/* ListQueues, ReadQueue, DrainQueue (async/named_queue.h), in the caller's account. */
static brume_status serve_queues(job *j, const char *method) {
  brume_autoptr(brume_err) err = NULL;
  brume_event_queue *q = event_queue_of(j->svc, &err);
  if (q && strcmp(method, "ListQueues") == 0) {
    brume_autofree brume_named_queue_info *list = NULL;
    size_t n = 0;
    if (brume_named_queue_list(q, j->account, &list, &n, &err) == 0) {
      brume_autofree Brume__QueueInfo *infos = brume_xcalloc(n + 1, sizeof(*infos));
      brume_autofree Brume__QueueInfo **ptrs = brume_xcalloc(n + 1, sizeof(*ptrs));
      for (size_t i = 0; i < n; i++) {
        brume__queue_info__init(&infos[i]);
        infos[i].name = list[i].name;
        infos[i].messages = list[i].messages;
        ptrs[i] = &infos[i];
      }
      Brume__ListQueuesResponse resp = BRUME__LIST_QUEUES_RESPONSE__INIT;
      resp.queues = ptrs;
      resp.n_queues = n;
      brume_rpc_call_reply(j->call, &resp.base);
      return BRUME_OK;
    }
  } else if (q) {
    bool drain = strcmp(method, "DrainQueue") == 0;
    const Brume__ReadQueueRequest *rq = drain ? NULL : (const void *)j->req;
    const Brume__DrainQueueRequest *dq = drain ? (const void *)j->req : NULL;
    const char *name = drain ? dq->queue_name : rq->queue_name;
    uint32_t max = drain ? dq->max_messages : rq->max_messages;
    uint64_t after = drain ? 0 : rq->after_sequence;
    brume_queue_message *msgs = NULL;
    size_t n = 0;
    if (max > 100)
      brume_err_set(&err, BRUME_INVALID_ARGUMENT,
                    "InvalidParameterValueException: max_messages %u is out of range 1-100", max);
    else if (brume_named_queue_read(q, j->account, name, after + 1, max ? max : 10, &msgs, &n,
                                    &err) == 0 &&
             (!drain || n == 0 ||
              brume_named_queue_remove(q, j->account, name, msgs[n - 1].seq, &err) == 0)) {
      brume_autofree Brume__QueueMessage *qms = brume_xcalloc(n + 1, sizeof(*qms));
      brume_autofree Brume__QueueMessage **ptrs = brume_xcalloc(n + 1, sizeof(*ptrs));
      for (size_t i = 0; i < n; i++) {
        brume__queue_message__init(&qms[i]);
        qms[i].sequence = msgs[i].seq;
        qms[i].body.data = (uint8_t *)msgs[i].data;
        qms[i].body.len = msgs[i].len;
        ptrs[i] = &qms[i];
      }
      /* The two responses have the same one field. */
      Brume__ReadQueueResponse resp = BRUME__READ_QUEUE_RESPONSE__INIT;
      Brume__DrainQueueResponse dresp = BRUME__DRAIN_QUEUE_RESPONSE__INIT;
      resp.messages = dresp.messages = ptrs;
      resp.n_messages = dresp.n_messages = n;
      brume_rpc_call_reply(j->call, drain ? &dresp.base : &resp.base);
      brume_queue_messages_free(msgs, n);
      return BRUME_OK;
    }
    brume_queue_messages_free(msgs, n);
  }
  brume_frontend_fail(j->call, err);
  return err->code;
}

/* GetEvent: the event's state from the event queue, if it is the caller's account's. */
static brume_status serve_event(job *j) {
  const Brume__GetEventRequest *req = (const void *)j->req;
  brume_autoptr(brume_err) err = NULL;
  brume_event_queue *q = event_queue_of(j->svc, &err);
  brume_autofree void *data = NULL;
  size_t len = 0;
  Brume__EventRecord *rec = NULL;
  if (q && brume_event_state_get(q, req->event_id, &data, &len, &err) == 0) {
    rec = brume__event_record__unpack(NULL, len, data);
    /* Another account's event is answered as no event at all. */
    if (rec == NULL || strcmp(rec->account_id, j->account) != 0)
      brume_err_set(&err, BRUME_NOT_FOUND, "ResourceNotFoundException: no event %s", req->event_id);
  }
  if (err) {
    brume__event_record__free_unpacked(rec, NULL);
    brume_frontend_fail(j->call, err);
    return err->code;
  }
  Brume__GetEventResponse resp = BRUME__GET_EVENT_RESPONSE__INIT;
  resp.event = rec;
  brume_rpc_call_reply(j->call, &resp.base);
  brume__event_record__free_unpacked(rec, NULL);
  return BRUME_OK;
}

static void job_run(void *arg) {
  brume_autofree job *j = arg;
  /* Copied: the call and its request are gone once it is answered, and the audit comes after. */
  brume_autofree char *method = brume_xstrdup(method_short(j->call));
  const char *name = function_name_of(j->req);
  brume_autofree char *fn = name ? brume_xstrdup(name) : NULL;
  brume_status code;
  method_kind kind = kind_of(method);
  if (kind == KIND_KEYS)
    code = serve_keys(j, method);
  else if (kind == KIND_EVENTS)
    code = serve_event(j);
  else if (kind == KIND_QUEUES)
    code = serve_queues(j, method);
  else
    code = brume_manage_serve(j->svc->manage, j->call, j->method, j->req, j->account, &j->who);
  if (!read_only(method) || code == BRUME_PERMISSION_DENIED)
    brume_audit_record(j->svc->audit, j->request_id, &j->who, method, fn, code, NULL);
}

/* ---- the entry point of every call ---- */

static void refuse(brume_frontend_service *svc, brume_rpc_call *call, const char *request_id,
                   const brume_principal *who, const char *method, const char *resource,
                   const brume_err *err) {
  brume_audit_record(svc->audit, request_id, who, method, resource, err->code, err->msg);
  brume_frontend_fail(call, err);
}

static void handle(brume_rpc_call *call, const ProtobufCMessage *request, void *user) {
  brume_frontend_service *svc = user;
  if (atomic_load(&svc->stopping)) {
    brume_rpc_call_fail(call, BRUME_UNAVAILABLE,
                        "ServiceUnavailableException: this frontend is shutting down");
    return;
  }
  const char *method = method_short(call);
  const ProtobufCMethodDescriptor *md =
      protobuf_c_service_descriptor_get_method_by_name(&brume__frontend__descriptor, method);
  BRUME_ENSURE(md != NULL);
  brume_autoptr(brume_err) err = NULL;
  char request_id[80];
  if (brume_request_id(brume_rpc_call_metadata(call, BRUME_MD_REQUEST_ID), "x-request-id",
                       request_id, &err) < 0) {
    brume_frontend_fail(call, err);
    return;
  }
  const char *fn = function_name_of(request);
  brume_principal who;
  if (brume_key_store_authenticate(svc->keys, brume_rpc_call_metadata(call, BRUME_MD_API_KEY), &who,
                                   &err) < 0) {
    refuse(svc, call, request_id, NULL, method, fn, err);
    return;
  }
  method_kind kind = kind_of(method);
  unsigned needs = kind == KIND_INVOKE || kind == KIND_INVOKE_EVENTS || kind == KIND_EVENTS
                       ? BRUME_SCOPE_INVOKE
                   : kind == KIND_MANAGE || kind == KIND_QUEUES ? BRUME_SCOPE_MANAGE
                                                                : BRUME_SCOPE_ADMIN;
  if (!brume_api_key_allows(who.scopes, needs)) {
    char have[64];
    brume_err_set(&err, BRUME_PERMISSION_DENIED,
                  "AccessDeniedException: %s needs an API key with the %s scope; key %s has %s",
                  method,
                  needs == BRUME_SCOPE_INVOKE   ? "invoke"
                  : needs == BRUME_SCOPE_MANAGE ? "manage"
                                                : "admin",
                  who.key_id, brume_scopes_format(who.scopes, have, sizeof(have)));
    refuse(svc, call, request_id, &who, method, fn, err);
    return;
  }
  /* The account the call acts for: the key's, or the one an ARN names (admin only). */
  brume_function_name parsed = {0};
  if (fn) {
    if (brume_function_name_parse(fn, svc->region, "function_name", &parsed, &err) < 0) {
      brume_frontend_fail(call, err);
      return;
    }
    if (parsed.account_id[0] && strcmp(parsed.account_id, who.account_id) != 0 &&
        !brume_api_key_allows(who.scopes, BRUME_SCOPE_ADMIN)) {
      brume_err_set(&err, BRUME_PERMISSION_DENIED,
                    "AccessDeniedException: key %s (account %s) may not act on account %s's "
                    "functions",
                    who.key_id, who.account_id, parsed.account_id);
      refuse(svc, call, request_id, &who, method, fn, err);
      return;
    }
  }
  const char *account = parsed.account_id[0] ? parsed.account_id : who.account_id;

  if (kind == KIND_INVOKE || kind == KIND_INVOKE_EVENTS) {
    /* Either request's qualifier field; an ARN may name one instead. */
    const char *qualifier = kind == KIND_INVOKE
                                ? ((const Brume__InvokeRequest *)request)->qualifier
                                : ((const Brume__InvokeEventsRequest *)request)->qualifier;
    if (parsed.qualifier[0]) {
      if (qualifier[0] && strcmp(qualifier, parsed.qualifier) != 0) {
        brume_err_set(&err, BRUME_INVALID_ARGUMENT,
                      "InvalidParameterValueException: the ARN's qualifier %s and the qualifier "
                      "field %s differ",
                      parsed.qualifier, qualifier);
        brume_frontend_fail(call, err);
        return;
      }
      qualifier = parsed.qualifier;
    }
    bool event =
        kind == KIND_INVOKE_EVENTS || ((const Brume__InvokeRequest *)request)->invocation_type ==
                                          BRUME__INVOCATION_TYPE__INVOCATION_TYPE_EVENT;
    if (event && svc->events == NULL) {
      brume_frontend_failf(call, BRUME_UNAVAILABLE,
                           "ServiceUnavailableException: this frontend takes no Event "
                           "(asynchronous) invocations: its nats_urls is not set");
      return;
    }
    if (kind == KIND_INVOKE_EVENTS) {
      brume_event_accept_batch(svc->events, call, (const void *)request, account, parsed.name,
                               qualifier, request_id);
      return;
    }
    const Brume__InvokeRequest *req = (const void *)request;
    const char *idem_key = req->idempotency_key;
    if (*idem_key && brume_idempotency_check_key(idem_key, &err) < 0) {
      brume_frontend_fail(call, err);
      return;
    }
    if (event) {
      brume_event_accept_start(svc->events, call, req, account, parsed.name, qualifier, request_id);
      return;
    }
    if (*idem_key && req->invocation_type != BRUME__INVOCATION_TYPE__INVOCATION_TYPE_DRY_RUN) {
      if (svc->idempotency == NULL) {
        brume_frontend_failf(call, BRUME_UNAVAILABLE,
                             "ServiceUnavailableException: this frontend keeps no idempotency "
                             "keys: they live in NATS, and its nats_urls is not set");
        return;
      }
      brume_idempotency_start(svc->idempotency, call, req, account, parsed.name, qualifier,
                              request_id);
      return;
    }
    brume_invoker_start(svc->invoker, call, req, account, parsed.name, qualifier, request_id);
    return;
  }
  job *j = brume_xcalloc(1, sizeof(*j));
  *j = (job){.svc = svc,
             .call = call,
             .req = request,
             .method = (unsigned)(md - brume__frontend__descriptor.methods),
             .who = who};
  snprintf(j->account, sizeof(j->account), "%s", account);
  snprintf(j->request_id, sizeof(j->request_id), "%s", request_id);
  if (brume_workq_push(svc->wq, job_run, j, &err) < 0) {
    free(j);
    brume_frontend_fail(call, err);
  }
}

static brume_rpc_handler handlers[64];

const brume_rpc_handler *brume_frontend_service_handlers(void) {
  BRUME_ENSURE(brume__frontend__descriptor.n_methods <= BRUME_ARRAY_LEN(handlers));
  for (size_t i = 0; i < brume__frontend__descriptor.n_methods; i++) handlers[i] = handle;
  return handlers;
}
