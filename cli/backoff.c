/* Exponential backoff with full jitter: see backoff.h. */
#include "backoff.h"

#include "mem.h"
#include "random.h"

static uint64_t system_random(void *user) {
  (void)user;
  return brume_random_u64();
}

brume_cli_backoff brume_cli_backoff_default(void) {
  return (brume_cli_backoff){.base_ms = BRUME_CLI_BACKOFF_BASE_MS,
                             .cap_ms = BRUME_CLI_BACKOFF_CAP_MS,
                             .random = system_random};
}

int64_t brume_cli_backoff_ceiling_ms(const brume_cli_backoff *b, unsigned n) {
  BRUME_ENSURE(b->base_ms > 0 && b->cap_ms >= b->base_ms);
  int64_t c = b->base_ms;
  for (unsigned i = 0; i < n && c < b->cap_ms; i++) c = c > b->cap_ms / 2 ? b->cap_ms : c * 2;
  return c < b->cap_ms ? c : b->cap_ms;
}

int64_t brume_cli_backoff_delay_ms(const brume_cli_backoff *b, unsigned n) {
  int64_t ceiling = brume_cli_backoff_ceiling_ms(b, n);
  /* The top 53 bits as a fraction in [0, 1), scaled to [0, ceiling + 1): no modulo bias, and
   * the largest random number reaches the ceiling itself. */
  double u = (double)(b->random(b->random_user) >> 11) / 9007199254740992.0;
  int64_t d = (int64_t)(u * (double)(ceiling + 1));
  return d > ceiling ? ceiling : d;
}
