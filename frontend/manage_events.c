/* The asynchronous invocation settings calls: PutFunctionEventInvokeConfig,
 * GetFunctionEventInvokeConfig, DeleteFunctionEventInvokeConfig (event_config.h). */
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "manage_impl.h"

#define INVALID "InvalidParameterValueException: "

/* Replies with c as the config of desc, a response that has no other field. */
static brume_status reply_config(brume_manage *m, brume_rpc_call *call, const char *account,
                                 const char *name, const brume_fn_event_config *c,
                                 const ProtobufCMessageDescriptor *desc) {
  brume_autofree char *arn = mg_arn(m, account, name, c->qualifier);
  Brume__FunctionEventInvokeConfig p = BRUME__FUNCTION_EVENT_INVOKE_CONFIG__INIT;
  p.function_arn = arn;
  p.maximum_retry_attempts = (uint32_t)c->max_retries;
  p.maximum_event_age_s = (uint32_t)c->max_age_s;
  p.on_success = (char *)c->on_success;
  p.on_failure = (char *)c->on_failure;
  p.dead_letter_queue = (char *)c->dead_letter_queue;
  p.last_modified_unix_ms = c->last_modified_unix_ms;
  return mg_reply_with(call, desc, &p);
}

/* Copies a request's destination into dst, refusing one too long to be any. */
static int set_destination(char *dst, size_t size, const char *value, const char *field,
                           brume_err **err) {
  if (value == NULL) value = "";
  if (strlen(value) >= size)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, INVALID "%s is too long to be a destination",
                         field);
  memcpy(dst, value, strlen(value) + 1);
  return 0;
}

/* A function destination must exist in the account now (Lambda checks it when it is set). */
static int check_function_destination(brume_manage *m, const char *account, const char *value,
                                      const char *field, brume_err **err) {
  brume_destination d;
  if (brume_destination_parse(value, field, &d, err) < 0) return -1;
  if (d.kind != BRUME_DESTINATION_FUNCTION) return 0;
  const brume_fn_target *t = NULL;
  if (brume_catalog_resolve(m->catalog, account, d.name, d.qualifier, 0, &t, NULL) < 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID "%s names function %s%s%s, which does not exist", field, d.name,
                         d.qualifier[0] ? ":" : "", d.qualifier);
  brume_fn_target_unref(t);
  return 0;
}

typedef struct put_ctx {
  const brume_fn_event_config *config;
  const char *arn;
  brume_fn_event_config stored;
} put_ctx;

static int change_put(brume_fn_doc *doc, void *arg, brume_err **err) {
  put_ctx *ctx = arg;
  const brume_fn_event_config *c = brume_fn_doc_put_event_config(doc, ctx->config, ctx->arn, err);
  if (c == NULL) return -1;
  ctx->stored = *c;
  return 1;
}

brume_status mg_put_event_config(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *msg,
                                 const char *account) {
  const Brume__PutFunctionEventInvokeConfigRequest *req = (const void *)msg;
  brume_autoptr(brume_err) err = NULL;
  brume_function_name fn;
  const char *qualifier = NULL;
  if (mg_function(m, req->function_name, req->qualifier, &fn, &qualifier, &err) < 0)
    return mg_fail(call, err);
  brume_fn_event_config c;
  brume_fn_event_config_init(&c, qualifier);
  if (req->maximum_retry_attempts >= 0) c.max_retries = req->maximum_retry_attempts;
  if (req->maximum_event_age_s > 0) c.max_age_s = req->maximum_event_age_s;
  c.last_modified_unix_ms = brume_wall_ms();
  if (set_destination(c.on_success, sizeof(c.on_success), req->on_success, "on_success", &err) <
          0 ||
      set_destination(c.on_failure, sizeof(c.on_failure), req->on_failure, "on_failure", &err) <
          0 ||
      set_destination(c.dead_letter_queue, sizeof(c.dead_letter_queue), req->dead_letter_queue,
                      "dead_letter_queue", &err) < 0 ||
      brume_fn_event_config_check(&c, &err) < 0 ||
      check_function_destination(m, account, c.on_success, "on_success", &err) < 0 ||
      check_function_destination(m, account, c.on_failure, "on_failure", &err) < 0)
    return mg_fail(call, err);
  brume_autofree char *arn = mg_arn(m, account, fn.name, NULL);
  put_ctx ctx = {.config = &c, .arn = arn};
  brume_autoptr(brume_fn_doc) doc = mg_update_doc(m, account, fn.name, change_put, &ctx, &err);
  if (doc == NULL) return mg_fail(call, err);
  return reply_config(m, call, account, fn.name, &ctx.stored,
                      &brume__put_function_event_invoke_config_response__descriptor);
}

brume_status mg_get_event_config(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *msg,
                                 const char *account) {
  const Brume__GetFunctionEventInvokeConfigRequest *req = (const void *)msg;
  brume_autoptr(brume_err) err = NULL;
  brume_function_name fn;
  const char *qualifier = NULL;
  if (mg_function(m, req->function_name, req->qualifier, &fn, &qualifier, &err) < 0)
    return mg_fail(call, err);
  brume_autoptr(brume_fn_doc) doc = NULL;
  int64_t mod = 0;
  if (mg_load(m, account, fn.name, &doc, &mod, &err) < 0) return mg_fail(call, err);
  const brume_fn_event_config *c = brume_fn_doc_event_config(doc, qualifier);
  if (c == NULL) {
    brume_autofree char *arn = mg_arn(m, account, fn.name, NULL);
    brume_err_set(&err, BRUME_NOT_FOUND,
                  "ResourceNotFoundException: The function %s has no asynchronous invocation "
                  "settings for %s",
                  arn, *qualifier ? qualifier : BRUME_LATEST);
    return mg_fail(call, err);
  }
  return reply_config(m, call, account, fn.name, c,
                      &brume__get_function_event_invoke_config_response__descriptor);
}

typedef struct delete_ctx {
  const char *qualifier, *arn;
} delete_ctx;

static int change_delete(brume_fn_doc *doc, void *arg, brume_err **err) {
  delete_ctx *ctx = arg;
  return brume_fn_doc_delete_event_config(doc, ctx->qualifier, ctx->arn, err) < 0 ? -1 : 1;
}

brume_status mg_delete_event_config(brume_manage *m, brume_rpc_call *call,
                                    const ProtobufCMessage *msg, const char *account) {
  const Brume__DeleteFunctionEventInvokeConfigRequest *req = (const void *)msg;
  brume_autoptr(brume_err) err = NULL;
  brume_function_name fn;
  const char *qualifier = NULL;
  if (mg_function(m, req->function_name, req->qualifier, &fn, &qualifier, &err) < 0)
    return mg_fail(call, err);
  brume_autofree char *arn = mg_arn(m, account, fn.name, NULL);
  delete_ctx ctx = {.qualifier = qualifier, .arn = arn};
  brume_autoptr(brume_fn_doc) doc = mg_update_doc(m, account, fn.name, change_delete, &ctx, &err);
  if (doc == NULL) return mg_fail(call, err);
  return mg_reply_with(call, &brume__delete_function_event_invoke_config_response__descriptor,
                       NULL);
}
