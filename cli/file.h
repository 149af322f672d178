/* Whole files read into memory: function code, payloads, API key files, the config file. */
#ifndef BRUME_CLI_FILE_H
#define BRUME_CLI_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Reads the whole of path, or of standard input when path is "-", refusing more than max bytes.
 * Returns a heap buffer with a NUL after its *len bytes (caller frees), or NULL with an error
 * naming the path (NOT_FOUND when it does not exist, INVALID_ARGUMENT otherwise). */
uint8_t *brume_cli_file_read(const char *path, size_t max, size_t *len, brume_err **err);

#endif
