/* A growable, always NUL-terminated string buffer: for building XML, JSON or HTTP bodies and for
 * collecting responses. Out-of-memory aborts (brume_xrealloc), so appends cannot fail.
 *
 *   brume_strbuf b = {0};
 *   brume_strbuf_printf(&b, "<memory unit='MiB'>%u</memory>", mib);
 *   char *xml = brume_strbuf_steal(&b);   // caller frees; b is empty again */
#ifndef BRUME_STRBUF_H
#define BRUME_STRBUF_H

#include <stddef.h>

typedef struct brume_strbuf {
  char *s;    /* NULL until the first append; then NUL-terminated at s[len] */
  size_t len;
  size_t cap;
} brume_strbuf;

void brume_strbuf_append(brume_strbuf *b, const void *data, size_t n);
void brume_strbuf_puts(brume_strbuf *b, const char *s);
void brume_strbuf_printf(brume_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the string to the caller ("" when nothing was appended) and empties b. */
char *brume_strbuf_steal(brume_strbuf *b);
/* Frees the memory; b is empty and usable again. */
void brume_strbuf_clear(brume_strbuf *b);

#endif
