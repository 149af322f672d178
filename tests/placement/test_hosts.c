/* Unit tests for placement/hosts: registrations read (and refused with the field named), hosts
 * kept in id order and removed when their key goes, the choice of a host (memory, vCPU share with
 * the overcommit, draining hosts left out, a function spread over hosts, then the most free
 * memory, then the smallest id), the error when none fits, and reservations: they hold room from
 * before a cold start until the first registration after its call ended. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "hosts.h"

/* A registration as brume-worker writes it. */
static char *reg(const char *addr, uint32_t vcpus, uint32_t mem, uint32_t free_mib,
                 const char *extra) {
  static char buf[512];
  snprintf(buf, sizeof(buf),
           "{\"addr\":\"%s\",\"vcpus\":%u,\"memory_mib\":%u,\"free_memory_mib\":%u,"
           "\"accelerator\":\"TCG\"%s}",
           addr, vcpus, mem, free_mib, extra ? extra : "");
  return buf;
}

static void update_ok(brume_hosts *h, const char *id, const char *json) {
  brume_err *err = NULL;
  if (brume_hosts_update(h, id, json, &err) < 0) fail_msg("update %s: %s", id, err->msg);
}

static void update_refused(brume_hosts *h, const char *id, const char *json, const char *part) {
  brume_err *err = NULL;
  assert_int_equal(brume_hosts_update(h, id, json, &err), -1);
  assert_non_null(err);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  if (strstr(err->msg, part) == NULL) fail_msg("\"%s\" lacks \"%s\"", err->msg, part);
  brume_err_clear(&err);
}

static void test_registrations(void **state) {
  (void)state;
  brume_hosts *h = brume_hosts_new(1);
  update_ok(h, "w2", reg("10.0.0.2:7000", 4, 8192, 8000, ",\"vcpu_milli_committed\":1500"));
  update_ok(h, "w1",
            "{\"addr\":\"10.0.0.1:7000\",\"vcpus\":2,\"memory_mib\":4096,"
            "\"free_memory_mib\":4096,\"accelerator\":\"KVM\",\"draining\":true,"
            "\"host_memory_available_mib\":20112,\"pool_ready\":2}");
  assert_int_equal(brume_hosts_count(h), 2);
  const brume_host *a = brume_hosts_at(h, 0), *b = brume_hosts_at(h, 1);
  assert_string_equal(a->id, "w1");
  assert_string_equal(b->id, "w2");
  assert_true(a->kvm);
  assert_true(a->draining);
  assert_false(b->kvm);
  assert_false(b->draining);
  assert_string_equal(b->addr, "10.0.0.2:7000");
  assert_int_equal(b->vcpus, 4);
  assert_int_equal(b->memory_mib, 8192);
  assert_int_equal(b->free_memory_mib, 8000);
  assert_int_equal(b->vcpu_milli_committed, 1500);
  assert_int_equal(b->host_memory_available_mib, 0);
  assert_int_equal(b->pool_ready, 0);
  assert_int_equal(a->host_memory_available_mib, 20112);
  assert_int_equal(a->pool_ready, 2);
  assert_int_equal(b->updates, 1);
  assert_null(brume_hosts_at(h, 2));

  /* A new value replaces the old one. */
  update_ok(h, "w2", reg("10.0.0.2:7001", 4, 8192, 6000, NULL));
  b = brume_hosts_get(h, "w2");
  assert_string_equal(b->addr, "10.0.0.2:7001");
  assert_int_equal(b->free_memory_mib, 6000);
  assert_int_equal(b->vcpu_milli_committed, 0);
  assert_int_equal(b->updates, 2);

  /* Refused, each with what is wrong; the table keeps what it had. */
  update_refused(h, "w2", "not json", "not a JSON object");
  update_refused(h, "w2", "[1]", "not a JSON object");
  update_refused(h, "w2", "{\"vcpus\":1}", "no \"addr\"");
  update_refused(h, "w2",
                 "{\"addr\":\"x:1\",\"vcpus\":1,\"memory_mib\":1,\"free_memory_mib\":1,"
                 "\"accelerator\":\"HVF\"}",
                 "\"accelerator\"");
  update_refused(h, "w2", reg("x:1", 1, 100, 200, NULL), "free_memory_mib 200 is over");
  update_refused(h, "w2",
                 "{\"addr\":\"x:1\",\"vcpus\":-1,\"memory_mib\":1,\"free_memory_mib\":1,"
                 "\"accelerator\":\"TCG\"}",
                 "\"vcpus\"");
  update_refused(h, "w2",
                 "{\"addr\":\"x:1\",\"vcpus\":1,\"memory_mib\":1.5,\"free_memory_mib\":1,"
                 "\"accelerator\":\"TCG\"}",
                 "\"memory_mib\"");
  update_refused(h, "w2", reg("x:1", 1, 100, 100, ",\"draining\":1"), "\"draining\"");
  update_refused(h, "w2", reg("x:1", 1, 100, 100, ",\"pool_ready\":-1"), "\"pool_ready\"");
  update_refused(h, "w2", reg("x:1", 1, 100, 100, ",\"host_memory_available_mib\":\"1\""),
                 "\"host_memory_available_mib\"");
  update_refused(h, "", reg("x:1", 1, 100, 100, NULL), "empty host id");
  assert_string_equal(brume_hosts_get(h, "w2")->addr, "10.0.0.2:7001");

  brume_hosts_remove(h, "w1");
  brume_hosts_remove(h, "nobody");
  assert_int_equal(brume_hosts_count(h), 1);
  assert_null(brume_hosts_get(h, "w1"));
  brume_hosts_free(h);
}

static const char *choose_id(brume_hosts *h, uint32_t mib, uint32_t milli,
                             brume_hosts_count_fn count, void *arg) {
  brume_err *err = NULL;
  const brume_host *c = brume_hosts_choose(h, mib, milli, count, arg, &err);
  if (c == NULL) fail_msg("no host: %s", err->msg);
  return c->id;
}

static void expect_none(brume_hosts *h, uint32_t mib, uint32_t milli, const char *part) {
  brume_err *err = NULL;
  assert_null(brume_hosts_choose(h, mib, milli, NULL, NULL, &err));
  assert_non_null(err);
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  if (strstr(err->msg, part) == NULL) fail_msg("\"%s\" lacks \"%s\"", err->msg, part);
  brume_err_clear(&err);
}

/* Sandboxes of the function being placed, per host, for the spread. */
typedef struct {
  size_t a, b, c;
} per_host;

static size_t count_of(void *arg, const char *host_id) {
  per_host *p = arg;
  return host_id[1] == 'a' ? p->a : host_id[1] == 'b' ? p->b : p->c;
}

static void test_choice(void **state) {
  (void)state;
  brume_hosts *h = brume_hosts_new(2);
  expect_none(h, 128, 72, "(0 hosts:");
  update_ok(h, "wa", reg("a:1", 2, 4096, 1000, NULL));
  update_ok(h, "wb", reg("b:1", 2, 4096, 3000, NULL));
  update_ok(h, "wc", reg("c:1", 2, 4096, 3000, ",\"draining\":true"));
  /* The most free memory; wc is left out for draining. */
  assert_string_equal(choose_id(h, 128, 72, NULL, NULL), "wb");
  /* A host that lacks the memory is left out. */
  assert_string_equal(choose_id(h, 2000, 72, NULL, NULL), "wb");
  expect_none(h, 3500, 72, "(3 hosts: 1 draining, 2 short of memory, 0 short of vCPU share)");
  expect_none(h, 3500, 72,
              "InsufficientCapacityException: no host has room for a sandbox of "
              "3500 MiB and 72/1000 vCPU");

  /* Spread first: the host with fewer sandboxes of the function, even with less memory. */
  per_host p = {.a = 0, .b = 1};
  assert_string_equal(choose_id(h, 128, 72, count_of, &p), "wa");
  p = (per_host){.a = 2, .b = 2};
  assert_string_equal(choose_id(h, 128, 72, count_of, &p), "wb");
  /* A full tie goes to the smaller id. */
  update_ok(h, "wa", reg("a:1", 2, 4096, 3000, NULL));
  assert_string_equal(choose_id(h, 128, 72, count_of, &p), "wa");

  /* vCPU share: 2 CPUs x 1,000 x overcommit 2 = 4,000 per host. */
  update_ok(h, "wa", reg("a:1", 2, 4096, 3000, ",\"vcpu_milli_committed\":3950"));
  assert_string_equal(choose_id(h, 128, 72, NULL, NULL), "wb");
  assert_int_equal(brume_hosts_free_vcpu_milli(h, "wa"), 50);
  assert_int_equal(brume_hosts_free_vcpu_milli(h, "wb"), 4000);
  update_ok(h, "wb", reg("b:1", 2, 4096, 3000, ",\"vcpu_milli_committed\":4000"));
  expect_none(h, 128, 72, "(3 hosts: 1 draining, 0 short of memory, 2 short of vCPU share)");
  assert_int_equal(brume_hosts_free_vcpu_milli(h, "nobody"), 0);

  /* A removed host is never chosen. */
  update_ok(h, "wb", reg("b:1", 2, 4096, 3000, NULL));
  brume_hosts_remove(h, "wb");
  expect_none(h, 128, 72, "(2 hosts:");
  brume_hosts_free(h);
}

static void test_reservations(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_hosts *h = brume_hosts_new(1);
  update_ok(h, "wa", reg("a:1", 1, 1024, 1024, NULL));
  assert_int_equal(brume_hosts_reserve(h, "nobody", 128, 72, &err), 0);
  assert_int_equal(err->code, BRUME_NOT_FOUND);
  brume_err_clear(&err);

  /* Two cold starts at once cannot both take the last room. */
  uint64_t r1 = brume_hosts_reserve(h, "wa", 512, 300, &err);
  uint64_t r2 = brume_hosts_reserve(h, "wa", 256, 300, &err);
  assert_true(r1 != 0 && r2 != 0 && r1 != r2);
  assert_int_equal(brume_hosts_free_mib(h, "wa"), 256);
  assert_int_equal(brume_hosts_reserved_mib(h, "wa"), 768);
  assert_int_equal(brume_hosts_reserved_mib(h, "nowhere"), 0);
  assert_int_equal(brume_hosts_free_vcpu_milli(h, "wa"), 400);
  assert_string_equal(choose_id(h, 256, 72, NULL, NULL), "wa");
  expect_none(h, 512, 72, "1 short of memory");
  expect_none(h, 128, 500, "1 short of vCPU share");

  /* A registration while the calls are under way keeps both (the worker may not count them). */
  update_ok(h, "wa", reg("a:1", 1, 1024, 1024, NULL));
  assert_int_equal(brume_hosts_free_mib(h, "wa"), 256);
  /* r1's call ended: it lasts until the next registration, which includes it. */
  brume_hosts_end_reservation(h, "wa", r1, true, 0);
  assert_int_equal(brume_hosts_free_mib(h, "wa"), 256);
  update_ok(h, "wa", reg("a:1", 1, 1024, 512, ",\"vcpu_milli_committed\":300"));
  assert_int_equal(brume_hosts_free_mib(h, "wa"), 256);        /* 512 published - r2's 256 */
  assert_int_equal(brume_hosts_free_vcpu_milli(h, "wa"), 400); /* 1,000 - 300 - r2's 300 */
  brume_hosts_end_reservation(h, "wa", r2, true, 0);
  brume_hosts_end_reservation(h, "wa", 999, true, 0); /* unknown: nothing */
  update_ok(h, "wa", reg("a:1", 1, 1024, 256, ",\"vcpu_milli_committed\":600"));
  assert_int_equal(brume_hosts_free_mib(h, "wa"), 256);
  assert_int_equal(brume_hosts_free_vcpu_milli(h, "wa"), 400);

  /* A cold start that made nothing gives its room back at once: no registration follows it. */
  uint64_t r4 = brume_hosts_reserve(h, "wa", 128, 100, &err);
  assert_int_equal(brume_hosts_free_mib(h, "wa"), 128);
  brume_hosts_end_reservation(h, "wa", r4, false, 0);
  assert_int_equal(brume_hosts_free_mib(h, "wa"), 256);
  assert_int_equal(brume_hosts_free_vcpu_milli(h, "wa"), 400);

  /* A reservation whose call ended lasts until a registration, or expires after a while without
   * one; one under way never expires. */
  uint64_t r5 = brume_hosts_reserve(h, "wa", 128, 100, &err);
  uint64_t r6 = brume_hosts_reserve(h, "wa", 64, 100, &err);
  brume_hosts_end_reservation(h, "wa", r5, true, 1000);
  brume_hosts_expire(h, 3999, 3000);
  assert_int_equal(brume_hosts_free_mib(h, "wa"), 64);
  brume_hosts_expire(h, 4000, 3000);
  assert_int_equal(brume_hosts_free_mib(h, "wa"), 192);
  brume_hosts_expire(h, 1000000, 3000);
  assert_int_equal(brume_hosts_free_mib(h, "wa"), 192); /* r6's call is still under way */
  brume_hosts_end_reservation(h, "wa", r6, false, 0);
  assert_int_equal(brume_hosts_free_mib(h, "wa"), 256);

  /* Cold starts under way count with the function's sandboxes for the spread; an ended one is
   * in the table (count_of) already and is not counted twice. */
  update_ok(h, "wa", reg("a:1", 1, 4096, 4096, NULL));
  update_ok(h, "wb", reg("b:1", 1, 1024, 1024, NULL));
  per_host p = {.a = 0, .b = 1};
  assert_string_equal(choose_id(h, 128, 72, count_of, &p), "wa");
  uint64_t b1 = brume_hosts_reserve(h, "wa", 128, 100, &err);
  assert_string_equal(choose_id(h, 128, 72, count_of, &p), "wa"); /* 1 to 1: more memory */
  uint64_t b2 = brume_hosts_reserve(h, "wa", 128, 100, &err);
  assert_string_equal(choose_id(h, 128, 72, count_of, &p), "wb"); /* 2 to 1 */
  brume_hosts_end_reservation(h, "wa", b1, true, 0);
  brume_hosts_end_reservation(h, "wa", b2, false, 0);
  p.a = 1; /* b1 made a sandbox: the table has it */
  assert_string_equal(choose_id(h, 128, 72, count_of, &p), "wa"); /* 1 to 1 again */
  brume_hosts_remove(h, "wb");

  /* Reservations over what is published leave nothing, not a wrap-around. */
  uint64_t r3 = brume_hosts_reserve(h, "wa", 4096, 5000, &err);
  assert_int_equal(brume_hosts_free_mib(h, "wa"), 0);
  assert_int_equal(brume_hosts_free_vcpu_milli(h, "wa"), 0);
  /* A host that goes takes its reservations with it; ending one then does nothing. */
  brume_hosts_remove(h, "wa");
  brume_hosts_end_reservation(h, "wa", r3, true, 0);
  update_ok(h, "wa", reg("a:1", 1, 1024, 1024, NULL));
  assert_int_equal(brume_hosts_free_mib(h, "wa"), 1024);
  assert_int_equal(brume_hosts_get(h, "wa")->updates, 1);
  brume_hosts_free(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registrations),
      cmocka_unit_test(test_choice),
      cmocka_unit_test(test_reservations),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
