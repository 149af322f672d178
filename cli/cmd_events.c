/* Asynchronous invocations (docs/async.md): `brume events get` (where a queued event stands),
 * `brume function event-config put|get|delete` (a qualifier's retries, maximum age and
 * destinations) and `brume queue list|read|drain` (the named queues destinations fill). */
#include <string.h>

#include "brume/frontend.pb-c.h"
#include "cmd.h"
#include "message_json.h"
#include "values.h"

static const char *arg_or(brume_cli_ctx *ctx, const char *name, const char *dflt) {
  const char *v = brume_cli_args_get(ctx->args, name);
  return v ? v : dflt;
}

/* ---- events get ---- */

static const char *const state_names[] = {"UNKNOWN",         "QUEUED",    "RUNNING",
                                          "RETRY_SCHEDULED", "SUCCEEDED", "FAILED"};

static json_t *event_json(const ProtobufCMessage *m) {
  const Brume__EventRecord *e = ((const Brume__GetEventResponse *)m)->event;
  if (e == NULL) return json_object();
  json_t *tries = json_array();
  for (size_t i = 0; i < e->n_tries; i++) {
    const Brume__EventTry *t = e->tries[i];
    json_array_append_new(
        tries, json_pack("{s:I, s:I, s:s, s:s, s:s, s:s}", "began_unix_ms",
                         (json_int_t)t->began_unix_ms, "ended_unix_ms",
                         (json_int_t)t->ended_unix_ms, "outcome", t->outcome, "executed_version",
                         t->executed_version, "error", t->error, "delivered_by", t->delivered_by));
  }
  size_t st = (size_t)e->state < BRUME_ARRAY_LEN(state_names) ? (size_t)e->state : 0;
  return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:i, s:i, s:I, s:s, s:o, s:I}", "event_id",
                   e->event_id, "function_name", e->function_name, "qualifier", e->qualifier,
                   "request_id", e->request_id, "account_id", e->account_id, "accepted_unix_ms",
                   (json_int_t)e->accepted_unix_ms, "state", state_names[st], "attempts",
                   (int)e->attempts, "backoffs", (int)e->backoffs, "next_attempt_unix_ms",
                   (json_int_t)e->next_attempt_unix_ms, "condition", e->condition, "tries", tries,
                   "updated_unix_ms", (json_int_t)e->updated_unix_ms);
}

static int events_get(brume_cli_ctx *ctx) {
  Brume__GetEventRequest req = BRUME__GET_EVENT_REQUEST__INIT;
  req.event_id = brume_cli_pos(ctx, 0);
  brume_autofree char *what = brume_xasprintf("get event %s", req.event_id);
  return brume_cli_call_print(ctx, what, BRUME_CLI_GET_EVENT, &req.base, BRUME_CLI_CALL_MS,
                              event_json);
}

/* ---- function event-config ---- */

static json_t *config_json(const Brume__FunctionEventInvokeConfig *c) {
  if (c == NULL) return json_object();
  return json_pack("{s:s, s:i, s:i, s:s, s:s, s:s, s:I}", "function_arn", c->function_arn,
                   "maximum_retry_attempts", (int)c->maximum_retry_attempts, "maximum_event_age_s",
                   (int)c->maximum_event_age_s, "on_success", c->on_success, "on_failure",
                   c->on_failure, "dead_letter_queue", c->dead_letter_queue,
                   "last_modified_unix_ms", (json_int_t)c->last_modified_unix_ms);
}

static json_t *put_config_json(const ProtobufCMessage *m) {
  return config_json(((const Brume__PutFunctionEventInvokeConfigResponse *)m)->config);
}

static json_t *get_config_json(const ProtobufCMessage *m) {
  return config_json(((const Brume__GetFunctionEventInvokeConfigResponse *)m)->config);
}

int brume_cli_event_config(brume_cli_ctx *ctx) {
  const char *action = brume_cli_pos(ctx, 0);
  char *name = brume_cli_pos(ctx, 1);
  char *qualifier = (char *)arg_or(ctx, "qualifier", "");
  brume_autofree char *target = brume_xasprintf("%s%s%s", name, *qualifier ? ":" : "", qualifier);
  brume_err *err = NULL;
  if (strcmp(action, "put") == 0) {
    Brume__PutFunctionEventInvokeConfigRequest req =
        BRUME__PUT_FUNCTION_EVENT_INVOKE_CONFIG_REQUEST__INIT;
    req.function_name = name;
    req.qualifier = qualifier;
    uint64_t v;
    req.maximum_retry_attempts = -1;
    if (brume_cli_args_has(ctx->args, "max-retries")) {
      if (brume_cli_parse_uint("--max-retries", arg_or(ctx, "max-retries", ""), 0, 1000, &v, &err) <
          0)
        return brume_cli_usage(ctx, err);
      req.maximum_retry_attempts = (int32_t)v;
    }
    if (brume_cli_args_has(ctx->args, "max-age")) {
      if (brume_cli_parse_uint("--max-age", arg_or(ctx, "max-age", ""), 1, UINT32_MAX, &v, &err) <
          0)
        return brume_cli_usage(ctx, err);
      req.maximum_event_age_s = (uint32_t)v;
    }
    req.on_success = (char *)arg_or(ctx, "on-success", "");
    req.on_failure = (char *)arg_or(ctx, "on-failure", "");
    req.dead_letter_queue = (char *)arg_or(ctx, "dead-letter-queue", "");
    brume_autofree char *what =
        brume_xasprintf("set the asynchronous invocation settings of %s", target);
    return brume_cli_call_print(ctx, what, BRUME_CLI_PUT_FUNCTION_EVENT_INVOKE_CONFIG, &req.base,
                                BRUME_CLI_CALL_MS, put_config_json);
  }
  if (strcmp(action, "get") == 0) {
    Brume__GetFunctionEventInvokeConfigRequest req =
        BRUME__GET_FUNCTION_EVENT_INVOKE_CONFIG_REQUEST__INIT;
    req.function_name = name;
    req.qualifier = qualifier;
    brume_autofree char *what =
        brume_xasprintf("get the asynchronous invocation settings of %s", target);
    return brume_cli_call_print(ctx, what, BRUME_CLI_GET_FUNCTION_EVENT_INVOKE_CONFIG, &req.base,
                                BRUME_CLI_CALL_MS, get_config_json);
  }
  if (strcmp(action, "delete") == 0) {
    Brume__DeleteFunctionEventInvokeConfigRequest req =
        BRUME__DELETE_FUNCTION_EVENT_INVOKE_CONFIG_REQUEST__INIT;
    req.function_name = name;
    req.qualifier = qualifier;
    brume_autofree char *what =
        brume_xasprintf("delete the asynchronous invocation settings of %s", target);
    brume_autofree char *done = brume_xasprintf(
        "Deleted the asynchronous invocation settings of %s: the defaults apply.", target);
    return brume_cli_call_done(ctx, what, BRUME_CLI_DELETE_FUNCTION_EVENT_INVOKE_CONFIG, &req.base,
                               done);
  }
  return brume_cli_usagef(ctx, "event-config takes put, get or delete, not \"%s\"", action);
}

/* ---- queue ---- */

static json_t *queues_json(const ProtobufCMessage *m) {
  const Brume__ListQueuesResponse *r = (const void *)m;
  json_t *list = json_array();
  for (size_t i = 0; i < r->n_queues; i++)
    json_array_append_new(list, json_pack("{s:s, s:I}", "name", r->queues[i]->name, "messages",
                                          (json_int_t)r->queues[i]->messages));
  return json_pack("{s:o}", "queues", list);
}

static json_t *messages_json(Brume__QueueMessage **msgs, size_t n) {
  json_t *list = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(
        list, json_pack("{s:I, s:o}", "sequence", (json_int_t)msgs[i]->sequence, "body",
                        brume_cli_json_value_or_text(msgs[i]->body.data, msgs[i]->body.len)));
  return json_pack("{s:o}", "messages", list);
}

static json_t *read_json(const ProtobufCMessage *m) {
  const Brume__ReadQueueResponse *r = (const void *)m;
  return messages_json(r->messages, r->n_messages);
}

static json_t *drain_json(const ProtobufCMessage *m) {
  const Brume__DrainQueueResponse *r = (const void *)m;
  return messages_json(r->messages, r->n_messages);
}

static int max_messages(brume_cli_ctx *ctx, uint32_t *out) {
  *out = 0;
  if (!brume_cli_args_has(ctx->args, "max")) return 0;
  uint64_t v;
  brume_err *err = NULL;
  if (brume_cli_parse_uint("--max", arg_or(ctx, "max", ""), 1, 100, &v, &err) < 0)
    return brume_cli_usage(ctx, err);
  *out = (uint32_t)v;
  return 0;
}

static int queue_list(brume_cli_ctx *ctx) {
  Brume__ListQueuesRequest req = BRUME__LIST_QUEUES_REQUEST__INIT;
  return brume_cli_call_print(ctx, "list queues", BRUME_CLI_LIST_QUEUES, &req.base,
                              BRUME_CLI_CALL_MS, queues_json);
}

static int queue_read(brume_cli_ctx *ctx) {
  Brume__ReadQueueRequest req = BRUME__READ_QUEUE_REQUEST__INIT;
  req.queue_name = brume_cli_pos(ctx, 0);
  int rc = max_messages(ctx, &req.max_messages);
  if (rc) return rc;
  if (brume_cli_args_has(ctx->args, "after")) {
    brume_err *err = NULL;
    if (brume_cli_parse_uint("--after", arg_or(ctx, "after", ""), 0, UINT64_MAX,
                             &req.after_sequence, &err) < 0)
      return brume_cli_usage(ctx, err);
  }
  brume_autofree char *what = brume_xasprintf("read queue %s", req.queue_name);
  return brume_cli_call_print(ctx, what, BRUME_CLI_READ_QUEUE, &req.base, BRUME_CLI_CALL_MS,
                              read_json);
}

static int queue_drain(brume_cli_ctx *ctx) {
  Brume__DrainQueueRequest req = BRUME__DRAIN_QUEUE_REQUEST__INIT;
  req.queue_name = brume_cli_pos(ctx, 0);
  int rc = max_messages(ctx, &req.max_messages);
  if (rc) return rc;
  brume_autofree char *what = brume_xasprintf("drain queue %s", req.queue_name);
  return brume_cli_call_print(ctx, what, BRUME_CLI_DRAIN_QUEUE, &req.base, BRUME_CLI_CALL_MS,
                              drain_json);
}

const brume_cli_flag brume_cli_event_config_flags[] = {
    {"qualifier", "Q", false, "$LATEST (default), a version or an alias"},
    {"max-retries", "N", false, "put: retries after a function error, 0-2 (default 2)"},
    {"max-age", "SECONDS", false, "put: the maximum event age, 60-21600 (default 21600)"},
    {"on-success", "DEST", false, "put: function:<name>[:<qualifier>] or queue:<name>"},
    {"on-failure", "DEST", false, "put: function:<name>[:<qualifier>] or queue:<name>"},
    {"dead-letter-queue", "DEST", false, "put: queue:<name>, used when --on-failure is not set"},
    {NULL, NULL, false, NULL},
};

static const brume_cli_flag read_flags[] = {
    {"max", "N", false, "the most records to show, 1-100 (default 10)"},
    {"after", "SEQUENCE", false, "records after this sequence (default: from the oldest)"},
    {NULL, NULL, false, NULL},
};

static const brume_cli_flag drain_flags[] = {
    {"max", "N", false, "the most records to remove, 1-100 (default 10)"},
    {NULL, NULL, false, NULL},
};

const brume_cli_command brume_cli_events_commands[] = {
    {"events", "get", "EVENT_ID", 1, 1, NULL,
     "Show where a queued (--async) invocation stands: queued, running, retry scheduled, "
     "succeeded or failed, with its tries.",
     events_get},
};
const size_t brume_cli_n_events_commands = BRUME_ARRAY_LEN(brume_cli_events_commands);

const brume_cli_command brume_cli_queue_commands[] = {
    {"queue", "list", "", 0, 0, NULL, "List the account's queues and how many records each holds.",
     queue_list},
    {"queue", "read", "NAME [--max N] [--after SEQUENCE]", 1, 1, read_flags,
     "Show a queue's records, oldest first, leaving them in it.", queue_read},
    {"queue", "drain", "NAME [--max N]", 1, 1, drain_flags,
     "Show and remove a queue's oldest records.", queue_drain},
};
const size_t brume_cli_n_queue_commands = BRUME_ARRAY_LEN(brume_cli_queue_commands);
