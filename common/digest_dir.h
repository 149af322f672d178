/* A directory of files named by the SHA-256 digest of what they hold: <dir>/<sha256><ext>, where
 * sha256 is 64 lowercase hex digits and ext a suffix the caller picks per kind of file (".zip").
 * The frontend's code store (frontend/code_store.h) and the worker's code cache
 * (worker-agent/code_cache.h) keep function archives this way.
 *
 * A file appears whole or not at all: it is written to a temporary file in the directory (named
 * ".tmp-<sha256>-<pid>-<n>"), fsync'ed, renamed to its final name, and the directory is fsync'ed,
 * so a crash never leaves a partial file under a digest name. The directory is content-addressed:
 * a name that exists already holds its bytes, so brume_digest_dir_store() never rewrites it. Only
 * names made of a valid digest are ever opened, so a digest that comes from the network cannot
 * reach another file.
 *
 * Thread safety: every function may be called from any thread. One process per directory:
 * brume_digest_dir_open() removes the temporary files that an earlier process left. */
#ifndef BRUME_DIGEST_DIR_H
#define BRUME_DIGEST_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct brume_digest_dir brume_digest_dir;

/* Opens the directory at path, creating it and its missing parents (mode 0700), and removes the
 * temporary files of an earlier process (writes it never finished). NULL with INVALID_ARGUMENT
 * "no directory" (path NULL or empty) or INTERNAL ("mkdir <dir>: ...", "open <dir>: ..."). */
brume_digest_dir *brume_digest_dir_open(const char *path, brume_err **err);
/* Closes d; the files stay. NULL is fine. */
void brume_digest_dir_free(brume_digest_dir *d);

/* Whether s is a digest as the directory names files: exactly 64 lowercase hex digits. */
bool brume_digest_dir_valid(const char *s);
/* Whether s is 64 hex digits of either case; if so, out gets them in lowercase. */
bool brume_digest_dir_lower(const char *s, char out[65]);
/* out = the 64 lowercase hex digits of md, a SHA-256 digest (32 bytes). */
void brume_digest_dir_hex(const unsigned char md[32], char out[65]);
/* out = the SHA-256 digest of the len bytes at p, in lowercase hex. */
void brume_digest_dir_sha256(const void *p, size_t len, char out[65]);

/* The path of sha256's file, "<dir>/<sha256><ext>", as a heap string the caller frees. sha256
 * must be valid (brume_digest_dir_valid): anything else is a caller's bug and aborts. */
char *brume_digest_dir_path(const brume_digest_dir *d, const char *sha256, const char *ext);

/* Whether sha256's file is there as a regular file; its size in *size (may be NULL) when it is.
 * false for anything but a valid digest. */
bool brume_digest_dir_has(brume_digest_dir *d, const char *sha256, const char *ext, uint64_t *size);

/* Reads sha256's file whole. Returns a heap buffer (the caller frees it) and its length in *len,
 * or NULL with NOT_FOUND (sha256 is not a valid digest, or there is no such file) or INTERNAL
 * (the file cannot be read). */
void *brume_digest_dir_read(brume_digest_dir *d, const char *sha256, const char *ext, size_t *len,
                            brume_err **err);

/* Stores the len bytes at p as sha256's file, atomically and durably (see above). Returns 1 when
 * it wrote the file, 0 when the file was there already (it is left as it is), or -1 with
 * INVALID_ARGUMENT (sha256 is not a valid digest) or INTERNAL (the directory cannot be written;
 * nothing is left under the final name, unless only the directory's fsync failed). The caller
 * vouches that the bytes are what sha256 names: they are not hashed again here. */
int brume_digest_dir_store(brume_digest_dir *d, const char *sha256, const char *ext, const void *p,
                           size_t len, brume_err **err);

/* A temporary file in the directory, for bytes that arrive piece by piece: write to fd (open for
 * reading too, so that it can be mapped), then brume_digest_dir_tmp_commit() or
 * brume_digest_dir_tmp_discard(). name is relative to the directory. */
typedef struct brume_digest_dir_tmp {
  int fd; /* -1 once committed or discarded */
  char name[128];
} brume_digest_dir_tmp;

/* Creates a temporary file for sha256's file (its name only; nothing is checked yet). -1 with
 * INTERNAL ("create <dir>/<name>: ...") when it cannot be created; t->fd is then -1. */
int brume_digest_dir_tmp_open(brume_digest_dir *d, const char *sha256, brume_digest_dir_tmp *t,
                              brume_err **err);
/* Makes t sha256's file: fsync, rename, then the directory's fsync; closes t->fd. -1 with
 * INVALID_ARGUMENT (not a valid digest) or INTERNAL ("store <dir>/<final>: ...", "fsync <dir>:
 * ..."); the temporary file is then removed. */
int brume_digest_dir_tmp_commit(brume_digest_dir *d, brume_digest_dir_tmp *t, const char *sha256,
                                const char *ext, brume_err **err);
/* Removes t's file and closes t->fd, unless it was committed or discarded already. */
void brume_digest_dir_tmp_discard(brume_digest_dir *d, brume_digest_dir_tmp *t);

#endif
