/* The idle freezer: suspends (virDomainSuspend) every sandbox that has been IDLE and running for
 * freeze_after milliseconds, so a sandbox that is invoked again soon pays neither the suspend nor
 * the resume (3-4 ms together here) and one that stays idle gives its vCPUs back.
 *
 * With freeze_after > 0 one thread scans the table every tick (a quarter of freeze_after, 20 ms
 * to 1 s), so a sandbox is frozen between freeze_after and freeze_after plus one tick after it
 * went idle. With freeze_after 0 (Lambda's way: freeze at once) Invoke freezes after it has
 * answered, and the freezer runs with uninvoked_only for the sandboxes no Invoke has frozen yet:
 * those created and never invoked (a provisioned one, a cold start whose caller went away), which
 * would otherwise run idle for ever at a few percent of a core each. A freeze goes through the
 * state machine (FREEZE, then brume_sandboxes_sync_frozen), so a sandbox that an Invoke took in the
 * meantime is left alone. */
#ifndef BRUME_WORKER_FREEZER_H
#define BRUME_WORKER_FREEZER_H

#include <stdbool.h>
#include <stdint.h>

#include "metrics.h"
#include "sandboxes.h"

typedef struct brume_freezer brume_freezer;

/* Starts the thread (freeze_after_ms > 0; the table must outlive the freezer). uninvoked_only:
 * only sandboxes never invoked are frozen. metrics (may be NULL) gets the counter
 * brume_worker_idle_freezes_total. */
brume_freezer *brume_freezer_start(brume_sandboxes *table, int64_t freeze_after_ms,
                                   bool uninvoked_only, brume_metrics *metrics);

/* Stops and joins the thread. NULL is fine. */
void brume_freezer_stop(brume_freezer *f);

#endif
