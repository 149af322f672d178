/* Unit tests for worker-agent/resources: memory and storage bounds, the vCPU share from memory
 * (1,769 MiB = one vCPU, at most 6) and libvirt's per-vCPU quota. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "resources.h"

static void test_memory_bounds(void **state) {
  (void)state;
  brume_err *err = NULL;
  assert_int_equal(brume_resources_check_memory(128, &err), 0);
  assert_int_equal(brume_resources_check_memory(10240, &err), 0);
  assert_null(err);
  assert_int_equal(brume_resources_check_memory(64, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  assert_string_equal(err->msg, "memory 64 MiB is out of range: 128-10,240 MiB");
  brume_err_clear(&err);
  assert_int_equal(brume_resources_check_memory(20000, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_clear(&err);
  assert_int_equal(brume_resources_check_memory(127, NULL), -1);
  assert_int_equal(brume_resources_check_memory(10241, NULL), -1);
  assert_int_equal(brume_resources_check_memory(0, NULL), -1);

  assert_int_equal(brume_resources_check_ephemeral(512, NULL), 0);
  assert_int_equal(brume_resources_check_ephemeral(10240, NULL), 0);
  assert_int_equal(brume_resources_check_ephemeral(511, &err), -1);
  assert_string_equal(err->msg, "ephemeral storage 511 MiB is out of range: 512-10,240 MiB");
  brume_err_clear(&err);
  assert_int_equal(brume_resources_check_ephemeral(10241, NULL), -1);
}

static void test_share(void **state) {
  (void)state;
  struct {
    uint32_t mib, milli, vcpus;
    int64_t quota;
  } rows[] = {
      /* memory  share  vCPUs  per-vCPU quota of a 100 ms period */
      {128, 72, 1, 7200},      {512, 289, 1, 28900},
      {1024, 579, 1, 57900},   {1769, 1000, 1, 100000}, /* one full vCPU */
      {1770, 1001, 2, 50050},                           /* a hair over: two vCPUs sharing 1.001 */
      {3008, 1700, 2, 85000},  {3538, 2000, 2, 100000},
      {10240, 5789, 6, 96484}, /* the largest: six vCPUs, 5.789 of them */
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    uint32_t m = brume_resources_vcpu_milli(rows[i].mib);
    assert_int_equal(m, rows[i].milli);
    uint32_t n = brume_resources_vcpus(m);
    assert_int_equal(n, rows[i].vcpus);
    assert_int_equal(brume_resources_vcpu_quota_us(m, n, BRUME_CPU_PERIOD_US), rows[i].quota);
  }
  /* Defined for any input, clamped. */
  assert_int_equal(brume_resources_vcpu_milli(0), 1);
  assert_int_equal(brume_resources_vcpu_milli(UINT32_MAX), 6000);
  assert_int_equal(brume_resources_vcpu_milli(20000), 6000);
  assert_int_equal(brume_resources_vcpus(0), 1);
  assert_int_equal(brume_resources_vcpus(6000), 6);
  assert_int_equal(brume_resources_vcpus(99999), 6);
  /* libvirt's floor for a quota. */
  assert_int_equal(brume_resources_vcpu_quota_us(1, 1, BRUME_CPU_PERIOD_US), 1000);
  /* Share is monotonic in memory over the whole range. */
  uint32_t prev = 0;
  for (uint32_t mib = BRUME_MEMORY_MIN_MIB; mib <= BRUME_MEMORY_MAX_MIB; mib++) {
    uint32_t m = brume_resources_vcpu_milli(mib);
    assert_true(m >= prev);
    assert_true(m <= BRUME_VCPU_MILLI_MAX);
    /* The quotas of all vCPUs add up to the share (within rounding of a microsecond each). */
    uint32_t n = brume_resources_vcpus(m);
    int64_t q = brume_resources_vcpu_quota_us(m, n, BRUME_CPU_PERIOD_US);
    int64_t total = q * n, want = (int64_t)m * BRUME_CPU_PERIOD_US / 1000;
    assert_true(total >= want && total <= want + n);
    prev = m;
  }
}

static void test_host_share(void **state) {
  (void)state;
  /* KVM: the share itself. */
  assert_int_equal(brume_resources_host_vcpu_milli(72, 1), 72);
  assert_int_equal(brume_resources_host_vcpu_milli(72, 0), 72);
  /* TCG: scaled, up to a whole CPU per vCPU. */
  assert_int_equal(brume_resources_host_vcpu_milli(72, 10), 720);
  assert_int_equal(brume_resources_host_vcpu_milli(579, 10), 1000);
  assert_int_equal(brume_resources_host_vcpu_milli(1158, 10), 2000);
  assert_int_equal(brume_resources_host_vcpu_milli(6000, 100), 6000);
  assert_int_equal(brume_resources_host_vcpu_milli(1000, 1), 1000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_memory_bounds),
      cmocka_unit_test(test_share),
      cmocka_unit_test(test_host_share),
  };
  return cmocka_run_group_tests_name("worker_resources", tests, NULL, NULL);
}
