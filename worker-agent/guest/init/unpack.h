/* Putting the function's code into the task root: either the files the worker unpacked
 * (GuestInit.code, the usual way: nothing to inflate, no process to start), or a zip archive.
 *
 * brume-init has no zip code of its own: for an archive it runs an unzip program, Info-ZIP's or
 * busybox's applet, both of which keep the Unix modes stored in the archive (so bootstrap stays
 * executable). */
#ifndef BRUME_INIT_UNPACK_H
#define BRUME_INIT_UNPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "brume/guest.pb-c.h"
#include "err.h"

/* The unzip program to use: configured (non-NULL) as given, else "unzip" from PATH, else
 * /bin/busybox. Returns a malloc'ed path, or NULL when none exists (NOT_FOUND). */
char *init_unpack_find_unzip(const char *configured, brume_err **err);

/* Writes zip to a file next to dir, runs `unzip -o -q FILE -d dir` and removes the file.
 * INVALID_ARGUMENT when unzip refuses the archive (its last words are in the message). The
 * call blocks until unzip is done: it is the one slow step of GuestInit, and nothing else can
 * happen before it. */
int init_unpack_zip(const uint8_t *zip, size_t len, const char *dir, const char *unzip,
                    brume_err **err);

/* Writes code's files under dir (created if missing), in order: missing parent directories
 * 0755, files and directories with their mode's permission bits (0777), directories' modes set
 * last, symlinks created after everything else (so nothing is written through one). A later
 * entry for the same path replaces a file, as unzip -o does. INVALID_ARGUMENT for an empty list
 * or an entry that does not fit (a path that is absolute, empty, has a "." or ".." component,
 * or runs through a file); INTERNAL when writing fails. */
int init_unpack_files(const Brume__GuestCode *code, const char *dir, brume_err **err);

/* Whether path is a relative path of non-empty components other than "." and "..". Pure. */
bool init_unpack_path_ok(const char *path);

#endif
