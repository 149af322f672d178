#include "buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mem.h"

void init_buf_reserve(init_buf *b, size_t extra) {
  if (b->cap - b->len >= extra) return;
  /* Reuse the consumed front before growing. */
  if (b->off > 0) {
    memmove(b->data, b->data + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
    if (b->cap - b->len >= extra) return;
  }
  size_t cap = b->cap ? b->cap : 4096;
  while (cap - b->len < extra) cap *= 2;
  b->data = brume_xrealloc(b->data, cap);
  b->cap = cap;
}

void init_buf_append(init_buf *b, const void *p, size_t n) {
  if (n == 0) return;
  init_buf_reserve(b, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

void init_buf_printf(init_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  BRUME_ENSURE(n >= 0);
  init_buf_reserve(b, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void init_buf_consume(init_buf *b, size_t n) {
  BRUME_ENSURE(n <= init_buf_pending(b));
  b->off += n;
  if (b->off == b->len) b->off = b->len = 0;
}

void init_buf_clear(init_buf *b) {
  b->off = b->len = 0;
}

void init_buf_trim(init_buf *b, size_t max_cap) {
  if (init_buf_pending(b) == 0 && b->cap > max_cap) init_buf_free(b);
}

void init_buf_free(init_buf *b) {
  free(b->data);
  *b = (init_buf){0};
}

ssize_t init_buf_read(init_buf *b, int fd, size_t max) {
  init_buf_reserve(b, max);
  ssize_t n = read(fd, b->data + b->len, max);
  if (n > 0) b->len += (size_t)n;
  return n;
}

int init_buf_flush(init_buf *b, int fd) {
  while (init_buf_pending(b) > 0) {
    ssize_t n = write(fd, init_buf_head(b), init_buf_pending(b));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return 1;
      return -1;
    }
    init_buf_consume(b, (size_t)n);
  }
  return 0;
}
