/* The placer: placement's engine. It owns the hosts (host_watch), the table of sandboxes, their
 * records in etcd (sandbox_store) and the calls to the workers, and runs three loops:
 *
 *   - AcquireSandbox: the most recently used idle sandbox of the exact function version (its
 *     provisioned ones first), taken under one mutex with no etcd or worker call: the hot path.
 *     Otherwise a cold start: a host chosen and reserved (hosts.h), the worker's CreateSandbox
 *     called asynchronously, the new sandbox recorded in etcd (on the work queue), then handed out.
 *   - ReleaseSandbox: idle again (first in its list), or out of the table and destroyed on its
 *     worker (outcome FUNCTION_FAILED or BROKEN) with its record deleted, on the work queue.
 *   - the reaper (a ticker): idle sandboxes past the keep-warm time and held ones past their
 *     deadline leave the table, then are destroyed.
 *   - reconcile (a ticker, and once at start): compares the table and the records in etcd with
 *     every worker's List. Sandboxes of this daemon that a worker still has are kept (a restarted
 *     daemon gets its healthy sandboxes back); those a worker lost are forgotten; those of a
 *     daemon that is no longer registered are adopted; those nobody owns are destroyed once idle
 *     for the keep-warm time; provisioned concurrency is kept (created, re-created, trimmed).
 *
 * A host whose registration goes takes its sandboxes with it (their records are deleted): no new
 * work goes there. Lock order: the hosts' lock before the table's mutex. */
#ifndef BRUME_PLACEMENT_PLACER_H
#define BRUME_PLACEMENT_PLACER_H

#include <stdbool.h>
#include <stdint.h>

#include "brume/placement.pb-c.h"
#include "err.h"
#include "etcd.h"
#include "metrics.h"
#include "rpc.h"
#include "workq.h"

typedef struct brume_placer brume_placer;

typedef struct brume_placer_opts {
  brume_etcd *etcd;
  const char *prefix;    /* "/brume" */
  const char *daemon_id; /* this placement daemon's id: the owner in sandbox records */
  brume_tls_config worker_tls;
  brume_workq *wq; /* etcd writes and worker Destroy calls */
  brume_metrics *metrics;
  uint32_t cpu_overcommit;
  int64_t keep_warm_ms;      /* an idle on-demand sandbox is destroyed after this */
  int64_t hold_margin_ms;    /* a held sandbox is taken back after its timeout plus this */
  int64_t reconcile_ms;      /* between two reconciles */
  int64_t create_timeout_ms; /* CreateSandbox's deadline when the caller set none */
} brume_placer_opts;

/* Starts following the hosts, reconciles once (so that a restarted daemon has its sandboxes back
 * before it serves), then starts the reaper and the reconcile loop. NULL and err when etcd does
 * not answer. */
brume_placer *brume_placer_new(const brume_placer_opts *opts, brume_err **err);

/* Stops the loops and refuses new work; cold starts under way are answered (CANCELLED or
 * UNAVAILABLE). Call before stopping the work queue. */
void brume_placer_stop(brume_placer *p);
/* After the work queue has stopped: frees everything. NULL is fine. */
void brume_placer_free(brume_placer *p);

/* The table's key of a function version: "account/function/version/revision". INVALID_ARGUMENT
 * when a part is missing (the revision may be empty) or holds a '/'. Caller frees. */
char *brume_placer_function_key(const Brume__FunctionVersionRef *f, brume_err **err);

/* What AcquireSandbox answers; strings valid during the callback only. */
typedef struct brume_placer_acquired {
  const char *worker_address, *host_id, *sandbox_id;
  bool cold, pool_hit, no_idle_sandbox;
  uint64_t init_duration_us;
  const Brume__FunctionError *init_error; /* the cold start's function failed to initialise */
  int64_t lease_deadline_unix_ms;
} brume_placer_acquired;

/* a or err is set. Called on the acquiring thread (warm), or later on another. */
typedef void (*brume_placer_done)(void *user, const brume_placer_acquired *a, const brume_err *err);
/* True when the caller has gone (its answer would be dropped): a sandbox started for it is then
 * kept idle instead of held. */
typedef bool (*brume_placer_gone)(void *user);

/* Acquires a sandbox for req (validated by the caller; it must stay valid until done runs).
 * deadline_ms: how long a cold start may take (<= 0: create_timeout_ms). request_id may be NULL;
 * it is sent to the worker and logged. */
void brume_placer_acquire(brume_placer *p, const Brume__AcquireSandboxRequest *req,
                          int64_t deadline_ms, const char *request_id, brume_placer_done done,
                          brume_placer_gone gone, void *user);

/* Takes sandbox id back from caller. reusable: idle again (*state IDLE); otherwise destroyed
 * (*state TERMINATING). NOT_FOUND or FAILED_PRECONDITION as brume_table_give_back says. */
int brume_placer_release(brume_placer *p, const char *id, const char *caller, bool reusable,
                         Brume__SandboxState *state, brume_err **err);

/* The hosts, ordered by id (only host_id if not NULL). The caller frees with
 * brume_placer_hosts_free. */
Brume__HostInfo **brume_placer_hosts(brume_placer *p, const char *host_id, size_t *n);
void brume_placer_hosts_free(Brume__HostInfo **v, size_t n);

/* The sandboxes matching req's filters, ordered by host then id; freed with
 * brume_placer_sandboxes_free. */
Brume__SandboxInfo **brume_placer_sandboxes(brume_placer *p, const Brume__ListSandboxesRequest *req,
                                            size_t *n);
void brume_placer_sandboxes_free(Brume__SandboxInfo **v, size_t n);

/* Stores a version's provisioned concurrency in etcd (count 0 deletes it) and reconciles soon. */
int brume_placer_put_provisioned(brume_placer *p,
                                 const Brume__PutProvisionedConcurrencyRequest *req,
                                 brume_err **err);

/* Runs one reconcile now (tests; the loop runs it every reconcile_ms). */
void brume_placer_reconcile(brume_placer *p);

#endif
