/* What a sandbox is given of its host: memory and ephemeral storage bounds, and the vCPU share
 * that follows from memory (docs/worker.md, "Resources").
 *
 * Lambda's rule, which Brume follows: CPU is proportional to memory, 1,769 MiB buying one full
 * vCPU, up to 6 vCPUs. A sandbox gets ceil(share) virtual CPUs (so that a 2,000 MiB function
 * can run two threads), and libvirt's <cputune> caps each vCPU thread at an equal part of the
 * share: libvirt's <quota> is per vCPU, so quota = share / vcpus * period.
 *
 * Pure functions: no I/O, no state. */
#ifndef BRUME_WORKER_RESOURCES_H
#define BRUME_WORKER_RESOURCES_H

#include <stdint.h>

#include "err.h"

#define BRUME_MEMORY_MIN_MIB 128
#define BRUME_MEMORY_MAX_MIB 10240
#define BRUME_EPHEMERAL_MIN_MIB 512
#define BRUME_EPHEMERAL_MAX_MIB 10240
/* Memory that buys one full vCPU. */
#define BRUME_MIB_PER_VCPU 1769
#define BRUME_VCPU_MAX 6
#define BRUME_VCPU_MILLI_MAX (BRUME_VCPU_MAX * 1000)
/* The CFS bandwidth period for <cputune><period> (libvirt's default, 100 ms). */
#define BRUME_CPU_PERIOD_US 100000
/* libvirt refuses a <quota> under 1,000 us. */
#define BRUME_CPU_QUOTA_MIN_US 1000

/* 0 when memory_mib is within 128-10,240 MiB; otherwise -1 with INVALID_ARGUMENT
 * ("memory 64 MiB is out of range: 128-10,240 MiB"). */
int brume_resources_check_memory(uint32_t memory_mib, brume_err **err);

/* The same for the ephemeral /tmp: 512-10,240 MiB. */
int brume_resources_check_ephemeral(uint32_t ephemeral_mib, brume_err **err);

/* The vCPU share for memory_mib, in thousandths of a vCPU: memory * 1000 / 1769 rounded to the
 * nearest, at least 1, at most 6,000. Defined for any input (no range check), so placement and
 * the frontend can use it on what they were given; the worker checks memory first. */
uint32_t brume_resources_vcpu_milli(uint32_t memory_mib);

/* The number of virtual CPUs that carry a share: ceil(vcpu_milli / 1000), 1-6. */
uint32_t brume_resources_vcpus(uint32_t vcpu_milli);

/* The share a sandbox's vCPU threads may burn on the host: vcpu_milli times scale (0 counts as 1),
 * at most a whole CPU per vCPU (ceil(vcpu_milli / 1000) vCPUs). scale is 1 under KVM, where a
 * guest instruction costs about one host instruction. Under TCG each guest instruction costs
 * several host ones, and a 128 MiB sandbox capped at its 7.2 % share was measured burning it
 * within ten back-to-back invocations, then stalling 60-95 ms until the next period
 * (docs/worker.md, "Resources"): the worker multiplies the cap there (tcg_cpu_scale), so that a
 * function gets about the compute its memory buys. */
uint32_t brume_resources_host_vcpu_milli(uint32_t vcpu_milli, uint32_t scale);

/* libvirt's per-vCPU <quota> in microseconds for vcpu_milli spread over vcpus vCPUs, with
 * period_us as <period>: vcpu_milli * period_us / (1000 * vcpus), rounded up, never under
 * BRUME_CPU_QUOTA_MIN_US. vcpus must be >= 1 (aborts otherwise: a caller bug). */
int64_t brume_resources_vcpu_quota_us(uint32_t vcpu_milli, uint32_t vcpus, uint32_t period_us);

#endif
