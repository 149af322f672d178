/* frontend/event_config and the settings' place in a function's document (function_doc), and
 * frontend/event_record (a destination record): destinations' two forms and their refusals, the
 * ranges, the JSON round trip, a document without event_configs (written before they existed),
 * put/get/delete by qualifier (which must exist), a deleted alias or version taking its settings
 * along; the record's fields, its payloads as JSON or as strings, and without payloads. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "event_record.h"
#include "function_doc.h"

#define ARN "arn:brume:lambda:local:a1:function:fn"
#define SHA1 "1111111111111111111111111111111111111111111111111111111111111111"

static void expect(brume_err **err, brume_status code, const char *part) {
  assert_non_null(*err);
  if ((*err)->code != code || strstr((*err)->msg, part) == NULL)
    fail_msg("got %d %s; wanted %d ... %s", (*err)->code, (*err)->msg, code, part);
  brume_err_clear(err);
}

static void test_destinations(void **state) {
  (void)state;
  brume_destination d;
  brume_err *err = NULL;
  assert_int_equal(brume_destination_parse("", "on_success", &d, &err), 0);
  assert_int_equal(d.kind, BRUME_DESTINATION_NONE);
  assert_int_equal(brume_destination_parse("queue:failed-1", "on_failure", &d, &err), 0);
  assert_int_equal(d.kind, BRUME_DESTINATION_QUEUE);
  assert_string_equal(d.name, "failed-1");
  assert_int_equal(brume_destination_parse("function:next", "on_success", &d, &err), 0);
  assert_int_equal(d.kind, BRUME_DESTINATION_FUNCTION);
  assert_string_equal(d.name, "next");
  assert_string_equal(d.qualifier, "");
  assert_int_equal(brume_destination_parse("function:next:live", "on_success", &d, &err), 0);
  assert_string_equal(d.qualifier, "live");
  const char *bad[] = {"queue:", "queue:a.b", "function:", "function:x:", "function:x:a.b",
                       "sqs:q",  "queue",     "function:" /* twice: same refusal */};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(brume_destination_parse(bad[i], "on_failure", &d, &err), -1);
    expect(&err, BRUME_INVALID_ARGUMENT, "on_failure");
    assert_int_equal(d.kind, BRUME_DESTINATION_NONE);
  }
}

static void test_ranges(void **state) {
  (void)state;
  brume_fn_event_config c;
  brume_fn_event_config_init(&c, "");
  assert_string_equal(c.qualifier, "$LATEST");
  assert_int_equal(c.max_retries, 2);
  assert_int_equal(c.max_age_s, 21600);
  brume_err *err = NULL;
  assert_int_equal(brume_fn_event_config_check(&c, &err), 0);
  c.max_retries = 3;
  assert_int_equal(brume_fn_event_config_check(&c, &err), -1);
  expect(&err, BRUME_INVALID_ARGUMENT, "MaximumRetryAttempts");
  c.max_retries = 0;
  c.max_age_s = 30;
  assert_int_equal(brume_fn_event_config_check(&c, &err), -1);
  expect(&err, BRUME_INVALID_ARGUMENT, "MaximumEventAgeInSeconds");
  c.max_age_s = 60;
  strcpy(c.dead_letter_queue, "function:x");
  assert_int_equal(brume_fn_event_config_check(&c, &err), -1);
  expect(&err, BRUME_INVALID_ARGUMENT, "dead_letter_queue must be a queue");
  strcpy(c.dead_letter_queue, "queue:dlq");
  strcpy(c.on_success, "bogus");
  assert_int_equal(brume_fn_event_config_check(&c, &err), -1);
  expect(&err, BRUME_INVALID_ARGUMENT, "on_success");
}

static brume_fn_doc *new_doc(void) {
  brume_fn_config c;
  brume_fn_config_init(&c);
  brume_fn_set_string(&c.handler, "bootstrap");
  memcpy(c.code_sha256, SHA1, 65);
  return brume_fn_doc_new(&c, 1000);
}

static void test_in_document(void **state) {
  (void)state;
  brume_fn_doc *d = new_doc();
  brume_err *err = NULL;
  bool created;
  assert_non_null(brume_fn_doc_publish(d, NULL, 2000, &created, &err));
  brume_fn_alias a = {.name = "live", .description = "", .version = "1"};
  assert_non_null(brume_fn_doc_put_alias(d, &a, true, ARN, &err));
  assert_null(brume_fn_doc_event_config(d, ""));

  brume_fn_event_config c;
  brume_fn_event_config_init(&c, "nope");
  assert_null(brume_fn_doc_put_event_config(d, &c, ARN, &err));
  expect(&err, BRUME_NOT_FOUND, "nope");
  const char *qualifiers[] = {"live", "$LATEST", "1"};
  for (int i = 0; i < 3; i++) {
    brume_fn_event_config_init(&c, qualifiers[i]);
    c.max_retries = i;
    snprintf(c.on_failure, sizeof(c.on_failure), "queue:q%d", i);
    c.last_modified_unix_ms = 5000 + i;
    assert_non_null(brume_fn_doc_put_event_config(d, &c, ARN, &err));
  }
  /* Replaced, not added. */
  brume_fn_event_config_init(&c, "live");
  c.max_age_s = 120;
  assert_non_null(brume_fn_doc_put_event_config(d, &c, ARN, &err));
  assert_int_equal(d->n_event_configs, 3);
  assert_string_equal(d->event_configs[0].qualifier, "$LATEST"); /* ascending */
  assert_int_equal(brume_fn_doc_event_config(d, "")->max_retries, 1);
  assert_int_equal(brume_fn_doc_event_config(d, "live")->max_age_s, 120);

  /* The JSON round trip keeps them. */
  char *json = brume_fn_doc_json(d);
  brume_fn_doc *back = brume_fn_doc_parse(json, strlen(json), &err);
  if (back == NULL) fail_msg("%s", err->msg);
  assert_int_equal(back->n_event_configs, 3);
  const brume_fn_event_config *b = brume_fn_doc_event_config(back, "1");
  assert_non_null(b);
  assert_int_equal(b->max_retries, 2);
  assert_string_equal(b->on_failure, "queue:q2");
  assert_int_equal(b->last_modified_unix_ms, 5002);
  brume_fn_doc_free(back);
  free(json);

  /* An alias or a version deleted takes its settings along. */
  assert_int_equal(brume_fn_doc_delete_alias(d, "live", ARN, &err), 0);
  assert_null(brume_fn_doc_event_config(d, "live"));
  assert_int_equal(brume_fn_doc_delete_version(d, "1", ARN, &err), 0);
  assert_null(brume_fn_doc_event_config(d, "1"));
  assert_int_equal(d->n_event_configs, 1);
  assert_int_equal(brume_fn_doc_delete_event_config(d, "$LATEST", ARN, &err), 0);
  assert_int_equal(brume_fn_doc_delete_event_config(d, "", ARN, &err), -1);
  expect(&err, BRUME_NOT_FOUND, "no asynchronous invocation settings");
  brume_fn_doc_free(d);
}

static void test_older_document(void **state) {
  (void)state;
  brume_fn_doc *d = new_doc();
  char *json = brume_fn_doc_json(d);
  /* As written before event_configs existed. */
  json_t *o = json_loads(json, 0, NULL);
  assert_int_equal(json_object_del(o, "event_configs"), 0);
  char *older = json_dumps(o, JSON_COMPACT);
  brume_err *err = NULL;
  brume_fn_doc *back = brume_fn_doc_parse(older, strlen(older), &err);
  if (back == NULL) fail_msg("%s", err->msg);
  assert_int_equal(back->n_event_configs, 0);
  /* A malformed entry is refused. */
  json_object_set_new(o, "event_configs", json_pack("[{s:s}]", "qualifier", "$LATEST"));
  char *bad = json_dumps(o, JSON_COMPACT);
  assert_null(brume_fn_doc_parse(bad, strlen(bad), &err));
  expect(&err, BRUME_DATA_LOSS, "event_configs");
  free(bad);
  brume_fn_doc_free(back);
  free(older);
  json_decref(o);
  free(json);
  brume_fn_doc_free(d);
}

static void test_record(void **state) {
  (void)state;
  Brume__QueuedEvent ev = BRUME__QUEUED_EVENT__INIT;
  ev.event_id = "evt-1";
  ev.request_id = "req-1";
  ev.accepted_unix_ms = 1000;
  ev.payload.data = (uint8_t *)"{\"n\": 1}";
  ev.payload.len = strlen("{\"n\": 1}");
  Brume__EventTry t1 = BRUME__EVENT_TRY__INIT, t2 = BRUME__EVENT_TRY__INIT;
  t1.outcome = "function_error";
  t1.error = "Echo.Failed: no";
  t1.executed_version = "$LATEST";
  t2.outcome = "throttled";
  t2.error = "RESOURCE_EXHAUSTED: ...";
  Brume__EventTry *tries[] = {&t1, &t2};
  Brume__EventRecord rec = BRUME__EVENT_RECORD__INIT;
  rec.attempts = 1;
  rec.backoffs = 1;
  rec.tries = tries;
  rec.n_tries = 2;
  brume_event_outcome o = {.event = &ev,
                           .record = &rec,
                           .function_arn = ARN ":$LATEST",
                           .condition = "EventAgeExceeded",
                           .response = (const uint8_t *)"not json",
                           .response_len = 8,
                           .function_error = "Echo.Failed",
                           .now_unix_ms = 1764363027835};
  size_t len;
  char *s = brume_event_destination_record(&o, true, &len);
  assert_int_equal(len, strlen(s));
  json_t *r = json_loads(s, 0, NULL);
  assert_non_null(r);
  assert_string_equal(json_string_value(json_object_get(r, "timestamp")),
                      "2025-11-28T20:50:27.835Z");
  json_t *ctx = json_object_get(r, "requestContext");
  assert_string_equal(json_string_value(json_object_get(ctx, "condition")), "EventAgeExceeded");
  assert_string_equal(json_string_value(json_object_get(ctx, "eventId")), "evt-1");
  assert_int_equal(json_integer_value(json_object_get(ctx, "approximateInvokeCount")), 1);
  /* JSON stays JSON; anything else is a string. */
  assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "requestPayload"), "n")),
                   1);
  assert_string_equal(json_string_value(json_object_get(r, "responsePayload")), "not json");
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(r, "responseContext"), "functionError")),
      "Echo.Failed");
  assert_int_equal(json_array_size(json_object_get(r, "tries")), 2);
  json_decref(r);
  free(s);
  /* Without payloads, and a success with no run (no responseContext). */
  o.condition = NULL;
  o.response = NULL;
  s = brume_event_destination_record(&o, false, &len);
  r = json_loads(s, 0, NULL);
  assert_true(json_is_null(json_object_get(r, "requestPayload")));
  assert_true(json_is_true(json_object_get(r, "payloadsOmitted")));
  assert_null(json_object_get(r, "responseContext"));
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(r, "requestContext"), "condition")),
      "Success");
  json_decref(r);
  free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_destinations), cmocka_unit_test(test_ranges),
      cmocka_unit_test(test_in_document),  cmocka_unit_test(test_older_document),
      cmocka_unit_test(test_record),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
