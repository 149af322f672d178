/* frontend/function_doc: a function's document and its pure operations: configuration and
 * environment checks, JSON round trip and refusals, publishing (with no duplicate of an unchanged
 * $LATEST), qualifier resolution with alias routing, alias validity, and version deletion refused
 * while an alias points or routes to it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "function_doc.h"

#define ARN "arn:brume:lambda:local:a1:function:fn"
#define SHA1 "1111111111111111111111111111111111111111111111111111111111111111"
#define SHA2 "2222222222222222222222222222222222222222222222222222222222222222"

/* Asserts err's code and that its message starts with reason and holds part; frees it. */
static void expect(brume_err **err, brume_status code, const char *reason, const char *part) {
  assert_non_null(*err);
  if ((*err)->code != code || strncmp((*err)->msg, reason, strlen(reason)) != 0 ||
      (part && strstr((*err)->msg, part) == NULL))
    fail_msg("got %d %s; wanted %d %s ... %s", (*err)->code, (*err)->msg, code, reason,
             part ? part : "");
  brume_err_clear(err);
}

static brume_fn_doc *new_doc(void) {
  brume_fn_config c;
  brume_fn_config_init(&c);
  brume_fn_set_string(&c.handler, "bootstrap");
  memcpy(c.code_sha256, SHA1, 65);
  c.code_size = 100;
  brume_fn_doc *d = brume_fn_doc_new(&c, 1000);
  assert_null(c.handler); /* moved */
  return d;
}

/* JSON out and back in: the result must be equal field for field (checked through JSON). */
static brume_fn_doc *round_trip(const brume_fn_doc *d) {
  char *j = brume_fn_doc_json(d);
  brume_err *err = NULL;
  brume_fn_doc *back = brume_fn_doc_parse(j, strlen(j), &err);
  if (back == NULL) fail_msg("parse: %s", err->msg);
  char *j2 = brume_fn_doc_json(back);
  assert_string_equal(j, j2);
  free(j);
  free(j2);
  return back;
}

static void test_config_checks(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_fn_config c;
  brume_fn_config_init(&c);
  assert_string_equal(c.version, "$LATEST");
  assert_int_equal(c.memory_mib, 128);
  assert_int_equal(c.timeout_ms, 3000);
  assert_int_equal(c.ephemeral_mib, 512);
  assert_string_equal(c.runtime, "provided");
  /* The handler is required. */
  assert_int_equal(brume_fn_config_check(&c, &err), -1);
  expect(&err, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException: handler", NULL);
  brume_fn_set_string(&c.handler, "bootstrap");
  assert_int_equal(brume_fn_config_check(&c, &err), 0);
  c.memory_mib = 64;
  assert_int_equal(brume_fn_config_check(&c, &err), -1);
  expect(&err, BRUME_INVALID_ARGUMENT,
         "InvalidParameterValueException: memory_size_mib 64 is out of range 128-10240", NULL);
  c.memory_mib = 10241;
  assert_int_equal(brume_fn_config_check(&c, &err), -1);
  expect(&err, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException: memory_size_mib", NULL);
  c.memory_mib = 10240;
  c.timeout_ms = 900001;
  assert_int_equal(brume_fn_config_check(&c, &err), -1);
  expect(&err, BRUME_INVALID_ARGUMENT,
         "InvalidParameterValueException: timeout_ms 900001 is out of range 1-900000", NULL);
  c.timeout_ms = 900000;
  c.ephemeral_mib = 511;
  assert_int_equal(brume_fn_config_check(&c, &err), -1);
  expect(&err, BRUME_INVALID_ARGUMENT,
         "InvalidParameterValueException: ephemeral_storage_mib 511 is out of range", NULL);
  c.ephemeral_mib = 10240;
  assert_int_equal(brume_fn_config_check(&c, &err), 0);
  char desc[258];
  memset(desc, 'd', 257);
  desc[257] = '\0';
  brume_fn_set_string(&c.description, desc);
  assert_int_equal(brume_fn_config_check(&c, &err), -1);
  expect(&err, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException: description", "256");
  desc[256] = '\0';
  brume_fn_set_string(&c.description, desc);
  assert_int_equal(brume_fn_config_check(&c, &err), 0);
  char handler[130];
  memset(handler, 'h', 129);
  handler[129] = '\0';
  brume_fn_set_string(&c.handler, handler);
  assert_int_equal(brume_fn_config_check(&c, &err), -1);
  expect(&err, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException: handler", "1-128");
  brume_fn_set_string(&c.handler, "h");
  brume_fn_set_string(&c.runtime, "python3.12");
  assert_int_equal(brume_fn_config_check(&c, &err), -1);
  expect(&err, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException: runtime", NULL);
  brume_fn_set_string(&c.runtime, "provided");
  c.handler_mode = 9;
  assert_int_equal(brume_fn_config_check(&c, &err), -1);
  expect(&err, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException: handler_mode", NULL);
  c.handler_mode = BRUME__HANDLER_MODE__HANDLER_MODE_EXEC;
  assert_int_equal(brume_fn_config_check(&c, &err), 0);
  brume_fn_config_clear(&c);
}

/* An Environment message with n variables. */
typedef struct env_fixture {
  Brume__Environment env;
  Brume__Environment__VariablesEntry entries[8];
  Brume__Environment__VariablesEntry *ptrs[8];
} env_fixture;

static Brume__Environment *make_env(env_fixture *f, const char *const *kv, size_t n) {
  brume__environment__init(&f->env);
  for (size_t i = 0; i < n; i++) {
    brume__environment__variables_entry__init(&f->entries[i]);
    f->entries[i].key = (char *)kv[2 * i];
    f->entries[i].value = (char *)kv[2 * i + 1];
    f->ptrs[i] = &f->entries[i];
  }
  f->env.n_variables = n;
  f->env.variables = f->ptrs;
  return &f->env;
}

static void test_environment(void **state) {
  (void)state;
  brume_err *err = NULL;
  env_fixture f;
  assert_int_equal(brume_fn_env_check(NULL, &err), 0);
  const char *good[] = {"DB_URL", "postgres://secret", "a1", ""};
  assert_int_equal(brume_fn_env_check(make_env(&f, good, 2), &err), 0);
  char *json = brume_fn_env_to_json(make_env(&f, good, 2));
  assert_string_equal(json, "{\"DB_URL\":\"postgres://secret\",\"a1\":\"\"}");
  brume_fn_env_var *vars;
  size_t n;
  assert_int_equal(brume_fn_env_parse(json, strlen(json), &vars, &n, &err), 0);
  assert_int_equal(n, 2);
  assert_string_equal(vars[0].name, "DB_URL");
  assert_string_equal(vars[0].value, "postgres://secret");
  brume_fn_env_free(vars, n);
  free(json);
  assert_int_equal(brume_fn_env_parse("[1]", 3, &vars, &n, &err), -1);
  expect(&err, BRUME_DATA_LOSS, "", NULL);
  assert_int_equal(brume_fn_env_parse("{\"a\":1}", 7, &vars, &n, &err), -1);
  expect(&err, BRUME_DATA_LOSS, "", NULL);

  const char *reserved[] = {"_HANDLER", "AWS_REGION",       "AWS_LAMBDA_FUNCTION_NAME",
                            "TZ",       "LAMBDA_TASK_ROOT", "AWS_LAMBDA_ANYTHING"};
  for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
    const char *kv[] = {reserved[i], "x"};
    assert_int_equal(brume_fn_env_check(make_env(&f, kv, 1), &err), -1);
    expect(&err, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException: environment variable",
           "reserved");
  }
  const char *bad_names[] = {"1A", "A-B", "", "A B", "_X"};
  for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
    const char *kv[] = {bad_names[i], "secret-value"};
    assert_int_equal(brume_fn_env_check(make_env(&f, kv, 1), &err), -1);
    assert_null(strstr(err->msg, "secret-value")); /* values never appear */
    expect(&err, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException: environment variable",
           "[A-Za-z]");
  }
  const char *twice[] = {"A", "1", "A", "2"};
  assert_int_equal(brume_fn_env_check(make_env(&f, twice, 2), &err), -1);
  expect(&err, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException", "twice");
  /* 4 KiB of names and values together. */
  char *big = malloc(4097);
  memset(big, 'v', 4096);
  big[4096 - 1] = '\0'; /* "A" + 4095 bytes = 4096: fits */
  const char *fits[] = {"A", big};
  assert_int_equal(brume_fn_env_check(make_env(&f, fits, 1), &err), 0);
  big[4095] = 'v';
  big[4096] = '\0';
  assert_int_equal(brume_fn_env_check(make_env(&f, fits, 1), &err), -1);
  expect(&err, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException", "4096");
  free(big);
}

static void test_json_round_trip_and_refusals(void **state) {
  (void)state;
  brume_fn_doc *d = new_doc();
  assert_int_equal(strlen(d->latest.revision_id), 32);
  assert_int_equal(d->latest.last_modified_unix_ms, 1000);
  assert_int_equal(d->created_unix_ms, 1000);
  d->latest.env_sealed = strdup("v1:AAAA");
  bool created;
  assert_non_null(brume_fn_doc_publish(d, "first", 2000, &created, NULL));
  brume_fn_alias a = {.name = "live", .version = "1", .description = "d"};
  assert_non_null(brume_fn_doc_put_alias(d, &a, true, ARN, NULL));
  brume_fn_doc *back = round_trip(d);
  assert_string_equal(back->latest.handler, "bootstrap");
  assert_string_equal(back->latest.env_sealed, "v1:AAAA");
  assert_int_equal(back->n_versions, 1);
  assert_string_equal(back->versions[0].description, "first");
  assert_int_equal(back->n_aliases, 1);
  assert_string_equal(back->aliases[0].name, "live");
  brume_fn_doc_free(back);
  brume_fn_doc_free(d);

  char *j = NULL;
  d = new_doc();
  j = brume_fn_doc_json(d);
  brume_fn_doc_free(d);
  /* Variants of a good document that must be refused. */
  struct {
    const char *from, *to;
  } edits[] = {
      {"\"last_version\":0", "\"last_version\":\"0\""},
      {"\"memory_mib\":128", "\"memory_mib\":-1"},
      {"\"handler\":", "\"handlr\":"},
      {"\"versions\":[]", "\"versions\":{}"},
      {"\"version\":\"$LATEST\"", "\"version\":\"1\""},
      {"\"aliases\":[]",
       "\"aliases\":[{\"name\":\"x\",\"version\":\"4\",\"description\":\"\","
       "\"routing_version\":\"\",\"routing_weight\":0,\"revision_id\":"
       "\"0123456789abcdef0123456789abcdef\"}]"},
      {"\"aliases\":[]", "\"aliases\":[],\"extra\":1"},
      {"\"code_sha256\":\"" SHA1 "\"", "\"code_sha256\":\"xyz\""},
  };
  brume_err *err = NULL;
  for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
    char *at = strstr(j, edits[i].from);
    if (at == NULL) fail_msg("no %s in %s", edits[i].from, j);
    size_t pre = (size_t)(at - j);
    char buf[4096];
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)pre, j, edits[i].to, at + strlen(edits[i].from));
    brume_fn_doc *bad = brume_fn_doc_parse(buf, strlen(buf), &err);
    if (bad) fail_msg("parsed edit %zu: %s", i, buf);
    expect(&err, BRUME_DATA_LOSS, "", NULL);
  }
  assert_null(brume_fn_doc_parse("{", 1, &err));
  expect(&err, BRUME_DATA_LOSS, "", NULL);
  free(j);
}

static void test_publish_and_dedup(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_fn_doc *d = new_doc();
  bool created = false;
  const brume_fn_config *v = brume_fn_doc_publish(d, NULL, 2000, &created, &err);
  assert_true(created);
  assert_string_equal(v->version, "1");
  assert_string_equal(v->code_sha256, SHA1);
  assert_string_equal(v->from_revision, d->latest.revision_id);
  assert_string_not_equal(v->revision_id, d->latest.revision_id);
  assert_int_equal(v->last_modified_unix_ms, 2000);
  /* $LATEST unchanged: the same version again, nothing added. */
  v = brume_fn_doc_publish(d, "other description", 3000, &created, &err);
  assert_false(created);
  assert_string_equal(v->version, "1");
  assert_int_equal(d->n_versions, 1);
  /* A change of $LATEST: version 2, with the description asked for. */
  memcpy(d->latest.code_sha256, SHA2, 65);
  brume_fn_doc_touch_latest(d, 4000);
  v = brume_fn_doc_publish(d, "second", 4000, &created, &err);
  assert_true(created);
  assert_string_equal(v->version, "2");
  assert_string_equal(v->code_sha256, SHA2);
  assert_string_equal(v->description, "second");
  /* Version numbers are never reused: delete 2, change, publish: 3. */
  assert_int_equal(brume_fn_doc_delete_version(d, "2", ARN, &err), 0);
  brume_fn_doc_touch_latest(d, 5000);
  v = brume_fn_doc_publish(d, NULL, 5000, &created, &err);
  assert_string_equal(v->version, "3");
  assert_int_equal(d->last_version, 3);
  /* Published versions keep their configuration while $LATEST changes. */
  d->latest.memory_mib = 2048;
  assert_int_equal(brume_fn_doc_version(d, "1")->memory_mib, 128);
  brume_fn_doc *back = round_trip(d);
  assert_int_equal(back->n_versions, 2);
  assert_string_equal(back->versions[1].version, "3");
  brume_fn_doc_free(back);
  brume_fn_doc_free(d);
}

static void test_check_latest(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_fn_doc *d = new_doc();
  char rev[33];
  memcpy(rev, d->latest.revision_id, 33);
  assert_int_equal(brume_fn_doc_check_latest(d, NULL, NULL, &err), 0);
  assert_int_equal(brume_fn_doc_check_latest(d, "", "", &err), 0);
  assert_int_equal(brume_fn_doc_check_latest(d, rev, SHA1, &err), 0);
  brume_fn_doc_touch_latest(d, 2000);
  assert_string_not_equal(rev, d->latest.revision_id);
  assert_int_equal(brume_fn_doc_check_latest(d, rev, NULL, &err), -1);
  expect(&err, BRUME_ABORTED, "PreconditionFailedException: revision_id", NULL);
  assert_int_equal(brume_fn_doc_check_latest(d, NULL, SHA2, &err), -1);
  expect(&err, BRUME_ABORTED, "PreconditionFailedException: code_sha256", NULL);
  brume_fn_doc_free(d);
}

static brume_fn_doc *doc_with_versions(int n) {
  brume_fn_doc *d = new_doc();
  for (int i = 0; i < n; i++) {
    bool created;
    brume_fn_doc_touch_latest(d, 2000 + i);
    assert_non_null(brume_fn_doc_publish(d, NULL, 2000 + i, &created, NULL));
  }
  return d;
}

static void test_aliases_and_routing(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_fn_doc *d = doc_with_versions(3);
  brume_fn_alias a = {.name = "live",
                      .version = "1",
                      .description = "",
                      .routing_version = "2",
                      .routing_weight = 0.25};
  const brume_fn_alias *s = brume_fn_doc_put_alias(d, &a, true, ARN, &err);
  assert_non_null(s);
  assert_int_equal(strlen(s->revision_id), 32);
  char rev[33];
  memcpy(rev, s->revision_id, 33);
  /* Creating it again is a conflict; replacing one that does not exist is not found. */
  assert_null(brume_fn_doc_put_alias(d, &a, true, ARN, &err));
  expect(&err, BRUME_ALREADY_EXISTS, "ResourceConflictException", "live");
  brume_fn_alias b = a;
  b.name = "beta";
  assert_null(brume_fn_doc_put_alias(d, &b, false, ARN, &err));
  expect(&err, BRUME_NOT_FOUND, "ResourceNotFoundException", "beta");
  /* Replacing changes the revision. */
  a.routing_weight = 0.5;
  s = brume_fn_doc_put_alias(d, &a, false, ARN, &err);
  assert_non_null(s);
  assert_string_not_equal(s->revision_id, rev);
  /* Resolution: pick < weight goes to the additional version. */
  assert_string_equal(brume_fn_doc_resolve(d, "live", 0.0, ARN, &err)->version, "2");
  assert_string_equal(brume_fn_doc_resolve(d, "live", 0.49, ARN, &err)->version, "2");
  assert_string_equal(brume_fn_doc_resolve(d, "live", 0.5, ARN, &err)->version, "1");
  assert_string_equal(brume_fn_doc_resolve(d, "live", 1.0, ARN, &err)->version, "1");
  assert_string_equal(brume_fn_doc_resolve(d, "", 0.0, ARN, &err)->version, "$LATEST");
  assert_string_equal(brume_fn_doc_resolve(d, NULL, 0.0, ARN, &err)->version, "$LATEST");
  assert_string_equal(brume_fn_doc_resolve(d, "$LATEST", 0.0, ARN, &err)->version, "$LATEST");
  assert_string_equal(brume_fn_doc_resolve(d, "3", 0.0, ARN, &err)->version, "3");
  assert_null(brume_fn_doc_resolve(d, "4", 0.0, ARN, &err));
  expect(&err, BRUME_NOT_FOUND, "ResourceNotFoundException: Function not found: " ARN ":4", NULL);
  assert_null(brume_fn_doc_resolve(d, "nope", 0.0, ARN, &err));
  expect(&err, BRUME_NOT_FOUND, "ResourceNotFoundException: Function not found: " ARN ":nope",
         NULL);

  /* Invalid aliases, each refused with nothing changed. */
  char *before = brume_fn_doc_json(d);
  struct {
    brume_fn_alias a;
    brume_status code;
    const char *part;
  } bad[] = {
      {{.name = "x", .version = "$LATEST", .routing_version = "1", .routing_weight = 0.1},
       BRUME_INVALID_ARGUMENT,
       "not $LATEST"},
      {{.name = "x", .version = "1", .routing_version = "$LATEST", .routing_weight = 0.1},
       BRUME_INVALID_ARGUMENT,
       "additional_version"},
      {{.name = "x", .version = "1", .routing_version = "1", .routing_weight = 0.1},
       BRUME_INVALID_ARGUMENT,
       "own version"},
      {{.name = "x", .version = "1", .routing_version = "2", .routing_weight = 1.5},
       BRUME_INVALID_ARGUMENT,
       "0.0-1.0"},
      {{.name = "x", .version = "1", .routing_version = "2", .routing_weight = -0.1},
       BRUME_INVALID_ARGUMENT,
       "0.0-1.0"},
      {{.name = "x", .version = "1", .routing_version = "9", .routing_weight = 0.1},
       BRUME_NOT_FOUND,
       ":9"},
      {{.name = "x", .version = "8"}, BRUME_NOT_FOUND, ":8"},
      {{.name = "x", .version = "live"}, BRUME_INVALID_ARGUMENT, "function_version"},
      {{.name = "123", .version = "1"}, BRUME_INVALID_ARGUMENT, "name"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    bad[i].a.description = "";
    if (brume_fn_doc_put_alias(d, &bad[i].a, true, ARN, &err) != NULL) fail_msg("case %zu", i);
    expect(&err, bad[i].code,
           bad[i].code == BRUME_NOT_FOUND ? "ResourceNotFoundException"
                                          : "InvalidParameterValueException",
           bad[i].part);
  }
  char *after = brume_fn_doc_json(d);
  assert_string_equal(before, after);
  free(before);
  free(after);
  /* Weight 0 and 1 are allowed; an alias to $LATEST without routing too. */
  brume_fn_alias edge = {.name = "edge",
                         .version = "3",
                         .description = "",
                         .routing_version = "1",
                         .routing_weight = 1.0};
  assert_non_null(brume_fn_doc_put_alias(d, &edge, true, ARN, &err));
  brume_fn_alias dev = {.name = "dev", .version = "$LATEST", .description = ""};
  assert_non_null(brume_fn_doc_put_alias(d, &dev, true, ARN, &err));
  /* Kept sorted by name. */
  assert_string_equal(d->aliases[0].name, "dev");
  assert_string_equal(d->aliases[1].name, "edge");
  assert_string_equal(d->aliases[2].name, "live");
  assert_int_equal(brume_fn_doc_delete_alias(d, "edge", ARN, &err), 0);
  assert_int_equal(brume_fn_doc_delete_alias(d, "edge", ARN, &err), -1);
  expect(&err, BRUME_NOT_FOUND, "ResourceNotFoundException: Alias not found", "edge");
  brume_fn_doc_free(d);
}

static void test_delete_version(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_fn_doc *d = doc_with_versions(3);
  brume_fn_alias a = {.name = "live",
                      .version = "1",
                      .description = "",
                      .routing_version = "2",
                      .routing_weight = 0.1};
  assert_non_null(brume_fn_doc_put_alias(d, &a, true, ARN, &err));
  assert_int_equal(brume_fn_doc_delete_version(d, "1", ARN, &err), -1);
  expect(&err, BRUME_FAILED_PRECONDITION, "ResourceConflictException", "alias live points to");
  assert_int_equal(brume_fn_doc_delete_version(d, "2", ARN, &err), -1);
  expect(&err, BRUME_FAILED_PRECONDITION, "ResourceConflictException", "alias live routes to");
  assert_int_equal(brume_fn_doc_delete_version(d, "$LATEST", ARN, &err), -1);
  expect(&err, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException", NULL);
  assert_int_equal(brume_fn_doc_delete_version(d, "7", ARN, &err), -1);
  expect(&err, BRUME_NOT_FOUND, "ResourceNotFoundException: Function not found: " ARN ":7", NULL);
  assert_int_equal(d->n_versions, 3);
  assert_int_equal(brume_fn_doc_delete_version(d, "3", ARN, &err), 0);
  assert_int_equal(d->n_versions, 2);
  assert_null(brume_fn_doc_version(d, "3"));
  /* Once the alias routes elsewhere, version 2 may go. */
  a.routing_version[0] = '\0';
  a.routing_weight = 0;
  assert_non_null(brume_fn_doc_put_alias(d, &a, false, ARN, &err));
  assert_int_equal(brume_fn_doc_delete_version(d, "2", ARN, &err), 0);
  brume_fn_doc *back = round_trip(d);
  assert_int_equal(back->n_versions, 1);
  brume_fn_doc_free(back);
  brume_fn_doc_free(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_checks),
      cmocka_unit_test(test_environment),
      cmocka_unit_test(test_json_round_trip_and_refusals),
      cmocka_unit_test(test_publish_and_dedup),
      cmocka_unit_test(test_check_latest),
      cmocka_unit_test(test_aliases_and_routing),
      cmocka_unit_test(test_delete_version),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
