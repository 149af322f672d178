/* Unit tests for cli/output, cli/message_json and cli/client's reporting: an InvokeResponse as
 * text (raw payload, log tail on stderr, function error line) and as JSON (every field), objects
 * and tables as text, the error line and hints of a failed call, and the method indices against
 * the generated service descriptor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "brume/frontend.pb-c.h"
#include "client.h"
#include "message_json.h"
#include "output.h"

/* Two memory streams standing in for stdout and stderr. */
typedef struct streams {
  FILE *out, *err;
  char *out_buf, *err_buf;
  size_t out_len, err_len;
} streams;

static void open_streams(streams *s) {
  memset(s, 0, sizeof(*s));
  s->out = open_memstream(&s->out_buf, &s->out_len);
  s->err = open_memstream(&s->err_buf, &s->err_len);
}

static void close_streams(streams *s) {
  fclose(s->out);
  fclose(s->err);
}

static void free_streams(streams *s) {
  free(s->out_buf);
  free(s->err_buf);
}

static void test_invoke_text(void **state) {
  (void)state;
  Brume__InvokeResponse r = BRUME__INVOKE_RESPONSE__INIT;
  r.status_code = 200;
  r.payload = (ProtobufCBinaryData){13, (uint8_t *)"{\"ok\": true}\n"};
  r.log_tail = (ProtobufCBinaryData){9, (uint8_t *)"START\nEND"};
  r.executed_version = "3";
  streams s;
  open_streams(&s);
  assert_int_equal(brume_cli_print_invoke(s.out, s.err, "invoke f", &r, false, false, false), 0);
  close_streams(&s);
  assert_string_equal(s.out_buf, "{\"ok\": true}\n");
  assert_string_equal(s.err_buf, "");
  free_streams(&s);

  /* --log-tail: the tail on stderr (with a newline), the payload untouched on stdout. */
  r.payload = (ProtobufCBinaryData){5, (uint8_t *)"hello"};
  open_streams(&s);
  assert_int_equal(brume_cli_print_invoke(s.out, s.err, "invoke f", &r, false, true, false), 0);
  close_streams(&s);
  assert_string_equal(s.out_buf, "hello");
  assert_string_equal(s.err_buf, "START\nEND\n");
  free_streams(&s);

  /* A terminal gets a final newline. */
  open_streams(&s);
  assert_int_equal(brume_cli_print_invoke(s.out, s.err, "invoke f", &r, false, false, true), 0);
  close_streams(&s);
  assert_string_equal(s.out_buf, "hello\n");
  free_streams(&s);

  /* Binary payloads pass unchanged, NUL bytes included. */
  r.payload = (ProtobufCBinaryData){4, (uint8_t *)"a\0\xffz"};
  open_streams(&s);
  brume_cli_print_invoke(s.out, s.err, "invoke f", &r, false, false, false);
  close_streams(&s);
  assert_int_equal(s.out_len, 4);
  assert_memory_equal(s.out_buf, "a\0\xffz", 4);
  free_streams(&s);

  /* A dry run answers 204 with no payload: said on stderr. */
  Brume__InvokeResponse dry = BRUME__INVOKE_RESPONSE__INIT;
  dry.status_code = 204;
  open_streams(&s);
  assert_int_equal(brume_cli_print_invoke(s.out, s.err, "invoke f", &dry, false, false, true), 0);
  close_streams(&s);
  assert_string_equal(s.out_buf, "");
  assert_string_equal(s.err_buf, "brume: invoke f: dry run passed (status 204)\n");
  free_streams(&s);

  /* An Event invocation answers 202 with the queued event's id: said on stderr. */
  Brume__InvokeResponse queued = BRUME__INVOKE_RESPONSE__INIT;
  queued.status_code = 202;
  queued.request_id = "req-9";
  queued.event_id = "evt-0123456789abcdef0123456789abcdef";
  open_streams(&s);
  assert_int_equal(brume_cli_print_invoke(s.out, s.err, "invoke f", &queued, false, false, true),
                   0);
  close_streams(&s);
  assert_string_equal(s.out_buf, "");
  assert_string_equal(s.err_buf,
                      "brume: invoke f: queued (status 202): event "
                      "evt-0123456789abcdef0123456789abcdef, request id req-9\n");
  free_streams(&s);
}

static void test_invoke_function_error(void **state) {
  (void)state;
  Brume__FunctionError fe = BRUME__FUNCTION_ERROR__INIT;
  fe.kind = BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED;
  fe.type = "Runtime.ExitError";
  fe.message = "exit status 2";
  Brume__InvokeResponse r = BRUME__INVOKE_RESPONSE__INIT;
  r.status_code = 200;
  const char *doc = "{\"errorType\":\"Runtime.ExitError\",\"errorMessage\":\"exit status 2\"}";
  r.payload = (ProtobufCBinaryData){strlen(doc), (uint8_t *)doc};
  r.function_error = &fe;
  streams s;
  open_streams(&s);
  assert_int_equal(brume_cli_print_invoke(s.out, s.err, "invoke f", &r, false, false, false), 1);
  close_streams(&s);
  assert_string_equal(s.out_buf, doc);
  assert_string_equal(
      s.err_buf, "brume: invoke f: function error (Unhandled): Runtime.ExitError: exit status 2\n");
  free_streams(&s);

  /* The same in JSON: the line on stderr stays, and so does the result. */
  open_streams(&s);
  assert_int_equal(brume_cli_print_invoke(s.out, s.err, "invoke f", &r, true, false, false), 1);
  close_streams(&s);
  json_error_t e;
  brume_autoptr(json_t) j = json_loads(s.out_buf, 0, &e);
  assert_non_null(j);
  json_t *jfe = json_object_get(j, "function_error");
  assert_string_equal(json_string_value(json_object_get(jfe, "kind")), "Unhandled");
  assert_string_equal(json_string_value(json_object_get(jfe, "type")), "Runtime.ExitError");
  assert_string_equal(json_string_value(json_object_get(jfe, "message")), "exit status 2");
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(j, "payload"), "errorType")),
      "Runtime.ExitError");
  assert_non_null(strstr(s.err_buf, "function error (Unhandled): Runtime.ExitError"));
  free_streams(&s);
}

static void test_invoke_json(void **state) {
  (void)state;
  Brume__InvokeResponse r = BRUME__INVOKE_RESPONSE__INIT;
  r.status_code = 200;
  r.payload = (ProtobufCBinaryData){17, (uint8_t *)"{\"n\": [1, 2, 3]}\n"};
  r.executed_version = "7";
  r.cold_start = true;
  r.pool_hit = true;
  r.init_duration_us = 51234;
  r.duration_us = 1500;
  r.billed_duration_ms = 2;
  r.memory_size_mib = 256;
  r.max_memory_used_mib = 31;
  r.log_tail = (ProtobufCBinaryData){8, (uint8_t *)"line 1\n\xff"};
  r.request_id = "req-1";
  streams s;
  open_streams(&s);
  assert_int_equal(brume_cli_print_invoke(s.out, s.err, "invoke f", &r, true, true, false), 0);
  close_streams(&s);
  assert_string_equal(s.err_buf, ""); /* the log tail is in the JSON, not on stderr */
  json_error_t e;
  brume_autoptr(json_t) j = json_loads(s.out_buf, 0, &e);
  if (j == NULL) fail_msg("not JSON: %s: %s", e.text, s.out_buf);
  assert_int_equal(json_object_size(j), 14); /* every InvokeResponse field */
  assert_int_equal(json_integer_value(json_object_get(j, "status_code")), 200);
  json_t *payload = json_object_get(j, "payload");
  assert_true(json_is_object(payload));
  assert_int_equal(json_array_size(json_object_get(payload, "n")), 3);
  assert_true(json_is_null(json_object_get(j, "function_error")));
  assert_string_equal(json_string_value(json_object_get(j, "executed_version")), "7");
  assert_true(json_is_true(json_object_get(j, "cold_start")));
  assert_true(json_is_true(json_object_get(j, "pool_hit")));
  assert_int_equal(json_integer_value(json_object_get(j, "init_duration_us")), 51234);
  assert_int_equal(json_integer_value(json_object_get(j, "duration_us")), 1500);
  assert_int_equal(json_integer_value(json_object_get(j, "billed_duration_ms")), 2);
  assert_int_equal(json_integer_value(json_object_get(j, "memory_size_mib")), 256);
  assert_int_equal(json_integer_value(json_object_get(j, "max_memory_used_mib")), 31);
  /* Invalid UTF-8 becomes U+FFFD, so the output stays JSON. */
  assert_string_equal(json_string_value(json_object_get(j, "log_tail")), "line 1\n\xef\xbf\xbd");
  assert_string_equal(json_string_value(json_object_get(j, "request_id")), "req-1");
  assert_string_equal(json_string_value(json_object_get(j, "event_id")), "");
  free_streams(&s);

  /* A payload that is no JSON is a string. */
  r.payload = (ProtobufCBinaryData){9, (uint8_t *)"not json{"};
  brume_autoptr(json_t) j2 = brume_cli_json_invoke(&r);
  assert_string_equal(json_string_value(json_object_get(j2, "payload")), "not json{");
  r.payload = (ProtobufCBinaryData){0, NULL};
  brume_autoptr(json_t) j3 = brume_cli_json_invoke(&r);
  assert_string_equal(json_string_value(json_object_get(j3, "payload")), "");
}

static void test_object_and_table_text(void **state) {
  (void)state;
  brume_autoptr(json_t) obj = json_pack(
      "{s:s, s:i, s:{s:s}, s:{}, s:n, s:I, s:[s,s], s:b}", "name", "hello", "memory_size_mib", 128,
      "environment", "A", "1", "empty", "none_here", "last_modified_unix_ms",
      (json_int_t)1700000000123, "scopes", "invoke", "manage", "flag", 1);
  assert_non_null(obj);
  streams s;
  open_streams(&s);
  brume_cli_print_object(s.out, obj, false);
  close_streams(&s);
  assert_string_equal(s.out_buf,
                      "name:                  hello\n"
                      "memory_size_mib:       128\n"
                      "environment:\n"
                      "  A: 1\n"
                      "empty:                 none\n"
                      "none_here:             none\n"
                      "last_modified_unix_ms: 1700000000123 (2023-11-14T22:13:20.123Z)\n"
                      "scopes:                invoke,manage\n"
                      "flag:                  true\n");
  free_streams(&s);

  brume_autoptr(json_t) rows =
      json_pack("[{s:s, s:i}, {s:s, s:i}]", "function_name", "a-long-name", "memory_size_mib", 128,
                "function_name", "b", "memory_size_mib", 10240);
  const brume_cli_column cols[] = {{"function_name", "NAME"}, {"memory_size_mib", "MEMORY"}};
  open_streams(&s);
  brume_cli_print_table(s.out, rows, cols, 2, false);
  close_streams(&s);
  assert_string_equal(s.out_buf,
                      "NAME         MEMORY\n"
                      "a-long-name  128\n"
                      "b            10240\n");
  free_streams(&s);

  open_streams(&s);
  brume_cli_print_table(s.out, rows, cols, 2, true);
  close_streams(&s);
  json_error_t e;
  brume_autoptr(json_t) back = json_loads(s.out_buf, 0, &e);
  assert_true(json_equal(back, rows));
  free_streams(&s);
}

static void test_function_json(void **state) {
  (void)state;
  Brume__Environment__VariablesEntry v = BRUME__ENVIRONMENT__VARIABLES_ENTRY__INIT;
  v.key = "GREETING";
  v.value = "hi";
  Brume__Environment__VariablesEntry *vp = &v;
  Brume__Environment env = BRUME__ENVIRONMENT__INIT;
  env.n_variables = 1;
  env.variables = &vp;
  Brume__FunctionConfiguration c = BRUME__FUNCTION_CONFIGURATION__INIT;
  c.function_name = "hello";
  c.handler_mode = BRUME__HANDLER_MODE__HANDLER_MODE_EXEC;
  c.memory_size_mib = 256;
  c.timeout_ms = 3000;
  c.environment = &env;
  brume_autoptr(json_t) j = brume_cli_json_function(&c);
  assert_string_equal(json_string_value(json_object_get(j, "function_name")), "hello");
  assert_string_equal(json_string_value(json_object_get(j, "handler_mode")), "exec");
  assert_int_equal(json_integer_value(json_object_get(j, "timeout_ms")), 3000);
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(j, "environment"), "GREETING")), "hi");
  assert_int_equal(json_object_size(j), 15); /* every FunctionConfiguration field */
}

static void test_method_indices(void **state) {
  (void)state;
  assert_int_equal(brume__frontend__descriptor.n_methods, BRUME_CLI_N_METHODS);
  for (unsigned i = 0; i < BRUME_CLI_N_METHODS; i++)
    assert_string_equal(brume_cli_method_name((enum brume_cli_method)i),
                        brume__frontend__descriptor.methods[i].name);
}

static void test_report(void **state) {
  (void)state;
  brume_cli_settings s = {
      .endpoint = "10.0.0.1:7040", .api_key = "brume_k_secret", .key_from = "BRUME_API_KEY"};
  brume_err e = {BRUME_NOT_FOUND,
                 "10.0.0.1:7040 /brume.Frontend/GetFunction: ResourceNotFoundException: function "
                 "nope (account a1) not found"};
  streams st;
  open_streams(&st);
  assert_int_equal(brume_cli_report(st.err, &s, "get function nope", &e), BRUME_CLI_EXIT_FAILED);
  close_streams(&st);
  assert_string_equal(st.err_buf,
                      "brume: get function nope: NOT_FOUND: ResourceNotFoundException: function "
                      "nope (account a1) not found\n");
  free_streams(&st);

  static const struct {
    brume_status code;
    const char *hint;
  } hints[] = {
      {BRUME_UNAUTHENTICATED, "brume: hint: check --api-key or BRUME_API_KEY"},
      {BRUME_UNAVAILABLE, "brume: hint: is brume-frontend running at 10.0.0.1:7040?"},
      {BRUME_RESOURCE_EXHAUSTED, "brume: hint: throttled"},
      {BRUME_PERMISSION_DENIED, "brume: hint: the API key lacks the scope"},
      {BRUME_DEADLINE_EXCEEDED, "brume: hint: no answer before the deadline: raise --timeout-ms"},
  };
  for (size_t i = 0; i < BRUME_ARRAY_LEN(hints); i++) {
    brume_err h = {hints[i].code, "10.0.0.1:7040 /brume.Frontend/Invoke: something"};
    open_streams(&st);
    brume_cli_report(st.err, &s, "invoke f", &h);
    close_streams(&st);
    assert_non_null(strstr(st.err_buf, brume_status_name(hints[i].code)));
    if (strstr(st.err_buf, hints[i].hint) == NULL) fail_msg("no hint in: %s", st.err_buf);
    assert_null(strstr(st.err_buf, "brume_k_secret")); /* the key is never printed */
    free_streams(&st);
  }
  /* No key at all: the hint says so. */
  s.api_key = NULL;
  brume_err u = {BRUME_UNAUTHENTICATED, "x /brume.Frontend/Invoke: UnrecognizedClientException"};
  open_streams(&st);
  brume_cli_report(st.err, &s, "invoke f", &u);
  close_streams(&st);
  assert_non_null(strstr(st.err_buf, "brume: hint: no API key was given"));
  free_streams(&st);

  /* Messages that do not come from a call pass unchanged. */
  assert_string_equal(brume_cli_server_message("plain: text"), "plain: text");
  assert_string_equal(brume_cli_server_message("a b /brume.Frontend/X: y"),
                      "a b /brume.Frontend/X: y");
}

static void test_throttle(void **state) {
  (void)state;
  brume_err t = {BRUME_RESOURCE_EXHAUSTED,
                 "h:1 /brume.Frontend/Invoke: ConcurrentInvocationLimitExceeded: at limit"};
  assert_true(brume_cli_is_throttle(&t));
  brume_err big = {BRUME_RESOURCE_EXHAUSTED,
                   "h:1 /brume.Frontend/Invoke: Received message larger than max (9 vs. 4)"};
  assert_false(brume_cli_is_throttle(&big));
  brume_err other = {BRUME_UNAVAILABLE, "h:1 /brume.Frontend/Invoke: down"};
  assert_false(brume_cli_is_throttle(&other));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_invoke_text),   cmocka_unit_test(test_invoke_function_error),
      cmocka_unit_test(test_invoke_json),   cmocka_unit_test(test_object_and_table_text),
      cmocka_unit_test(test_function_json), cmocka_unit_test(test_method_indices),
      cmocka_unit_test(test_report),        cmocka_unit_test(test_throttle),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
