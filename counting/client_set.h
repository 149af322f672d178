/* A caller's handle on every counting daemon of the cluster (the frontend's): one
 * brume_counting_client per daemon registered in etcd, and Acquire and Release that fail over
 * between them (docs/counting.md, "Failover between daemons").
 *
 * Which daemons. The set follows `<prefix>/svc/counting/<daemon_id>` (value {"addr"}) with
 * common/etcd_follow: a daemon that registers joins the set, one whose registration goes (its
 * lease expired: it died or lost etcd) leaves it. The preferred address (the frontend's
 * counting_addr) is used only while a daemon registered under that address is in the set.
 *
 * Which one first. A request goes first to the preferred daemon, else to the daemon ranked first
 * for this caller by a hash of (caller_id, daemon_id) (rendezvous hashing): every caller has a
 * fixed order of its own, so two frontends need not pile onto one daemon, and a daemon joining
 * or leaving moves only the callers that rank it first. A daemon that failed is "suspect" for
 * suspect_ms: it is tried after every other one until then. So requests return to the preferred
 * daemon once it answers again.
 *
 * Acquire. When the answer is an error with code UNAVAILABLE (the daemon is dead or unreachable,
 * or refuses because its etcd lease is not alive), or DEADLINE_EXCEEDED of the batch call itself
 * (a daemon that does not answer), the request goes to the next daemon; each daemon is tried at
 * most once per request. When every one failed, the answer is the last error, its message naming
 * each daemon tried. A throttle (a response with granted false) is an answer and is never sent
 * elsewhere: the limit is the cluster's, and asking again elsewhere would only cost a second
 * throttle. An Acquire with upgrade_token goes to the daemon that issued the token (its id
 * starts the token: "<daemon_id>.<hex>", counting/tokens.h) and nowhere else.
 *
 * Release goes to the daemon that issued the token. When that daemon is not in the set any more,
 * it is answered at once, on the calling thread and without a network call, with UNAVAILABLE:
 * the daemon's tokens went back to the pools with its lease.
 *
 * Callbacks, thread safety and free are as client.h says: every function may be called from any
 * thread; callbacks run on the rpc completion thread (or on the calling thread when a request is
 * answered at once), must not block, and may call Acquire or Release again; _free must not run
 * while another thread is in _acquire or _release, nor from a callback.
 *
 * The client of a daemon that left is freed once no request is under way on it, by the thread
 * that follows etcd at its next change, or by _free: never from a callback. */
#ifndef BRUME_COUNTING_CLIENT_SET_H
#define BRUME_COUNTING_CLIENT_SET_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "err.h"
#include "etcd.h"
#include "metrics.h"

typedef struct brume_counting_set brume_counting_set;

typedef struct brume_counting_set_opts {
  brume_etcd *etcd;      /* followed for the registrations; must outlive the set */
  const char *prefix;    /* Brume's etcd prefix ("/brume") */
  const char *preferred; /* the daemon's address to try first ("127.0.0.1:7010"); may be NULL */
  const char *caller_id; /* "frontend/fe-1": ranks the daemons for this caller */
  /* Each daemon's client (TLS, rpc loop, deadline, batches): copied as is, so what it points to
   * (the TLS files' names, the loop) must outlive the set. */
  brume_counting_client_opts client;
  int64_t suspect_ms; /* how long a daemon that failed is tried last; 0 = 2000 */
  /* Where <metrics_prefix>_counting_failovers_total (counter) and
   * <metrics_prefix>_counting_daemons (gauge) go; NULL: nowhere. */
  brume_metrics *metrics;
  const char *metrics_prefix; /* "brume_frontend"; NULL: "brume" */
} brume_counting_set_opts;

/* Reads the registrations under <prefix>/svc/counting/ and follows them. An empty set is not an
 * error: requests are then answered UNAVAILABLE ("no counting daemon is registered") until a
 * daemon registers. NULL with err when etcd cannot be read or followed. Strings in opts are
 * copied. */
brume_counting_set *brume_counting_set_new(const brume_counting_set_opts *opts, brume_err **err);

/* As brume_counting_client_acquire and _release (client.h), with the failover and the routing
 * above. req is copied; done(user, ...) answers it exactly once. */
void brume_counting_set_acquire(brume_counting_set *s, const Brume__AcquireRequest *req,
                                brume_counting_acquire_done done, void *user);
void brume_counting_set_release(brume_counting_set *s, const Brume__ReleaseRequest *req,
                                brume_counting_release_done done, void *user);

/* Whether the daemon that issued token still stands behind it: it is registered, and has not
 * failed since it last answered. A dead daemon's tokens are counted nowhere once its lease
 * expires (the others grow into the room), so an invocation that got its token from a daemon
 * that died since, still in its cold start, asks for another before it runs (frontend/invoke.c). */
bool brume_counting_set_token_trusted(brume_counting_set *s, const char *token);

/* For metrics, logs and tests. */
typedef struct brume_counting_set_stats {
  uint64_t failovers; /* requests sent on to another daemon after one failed (each hop counts) */
  size_t daemons;     /* daemons in the set (registered now) */
  size_t suspect;     /* of which suspect now */
} brume_counting_set_stats;
void brume_counting_set_stats_get(brume_counting_set *s, brume_counting_set_stats *out);

/* The address of the daemon a request would go to first now (caller frees), or NULL when the
 * set is empty. */
char *brume_counting_set_current(brume_counting_set *s);

/* Stops following etcd, then frees every daemon's client: requests still queued or under way
 * are answered CANCELLED (client.h) before this returns. Not from a callback. NULL is fine. */
void brume_counting_set_free(brume_counting_set *s);

#endif
