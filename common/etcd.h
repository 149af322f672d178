/* etcd v3 client over etcd's JSON gateway (HTTP/1.1 + JSON, libcurl + jansson).
 *
 * Why the gateway and not gRPC: it needs nothing but libcurl, and etcd 3.4 serves it on the same
 * client port. Its quirks are handled here so callers never see them: keys and values travel as
 * base64, int64 fields as JSON strings, and fields equal to zero or false are omitted (a failed
 * txn has no "succeeded"; a lease that is gone answers a keepalive without "TTL").
 *
 * Keys are C strings (Brume's keys are paths); values are byte strings (pointer + length) and come
 * back NUL-terminated as well, for convenience.
 *
 * Errors follow common/err.h; codes are gRPC status codes. etcd's own errors keep the code etcd
 * gives (an unknown lease is NOT_FOUND, a bad request INVALID_ARGUMENT, "no leader" UNAVAILABLE).
 * When no endpoint can be reached the error is BRUME_UNAVAILABLE and names every endpoint tried:
 *   "etcd unavailable: http://127.0.0.1:2379: Couldn't connect to server".
 * A call that did not finish within opts.timeout_ms fails with BRUME_DEADLINE_EXCEEDED.
 *
 * Endpoints and failover: the client talks to one endpoint (the current one). When a request
 * cannot be delivered there, it moves on to the next endpoint and retries once per endpoint; the
 * one that answers becomes the current one. A request that may already have been applied (the
 * connection broke, or no answer came, after it was sent) is retried elsewhere only if repeating
 * it is harmless; a txn is not, and fails saying that its outcome is unknown. So that a dead or
 * hung endpoint cannot use up the whole timeout, each endpoint still to try gets an equal share of
 * what is left of it (the last one gets all of it); a txn, which cannot move on once sent, gets
 * all that is left.
 *
 * Thread safety: one brume_etcd may be used by any number of threads at once. It keeps a small
 * pool of libcurl handles, so HTTP keep-alive connections are reused across calls. libcurl runs
 * with CURLOPT_NOSIGNAL, as threads require: a process using https endpoints should ignore
 * SIGPIPE, as every daemon does. */
#ifndef BRUME_ETCD_H
#define BRUME_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct brume_etcd brume_etcd;

typedef struct brume_etcd_opts {
  /* Bound on each call, all endpoint attempts included; 0 means 5000 ms. */
  int timeout_ms;
  /* For https:// endpoints; NULL uses the system CA store and no client certificate. */
  const char *ca_path;
  const char *cert_path;
  const char *key_path;
} brume_etcd_opts;

/* One key-value pair as etcd stores it. key and value are owned by whoever owns the kv (a range
 * result, a txn result, a watch event batch, or the caller after brume_etcd_get), and are always
 * NUL-terminated beyond their length. */
typedef struct brume_etcd_kv {
  char *key;
  size_t key_len;
  char *value;
  size_t value_len;
  int64_t create_revision;
  int64_t mod_revision;
  int64_t version; /* 1 after creation, +1 per put; 0 for a deleted key in a watch event */
  int64_t lease;   /* 0 when the key is not attached to a lease */
} brume_etcd_kv;

/* The answer to a range read. */
typedef struct brume_etcd_range {
  int64_t revision; /* the store revision the read saw (response header) */
  int64_t count;    /* keys in the range; equals n unless a limit cut the answer short */
  bool more;
  size_t n;
  brume_etcd_kv *kvs;
} brume_etcd_range;

typedef enum brume_etcd_target {
  BRUME_ETCD_VALUE,
  BRUME_ETCD_VERSION,
  BRUME_ETCD_CREATE, /* create revision; 0 when the key does not exist */
  BRUME_ETCD_MOD,    /* mod revision; 0 when the key does not exist */
} brume_etcd_target;

typedef enum brume_etcd_cmp_result {
  BRUME_ETCD_EQUAL,
  BRUME_ETCD_GREATER,
  BRUME_ETCD_LESS,
  BRUME_ETCD_NOT_EQUAL,
} brume_etcd_cmp_result;

/* One txn guard: "<target>(key) <result> <number or value>". With prefix set, it must hold for
 * every key under the prefix (etcd compares each key of the range), which is how a txn guards a
 * whole prefix: MOD(prefix) LESS R+1 holds when nothing under it changed after revision R. */
typedef struct brume_etcd_cmp {
  const char *key;
  bool prefix;
  brume_etcd_target target;
  brume_etcd_cmp_result result;
  int64_t number;    /* VERSION, CREATE, MOD */
  const void *value; /* VALUE */
  size_t value_len;
} brume_etcd_cmp;

typedef enum brume_etcd_op_type {
  BRUME_ETCD_OP_PUT,
  BRUME_ETCD_OP_DELETE,
  BRUME_ETCD_OP_RANGE,
} brume_etcd_op_type;

/* One txn operation. prefix applies to DELETE and RANGE; value and lease to PUT. */
typedef struct brume_etcd_op {
  brume_etcd_op_type type;
  const char *key;
  bool prefix;
  const void *value;
  size_t value_len;
  int64_t lease;
} brume_etcd_op;

typedef struct brume_etcd_txn_req {
  const brume_etcd_cmp *compare;
  size_t n_compare;
  const brume_etcd_op *success; /* run when every compare holds */
  size_t n_success;
  const brume_etcd_op *failure; /* run otherwise */
  size_t n_failure;
} brume_etcd_txn_req;

/* The result of one txn op, in the order of the ops that ran. */
typedef struct brume_etcd_op_result {
  brume_etcd_op_type type;
  int64_t deleted;        /* DELETE: number of keys deleted */
  brume_etcd_range range; /* RANGE: kvs, count, more; range.revision is the txn's revision */
} brume_etcd_op_result;

typedef struct brume_etcd_txn_result {
  bool succeeded;   /* true: the success ops ran; false: the failure ops ran */
  int64_t revision; /* store revision after the txn (response header) */
  size_t n;
  brume_etcd_op_result *results;
} brume_etcd_txn_result;

/* Creates a client. endpoints is a comma-separated list of base URLs ("http://127.0.0.1:2379,
 * https://10.0.0.2:2379"); opts may be NULL. Nothing is contacted yet: an unreachable etcd shows
 * up on the first call. INVALID_ARGUMENT for an empty or malformed list, or a TLS file that cannot
 * be read. Free with brume_etcd_free() after every watch on it has been stopped. */
brume_etcd *brume_etcd_new(const char *endpoints, const brume_etcd_opts *opts, brume_err **err);
void brume_etcd_free(brume_etcd *e);

/* The endpoint calls currently go to (the first one until a failover). Owned by e. */
const char *brume_etcd_current_endpoint(brume_etcd *e);

/* Reads one key. Returns 0 and sets *kv_out to a new kv the caller frees with
 * brume_etcd_kv_free(), or to NULL when the key does not exist: absence is an answer, not an
 * error. revision_out (may be NULL) receives the store revision the read saw, in both cases. */
int brume_etcd_get(brume_etcd *e, const char *key, brume_etcd_kv **kv_out, int64_t *revision_out,
                   brume_err **err);

/* Reads every key that starts with prefix ("" reads the whole store), sorted by key, with the
 * store revision of the read. Returns NULL on error. Free with brume_etcd_range_free(). */
brume_etcd_range *brume_etcd_get_prefix(brume_etcd *e, const char *prefix, brume_err **err);

/* Writes key = value, attached to lease unless lease is 0. revision_out (may be NULL) receives
 * the revision of the write. An unknown or expired lease fails with NOT_FOUND. */
int brume_etcd_put(brume_etcd *e, const char *key, const void *value, size_t value_len,
                   int64_t lease, int64_t *revision_out, brume_err **err);

/* Deletes key, or with prefix set every key that starts with it. deleted_out (may be NULL)
 * receives how many keys were deleted (0 is not an error). */
int brume_etcd_delete(brume_etcd *e, const char *key, bool prefix, int64_t *deleted_out,
                      brume_err **err);

/* Runs a transaction: if every compare holds, the success ops, otherwise the failure ops, all at
 * one revision. A txn that loses its compare is not an error: result->succeeded is false. Returns
 * NULL on error; the txn was not applied, except when the error message says that its outcome is
 * unknown (the connection broke after the request went out). Free with
 * brume_etcd_txn_result_free(). */
brume_etcd_txn_result *brume_etcd_txn(brume_etcd *e, const brume_etcd_txn_req *req,
                                      brume_err **err);

/* Grants a lease of ttl_s seconds (etcd may round a small TTL up, to about 2 s by default).
 * id_out receives its id; ttl_out (may be NULL) the TTL granted. */
int brume_etcd_lease_grant(brume_etcd *e, int64_t ttl_s, int64_t *id_out, int64_t *ttl_out,
                           brume_err **err);

/* Renews a lease once. ttl_out (may be NULL) receives the TTL it now has. A lease that expired or
 * was revoked fails with NOT_FOUND: its keys are gone, and the caller must start again. */
int brume_etcd_lease_keepalive(brume_etcd *e, int64_t id, int64_t *ttl_out, brume_err **err);

/* Revokes a lease and deletes its keys. NOT_FOUND if it is already gone. */
int brume_etcd_lease_revoke(brume_etcd *e, int64_t id, brume_err **err);

/* What the endpoints say of the cluster's leader: each is asked on its own (POST
 * /v3/maintenance/status, at most timeout_ms each), whichever is current. A member that has lost
 * its quorum answers at once, with no leader ("errors": ["etcdserver: no leader"]), while a
 * lease or a txn sent to it would hang until etcd's own timeout: this tells "etcd has no quorum"
 * from "this process cannot reach etcd". */
typedef struct brume_etcd_leader_view {
  size_t endpoints;   /* asked */
  size_t reachable;   /* answered at all */
  size_t with_leader; /* answered naming a leader */
} brume_etcd_leader_view;
void brume_etcd_probe_leader(brume_etcd *e, int timeout_ms, brume_etcd_leader_view *out);

void brume_etcd_kv_free(brume_etcd_kv *kv);
void brume_etcd_range_free(brume_etcd_range *r);
void brume_etcd_txn_result_free(brume_etcd_txn_result *t);

BRUME_DEFINE_AUTOPTR(brume_etcd, brume_etcd_free)
BRUME_DEFINE_AUTOPTR(brume_etcd_kv, brume_etcd_kv_free)
BRUME_DEFINE_AUTOPTR(brume_etcd_range, brume_etcd_range_free)
BRUME_DEFINE_AUTOPTR(brume_etcd_txn_result, brume_etcd_txn_result_free)

/* ---- Watch ---- */

typedef enum brume_etcd_event_type {
  BRUME_ETCD_EVENT_PUT,
  BRUME_ETCD_EVENT_DELETE,
} brume_etcd_event_type;

/* kv.key and kv.mod_revision are always set; a DELETE event has an empty value. */
typedef struct brume_etcd_event {
  brume_etcd_event_type type;
  brume_etcd_kv kv;
} brume_etcd_event;

/* Receives the events of one etcd revision or more, in revision order. events and everything
 * they point to belong to the watch and are valid only during the call. Called on the watch's
 * own thread; it must not call brume_etcd_watch_stop() on its own watch.
 *
 * n == 0 (events NULL) is a gap: etcd compacted revisions the watch had not delivered, so
 * changes were made that the receiver will never see as events. It should read what it follows
 * again; the events that follow the gap are those from the oldest revision etcd still keeps. */
typedef void (*brume_etcd_watch_fn)(const brume_etcd_event *events, size_t n, void *user);

typedef struct brume_etcd_watch brume_etcd_watch;

/* Watches every key that starts with prefix, from start_revision on (events with
 * mod_revision >= start_revision); start_revision <= 0 means "changes made after this call
 * returns", which needs one read from etcd now and fails if etcd cannot be reached.
 *
 * The watch runs on its own thread over a streaming POST /v3/watch. It remembers the last
 * revision delivered; when the stream breaks (etcd restarted, endpoint gone) it reconnects, with
 * backoff and failing over to the next endpoint, asking for last+1, so that no event is lost or
 * repeated. If etcd has compacted those revisions away the events are gone: the watch logs a
 * warning, tells fn (a call with n == 0) and goes on from the oldest revision still kept.
 *
 * e must outlive the watch. Returns NULL on error. */
brume_etcd_watch *brume_etcd_watch_prefix(brume_etcd *e, const char *prefix, int64_t start_revision,
                                          brume_etcd_watch_fn fn, void *user, brume_err **err);

/* Stops the watch, waits for its thread (within a few milliseconds: a callback that is running
 * finishes first) and frees it. No callback runs after it returns. NULL is allowed. */
void brume_etcd_watch_stop(brume_etcd_watch *w);

/* The next revision the watch asks for after a reconnect (last delivered + 1). Thread-safe. */
int64_t brume_etcd_watch_next_revision(brume_etcd_watch *w);

BRUME_DEFINE_AUTOPTR(brume_etcd_watch, brume_etcd_watch_stop)

#endif
