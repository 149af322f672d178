#include "mem.h"

#include <stdio.h>
#include <string.h>

_Noreturn void brume_fatal(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("level=fatal msg=\"", stderr);
  vfprintf(stderr, fmt, ap);
  fputs("\"\n", stderr);
  va_end(ap);
  abort();
}

static void *check(void *p, size_t size) {
  if (p == NULL && size != 0) brume_fatal("out of memory allocating %zu bytes", size);
  return p;
}

void *brume_xmalloc(size_t size) { return check(malloc(size ? size : 1), size); }
void *brume_xcalloc(size_t n, size_t size) { return check(calloc(n ? n : 1, size ? size : 1), n * size); }
void *brume_xrealloc(void *ptr, size_t size) { return check(realloc(ptr, size ? size : 1), size); }
char *brume_xstrdup(const char *s) { return s ? check(strdup(s), strlen(s) + 1) : NULL; }
char *brume_xstrndup(const char *s, size_t n) { return check(strndup(s, n), n + 1); }

char *brume_xvasprintf(const char *fmt, va_list ap) {
  char *out = NULL;
  if (vasprintf(&out, fmt, ap) < 0) brume_fatal("out of memory formatting a string");
  return out;
}

char *brume_xasprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *out = brume_xvasprintf(fmt, ap);
  va_end(ap);
  return out;
}
