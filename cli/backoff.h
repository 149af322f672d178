/* Exponential backoff with full jitter (the AWS Architecture Blog's "Exponential Backoff And
 * Jitter"): the n-th retry waits a uniformly random time in [0, min(cap, base * 2^n)]. Spreading
 * retries over the whole window keeps throttled clients from retrying in lock step. */
#ifndef BRUME_CLI_BACKOFF_H
#define BRUME_CLI_BACKOFF_H

#include <stdint.h>

#define BRUME_CLI_BACKOFF_BASE_MS 100
#define BRUME_CLI_BACKOFF_CAP_MS 5000
#define BRUME_CLI_DEFAULT_RETRIES 5

/* A source of uniformly random 64-bit numbers; injected so tests can pin the jitter. */
typedef uint64_t (*brume_cli_random_fn)(void *user);

typedef struct brume_cli_backoff {
  int64_t base_ms; /* ceiling of the first retry's wait; > 0 */
  int64_t cap_ms;  /* largest ceiling; >= base_ms */
  brume_cli_random_fn random;
  void *random_user;
} brume_cli_backoff;

/* Base 100 ms, cap 5 s, randomness from getrandom() (brume_random_u64). */
brume_cli_backoff brume_cli_backoff_default(void);

/* The ceiling of retry n (0 = the first retry): min(cap, base * 2^n), without overflow. */
int64_t brume_cli_backoff_ceiling_ms(const brume_cli_backoff *b, unsigned n);

/* How long to wait before retry n: random in [0, ceiling(n)], both ends included. */
int64_t brume_cli_backoff_delay_ms(const brume_cli_backoff *b, unsigned n);

#endif
