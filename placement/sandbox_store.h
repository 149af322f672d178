/* The sandboxes placement created, recorded in etcd so that they outlive the daemon that made
 * them: `<prefix>/placement/sandboxes/<sandbox_id>` = a JSON object
 *
 *   {"owner": "pl-1", "host": "w1", "function": "acct/fn/1/rev", "memory_mib": 128,
 *    "vcpu_milli": 72, "provisioned": false, "created_unix_ms": 1764290000000}
 *
 * written once when the cold start succeeded and deleted when the sandbox is destroyed. The keys
 * carry no lease: a placement daemon that restarts (same daemon_id) finds its sandboxes again,
 * and those of a daemon that is gone for good are adopted by another (a compare-and-swap on the
 * key's mod revision, so exactly one daemon wins each). Only the owner hands a sandbox out: two
 * daemons never give one idle sandbox to two callers. docs/placement.md has the whole design.
 *
 * Thread-safe (each call is one etcd request). */
#ifndef BRUME_PLACEMENT_SANDBOX_STORE_H
#define BRUME_PLACEMENT_SANDBOX_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "etcd.h"

typedef struct brume_sandbox_record {
  char *id;
  char *owner;    /* the placement daemon's id */
  char *host_id;  /* the worker's */
  char *function; /* the table's key: "account/function/version/revision" */
  uint32_t memory_mib;
  uint32_t vcpu_milli;
  bool provisioned;
  int64_t created_unix_ms;
  int64_t mod_revision; /* from etcd; 0 for a record not read from it */
} brume_sandbox_record;

/* "<prefix>/placement/sandboxes/" (caller frees). */
char *brume_sandbox_store_dir(const char *prefix);

/* Writes r (its id names the key). */
int brume_sandbox_store_put(brume_etcd *e, const char *prefix, const brume_sandbox_record *r,
                            brume_err **err);

/* Deletes the record of id; with mod_revision > 0 only if it is still the one read then (so that
 * a record another daemon adopted meanwhile stays). */
int brume_sandbox_store_delete(brume_etcd *e, const char *prefix, const char *id,
                               int64_t mod_revision, brume_err **err);

/* Makes owner the owner of r if r's key is unchanged since it was read (r->mod_revision).
 * 0 with *adopted telling whether it won, or -1 with err. */
int brume_sandbox_store_adopt(brume_etcd *e, const char *prefix, const brume_sandbox_record *r,
                              const char *owner, bool *adopted, brume_err **err);

/* Every record, in key order (*n of them; the caller frees with brume_sandbox_records_free).
 * A value that cannot be read is logged and skipped. NULL with err when etcd fails (an empty
 * store gives a non-NULL array and *n = 0). */
brume_sandbox_record *brume_sandbox_store_list(brume_etcd *e, const char *prefix, size_t *n,
                                               brume_err **err);
void brume_sandbox_records_free(brume_sandbox_record *v, size_t n);

/* The record's JSON value (caller frees), and back: INVALID_ARGUMENT when json is not such a
 * record. id is set by the caller from the key. Exposed for the unit test. */
char *brume_sandbox_record_json(const brume_sandbox_record *r);
int brume_sandbox_record_parse(const char *json, brume_sandbox_record *r, brume_err **err);

#endif
