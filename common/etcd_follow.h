/* A local copy of what etcd holds under a key prefix, kept current: the one way the daemons
 * follow a part of etcd (API keys, function documents, limits, worker registrations).
 *
 * brume_etcd_follow_start() reads every key under the prefix and hands them to ops->load, then
 * watches from the revision after that read and hands each change to ops->apply, in revision
 * order. When the watch reports a gap (etcd compacted revisions it had not delivered, after a
 * long disconnection), the follower reads everything again and calls ops->load once more (again
 * true): the events that follow start before that read and, applied in order on top of it, end
 * where it is. A read that fails then is retried (after 0.1 s, doubling to 5 s) until it succeeds
 * or the follower stops: the copy is never left stale for good.
 *
 * ops->synced (may be NULL), after each load and each batch of events, gives the revision the
 * copy now reflects (after a gap it may go back: keep the highest). The callbacks run one at a
 * time: on the caller's thread in start and resync, on the watch's thread otherwise; they must
 * not call brume_etcd_follow_stop(). */
#ifndef BRUME_ETCD_FOLLOW_H
#define BRUME_ETCD_FOLLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "etcd.h"

typedef struct brume_etcd_follow_ops {
  const char *what; /* what is followed, for logs and errors: "the API keys" (kept, not copied) */
  /* Replaces the whole copy with these keys (sorted by key). */
  void (*load)(void *user, const brume_etcd_kv *kvs, size_t n, bool again);
  /* One change; a DELETE event has an empty value. */
  void (*apply)(void *user, const brume_etcd_event *event);
  void (*synced)(void *user, int64_t revision);
} brume_etcd_follow_ops;

typedef struct brume_etcd_follow brume_etcd_follow;

/* Loads, then follows. e must outlive the follower. NULL on error (etcd cannot be read, or the
 * watch cannot start): "read <what> under <prefix>: ...". */
brume_etcd_follow *brume_etcd_follow_start(brume_etcd *e, const char *prefix,
                                           const brume_etcd_follow_ops *ops, void *user,
                                           brume_err **err);

/* Reads everything again now and loads it, as after a watch gap (retrying the same way). */
void brume_etcd_follow_resync(brume_etcd_follow *f);

/* Stops the watch (a running callback or retry finishes first) and frees f. NULL is fine. */
void brume_etcd_follow_stop(brume_etcd_follow *f);

#endif
