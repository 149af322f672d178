/* Code replication between frontends: every frontend keeps a copy of every function's code, so
 * that a worker can fetch an archive from whichever frontend resolved the invocation, and one
 * frontend going down loses no code (docs/frontend.md, "Code across frontends").
 *
 * A thread looks, every period, at the code digests the catalog needs (every $LATEST and
 * published version of every function). For each one missing from the local store it asks the
 * other frontends registered in etcd (<prefix>/svc/frontend/<id>, their "http_addr") for
 * GET /code/<sha256>, checks that the bytes hash to that digest and stores them
 * (frontend/code_store.h checks the archive as an upload). A peer that is down, or answers
 * something else, is skipped; the next peer, or the next pass, tries again.
 *
 * Metrics: brume_frontend_code_replicated_total{result="ok"|"failed"}, and
 * brume_frontend_code_missing (digests the catalog needs that the store lacks after a pass).
 *
 * Thread safety: brume_code_replica_sync() may run beside the thread (one pass at a time). */
#ifndef BRUME_FRONTEND_CODE_REPLICA_H
#define BRUME_FRONTEND_CODE_REPLICA_H

#include <jansson.h>
#include <stdint.h>

#include "code_store.h"
#include "err.h"
#include "etcd.h"
#include "metrics.h"

typedef struct brume_code_replica brume_code_replica;

/* The digests the catalog needs: a new JSON array of strings (the catalog's
 * brume_catalog_code_digests). */
typedef json_t *(*brume_code_needs_fn)(void *user);

typedef struct brume_code_replica_opts {
  brume_etcd *etcd;
  const char *prefix;  /* Brume's etcd prefix: peers are under <prefix>/svc/frontend/ */
  const char *self_id; /* this frontend's daemon id: never asked */
  brume_code_store *store;
  brume_code_needs_fn needs;
  void *needs_user;
  int64_t period_ms;        /* between passes; 0: no thread (tests call sync) */
  int64_t fetch_timeout_ms; /* one archive's download */
  brume_metrics *metrics;   /* may be NULL */
} brume_code_replica_opts;

brume_code_replica *brume_code_replica_new(const brume_code_replica_opts *opts);
/* Stops the thread (after a pass under way) and frees r. NULL is fine. */
void brume_code_replica_free(brume_code_replica *r);

/* One pass: fetches every needed digest the store lacks. Returns how many are still missing
 * afterwards (0: the store holds everything), or -1 with *err when etcd could not list the
 * peers. */
int brume_code_replica_sync(brume_code_replica *r, brume_err **err);

#endif
