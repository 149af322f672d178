/* The record an ended event leaves in its destination (docs/async.md, "Destinations"): JSON in
 * the shape of Lambda's destination records, with every try Brume made:
 *
 *   {"version": "1.0", "timestamp": "2026-11-28T21:10:27.835Z",
 *    "requestContext": {"requestId": "...", "eventId": "evt-...",
 *                       "functionArn": "arn:brume:lambda:local:acct:function:fn:$LATEST",
 *                       "condition": "Success" | "RetriesExhausted" | "EventAgeExceeded" |
 *                                    "FunctionNotFound",
 *                       "approximateInvokeCount": 3},
 *    "requestPayload": <the event: its JSON, or a string when it is not JSON>,
 *    "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
 *                        "functionError": "Echo.Failed"},      (functionError only on a failure)
 *    "responsePayload": <the last run's response, likewise>,   (absent when it never ran)
 *    "acceptedUnixMs": ..., "attempts": 3, "backoffs": 0,
 *    "tries": [{"beganUnixMs", "endedUnixMs", "outcome", "executedVersion", "error"}, ...]}
 *
 * Without payloads (a function destination takes at most 256 KiB), requestPayload and
 * responsePayload are null and "payloadsOmitted" is true. Pure; the caller frees. */
#ifndef BRUME_FRONTEND_EVENT_RECORD_H
#define BRUME_FRONTEND_EVENT_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "brume/async.pb-c.h"

typedef struct brume_event_outcome {
  const Brume__QueuedEvent *event;
  const Brume__EventRecord *record; /* its state as it ended (tries, counts) */
  const char *function_arn;         /* qualified with the qualifier as invoked */
  const char *condition;            /* NULL: Success */
  /* The last run's response: its payload and the function error type ("" none); NULL when the
   * event never ran. */
  const uint8_t *response;
  size_t response_len;
  const char *function_error;
  int64_t now_unix_ms;
} brume_event_outcome;

char *brume_event_destination_record(const brume_event_outcome *o, bool with_payloads, size_t *len);

#endif
