#include "logring.h"

#include <string.h>

#include "mem.h"

void init_logring_append(init_logring *r, const void *p, size_t n) {
  const uint8_t *s = p;
  if (n >= INIT_LOGRING_SIZE) {
    memcpy(r->data, s + n - INIT_LOGRING_SIZE, INIT_LOGRING_SIZE);
    r->start = 0;
    r->len = INIT_LOGRING_SIZE;
    return;
  }
  for (size_t done = 0; done < n;) {
    size_t end = (r->start + r->len) % INIT_LOGRING_SIZE;
    size_t chunk = n - done;
    if (chunk > INIT_LOGRING_SIZE - end) chunk = INIT_LOGRING_SIZE - end;
    memcpy(r->data + end, s + done, chunk);
    done += chunk;
    r->len += chunk;
    if (r->len > INIT_LOGRING_SIZE) {
      r->start = (r->start + r->len - INIT_LOGRING_SIZE) % INIT_LOGRING_SIZE;
      r->len = INIT_LOGRING_SIZE;
    }
  }
}

void init_logring_reset(init_logring *r) {
  r->start = r->len = 0;
}

uint8_t *init_logring_dup(const init_logring *r, size_t *len) {
  *len = r->len;
  if (r->len == 0) return NULL;
  uint8_t *out = brume_xmalloc(r->len);
  size_t first = INIT_LOGRING_SIZE - r->start;
  if (first > r->len) first = r->len;
  memcpy(out, r->data + r->start, first);
  memcpy(out + first, r->data, r->len - first);
  return out;
}
