/* Memory helpers and automatic cleanup.
 *
 * Out-of-memory aborts here, in one place, so callers never check for NULL from brume_x*().
 * The cleanup attributes free a resource when its variable goes out of scope; hand ownership
 * on with brume_steal(), which returns the pointer and leaves NULL behind. */
#ifndef BRUME_MEM_H
#define BRUME_MEM_H

#include <stddef.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

void *brume_xmalloc(size_t size);
void *brume_xcalloc(size_t n, size_t size);
void *brume_xrealloc(void *ptr, size_t size);
char *brume_xstrdup(const char *s);
char *brume_xstrndup(const char *s, size_t n);
char *brume_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *brume_xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Aborts with a message: a broken internal invariant, never bad input. */
_Noreturn void brume_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define BRUME_ENSURE(cond)                                                                 \
  do {                                                                                     \
    if (!(cond))                                                                           \
      brume_fatal("%s:%d: invariant failed: %s", __FILE__, __LINE__, #cond);               \
  } while (0)

#define BRUME_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static inline void brume_freep(void *p) { free(*(void **)p); }
static inline void brume_closep(int *fd) {
  if (*fd >= 0) close(*fd);
}

#define brume_autofree __attribute__((cleanup(brume_freep)))
#define brume_autoclose __attribute__((cleanup(brume_closep)))

/* BRUME_DEFINE_AUTOPTR(CURL, curl_easy_cleanup) lets a function declare
 * `brume_autoptr(CURL) h = curl_easy_init();`; the free function is called if h is non-NULL. */
#define BRUME_DEFINE_AUTOPTR(type, freefn)                                                  \
  static inline void brume_autoptr_cleanup_##type(type **p) {                              \
    if (*p) freefn(*p);                                                                    \
  }
#define brume_autoptr(type) __attribute__((cleanup(brume_autoptr_cleanup_##type))) type *

static inline void *brume_steal_ptr(void *pp) {
  void **p = pp;
  void *v = *p;
  *p = NULL;
  return v;
}
#define brume_steal(pp) brume_steal_ptr(pp)

#endif
