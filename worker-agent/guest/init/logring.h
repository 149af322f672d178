/* The last 4 KiB of a function's output.
 *
 * GuestInitDone, GuestInvokeDone and GuestRuntimeExited each carry the tail of what the function
 * wrote to stdout and stderr; a ring keeps it without ever growing. */
#ifndef BRUME_INIT_LOGRING_H
#define BRUME_INIT_LOGRING_H

#include <stddef.h>
#include <stdint.h>

#define INIT_LOGRING_SIZE 4096

typedef struct init_logring {
  uint8_t data[INIT_LOGRING_SIZE];
  size_t start; /* index of the oldest byte */
  size_t len;
} init_logring;

/* Appends n bytes, dropping the oldest ones beyond INIT_LOGRING_SIZE. */
void init_logring_append(init_logring *r, const void *p, size_t n);
void init_logring_reset(init_logring *r);
/* Returns a malloc'ed copy of the contents in order (the caller frees it) and its length in *len;
 * NULL when the ring is empty. */
uint8_t *init_logring_dup(const init_logring *r, size_t *len);

#endif
