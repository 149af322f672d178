/* A function's document and its pure operations (function_doc.h). */
#include "function_doc.h"

#include <jansson.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "names.h"
#include "random.h"
#include "resources.h"
#include "sorted.h"

BRUME_DEFINE_AUTOPTR(json_t, json_decref)

#define INVALID "InvalidParameterValueException: "
#define NOT_FOUND "ResourceNotFoundException: "
#define CONFLICT "ResourceConflictException: "
#define PRECONDITION "PreconditionFailedException: "

/* ---- Configurations ---- */

void brume_fn_revision_id(char out[BRUME_REVISION_ID_HEX + 1]) {
  snprintf(out, BRUME_REVISION_ID_HEX + 1, "%016llx%016llx", (unsigned long long)brume_random_u64(),
           (unsigned long long)brume_random_u64());
}

void brume_fn_set_string(char **field, const char *value) {
  char *old = *field;
  *field = brume_xstrdup(value ? value : "");
  free(old);
}

void brume_fn_config_init(brume_fn_config *c) {
  memset(c, 0, sizeof(*c));
  snprintf(c->version, sizeof(c->version), "%s", BRUME_LATEST);
  c->description = brume_xstrdup("");
  c->handler_mode = BRUME__HANDLER_MODE__HANDLER_MODE_RUNTIME_API;
  c->handler = brume_xstrdup("");
  c->runtime = brume_xstrdup(BRUME_RUNTIME_PROVIDED);
  c->memory_mib = BRUME_DEFAULT_MEMORY_MIB;
  c->timeout_ms = BRUME_DEFAULT_TIMEOUT_MS;
  c->ephemeral_mib = BRUME_DEFAULT_EPHEMERAL_MIB;
}

void brume_fn_config_clear(brume_fn_config *c) {
  free(c->description);
  free(c->handler);
  free(c->runtime);
  free(c->env_sealed);
  memset(c, 0, sizeof(*c));
}

void brume_fn_config_copy(brume_fn_config *dst, const brume_fn_config *src) {
  *dst = *src;
  dst->description = brume_xstrdup(src->description);
  dst->handler = brume_xstrdup(src->handler);
  dst->runtime = brume_xstrdup(src->runtime);
  dst->env_sealed = src->env_sealed ? brume_xstrdup(src->env_sealed) : NULL;
}

int brume_fn_config_check(const brume_fn_config *c, brume_err **err) {
  size_t n = strlen(c->description);
  if (n > BRUME_DESCRIPTION_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID "description is %zu characters long, over %d", n,
                         BRUME_DESCRIPTION_MAX);
  if (c->handler_mode != BRUME__HANDLER_MODE__HANDLER_MODE_RUNTIME_API &&
      c->handler_mode != BRUME__HANDLER_MODE__HANDLER_MODE_EXEC)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID "handler_mode %d is not RUNTIME_API (1) or EXEC (2)",
                         c->handler_mode);
  n = strlen(c->handler);
  if (n == 0 || n > BRUME_HANDLER_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID "handler must be 1-%d characters (it is %zu)", BRUME_HANDLER_MAX,
                         n);
  for (const char *p = c->handler; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           INVALID "handler must not hold control characters");
  if (strcmp(c->runtime, BRUME_RUNTIME_PROVIDED) != 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID "runtime must be \"" BRUME_RUNTIME_PROVIDED
                                 "\" (the only runtime yet)");
  if (c->memory_mib < BRUME_MEMORY_MIN_MIB || c->memory_mib > BRUME_MEMORY_MAX_MIB)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID "memory_size_mib %u is out of range %d-%d", c->memory_mib,
                         BRUME_MEMORY_MIN_MIB, BRUME_MEMORY_MAX_MIB);
  if (c->timeout_ms < 1 || c->timeout_ms > BRUME_TIMEOUT_MAX_MS)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, INVALID "timeout_ms %u is out of range 1-%d",
                         c->timeout_ms, BRUME_TIMEOUT_MAX_MS);
  if (c->ephemeral_mib < BRUME_EPHEMERAL_MIN_MIB || c->ephemeral_mib > BRUME_EPHEMERAL_MAX_MIB)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID "ephemeral_storage_mib %u is out of range %d-%d", c->ephemeral_mib,
                         BRUME_EPHEMERAL_MIN_MIB, BRUME_EPHEMERAL_MAX_MIB);
  return 0;
}

/* ---- Environment variables ---- */

static const char *const reserved_env[] = {
    "_HANDLER",           "AWS_REGION",
    "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV",
    "AWS_ACCESS_KEY_ID",  "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",  "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR", "TZ",
};
static const char *const reserved_env_prefixes[] = {"AWS_LAMBDA_", "_X_AMZN_"};

static bool env_name_ok(const char *s) {
  if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z'))) return false;
  for (const char *p = s + 1; *p; p++)
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
          *p == '_'))
      return false;
  return true;
}

static bool env_name_reserved(const char *s) {
  for (size_t i = 0; i < BRUME_ARRAY_LEN(reserved_env); i++)
    if (strcmp(s, reserved_env[i]) == 0) return true;
  for (size_t i = 0; i < BRUME_ARRAY_LEN(reserved_env_prefixes); i++)
    if (strncmp(s, reserved_env_prefixes[i], strlen(reserved_env_prefixes[i])) == 0) return true;
  return false;
}

int brume_fn_env_check(const Brume__Environment *env, brume_err **err) {
  if (env == NULL) return 0;
  size_t total = 0;
  for (size_t i = 0; i < env->n_variables; i++) {
    const char *k = env->variables[i]->key ? env->variables[i]->key : "";
    const char *v = env->variables[i]->value ? env->variables[i]->value : "";
    /* A name is shown only when it is a proper one (short, printable). */
    bool ok = strlen(k) <= 128 && env_name_ok(k);
    if (strlen(k) <= 128 && env_name_reserved(k) && (ok || (k[0] == '_' && env_name_ok(k + 1))))
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           INVALID "environment variable %s is reserved: Brume sets it itself", k);
    if (!ok)
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           INVALID
                           "environment variable names must match [A-Za-z][A-Za-z0-9_]* "
                           "(at most 128 characters)");
    for (size_t j = 0; j < i; j++)
      if (env->variables[j]->key && strcmp(env->variables[j]->key, k) == 0)
        return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                             INVALID "environment variable %s is given twice", k);
    total += strlen(k) + strlen(v);
  }
  if (total > BRUME_ENV_TOTAL_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID "environment variables take %zu bytes, over %d", total,
                         BRUME_ENV_TOTAL_MAX);
  return 0;
}

char *brume_fn_env_to_json(const Brume__Environment *env) {
  brume_autoptr(json_t) o = json_object();
  for (size_t i = 0; env && i < env->n_variables; i++)
    json_object_set_new(o, env->variables[i]->key ? env->variables[i]->key : "",
                        json_string(env->variables[i]->value ? env->variables[i]->value : ""));
  char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  BRUME_ENSURE(s != NULL);
  char *out = brume_xstrdup(s);
  OPENSSL_cleanse(s, strlen(s));
  free(s);
  return out;
}

void brume_fn_env_free(brume_fn_env_var *vars, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(vars[i].name);
    if (vars[i].value) OPENSSL_cleanse(vars[i].value, strlen(vars[i].value));
    free(vars[i].value);
  }
  free(vars);
}

int brume_fn_env_parse(const char *json, size_t len, brume_fn_env_var **vars, size_t *n,
                       brume_err **err) {
  *vars = NULL;
  *n = 0;
  brume_autoptr(json_t) o = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
  if (!json_is_object(o))
    return brume_err_set(err, BRUME_DATA_LOSS, "the environment is not a JSON object");
  brume_fn_env_var *v = brume_xcalloc(json_object_size(o) + 1, sizeof(*v));
  size_t i = 0;
  const char *k;
  json_t *val;
  json_object_foreach(o, k, val) {
    if (!json_is_string(val)) {
      brume_fn_env_free(v, i);
      return brume_err_set(err, BRUME_DATA_LOSS, "the environment's values must be strings");
    }
    v[i].name = brume_xstrdup(k);
    v[i].value = brume_xstrdup(json_string_value(val));
    i++;
  }
  /* jansson's strings hold copies of the values; wipe them before they go. */
  json_object_foreach(o, k, val)
      OPENSSL_cleanse((char *)json_string_value(val), json_string_length(val));
  *vars = v;
  *n = i;
  return 0;
}

/* ---- Documents: JSON ---- */

static json_t *config_json(const brume_fn_config *c) {
  json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:s, s:I, s:I, s:I, s:s, s:I, s:I, s:s, s:s}",
                        "version", c->version, "description", c->description, "handler_mode",
                        c->handler_mode, "handler", c->handler, "runtime", c->runtime, "memory_mib",
                        (json_int_t)c->memory_mib, "timeout_ms", (json_int_t)c->timeout_ms,
                        "ephemeral_mib", (json_int_t)c->ephemeral_mib, "code_sha256",
                        c->code_sha256, "code_size", (json_int_t)c->code_size,
                        "last_modified_unix_ms", (json_int_t)c->last_modified_unix_ms,
                        "revision_id", c->revision_id, "from_revision", c->from_revision);
  BRUME_ENSURE(o != NULL);
  if (c->env_sealed) json_object_set_new(o, "env", json_string(c->env_sealed));
  return o;
}

static json_t *alias_json(const brume_fn_alias *a) {
  json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:f, s:s}", "name", a->name, "version", a->version,
                        "description", a->description, "routing_version", a->routing_version,
                        "routing_weight", a->routing_weight, "revision_id", a->revision_id);
  BRUME_ENSURE(o != NULL);
  return o;
}

char *brume_fn_doc_json(const brume_fn_doc *d) {
  json_t *versions = json_array(), *aliases = json_array();
  for (size_t i = 0; i < d->n_versions; i++)
    json_array_append_new(versions, config_json(&d->versions[i]));
  for (size_t i = 0; i < d->n_aliases; i++)
    json_array_append_new(aliases, alias_json(&d->aliases[i]));
  json_t *event_configs = json_array();
  for (size_t i = 0; i < d->n_event_configs; i++)
    json_array_append_new(event_configs, brume_fn_event_config_json(&d->event_configs[i]));
  brume_autoptr(json_t) o =
      json_pack("{s:I, s:I, s:o, s:o, s:o, s:o}", "created_unix_ms", (json_int_t)d->created_unix_ms,
                "last_version", (json_int_t)d->last_version, "latest", config_json(&d->latest),
                "versions", versions, "aliases", aliases, "event_configs", event_configs);
  BRUME_ENSURE(o != NULL);
  char *s = json_dumps(o, JSON_COMPACT);
  BRUME_ENSURE(s != NULL);
  return s;
}

static bool is_hex_string(const char *s, size_t n) {
  if (strlen(s) != n) return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  return true;
}

/* Copies a JSON string field into a fixed buffer; false if it does not fit. */
static bool copy_fixed(char *dst, size_t size, const char *src) {
  size_t n = strlen(src);
  if (n >= size) return false;
  memcpy(dst, src, n + 1);
  return true;
}

static int parse_config(json_t *o, brume_fn_config *c, brume_err **err) {
  const char *version, *description, *handler, *runtime, *sha, *rev, *from, *env = NULL;
  int mode;
  json_int_t mem, timeout, eph, size, modified;
  json_error_t je;
  memset(c, 0, sizeof(*c));
  if (!json_is_object(o) ||
      json_unpack_ex(o, &je, JSON_STRICT,
                     "{s:s, s:s, s:i, s:s, s:s, s:I, s:I, s:I, s?s, s:s, s:I, s:I, s:s, s:s}",
                     "version", &version, "description", &description, "handler_mode", &mode,
                     "handler", &handler, "runtime", &runtime, "memory_mib", &mem, "timeout_ms",
                     &timeout, "ephemeral_mib", &eph, "env", &env, "code_sha256", &sha, "code_size",
                     &size, "last_modified_unix_ms", &modified, "revision_id", &rev,
                     "from_revision", &from) < 0)
    return brume_err_set(err, BRUME_DATA_LOSS, "a configuration is malformed: %s",
                         json_is_object(o) ? je.text : "not an object");
  if (!brume_is_version(version) || mem < 0 || mem > UINT32_MAX || timeout < 0 ||
      timeout > UINT32_MAX || eph < 0 || eph > UINT32_MAX || size < 0 || !is_hex_string(sha, 64) ||
      !is_hex_string(rev, BRUME_REVISION_ID_HEX) ||
      (from[0] && !is_hex_string(from, BRUME_REVISION_ID_HEX)))
    return brume_err_set(err, BRUME_DATA_LOSS, "a configuration has a value out of range");
  copy_fixed(c->version, sizeof(c->version), version);
  c->description = brume_xstrdup(description);
  c->handler_mode = mode;
  c->handler = brume_xstrdup(handler);
  c->runtime = brume_xstrdup(runtime);
  c->memory_mib = (uint32_t)mem;
  c->timeout_ms = (uint32_t)timeout;
  c->ephemeral_mib = (uint32_t)eph;
  c->env_sealed = env ? brume_xstrdup(env) : NULL;
  copy_fixed(c->code_sha256, sizeof(c->code_sha256), sha);
  c->code_size = (uint64_t)size;
  c->last_modified_unix_ms = modified;
  copy_fixed(c->revision_id, sizeof(c->revision_id), rev);
  copy_fixed(c->from_revision, sizeof(c->from_revision), from);
  return 0;
}

static int parse_alias(json_t *o, brume_fn_alias *a, brume_err **err) {
  const char *name, *version, *description, *rversion, *rev;
  double weight;
  json_error_t je;
  memset(a, 0, sizeof(*a));
  if (!json_is_object(o) ||
      json_unpack_ex(o, &je, JSON_STRICT, "{s:s, s:s, s:s, s:s, s:F, s:s}", "name", &name,
                     "version", &version, "description", &description, "routing_version", &rversion,
                     "routing_weight", &weight, "revision_id", &rev) < 0)
    return brume_err_set(err, BRUME_DATA_LOSS, "an alias is malformed: %s",
                         json_is_object(o) ? je.text : "not an object");
  if (brume_check_alias(name, "name", NULL) < 0 || !brume_is_version(version) ||
      (rversion[0] && !brume_is_version(rversion)) || !(weight >= 0 && weight <= 1) ||
      !is_hex_string(rev, BRUME_REVISION_ID_HEX))
    return brume_err_set(err, BRUME_DATA_LOSS, "an alias has a value out of range");
  a->name = brume_xstrdup(name);
  copy_fixed(a->version, sizeof(a->version), version);
  a->description = brume_xstrdup(description);
  copy_fixed(a->routing_version, sizeof(a->routing_version), rversion);
  a->routing_weight = weight;
  copy_fixed(a->revision_id, sizeof(a->revision_id), rev);
  return 0;
}

static uint32_t version_number(const char *v) {
  return (uint32_t)strtoul(v, NULL, 10);
}

brume_fn_doc *brume_fn_doc_parse(const char *json, size_t len, brume_err **err) {
  json_error_t je;
  brume_autoptr(json_t) o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
  json_int_t created, last;
  json_t *latest, *versions, *aliases, *event_configs = NULL;
  if (o == NULL) {
    brume_err_set(err, BRUME_DATA_LOSS, "a function document is not JSON: %s", je.text);
    return NULL;
  }
  /* event_configs came later: a document without it has none. */
  if (json_unpack_ex(o, &je, JSON_STRICT, "{s:I, s:I, s:o, s:o, s:o, s?o}", "created_unix_ms",
                     &created, "last_version", &last, "latest", &latest, "versions", &versions,
                     "aliases", &aliases, "event_configs", &event_configs) < 0 ||
      !json_is_array(versions) || !json_is_array(aliases) ||
      (event_configs && !json_is_array(event_configs)) || last < 0 ||
      last > BRUME_VERSION_NUMBER_MAX) {
    brume_err_set(err, BRUME_DATA_LOSS, "a function document is malformed: %s",
                  json_is_object(o) ? je.text : "not an object");
    return NULL;
  }
  brume_autoptr(brume_fn_doc) d = brume_xcalloc(1, sizeof(*d));
  d->created_unix_ms = created;
  d->last_version = (uint32_t)last;
  if (parse_config(latest, &d->latest, err) < 0) return NULL;
  if (strcmp(d->latest.version, BRUME_LATEST) != 0 || d->latest.from_revision[0]) {
    brume_err_set(err, BRUME_DATA_LOSS, "a function document's latest is not $LATEST");
    return NULL;
  }
  d->versions = brume_xcalloc(json_array_size(versions) + 1, sizeof(*d->versions));
  for (size_t i = 0; i < json_array_size(versions); i++) {
    brume_fn_config *c = &d->versions[i];
    if (parse_config(json_array_get(versions, i), c, err) < 0) return NULL;
    d->n_versions++;
    uint32_t n = strcmp(c->version, BRUME_LATEST) == 0 ? 0 : version_number(c->version);
    if (n == 0 || n > d->last_version ||
        (i > 0 && n <= version_number(d->versions[i - 1].version))) {
      brume_err_set(err, BRUME_DATA_LOSS,
                    "a function document's versions are out of order or over last_version");
      return NULL;
    }
  }
  d->aliases = brume_xcalloc(json_array_size(aliases) + 1, sizeof(*d->aliases));
  for (size_t i = 0; i < json_array_size(aliases); i++) {
    brume_fn_alias *a = &d->aliases[i];
    if (parse_alias(json_array_get(aliases, i), a, err) < 0) return NULL;
    d->n_aliases++;
    if ((i > 0 && strcmp(d->aliases[i - 1].name, a->name) >= 0) ||
        brume_fn_doc_version(d, a->version) == NULL ||
        (a->routing_version[0] && brume_fn_doc_version(d, a->routing_version) == NULL)) {
      brume_err_set(err, BRUME_DATA_LOSS,
                    "a function document's aliases are out of order or name a missing version");
      return NULL;
    }
  }
  size_t n_ec = event_configs ? json_array_size(event_configs) : 0;
  d->event_configs = brume_xcalloc(n_ec + 1, sizeof(*d->event_configs));
  for (size_t i = 0; i < n_ec; i++) {
    brume_fn_event_config *c = &d->event_configs[i];
    if (brume_fn_event_config_parse(json_array_get(event_configs, i), c, err) < 0) return NULL;
    d->n_event_configs++;
    if (i > 0 && strcmp(d->event_configs[i - 1].qualifier, c->qualifier) >= 0) {
      brume_err_set(err, BRUME_DATA_LOSS, "a function document's event_configs are out of order");
      return NULL;
    }
  }
  return brume_steal(&d);
}

/* ---- Documents: operations ---- */

brume_fn_doc *brume_fn_doc_new(brume_fn_config *latest, int64_t now_unix_ms) {
  brume_fn_doc *d = brume_xcalloc(1, sizeof(*d));
  d->latest = *latest;
  memset(latest, 0, sizeof(*latest));
  snprintf(d->latest.version, sizeof(d->latest.version), "%s", BRUME_LATEST);
  d->latest.from_revision[0] = '\0';
  d->created_unix_ms = now_unix_ms;
  brume_fn_doc_touch_latest(d, now_unix_ms);
  return d;
}

void brume_fn_alias_clear(brume_fn_alias *a) {
  free(a->name);
  free(a->description);
  memset(a, 0, sizeof(*a));
}

void brume_fn_alias_copy(brume_fn_alias *dst, const brume_fn_alias *src) {
  *dst = *src;
  dst->name = brume_xstrdup(src->name ? src->name : "");
  dst->description = brume_xstrdup(src->description ? src->description : "");
}

void brume_fn_doc_free(brume_fn_doc *d) {
  if (d == NULL) return;
  brume_fn_config_clear(&d->latest);
  for (size_t i = 0; i < d->n_versions; i++) brume_fn_config_clear(&d->versions[i]);
  free(d->versions);
  for (size_t i = 0; i < d->n_aliases; i++) brume_fn_alias_clear(&d->aliases[i]);
  free(d->aliases);
  free(d->event_configs);
  free(d);
}

void brume_fn_doc_touch_latest(brume_fn_doc *d, int64_t now_unix_ms) {
  brume_fn_revision_id(d->latest.revision_id);
  d->latest.last_modified_unix_ms = now_unix_ms;
}

int brume_fn_doc_check_latest(const brume_fn_doc *d, const char *revision_id,
                              const char *code_sha256, brume_err **err) {
  if (revision_id && revision_id[0] && strcmp(revision_id, d->latest.revision_id) != 0)
    return brume_err_set(err, BRUME_ABORTED,
                         PRECONDITION
                         "revision_id %.40s is not $LATEST's current revision; read "
                         "the function again and retry",
                         revision_id);
  if (code_sha256 && code_sha256[0] && strcmp(code_sha256, d->latest.code_sha256) != 0)
    return brume_err_set(err, BRUME_ABORTED,
                         PRECONDITION
                         "code_sha256 %.64s is not $LATEST's code; read the function "
                         "again and retry",
                         code_sha256);
  return 0;
}

const brume_fn_config *brume_fn_doc_version(const brume_fn_doc *d, const char *version) {
  if (version == NULL) return NULL;
  if (strcmp(version, BRUME_LATEST) == 0) return &d->latest;
  for (size_t i = 0; i < d->n_versions; i++)
    if (strcmp(d->versions[i].version, version) == 0) return &d->versions[i];
  return NULL;
}

static const char *alias_name_at(const void *doc, size_t i) {
  return ((const brume_fn_doc *)doc)->aliases[i].name;
}

static size_t alias_index(const brume_fn_doc *d, const char *name, bool *found) {
  return brume_sorted_search(d->n_aliases, alias_name_at, d, name, found);
}

const brume_fn_alias *brume_fn_doc_alias(const brume_fn_doc *d, const char *name) {
  bool found;
  size_t i = alias_index(d, name, &found);
  return found ? &d->aliases[i] : NULL;
}

const brume_fn_config *brume_fn_doc_resolve(const brume_fn_doc *d, const char *qualifier,
                                            double pick, const char *arn, brume_err **err) {
  if (qualifier == NULL || qualifier[0] == '\0') return &d->latest;
  const brume_fn_config *c = NULL;
  if (brume_is_version(qualifier)) {
    c = brume_fn_doc_version(d, qualifier);
  } else {
    const brume_fn_alias *a = brume_fn_doc_alias(d, qualifier);
    if (a)
      c = brume_fn_doc_version(
          d, a->routing_version[0] && pick < a->routing_weight ? a->routing_version : a->version);
  }
  if (c == NULL)
    brume_err_set(err, BRUME_NOT_FOUND, NOT_FOUND "Function not found: %s:%s", arn, qualifier);
  return c;
}

const brume_fn_config *brume_fn_doc_publish(brume_fn_doc *d, const char *description,
                                            int64_t now_unix_ms, bool *created, brume_err **err) {
  *created = false;
  if (d->n_versions > 0) {
    const brume_fn_config *newest = &d->versions[d->n_versions - 1];
    if (strcmp(newest->from_revision, d->latest.revision_id) == 0) return newest;
  }
  if (d->last_version >= BRUME_VERSION_NUMBER_MAX) {
    brume_err_set(err, BRUME_RESOURCE_EXHAUSTED,
                  "ResourceConflictException: the function has used up its version numbers");
    return NULL;
  }
  d->versions = brume_xrealloc(d->versions, (d->n_versions + 1) * sizeof(*d->versions));
  brume_fn_config *v = &d->versions[d->n_versions++];
  brume_fn_config_copy(v, &d->latest);
  d->last_version++;
  snprintf(v->version, sizeof(v->version), "%u", d->last_version);
  if (description && description[0]) brume_fn_set_string(&v->description, description);
  memcpy(v->from_revision, d->latest.revision_id, sizeof(v->from_revision));
  brume_fn_revision_id(v->revision_id);
  v->last_modified_unix_ms = now_unix_ms;
  *created = true;
  return v;
}

int brume_fn_doc_delete_version(brume_fn_doc *d, const char *version, const char *arn,
                                brume_err **err) {
  if (strcmp(version, BRUME_LATEST) == 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID
                         "qualifier $LATEST cannot be deleted alone: delete the function "
                         "(no qualifier) instead");
  size_t i = 0;
  while (i < d->n_versions && strcmp(d->versions[i].version, version) != 0) i++;
  if (i == d->n_versions)
    return brume_err_set(err, BRUME_NOT_FOUND, NOT_FOUND "Function not found: %s:%s", arn, version);
  for (size_t j = 0; j < d->n_aliases; j++) {
    const brume_fn_alias *a = &d->aliases[j];
    if (strcmp(a->version, version) == 0 || strcmp(a->routing_version, version) == 0)
      return brume_err_set(err, BRUME_FAILED_PRECONDITION,
                           CONFLICT "version %s of %s cannot be deleted: alias %s %s it", version,
                           arn, a->name,
                           strcmp(a->version, version) == 0 ? "points to" : "routes to");
  }
  brume_fn_config_clear(&d->versions[i]);
  memmove(&d->versions[i], &d->versions[i + 1], (d->n_versions - i - 1) * sizeof(*d->versions));
  d->n_versions--;
  brume_fn_doc_delete_event_config(d, version, arn, NULL); /* its settings go with it */
  return 0;
}

int brume_fn_doc_check_alias(const brume_fn_doc *d, const brume_fn_alias *a, const char *arn,
                             brume_err **err) {
  if (brume_check_alias(a->name, "name", err) < 0) return -1;
  if (!brume_is_version(a->version))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID "function_version must be $LATEST or a version number");
  if (strlen(a->description) > BRUME_DESCRIPTION_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID "description is %zu characters long, over %d",
                         strlen(a->description), BRUME_DESCRIPTION_MAX);
  if (brume_fn_doc_version(d, a->version) == NULL)
    return brume_err_set(err, BRUME_NOT_FOUND, NOT_FOUND "Function not found: %s:%s", arn,
                         a->version);
  if (a->routing_version[0] == '\0') {
    if (a->routing_weight != 0)
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           INVALID
                           "routing_config.additional_version_weight needs an "
                           "additional_version");
    return 0;
  }
  if (!brume_is_version(a->routing_version) || strcmp(a->routing_version, BRUME_LATEST) == 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID
                         "routing_config.additional_version must be a published version "
                         "number");
  if (strcmp(a->version, BRUME_LATEST) == 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID
                         "an alias with routing_config must point to a published version, "
                         "not $LATEST");
  if (strcmp(a->routing_version, a->version) == 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID "routing_config.additional_version %s is the alias's own version",
                         a->routing_version);
  if (!(a->routing_weight >= 0 && a->routing_weight <= 1))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         INVALID "routing_config.additional_version_weight must be 0.0-1.0");
  if (brume_fn_doc_version(d, a->routing_version) == NULL)
    return brume_err_set(err, BRUME_NOT_FOUND, NOT_FOUND "Function not found: %s:%s", arn,
                         a->routing_version);
  return 0;
}

const brume_fn_alias *brume_fn_doc_put_alias(brume_fn_doc *d, const brume_fn_alias *a, bool create,
                                             const char *arn, brume_err **err) {
  if (brume_fn_doc_check_alias(d, a, arn, err) < 0) return NULL;
  bool found;
  size_t i = alias_index(d, a->name, &found);
  if (create && found) {
    brume_err_set(err, BRUME_ALREADY_EXISTS, CONFLICT "Alias already exists: %s:%s", arn, a->name);
    return NULL;
  }
  if (!create && !found) {
    brume_err_set(err, BRUME_NOT_FOUND, NOT_FOUND "Alias not found: %s:%s", arn, a->name);
    return NULL;
  }
  if (found) {
    brume_fn_alias_clear(&d->aliases[i]);
  } else {
    d->aliases = brume_xrealloc(d->aliases, (d->n_aliases + 1) * sizeof(*d->aliases));
    memmove(&d->aliases[i + 1], &d->aliases[i], (d->n_aliases - i) * sizeof(*d->aliases));
    d->n_aliases++;
  }
  brume_fn_alias_copy(&d->aliases[i], a);
  if (d->aliases[i].routing_version[0] == '\0') d->aliases[i].routing_weight = 0;
  brume_fn_revision_id(d->aliases[i].revision_id);
  return &d->aliases[i];
}

int brume_fn_doc_delete_alias(brume_fn_doc *d, const char *name, const char *arn, brume_err **err) {
  bool found;
  size_t i = alias_index(d, name, &found);
  if (!found)
    return brume_err_set(err, BRUME_NOT_FOUND, NOT_FOUND "Alias not found: %s:%s", arn, name);
  brume_fn_alias_clear(&d->aliases[i]);
  memmove(&d->aliases[i], &d->aliases[i + 1], (d->n_aliases - i - 1) * sizeof(*d->aliases));
  d->n_aliases--;
  brume_fn_doc_delete_event_config(d, name, arn, NULL); /* its settings go with it */
  return 0;
}

/* ---- Asynchronous invocation settings ---- */

static const char *event_config_at(const void *doc, size_t i) {
  return ((const brume_fn_doc *)doc)->event_configs[i].qualifier;
}

static size_t event_config_index(const brume_fn_doc *d, const char *qualifier, bool *found) {
  return brume_sorted_search(d->n_event_configs, event_config_at, d,
                             qualifier && *qualifier ? qualifier : BRUME_LATEST, found);
}

const brume_fn_event_config *brume_fn_doc_event_config(const brume_fn_doc *d,
                                                       const char *qualifier) {
  bool found;
  size_t i = event_config_index(d, qualifier, &found);
  return found ? &d->event_configs[i] : NULL;
}

const brume_fn_event_config *brume_fn_doc_put_event_config(brume_fn_doc *d,
                                                           const brume_fn_event_config *c,
                                                           const char *arn, brume_err **err) {
  bool exists = brume_is_version(c->qualifier) ? brume_fn_doc_version(d, c->qualifier) != NULL
                                               : brume_fn_doc_alias(d, c->qualifier) != NULL;
  if (!exists) {
    brume_err_set(err, BRUME_NOT_FOUND, NOT_FOUND "Function not found: %s:%s", arn, c->qualifier);
    return NULL;
  }
  bool found;
  size_t i = event_config_index(d, c->qualifier, &found);
  if (!found) {
    d->event_configs =
        brume_xrealloc(d->event_configs, (d->n_event_configs + 1) * sizeof(*d->event_configs));
    memmove(&d->event_configs[i + 1], &d->event_configs[i],
            (d->n_event_configs - i) * sizeof(*d->event_configs));
    d->n_event_configs++;
  }
  d->event_configs[i] = *c;
  return &d->event_configs[i];
}

int brume_fn_doc_delete_event_config(brume_fn_doc *d, const char *qualifier, const char *arn,
                                     brume_err **err) {
  bool found;
  size_t i = event_config_index(d, qualifier, &found);
  if (!found)
    return brume_err_set(err, BRUME_NOT_FOUND,
                         NOT_FOUND "The function %s has no asynchronous invocation settings for %s",
                         arn, qualifier && *qualifier ? qualifier : BRUME_LATEST);
  memmove(&d->event_configs[i], &d->event_configs[i + 1],
          (d->n_event_configs - i - 1) * sizeof(*d->event_configs));
  d->n_event_configs--;
  return 0;
}
