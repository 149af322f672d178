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

#include "brume/guest.pb-c.h"
#include "code_zip.h"
#include "err.h"
#include "mem.h"

#define BRUME_CODE_FETCH_TIMEOUT_MS 60000

typedef struct brume_code_cache brume_code_cache;

typedef struct brume_code_cache_opts {
  const char *dir;            /* required; created (mode 0700) if missing */
  int64_t max_zip_bytes;      /* 0: BRUME_CODE_ZIP_MAX (common/code_zip.h) */
  int64_t max_unzipped_bytes; /* 0: BRUME_CODE_UNPACKED_MAX */
  int timeout_ms;             /* per fetch; 0: BRUME_CODE_FETCH_TIMEOUT_MS */
  const char *ca_path;        /* for https URLs; NULL: the system CA store */
  int64_t max_files_bytes;    /* 0: BRUME_CODE_MAX_FILES_BYTES (brume_code_cache_load) */
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

/* The unpacked form sent instead of the archive is at most this many bytes of file contents. */
#define BRUME_CODE_MAX_FILES_BYTES (16 * 1024 * 1024)

/* A function's code as GuestInit carries it: exactly one of files (GuestInit.code) and zip
 * (GuestInit.code_zip) is set. */
typedef struct brume_code {
  Brume__GuestCode *files;
  void *zip;
  size_t zip_len;
} brume_code;

/* The code of the verified archive at zip_path (a path brume_code_cache_get returned), ready
 * for GuestInit. Usually its files, unpacked on the host so that the guest inflates nothing:
 * the first call for a digest unpacks the archive (brume_code_zip_unpack, common/code_zip.h)
 * and stores the result next to it as <dir>/<sha256>.code (a GuestCode message, fsync'ed
 * before it is renamed into place, so it is always whole); later calls read that file. The
 * archive itself instead, for the guest's unzip to unpack or refuse as before, when its files
 * hold more than max_files_bytes in all, when it has no entries or an entry other than a
 * regular file, a directory or a symlink, an unusable path, or when it cannot be unpacked here
 * (a damaged entry, an unsupported method). Returns a heap object for brume_code_free, or NULL
 * with INTERNAL when the cache cannot be read. */
brume_code *brume_code_cache_load(brume_code_cache *c, const char *zip_path, brume_err **err);
void brume_code_free(brume_code *code);
BRUME_DEFINE_AUTOPTR(brume_code, brume_code_free)

#endif
