/* Function code archives: the zip files customers upload as deployment packages, read in
 * memory with libarchive. One set of rules for the whole platform: the frontend checks an
 * upload with brume_code_zip_check() before storing it, and the worker unpacks the same archive
 * on the host with brume_code_zip_unpack() for GuestInit.code (worker-agent/code_cache.h), so
 * an archive the frontend accepted is one the worker can use.
 *
 * The rules for an entry (brume-init writes the files by the same ones, docs/guest.md): its
 * path is relative, with no empty, "." or ".." component (a directory's trailing '/' aside);
 * it is a regular file, a directory or a symlink with a non-empty target; its data reads
 * back whole (deflate or stored, CRC checked). Modes and types come from the central
 * directory, as unzip takes them.
 *
 * Every function here is pure (no I/O, no global state) and safe from any thread; the archive
 * is the customer's, so any bytes may come (tests/fuzz/fuzz_code_unpack_zip.c). */
#ifndef BRUME_CODE_ZIP_H
#define BRUME_CODE_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "brume/guest.pb-c.h"
#include "err.h"

/* Lambda's limits for a deployment package: the archive at most 50 MiB, its files at most
 * 250 MiB unpacked. */
#define BRUME_CODE_ZIP_MAX (50u * 1024 * 1024)
#define BRUME_CODE_UNPACKED_MAX (250ull * 1024 * 1024)

/* Checks that zip is an archive the platform can run: a readable zip whose central directory
 * says at most max_unpacked bytes unpacked (checked first, before inflating anything), with at
 * least one entry, every entry header read with libarchive and following the rules above, and
 * every file's data inflated (and discarded) within max_unpacked bytes in all, whatever the
 * headers claim. Returns 0, or -1 with INVALID_ARGUMENT and one sentence saying what is wrong
 * ("the code archive is not a valid zip: no end of central directory", "an entry's path is
 * absolute, empty or has a . or .. component: \"../x\"", ...); the caller names the reason
 * (InvalidZipFileException). */
int brume_code_zip_check(const void *zip, size_t len, uint64_t max_unpacked, brume_err **err);

/* Unpacks zip into a GuestCode message, entries in archive order, directory paths without
 * their trailing '/', file contents at most max_bytes in all. Returns a message for
 * brume__guest_code__free_unpacked, or NULL with *why (a static sentence) when the archive
 * breaks a rule above, has no entries, or its files are over max_bytes. */
Brume__GuestCode *brume_code_zip_unpack(const void *zip, size_t len, uint64_t max_bytes,
                                        const char **why);

/* The sum of the uncompressed sizes of zip's entries, from its central directory (zip64
 * included), without inflating anything. Returns 0 with *total, or -1 with INVALID_ARGUMENT
 * ("the code archive is not a valid zip: ...") when buf is not a well-formed zip archive. An
 * empty archive (no entries) is well formed here. A crafted archive's local headers can
 * disagree with its central directory: whoever unpacks it must still bound what it writes. */
int brume_code_zip_unzipped_size(const unsigned char *buf, size_t len, uint64_t *total,
                                 brume_err **err);

#endif
