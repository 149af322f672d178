#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mem.h"

void brume_strbuf_append(brume_strbuf *b, const void *data, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n + 1) cap *= 2;
    b->s = brume_xrealloc(b->s, cap);
    b->cap = cap;
  }
  memcpy(b->s + b->len, data, n);
  b->len += n;
  b->s[b->len] = '\0';
}

void brume_strbuf_puts(brume_strbuf *b, const char *s) { brume_strbuf_append(b, s, strlen(s)); }

void brume_strbuf_printf(brume_strbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = brume_xvasprintf(fmt, ap);
  va_end(ap);
  brume_strbuf_puts(b, s);
  free(s);
}

char *brume_strbuf_steal(brume_strbuf *b) {
  char *s = b->s ? b->s : brume_xstrdup("");
  *b = (brume_strbuf){0};
  return s;
}

void brume_strbuf_clear(brume_strbuf *b) {
  free(b->s);
  *b = (brume_strbuf){0};
}
