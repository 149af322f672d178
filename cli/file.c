/* Whole files read into memory: see file.h. */
#include "file.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

uint8_t *brume_cli_file_read(const char *path, size_t max, size_t *len, brume_err **err) {
  bool is_stdin = strcmp(path, "-") == 0;
  FILE *f = is_stdin ? stdin : fopen(path, "rb");
  if (f == NULL) {
    brume_err_set(err, errno == ENOENT ? BRUME_NOT_FOUND : BRUME_INVALID_ARGUMENT,
                  "cannot read %s: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 4096, n = 0;
  uint8_t *buf = brume_xmalloc(cap + 1);
  for (;;) {
    if (n == cap) {
      cap *= 2;
      buf = brume_xrealloc(buf, cap + 1);
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (n > max) {
      brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s is larger than %zu bytes",
                    is_stdin ? "standard input" : path, max);
      break;
    }
    if (got == 0) {
      if (ferror(f))
        brume_err_set(err, BRUME_INVALID_ARGUMENT, "cannot read %s: %s",
                      is_stdin ? "standard input" : path, strerror(errno));
      break;
    }
  }
  bool failed = ferror(f) || n > max;
  if (!is_stdin) fclose(f);
  if (failed) {
    free(buf);
    return NULL;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}
