#include "random.h"

#include <sys/random.h>
#include <unistd.h>

#include "clock.h"

/* splitmix64's finaliser: spreads every input bit over the output. */
static uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t brume_random_u64(void) {
  uint64_t n;
  if (getrandom(&n, sizeof(n), GRND_NONBLOCK) == (ssize_t)sizeof(n)) return n;
  static uint64_t counter;
  uint64_t c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
  return mix((uint64_t)brume_wall_ms() ^ (uint64_t)getpid() << 40 ^ mix(c));
}
