/* What `brume` prints on stdout: an object as aligned `key: value` lines (nested objects
 * indented under their key), a list as a table, or either as JSON with --json (one object or
 * one array, indented, then a newline). Invoke's output is its own: the raw payload. */
#ifndef BRUME_CLI_OUTPUT_H
#define BRUME_CLI_OUTPUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "brume/frontend.pb-c.h"

/* One column of a table: the key of each row object and the header printed above it. */
typedef struct brume_cli_column {
  const char *key;
  const char *header;
} brume_cli_column;

/* obj as JSON, or as `key: value` lines. */
void brume_cli_print_object(FILE *f, const json_t *obj, bool json);
/* rows (an array of objects) as JSON, or as a table of the columns given, header first. */
void brume_cli_print_table(FILE *f, const json_t *rows, const brume_cli_column *cols, size_t n,
                           bool json);

/* A value as one piece of text: strings as they are, numbers, true/false, "none" for null and
 * {}, arrays joined with ","; under a key ending in _unix_ms, the time in UTC too
 * ("1700000000000 (2023-11-14T22:13:20.000Z)"), or only the time when short is set (tables).
 * Caller frees. */
char *brume_cli_render_value(const char *key, const json_t *v, bool short_form);

/* Invoke's answer. Text: the payload exactly as returned on out (plus a newline when
 * add_newline is set and it lacks one: for terminals), the log tail on errf when log_tail is
 * set; a queued (202) or dry-run (204) answer is reported on errf. JSON: the whole response
 * (brume_cli_json_invoke) on out. Either way a function error adds the line
 * "brume: <what>: function error (<kind>): <type>: <message>" on errf and the result is 1;
 * otherwise 0. */
int brume_cli_print_invoke(FILE *out, FILE *errf, const char *what, const Brume__InvokeResponse *r,
                           bool json, bool log_tail, bool add_newline);

#endif
