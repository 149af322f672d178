/* The frontend's store of function code: zip archives kept on local disk under their SHA-256
 * digest (<dir>/<sha256>.zip, written to a temporary file in dir, fsync'ed and renamed, then
 * dir fsync'ed, so a crash never leaves a partial archive under a digest name) and served to
 * workers at GET /code/<sha256> on the frontend's HTTP listener. The same archive uploaded
 * twice is stored once: an existing digest is never rewritten.
 *
 * An upload is checked with the rules the worker unpacks by (common/code_zip.h), so the store
 * holds only code a worker can run.
 *
 * Thread safety: every function may be called from any thread. One process per directory:
 * brume_code_store_new() removes temporary files an earlier process left. */
#ifndef BRUME_FRONTEND_CODE_STORE_H
#define BRUME_FRONTEND_CODE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "code_zip.h" /* Lambda's limits: BRUME_CODE_ZIP_MAX, BRUME_CODE_UNPACKED_MAX */
#include "err.h"
#include "http.h"

typedef struct brume_code_store brume_code_store;

/* Opens (creating it, mode 0700, if needed) the store in dir. NULL with INVALID_ARGUMENT (no
 * dir) or INTERNAL (dir cannot be created or opened). */
brume_code_store *brume_code_store_new(const char *dir, brume_err **err);
void brume_code_store_free(brume_code_store *s);

/* Checks zip and stores it; fills sha256 (64 lowercase hex digits) and returns 0, also when
 * the archive was stored already. -1 with *err (sha256 is then ""):
 *   INVALID_ARGUMENT "InvalidParameterValueException: ..."  empty, or over BRUME_CODE_ZIP_MAX;
 *   INVALID_ARGUMENT "InvalidZipFileException: ..."  brume_code_zip_check refused it (not a
 *                    readable zip, over BRUME_CODE_UNPACKED_MAX unpacked, no entries, an entry
 *                    with an unusable path or type); the rest of the message says what;
 *   INTERNAL         dir cannot be written. */
int brume_code_store_put(brume_code_store *s, const void *zip, size_t len, char sha256[65],
                         brume_err **err);
/* Whether the archive is stored; its size in *size (may be NULL) when it is. false for anything
 * but 64 lowercase hex digits. */
bool brume_code_store_has(brume_code_store *s, const char *sha256, uint64_t *size);

/* Serves GET /code/<sha256> from the store on http: 200 with the archive (application/zip),
 * 404 for an unknown digest and for every other path under /code/ (only a 64-lowercase-hex
 * name is ever opened, so no path reaches another file). s must outlive the listener. */
void brume_code_store_serve(brume_code_store *s, brume_http *http);

#endif
