/* Unit tests for placement/table: sandboxes added idle or held, taken most recently used first
 * per function version (never another version's), given back to the front or out of the table,
 * the refusals (unknown, not held, another caller's, a duplicate id), counts per host for the
 * spread, the keep-warm expiry (least recently used first, only the old enough), overdue holds,
 * and a host's sandboxes dropped with it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "table.h"

#define FA "acct/f/1"
#define FB "acct/f/2"

static void add_idle(brume_table *t, const char *id, const char *host, const char *fn,
                     int64_t now) {
  brume_err *err = NULL;
  brume_table_entry e = {
      .id = id, .host_id = host, .function = fn, .memory_mib = 128, .vcpu_milli = 72};
  if (brume_table_add(t, &e, now, &err) < 0) fail_msg("add %s: %s", id, err->msg);
}

static const char *take(brume_table *t, const char *fn, const char *caller) {
  const brume_placed *p = brume_table_take(t, fn, caller, 5000);
  return p ? p->id : NULL;
}

static void give_back(brume_table *t, const char *id, const char *caller, bool reusable,
                      int64_t now) {
  brume_err *err = NULL;
  if (brume_table_give_back(t, id, caller, reusable, now, &err) < 0)
    fail_msg("give back %s: %s", id, err->msg);
}

static void expect_refused(brume_table *t, const char *id, const char *caller, brume_status code,
                           const char *part) {
  brume_err *err = NULL;
  assert_int_equal(brume_table_give_back(t, id, caller, true, 0, &err), -1);
  assert_int_equal(err->code, code);
  if (strstr(err->msg, part) == NULL) fail_msg("\"%s\" lacks \"%s\"", err->msg, part);
  brume_err_clear(&err);
}

/* Asserts that ids holds exactly want (NULL-terminated), in order, and frees it. */
static void expect_ids(char **ids, const char *const *want) {
  size_t i = 0;
  for (; want[i]; i++) {
    if (ids[i] == NULL) fail_msg("id %zu missing, want %s", i, want[i]);
    assert_string_equal(ids[i], want[i]);
  }
  assert_null(ids[i]);
  brume_table_ids_free(ids);
}

static void test_take_and_give_back(void **state) {
  (void)state;
  brume_table *t = brume_table_new();
  assert_null(take(t, FA, "fe-1"));
  add_idle(t, "s1", "wa", FA, 100);
  add_idle(t, "s2", "wb", FA, 200);
  add_idle(t, "s3", "wa", FB, 300);
  assert_int_equal(brume_table_count(t), 3);
  assert_int_equal(brume_table_idle_count(t, FA), 2);

  /* Most recently used (here: added) first, and only the version asked for. */
  assert_string_equal(take(t, FA, "fe-1"), "s2");
  assert_string_equal(take(t, FA, "fe-2"), "s1");
  assert_null(take(t, FA, "fe-1"));
  assert_int_equal(brume_table_idle_count(t, FA), 0);
  assert_int_equal(brume_table_idle_count(t, FB), 1);
  const brume_placed *p = brume_table_get(t, "s1");
  assert_true(p->held);
  assert_string_equal(p->caller, "fe-2");
  assert_int_equal(p->held_until_ms, 5000);
  assert_int_equal(p->invocations, 1);

  /* Refusals leave the sandbox as it was. */
  expect_refused(t, "nope", "fe-1", BRUME_NOT_FOUND, "sandbox nope is not placed");
  expect_refused(t, "s1", "fe-1", BRUME_FAILED_PRECONDITION, "held by another caller");
  expect_refused(t, "s3", "fe-1", BRUME_FAILED_PRECONDITION, "is idle, not held");
  assert_true(brume_table_get(t, "s1")->held);

  /* Given back: first in line again. */
  give_back(t, "s1", "fe-2", true, 400);
  give_back(t, "s2", "fe-1", true, 500);
  assert_int_equal(brume_table_get(t, "s2")->idle_since_ms, 500);
  assert_null(brume_table_get(t, "s2")->caller);
  assert_string_equal(take(t, FA, "fe-3"), "s2");
  assert_int_equal(brume_table_get(t, "s2")->invocations, 2);
  /* Not reusable: out of the table. */
  give_back(t, "s2", "fe-3", false, 600);
  assert_null(brume_table_get(t, "s2"));
  assert_int_equal(brume_table_count(t), 2);
  assert_string_equal(take(t, FA, "fe-3"), "s1");

  /* A duplicate id is refused. */
  brume_err *err = NULL;
  brume_table_entry dup = {.id = "s1", .host_id = "wb", .function = FB, .memory_mib = 128};
  assert_int_equal(brume_table_add(t, &dup, 0, &err), -1);
  assert_int_equal(err->code, BRUME_ALREADY_EXISTS);
  brume_err_clear(&err);
  brume_table_free(t);
}

static void test_held_at_creation_and_counts(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_table *t = brume_table_new();
  /* A cold start made for a caller is held from the start. */
  brume_table_entry cold = {.id = "c1",
                            .host_id = "wa",
                            .function = FA,
                            .memory_mib = 512,
                            .vcpu_milli = 300,
                            .caller = "fe-1",
                            .held_until_ms = 9000};
  assert_int_equal(brume_table_add(t, &cold, 100, &err), 0);
  const brume_placed *p = brume_table_get(t, "c1");
  assert_true(p->held);
  assert_int_equal(p->invocations, 1);
  assert_int_equal(p->memory_mib, 512);
  assert_int_equal(p->vcpu_milli, 300);
  assert_int_equal(p->added_ms, 100);
  assert_null(take(t, FA, "fe-2"));
  add_idle(t, "c2", "wa", FA, 100);
  add_idle(t, "c3", "wb", FA, 100);
  add_idle(t, "c4", "wa", FB, 100);
  assert_int_equal(brume_table_count_on_host(t, FA, "wa"), 2);
  assert_int_equal(brume_table_count_on_host(t, FA, "wb"), 1);
  assert_int_equal(brume_table_count_on_host(t, FB, "wb"), 0);
  assert_int_equal(brume_table_count_on_host(t, "acct/g/1", "wa"), 0);

  /* Overdue: held past the deadline only. */
  expect_ids(brume_table_overdue(t, 8999), (const char *[]){NULL});
  expect_ids(brume_table_overdue(t, 9000), (const char *[]){"c1", NULL});

  /* A host that goes takes its sandboxes, idle or held, out of the table. */
  expect_ids(brume_table_drop_host(t, "wa"), (const char *[]){"c1", "c2", "c4", NULL});
  assert_int_equal(brume_table_count(t), 1);
  assert_int_equal(brume_table_idle_count(t, FA), 1);
  assert_string_equal(take(t, FA, "fe-1"), "c3");
  expect_ids(brume_table_drop_host(t, "nobody"), (const char *[]){NULL});
  assert_true(brume_table_remove(t, "c3"));
  assert_false(brume_table_remove(t, "c3"));
  assert_int_equal(brume_table_count(t), 0);
  brume_table_free(t);
}

static void test_keep_warm_expiry(void **state) {
  (void)state;
  brume_table *t = brume_table_new();
  add_idle(t, "a1", "wa", FA, 1000);
  add_idle(t, "b1", "wa", FB, 1500);
  add_idle(t, "a2", "wa", FA, 2000);
  add_idle(t, "a3", "wa", FA, 3000);
  /* a2 is used at 4000 and back at 4500: young again. */
  assert_string_equal(take(t, FA, "fe-1"), "a3");
  give_back(t, "a3", "fe-1", true, 3100);
  assert_string_equal(take(t, FA, "fe-1"), "a3");
  assert_string_equal(take(t, FA, "fe-2"), "a2");
  give_back(t, "a2", "fe-2", true, 4500);
  /* keep warm 2,000 at 4,000: a1 (idle since 1,000) and b1 (1,500); a3 is held; a2 is young. */
  expect_ids(brume_table_idle_over(t, 4000, 2000), (const char *[]){"a1", "b1", NULL});
  expect_ids(brume_table_idle_over(t, 2999, 2000), (const char *[]){NULL});
  expect_ids(brume_table_idle_over(t, 3000, 2000), (const char *[]){"a1", NULL});
  expect_ids(brume_table_idle_over(t, 999, 2000), (const char *[]){NULL});
  expect_ids(brume_table_idle_over(t, 7000, 2000), (const char *[]){"a1", "b1", "a2", NULL});
  /* One added idle with an old time behind younger ones (a restart) is found too. */
  add_idle(t, "a0", "wb", FA, 500);
  expect_ids(brume_table_idle_over(t, 4000, 2000), (const char *[]){"a0", "a1", "b1", NULL});
  assert_true(brume_table_remove(t, "a0"));
  /* The reaper removes what it destroyed; the rest keep their order. */
  assert_true(brume_table_remove(t, "a1"));
  assert_string_equal(take(t, FA, "fe-3"), "a2");
  assert_null(take(t, FA, "fe-3"));
  brume_table_free(t);
}

/* Provisioned sandboxes go out before on-demand ones, even less recently used ones, and are never
 * reaped, however long they idle. */
static void test_provisioned_first_never_reaped(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_table *t = brume_table_new();
  brume_table_entry e = {
      .id = "p1", .host_id = "wa", .function = FA, .memory_mib = 128, .provisioned = true};
  assert_int_equal(brume_table_add(t, &e, 0, &err), 0);
  add_idle(t, "d1", "wa", FA, 50);
  add_idle(t, "d2", "wb", FA, 60);
  assert_int_equal(brume_table_provisioned_count(t, FA), 1);
  assert_int_equal(brume_table_provisioned_count(t, FB), 0);
  assert_int_equal(brume_table_idle_count(t, FA), 3);
  assert_string_equal(take(t, FA, "fe-1"), "p1");
  assert_string_equal(take(t, FA, "fe-1"), "d2");
  assert_int_equal(brume_table_provisioned_count(t, FA), 1); /* held still counts */
  give_back(t, "p1", "fe-1", true, 70);
  give_back(t, "d2", "fe-1", true, 80);
  assert_string_equal(take(t, FA, "fe-2"), "p1");
  give_back(t, "p1", "fe-2", true, 90);
  /* Long after: the on-demand ones are over, the provisioned one is not. */
  expect_ids(brume_table_idle_over(t, 100000, 1000), (const char *[]){"d1", "d2", NULL});
  /* brume_table_at walks the table in id order. */
  assert_int_equal(brume_table_count(t), 3);
  assert_string_equal(brume_table_at(t, 0)->id, "d1");
  assert_string_equal(brume_table_at(t, 2)->id, "p1");
  brume_table_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_take_and_give_back),
      cmocka_unit_test(test_held_at_creation_and_counts),
      cmocka_unit_test(test_keep_warm_expiry),
      cmocka_unit_test(test_provisioned_first_never_reaped),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
