/* Random 64-bit numbers for ids and nonces (sandbox ids, guest-link nonces): not secrets, but
 * they must differ between calls, processes and hosts. */
#ifndef BRUME_RANDOM_H
#define BRUME_RANDOM_H

#include <stdint.h>

/* 64 bits from getrandom(), never blocking: before the kernel's pool is ready (early boot) it
 * falls back to the wall clock, the pid and a per-process counter through a mixing function,
 * still distinct from call to call. */
uint64_t brume_random_u64(void);

#endif
