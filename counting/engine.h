/* Engine: the counting daemon's admission decisions, served from memory, backed by blocks of
 * concurrency and scaling-bucket tokens that it holds in etcd (docs/counting.md, DESIGN.md
 * "Counting without making etcd the bottleneck").
 *
 * Pools. Every function draws on one pool of concurrency: its own when it has reserved
 * concurrency (the pool's limit is R), else its account's unreserved pool (the account's limit
 * minus every reserved R). For each pool the daemon holds a block in etcd (counting/holdings):
 *   <root>count/<account>/unreserved/<daemon_id>
 *   <root>count/<account>/fn/<function>/<daemon_id>
 * and grants from memory while its tokens in that pool stay below its block and the pool's limit.
 * When the block is used up, one etcd txn grows it by a step that follows demand (the larger of 1
 * and a quarter of what is held), never past the limit summed over every daemon. A block larger
 * than use plus a margin for shrink_after_ms is shrunk, so blocks follow demand with hysteresis
 * and a steady load causes no etcd traffic.
 *
 * Provisioned concurrency. Grants within a qualifier's provisioned concurrency are a pool of their
 * own, held in blocks the same way (<root>provisioned/<account>/<function>/<qualifier>/<daemon>),
 * so that all daemons together flag at most that many grants as provisioned; past it a grant is
 * an ordinary one.
 *
 * Scaling rate. A NEW_ENVIRONMENT grant that is not provisioned also takes a token from the
 * scaling bucket: the account's, or the function's in the per-function
 * model (counting/bucket_share). The bucket lives in etcd; each daemon takes a few tokens at a
 * time (what its recent demand needs) and grants from them.
 *
 * Asynchronous answers. An Acquire that can be decided from memory is answered before
 * brume_engine_acquire() returns, on the caller's thread. One that needs etcd (a block to grow,
 * bucket tokens to take) waits, with any others for the same pool, for one etcd job on the work
 * queue, and is answered from that thread. Nothing here blocks a gRPC handler.
 *
 * The lease. Blocks live under the daemon's etcd lease (its registration). When the lease is
 * not healthy (no renewal within its TTL), the daemon grants nothing: Acquire fails with
 * UNAVAILABLE, because its blocks may already have gone back to the other daemons. When the lease
 * id changes (a new lease after the old expired), every block is taken to be 0 and regrown.
 * When etcd cannot be reached, Acquire is served only from blocks already held, and fails with
 * UNAVAILABLE when it would need more.
 *
 * Thread safety: every function may be called from any thread. One mutex guards the in-memory
 * state; it is held only for O(1) work (and O(log n) on the token heap), never across etcd I/O. */
#ifndef BRUME_COUNTING_ENGINE_H
#define BRUME_COUNTING_ENGINE_H
#include <stdbool.h>
#include <stdint.h>

#include "bucket.h"
#include "concurrency.h"
#include "err.h"
#include "etcd.h"
#include "limits_store.h"
#include "metrics.h"
#include "tokens.h"
#include "workq.h"

/* Unused blocks are kept this long before they shrink, unless configured otherwise. */
#define BRUME_ENGINE_SHRINK_AFTER_MS_DEFAULT 2000
/* An account or function nothing holds and nobody named for this long is forgotten. */
#define BRUME_ENGINE_RECORDS_IDLE_MS_DEFAULT 600000

typedef struct brume_engine brume_engine;

typedef struct brume_engine_opts {
  brume_etcd *etcd;
  const char *root;      /* "/brume/": ends with '/' */
  const char *daemon_id; /* brume_engine_check_daemon_id() */
  brume_limits_store *limits;
  brume_workq *wq; /* runs the etcd jobs; must outlive the engine */
  /* The lease that blocks are written under now, and whether it is known to be alive (the
   * registration's lease and health); 0 = none yet. */
  int64_t (*lease)(void *user);
  bool (*lease_healthy)(void *user);
  /* May be NULL. True while etcd has lost its quorum and the lease is known to outlive that
   * (counting/quorum_guard.h): the lease is not healthy, yet no block can go to another daemon,
   * so grants within the blocks held go on; what needs etcd (a block to grow, a new
   * environment, an upgrade) fails UNAVAILABLE at once. */
  bool (*quorum_lost)(void *user);
  void *lease_user;
  int64_t shrink_after_ms; /* 0 = BRUME_ENGINE_SHRINK_AFTER_MS_DEFAULT */
  int64_t records_idle_ms; /* 0 = BRUME_ENGINE_RECORDS_IDLE_MS_DEFAULT */
  brume_metrics *metrics;  /* may be NULL: brume_counting_* figures */
} brume_engine_opts;

/* One Acquire (proto AcquireRequest). Strings are copied when the answer has to wait. */
typedef struct brume_acquire_req {
  const char *account_id;    /* required */
  const char *function_name; /* required */
  const char *qualifier;     /* NULL or "" = $LATEST */
  const char *caller_id;     /* may be NULL */
  brume_token_kind kind;     /* NEW_ENVIRONMENT or WARM_ENVIRONMENT */
  uint32_t hold_ms;          /* 0 = BRUME_TOKENS_HOLD_MS_DEFAULT; at most the max */
  const char *upgrade_token; /* only with NEW_ENVIRONMENT; NULL or "" = none */
  bool memory_only;          /* fail with ABORTED instead of waiting for etcd (the etcd job
                                still starts); for batches (proto AcquireBatchRequest) */
} brume_acquire_req;

/* The answer to a granted or throttled Acquire (proto AcquireResponse). */
typedef struct brume_acquire_result {
  bool granted;
  char token[BRUME_TOKEN_STRING_MAX]; /* when granted */
  int64_t token_deadline_unix_ms;     /* when granted */
  brume_throttle reason;              /* when not granted */
  uint32_t retry_after_ms;            /* when throttled by the scaling rate; 0 = no estimate */
  bool provisioned;
} brume_acquire_result;

/* Called exactly once per Acquire: with res set (granted or throttled) and err NULL, or with res
 * NULL and err set (INVALID_ARGUMENT, NOT_FOUND for an upgrade_token not held, UNAVAILABLE,
 * DEADLINE_EXCEEDED, ABORTED for a memory_only request that would have waited). Both are valid
 * only during the call. */
typedef void (*brume_acquire_done)(void *user, const brume_acquire_result *res,
                                   const brume_err *err);

/* This daemon's view of an account or function (proto AccountConcurrencyState and
 * FunctionConcurrencyState). */
typedef struct brume_engine_account_state {
  uint32_t concurrency_limit, unreserved_limit, reserved_total, provisioned_total;
  uint32_t in_use, held;
  uint64_t cluster_held;
  bool has_scaling; /* account model */
  brume_bucket_state scaling;
} brume_engine_account_state;

typedef struct brume_engine_function_state {
  bool reserved;
  uint32_t reserved_concurrency, provisioned;
  uint32_t in_use, held;
  uint64_t cluster_held;
  bool has_scaling; /* function model */
  brume_bucket_state scaling;
} brume_engine_function_state;

/* 0 if daemon_id can name a counting daemon: in its token strings (tokens.h) and as the last
 * segment of its etcd keys (no '/'); -1 with INVALID_ARGUMENT otherwise. */
int brume_engine_check_daemon_id(const char *daemon_id, brume_err **err);

/* A new engine, or NULL with INVALID_ARGUMENT for a bad root or daemon id. Starts no thread:
 * the daemon calls brume_engine_tick() periodically. */
brume_engine *brume_engine_new(const brume_engine_opts *opts, brume_err **err);

/* Waits for the etcd jobs under way, gives unused scaling-bucket tokens back to etcd (best
 * effort) and frees the engine; the blocks go when the daemon revokes its lease. NULL is fine.
 * Call it after the work queue stopped taking jobs that could reach the engine, or with no
 * Acquire in flight. */
void brume_engine_free(brume_engine *e);

/* Admits one invocation or says why not; done runs exactly once (see above), possibly before
 * this returns. */
void brume_engine_acquire(brume_engine *e, const brume_acquire_req *req, brume_acquire_done done,
                          void *user);

/* Gives a token back: 0 and *was_held. -1 with INVALID_ARGUMENT (malformed) or NOT_FOUND
 * (another daemon's token). From memory only. */
int brume_engine_release(brume_engine *e, const char *token, bool *was_held, brume_err **err);

/* Limits and use of an account (and of one of its functions when function is non-NULL and
 * non-empty). Blocking: reads the cluster-wide holdings and the bucket from etcd (so call it from
 * the work queue). -1 with the etcd error when etcd cannot be read. */
int brume_engine_state(brume_engine *e, const char *account, const char *function,
                       brume_engine_account_state *acct, brume_engine_function_state *fn,
                       brume_err **err);

/* Housekeeping, every 50-100 ms: takes back tokens past their deadline and notices a new lease;
 * every 250 ms also queues shrinks of blocks idle for shrink_after_ms, gives back unused bucket
 * tokens and forgets records idle for records_idle_ms. */
void brume_engine_tick(brume_engine *e);

/* Tokens held (granted, not yet released or taken back), over every account. */
size_t brume_engine_tokens_held(brume_engine *e);

/* Accounts and functions the engine remembers now (idle ones are dropped). */
size_t brume_engine_records(brume_engine *e);

/* What this daemon has of one account or function: the record the engine keeps for it. */
typedef struct brume_engine_use {
  const char *account_id;
  const char *function_name; /* NULL for the account's own record */
  /* Tokens granted and not yet back: an account's count those of all its functions. */
  uint32_t in_use;
  /* The block held in etcd of the record's own pool: an account's unreserved pool, or a
   * function's reserved one (0 for a function without reserved concurrency). An account's held
   * in GetState is its block plus those of its functions. */
  uint32_t held;
} brume_engine_use;

typedef void (*brume_engine_use_fn)(void *user, const brume_engine_use *use);

/* Calls fn for every account and function the engine remembers (brume_engine_records()), in no
 * particular order. fn runs under the engine's mutex, which every Acquire and Release takes: it
 * must be quick (copy what it needs) and must not call the engine. The strings are valid during
 * the call only. For /metrics (counting/state_metrics.h). */
void brume_engine_each_use(brume_engine *e, brume_engine_use_fn fn, void *user);

BRUME_DEFINE_AUTOPTR(brume_engine, brume_engine_free)
#endif
