/* Frontend replies as JSON objects: what `--json` prints, and what the text output is drawn
 * from. Field names are the proto's; enums are written as words ("runtime-api", "READY",
 * "Unhandled"); a sub-message that is absent is null; bytes are strings (valid UTF-8: bytes that
 * are not become U+FFFD). Every function returns a new reference. */
#ifndef BRUME_CLI_MESSAGE_JSON_H
#define BRUME_CLI_MESSAGE_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "brume/frontend.pb-c.h"
#include "mem.h"

BRUME_DEFINE_AUTOPTR(json_t, json_decref)

/* len bytes as a JSON string, invalid UTF-8 replaced. */
json_t *brume_cli_json_text(const uint8_t *data, size_t len);
/* len bytes as the JSON value they hold when they parse as one, else as a string. */
json_t *brume_cli_json_value_or_text(const uint8_t *data, size_t len);

json_t *brume_cli_json_function(const Brume__FunctionConfiguration *c);
/* {"configuration": ..., "code_url": ..., "reserved_concurrent_executions": N or null} */
json_t *brume_cli_json_get_function(const Brume__GetFunctionResponse *r);
json_t *brume_cli_json_alias(const Brume__AliasConfiguration *a);
/* {"reserved_concurrent_executions": N or null} */
json_t *brume_cli_json_concurrency(const Brume__FunctionConcurrency *c);
json_t *brume_cli_json_provisioned(const Brume__ProvisionedConcurrencyConfig *c);
json_t *brume_cli_json_api_key(const Brume__ApiKeyInfo *k);
/* Every InvokeResponse field; payload through brume_cli_json_value_or_text, log_tail a string,
 * function_error {"kind", "type", "message"} or null. */
json_t *brume_cli_json_invoke(const Brume__InvokeResponse *r);

#endif
