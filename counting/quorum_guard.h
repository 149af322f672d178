/* Static stability: whether this counting daemon may go on granting from the blocks it holds
 * while its etcd lease cannot be renewed because etcd has lost its quorum.
 *
 * Why it is safe. A block is room in a limit that this daemon recorded in etcd under its lease
 * (docs/counting.md). Two things could give that room to another daemon: the lease expiring, or
 * another daemon's block growing. Without a leader etcd does neither: leases expire only on the
 * leader, and a new leader extends every lease by its full TTL before any can expire; a block
 * grows only through a txn, which needs the quorum. So while etcd has no leader, and the lease
 * was alive when it lost it, every daemon can keep granting within its own block and the sum
 * still never passes a limit. Warm invocations then keep working with two of three etcd members
 * down; what needs etcd (a block to grow, a cold start and its scaling token) fails UNAVAILABLE.
 *
 * How it is told apart from this daemon being cut off from etcd (when the lease does expire and
 * the others do take the room): when a renewal is overdue (older than a third of the TTL plus a
 * second), a thread asks every etcd endpoint for its status every probe_ms. The guard holds
 * ("etcd has no quorum") only when some endpoint answers, none names a leader, and the lease was
 * still alive (renewed within its TTL) when that was first seen; it lets go as soon as no
 * endpoint answers (this daemon may be the one cut off) or, half a TTL after one names a leader
 * again (the new leader extended the lease by a whole TTL at its election), when the renewal it
 * asks for at once has not come through.
 *
 * The one case it cannot tell apart: a partition that leaves this daemon with a minority of
 * etcd members while a majority elsewhere elects a leader. Then the majority expires this
 * daemon's lease and a limit can be passed by at most this daemon's blocks until the partition
 * heals. `static_stability = false` in the daemon's configuration turns the guard off for those
 * who prefer refusing everything during an etcd outage. */
#ifndef BRUME_COUNTING_QUORUM_GUARD_H
#define BRUME_COUNTING_QUORUM_GUARD_H

#include <stdbool.h>

#include "etcd.h"
#include "metrics.h"
#include "registration.h"

typedef struct brume_quorum_guard brume_quorum_guard;

typedef struct brume_quorum_guard_opts {
  brume_registration *reg; /* the daemon's registration: its lease holds the blocks */
  brume_etcd *etcd;
  int ttl_ms;             /* the lease's TTL */
  int probe_ms;           /* how often to ask the endpoints while a renewal is overdue; 0 = 250 */
  brume_metrics *metrics; /* brume_counting_etcd_quorum_lost (gauge); may be NULL */
} brume_quorum_guard_opts;

/* Starts the probing thread. */
brume_quorum_guard *brume_quorum_guard_start(const brume_quorum_guard_opts *opts);
/* True while etcd has lost its quorum and this daemon's lease is known to outlive it. */
bool brume_quorum_guard_holding(brume_quorum_guard *g);
/* Stops the thread and frees g. NULL is fine. */
void brume_quorum_guard_stop(brume_quorum_guard *g);

#endif
