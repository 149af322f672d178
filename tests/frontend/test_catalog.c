/* frontend/catalog against a real etcd: documents written before the catalog starts are resolved
 * to prebuilt sandbox specs (environment decrypted, code URL, resources, ARNs, version refs);
 * changes and deletions are seen live once brume_catalog_wait(revision) returns, while targets
 * already handed out stay valid; weighted aliases pick their versions; an unusable document is
 * not resolvable; a wait for a revision never written times out. Label "frontend" (not "unit"):
 * the harness starts etcd; exit 77 when there is no etcd binary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "catalog.h"
#include "etcd.h"
#include "etcd_server.h"
#include "function_doc.h"

#define PREFIX "/cat"
#define SHA1 "1111111111111111111111111111111111111111111111111111111111111111"
#define SHA2 "2222222222222222222222222222222222222222222222222222222222222222"

BRUME_TEST_ETCD_GROUP()

static brume_env_key key;

static brume_catalog *open_catalog(void) {
  brume_catalog_opts o = {.etcd = etcd,
                          .prefix = PREFIX,
                          .region = "local",
                          .env_key = &key,
                          .code_url_base = "http://10.0.0.5:9040/"};
  brume_err *err = NULL;
  brume_catalog *c = brume_catalog_new(&o, &err);
  if (c == NULL) fail_msg("catalog: %s", err->msg);
  return c;
}

static brume_fn_doc *new_doc(uint32_t memory, const char *env_json) {
  brume_fn_config c;
  brume_fn_config_init(&c);
  brume_fn_set_string(&c.handler, "handler.main");
  c.memory_mib = memory;
  c.timeout_ms = 2500;
  memcpy(c.code_sha256, SHA1, 65);
  c.code_size = 321;
  if (env_json) c.env_sealed = brume_env_seal(&key, env_json, strlen(env_json));
  return brume_fn_doc_new(&c, 1000);
}

/* Writes a document; returns the write's revision. */
static int64_t put_doc(const char *account, const char *name, const brume_fn_doc *d) {
  char k[256];
  snprintf(k, sizeof(k), PREFIX "/functions/%s/%s", account, name);
  char *json = brume_fn_doc_json(d);
  int64_t rev = 0;
  brume_err *err = NULL;
  if (brume_etcd_put(etcd, k, json, strlen(json), 0, &rev, &err) < 0) fail_msg("%s", err->msg);
  free(json);
  return rev;
}

static const brume_fn_target *resolve(brume_catalog *c, const char *account, const char *name,
                                      const char *qualifier, double pick) {
  const brume_fn_target *t = NULL;
  brume_err *err = NULL;
  if (brume_catalog_resolve(c, account, name, qualifier, pick, &t, &err) < 0)
    fail_msg("resolve %s %s %s: %s", account, name, qualifier ? qualifier : "", err->msg);
  return t;
}

static void expect_not_found(brume_catalog *c, const char *account, const char *name,
                             const char *qualifier, const char *arn) {
  const brume_fn_target *t = NULL;
  brume_err *err = NULL;
  assert_int_equal(brume_catalog_resolve(c, account, name, qualifier, 0.5, &t, &err), -1);
  assert_null(t);
  assert_int_equal(err->code, BRUME_NOT_FOUND);
  char want[300];
  snprintf(want, sizeof(want), "ResourceNotFoundException: Function not found: %s", arn);
  assert_string_equal(err->msg, want);
  brume_err_free(err);
}

static void wait_for(brume_catalog *c, int64_t rev) {
  brume_err *err = NULL;
  if (brume_catalog_wait(c, rev, 5000, &err) < 0) fail_msg("wait: %s", err->msg);
}

static void clean(void) {
  assert_int_equal(brume_etcd_delete(etcd, PREFIX "/", true, NULL, NULL), 0);
}

static void test_initial_load_and_spec(void **state) {
  (void)state;
  brume_fn_doc *d = new_doc(1769, "{\"DB\":\"postgres://s\",\"MODE\":\"x\"}");
  put_doc("a1", "hello", d);
  brume_catalog *c = open_catalog();
  const brume_fn_target *t = resolve(c, "a1", "hello", NULL, 0.5);
  const Brume__SandboxSpec *s = brume_fn_target_spec(t);
  assert_string_equal(s->function->account_id, "a1");
  assert_string_equal(s->function->function_name, "hello");
  assert_string_equal(s->function->version, "$LATEST");
  assert_string_equal(s->function->revision_id, d->latest.revision_id);
  assert_string_equal(s->code->sha256, SHA1);
  assert_string_equal(s->code->url, "http://10.0.0.5:9040/code/" SHA1);
  assert_int_equal(s->code->size_bytes, 321);
  assert_int_equal(s->resources->memory_mib, 1769);
  assert_int_equal(s->resources->vcpu_milli, 1000);
  assert_int_equal(s->resources->ephemeral_storage_mib, 512);
  assert_int_equal(s->timeout_ms, 2500);
  assert_int_equal(s->handler_mode, BRUME__HANDLER_MODE__HANDLER_MODE_RUNTIME_API);
  assert_string_equal(s->handler, "handler.main");
  assert_string_equal(s->runtime, "provided");
  assert_string_equal(s->function_arn, "arn:brume:lambda:local:a1:function:hello");
  assert_int_equal(s->n_environment, 2);
  assert_string_equal(s->environment[0]->key, "DB");
  assert_string_equal(s->environment[0]->value, "postgres://s");
  assert_string_equal(brume_fn_target_invoked_arn(t), "arn:brume:lambda:local:a1:function:hello");
  brume_fn_target_unref(t);
  /* An explicit $LATEST is the same version, invoked under a qualified ARN. */
  t = resolve(c, "a1", "hello", "$LATEST", 0.5);
  assert_string_equal(brume_fn_target_spec(t)->function->version, "$LATEST");
  assert_string_equal(brume_fn_target_invoked_arn(t),
                      "arn:brume:lambda:local:a1:function:hello:$LATEST");
  brume_fn_target_unref(t);
  char *url = brume_catalog_code_url(c, SHA2);
  assert_string_equal(url, "http://10.0.0.5:9040/code/" SHA2);
  free(url);
  /* Another account's function of the same name is another function. */
  expect_not_found(c, "a2", "hello", "", "arn:brume:lambda:local:a2:function:hello");
  expect_not_found(c, "a1", "hello", "1", "arn:brume:lambda:local:a1:function:hello:1");
  expect_not_found(c, "a1", "hello", "live", "arn:brume:lambda:local:a1:function:hello:live");
  brume_catalog_free(c);
  brume_fn_doc_free(d);
  clean();
}

static void test_changes_live(void **state) {
  (void)state;
  brume_catalog *c = open_catalog();
  expect_not_found(c, "a1", "fn", NULL, "arn:brume:lambda:local:a1:function:fn");
  brume_fn_doc *d = new_doc(128, NULL);
  wait_for(c, put_doc("a1", "fn", d));
  assert_true(brume_catalog_revision(c) > 0);
  const brume_fn_target *old = resolve(c, "a1", "fn", "", 0.5);
  assert_int_equal(brume_fn_target_spec(old)->resources->memory_mib, 128);
  assert_int_equal(brume_fn_target_spec(old)->n_environment, 0);
  /* An update: a new revision with more memory and an environment. */
  d->latest.memory_mib = 512;
  d->latest.env_sealed = brume_env_seal(&key, "{\"K\":\"v\"}", 9);
  brume_fn_doc_touch_latest(d, 2000);
  wait_for(c, put_doc("a1", "fn", d));
  const brume_fn_target *t = resolve(c, "a1", "fn", "", 0.5);
  assert_int_equal(brume_fn_target_spec(t)->resources->memory_mib, 512);
  assert_string_equal(brume_fn_target_spec(t)->function->revision_id, d->latest.revision_id);
  assert_int_equal(brume_fn_target_spec(t)->n_environment, 1);
  brume_fn_target_unref(t);
  /* The target handed out before the change still reads as it was. */
  assert_int_equal(brume_fn_target_spec(old)->resources->memory_mib, 128);
  /* A delete. */
  int64_t rev = 0;
  brume_etcd_txn_result *r = NULL;
  brume_etcd_op del = {.type = BRUME_ETCD_OP_DELETE, .key = PREFIX "/functions/a1/fn"};
  brume_etcd_txn_req req = {.success = &del, .n_success = 1};
  r = brume_etcd_txn(etcd, &req, NULL);
  assert_non_null(r);
  rev = r->revision;
  brume_etcd_txn_result_free(r);
  wait_for(c, rev);
  expect_not_found(c, "a1", "fn", "", "arn:brume:lambda:local:a1:function:fn");
  assert_int_equal(brume_fn_target_spec(old)->resources->memory_mib, 128);
  brume_fn_target_unref(old);
  /* A document that cannot be used (not JSON, or sealed under another key) is not resolvable. */
  wait_for(c, put_doc("a1", "fn", d));
  brume_fn_target_unref(resolve(c, "a1", "fn", "", 0.5));
  int64_t bad_rev = 0;
  assert_int_equal(brume_etcd_put(etcd, PREFIX "/functions/a1/fn", "{", 1, 0, &bad_rev, NULL), 0);
  wait_for(c, bad_rev);
  expect_not_found(c, "a1", "fn", "", "arn:brume:lambda:local:a1:function:fn");
  brume_env_key other;
  memset(other.bytes, 0x42, sizeof(other.bytes));
  free(d->latest.env_sealed);
  d->latest.env_sealed = brume_env_seal(&other, "{}", 2);
  wait_for(c, put_doc("a1", "fn", d));
  expect_not_found(c, "a1", "fn", "", "arn:brume:lambda:local:a1:function:fn");
  brume_fn_doc_free(d);
  brume_catalog_free(c);
  clean();
}

static void test_versions_and_weighted_alias(void **state) {
  (void)state;
  brume_catalog *c = open_catalog();
  brume_fn_doc *d = new_doc(128, NULL);
  bool created;
  assert_non_null(brume_fn_doc_publish(d, NULL, 2000, &created, NULL));
  d->latest.memory_mib = 256;
  brume_fn_doc_touch_latest(d, 3000);
  assert_non_null(brume_fn_doc_publish(d, NULL, 3000, &created, NULL));
  brume_fn_alias a = {.name = "live",
                      .version = "1",
                      .description = "",
                      .routing_version = "2",
                      .routing_weight = 0.2};
  assert_non_null(brume_fn_doc_put_alias(d, &a, true, "arn", NULL));
  wait_for(c, put_doc("a1", "fn", d));
  const brume_fn_target *t = resolve(c, "a1", "fn", "2", 0.5);
  assert_string_equal(brume_fn_target_spec(t)->function->version, "2");
  assert_string_equal(brume_fn_target_spec(t)->function->revision_id, d->versions[1].revision_id);
  assert_int_equal(brume_fn_target_spec(t)->resources->memory_mib, 256);
  assert_string_equal(brume_fn_target_invoked_arn(t), "arn:brume:lambda:local:a1:function:fn:2");
  /* The spec's ARN is always unqualified. */
  assert_string_equal(brume_fn_target_spec(t)->function_arn,
                      "arn:brume:lambda:local:a1:function:fn");
  brume_fn_target_unref(t);
  /* pick < weight: the additional version. Count over a spread of picks. */
  int to_two = 0;
  for (int i = 0; i < 100; i++) {
    t = resolve(c, "a1", "fn", "live", i / 100.0);
    assert_string_equal(brume_fn_target_invoked_arn(t),
                        "arn:brume:lambda:local:a1:function:fn:live");
    if (strcmp(brume_fn_target_spec(t)->function->version, "2") == 0) to_two++;
    brume_fn_target_unref(t);
  }
  assert_int_equal(to_two, 20);
  /* Repointed without routing: every pick goes to version 2. */
  a.version[0] = '2';
  a.routing_version[0] = '\0';
  a.routing_weight = 0;
  assert_non_null(brume_fn_doc_put_alias(d, &a, false, "arn", NULL));
  wait_for(c, put_doc("a1", "fn", d));
  t = resolve(c, "a1", "fn", "live", 0.0);
  assert_string_equal(brume_fn_target_spec(t)->function->version, "2");
  brume_fn_target_unref(t);
  brume_fn_doc_free(d);
  brume_catalog_free(c);
  clean();
}

static void test_wait_times_out(void **state) {
  (void)state;
  brume_catalog *c = open_catalog();
  int64_t now = brume_catalog_revision(c);
  brume_err *err = NULL;
  assert_int_equal(brume_catalog_wait(c, now, 10, &err), 0);
  assert_int_equal(brume_catalog_wait(c, now + 1000, 100, &err), -1);
  assert_int_equal(err->code, BRUME_DEADLINE_EXCEEDED);
  brume_err_free(err);
  /* A write elsewhere in etcd does not move the catalog's revision... */
  int64_t other = 0;
  assert_int_equal(brume_etcd_put(etcd, "/elsewhere", "x", 1, 0, &other, NULL), 0);
  assert_int_equal(brume_catalog_wait(c, other, 200, NULL), -1);
  /* ...a function's does, and a wait already under way returns once it is applied. */
  brume_fn_doc *d = new_doc(128, NULL);
  wait_for(c, put_doc("a1", "w", d));
  brume_fn_doc_free(d);
  brume_catalog_free(c);
  clean();
}

int main(void) {
  if (!brume_test_etcd_available()) {
    fprintf(stderr, "no etcd binary on PATH: skipping\n");
    return 77;
  }
  memset(key.bytes, 0x17, sizeof(key.bytes));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_initial_load_and_spec),
      cmocka_unit_test(test_changes_live),
      cmocka_unit_test(test_versions_and_weighted_alias),
      cmocka_unit_test(test_wait_times_out),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
