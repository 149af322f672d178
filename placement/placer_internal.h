/* The placer's insides, shared by its two files: placer.c (acquire, release, the reaper, hosts
 * that go, the queries) and reconcile.c (the workers' List against the table and the records,
 * adoption, orphans, provisioned concurrency). Not for other modules: placer.h is the API. */
#ifndef BRUME_PLACEMENT_PLACER_INTERNAL_H
#define BRUME_PLACEMENT_PLACER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "host_watch.h"
#include "placer.h"
#include "table.h"
#include "ticker.h"

/* The Worker service's methods, in worker.proto's order. */
enum { W_CREATE = 0, W_DESTROY = 4, W_LIST = 5 };

/* The caller of a sandbox found INVOKING on a worker at a reconcile (its real caller is not
 * known: the daemon restarted, or adopted it): any caller may release it. */
#define CALLER_UNKNOWN "placement/unknown-caller"

/* A held sandbox's longest life without a timeout in its spec: Lambda's largest timeout. */
#define TIMEOUT_MAX_MS 900000

/* Deadline of the calls to workers that are not cold starts (Destroy, List). */
#define WORKER_CALL_MS 10000

/* Room for a sandbox or host id, or an address, copied out of a lock. */
#define ID_MAX 256

struct brume_placer {
  brume_placer_opts o;
  char *prefix, *daemon_id, *caller_id; /* caller_id: "placement/<daemon_id>", to workers */
  brume_host_watch *hosts;
  brume_rpc_pool *workers;
  pthread_mutex_t mu; /* the table and leaving; after the hosts' lock when both are held */
  brume_table *table;
  /* Ids out of the table whose destruction is queued or under way: a reconcile must not take
   * them back (their record and VM still exist for a moment). */
  char **leaving;
  size_t n_leaving;
  pthread_mutex_t reconcile_mu; /* one reconcile at a time */
  brume_ticker *reaper, *reconciler;
  atomic_bool stopping;
  brume_counter *acquires;  /* {result} */
  brume_counter *releases;  /* {result}: idle, destroyed */
  brume_counter *destroyed; /* {reason} */
  brume_counter *cold_retries;
  brume_histogram *cold_seconds;
  brume_gauge *sandboxes; /* {state}: idle, held */
};

/* What a new sandbox is: recorded in etcd, then added to the table (held for caller, or idle). */
typedef struct placer_new_sandbox {
  const char *id, *host_id, *function;
  uint32_t memory_mib, vcpu_milli;
  bool provisioned;
  const char *caller; /* NULL: idle */
  int64_t held_until_ms;
} placer_new_sandbox;

/* The vCPU share of r: as given, or the one its memory buys. */
uint32_t placer_vcpu_milli(const Brume__ResourceSpec *r);
/* Copies host_id's address into addr; false when the host is not registered (any more). */
bool placer_host_addr(brume_placer *p, const char *host_id, char addr[ID_MAX]);
/* Logs what at warn with fields (a format of two strings, a and b) and err's message. */
void placer_log_err(const char *what, const char *fields, const char *a, const char *b,
                    const brume_err *err);
/* Destroys sandbox id on host_id now (blocking) and deletes its record (guarded by mod_revision
 * when > 0). */
void placer_destroy_now(brume_placer *p, const char *host_id, const char *id, int64_t mod_revision);
/* Takes the sandboxes of ids (NULL-terminated) out of the table and destroys them on the work
 * queue, counted under reason. */
void placer_remove_and_destroy(brume_placer *p, char **ids, const char *reason);
/* Whether id's destruction is queued or under way (p->mu held). */
bool placer_leaving_has(const brume_placer *p, const char *id);
/* Adds s to the table, then records it in etcd; on failure destroys it (UNAVAILABLE). */
int placer_record_and_add(brume_placer *p, const placer_new_sandbox *s, brume_err **err);
/* A host for a new sandbox of function, its room reserved: host_id and addr filled, the
 * reservation returned (0 and err when no host has room). avoid (may be NULL): a host chosen only
 * if no other fits. */
uint64_t placer_pick_host(brume_placer *p, const char *function, uint32_t memory_mib,
                          uint32_t vcpu_milli, const char *avoid, char host_id[ID_MAX],
                          char addr[ID_MAX], brume_err **err);
/* The cold start of reservation r ended; created: the worker made a sandbox. */
void placer_end_reservation(brume_placer *p, const char *host_id, uint64_t r, bool created);
/* A worker's error werr, its reason first, with the host named. */
void placer_worker_error(brume_err **err, const brume_err *werr, const char *host_id);
/* Sets brume_placement_sandboxes{state} from the table. */
void placer_update_gauges(brume_placer *p);

#endif
