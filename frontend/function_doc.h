/* A function's document: everything the frontend stores about one function, as one JSON value
 * at <prefix>/functions/<account_id>/<name> in etcd ($LATEST's configuration, the published
 * versions, the aliases), and the pure operations the management calls make on it.
 *
 * The document is the unit of consistency: a management call reads it with its mod revision,
 * changes it with the operations below (which check everything first and leave the document as
 * it was when they fail), and writes it back with a compare-and-swap on that revision.
 *
 * Stored form (every field is written; unknown fields are refused, so a typo is noticed):
 *   {"created_unix_ms": 1764290000123, "last_version": 2,
 *    "latest": <config>, "versions": [<config>, ...],      ascending version numbers
 *    "aliases": [<alias>, ...],                            ascending names
 *    "event_configs": [<event config>, ...]}               ascending qualifiers (event_config.h);
 *                                                           absent in older documents = none
 *   <config>: {"version": "$LATEST" | "3", "description": "", "handler_mode": 1, "handler": "h",
 *              "runtime": "provided", "memory_mib": 128, "timeout_ms": 3000,
 *              "ephemeral_mib": 512, "env": "v1:..." (env_crypt.h's sealed form; absent = none),
 *              "code_sha256": "<64 hex>", "code_size": 1234, "last_modified_unix_ms": ...,
 *              "revision_id": "<32 hex>", "from_revision": "<32 hex>" (published versions: the
 *              $LATEST revision they copied, which is how a publish of an unchanged $LATEST
 *              returns the existing version)}
 *   <alias>: {"name": "live", "version": "1", "description": "", "routing_version": "2",
 *             "routing_weight": 0.1, "revision_id": "<32 hex>"}  (no routing: "" and 0)
 *
 * Version numbers are never reused: last_version counts up even when versions are deleted.
 * Error messages are led by their reason name (common.proto's ErrorReason). Environment
 * variables appear here only sealed. Pure functions apart from the random revision ids; a
 * document is not shared between threads. */
#ifndef BRUME_FRONTEND_FUNCTION_DOC_H
#define BRUME_FRONTEND_FUNCTION_DOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "brume/frontend.pb-c.h"
#include "err.h"
#include "event_config.h"

#define BRUME_REVISION_ID_HEX 32
#define BRUME_VERSION_STR_MAX 16 /* "$LATEST" or at most 9 digits */
#define BRUME_VERSION_NUMBER_MAX 999999999u
#define BRUME_DESCRIPTION_MAX 256
#define BRUME_HANDLER_MAX 128
#define BRUME_TIMEOUT_MAX_MS 900000
#define BRUME_ENV_TOTAL_MAX 4096
#define BRUME_RUNTIME_PROVIDED "provided"

/* Defaults of CreateFunction's optional fields. */
#define BRUME_DEFAULT_MEMORY_MIB 128
#define BRUME_DEFAULT_TIMEOUT_MS 3000
#define BRUME_DEFAULT_EPHEMERAL_MIB 512

/* One version's configuration ($LATEST or published). The strings are owned by the config;
 * description, handler and runtime are never NULL. */
typedef struct brume_fn_config {
  char version[BRUME_VERSION_STR_MAX + 1];
  char *description;
  int handler_mode; /* Brume__HandlerMode: RUNTIME_API or EXEC */
  char *handler;
  char *runtime;
  uint32_t memory_mib;
  uint32_t timeout_ms;
  uint32_t ephemeral_mib;
  char *env_sealed; /* the variables as a JSON object, sealed (env_crypt.h); NULL = none */
  char code_sha256[65];
  uint64_t code_size;
  int64_t last_modified_unix_ms;
  char revision_id[BRUME_REVISION_ID_HEX + 1];
  char from_revision[BRUME_REVISION_ID_HEX + 1]; /* published versions only; "" for $LATEST */
} brume_fn_config;

/* An alias. routing_version "" = no routing. */
typedef struct brume_fn_alias {
  char *name;
  char version[BRUME_VERSION_STR_MAX + 1];
  char *description; /* never NULL */
  char routing_version[BRUME_VERSION_STR_MAX + 1];
  double routing_weight;
  char revision_id[BRUME_REVISION_ID_HEX + 1];
} brume_fn_alias;

typedef struct brume_fn_doc {
  int64_t created_unix_ms;
  uint32_t last_version; /* the highest version number ever published */
  brume_fn_config latest;
  size_t n_versions;
  brume_fn_config *versions; /* ascending version numbers */
  size_t n_aliases;
  brume_fn_alias *aliases; /* ascending names */
  size_t n_event_configs;
  brume_fn_event_config *event_configs; /* ascending qualifiers (event_config.h) */
} brume_fn_doc;

/* ---- Configurations ---- */

/* Fresh random revision id (32 lowercase hex digits). */
void brume_fn_revision_id(char out[BRUME_REVISION_ID_HEX + 1]);

/* A config with Create's defaults: $LATEST, RUNTIME_API, runtime "provided", 128 MiB, 3,000 ms,
 * 512 MiB, empty description and handler, no environment, no code. */
void brume_fn_config_init(brume_fn_config *c);
void brume_fn_config_clear(brume_fn_config *c);
void brume_fn_config_copy(brume_fn_config *dst, const brume_fn_config *src);
/* Replaces *field (a config's or alias's string) with a copy of value. */
void brume_fn_set_string(char **field, const char *value);

/* Checks a configuration against the API's ranges, naming the request's fields:
 * INVALID_ARGUMENT "InvalidParameterValueException: memory_size_mib 64 is out of range
 * 128-10240" (description <= 256, handler 1-128, runtime "provided", handler_mode RUNTIME_API or
 * EXEC, memory_size_mib 128-10240, timeout_ms 1-900000, ephemeral_storage_mib 512-10240). */
int brume_fn_config_check(const brume_fn_config *c, brume_err **err);

/* ---- Environment variables ---- */

/* Checks a request's variables: names [A-Za-z][A-Za-z0-9_]*, none twice, none that Brume sets
 * itself (_HANDLER, AWS_REGION, AWS_DEFAULT_REGION, AWS_EXECUTION_ENV, AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, LAMBDA_TASK_ROOT, LAMBDA_RUNTIME_DIR, TZ, any
 * AWS_LAMBDA_* or _X_AMZN_*), names and values together at most 4 KiB. INVALID_ARGUMENT naming
 * the variable's name, never its value. NULL is fine (none). */
int brume_fn_env_check(const Brume__Environment *env, brume_err **err);
/* The variables as a JSON object, keys sorted (caller frees): what env_crypt seals. */
char *brume_fn_env_to_json(const Brume__Environment *env);

typedef struct brume_fn_env_var {
  char *name;
  char *value;
} brume_fn_env_var;
/* Parses an opened environment (a JSON object of strings) into *vars (caller frees with
 * brume_fn_env_free). DATA_LOSS when it is not one. */
int brume_fn_env_parse(const char *json, size_t len, brume_fn_env_var **vars, size_t *n,
                       brume_err **err);
/* Frees the variables, wiping the values first. */
void brume_fn_env_free(brume_fn_env_var *vars, size_t n);

/* ---- Documents ---- */

/* A new function's document holding latest (moved in: *latest is left empty), with a fresh
 * revision id and last_modified = created = now. */
brume_fn_doc *brume_fn_doc_new(brume_fn_config *latest, int64_t now_unix_ms);
void brume_fn_doc_free(brume_fn_doc *d);
BRUME_DEFINE_AUTOPTR(brume_fn_doc, brume_fn_doc_free)

/* The stored JSON (caller frees), and back: NULL + DATA_LOSS when json is not a document (a
 * missing, unknown or mistyped field, versions out of order, an alias to a missing version). */
char *brume_fn_doc_json(const brume_fn_doc *d);
brume_fn_doc *brume_fn_doc_parse(const char *json, size_t len, brume_err **err);

/* $LATEST changed: a fresh revision id and last_modified = now. */
void brume_fn_doc_touch_latest(brume_fn_doc *d, int64_t now_unix_ms);

/* ABORTED "PreconditionFailedException: ..." when revision_id (or code_sha256) is set and is not
 * $LATEST's. NULL or "" = no condition. */
int brume_fn_doc_check_latest(const brume_fn_doc *d, const char *revision_id,
                              const char *code_sha256, brume_err **err);

/* A published version by number, $LATEST for "$LATEST"; NULL when there is none. */
const brume_fn_config *brume_fn_doc_version(const brume_fn_doc *d, const char *version);
const brume_fn_alias *brume_fn_doc_alias(const brume_fn_doc *d, const char *name);

/* The configuration qualifier names: "" / NULL / "$LATEST", a version number, or an alias
 * (its routing version when pick < routing_weight, else its version; pick >= 1 always takes the
 * alias's own version). NULL + NOT_FOUND "ResourceNotFoundException: ..." when there is none;
 * arn (the function's unqualified ARN) goes into the message. */
const brume_fn_config *brume_fn_doc_resolve(const brume_fn_doc *d, const char *qualifier,
                                            double pick, const char *arn, brume_err **err);

/* Publishes $LATEST as version last_version + 1 with description (NULL or "" = $LATEST's), a
 * fresh revision id and last_modified = now, unless the newest version was published from
 * $LATEST's current revision: then nothing changes and that version is returned (*created false).
 * Returns the version (owned by d; valid until d changes). RESOURCE_EXHAUSTED when the version
 * numbers are used up. */
const brume_fn_config *brume_fn_doc_publish(brume_fn_doc *d, const char *description,
                                            int64_t now_unix_ms, bool *created, brume_err **err);

/* Deletes a published version: INVALID_ARGUMENT for "$LATEST" (deleting it means deleting the
 * function), NOT_FOUND when there is no such version, FAILED_PRECONDITION
 * ("ResourceConflictException: ...", naming the alias) when an alias points or routes to it. */
int brume_fn_doc_delete_version(brume_fn_doc *d, const char *version, const char *arn,
                                brume_err **err);

/* Whether alias a may stand in d: its version is $LATEST or a published version; with routing,
 * both versions are published, differ, and the weight is within 0.0-1.0. INVALID_ARGUMENT or
 * NOT_FOUND (a version that does not exist) otherwise. */
int brume_fn_doc_check_alias(const brume_fn_doc *d, const brume_fn_alias *a, const char *arn,
                             brume_err **err);

/* Adds (create) or replaces an alias after brume_fn_doc_check_alias, with a fresh revision id.
 * ALREADY_EXISTS when creating a name that exists, NOT_FOUND when replacing one that does not.
 * a is copied. Returns the stored alias (owned by d). */
const brume_fn_alias *brume_fn_doc_put_alias(brume_fn_doc *d, const brume_fn_alias *a, bool create,
                                             const char *arn, brume_err **err);
/* Removes an alias; NOT_FOUND when there is none. */
int brume_fn_doc_delete_alias(brume_fn_doc *d, const char *name, const char *arn, brume_err **err);

/* ---- Asynchronous invocation settings (event_config.h) ---- */

/* The settings of qualifier ("" = $LATEST) itself, NULL when it has none of its own. */
const brume_fn_event_config *brume_fn_doc_event_config(const brume_fn_doc *d,
                                                       const char *qualifier);
/* Sets c (already checked) for its qualifier, which must be $LATEST, a version or an alias of d:
 * NOT_FOUND otherwise. Returns the stored copy (owned by d). */
const brume_fn_event_config *brume_fn_doc_put_event_config(brume_fn_doc *d,
                                                           const brume_fn_event_config *c,
                                                           const char *arn, brume_err **err);
/* Removes qualifier's settings; NOT_FOUND when it has none. Deleting a version or an alias
 * removes its settings too. */
int brume_fn_doc_delete_event_config(brume_fn_doc *d, const char *qualifier, const char *arn,
                                     brume_err **err);

void brume_fn_alias_clear(brume_fn_alias *a);
void brume_fn_alias_copy(brume_fn_alias *dst, const brume_fn_alias *src);

#endif
