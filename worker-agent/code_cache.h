/* The worker's cache of function code: zip archives named by their SHA-256, fetched over
 * HTTP(S) from the URL CreateSandbox gives, verified, and kept on disk as
 * <dir>/<sha256>.zip for every later sandbox of that code.
 *
 * A fetch streams into a temporary file in <dir> while hashing (OpenSSL EVP SHA-256), and only
 * a complete archive whose digest matches, within the size limits, is fsync'ed and renamed to
 * its final name (then the directory is fsync'ed): a cached file is always whole and verified,
 * even after a crash, so a hit is served without hashing it again. Anything else leaves
 * nothing behind.
 *
 * Errors (the statuses proto/brume/worker.proto gives CodeUnavailableException):
 *   INVALID_ARGUMENT   the digest is not 64 hex digits, the URL is not http(s), or the archive
 *                      is over a size limit (the announced size, the bytes received, or the sum
 *                      of its entries' uncompressed sizes), or it is not a zip archive;
 *   UNAVAILABLE        the URL could not be fetched (connection, HTTP status >= 400, timeout);
 *   DATA_LOSS          the archive fetched does not match its digest, or its announced size.
 *                      Not INVALID_ARGUMENT: the request was well formed, and not
 *                      FAILED_PRECONDITION: nothing about the worker's state is wrong. The
 *                      bytes that came are not the bytes the digest names: the code as the
 *                      frontend stored it is lost or corrupted on the way, which is what gRPC's
 *                      DATA_LOSS means ("unrecoverable data loss or corruption");
 *   INTERNAL           the cache directory cannot be written.
 *
 * Concurrency: any number of threads may call brume_code_cache_get() at once. Requests for the
 * same digest share one fetch: the first fetches, the others wait for it and get its outcome
 * (its error too). One worker process per cache directory: brume_code_cache_new() removes
 * temporary files that an earlier process left. */
#ifndef BRUME_WORKER_CODE_CACHE_H
#define BRUME_WORKER_CODE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Lambda's limits for a function's deployment package. */
#define BRUME_CODE_MAX_ZIP_BYTES (50 * 1024 * 1024)
#define BRUME_CODE_MAX_UNZIPPED_BYTES (250 * 1024 * 1024)
#define BRUME_CODE_FETCH_TIMEOUT_MS 60000

typedef struct brume_code_cache brume_code_cache;

typedef struct brume_code_cache_opts {
  const char *dir;            /* required; created (mode 0700) if missing */
  int64_t max_zip_bytes;      /* 0: BRUME_CODE_MAX_ZIP_BYTES */
  int64_t max_unzipped_bytes; /* 0: BRUME_CODE_MAX_UNZIPPED_BYTES */
  int timeout_ms;             /* per fetch; 0: BRUME_CODE_FETCH_TIMEOUT_MS */
  const char *ca_path;        /* for https URLs; NULL: the system CA store */
} brume_code_cache_opts;

/* Opens (and creates) the cache directory. NULL with INVALID_ARGUMENT (no dir) or INTERNAL. */
brume_code_cache *brume_code_cache_new(const brume_code_cache_opts *opts, brume_err **err);

/* Frees the cache object; the files stay. Calls must have returned. NULL is fine. */
void brume_code_cache_free(brume_code_cache *c);

/* The path of the verified archive for sha256 (64 hex digits, either case; the file name uses
 * lowercase), fetching it from url first unless it is cached. size_bytes is the size announced
 * with the code (FunctionCode.size_bytes), 0 if unknown: over the limit it is refused before
 * fetching, and a download of another size is DATA_LOSS. *cached (if non-NULL) tells whether it
 * was there already (also when another thread's concurrent fetch brought it). Returns a heap
 * string the caller frees, or NULL with *err (see the header comment). */
char *brume_code_cache_get(brume_code_cache *c, const char *sha256, const char *url,
                           uint64_t size_bytes, bool *cached, brume_err **err);

/* Reads a cached archive into memory (for GuestInit.code_zip). Returns a heap buffer and its
 * length in *len, or NULL with INTERNAL. */
void *brume_code_cache_read(const char *path, size_t *len, brume_err **err);

/* The sum of the uncompressed sizes of a zip archive's entries, from its central directory
 * (zip64 included). Returns 0, or -1 with INVALID_ARGUMENT when buf is not a well-formed zip
 * archive. Pure; exported for tests. A guest unpacking the archive must still bound what it
 * writes: a crafted archive's local headers can disagree with its central directory. */
int brume_code_zip_unzipped_size(const unsigned char *buf, size_t len, uint64_t *total,
                                 brume_err **err);

#endif
