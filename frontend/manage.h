/* The function-management calls of the Frontend service (frontend.proto): functions, versions,
 * aliases, reserved and provisioned concurrency. Each is served on a work-queue thread (they
 * block on etcd) after service.c authenticated the caller, checked its scope and worked out the
 * account the call acts for.
 *
 * Storage: function documents through the catalog (catalog.h, function_doc.h), code through the
 * code store (code_store.h), reserved and provisioned concurrency in counting's limits keys
 * (<prefix>/limits/function/<account>/<name>, counting/limits_store.h), provisioned sandboxes
 * through placement's PutProvisionedConcurrency. Every write is a compare-and-swap, so two
 * frontends (or two clients) never lose each other's changes, and a failed request leaves
 * nothing half-created. */
#ifndef BRUME_FRONTEND_MANAGE_H
#define BRUME_FRONTEND_MANAGE_H

#include <protobuf-c/protobuf-c.h>

#include "api_key.h"
#include "catalog.h"
#include "code_store.h"
#include "etcd.h"
#include "rpc.h"

typedef struct brume_manage brume_manage;

typedef struct brume_manage_opts {
  brume_etcd *etcd;
  const char *prefix;
  const char *region;
  brume_catalog *catalog;
  brume_code_store *code;
  const brume_env_key *env_key;
  /* For provisioned concurrency (Placement.PutProvisionedConcurrency); NULL: refused with
   * UNAVAILABLE. */
  brume_rpc_client *placement;
  const char *caller_id; /* "frontend/<id>" */
} brume_manage_opts;

brume_manage *brume_manage_new(const brume_manage_opts *opts);
void brume_manage_free(brume_manage *m);

/* Serves call, a management method of brume__frontend__descriptor (method is its index), whose
 * decoded request is req, for account_id (the caller's account, or the one its ARN named when
 * the caller is admin). Blocks (etcd); answers the call exactly once (brume_rpc_call_reply, or
 * brume_frontend_fail with a reason-led message). Returns the status code it answered with
 * (BRUME_OK for a reply), which the caller writes to the audit log. */
brume_status brume_manage_serve(brume_manage *m, brume_rpc_call *call, unsigned method,
                                const ProtobufCMessage *req, const char *account_id,
                                const brume_principal *who);

#endif
