/* The frontend's store of function code: zip archives kept on local disk under their SHA-256
 * digest (<dir>/<sha256>.zip, written to a temp file, fsync'ed and renamed, so a crash never
 * leaves a partial archive under a digest name) and served to workers at GET /code/<sha256> on
 * the frontend's HTTP listener. The same archive uploaded twice is stored once.
 *
 * Thread safety: every function may be called from any thread. */
#ifndef BRUME_FRONTEND_CODE_STORE_H
#define BRUME_FRONTEND_CODE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "http.h"

/* Lambda's limits: the archive at most 50 MiB, unpacked at most 250 MiB. */
#define BRUME_CODE_ZIP_MAX (50u * 1024 * 1024)
#define BRUME_CODE_UNPACKED_MAX (250ull * 1024 * 1024)

typedef struct brume_code_store brume_code_store;

/* Opens (creating it if needed) the store in dir. NULL + err when dir is unusable. */
brume_code_store *brume_code_store_new(const char *dir, brume_err **err);
void brume_code_store_free(brume_code_store *s);

/* Checks that zip is a readable zip archive within the limits (INVALID_ARGUMENT,
 * "InvalidZipFileException: ..." saying what is wrong; "InvalidParameterValueException" for an
 * empty or oversized archive) and stores it. Fills sha256 (64 lowercase hex digits). */
int brume_code_store_put(brume_code_store *s, const void *zip, size_t len, char sha256[65],
                         brume_err **err);
/* Whether the archive is stored; its size in *size when it is. */
bool brume_code_store_has(brume_code_store *s, const char *sha256, uint64_t *size);

/* Serves GET /code/<sha256> from the store on http (404 for an unknown digest). */
void brume_code_store_serve(brume_code_store *s, brume_http *http);

#endif
