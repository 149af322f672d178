/* A function qualifier's asynchronous invocation settings (Lambda's FunctionEventInvokeConfig,
 * docs/async.md "Policy"): its retry attempts, its maximum event age, and where its events' records
 * go. They live in the function's document (function_doc.h), one per qualifier, sorted:
 *
 *   "event_configs": [{"qualifier": "$LATEST", "max_retries": 2, "max_age_s": 21600,
 *                      "on_success": "", "on_failure": "queue:failed", "dead_letter_queue": "",
 *                      "last_modified_unix_ms": 1764290000123}]
 *
 * A destination is "function:<name>[:<qualifier>]" (another function of the same account) or
 * "queue:<name>" (a Brume queue, made when first written to); "" is none. Pure functions. */
#ifndef BRUME_FRONTEND_EVENT_CONFIG_H
#define BRUME_FRONTEND_EVENT_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "names.h"

#define BRUME_QUEUE_NAME_MAX 64
#define BRUME_DESTINATION_MAX \
  (sizeof("function:") - 1 + BRUME_FUNCTION_NAME_MAX + 1 + BRUME_QUALIFIER_MAX)

typedef struct brume_fn_event_config {
  char qualifier[BRUME_QUALIFIER_MAX + 1]; /* "$LATEST", a version or an alias */
  int max_retries;                         /* 0-2 */
  int64_t max_age_s;                       /* 60-21,600 */
  char on_success[BRUME_DESTINATION_MAX + 1];
  char on_failure[BRUME_DESTINATION_MAX + 1];
  char dead_letter_queue[BRUME_DESTINATION_MAX + 1]; /* "queue:<name>" or "" */
  int64_t last_modified_unix_ms;
} brume_fn_event_config;

/* The defaults (2 retries, 21,600 s, no destinations) for qualifier ("" = "$LATEST"). */
void brume_fn_event_config_init(brume_fn_event_config *c, const char *qualifier);

/* A parsed destination. */
typedef enum brume_destination_kind {
  BRUME_DESTINATION_NONE,
  BRUME_DESTINATION_FUNCTION,
  BRUME_DESTINATION_QUEUE,
} brume_destination_kind;

typedef struct brume_destination {
  brume_destination_kind kind;
  char name[BRUME_FUNCTION_NAME_MAX + 1];  /* the function's or the queue's */
  char qualifier[BRUME_QUALIFIER_MAX + 1]; /* a function's; "" = $LATEST */
} brume_destination;

/* Parses s ("" is NONE); INVALID_ARGUMENT "InvalidParameterValueException: <field> ..." when it
 * is neither form, or names something malformed. */
int brume_destination_parse(const char *s, const char *field, brume_destination *out,
                            brume_err **err);

/* Checks the ranges (InvalidParameterValueException naming MaximumRetryAttempts or
 * MaximumEventAgeInSeconds) and each destination's form; the dead-letter queue must be a queue. */
int brume_fn_event_config_check(const brume_fn_event_config *c, brume_err **err);

/* The stored JSON object, and back (DATA_LOSS when o is not one). */
json_t *brume_fn_event_config_json(const brume_fn_event_config *c);
int brume_fn_event_config_parse(json_t *o, brume_fn_event_config *c, brume_err **err);

#endif
