/* The idle freezer: suspends (virDomainSuspend) every sandbox that has been IDLE and running for
 * freeze_after milliseconds, so a sandbox that is invoked again soon pays neither the suspend nor
 * the resume (3-4 ms together here) and one that stays idle gives its vCPUs back.
 *
 * freeze_after 0 (Lambda's way: freeze at once) needs no freezer: Invoke freezes after it has
 * answered. With freeze_after > 0 one thread scans the table every tick (a quarter of
 * freeze_after, 20 ms to 1 s), so a sandbox is frozen between freeze_after and freeze_after plus
 * one tick after it went idle. A freeze goes through the state machine (FREEZE, then
 * brume_sandboxes_sync_frozen), so a sandbox that an Invoke took in the meantime is left alone. */
#ifndef BRUME_WORKER_FREEZER_H
#define BRUME_WORKER_FREEZER_H

#include <stdint.h>

#include "metrics.h"
#include "sandboxes.h"

typedef struct brume_freezer brume_freezer;

/* Starts the thread (freeze_after_ms > 0; the table must outlive the freezer). metrics (may be
 * NULL) gets the counter brume_worker_idle_freezes_total. */
brume_freezer *brume_freezer_start(brume_sandboxes *table, int64_t freeze_after_ms,
                                   brume_metrics *metrics);

/* Stops and joins the thread. NULL is fine. */
void brume_freezer_stop(brume_freezer *f);

#endif
