/* Holdings: one concurrency limit in etcd, shared by every counting daemon in blocks (DESIGN.md
 * "Counting without making etcd the bottleneck").
 *
 * Each daemon records its block of a limit as one key, `<prefix><daemon_id>`, whose value is the
 * block's size in decimal ("12"), attached to the daemon's etcd lease: a daemon that dies loses
 * its blocks when its lease expires, and they return to the others by themselves. The caller
 * chooses the prefix ("/brume/count/acct1/fn1/"); every key under it is a block, and holdings
 * knows nothing of accounts or functions.
 *
 * The invariant: the blocks under a prefix never sum past the limit, whatever the daemons do at
 * once. A block only grows through a txn guarded by the whole prefix: read the prefix at revision
 * R, sum it, and write the larger block only if no key under the prefix was written after R
 * (MOD(prefix) < R+1). A key deleted after R (a block given up, a lease expired) does not fail the
 * guard, and need not: it only lowers the sum. Shrinking needs no guard at all.
 *
 * A block that cannot grow is an answer, not an error: the limit may be full, or lowered below
 * what the daemons hold (they keep their blocks; they are only refused more until enough of them
 * shrink). The limit is the caller's and is not stored: daemons that disagree on it each keep the
 * sum within their own figure when they grow.
 *
 * Arguments, checked where they are taken (INVALID_ARGUMENT otherwise): prefix is non-empty and
 * ends with '/', so that "/fn1/" never reads "/fn10/"'s blocks; daemon_id is non-empty and holds no
 * '/'. lease is the daemon's etcd lease; 0 attaches the key to no lease, so that nothing returns
 * the block if the daemon dies (for tools and tests only). A lease that expired fails a write with
 * NOT_FOUND: its blocks are gone already, and the daemon must grant a new lease and start from 0.
 *
 * A value under the prefix that is not a block size (decimal digits, at most 2^32 - 1) makes
 * grow and sum fail with INTERNAL naming the key: nothing can grow under a prefix whose sum is
 * unknown. Shrinking still works.
 *
 * Errors from the etcd client pass through, with the prefix or key in front (UNAVAILABLE when no
 * endpoint answers, DEADLINE_EXCEEDED on a timeout).
 *
 * No state and no threads: each function is one or a few etcd calls, and may be called from any
 * thread. Calls for the same prefix and daemon_id must not overlap: the daemon serialises them
 * (and decides when to grow and shrink). */
#ifndef BRUME_COUNTING_HOLDINGS_H
#define BRUME_COUNTING_HOLDINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "etcd.h"

/* A random pause of 1 to min(2^attempt, 16) ms after the attempt-th lost compare (from 1), so
 * that daemons that collided do not collide again in step (a round trip takes about a
 * millisecond). Every compare-and-swap loop of counting's on etcd uses it. */
void brume_holdings_backoff(int attempt);

/* How many times grow reads the prefix and tries its txn before giving up with ABORTED. */
#define BRUME_HOLDINGS_GROW_ATTEMPTS 8

/* Grows this daemon's block under prefix towards want, the whole block wanted (not a delta), as
 * far as limit allows: to min(want, limit - the other daemons' blocks), if that is more than the
 * block held now. Returns 0 and sets *held to the block held afterwards (as etcd has it, which
 * the caller should believe over its own figure) and *cluster_held to the sum of every block
 * under the prefix, this one included (either pointer may be NULL).
 *
 * Not growing is no error: when want is at most the block held (use brume_holdings_shrink() to
 * lower it), or when the other blocks leave no more room, *held is the block held now, unchanged.
 * A lowered limit never takes a block away.
 *
 * etcd round trips: one range read of the prefix; then, if the block grows, one txn. When another
 * daemon wrote under the prefix in between (the txn's guard fails), it reads and tries again
 * after a short random pause (1 to min(2^attempt, 16) ms), up to BRUME_HOLDINGS_GROW_ATTEMPTS times
 * in all, and then fails with ABORTED ("the holdings under <prefix> kept changing"): nothing was
 * written.
 *
 * On an error, nothing is stored in *held and *cluster_held. If the error says that the txn's
 * outcome is unknown (the connection broke after it was sent), the block may have grown: the
 * caller should keep using the block it had, which is safe, and the next grow reads the truth. */
int brume_holdings_grow(brume_etcd *e, const char *prefix, const char *daemon_id, int64_t lease,
                        uint32_t limit, uint32_t want, uint32_t *held, uint64_t *cluster_held,
                        brume_err **err);

/* Lowers this daemon's block under prefix to keep: writes keep under lease, or deletes the key
 * when keep is 0. keep must be at most the block held (a shrink is not checked against the
 * limit, which is why it needs no guard); to raise a block use brume_holdings_grow(). Deleting a
 * key that is not there is no error.
 *
 * etcd round trips: one put or one delete. */
int brume_holdings_shrink(brume_etcd *e, const char *prefix, const char *daemon_id, int64_t lease,
                          uint32_t keep, brume_err **err);

/* The sum of every block under prefix, in *sum, and the store revision it was read at, in
 * *revision (may be NULL). 0 when there is none.
 *
 * etcd round trips: one range read of the prefix. */
int brume_holdings_sum(brume_etcd *e, const char *prefix, uint64_t *sum, int64_t *revision,
                       brume_err **err);

/* Reads a block's value (len bytes at s, as etcd holds it): true and *out for decimal digits
 * of at most 2^32 - 1, false for anything else. For readers of many prefixes at once (the
 * daemon's /metrics reads every block under <root>count/ with one range read). */
bool brume_holdings_parse_block(const char *s, size_t len, uint32_t *out);

#endif
