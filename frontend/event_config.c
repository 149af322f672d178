/* A function qualifier's asynchronous invocation settings: see event_config.h. */
#include "event_config.h"

#include <stdio.h>
#include <string.h>

#include "policy.h"

#define REASON "InvalidParameterValueException: "

void brume_fn_event_config_init(brume_fn_event_config *c, const char *qualifier) {
  memset(c, 0, sizeof(*c));
  snprintf(c->qualifier, sizeof(c->qualifier), "%s",
           qualifier && *qualifier ? qualifier : BRUME_LATEST);
  c->max_retries = BRUME_EVENT_RETRIES_DEFAULT;
  c->max_age_s = BRUME_EVENT_AGE_DEFAULT_S;
}

int brume_destination_parse(const char *s, const char *field, brume_destination *out,
                            brume_err **err) {
  memset(out, 0, sizeof(*out));
  if (s == NULL || *s == '\0') return 0;
  char what[160];
  if (strncmp(s, "queue:", 6) == 0) {
    snprintf(what, sizeof(what), "%s's queue name", field);
    if (brume_check_function_name(s + 6, what, err) < 0) return -1;
    out->kind = BRUME_DESTINATION_QUEUE;
    snprintf(out->name, sizeof(out->name), "%s", s + 6);
    return 0;
  }
  if (strncmp(s, "function:", 9) == 0) {
    const char *name = s + 9, *colon = strchr(name, ':');
    size_t n = colon ? (size_t)(colon - name) : strlen(name);
    snprintf(what, sizeof(what), "%s's function name", field);
    if (n >= sizeof(out->name)) n = sizeof(out->name) - 1; /* then refused as malformed below */
    memcpy(out->name, name, n);
    out->name[n] = '\0';
    if (brume_check_function_name(out->name, what, err) < 0 ||
        (colon && strlen(name) - n - 1 > BRUME_QUALIFIER_MAX)) {
      if (err && *err == NULL)
        brume_err_set(err, BRUME_INVALID_ARGUMENT, REASON "%s's qualifier is too long", field);
      memset(out, 0, sizeof(*out));
      return -1;
    }
    if (colon) {
      snprintf(what, sizeof(what), "%s's qualifier", field);
      if (colon[1] == '\0' || brume_check_qualifier(colon + 1, what, err) < 0) {
        if (err && *err == NULL)
          brume_err_set(err, BRUME_INVALID_ARGUMENT, REASON "%s's qualifier is empty", field);
        memset(out, 0, sizeof(*out));
        return -1;
      }
      snprintf(out->qualifier, sizeof(out->qualifier), "%s", colon + 1);
    }
    out->kind = BRUME_DESTINATION_FUNCTION;
    return 0;
  }
  return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                       REASON "%s must be function:<name>[:<qualifier>] or queue:<name>", field);
}

int brume_fn_event_config_check(const brume_fn_event_config *c, brume_err **err) {
  brume_event_policy p = {
      .max_retries = c->max_retries, .max_age_s = c->max_age_s, .time_scale = 1};
  if (brume_event_policy_check(&p, err) < 0) return -1;
  brume_destination d;
  if (brume_destination_parse(c->on_success, "on_success", &d, err) < 0 ||
      brume_destination_parse(c->on_failure, "on_failure", &d, err) < 0 ||
      brume_destination_parse(c->dead_letter_queue, "dead_letter_queue", &d, err) < 0)
    return -1;
  if (d.kind == BRUME_DESTINATION_FUNCTION)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         REASON "dead_letter_queue must be a queue (queue:<name>)");
  return 0;
}

json_t *brume_fn_event_config_json(const brume_fn_event_config *c) {
  return json_pack("{s:s, s:i, s:I, s:s, s:s, s:s, s:I}", "qualifier", c->qualifier, "max_retries",
                   c->max_retries, "max_age_s", (json_int_t)c->max_age_s, "on_success",
                   c->on_success, "on_failure", c->on_failure, "dead_letter_queue",
                   c->dead_letter_queue, "last_modified_unix_ms",
                   (json_int_t)c->last_modified_unix_ms);
}

static bool copy_to(char *dst, size_t size, const char *src) {
  if (strlen(src) >= size) return false;
  memcpy(dst, src, strlen(src) + 1);
  return true;
}

int brume_fn_event_config_parse(json_t *o, brume_fn_event_config *c, brume_err **err) {
  const char *q, *ok, *fail, *dlq;
  int retries;
  json_int_t age, modified;
  memset(c, 0, sizeof(*c));
  if (json_unpack(o, "{s:s, s:i, s:I, s:s, s:s, s:s, s:I !}", "qualifier", &q, "max_retries",
                  &retries, "max_age_s", &age, "on_success", &ok, "on_failure", &fail,
                  "dead_letter_queue", &dlq, "last_modified_unix_ms", &modified) < 0 ||
      !copy_to(c->qualifier, sizeof(c->qualifier), q) ||
      !copy_to(c->on_success, sizeof(c->on_success), ok) ||
      !copy_to(c->on_failure, sizeof(c->on_failure), fail) ||
      !copy_to(c->dead_letter_queue, sizeof(c->dead_letter_queue), dlq))
    return brume_err_set(err, BRUME_DATA_LOSS,
                         "a function document's event_configs entry is malformed");
  c->max_retries = retries;
  c->max_age_s = age;
  c->last_modified_unix_ms = modified;
  return 0;
}
