/* A growable byte buffer with a read offset.
 *
 * The channel, the Runtime API server and the process runner collect what they read in one and
 * queue what they write in another: bytes are appended at the end and consumed from the front.
 * Out-of-memory aborts (brume_xrealloc). */
#ifndef BRUME_INIT_BUF_H
#define BRUME_INIT_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct init_buf {
  uint8_t *data;
  size_t off; /* the first byte not yet consumed */
  size_t len; /* the end of the data */
  size_t cap;
} init_buf;

/* The bytes not yet consumed. */
static inline size_t init_buf_pending(const init_buf *b) {
  return b->len - b->off;
}
static inline uint8_t *init_buf_head(const init_buf *b) {
  return b->data + b->off;
}

/* Makes room for at least `extra` more bytes at the end (moving pending bytes to the front). */
void init_buf_reserve(init_buf *b, size_t extra);
void init_buf_append(init_buf *b, const void *p, size_t n);
void init_buf_printf(init_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Consumes n pending bytes from the front; the buffer is empty again once all are consumed. */
void init_buf_consume(init_buf *b, size_t n);
/* Drops everything but keeps the memory. */
void init_buf_clear(init_buf *b);
/* Frees the memory of an empty buffer whose capacity grew over max_cap (after a large message),
 * so that a one-off peak does not stay allocated in a small guest. */
void init_buf_trim(init_buf *b, size_t max_cap);
/* Frees the memory; the buffer is empty and usable again. */
void init_buf_free(init_buf *b);

/* Reads once from fd into the buffer, at most max bytes. Returns what read(2) returns. */
ssize_t init_buf_read(init_buf *b, int fd, size_t max);
/* Writes pending bytes to fd until they are all written (returns 0), fd would block (returns 1),
 * or write(2) fails (returns -1, errno set). */
int init_buf_flush(init_buf *b, int fd);

#endif
