/* frontend/event_accept through a real gRPC server and client, with a real etcd (the catalog)
 * and a real nats-server with JetStream (tests/harness): Event invocations answered 202 with
 * their event id, and found in the queue whole (a brume.QueuedEvent); the same request id twice
 * queued once under one event id; a payload over 256 KiB, an unknown function, a bad qualifier
 * and an account's full queue each refused with their code and reason, queuing nothing;
 * InvokeEvents (several events a call), each entry queued or refused on its own; NATS down:
 * refused UNAVAILABLE, and accepted again once it is back. Label "frontend". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "brume/async.pb-c.h"
#include "brume/frontend.pb-c.h"
#include "catalog.h"
#include "etcd_server.h"
#include "event_accept.h"
#include "event_queue.h"
#include "function_doc.h"
#include "nats_server.h"
#include "rpc.h"
#include "testutil.h"

#define PREFIX "/ea"
#define ACCOUNT "acct-1"
#define MAX_QUEUED 3
#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static brume_test_etcd *etcd_server;
static brume_etcd *etcd;
static brume_test_nats *nats;
static brume_env_key env_key;
static brume_catalog *catalog;
static brume_event_accept *accept_;
static brume_event_queue *reader; /* the test's own look into the queue */
static brume_rpc_server *rpc;
static brume_rpc_client *client;
static brume_metrics *metrics;

static brume_event_queue_opts queue_opts(void) {
  return (brume_event_queue_opts){.urls = nats->url,
                                  .replicas = 1,
                                  .max_queued_per_account = MAX_QUEUED,
                                  .duplicate_window_ms = 60000,
                                  .max_age_ms = 3600000,
                                  .ack_wait_ms = 30000,
                                  .timeout_ms = 2000};
}

/* Every Invoke goes to event_accept, as the service sends it an Event invocation, and every
 * InvokeEvents to its batch form. */
static void handle(brume_rpc_call *call, const ProtobufCMessage *request, void *user) {
  (void)user;
  const char *rid = brume_rpc_call_metadata(call, BRUME_MD_REQUEST_ID);
  if (request->descriptor == &brume__invoke_events_request__descriptor) {
    const Brume__InvokeEventsRequest *req = (const void *)request;
    brume_event_accept_batch(accept_, call, req, ACCOUNT, req->function_name, req->qualifier,
                             rid ? rid : "no-request-id");
    return;
  }
  const Brume__InvokeRequest *req = (const void *)request;
  brume_event_accept_start(accept_, call, req, ACCOUNT, req->function_name, req->qualifier,
                           rid ? rid : "no-request-id");
}

static brume_rpc_handler handlers[64];

static int group_setup(void **state) {
  (void)state;
  if (brume_test_etcd_open(&etcd_server, &etcd) < 0) return -1;
  nats = brume_test_nats_start();
  if (nats == NULL) return -1;
  memset(env_key.bytes, 0x5a, sizeof(env_key.bytes));
  brume_err *err = NULL;
  brume_catalog_opts co = {.etcd = etcd,
                           .prefix = PREFIX,
                           .region = "local",
                           .env_key = &env_key,
                           .code_url_base = "http://127.0.0.1:1"};
  catalog = brume_catalog_new(&co, &err);
  if (catalog == NULL) goto fail;
  /* The function fn, written as the management calls write it. */
  brume_fn_config c;
  brume_fn_config_init(&c);
  brume_fn_set_string(&c.handler, "handler.main");
  c.memory_mib = 128;
  c.timeout_ms = 3000;
  memcpy(c.code_sha256, SHA, 65);
  c.code_size = 100;
  brume_fn_doc *d = brume_fn_doc_new(&c, 1000);
  char *json = brume_fn_doc_json(d);
  int64_t rev = 0;
  int rc =
      brume_etcd_put(etcd, PREFIX "/functions/" ACCOUNT "/fn", json, strlen(json), 0, &rev, &err);
  free(json);
  brume_fn_doc_free(d);
  if (rc < 0 || brume_catalog_wait(catalog, rev, 5000, &err) < 0) goto fail;

  metrics = brume_metrics_new();
  brume_event_accept_opts ao = {.catalog = catalog,
                                .queue = queue_opts(),
                                .accepted_by = "frontend-test",
                                .retry_ms = 200,
                                .metrics = metrics};
  accept_ = brume_event_accept_new(&ao);
  brume_event_queue_opts ro = queue_opts();
  reader = brume_event_queue_open(&ro, &err);
  if (reader == NULL) goto fail;

  for (size_t i = 0; i < brume__frontend__descriptor.n_methods; i++) handlers[i] = handle;
  brume_rpc_server_opts so = {.listen = "127.0.0.1:0", .max_message_bytes = 8u << 20};
  rpc = brume_rpc_server_new(&so, &err);
  if (rpc == NULL ||
      brume_rpc_server_add_service(rpc, &brume__frontend__descriptor, handlers, NULL, &err) < 0 ||
      brume_rpc_server_start(rpc, &err) < 0)
    goto fail;
  char target[64];
  snprintf(target, sizeof(target), "127.0.0.1:%d", brume_rpc_server_port(rpc));
  client = brume_rpc_client_new(target, NULL, &err);
  if (client == NULL) goto fail;
  return 0;
fail:
  fprintf(stderr, "setup: %s\n", err ? err->msg : "?");
  return -1;
}

static int group_teardown(void **state) {
  (void)state;
  brume_rpc_client_free(client);
  brume_rpc_server_free(rpc);
  brume_event_accept_free(accept_);
  brume_event_queue_close(reader);
  brume_catalog_free(catalog);
  brume_metrics_free(metrics);
  brume_test_nats_free(nats);
  brume_test_etcd_close(etcd_server, etcd);
  return 0;
}

typedef struct answer {
  brume_status code;
  char msg[512];
  Brume__InvokeResponse *resp;
} answer;

static answer invoke(const char *function, const char *qualifier, const void *payload, size_t len,
                     const char *request_id) {
  Brume__InvokeRequest req = BRUME__INVOKE_REQUEST__INIT;
  req.function_name = (char *)function;
  req.qualifier = (char *)qualifier;
  req.invocation_type = BRUME__INVOCATION_TYPE__INVOCATION_TYPE_EVENT;
  req.payload.data = (uint8_t *)payload;
  req.payload.len = len;
  brume_rpc_call_opts o = {.deadline_ms = 10000, .wait_for_ready = true, .request_id = request_id};
  answer a = {.code = BRUME_OK};
  ProtobufCMessage *resp = NULL;
  brume_err *err = NULL;
  if (brume_rpc_unary(client, &brume__frontend__descriptor, 0 /* Invoke */, &req.base, &resp, &o,
                      &err) < 0) {
    a.code = err->code;
    snprintf(a.msg, sizeof(a.msg), "%s", err->msg);
    brume_err_free(err);
  } else {
    a.resp = (Brume__InvokeResponse *)resp;
  }
  return a;
}

static void answer_free(answer *a) {
  if (a->resp) protobuf_c_message_free_unpacked(&a->resp->base, NULL);
  a->resp = NULL;
}

static uint64_t depth(void) {
  uint64_t d = 0;
  brume_err *err = NULL;
  if (brume_event_queue_depth(reader, &d, &err) < 0) fail_msg("depth: %s", err->msg);
  return d;
}

/* Takes the next queued event and decodes it (NULL when none comes within 2 s). */
static Brume__QueuedEvent *take(void) {
  brume_event *e = NULL;
  brume_err *err = NULL;
  int n = brume_event_queue_fetch(reader, &e, 1, 2000, &err);
  if (n < 0) fail_msg("fetch: %s", err->msg);
  if (n == 0) return NULL;
  Brume__QueuedEvent *ev = brume__queued_event__unpack(NULL, e->len, e->data);
  assert_non_null(ev);
  assert_string_equal(ev->event_id, e->id); /* the body and the header agree */
  assert_string_equal(e->account, ACCOUNT);
  assert_int_equal(brume_event_done(e, &err), 0);
  brume_event_free(e);
  return ev;
}

static void test_accepted(void **state) {
  (void)state;
  int64_t before = brume_test_wall_ms();
  answer a = invoke("fn", "", "{\"k\": 1}", 8, "req-accept-1");
  if (a.code != BRUME_OK) fail_msg("invoke: %s", a.msg);
  assert_int_equal(a.resp->status_code, 202);
  assert_string_equal(a.resp->request_id, "req-accept-1");
  char id[37];
  brume_event_id(ACCOUNT, "req-accept-1", id);
  assert_string_equal(a.resp->event_id, id);
  assert_int_equal(strlen(id), 36);
  assert_int_equal(strncmp(id, "evt-", 4), 0);
  assert_int_equal(a.resp->payload.len, 0);
  fprintf(stderr, "  accepted: %s\n", a.resp->event_id);
  answer_free(&a);

  Brume__QueuedEvent *ev = take();
  assert_non_null(ev);
  assert_string_equal(ev->event_id, id);
  assert_string_equal(ev->account_id, ACCOUNT);
  assert_string_equal(ev->function_name, "fn");
  assert_string_equal(ev->qualifier, "");
  assert_int_equal(ev->payload.len, 8);
  assert_memory_equal(ev->payload.data, "{\"k\": 1}", 8);
  assert_string_equal(ev->request_id, "req-accept-1");
  assert_string_equal(ev->accepted_by, "frontend-test");
  assert_true(ev->accepted_unix_ms >= before && ev->accepted_unix_ms <= brume_test_wall_ms());
  brume__queued_event__free_unpacked(ev, NULL);
  assert_int_equal(depth(), 0);

  /* A qualifier is kept as given: it is resolved when the event runs. */
  a = invoke("fn", "$LATEST", "x", 1, "req-accept-2");
  assert_int_equal(a.code, BRUME_OK);
  answer_free(&a);
  ev = take();
  assert_non_null(ev);
  assert_string_equal(ev->qualifier, "$LATEST");
  brume__queued_event__free_unpacked(ev, NULL);
}

static void test_same_request_twice(void **state) {
  (void)state;
  answer a = invoke("fn", "", "first", 5, "req-twice");
  answer b = invoke("fn", "", "second", 6, "req-twice");
  assert_int_equal(a.code, BRUME_OK);
  assert_int_equal(b.code, BRUME_OK);
  assert_int_equal(b.resp->status_code, 202);
  assert_string_equal(a.resp->event_id, b.resp->event_id);
  answer_free(&a);
  answer_free(&b);
  assert_int_equal(depth(), 1);
  Brume__QueuedEvent *ev = take();
  assert_memory_equal(ev->payload.data, "first", 5);
  brume__queued_event__free_unpacked(ev, NULL);
  /* Another request id: another event. */
  a = invoke("fn", "", "third", 5, "req-twice-2");
  assert_int_equal(a.code, BRUME_OK);
  answer_free(&a);
  ev = take();
  assert_non_null(ev);
  brume__queued_event__free_unpacked(ev, NULL);
}

static void expect_refused(answer a, brume_status code, const char *part) {
  if (a.code != code || strstr(a.msg, part) == NULL)
    fail_msg("%s \"%s\", expected %s and \"%s\"", brume_status_name(a.code), a.msg,
             brume_status_name(code), part);
  fprintf(stderr, "  refused: %s: %s\n", brume_status_name(a.code), a.msg);
}

static void test_bad_requests(void **state) {
  (void)state;
  size_t big = 256 * 1024 + 1;
  char *payload = calloc(1, big);
  expect_refused(invoke("fn", "", payload, big, "req-big"), BRUME_INVALID_ARGUMENT,
                 "RequestTooLargeException");
  /* Exactly 256 KiB is taken. */
  answer a = invoke("fn", "", payload, big - 1, "req-256k");
  assert_int_equal(a.code, BRUME_OK);
  answer_free(&a);
  free(payload);
  Brume__QueuedEvent *ev = take();
  assert_int_equal(ev->payload.len, 256 * 1024);
  brume__queued_event__free_unpacked(ev, NULL);

  expect_refused(invoke("nofn", "", "x", 1, "req-nofn"), BRUME_NOT_FOUND,
                 "ResourceNotFoundException");
  expect_refused(invoke("fn", "7", "x", 1, "req-nover"), BRUME_NOT_FOUND,
                 "ResourceNotFoundException");
  expect_refused(invoke("fn", "bad qualifier!", "x", 1, "req-badq"), BRUME_INVALID_ARGUMENT,
                 "InvalidParameterValueException");
  assert_int_equal(depth(), 0);
}

/* One InvokeEvents call of function fn with n entries of payloads[i] and request_ids[i] (NULL:
 * none); the call's own request id is rid. */
static Brume__InvokeEventsResponse *invoke_events(const char *function, size_t n,
                                                  const char *const *payloads, const size_t *lens,
                                                  const char *const *request_ids, const char *rid,
                                                  answer *a) {
  Brume__EventEntry *entries = calloc(n ? n : 1, sizeof(*entries));
  Brume__EventEntry **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
  for (size_t i = 0; i < n; i++) {
    brume__event_entry__init(&entries[i]);
    entries[i].payload.data = (uint8_t *)payloads[i];
    entries[i].payload.len = lens[i];
    entries[i].request_id = (char *)(request_ids && request_ids[i] ? request_ids[i] : "");
    ptrs[i] = &entries[i];
  }
  Brume__InvokeEventsRequest req = BRUME__INVOKE_EVENTS_REQUEST__INIT;
  req.function_name = (char *)function;
  req.entries = ptrs;
  req.n_entries = n;
  unsigned m = (unsigned)(protobuf_c_service_descriptor_get_method_by_name(
                              &brume__frontend__descriptor, "InvokeEvents") -
                          brume__frontend__descriptor.methods);
  brume_rpc_call_opts o = {.deadline_ms = 10000, .wait_for_ready = true, .request_id = rid};
  *a = (answer){.code = BRUME_OK};
  ProtobufCMessage *resp = NULL;
  brume_err *err = NULL;
  if (brume_rpc_unary(client, &brume__frontend__descriptor, m, &req.base, &resp, &o, &err) < 0) {
    a->code = err->code;
    snprintf(a->msg, sizeof(a->msg), "%s", err->msg);
    brume_err_free(err);
  }
  free(entries);
  free(ptrs);
  return (Brume__InvokeEventsResponse *)resp;
}

/* InvokeEvents: each entry queued or refused on its own, named by its request id or the call's
 * and its index; a repeated request id is the same event; the whole call refused for a missing
 * function, no entries, too many, or too much payload. */
static void test_batch(void **state) {
  (void)state;
  size_t big = 256 * 1024 + 1;
  char *large = calloc(1, big);
  const char *payloads[] = {"{\"a\": 1}", large, "{\"c\": 3}", "{\"d\": 4}"};
  const size_t lens[] = {8, big, 8, 8};
  const char *rids[] = {NULL, NULL, "batch-rid-c", "bad request id!"};
  answer a;
  Brume__InvokeEventsResponse *r = invoke_events("fn", 4, payloads, lens, rids, "batch-1", &a);
  if (a.code != BRUME_OK) fail_msg("InvokeEvents: %s", a.msg);
  assert_int_equal(r->n_results, 4);
  assert_int_equal(r->failed_count, 2);
  char id[37];
  brume_event_id(ACCOUNT, "batch-1-0", id);
  assert_int_equal(r->results[0]->status_code, 202);
  assert_string_equal(r->results[0]->request_id, "batch-1-0");
  assert_string_equal(r->results[0]->event_id, id);
  assert_int_equal(r->results[1]->status_code, 0);
  assert_string_equal(r->results[1]->error_code, "INVALID_ARGUMENT");
  assert_non_null(strstr(r->results[1]->error_message, "RequestTooLargeException"));
  assert_string_equal(r->results[1]->event_id, "");
  brume_event_id(ACCOUNT, "batch-rid-c", id);
  assert_int_equal(r->results[2]->status_code, 202);
  assert_string_equal(r->results[2]->request_id, "batch-rid-c");
  assert_string_equal(r->results[2]->event_id, id);
  assert_int_equal(r->results[3]->status_code, 0);
  assert_non_null(strstr(r->results[3]->error_message, "entries.request_id"));
  fprintf(stderr, "  batch: %s: %s\n", r->results[1]->error_code, r->results[1]->error_message);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  free(large);
  /* The two accepted, in order, whole; nothing of the refused ones. */
  assert_int_equal(depth(), 2);
  Brume__QueuedEvent *ev = take();
  assert_non_null(ev);
  assert_string_equal(ev->request_id, "batch-1-0");
  assert_memory_equal(ev->payload.data, "{\"a\": 1}", 8);
  assert_string_equal(ev->function_name, "fn");
  brume__queued_event__free_unpacked(ev, NULL);
  ev = take();
  assert_non_null(ev);
  assert_string_equal(ev->request_id, "batch-rid-c");
  brume__queued_event__free_unpacked(ev, NULL);

  /* The same request id again, in a batch or an Invoke: the same event, queued once. */
  const char *again_rids[] = {"batch-rid-c"};
  r = invoke_events("fn", 1, payloads + 2, lens + 2, again_rids, "batch-2", &a);
  assert_int_equal(a.code, BRUME_OK);
  assert_int_equal(r->results[0]->status_code, 202);
  assert_string_equal(r->results[0]->event_id, id);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  answer b = invoke("fn", "", "x", 1, "batch-rid-c");
  assert_int_equal(b.code, BRUME_OK);
  assert_string_equal(b.resp->event_id, id);
  answer_free(&b);
  assert_int_equal(depth(), 0);

  /* Refused whole. */
  assert_null(invoke_events("nofn", 1, payloads, lens, NULL, "batch-3", &a));
  expect_refused(a, BRUME_NOT_FOUND, "ResourceNotFoundException");
  assert_null(invoke_events("fn", 0, payloads, lens, NULL, "batch-4", &a));
  expect_refused(a, BRUME_INVALID_ARGUMENT, "1-100");
  const char *many[101];
  size_t many_lens[101];
  for (size_t i = 0; i < 101; i++) many[i] = "x", many_lens[i] = 1;
  assert_null(invoke_events("fn", 101, many, many_lens, NULL, "batch-5", &a));
  expect_refused(a, BRUME_INVALID_ARGUMENT, "1-100");
  /* 25 of 256 KiB each: each fits, together they pass 6 MiB. */
  char *quarter = calloc(1, 256 * 1024);
  const char *heavy[25];
  size_t heavy_lens[25];
  for (size_t i = 0; i < 25; i++) heavy[i] = quarter, heavy_lens[i] = 256 * 1024;
  assert_null(invoke_events("fn", 25, heavy, heavy_lens, NULL, "batch-6", &a));
  expect_refused(a, BRUME_INVALID_ARGUMENT, "6 MiB");
  free(quarter);
  assert_int_equal(depth(), 0);

  /* A full batch of 100 against the account's limit of MAX_QUEUED queued events: that many are
   * queued, each of the others refused as an Invoke would be. */
  r = invoke_events("fn", 100, many, many_lens, NULL, "batch-7", &a);
  assert_int_equal(a.code, BRUME_OK);
  assert_int_equal(r->n_results, 100);
  assert_int_equal(r->failed_count, 100 - MAX_QUEUED);
  size_t queued = 0;
  for (size_t i = 0; i < 100; i++) {
    if (r->results[i]->status_code == 202) {
      queued++;
    } else {
      assert_string_equal(r->results[i]->error_code, "RESOURCE_EXHAUSTED");
      assert_non_null(strstr(r->results[i]->error_message, "TooManyQueuedEventsException"));
    }
  }
  assert_int_equal(queued, MAX_QUEUED);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  assert_int_equal(depth(), MAX_QUEUED);
  for (size_t i = 0; i < MAX_QUEUED; i++) {
    ev = take();
    assert_non_null(ev);
    brume__queued_event__free_unpacked(ev, NULL);
  }
}

static void test_account_queue_full(void **state) {
  (void)state;
  char rid[32];
  for (int i = 0; i < MAX_QUEUED; i++) {
    snprintf(rid, sizeof(rid), "req-full-%d", i);
    answer a = invoke("fn", "", "x", 1, rid);
    assert_int_equal(a.code, BRUME_OK);
    answer_free(&a);
  }
  expect_refused(invoke("fn", "", "x", 1, "req-full-over"), BRUME_RESOURCE_EXHAUSTED,
                 "TooManyQueuedEventsException");
  assert_int_equal(depth(), MAX_QUEUED);
  for (int i = 0; i < MAX_QUEUED; i++) {
    Brume__QueuedEvent *ev = take();
    assert_non_null(ev);
    brume__queued_event__free_unpacked(ev, NULL);
  }
  answer a = invoke("fn", "", "x", 1, "req-full-over");
  assert_int_equal(a.code, BRUME_OK);
  answer_free(&a);
  Brume__QueuedEvent *ev = take();
  assert_non_null(ev);
  brume__queued_event__free_unpacked(ev, NULL);
}

static void test_nats_down(void **state) {
  (void)state;
  assert_int_equal(brume_test_nats_kill(nats), 0);
  usleep(200000); /* the client sees the connection go */
  expect_refused(invoke("fn", "", "x", 1, "req-down"), BRUME_UNAVAILABLE,
                 "ServiceUnavailableException");
  /* A batch: each entry refused UNAVAILABLE, nothing queued. */
  const char *payloads[] = {"x", "x"};
  const size_t lens[] = {1, 1};
  answer b;
  Brume__InvokeEventsResponse *r = invoke_events("fn", 2, payloads, lens, NULL, "batch-down", &b);
  assert_int_equal(b.code, BRUME_OK);
  assert_int_equal(r->failed_count, 2);
  for (size_t i = 0; i < 2; i++) {
    assert_string_equal(r->results[i]->error_code, "UNAVAILABLE");
    assert_non_null(strstr(r->results[i]->error_message, "ServiceUnavailableException"));
  }
  protobuf_c_message_free_unpacked(&r->base, NULL);
  assert_int_equal(brume_test_nats_restart(nats), 0);
  /* Accepted again once the client has reconnected (every 250 ms). */
  answer a = {.code = BRUME_UNAVAILABLE};
  for (int i = 0; i < 40 && a.code != BRUME_OK; i++) {
    answer_free(&a);
    a = invoke("fn", "", "y", 1, "req-down");
    if (a.code != BRUME_OK) usleep(250000);
  }
  assert_int_equal(a.code, BRUME_OK);
  answer_free(&a);
  Brume__QueuedEvent *ev = take();
  assert_non_null(ev);
  assert_memory_equal(ev->payload.data, "y", 1); /* the refused one left nothing behind */
  brume__queued_event__free_unpacked(ev, NULL);
  assert_null(take());
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accepted),           cmocka_unit_test(test_same_request_twice),
      cmocka_unit_test(test_bad_requests),       cmocka_unit_test(test_batch),
      cmocka_unit_test(test_account_queue_full), cmocka_unit_test(test_nats_down),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
