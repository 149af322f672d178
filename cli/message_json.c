/* Frontend replies as JSON objects: see message_json.h. */
#include "message_json.h"

#include <string.h>

#include "mem.h"
#include "values.h"

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if it is not one. */
static size_t utf8_len(const uint8_t *s, size_t n) {
  uint8_t c = s[0];
  size_t len;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (len > n) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  /* Overlong forms, UTF-16 surrogates, beyond U+10FFFF. */
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return len;
}

json_t *brume_cli_json_text(const uint8_t *data, size_t len) {
  if (len == 0) return json_string("");
  json_t *s = json_stringn((const char *)data, len);
  if (s) return s;
  uint8_t *buf = brume_xmalloc(len * 3 + 1);
  size_t o = 0;
  for (size_t i = 0; i < len;) {
    size_t l = utf8_len(data + i, len - i);
    if (l == 0) {
      memcpy(buf + o, "\xef\xbf\xbd", 3);
      o += 3;
      i++;
    } else {
      memcpy(buf + o, data + i, l);
      o += l;
      i += l;
    }
  }
  s = json_stringn((const char *)buf, o);
  free(buf);
  BRUME_ENSURE(s != NULL);
  return s;
}

json_t *brume_cli_json_value_or_text(const uint8_t *data, size_t len) {
  json_error_t error;
  json_t *v = len ? json_loadb((const char *)data, len, JSON_DECODE_ANY, &error) : NULL;
  return v ? v : brume_cli_json_text(data, len);
}

static json_t *str(const char *s) {
  return s ? brume_cli_json_text((const uint8_t *)s, strlen(s)) : json_string("");
}

/* json_pack fails only on a malformed format or a NULL member: a bug here. */
static json_t *packed(json_t *v) {
  BRUME_ENSURE(v != NULL);
  return v;
}

static json_t *environment(const Brume__Environment *env) {
  json_t *o = json_object();
  for (size_t i = 0; env && i < env->n_variables; i++)
    json_object_set_new(o, env->variables[i]->key, str(env->variables[i]->value));
  return o;
}

json_t *brume_cli_json_function(const Brume__FunctionConfiguration *c) {
  return packed(json_pack(
      "{s:o, s:o, s:o, s:o, s:s, s:o, s:o, s:I, s:I, s:I, s:o, s:o, s:I, s:I, s:o}",
      "function_name", str(c->function_name), "function_arn", str(c->function_arn), "version",
      str(c->version), "description", str(c->description), "handler_mode",
      brume_cli_handler_mode_name(c->handler_mode), "handler", str(c->handler), "runtime",
      str(c->runtime), "memory_size_mib", (json_int_t)c->memory_size_mib, "timeout_ms",
      (json_int_t)c->timeout_ms, "ephemeral_storage_mib", (json_int_t)c->ephemeral_storage_mib,
      "environment", environment(c->environment), "code_sha256", str(c->code_sha256),
      "code_size_bytes", (json_int_t)c->code_size_bytes, "last_modified_unix_ms",
      (json_int_t)c->last_modified_unix_ms, "revision_id", str(c->revision_id)));
}

static json_t *reserved(const Brume__FunctionConcurrency *c) {
  return c ? json_integer(c->reserved_concurrent_executions) : json_null();
}

json_t *brume_cli_json_get_function(const Brume__GetFunctionResponse *r) {
  return packed(json_pack(
      "{s:o, s:o, s:o}", "configuration",
      r->configuration ? brume_cli_json_function(r->configuration) : json_null(), "code_url",
      str(r->code_url), "reserved_concurrent_executions", reserved(r->concurrency)));
}

json_t *brume_cli_json_alias(const Brume__AliasConfiguration *a) {
  json_t *routing = json_null();
  if (a->routing_config && a->routing_config->additional_version &&
      *a->routing_config->additional_version)
    routing = packed(
        json_pack("{s:o, s:f}", "additional_version", str(a->routing_config->additional_version),
                  "additional_version_weight", a->routing_config->additional_version_weight));
  return packed(json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "name", str(a->name), "alias_arn",
                          str(a->alias_arn), "function_version", str(a->function_version),
                          "description", str(a->description), "routing_config", routing,
                          "revision_id", str(a->revision_id)));
}

json_t *brume_cli_json_concurrency(const Brume__FunctionConcurrency *c) {
  return packed(json_pack("{s:o}", "reserved_concurrent_executions", reserved(c)));
}

json_t *brume_cli_json_provisioned(const Brume__ProvisionedConcurrencyConfig *c) {
  static const char *const status[] = {"", "IN_PROGRESS", "READY", "FAILED"};
  const char *st =
      c->status >= 0 && (size_t)c->status < BRUME_ARRAY_LEN(status) ? status[c->status] : "UNKNOWN";
  return packed(json_pack(
      "{s:o, s:o, s:I, s:I, s:I, s:s, s:o, s:I}", "function_name", str(c->function_name),
      "qualifier", str(c->qualifier), "requested_provisioned_concurrent_executions",
      (json_int_t)c->requested_provisioned_concurrent_executions,
      "allocated_provisioned_concurrent_executions",
      (json_int_t)c->allocated_provisioned_concurrent_executions,
      "available_provisioned_concurrent_executions",
      (json_int_t)c->available_provisioned_concurrent_executions, "status", st, "status_reason",
      str(c->status_reason), "last_modified_unix_ms", (json_int_t)c->last_modified_unix_ms));
}

json_t *brume_cli_json_api_key(const Brume__ApiKeyInfo *k) {
  json_t *scopes = json_array();
  for (size_t i = 0; i < k->n_scopes; i++) json_array_append_new(scopes, str(k->scopes[i]));
  return packed(json_pack("{s:o, s:o, s:o, s:o, s:I}", "key_id", str(k->key_id), "account_id",
                          str(k->account_id), "scopes", scopes, "description", str(k->description),
                          "created_unix_ms", (json_int_t)k->created_unix_ms));
}

static json_t *function_error(const Brume__FunctionError *e) {
  if (e == NULL) return json_null();
  const char *kind = e->kind == BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_HANDLED ? "Handled"
                     : e->kind == BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED
                         ? "Unhandled"
                         : "";
  return packed(
      json_pack("{s:s, s:o, s:o}", "kind", kind, "type", str(e->type), "message", str(e->message)));
}

json_t *brume_cli_json_invoke(const Brume__InvokeResponse *r) {
  return packed(json_pack(
      "{s:I, s:o, s:o, s:o, s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o}", "status_code",
      (json_int_t)r->status_code, "payload",
      brume_cli_json_value_or_text(r->payload.data, r->payload.len), "function_error",
      function_error(r->function_error), "executed_version", str(r->executed_version), "cold_start",
      (int)r->cold_start, "pool_hit", (int)r->pool_hit, "init_duration_us",
      (json_int_t)r->init_duration_us, "duration_us", (json_int_t)r->duration_us,
      "billed_duration_ms", (json_int_t)r->billed_duration_ms, "memory_size_mib",
      (json_int_t)r->memory_size_mib, "max_memory_used_mib", (json_int_t)r->max_memory_used_mib,
      "log_tail", brume_cli_json_text(r->log_tail.data, r->log_tail.len), "request_id",
      str(r->request_id), "event_id", str(r->event_id)));
}
