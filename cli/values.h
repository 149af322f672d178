/* Flag values: numbers, durations, sizes and the K=V pairs of `brume` commands. Each parser
 * returns 0, or -1 with an INVALID_ARGUMENT error that names the flag and shows what it expects
 * ("--timeout: '30' needs a unit: 30s or 30ms"). Ranges that the frontend checks (memory
 * 128-10,240 MiB ...) are left to it; these only refuse what cannot be sent at all. */
#ifndef BRUME_CLI_VALUES_H
#define BRUME_CLI_VALUES_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* A decimal integer within [min, max]. */
int brume_cli_parse_uint(const char *flag, const char *s, uint64_t min, uint64_t max, uint64_t *out,
                         brume_err **err);

/* A duration, at least 1 ms and at most UINT32_MAX ms: <digits><unit> repeated, units ms, s, m,
 * h ("3s", "900000ms", "1m30s", "15m"). A bare number is refused: seconds or milliseconds? */
int brume_cli_parse_duration_ms(const char *flag, const char *s, uint32_t *ms, brume_err **err);

/* A size in MiB, at least 1: "512", "512MiB" or "2GiB". */
int brume_cli_parse_mib(const char *flag, const char *s, uint32_t *mib, brume_err **err);

/* "NAME=VALUE" (the value may be empty or hold '='): *name and *value are heap copies. */
int brume_cli_parse_pair(const char *flag, const char *s, char **name, char **value,
                         brume_err **err);

/* "VERSION=WEIGHT", WEIGHT a number in [0, 1]: *version is a heap copy. */
int brume_cli_parse_routing(const char *flag, const char *s, char **version, double *weight,
                            brume_err **err);

/* "runtime-api" or "exec", as the proto's HandlerMode value (1 or 2). */
int brume_cli_parse_handler_mode(const char *flag, const char *s, int *mode, brume_err **err);
/* "runtime-api", "exec" or "" (unspecified) for a HandlerMode value. */
const char *brume_cli_handler_mode_name(int mode);

/* A comma-separated list of "invoke", "manage", "admin", each at most once: *scopes is a heap
 * array of heap strings (free with brume_cli_strv_free), *n its length (at least 1). */
int brume_cli_parse_scopes(const char *flag, const char *s, char ***scopes, size_t *n,
                           brume_err **err);
void brume_cli_strv_free(char **v, size_t n);

#endif
