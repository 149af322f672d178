/* The catalog: every account's functions, versions and aliases, as the frontend keeps them in
 * etcd, and a live copy in memory from which Invoke resolves a function without asking etcd.
 *
 * etcd holds one document per function at <prefix>/functions/<account_id>/<name> (JSON, see
 * function_doc.h): $LATEST's configuration, the published versions, the aliases. Environment
 * variables are stored encrypted (env_crypt.h). The management calls (manage.h) read a document,
 * change it, and write it back with a compare-and-swap on its mod revision; the catalog follows
 * the prefix with a watch (read once at revision R, then watched from R + 1, reread after a
 * compaction, as counting's limits store does).
 *
 * Invoke's lookups are answered from memory under a read lock: a function that was just written
 * through this frontend is seen once brume_catalog_wait(revision) returned, which the management
 * calls do before answering, so a client that creates a function and then invokes it through the
 * same frontend always finds it.
 *
 * Thread safety: every function may be called from any thread. */
#ifndef BRUME_FRONTEND_CATALOG_H
#define BRUME_FRONTEND_CATALOG_H

#include <jansson.h>
#include <stdint.h>

#include "brume/common.pb-c.h"
#include "env_crypt.h"
#include "err.h"
#include "etcd.h"
#include "event_config.h"

typedef struct brume_catalog brume_catalog;

typedef struct brume_catalog_opts {
  brume_etcd *etcd;
  const char *prefix; /* the etcd prefix ("/brume"); documents live under <prefix>/functions/ */
  const char *region; /* for ARNs */
  const brume_env_key *env_key; /* decrypts environments for the sandbox specs */
  /* Code URLs in the specs are <code_url_base>/code/<sha256> ("http://10.0.0.5:9040"). */
  const char *code_url_base;
} brume_catalog_opts;

/* Reads every document and starts following the prefix. NULL + err when etcd cannot be read. */
brume_catalog *brume_catalog_new(const brume_catalog_opts *opts, brume_err **err);
void brume_catalog_free(brume_catalog *c);

/* What one invocation runs: a resolved version, immutable and reference-counted, so that Invoke
 * holds it without a lock and without copying the spec. */
typedef struct brume_fn_target brume_fn_target;

/* Resolves account_id's function name at qualifier ("" or NULL = $LATEST, a version, or an alias;
 * an alias with routing picks its additional version when pick < weight, pick being uniform in
 * [0, 1)). *out gets a reference (brume_fn_target_unref). NOT_FOUND "ResourceNotFoundException:
 * Function not found: <ARN>" for an unknown function, version or alias. */
int brume_catalog_resolve(brume_catalog *c, const char *account_id, const char *name,
                          const char *qualifier, double pick, const brume_fn_target **out,
                          brume_err **err);
void brume_fn_target_unref(const brume_fn_target *t);
/* The sandbox spec of the resolved version: spec->function->version is the version that runs,
 * spec->timeout_ms its timeout, spec->resources->memory_mib its memory. */
const Brume__SandboxSpec *brume_fn_target_spec(const brume_fn_target *t);
/* The ARN as invoked: unqualified for $LATEST without a qualifier, else qualified with the
 * qualifier the client gave (the alias, not the version it resolved to). */
const char *brume_fn_target_invoked_arn(const brume_fn_target *t);

/* The asynchronous invocation settings of account_id's function name at qualifier ("" =
 * $LATEST, as invoked: an alias's own settings, not its version's) into *out: 1 when the qualifier
 * has settings of its own, 0 when it has none (*out holds the defaults), -1 when there is no such
 * function (*out holds the defaults). */
int brume_catalog_event_config(brume_catalog *c, const char *account_id, const char *name,
                               const char *qualifier, brume_fn_event_config *out);

/* <code_url_base>/code/<sha256>, where workers fetch a code archive (caller frees). */
char *brume_catalog_code_url(const brume_catalog *c, const char *sha256);

/* Every function, ordered by account then name, for the dashboard (docs/dashboard.md):
 * [{"account_id", "function_name", "memory_mib", "timeout_ms" ($LATEST's), "versions": ["1", ...],
 *   "aliases": [{"name", "function_version", "additional_version" (or null),
 *   "additional_weight"}]}]. Caller owns the reference. */
json_t *brume_catalog_list_json(brume_catalog *c);

/* The SHA-256 digests of every function's code ($LATEST and published versions), each once: a
 * new JSON array of strings, for code replication (frontend/code_replica.h). */
json_t *brume_catalog_code_digests(brume_catalog *c);

/* The etcd revision the in-memory copy reflects (the last change under <prefix>/functions/ it
 * applied, or the initial read's). */
int64_t brume_catalog_revision(brume_catalog *c);

/* Waits until the in-memory copy has applied etcd revision (what a write returned), at most
 * timeout_ms. 0, or -1 with DEADLINE_EXCEEDED. */
int brume_catalog_wait(brume_catalog *c, int64_t revision, int timeout_ms, brume_err **err);

#endif
