/* Unpacking the function's code (a zip archive) into the task root.
 *
 * brume-init has no zip code of its own: it runs an unzip program, Info-ZIP's or busybox's
 * applet, both of which keep the Unix modes stored in the archive (so bootstrap stays
 * executable). */
#ifndef BRUME_INIT_UNPACK_H
#define BRUME_INIT_UNPACK_H

#include <stddef.h>
#include <stdint.h>

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

#endif
