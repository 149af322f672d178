/* Feeds arbitrary bytes to the worker's host-side unpacking of a function's zip archive
 * (brume_code_zip_unpack in common/code_zip.h, libarchive underneath): the archive is
 * the customer's, so anything may come. Nothing may crash, read out of bounds or leak; what it
 * returns must be what GuestInit.code promises (at least one entry, usable paths, known types,
 * mode bits within 0777, file contents within the limit). The frontend's upload check
 * (brume_code_zip_check) reads the same bytes: an archive it accepts must unpack, or the
 * frontend would store code that no worker can use. Seeds: corpus/code_unpack_zip/, small
 * archives made by the zip CLI. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "code_zip.h"

#define MAX_BYTES (1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  brume_err *err = NULL;
  int checked = brume_code_zip_check(data, size, MAX_BYTES, &err);
  if ((checked == 0) != (err == NULL)) abort();
  brume_err_free(err);
  const char *why = NULL;
  Brume__GuestCode *code = brume_code_zip_unpack(data, size, MAX_BYTES, &why);
  if (code == NULL) {
    if (why == NULL || checked == 0) abort();
    return 0;
  }
  if (code->n_files == 0) abort();
  size_t total = 0;
  for (size_t i = 0; i < code->n_files; i++) {
    const Brume__GuestCodeFile *f = code->files[i];
    if (f->path[0] == '\0' || f->path[0] == '/' || strcmp(f->path, "..") == 0 ||
        strncmp(f->path, "../", 3) == 0 || strstr(f->path, "/../") ||
        f->path[strlen(f->path) - 1] == '/')
      abort();
    if (f->mode & ~0777u) abort();
    if (f->type == BRUME__GUEST_CODE_FILE__TYPE__REGULAR) total += f->data.len;
    else if (f->type == BRUME__GUEST_CODE_FILE__TYPE__SYMLINK && f->data.len == 0) abort();
    else if (f->type == BRUME__GUEST_CODE_FILE__TYPE__DIRECTORY && f->data.len != 0) abort();
  }
  if (total > MAX_BYTES) abort();
  brume__guest_code__free_unpacked(code, NULL);
  return 0;
}
