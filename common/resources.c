#include "resources.h"

int brume_resources_check_memory(uint32_t memory_mib, brume_err **err) {
  if (memory_mib < BRUME_MEMORY_MIN_MIB || memory_mib > BRUME_MEMORY_MAX_MIB)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "memory %u MiB is out of range: 128-10,240 MiB", memory_mib);
  return 0;
}

int brume_resources_check_ephemeral(uint32_t ephemeral_mib, brume_err **err) {
  if (ephemeral_mib < BRUME_EPHEMERAL_MIN_MIB || ephemeral_mib > BRUME_EPHEMERAL_MAX_MIB)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "ephemeral storage %u MiB is out of range: 512-10,240 MiB", ephemeral_mib);
  return 0;
}

uint32_t brume_resources_vcpu_milli(uint32_t memory_mib) {
  uint64_t milli = ((uint64_t)memory_mib * 1000 + BRUME_MIB_PER_VCPU / 2) / BRUME_MIB_PER_VCPU;
  if (milli < 1) milli = 1;
  if (milli > BRUME_VCPU_MILLI_MAX) milli = BRUME_VCPU_MILLI_MAX;
  return (uint32_t)milli;
}

uint32_t brume_resources_vcpus(uint32_t vcpu_milli) {
  uint32_t n = (vcpu_milli + 999) / 1000;
  if (n < 1) n = 1;
  if (n > BRUME_VCPU_MAX) n = BRUME_VCPU_MAX;
  return n;
}

uint32_t brume_resources_host_vcpu_milli(uint32_t vcpu_milli, uint32_t scale) {
  uint64_t whole = 1000 * (uint64_t)brume_resources_vcpus(vcpu_milli);
  uint64_t m = (uint64_t)vcpu_milli * (scale ? scale : 1);
  return (uint32_t)(m < whole ? m : whole);
}

int64_t brume_resources_vcpu_quota_us(uint32_t vcpu_milli, uint32_t vcpus, uint32_t period_us) {
  BRUME_ENSURE(vcpus >= 1);
  uint64_t den = 1000 * (uint64_t)vcpus;
  int64_t q = (int64_t)(((uint64_t)vcpu_milli * period_us + den - 1) / den);
  return q < BRUME_CPU_QUOTA_MIN_US ? BRUME_CPU_QUOTA_MIN_US : q;
}
