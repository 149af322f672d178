/* Bucket share: a scaling bucket (counting/bucket.h) kept in etcd, shared by every counting
 * daemon (DESIGN.md: "the bucket's state lives in etcd the same way").
 *
 * The bucket is one key, written by brume_bucket_to_json(). Daemons take tokens out of it a few
 * at a time, with a read and a compare-and-swap txn guarded by the key's mod revision, and grant
 * from the tokens taken; a daemon that dies loses at most the few it held, which only makes the
 * cluster start fewer environments, never more. A key that does not exist is a full bucket (the
 * burst), created by the first take.
 *
 * Time is the wall clock (ms since the epoch), read by each daemon: the refill is shared, so the
 * daemons' clocks must agree (NTP); a daemon whose clock runs behind adds nothing, thanks to the
 * bucket's rule that time is only counted once.
 *
 * Parameters come from the caller (the cluster's limits, counting/limits_store.h). When they
 * differ from those stored, a take applies them first (brume_bucket_set_params()), so a changed
 * configuration reaches the bucket with the next take.
 *
 * A value that is not a bucket is replaced by a full bucket, with a warning: the alternative,
 * refusing every cold start of the account, is worse. */
#ifndef BRUME_COUNTING_BUCKET_SHARE_H
#define BRUME_COUNTING_BUCKET_SHARE_H
#include <stdint.h>

#include "bucket.h"
#include "err.h"
#include "etcd.h"

/* Takes up to want (>= 1) tokens from the bucket at key, refilled up to now_ms: 0, *got set to
 * how many; when fewer than want, the bucket is empty now and *retry_after_ms is set to the real
 * ms until it has a token again. One read,
 * and a txn when anything changes; on a lost compare it reads and tries again, up to
 * BRUME_HOLDINGS_GROW_ATTEMPTS times, then fails with ABORTED. etcd's errors pass through. */
int brume_bucket_share_take(brume_etcd *e, const char *key, const brume_bucket_params *p,
                            int64_t now_ms, uint32_t want, uint32_t *got, int64_t *retry_after_ms,
                            brume_err **err);

/* Gives n tokens taken and not used back (never above the capacity). */
int brume_bucket_share_give_back(brume_etcd *e, const char *key, const brume_bucket_params *p,
                                 int64_t now_ms, uint32_t n, brume_err **err);

/* The bucket's state at now_ms, read only (a missing key: full). */
int brume_bucket_share_state(brume_etcd *e, const char *key, const brume_bucket_params *p,
                             int64_t now_ms, brume_bucket_state *out, brume_err **err);

/* The same from a value read elsewhere: kv is the bucket's key-value (NULL: the key is absent,
 * a full bucket), key names it in the warning about a malformed value. No etcd call; for readers
 * of many buckets with one range read (the daemon's /metrics). -1 only when p is invalid. */
int brume_bucket_share_state_of(const char *key, const brume_etcd_kv *kv,
                                const brume_bucket_params *p, int64_t now_ms,
                                brume_bucket_state *out, brume_err **err);
#endif
