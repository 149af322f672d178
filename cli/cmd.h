/* What the commands (cmd_*.c) share: a call whose reply is printed, the confirmation of a
 * deletion, the deadline defaults. */
#ifndef BRUME_CLI_CMD_H
#define BRUME_CLI_CMD_H

#include <jansson.h>

#include "client.h"

/* Deadlines when --timeout-ms is not given: management calls, code uploads (up to 50 MiB), and
 * Invoke (the longest function timeout, 900 s, plus a margin for the cold start and the answer). */
#define BRUME_CLI_CALL_MS 30000
#define BRUME_CLI_UPLOAD_MS 120000
#define BRUME_CLI_INVOKE_MS 910000

/* Turns a reply into the JSON object printed for it (message_json.h). */
typedef json_t *(*brume_cli_to_json_fn)(const ProtobufCMessage *reply);

/* Calls method with req and prints to_json(reply) (text or JSON, per --json). A failed call is
 * reported with what ("get function hello"). Returns the exit status. */
int brume_cli_call_print(brume_cli_ctx *ctx, const char *what, enum brume_cli_method method,
                         const ProtobufCMessage *req, int64_t deadline_ms,
                         brume_cli_to_json_fn to_json);

/* Calls a method whose reply says nothing (the deletions) and prints sentence ("Deleted
 * function hello.") as text, or {} as JSON. Returns the exit status. */
int brume_cli_call_done(brume_cli_ctx *ctx, const char *what, enum brume_cli_method method,
                        const ProtobufCMessage *req, const char *sentence);

/* --max-items N: the most items to list over all pages; 0 when absent (all of them). Returns 0,
 * or -1 with *err set when N is no number from 1 up. */
int brume_cli_max_items(brume_cli_ctx *ctx, uint64_t *max, brume_err **err);

/* The i-th positional argument (the parser checked their number), as protobuf-c's char *. */
char *brume_cli_pos(const brume_cli_ctx *ctx, size_t i);

#endif
