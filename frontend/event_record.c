/* The record an ended event leaves in its destination: see event_record.h. */
#include "event_record.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mem.h"

/* A payload as JSON when it is JSON, else as a string (of its bytes as they are, when they are
 * UTF-8; else null: the record must stay valid JSON). */
static json_t *payload_json(const uint8_t *data, size_t len) {
  json_t *v = json_loadb((const char *)data, len, JSON_DECODE_ANY, NULL);
  if (v) return v;
  v = json_stringn((const char *)data, len);
  return v ? v : json_null();
}

static void iso8601(int64_t unix_ms, char out[32]) {
  time_t s = (time_t)(unix_ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 32 - n, ".%03dZ", (int)(unix_ms % 1000));
}

char *brume_event_destination_record(const brume_event_outcome *o, bool with_payloads,
                                     size_t *len) {
  const Brume__EventRecord *rec = o->record;
  char ts[32];
  iso8601(o->now_unix_ms, ts);
  uint32_t runs = 0;
  json_t *tries = json_array();
  for (size_t i = 0; i < rec->n_tries; i++) {
    const Brume__EventTry *t = rec->tries[i];
    if (strcmp(t->outcome, "succeeded") == 0 || strcmp(t->outcome, "function_error") == 0) runs++;
    json_array_append_new(
        tries, json_pack("{s:I, s:I, s:s, s:s, s:s}", "beganUnixMs", (json_int_t)t->began_unix_ms,
                         "endedUnixMs", (json_int_t)t->ended_unix_ms, "outcome", t->outcome,
                         "executedVersion", t->executed_version, "error", t->error));
  }
  json_t *ctx = json_pack("{s:s, s:s, s:s, s:s, s:i}", "requestId", o->event->request_id, "eventId",
                          o->event->event_id, "functionArn", o->function_arn, "condition",
                          o->condition ? o->condition : "Success", "approximateInvokeCount",
                          (int)(rec->attempts > runs ? rec->attempts : runs));
  json_t *doc =
      json_pack("{s:s, s:s, s:o, s:I, s:i, s:i, s:o}", "version", "1.0", "timestamp", ts,
                "requestContext", ctx, "acceptedUnixMs", (json_int_t)o->event->accepted_unix_ms,
                "attempts", (int)rec->attempts, "backoffs", (int)rec->backoffs, "tries", tries);
  BRUME_ENSURE(doc != NULL);
  if (with_payloads) {
    json_object_set_new(doc, "requestPayload",
                        payload_json(o->event->payload.data, o->event->payload.len));
  } else {
    json_object_set_new(doc, "requestPayload", json_null());
    json_object_set_new(doc, "payloadsOmitted", json_true());
  }
  const Brume__EventTry *last = rec->n_tries ? rec->tries[rec->n_tries - 1] : NULL;
  if (o->response) {
    json_t *rc = json_pack("{s:i, s:s}", "statusCode", 200, "executedVersion",
                           last ? last->executed_version : "");
    if (o->function_error && *o->function_error)
      json_object_set_new(rc, "functionError", json_string(o->function_error));
    json_object_set_new(doc, "responseContext", rc);
    json_object_set_new(doc, "responsePayload",
                        with_payloads ? payload_json(o->response, o->response_len) : json_null());
  }
  char *s = json_dumps(doc, JSON_COMPACT);
  json_decref(doc);
  BRUME_ENSURE(s != NULL);
  *len = strlen(s);
  return s;
}
