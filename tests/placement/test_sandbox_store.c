/* placement/sandbox_store against a real etcd: a record written reads back field for field; one
 * that cannot be read is skipped, not fatal; a delete guarded by a mod revision leaves a record
 * changed since; of two daemons adopting one record read at the same revision exactly one wins,
 * and the winner is the owner etcd keeps. The JSON parser refuses what is not a record. Label
 * "placement" (not "unit"): the harness starts etcd; exit 77 when there is no etcd binary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "etcd.h"
#include "etcd_server.h"
#include "sandbox_store.h"

#define PREFIX "/ss"

BRUME_TEST_ETCD_GROUP()

static brume_sandbox_record record(const char *id, const char *owner) {
  return (brume_sandbox_record){.id = (char *)id,
                                .owner = (char *)owner,
                                .host_id = "w1",
                                .function = "acct/fn/1/r7",
                                .memory_mib = 512,
                                .vcpu_milli = 289,
                                .provisioned = true,
                                .created_unix_ms = 1764290000123};
}

static brume_sandbox_record *list(size_t *n) {
  brume_err *err = NULL;
  brume_sandbox_record *v = brume_sandbox_store_list(etcd, PREFIX, n, &err);
  if (v == NULL) fail_msg("list: %s", err->msg);
  return v;
}

static void test_put_list_delete(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_sandbox_record a = record("sb-a", "pl-1"), b = record("sb-b", "pl-2");
  b.provisioned = false;
  assert_int_equal(brume_sandbox_store_put(etcd, PREFIX, &b, &err), 0);
  assert_int_equal(brume_sandbox_store_put(etcd, PREFIX, &a, &err), 0);
  /* Not a record: skipped with a warning. */
  assert_int_equal(
      brume_etcd_put(etcd, PREFIX "/placement/sandboxes/sb-bad", "{", 1, 0, NULL, &err), 0);
  size_t n = 0;
  brume_sandbox_record *v = list(&n);
  assert_int_equal(n, 2);
  assert_string_equal(v[0].id, "sb-a"); /* key order */
  assert_string_equal(v[0].owner, "pl-1");
  assert_string_equal(v[0].host_id, "w1");
  assert_string_equal(v[0].function, "acct/fn/1/r7");
  assert_int_equal(v[0].memory_mib, 512);
  assert_int_equal(v[0].vcpu_milli, 289);
  assert_true(v[0].provisioned);
  assert_int_equal(v[0].created_unix_ms, 1764290000123);
  assert_true(v[0].mod_revision > 0);
  assert_false(v[1].provisioned);
  /* A guarded delete of a record changed since it was read does nothing. */
  int64_t old_rev = v[1].mod_revision;
  b.memory_mib = 1024;
  assert_int_equal(brume_sandbox_store_put(etcd, PREFIX, &b, &err), 0);
  assert_int_equal(brume_sandbox_store_delete(etcd, PREFIX, "sb-b", old_rev, &err), 0);
  brume_sandbox_records_free(v, n);
  v = list(&n);
  assert_int_equal(n, 2);
  assert_int_equal(v[1].memory_mib, 1024);
  /* With the current revision, and unguarded, it goes. */
  assert_int_equal(brume_sandbox_store_delete(etcd, PREFIX, "sb-b", v[1].mod_revision, &err), 0);
  assert_int_equal(brume_sandbox_store_delete(etcd, PREFIX, "sb-a", 0, &err), 0);
  brume_sandbox_records_free(v, n);
  v = list(&n);
  assert_int_equal(n, 0);
  brume_sandbox_records_free(v, n);
  assert_int_equal(brume_etcd_delete(etcd, PREFIX "/", true, NULL, &err), 0);
}

static void test_adopt_one_winner(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_sandbox_record r = record("sb-orphan", "pl-dead");
  assert_int_equal(brume_sandbox_store_put(etcd, PREFIX, &r, &err), 0);
  size_t n = 0;
  brume_sandbox_record *v = list(&n);
  assert_int_equal(n, 1);
  /* Two survivors read the same revision; both try. */
  bool first = false, second = false;
  assert_int_equal(brume_sandbox_store_adopt(etcd, PREFIX, &v[0], "pl-2", &first, &err), 0);
  assert_int_equal(brume_sandbox_store_adopt(etcd, PREFIX, &v[0], "pl-3", &second, &err), 0);
  assert_true(first);
  assert_false(second);
  brume_sandbox_records_free(v, n);
  v = list(&n);
  assert_string_equal(v[0].owner, "pl-2");
  assert_int_equal(v[0].memory_mib, 512); /* the rest unchanged */
  brume_sandbox_records_free(v, n);
  assert_int_equal(brume_etcd_delete(etcd, PREFIX "/", true, NULL, &err), 0);
}

static void test_parse_refusals(void **state) {
  (void)state;
  const char *bad[] = {
      "not json",
      "[]",
      "{\"owner\":\"p\",\"host\":\"w\",\"function\":\"f\",\"memory_mib\":0,\"vcpu_milli\":1}",
      "{\"owner\":\"p\",\"host\":\"w\",\"function\":\"f\",\"memory_mib\":128}",
      "{\"owner\":1,\"host\":\"w\",\"function\":\"f\",\"memory_mib\":128,\"vcpu_milli\":1}",
      "{\"owner\":\"p\",\"host\":\"w\",\"function\":\"f\",\"memory_mib\":128,\"vcpu_milli\":-1}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    brume_sandbox_record r = {0};
    brume_err *err = NULL;
    if (brume_sandbox_record_parse(bad[i], &r, &err) == 0) fail_msg("parsed: %s", bad[i]);
    assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
    brume_err_clear(&err);
  }
  /* Round trip, and the optional fields default. */
  brume_sandbox_record a = record("x", "pl-1"), back = {0};
  char *json = brume_sandbox_record_json(&a);
  brume_err *err = NULL;
  assert_int_equal(brume_sandbox_record_parse(json, &back, &err), 0);
  assert_string_equal(back.owner, "pl-1");
  assert_int_equal(back.created_unix_ms, a.created_unix_ms);
  free(json);
  free(back.owner);
  free(back.host_id);
  free(back.function);
  brume_sandbox_record min = {0};
  assert_int_equal(brume_sandbox_record_parse("{\"owner\":\"p\",\"host\":\"w\",\"function\":\"f\","
                                              "\"memory_mib\":128,\"vcpu_milli\":72}",
                                              &min, &err),
                   0);
  assert_false(min.provisioned);
  assert_int_equal(min.created_unix_ms, 0);
  free(min.owner);
  free(min.host_id);
  free(min.function);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_put_list_delete),
      cmocka_unit_test(test_adopt_one_winner),
      cmocka_unit_test(test_parse_refusals),
  };
  if (!brume_test_etcd_available()) {
    fprintf(stderr, "test_placement_sandbox_store: skipped: no etcd binary on PATH\n");
    return 77;
  }
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
