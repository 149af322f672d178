/* Asynchronous invocations end to end (issue 9, docs/async.md): a real nats-server with
 * JetStream, a real etcd, one brume-worker running real microVMs, brume-placement,
 * brume-counting and a brume-frontend that accepts Event invocations and delivers them, on a
 * clock 60 times fast (async_time_scale 60: the minute before a retry is a second). Driven only
 * through the Frontend API, as a client would:
 *
 *   - an event to a healthy function runs once and ends SUCCEEDED, its one try recorded;
 *   - an event to a function that always fails runs exactly 3 times (the first run and 2
 *     retries), about 1 and then 2 scaled minutes apart (+-20 % jitter), and ends FAILED with
 *     RetriesExhausted, each try's error recorded;
 *   - GetEvent: another account's event is not found, a malformed id is refused;
 *   - settings and destinations: a success's record lands in its on_success queue with the
 *     request and the response; a failure's in its on_failure queue with RetriesExhausted and the
 *     three errors; with MaximumRetryAttempts 0 the function runs once; a function with reserved
 *     concurrency 0 and a maximum age of 60 s never runs, is redelivered with backoff, and lands
 *     in on_failure with EventAgeExceeded; a function destination gets the record as an Event
 *     invocation; bad input (a 300 KiB payload, 3 retries, an age of 30 s, a destination function
 *     that does not exist, a malformed queue) is refused with a precise error; the queues listed,
 *     one drained, and none shown to another account;
 *   - idempotency keys: a RequestResponse invocation with a key run once, the second request
 *     answered the first's answer without a run; two at once on a run that lasts 5 s: one run,
 *     both answered alike; two Event invocations with one key: one event id, one run; a
 *     malformed key refused;
 *   - 1,000 events sent at a steady pace while the frontend that accepts and delivers them is
 *     killed with SIGKILL and started again (the client sends a refused event again with the
 *     same request id, as clients do): every accepted event ends SUCCEEDED (losses: must be 0),
 *     and the runs of one event beyond its first (from the worker's log) are reported.
 *
 * How often a function ran comes from the worker's own log ("Invocation done." with the request
 * id, at log level debug), not from the frontend's account of it. Exit 77 (skip) when not root,
 * libvirtd does not answer, or etcd is absent; nats-server missing is a failure
 * (deploy/install-deps.sh installs it). */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>
#include <jansson.h>

#include "brume/async.pb-c.h"
#include "brume/frontend.pb-c.h"
#include "clock.h"
#include "cluster_fixture.h"
#include "log.h"
#include "nats_server.h"
#include "testutil.h"

#define ACCOUNT "acct-async"
#define TIME_SCALE 60
#define BURST_EVENTS 1000

static brume_test_cluster *c;
static brume_test_nats *nats;
static char admin_key[160], key[160], other_key[160];
static char frontend_extra_urls[160];
static const char *frontend_extra[] = {"--nats_urls",
                                       frontend_extra_urls,
                                       "--async_workers",
                                       "4",
                                       "--async_time_scale",
                                       "60",
                                       "--async_ack_wait",
                                       "3s",
                                       NULL};

static void free_msg(void *m) {
  if (m) protobuf_c_message_free_unpacked(m, NULL);
}

/* An Event invocation of fn with payload as request_id; its event id into event_id (>= 40). */
static int send_event(brume_rpc_client *client, const char *fn, const char *payload,
                      const char *request_id, char *event_id, brume_err **err) {
  Brume__InvokeRequest req = BRUME__INVOKE_REQUEST__INIT;
  req.function_name = (char *)fn;
  req.invocation_type = BRUME__INVOCATION_TYPE__INVOCATION_TYPE_EVENT;
  req.payload.data = (uint8_t *)payload;
  req.payload.len = strlen(payload);
  Brume__InvokeResponse *resp = NULL;
  brume_rpc_call_opts o = {.deadline_ms = 30000, .api_key = key, .request_id = request_id};
  const ProtobufCMethodDescriptor *m =
      protobuf_c_service_descriptor_get_method_by_name(&brume__frontend__descriptor, "Invoke");
  if (brume_rpc_unary(client, &brume__frontend__descriptor,
                      (unsigned)(m - brume__frontend__descriptor.methods), &req.base,
                      (ProtobufCMessage **)&resp, &o, err) < 0)
    return -1;
  if (resp->status_code != 202 || strncmp(resp->event_id, "evt-", 4) != 0)
    fail_msg("an Event invocation answered %u with event id \"%s\"", resp->status_code,
             resp->event_id);
  snprintf(event_id, 40, "%s", resp->event_id);
  free_msg(resp);
  return 0;
}

/* The event's state as GetEvent answers it with k, or NULL with err. */
static Brume__EventRecord *get_event(const char *k, const char *event_id, brume_err **err) {
  Brume__GetEventRequest req = BRUME__GET_EVENT_REQUEST__INIT;
  req.event_id = (char *)event_id;
  Brume__GetEventResponse *resp = NULL;
  if (brume_test_cluster_frontend_call(c, "GetEvent", k, NULL, &req, &resp, err) < 0) return NULL;
  Brume__EventRecord *rec = resp->event;
  resp->event = NULL;
  free_msg(resp);
  if (rec == NULL) fail_msg("GetEvent answered no event for %s", event_id);
  return rec;
}

static bool ended(const Brume__EventRecord *r) {
  return r->state == BRUME__EVENT_STATE__EVENT_SUCCEEDED ||
         r->state == BRUME__EVENT_STATE__EVENT_FAILED;
}

/* Waits up to timeout_ms for the event to end; its final state. */
static Brume__EventRecord *wait_ended(const char *event_id, int64_t timeout_ms) {
  int64_t until = brume_mono_ms() + timeout_ms;
  for (;;) {
    brume_err *err = NULL;
    Brume__EventRecord *r = get_event(key, event_id, &err);
    if (r && ended(r)) return r;
    if (brume_mono_ms() > until)
      fail_msg("event %s did not end within %lld ms (state %d; %s)", event_id,
               (long long)timeout_ms, r ? (int)r->state : -1, err ? err->msg : "-");
    free_msg(r);
    brume_err_free(err);
    usleep(100 * 1000);
  }
}

/* How many times the worker ran an invocation with request_id, from its log. */
static int runs_of(const char *request_id) {
  char cmd[1024];
  snprintf(cmd, sizeof(cmd),
           "grep -c 'msg=\"Invocation done.\" request_id=%s ' '%s/worker.log'; true", request_id,
           c->workers[0]->dir);
  brume_autofree char *line = brume_test_last_line(cmd);
  return line ? atoi(line) : -1;
}

/* ---- the tests ---- */

static void test_runs_once(void **state) {
  (void)state;
  brume_err *err = NULL;
  if (brume_test_cluster_create_echo(c, key, "echo", 5000, &err) < 0)
    fail_msg("CreateFunction: %s", err->msg);
  char id[40];
  if (send_event(c->frontend.client, "echo", "hello", "async-once", id, &err) < 0)
    fail_msg("Event invocation: %s", err->msg);
  /* A cold start under TCG: up to a minute. */
  Brume__EventRecord *r = wait_ended(id, 120000);
  assert_int_equal(r->state, BRUME__EVENT_STATE__EVENT_SUCCEEDED);
  assert_string_equal(r->event_id, id);
  assert_string_equal(r->function_name, "echo");
  assert_string_equal(r->request_id, "async-once");
  assert_int_equal(r->attempts, 0);
  assert_int_equal(r->n_tries, 1);
  assert_string_equal(r->tries[0]->outcome, "succeeded");
  assert_string_equal(r->tries[0]->executed_version, "$LATEST");
  assert_string_equal(r->tries[0]->delivered_by, c->frontend.daemon_id);
  assert_true(r->tries[0]->began_unix_ms >= r->accepted_unix_ms);
  assert_true(r->tries[0]->ended_unix_ms >= r->tries[0]->began_unix_ms);
  free_msg(r);
  assert_int_equal(runs_of("async-once"), 1);
}

static void test_retries_exhausted(void **state) {
  (void)state;
  brume_err *err = NULL;
  char id[40];
  if (send_event(c->frontend.client, "echo", "fail", "async-fail", id, &err) < 0)
    fail_msg("Event invocation: %s", err->msg);
  Brume__EventRecord *r = wait_ended(id, 60000);
  assert_int_equal(r->state, BRUME__EVENT_STATE__EVENT_FAILED);
  assert_string_equal(r->condition, "RetriesExhausted");
  assert_int_equal(r->attempts, 3);
  assert_int_equal(r->n_tries, 3);
  for (size_t i = 0; i < 3; i++) {
    assert_string_equal(r->tries[i]->outcome, "function_error");
    /* The echo runtime's error for "fail" (tests/guest_init/echo_runtime.c). */
    if (strstr(r->tries[i]->error, "Echo.Failed") == NULL)
      fail_msg("try %zu's error is not the function's: \"%s\"", i + 1, r->tries[i]->error);
  }
  /* Retry k comes k scaled minutes (60 s / 60) after the try before it ended, +-20 %; the upper
   * bound leaves 500 ms for the redelivery itself (a fetch, the state read and written). */
  for (size_t k = 1; k <= 2; k++) {
    int64_t gap = r->tries[k]->began_unix_ms - r->tries[k - 1]->ended_unix_ms;
    int64_t base = (int64_t)k * 60000 / TIME_SCALE;
    fprintf(stderr, "retry %zu came %lld ms after try %zu ended (%lld +- 20 %%)\n", k,
            (long long)gap, k, (long long)base);
    if (gap < base * 8 / 10 || gap > base * 12 / 10 + 500)
      fail_msg("retry %zu came %lld ms after the try before it; the policy says %lld +- 20 %%", k,
               (long long)gap, (long long)base);
  }
  free_msg(r);
  assert_int_equal(runs_of("async-fail"), 3);
}

static void test_get_event_refusals(void **state) {
  (void)state;
  brume_err *err = NULL;
  char id[40];
  if (send_event(c->frontend.client, "echo", "mine", "async-mine", id, &err) < 0)
    fail_msg("Event invocation: %s", err->msg);
  free_msg(wait_ended(id, 60000));
  /* Another account's key: as if there were no such event. */
  assert_null(get_event(other_key, id, &err));
  assert_int_equal(err->code, BRUME_NOT_FOUND);
  brume_err_clear(&err);
  assert_null(get_event(key, "evt-0000000000000000000000000000dead", &err));
  assert_int_equal(err->code, BRUME_NOT_FOUND);
  brume_err_clear(&err);
  assert_null(get_event(key, "no such.id", &err));
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_clear(&err);
}

/* ---- settings and destinations ---- */

/* Sets fn's $LATEST settings; 0 or -1 with err. */
static int put_config(const char *fn, int retries, uint32_t age_s, const char *on_success,
                      const char *on_failure, brume_err **err) {
  Brume__PutFunctionEventInvokeConfigRequest req =
      BRUME__PUT_FUNCTION_EVENT_INVOKE_CONFIG_REQUEST__INIT;
  req.function_name = (char *)fn;
  req.maximum_retry_attempts = retries;
  req.maximum_event_age_s = age_s;
  req.on_success = (char *)on_success;
  req.on_failure = (char *)on_failure;
  Brume__PutFunctionEventInvokeConfigResponse *resp = NULL;
  if (brume_test_cluster_frontend_call(c, "PutFunctionEventInvokeConfig", key, NULL, &req, &resp,
                                       err) < 0)
    return -1;
  free_msg(resp);
  return 0;
}

/* The record for event_id in queue (parsed; caller frees), or NULL when it is not there. */
static json_t *queue_record(const char *queue, const char *event_id) {
  Brume__ReadQueueRequest req = BRUME__READ_QUEUE_REQUEST__INIT;
  req.queue_name = (char *)queue;
  req.max_messages = 100;
  for (;;) {
    Brume__ReadQueueResponse *resp = NULL;
    brume_err *err = NULL;
    if (brume_test_cluster_frontend_call(c, "ReadQueue", key, NULL, &req, &resp, &err) < 0)
      fail_msg("ReadQueue %s: %s", queue, err->msg);
    json_t *found = NULL;
    for (size_t i = 0; i < resp->n_messages && !found; i++) {
      json_t *r = json_loadb((const char *)resp->messages[i]->body.data,
                             resp->messages[i]->body.len, 0, NULL);
      if (r == NULL) fail_msg("a record in queue %s is not JSON", queue);
      const char *id =
          json_string_value(json_object_get(json_object_get(r, "requestContext"), "eventId"));
      if (id && strcmp(id, event_id) == 0)
        found = r;
      else
        json_decref(r);
    }
    size_t n = resp->n_messages;
    if (n) req.after_sequence = resp->messages[n - 1]->sequence;
    free_msg(resp);
    if (found || n < 100) return found;
  }
}

static const char *record_condition(json_t *r) {
  return json_string_value(json_object_get(json_object_get(r, "requestContext"), "condition"));
}

static void test_on_success_record(void **state) {
  (void)state;
  brume_err *err = NULL;
  if (put_config("echo", -1, 0, "queue:ok", "queue:failed", &err) < 0)
    fail_msg("PutFunctionEventInvokeConfig: %s", err->msg);
  char id[40];
  if (send_event(c->frontend.client, "echo", "{\"hello\": \"destinations\"}", "async-ok", id,
                 &err) < 0)
    fail_msg("Event invocation: %s", err->msg);
  Brume__EventRecord *e = wait_ended(id, 60000);
  assert_int_equal(e->state, BRUME__EVENT_STATE__EVENT_SUCCEEDED);
  free_msg(e);
  json_t *r = queue_record("ok", id);
  if (r == NULL) fail_msg("no record of %s in queue ok", id);
  assert_string_equal(record_condition(r), "Success");
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(r, "requestPayload"), "hello")),
      "destinations");
  /* The echo runtime answers a payload that is no keyword with it and a count. */
  const char *answer = json_string_value(json_object_get(r, "responsePayload"));
  if (answer == NULL || strstr(answer, "destinations") == NULL)
    fail_msg("the record's responsePayload is not the function's answer");
  json_decref(r);
  assert_null(queue_record("failed", id));
  assert_int_equal(runs_of("async-ok"), 1);
}

static void test_on_failure_record(void **state) {
  (void)state;
  brume_err *err = NULL;
  char id[40];
  if (send_event(c->frontend.client, "echo", "fail", "async-failed", id, &err) < 0)
    fail_msg("Event invocation: %s", err->msg);
  Brume__EventRecord *e = wait_ended(id, 60000);
  assert_int_equal(e->state, BRUME__EVENT_STATE__EVENT_FAILED);
  free_msg(e);
  json_t *r = queue_record("failed", id);
  if (r == NULL) fail_msg("no record of %s in queue failed", id);
  assert_string_equal(record_condition(r), "RetriesExhausted");
  assert_int_equal(json_integer_value(json_object_get(r, "attempts")), 3);
  json_t *tries = json_object_get(r, "tries");
  assert_int_equal(json_array_size(tries), 3);
  for (size_t i = 0; i < 3; i++)
    if (strstr(json_string_value(json_object_get(json_array_get(tries, i), "error")),
               "Echo.Failed") == NULL)
      fail_msg("try %zu of the record holds no function error", i + 1);
  json_decref(r);
  assert_int_equal(runs_of("async-failed"), 3);
}

static void test_no_retries(void **state) {
  (void)state;
  brume_err *err = NULL;
  if (put_config("echo", 0, 0, "", "queue:failed", &err) < 0)
    fail_msg("PutFunctionEventInvokeConfig: %s", err->msg);
  char id[40];
  if (send_event(c->frontend.client, "echo", "fail", "async-once-only", id, &err) < 0)
    fail_msg("Event invocation: %s", err->msg);
  Brume__EventRecord *e = wait_ended(id, 60000);
  assert_int_equal(e->state, BRUME__EVENT_STATE__EVENT_FAILED);
  assert_string_equal(e->condition, "RetriesExhausted");
  assert_int_equal(e->attempts, 1);
  free_msg(e);
  json_t *r = queue_record("failed", id);
  assert_non_null(r);
  json_decref(r);
  assert_int_equal(runs_of("async-once-only"), 1);
}

static void test_throttled_until_too_old(void **state) {
  (void)state;
  brume_err *err = NULL;
  if (brume_test_cluster_create_echo(c, key, "switched-off", 5000, &err) < 0)
    fail_msg("CreateFunction: %s", err->msg);
  Brume__PutFunctionConcurrencyRequest rc = BRUME__PUT_FUNCTION_CONCURRENCY_REQUEST__INIT;
  rc.function_name = "switched-off";
  rc.reserved_concurrent_executions = 0;
  Brume__PutFunctionConcurrencyResponse *rcr = NULL;
  if (brume_test_cluster_frontend_call(c, "PutFunctionConcurrency", key, NULL, &rc, &rcr, &err) < 0)
    fail_msg("PutFunctionConcurrency: %s", err->msg);
  free_msg(rcr);
  /* 60 s on a clock 60 times fast: a second. */
  if (put_config("switched-off", -1, 60, "", "queue:aged", &err) < 0)
    fail_msg("PutFunctionEventInvokeConfig: %s", err->msg);
  char id[40];
  int64_t t0 = brume_mono_ms();
  if (send_event(c->frontend.client, "switched-off", "never", "async-aged", id, &err) < 0)
    fail_msg("Event invocation: %s", err->msg);
  Brume__EventRecord *e = wait_ended(id, 30000);
  fprintf(stderr, "throttled event failed after %lld ms: %u backoffs\n",
          (long long)(brume_mono_ms() - t0), e->backoffs);
  assert_int_equal(e->state, BRUME__EVENT_STATE__EVENT_FAILED);
  assert_string_equal(e->condition, "EventAgeExceeded");
  assert_int_equal(e->attempts, 0);
  /* Redelivered with backoff: 17, 33, 67, 133 ... ms on this clock, so several within the second.
   */
  assert_true(e->backoffs >= 3);
  for (size_t i = 0; i < e->n_tries; i++) assert_string_equal(e->tries[i]->outcome, "throttled");
  free_msg(e);
  json_t *r = queue_record("aged", id);
  if (r == NULL) fail_msg("no record of %s in queue aged", id);
  assert_string_equal(record_condition(r), "EventAgeExceeded");
  json_decref(r);
  assert_int_equal(runs_of("async-aged"), 0);
}

static void test_function_destination(void **state) {
  (void)state;
  brume_err *err = NULL;
  if (brume_test_cluster_create_echo(c, key, "sink", 5000, &err) < 0)
    fail_msg("CreateFunction: %s", err->msg);
  if (put_config("echo", -1, 0, "function:sink", "", &err) < 0)
    fail_msg("PutFunctionEventInvokeConfig: %s", err->msg);
  char id[40];
  if (send_event(c->frontend.client, "echo", "onward", "async-onward", id, &err) < 0)
    fail_msg("Event invocation: %s", err->msg);
  free_msg(wait_ended(id, 60000));
  /* The record is an Event invocation of sink, with the request id <event id>-success. */
  char rid[64];
  snprintf(rid, sizeof(rid), "%s-success", id);
  int64_t until = brume_mono_ms() + 120000;
  while (runs_of(rid) < 1 && brume_mono_ms() < until) usleep(200 * 1000);
  assert_int_equal(runs_of(rid), 1);
}

static void test_bad_input(void **state) {
  (void)state;
  brume_err *err = NULL;
  char id[40];
  char *big = malloc(300 * 1024 + 1);
  memset(big, 'x', 300 * 1024);
  big[300 * 1024] = '\0';
  assert_int_equal(send_event(c->frontend.client, "echo", big, "async-big", id, &err), -1);
  free(big);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  assert_non_null(strstr(err->msg, "RequestTooLargeException"));
  brume_err_clear(&err);
  struct {
    int retries;
    uint32_t age;
    const char *on_failure, *says;
  } bad[] = {{3, 0, "", "MaximumRetryAttempts"},
             {-1, 30, "", "MaximumEventAgeInSeconds"},
             {-1, 0, "function:no-such-function", "does not exist"},
             {-1, 0, "queue:a.b", "on_failure"}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(put_config("echo", bad[i].retries, bad[i].age, "", bad[i].on_failure, &err),
                     -1);
    if (err->code != BRUME_INVALID_ARGUMENT || strstr(err->msg, bad[i].says) == NULL)
      fail_msg("case %zu: %s %s; wanted INVALID_ARGUMENT ... %s", i, brume_status_name(err->code),
               err->msg, bad[i].says);
    brume_err_clear(&err);
  }
  /* A qualifier without settings of its own. */
  Brume__GetFunctionEventInvokeConfigRequest g =
      BRUME__GET_FUNCTION_EVENT_INVOKE_CONFIG_REQUEST__INIT;
  g.function_name = "sink";
  Brume__GetFunctionEventInvokeConfigResponse *gr = NULL;
  assert_int_equal(
      brume_test_cluster_frontend_call(c, "GetFunctionEventInvokeConfig", key, NULL, &g, &gr, &err),
      -1);
  assert_int_equal(err->code, BRUME_NOT_FOUND);
  brume_err_clear(&err);
}

static void test_queue_list_drain(void **state) {
  (void)state;
  brume_err *err = NULL;
  Brume__DrainQueueRequest dr = BRUME__DRAIN_QUEUE_REQUEST__INIT;
  dr.queue_name = "ok";
  dr.max_messages = 100;
  Brume__DrainQueueResponse *d = NULL;
  if (brume_test_cluster_frontend_call(c, "DrainQueue", key, NULL, &dr, &d, &err) < 0)
    fail_msg("DrainQueue: %s", err->msg);
  assert_int_equal(d->n_messages, 1); /* test_on_success_record's */
  free_msg(d);
  Brume__ListQueuesRequest lr = BRUME__LIST_QUEUES_REQUEST__INIT;
  Brume__ListQueuesResponse *l = NULL;
  if (brume_test_cluster_frontend_call(c, "ListQueues", key, NULL, &lr, &l, &err) < 0)
    fail_msg("ListQueues: %s", err->msg);
  bool ok_listed = false;
  uint64_t failed = 0, aged = 0;
  for (size_t i = 0; i < l->n_queues; i++) {
    if (strcmp(l->queues[i]->name, "ok") == 0) ok_listed = true;
    if (strcmp(l->queues[i]->name, "failed") == 0) failed = l->queues[i]->messages;
    if (strcmp(l->queues[i]->name, "aged") == 0) aged = l->queues[i]->messages;
  }
  free_msg(l);
  assert_false(ok_listed); /* drained */
  assert_int_equal(failed, 2);
  assert_int_equal(aged, 1);
  /* Another account sees none of them. */
  assert_int_equal(
      brume_test_cluster_frontend_call(c, "ListQueues", other_key, NULL, &lr, &l, &err), 0);
  assert_int_equal(l->n_queues, 0);
  free_msg(l);
}

/* ---- idempotency keys ---- */

/* Invoke with an idempotency key (sync, or Event when event is true) as request_id. */
static Brume__InvokeResponse *invoke_keyed(const char *payload, const char *idem_key,
                                           const char *request_id, bool event, brume_err **err) {
  Brume__InvokeRequest req = BRUME__INVOKE_REQUEST__INIT;
  req.function_name = "echo";
  req.payload.data = (uint8_t *)payload;
  req.payload.len = strlen(payload);
  req.idempotency_key = (char *)idem_key;
  if (event) req.invocation_type = BRUME__INVOCATION_TYPE__INVOCATION_TYPE_EVENT;
  Brume__InvokeResponse *resp = NULL;
  if (brume_test_cluster_frontend_call(c, "Invoke", key, request_id, &req, &resp, err) < 0)
    return NULL;
  return resp;
}

typedef struct keyed_caller {
  const char *payload, *idem_key, *request_id;
  Brume__InvokeResponse *resp;
  brume_err *err;
} keyed_caller;

static void *keyed_run(void *arg) {
  keyed_caller *k = arg;
  k->resp = invoke_keyed(k->payload, k->idem_key, k->request_id, false, &k->err);
  return NULL;
}

static void test_idempotency(void **state) {
  (void)state;
  brume_err *err = NULL;
  /* One after the other: the second gets the first's answer, and nothing runs. */
  Brume__InvokeResponse *a = invoke_keyed("same", "order-1", "idem-a", false, &err);
  if (a == NULL) fail_msg("Invoke: %s", err->msg);
  Brume__InvokeResponse *b = invoke_keyed("same", "order-1", "idem-b", false, &err);
  if (b == NULL) fail_msg("Invoke: %s", err->msg);
  assert_int_equal(a->payload.len, b->payload.len);
  assert_memory_equal(a->payload.data, b->payload.data, a->payload.len);
  assert_string_equal(b->request_id, "idem-a"); /* the answer of the request that ran */
  free_msg(a);
  free_msg(b);
  assert_int_equal(runs_of("idem-a"), 1);
  assert_int_equal(runs_of("idem-b"), 0);

  /* At once, on a run that lasts (the echo runtime sleeps past echo's 5 s timeout): the second
   * waits for the first's answer, a timeout, and gets it too. */
  keyed_caller k[2] = {{"sleep", "order-2", "idem-c", NULL, NULL},
                       {"sleep", "order-2", "idem-d", NULL, NULL}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&t[i], NULL, keyed_run, &k[i]), 0);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < 2; i++) {
    if (k[i].resp == NULL) fail_msg("caller %d: %s", i, k[i].err->msg);
    if (k[i].resp->function_error == NULL) fail_msg("caller %d: no timeout", i);
  }
  assert_string_equal(k[0].resp->request_id, k[1].resp->request_id);
  assert_int_equal(k[0].resp->payload.len, k[1].resp->payload.len);
  assert_memory_equal(k[0].resp->payload.data, k[1].resp->payload.data, k[0].resp->payload.len);
  for (int i = 0; i < 2; i++) free_msg(k[i].resp);
  assert_int_equal(runs_of("idem-c") + runs_of("idem-d"), 1);

  /* Event: the same key is the same event, queued and run once. */
  Brume__InvokeResponse *e1 = invoke_keyed("once", "order-3", "idem-e1", true, &err);
  if (e1 == NULL) fail_msg("Invoke (Event): %s", err->msg);
  Brume__InvokeResponse *e2 = invoke_keyed("once", "order-3", "idem-e2", true, &err);
  if (e2 == NULL) fail_msg("Invoke (Event): %s", err->msg);
  assert_string_equal(e1->event_id, e2->event_id);
  free_msg(wait_ended(e1->event_id, 60000));
  free_msg(e1);
  free_msg(e2);
  assert_int_equal(runs_of("idem-e1"), 1);
  assert_int_equal(runs_of("idem-e2"), 0);

  /* A key with a space. */
  assert_null(invoke_keyed("x", "order 4", "idem-f", false, &err));
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  assert_non_null(strstr(err->msg, "idempotency_key"));
  brume_err_clear(&err);
}

/* The burst's sender: BURST_EVENTS events at a steady pace, each sent again (same request id)
 * until accepted. */
typedef struct burst {
  char ids[BURST_EVENTS][40];
  int refused; /* sends refused (the frontend down), sent again */
  char target[64];
} burst;

static void *send_burst(void *arg) {
  burst *b = arg;
  brume_err *err = NULL;
  brume_rpc_client *client = brume_rpc_client_new(b->target, NULL, &err);
  if (client == NULL) {
    fprintf(stderr, "burst client: %s\n", err->msg);
    brume_err_free(err);
    return NULL;
  }
  for (int i = 0; i < BURST_EVENTS; i++) {
    char rid[32], payload[32];
    snprintf(rid, sizeof(rid), "async-burst-%04d", i);
    snprintf(payload, sizeof(payload), "burst %d", i);
    while (send_event(client, "echo", payload, rid, b->ids[i], &err) < 0) {
      b->refused++;
      brume_err_clear(&err);
      usleep(100 * 1000);
    }
    usleep(5 * 1000);
  }
  brume_rpc_client_free(client);
  return NULL;
}

static void test_kill9_while_delivering(void **state) {
  (void)state;
  brume_err *cerr = NULL;
  if (put_config("echo", -1, 0, "", "", &cerr) < 0) fail_msg("reset: %s", cerr->msg);
  burst *b = calloc(1, sizeof(*b));
  snprintf(b->target, sizeof(b->target), "127.0.0.1:%d", c->frontend.rpc_port);
  pthread_t sender;
  assert_int_equal(pthread_create(&sender, NULL, send_burst, b), 0);
  /* Let it accept and deliver for a while, then kill the frontend mid-way. */
  sleep(3);
  int64_t t_kill = brume_mono_ms();
  brume_test_cluster_stop_daemon(&c->frontend, SIGKILL);
  fprintf(stderr, "frontend killed with SIGKILL\n");
  sleep(1);
  if (brume_test_cluster_start_frontend(c, frontend_extra) < 0) fail_msg("frontend restart");
  fprintf(stderr, "frontend back after %lld ms\n", (long long)(brume_mono_ms() - t_kill));
  pthread_join(sender, NULL);
  fprintf(stderr, "%d events accepted; %d sends refused while the frontend was down, sent again\n",
          BURST_EVENTS, b->refused);
  assert_true(b->refused > 0); /* the kill did land while the client was sending */
  int lost = 0, duplicates = 0, extra_events = 0, never_ran = 0;
  int64_t until = brume_mono_ms() + 300000;
  for (int i = 0; i < BURST_EVENTS; i++) {
    Brume__EventRecord *r = NULL;
    for (;;) {
      brume_err *err = NULL;
      r = get_event(key, b->ids[i], &err);
      brume_err_free(err);
      if ((r && ended(r)) || brume_mono_ms() > until) break;
      free_msg(r);
      r = NULL;
      usleep(200 * 1000);
    }
    char rid[32];
    snprintf(rid, sizeof(rid), "async-burst-%04d", i);
    int runs = runs_of(rid);
    if (r == NULL || r->state != BRUME__EVENT_STATE__EVENT_SUCCEEDED) {
      lost++;
      fprintf(stderr, "event %s (%s) lost: state %d, %d runs\n", b->ids[i], rid,
              r ? (int)r->state : -1, runs);
    }
    if (runs > 1) {
      duplicates += runs - 1;
      extra_events++;
    }
    if (runs < 1) never_ran++;
    free_msg(r);
  }
  fprintf(stderr, "%d events: %d lost, %d ran more than once (%d extra runs), %d never ran\n",
          BURST_EVENTS, lost, extra_events, duplicates, never_ran);
  assert_int_equal(lost, 0);
  assert_int_equal(never_ran, 0);
  free(b);
}

static int group_setup(void **state) {
  (void)state;
  nats = brume_test_nats_start();
  if (nats == NULL) return -1;
  snprintf(frontend_extra_urls, sizeof(frontend_extra_urls), "%s", nats->url);
  if (brume_test_cluster_start_placement(c, 0, NULL) < 0 ||
      brume_test_cluster_start_counting(c, NULL) < 0 ||
      brume_test_cluster_start_frontend(c, frontend_extra) < 0 ||
      brume_test_cluster_bootstrap_key(c, "ops", admin_key, sizeof(admin_key)) < 0)
    return -1;
  const char *accounts[] = {ACCOUNT, "acct-other"};
  char *keys[] = {key, other_key};
  for (int i = 0; i < 2; i++) {
    Brume__CreateApiKeyRequest req = BRUME__CREATE_API_KEY_REQUEST__INIT;
    char *scopes[] = {"invoke", "manage"};
    req.account_id = (char *)accounts[i];
    req.scopes = scopes;
    req.n_scopes = 2;
    req.description = "test_async";
    Brume__CreateApiKeyResponse *resp = NULL;
    brume_err *err = NULL;
    if (brume_test_cluster_frontend_call(c, "CreateApiKey", admin_key, NULL, &req, &resp, &err) <
        0) {
      fprintf(stderr, "CreateApiKey: %s\n", err->msg);
      brume_err_free(err);
      return -1;
    }
    snprintf(keys[i], 160, "%s", resp->api_key);
    free_msg(resp);
  }
  return 0;
}

int main(int argc, char **argv) {
  brume_log_init("test-async", BRUME_LOG_WARN);
  int code = 0;
  c = brume_test_cluster_prepare(argc, argv, "async", "async", 1, &code);
  if (c == NULL) return code;
  if (c->frontend_bin == NULL) {
    fprintf(stderr, "%s: needs BRUME_COUNTING and BRUME_FRONTEND\n", argv[0]);
    brume_test_cluster_free(c);
    return 1;
  }
  /* The worker logs each invocation it ran (at debug): how the tests count runs. */
  const char *worker_extra[] = {"--log_level", "debug", NULL};
  if (brume_test_cluster_start_workers(c, worker_extra) < 0) {
    brume_test_cluster_dump_logs(c);
    brume_test_cluster_free(c);
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_runs_once),
      cmocka_unit_test(test_retries_exhausted),
      cmocka_unit_test(test_get_event_refusals),
      cmocka_unit_test(test_on_success_record),
      cmocka_unit_test(test_on_failure_record),
      cmocka_unit_test(test_no_retries),
      cmocka_unit_test(test_throttled_until_too_old),
      cmocka_unit_test(test_function_destination),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_queue_list_drain),
      cmocka_unit_test(test_idempotency),
      cmocka_unit_test(test_kill9_while_delivering),
  };
  int rc = cmocka_run_group_tests_name("async", tests, group_setup, NULL);
  if (rc != 0) {
    brume_test_cluster_dump_logs(c);
    brume_test_dump_file(c->frontend.log);
  }
  brume_test_cluster_free(c);
  brume_test_nats_free(nats);
  return rc;
}
