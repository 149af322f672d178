/* The admission engine (engine.h).
 *
 * Records. Each account the daemon has seen has a record with its unreserved pool and its
 * account-model scaling bucket share; each function a record with its reserved pool (used while
 * the function has reserved concurrency), its function-model bucket share, and per qualifier the
 * provisioned tokens in use. Records live in one hash table keyed by "<account>/<function>" (the
 * account's own record: "<account>"); account ids and function names hold no '/'. Records are
 * freed only when nothing needs them (no tokens, no blocks, no etcd job, no waiter) and no
 * request named them for records_idle_ms, so a token can point at its function's record.
 *
 * Waiting. An Acquire that needs etcd becomes a waiter on one pool or one bucket share, whose
 * single etcd job (busy) serves every waiter at once. When the job ends, each waiter goes through
 * admission again from the start: it may now be granted, throttled, or wait for the next job.
 * No state is reserved for a waiter, so nothing leaks when a job fails. */
#include "engine.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bucket_share.h"
#include "clock.h"
#include "holdings.h"
#include "log.h"
#include "mem.h"

/* After a grow found no room left in a pool (every daemon's blocks add up to the limit), the
 * pool is throttled from memory for this long before etcd is asked again: under a flood at the
 * limit, one range read per pool every 20 ms instead of one per refused request. */
#define POOL_FULL_RECHECK_MS 20
/* After a take found the bucket empty (or drained it), no take for at least this long: the
 * refill gathers in etcd meanwhile, so an empty bucket under a flood costs a txn per 10 ms per
 * daemon, not one per request. */
#define BUCKET_EMPTY_RECHECK_MS 10
/* The most bucket tokens taken at once: what a daemon holds unused when demand stops. */
#define BUCKET_TAKE_MAX 64
/* Bucket tokens taken and unused for this long go back to etcd. */
#define BUCKET_GIVE_BACK_AFTER_MS 1000
/* How often the tick looks at every record (shrinks, give-backs, idle records); token deadlines
 * are checked at every tick. */
#define SCAN_EVERY_MS 250

/* ---- records ---- */

typedef struct waiter {
  struct waiter *next;
  brume_acquire_req req; /* strings point into buf */
  brume_acquire_done done;
  void *user;
  char buf[];
} waiter;

typedef struct waitlist {
  waiter *head, **tail;
  size_t n;
  /* memory_only requests turned away since the last job sized itself (demand_take): they come
   * back, so the next grow or take counts them as if they had waited. One that comes back and
   * waits is taken off (brume_engine_acquire); shrink and give_back clear what is left. */
  size_t deferred;
} waitlist;

struct rec;
struct qualifier_use;

/* What a pool's limit is. */
typedef enum pool_kind {
  POOL_UNRESERVED, /* the account's: its limit minus every reserved concurrency */
  POOL_RESERVED,   /* a function's: its reserved concurrency */
  POOL_PROVISIONED /* a qualifier's: its provisioned concurrency (grants that need no bucket token)
                    */
} pool_kind;

/* A pool of concurrency and this daemon's block of it in etcd. */
typedef struct pool {
  pool_kind kind;
  struct rec *r;              /* the account's or the function's record */
  struct qualifier_use *qual; /* POOL_PROVISIONED: the qualifier */
  char *prefix;               /* <root>count/<account>/unreserved/, .../fn/<function>/, or
                               * <root>provisioned/<account>/<function>/<qualifier>/ */
  uint32_t in_use;            /* this daemon's tokens drawn on the pool */
  uint32_t held;              /* its block, as far as it may grant (<= the block in etcd) */
  uint32_t full_limit;        /* the limit at which the last grow found no room */
  int64_t full_until_ms; /* throttle from memory until then, if the limit is still full_limit */
  int64_t over_since_ms; /* since when the block is larger than use needs (0: it is not) */
  uint32_t peak;         /* the most in use since over_since_ms */
  bool busy;             /* an etcd job for it is queued or running */
  waitlist waiters;
} pool;

/* This daemon's share of a scaling bucket kept in etcd. */
typedef struct share {
  char *key;
  uint32_t local;         /* tokens taken from etcd, not yet granted */
  int64_t empty_until_ms; /* no take before then */
  int64_t next_token_ms;  /* when etcd's bucket has its next token, as last told */
  int64_t last_take_ms;
  bool busy;
  waitlist waiters;
} share;

/* A qualifier of a function with provisioned concurrency: its provisioned grants are a pool of
 * their own, held cluster-wide like the others, so that N daemons together flag at most the
 * qualifier's provisioned concurrency as provisioned (those skip the scaling bucket). */
typedef struct qualifier_use {
  char *name;
  pool pool;
} qualifier_use;

typedef struct rec {
  struct rec *next; /* hash chain */
  char *key;
  uint64_t hash;
  struct rec *account; /* a function's account record; NULL for an account */
  char *account_id, *function_name;
  uint32_t in_use; /* this daemon's tokens of the account / function */
  pool pool;       /* account: the unreserved pool; function: its reserved pool */
  share share;     /* account: its bucket (account model); function: its own (function model) */
  size_t n_quals;
  qualifier_use **quals; /* each allocated on its own: jobs point at their pools */
  int64_t last_used_ms;  /* the last admission or state query that named it */
  size_t n_functions;    /* an account's: its functions' records (they point at it) */
} rec;

/* Token owner_flags. */
enum { TOKEN_RESERVED_POOL = 1, TOKEN_PROVISIONED = 2 };

struct brume_engine {
  brume_engine_opts o;
  char *root, *daemon_id;
  pthread_mutex_t mu;
  pthread_cond_t idle; /* jobs fell to 0 */
  size_t jobs;         /* etcd jobs queued or running */
  int64_t lease;       /* the lease the blocks were written under */
  brume_tokens *tokens;
  rec **table;
  size_t n_slots, n_recs;
  int64_t last_scan_ms;
  brume_counter *m_etcd, *m_expired, *m_waits;
  brume_gauge *m_held, *m_records;
};

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

/* An empty list; deferred is left as it is (0 in a new record, which is zeroed). */
static void waitlist_init(waitlist *w) {
  w->head = NULL;
  w->tail = &w->head;
  w->n = 0;
}

static void waitlist_push(waitlist *w, waiter *x) {
  x->next = NULL;
  *w->tail = x;
  w->tail = &x->next;
  w->n++;
}

/* Empties w, returning its waiters in order (deferred stays: waitlist_init leaves it). */
static waiter *waitlist_take(waitlist *w) {
  waiter *h = w->head;
  waitlist_init(w);
  return h;
}

/* The demand a job sizes itself for: the waiters and the requests turned away meanwhile. */
static size_t demand_take(waitlist *w) {
  size_t d = w->n + w->deferred;
  w->deferred = 0;
  return d;
}

static void grow_table(brume_engine *e) {
  size_t n = e->n_slots ? e->n_slots * 2 : 64;
  rec **t = brume_xcalloc(n, sizeof(*t));
  for (size_t i = 0; i < e->n_slots; i++) {
    for (rec *r = e->table[i], *next; r; r = next) {
      next = r->next;
      r->next = t[r->hash & (n - 1)];
      t[r->hash & (n - 1)] = r;
    }
  }
  free(e->table);
  e->table = t;
  e->n_slots = n;
}

static rec *find_rec(brume_engine *e, const char *key, uint64_t h) {
  if (e->n_slots == 0) return NULL;
  for (rec *r = e->table[h & (e->n_slots - 1)]; r; r = r->next)
    if (r->hash == h && strcmp(r->key, key) == 0) return r;
  return NULL;
}

/* The record of an account (function NULL) or of one of its functions, created if new. */
static rec *get_rec(brume_engine *e, const char *account, const char *function) {
  char key[600];
  if (function)
    snprintf(key, sizeof(key), "%s/%s", account, function);
  else
    snprintf(key, sizeof(key), "%s", account);
  uint64_t h = hash_str(key);
  rec *r = find_rec(e, key, h);
  if (r) return r;
  rec *acct = function ? get_rec(e, account, NULL) : NULL;
  if (e->n_recs + 1 > e->n_slots / 2) grow_table(e);
  r = brume_xcalloc(1, sizeof(*r));
  r->key = brume_xstrdup(key);
  r->hash = h;
  r->account = acct;
  if (acct) acct->n_functions++;
  r->last_used_ms = brume_mono_ms();
  r->account_id = brume_xstrdup(account);
  r->function_name = function ? brume_xstrdup(function) : NULL;
  r->pool.r = r;
  r->pool.kind = function ? POOL_RESERVED : POOL_UNRESERVED;
  if (function) {
    r->pool.prefix = brume_xasprintf("%scount/%s/fn/%s/", e->root, account, function);
    r->share.key = brume_xasprintf("%sscaling/function/%s/%s", e->root, account, function);
  } else {
    r->pool.prefix = brume_xasprintf("%scount/%s/unreserved/", e->root, account);
    r->share.key = brume_xasprintf("%sscaling/account/%s", e->root, account);
  }
  waitlist_init(&r->pool.waiters);
  waitlist_init(&r->share.waiters);
  r->next = e->table[h & (e->n_slots - 1)];
  e->table[h & (e->n_slots - 1)] = r;
  e->n_recs++;
  return r;
}

static void free_rec(rec *r) {
  free(r->key);
  free(r->account_id);
  free(r->function_name);
  free(r->pool.prefix);
  free(r->share.key);
  for (size_t i = 0; i < r->n_quals; i++) {
    free(r->quals[i]->name);
    free(r->quals[i]->pool.prefix);
    free(r->quals[i]);
  }
  free(r->quals);
  free(r);
}

static qualifier_use *get_qualifier(brume_engine *e, rec *fn, const char *qualifier) {
  for (size_t i = 0; i < fn->n_quals; i++)
    if (strcmp(fn->quals[i]->name, qualifier) == 0) return fn->quals[i];
  qualifier_use *q = brume_xcalloc(1, sizeof(*q));
  q->name = brume_xstrdup(qualifier);
  q->pool.kind = POOL_PROVISIONED;
  q->pool.r = fn;
  q->pool.qual = q;
  /* "" is $LATEST, which needs a key segment of its own. */
  q->pool.prefix = brume_xasprintf("%sprovisioned/%s/%s/%s/", e->root, fn->account_id,
                                   fn->function_name, qualifier[0] ? qualifier : "$LATEST");
  waitlist_init(&q->pool.waiters);
  fn->quals = brume_xrealloc(fn->quals, (fn->n_quals + 1) * sizeof(*fn->quals));
  fn->quals[fn->n_quals++] = q;
  return q;
}

/* Every pool of r (its own and its qualifiers'), for f(e, pool, arg). */
static void each_pool(brume_engine *e, rec *r, void (*f)(brume_engine *, pool *, void *),
                      void *arg) {
  f(e, &r->pool, arg);
  for (size_t i = 0; i < r->n_quals; i++) f(e, &r->quals[i]->pool, arg);
}

/* ---- lease ---- */

static void forget_block(brume_engine *e, pool *p, void *arg) {
  (void)e;
  (void)arg;
  p->held = 0;
  p->full_until_ms = 0;
  p->over_since_ms = 0;
}

/* Notices a new lease: the blocks written under the old one are gone from etcd (it expired),
 * so every block counts as 0 until it is grown again under the new one. Under e->mu. */
static void follow_lease(brume_engine *e) {
  int64_t lease = e->o.lease(e->o.lease_user);
  if (lease == e->lease) return;
  if (e->lease != 0)
    brume_warn("The etcd lease changed: every block of concurrency starts again from 0.",
               "old_lease=%" PRId64 " new_lease=%" PRId64, e->lease, lease);
  e->lease = lease;
  for (size_t i = 0; i < e->n_slots; i++)
    for (rec *r = e->table[i]; r; r = r->next) each_pool(e, r, forget_block, NULL);
}

/* ---- admission ---- */

typedef enum { ADMIT_ANSWERED, ADMIT_WAITING } admit_outcome;

/* An etcd job to queue once e->mu is released. */
typedef struct job {
  brume_engine *e;
  enum { JOB_GROW, JOB_SHRINK, JOB_TAKE, JOB_GIVE_BACK } kind;
  pool *p;    /* GROW, SHRINK */
  rec *r;     /* TAKE, GIVE_BACK: the record whose bucket share it is */
  uint32_t n; /* SHRINK: the block to keep; GIVE_BACK: tokens */
} job;

static job *new_job(brume_engine *e, int kind, pool *p, rec *r, uint32_t n) {
  job *j = brume_xmalloc(sizeof(*j));
  *j = (job){.e = e, .kind = kind, .p = p, .r = r, .n = n};
  e->jobs++;
  return j;
}

/* A pool's limit now. */
static uint32_t pool_limit(brume_engine *e, const pool *p) {
  if (p->kind == POOL_UNRESERVED) {
    brume_account_limits al;
    brume_limits_store_account(e->o.limits, p->r->account_id, &al);
    return brume_concurrency_unreserved(&al);
  }
  if (p->kind == POOL_PROVISIONED)
    return brume_limits_store_provisioned(e->o.limits, p->r->account_id, p->r->function_name,
                                          p->qual->name);
  brume_function_limits fl;
  brume_limits_store_function(e->o.limits, p->r->account_id, p->r->function_name, &fl);
  return fl.reserved ? fl.reserved_concurrency : 0;
}

static void throttle(brume_acquire_result *res, brume_throttle reason, int64_t retry_after_ms) {
  memset(res, 0, sizeof(*res));
  res->reason = reason;
  res->retry_after_ms = retry_after_ms <= 0           ? 0
                        : retry_after_ms > UINT32_MAX ? UINT32_MAX
                                                      : (uint32_t)retry_after_ms;
}

static brume_bucket_params bucket_params(const brume_cluster_limits *cl) {
  return cl->model == BRUME_SCALING_ACCOUNT ? cl->account_bucket : cl->function_bucket;
}

/* The bucket parameters configured now (the limits store's cluster settings). */
static brume_bucket_params cluster_bucket_params(brume_engine *e) {
  brume_cluster_limits cl;
  brume_limits_store_cluster(e->o.limits, &cl);
  return bucket_params(&cl);
}

/* The scaling step of a cold start: 1 when a bucket token is taken, 0 when throttled (res set),
 * -1 when the request must wait for a take, on *wait_on (*out_job set if one must be queued). */
static int take_bucket_token(brume_engine *e, share *s, rec *r, int64_t now,
                             brume_acquire_result *res, job **out_job, waitlist **wait_on) {
  if (s->local > 0) {
    s->local--;
    return 1;
  }
  if (!s->busy && now < s->empty_until_ms) {
    throttle(res, BRUME_THROTTLE_SCALING_RATE,
             s->next_token_ms > now ? s->next_token_ms - now : s->empty_until_ms - now);
    return 0;
  }
  *wait_on = &s->waiters;
  if (!s->busy) {
    s->busy = true;
    *out_job = new_job(e, JOB_TAKE, NULL, r, 0);
  }
  return -1;
}

/* Decides q under e->mu: answered (res, or *err for an error) or waiting, and then the caller
 * puts the request on *wait_on. Either way the caller queues *out_job, when it is set, once e->mu
 * is released. */
static admit_outcome admit(brume_engine *e, const brume_acquire_req *q, int64_t now,
                           brume_acquire_result *res, brume_err **err, job **out_job,
                           waitlist **wait_on) {
  *out_job = NULL;
  follow_lease(e);
  /* Static stability: see quorum_guard.h. Then only what the blocks held decide is answered. */
  bool no_quorum = false;
  if (e->lease == 0 || !e->o.lease_healthy(e->o.lease_user)) {
    no_quorum = e->lease != 0 && e->o.quorum_lost && e->o.quorum_lost(e->o.lease_user);
    if (!no_quorum) {
      brume_err_set(err, BRUME_UNAVAILABLE,
                    "counting daemon %s has no live etcd lease, so it grants nothing until it "
                    "renews one (try another counting daemon)",
                    e->daemon_id);
      return ADMIT_ANSWERED;
    }
    if (q->kind == BRUME_TOKEN_NEW_ENVIRONMENT) {
      brume_err_set(err, BRUME_UNAVAILABLE,
                    "etcd has lost its quorum: no new environment (cold start) until it is back; "
                    "invocations on warm sandboxes go on");
      return ADMIT_ANSWERED;
    }
  }
  rec *fn = get_rec(e, q->account_id, q->function_name);
  rec *acct = fn->account;
  fn->last_used_ms = acct->last_used_ms = now;
  const char *qualifier = q->qualifier ? q->qualifier : "";
  brume_limits_view lv;
  brume_limits_store_lookup(e->o.limits, q->account_id, q->function_name, qualifier, &lv);
  share *s = lv.cluster.model == BRUME_SCALING_ACCOUNT ? &acct->share : &fn->share;
  rec *share_rec = lv.cluster.model == BRUME_SCALING_ACCOUNT ? acct : fn;

  if (q->upgrade_token && q->upgrade_token[0]) {
    const brume_token *tok = NULL;
    int found = brume_tokens_find(e->tokens, q->upgrade_token, &tok, err);
    if (found < 0) return ADMIT_ANSWERED;
    if (found == 0) {
      brume_err_set(err, BRUME_NOT_FOUND,
                    "upgrade_token %s is not held (released, or taken back at its deadline)",
                    q->upgrade_token);
      return ADMIT_ANSWERED;
    }
    if (strcmp(tok->account_id, q->account_id) != 0 ||
        strcmp(tok->function_name, q->function_name) != 0) {
      brume_err_set(err, BRUME_INVALID_ARGUMENT,
                    "upgrade_token %s was granted for %s/%s, not for %s/%s", q->upgrade_token,
                    tok->account_id, tok->function_name, q->account_id, q->function_name);
      return ADMIT_ANSWERED;
    }
    if (tok->kind == BRUME_TOKEN_NEW_ENVIRONMENT) {
      brume_err_set(err, BRUME_FAILED_PRECONDITION,
                    "upgrade_token %s is already a new-environment token", q->upgrade_token);
      return ADMIT_ANSWERED;
    }
    if (!tok->provisioned) {
      int got = take_bucket_token(e, s, share_rec, now, res, out_job, wait_on);
      if (got <= 0) return got == 0 ? ADMIT_ANSWERED : ADMIT_WAITING;
    }
    const brume_token *up = NULL;
    if (brume_tokens_upgrade(e->tokens, q->upgrade_token, &up, err) < 0) return ADMIT_ANSWERED;
    memset(res, 0, sizeof(*res));
    res->granted = true;
    brume_tokens_string(e->tokens, up->id, res->token);
    res->token_deadline_unix_ms = brume_wall_ms() + (up->deadline_ms - now);
    res->provisioned = up->provisioned;
    return ADMIT_ANSWERED;
  }

  bool reserved = lv.function.reserved;
  pool *p = reserved ? &fn->pool : &acct->pool;
  uint32_t limit =
      reserved ? lv.function.reserved_concurrency : brume_concurrency_unreserved(&lv.account);
  brume_throttle reason = reserved ? BRUME_THROTTLE_RESERVED : BRUME_THROTTLE_ACCOUNT;
  if (p->in_use >= limit) {
    throttle(res, reason, 0);
    return ADMIT_ANSWERED;
  }
  if (p->in_use >= p->held && no_quorum) {
    brume_err_set(err, BRUME_UNAVAILABLE,
                  "etcd has lost its quorum and counting daemon %s holds no more room in this "
                  "limit (%u in use): it cannot take more until etcd is back",
                  e->daemon_id, p->in_use);
    return ADMIT_ANSWERED;
  }
  if (p->in_use >= p->held) {
    if (!p->busy && now < p->full_until_ms && p->full_limit == limit) {
      throttle(res, reason, 0);
      return ADMIT_ANSWERED;
    }
    *wait_on = &p->waiters;
    if (!p->busy) {
      p->busy = true;
      *out_job = new_job(e, JOB_GROW, p, NULL, 0);
    }
    return ADMIT_WAITING;
  }

  /* Within the qualifier's provisioned concurrency, cluster-wide: the qualifier's provisioned
   * grants are a pool too, with its block grown the same way. When the provisioned pool is full
   * (every daemon's blocks add up to it), the grant is an ordinary one: a cold start then takes
   * a bucket token. */
  uint32_t provisioned = lv.provisioned;
  qualifier_use *qu = NULL;
  bool is_provisioned = false;
  if (provisioned > 0) {
    qu = get_qualifier(e, fn, qualifier);
    pool *pp = &qu->pool;
    if (pp->in_use < provisioned) {
      if (pp->in_use < pp->held) {
        is_provisioned = true;
      } else if (!no_quorum && (pp->busy || now >= pp->full_until_ms || pp->full_limit != provisioned)) {
        *wait_on = &pp->waiters;
        if (!pp->busy) {
          pp->busy = true;
          *out_job = new_job(e, JOB_GROW, pp, NULL, 0);
        }
        return ADMIT_WAITING;
      }
    }
  }
  if (q->kind == BRUME_TOKEN_NEW_ENVIRONMENT && !is_provisioned) {
    int got = take_bucket_token(e, s, share_rec, now, res, out_job, wait_on);
    if (got <= 0) return got == 0 ? ADMIT_ANSWERED : ADMIT_WAITING;
  }

  brume_token_spec spec = {
      .account_id = q->account_id,
      .function_name = q->function_name,
      .qualifier = qualifier,
      .caller_id = q->caller_id,
      .kind = q->kind,
      .provisioned = is_provisioned,
      .owner = fn,
      .owner_flags =
          (reserved ? TOKEN_RESERVED_POOL : 0u) | (is_provisioned ? TOKEN_PROVISIONED : 0u),
      .hold_ms = q->hold_ms,
  };
  const brume_token *tok = brume_tokens_add(e->tokens, &spec, now, err);
  if (tok == NULL) return ADMIT_ANSWERED;
  p->in_use++;
  if (p->in_use > p->peak) p->peak = p->in_use;
  fn->in_use++;
  acct->in_use++;
  if (is_provisioned) {
    qu->pool.in_use++;
    if (qu->pool.in_use > qu->pool.peak) qu->pool.peak = qu->pool.in_use;
  }
  memset(res, 0, sizeof(*res));
  res->granted = true;
  brume_tokens_string(e->tokens, tok->id, res->token);
  res->token_deadline_unix_ms = brume_wall_ms() + (tok->deadline_ms - now);
  res->provisioned = is_provisioned;
  return ADMIT_ANSWERED;
}

/* Gives back what a released or expired token counted against. Under e->mu. */
static void unaccount(brume_token *tok) {
  rec *fn = tok->owner;
  rec *acct = fn->account;
  pool *p = (tok->owner_flags & TOKEN_RESERVED_POOL) ? &fn->pool : &acct->pool;
  p->in_use--;
  fn->in_use--;
  acct->in_use--;
  if (tok->owner_flags & TOKEN_PROVISIONED) {
    for (size_t i = 0; i < fn->n_quals; i++)
      if (strcmp(fn->quals[i]->name, tok->qualifier) == 0) fn->quals[i]->pool.in_use--;
  }
}

static void run_job(void *arg);

/* Queues j on the work queue; if the queue no longer takes jobs, fails its waiters. */
static void push_job(brume_engine *e, job *j);

/* Runs w through admission and answers it unless it now waits. Takes e->mu. */
static void run_waiter(brume_engine *e, waiter *w) {
  brume_acquire_result res;
  brume_err *err = NULL;
  job *j = NULL;
  waitlist *wait_on = NULL;
  pthread_mutex_lock(&e->mu);
  admit_outcome o = admit(e, &w->req, brume_mono_ms(), &res, &err, &j, &wait_on);
  if (o == ADMIT_WAITING) waitlist_push(wait_on, w);
  pthread_mutex_unlock(&e->mu);
  if (j) push_job(e, j);
  if (o == ADMIT_WAITING) return;
  w->done(w->user, err ? NULL : &res, err);
  brume_err_free(err);
  free(w);
}

/* Answers every waiter of list with err. */
static void fail_waiters(waiter *list, const brume_err *err) {
  for (waiter *w = list, *next; w; w = next) {
    next = w->next;
    w->done(w->user, NULL, err);
    free(w);
  }
}

/* The end of an etcd job: the waiters it served go through admission again; or, when the job
 * failed, they all get err, logged once as msg about key. Takes err. */
static void resume_waiters(brume_engine *e, waiter *list, brume_err *err, const char *msg,
                           const char *key) {
  if (err) {
    char q[512];
    brume_warn(msg, "key=%s err=%s", key, brume_log_quote(q, sizeof(q), err->msg));
    fail_waiters(list, err);
    brume_err_free(err);
    return;
  }
  for (waiter *w = list, *next; w; w = next) {
    next = w->next;
    run_waiter(e, w);
  }
}

static void job_done(brume_engine *e, job *j) {
  pthread_mutex_lock(&e->mu);
  if (--e->jobs == 0) pthread_cond_broadcast(&e->idle);
  pthread_mutex_unlock(&e->mu);
  free(j);
}

static void push_job(brume_engine *e, job *j) {
  brume_err *err = NULL;
  if (brume_workq_push(e->o.wq, run_job, j, &err) == 0) return;
  pthread_mutex_lock(&e->mu);
  waiter *list = NULL;
  if (j->kind == JOB_GROW || j->kind == JOB_SHRINK) {
    j->p->busy = false;
    list = waitlist_take(&j->p->waiters);
  } else {
    j->r->share.busy = false;
    list = waitlist_take(&j->r->share.waiters);
  }
  pthread_mutex_unlock(&e->mu);
  brume_err_wrap(&err, "counting daemon is stopping");
  fail_waiters(list, err);
  brume_err_free(err);
  job_done(e, j);
}

/* The error waiters get when etcd failed them: UNAVAILABLE (the caller tries another daemon),
 * except a timeout, which stays DEADLINE_EXCEEDED. */
static void etcd_failure(brume_err *err) {
  if (err->code != BRUME_DEADLINE_EXCEEDED) err->code = BRUME_UNAVAILABLE;
}

static void grow(brume_engine *e, job *j) {
  pool *p = j->p;
  pthread_mutex_lock(&e->mu);
  int64_t lease = e->lease;
  uint32_t limit = pool_limit(e, p);
  /* What demand needs now, plus a quarter of it, so that a rising load grows the block in a few
   * steps and not one txn per request. */
  uint64_t need = (uint64_t)p->in_use + demand_take(&p->waiters);
  uint64_t want = need + (need / 4 > 1 ? need / 4 : 1);
  if (want <= p->held) want = (uint64_t)p->held + 1;
  if (want > UINT32_MAX) want = UINT32_MAX;
  pthread_mutex_unlock(&e->mu);

  uint32_t held = 0;
  brume_err *err = NULL;
  int rc = brume_holdings_grow(e->o.etcd, p->prefix, e->daemon_id, lease, limit, (uint32_t)want,
                               &held, NULL, &err);
  if (e->m_etcd) brume_counter_inc(e->m_etcd, 1, "grow");

  pthread_mutex_lock(&e->mu);
  int64_t now = brume_mono_ms();
  if (rc == 0 || err->code == BRUME_ABORTED) {
    if (rc == 0 && lease == e->lease) {
      p->held = held;
    }
    if (rc < 0 || held < want) {
      /* No room for all of it: what did not fit is refused until the next look. Contention
       * that outlasted every attempt counts the same: other daemons are taking the room. */
      p->full_limit = limit;
      p->full_until_ms = now + POOL_FULL_RECHECK_MS;
    }
    brume_err_clear(&err);
  } else if (err->code == BRUME_NOT_FOUND) {
    /* The lease is gone in etcd, and the blocks with it. */
    p->held = 0;
    etcd_failure(err);
  } else {
    etcd_failure(err);
  }
  p->busy = false;
  waiter *list = waitlist_take(&p->waiters);
  pthread_mutex_unlock(&e->mu);

  resume_waiters(e, list, err, "Could not grow a block of concurrency in etcd.", p->prefix);
}

static void shrink(brume_engine *e, job *j) {
  pool *p = j->p;
  pthread_mutex_lock(&e->mu);
  int64_t lease = e->lease;
  /* Demand is low: requests turned away long ago, which came back and fitted, count no more. */
  p->waiters.deferred = 0;
  pthread_mutex_unlock(&e->mu);
  brume_err *err = NULL;
  /* Failing is safe: etcd keeps the larger block, and this daemon grants only up to the smaller
   * one, set when the job was queued. */
  if (brume_holdings_shrink(e->o.etcd, p->prefix, e->daemon_id, lease, j->n, &err) < 0) {
    char q[512];
    brume_warn("Could not shrink a block of concurrency in etcd.", "prefix=%s err=%s", p->prefix,
               brume_log_quote(q, sizeof(q), err->msg));
    brume_err_free(err);
  }
  if (e->m_etcd) brume_counter_inc(e->m_etcd, 1, "shrink");
  pthread_mutex_lock(&e->mu);
  p->busy = false;
  waiter *list = waitlist_take(&p->waiters);
  pthread_mutex_unlock(&e->mu);
  resume_waiters(e, list, NULL, NULL, NULL);
}

static void take(brume_engine *e, job *j) {
  share *s = &j->r->share;
  brume_bucket_params bp = cluster_bucket_params(e);
  pthread_mutex_lock(&e->mu);
  /* Enough for the waiters and as many again for the requests behind them, so that a steady
   * stream of cold starts takes tokens in batches. */
  size_t want = demand_take(&s->waiters) * 2;
  if (want < 1) want = 1;
  if (want > BUCKET_TAKE_MAX) want = BUCKET_TAKE_MAX;
  pthread_mutex_unlock(&e->mu);

  uint32_t got = 0;
  int64_t retry = 0;
  brume_err *err = NULL;
  int rc = brume_bucket_share_take(e->o.etcd, s->key, &bp, brume_wall_ms(), (uint32_t)want, &got,
                                   &retry, &err);
  if (e->m_etcd) brume_counter_inc(e->m_etcd, 1, "bucket_take");

  pthread_mutex_lock(&e->mu);
  int64_t now = brume_mono_ms();
  if (rc == 0 || err->code == BRUME_ABORTED) {
    s->local += got;
    s->last_take_ms = now;
    if (got < want) {
      s->empty_until_ms = now + (retry > BUCKET_EMPTY_RECHECK_MS ? retry : BUCKET_EMPTY_RECHECK_MS);
      s->next_token_ms = now + retry;
    }
    brume_err_clear(&err);
  } else {
    etcd_failure(err);
  }
  s->busy = false;
  waiter *list = waitlist_take(&s->waiters);
  pthread_mutex_unlock(&e->mu);

  resume_waiters(e, list, err, "Could not take scaling-bucket tokens from etcd.", s->key);
}

static void give_back(brume_engine *e, job *j) {
  share *s = &j->r->share;
  brume_bucket_params bp = cluster_bucket_params(e);
  brume_err *err = NULL;
  /* A failure loses the tokens: the cluster starts fewer environments, never more. */
  if (brume_bucket_share_give_back(e->o.etcd, s->key, &bp, brume_wall_ms(), j->n, &err) < 0) {
    char q[512];
    brume_warn("Could not give scaling-bucket tokens back to etcd.", "key=%s tokens=%u err=%s",
               s->key, j->n, brume_log_quote(q, sizeof(q), err->msg));
    brume_err_free(err);
  }
  if (e->m_etcd) brume_counter_inc(e->m_etcd, 1, "bucket_give_back");
  pthread_mutex_lock(&e->mu);
  s->busy = false;
  s->waiters.deferred = 0; /* as in shrink: demand is low */
  waiter *list = waitlist_take(&s->waiters);
  pthread_mutex_unlock(&e->mu);
  resume_waiters(e, list, NULL, NULL, NULL);
}

static void run_job(void *arg) {
  job *j = arg;
  switch (j->kind) {
    case JOB_GROW:
      grow(j->e, j);
      break;
    case JOB_SHRINK:
      shrink(j->e, j);
      break;
    case JOB_TAKE:
      take(j->e, j);
      break;
    case JOB_GIVE_BACK:
      give_back(j->e, j);
      break;
  }
  job_done(j->e, j);
}

/* ---- the API ---- */

/* Account ids and function names become etcd key segments: non-empty, at most 255 bytes,
 * printable, no '/' (the same rule as counting/limits_store.h). */
static int check_name(const char *what, const char *s, brume_err **err) {
  if (s == NULL || s[0] == '\0')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s is missing", what);
  size_t n = strlen(s);
  if (n > 255)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s is %zu bytes long, over 255", what, n);
  for (const char *c = s; *c; c++)
    if ((unsigned char)*c < 0x21 || *c == 0x7f || *c == '/')
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           "%s \"%.64s\" holds a '/', a space or a control character", what, s);
  return 0;
}

static int check_request(const brume_acquire_req *q, brume_err **err) {
  if (check_name("account id", q->account_id, err) < 0 ||
      check_name("function name", q->function_name, err) < 0)
    return -1;
  if (q->kind != BRUME_TOKEN_NEW_ENVIRONMENT && q->kind != BRUME_TOKEN_WARM_ENVIRONMENT)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "kind %d is not NEW_ENVIRONMENT or WARM_ENVIRONMENT", (int)q->kind);
  if (q->upgrade_token && q->upgrade_token[0] && q->kind != BRUME_TOKEN_NEW_ENVIRONMENT)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "upgrade_token is only for kind NEW_ENVIRONMENT");
  if (q->qualifier && q->qualifier[0] && check_name("qualifier", q->qualifier, err) < 0) return -1;
  if (q->caller_id && strlen(q->caller_id) > 255)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "caller_id is over 255 bytes");
  if (q->hold_ms > BRUME_TOKENS_HOLD_MS_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "hold_ms %u is over the %u allowed",
                         q->hold_ms, BRUME_TOKENS_HOLD_MS_MAX);
  return 0;
}

/* A waiter holding a copy of q. */
static waiter *new_waiter(const brume_acquire_req *q, brume_acquire_done done, void *user) {
  const char *src[5] = {q->account_id, q->function_name, q->qualifier ? q->qualifier : "",
                        q->caller_id ? q->caller_id : "", q->upgrade_token ? q->upgrade_token : ""};
  size_t len[5], total = 0;
  for (int i = 0; i < 5; i++) total += (len[i] = strlen(src[i])) + 1;
  waiter *w = brume_xmalloc(sizeof(*w) + total);
  w->next = NULL;
  w->done = done;
  w->user = user;
  w->req = *q;
  char *dst = w->buf;
  const char **fields[5] = {&w->req.account_id, &w->req.function_name, &w->req.qualifier,
                            &w->req.caller_id, &w->req.upgrade_token};
  for (int i = 0; i < 5; i++) {
    memcpy(dst, src[i], len[i] + 1);
    *fields[i] = dst;
    dst += len[i] + 1;
  }
  return w;
}

int brume_engine_check_daemon_id(const char *daemon_id, brume_err **err) {
  if (brume_tokens_check_daemon_id(daemon_id, err) < 0) return -1;
  if (strchr(daemon_id, '/'))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "counting daemon id \"%s\" holds a '/', which would split its etcd keys",
                         daemon_id);
  return 0;
}

brume_engine *brume_engine_new(const brume_engine_opts *opts, brume_err **err) {
  size_t rl = opts->root ? strlen(opts->root) : 0;
  if (rl == 0 || opts->root[rl - 1] != '/') {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "engine: root \"%s\" must end with '/'",
                  opts->root ? opts->root : "");
    return NULL;
  }
  if (brume_engine_check_daemon_id(opts->daemon_id, err) < 0) return NULL;
  brume_tokens *tokens = brume_tokens_new(opts->daemon_id, err);
  if (tokens == NULL) return NULL;
  brume_engine *e = brume_xcalloc(1, sizeof(*e));
  e->o = *opts;
  if (e->o.shrink_after_ms <= 0) e->o.shrink_after_ms = BRUME_ENGINE_SHRINK_AFTER_MS_DEFAULT;
  if (e->o.records_idle_ms <= 0) e->o.records_idle_ms = BRUME_ENGINE_RECORDS_IDLE_MS_DEFAULT;
  e->root = brume_xstrdup(opts->root);
  e->daemon_id = brume_xstrdup(opts->daemon_id);
  e->tokens = tokens;
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->idle, NULL);
  grow_table(e);
  if (opts->metrics) {
    e->m_etcd = brume_metrics_counter(opts->metrics, "brume_counting_etcd_requests_total",
                                      "etcd operations made to grow or shrink blocks and take or "
                                      "give back scaling-bucket tokens, by operation.",
                                      "op", NULL);
    e->m_expired =
        brume_metrics_counter(opts->metrics, "brume_counting_tokens_expired_total",
                              "Tokens taken back at their deadline, never released.", NULL);
    e->m_waits = brume_metrics_counter(opts->metrics, "brume_counting_acquire_waits_total",
                                       "Acquires that waited for etcd (a block to grow or bucket "
                                       "tokens to take) instead of being answered from memory.",
                                       NULL);
    e->m_held = brume_metrics_gauge(opts->metrics, "brume_counting_tokens_held",
                                    "Tokens granted and not yet released or taken back.", NULL);
    e->m_records = brume_metrics_gauge(opts->metrics, "brume_counting_records",
                                       "Accounts and functions the daemon remembers.", NULL);
  }
  return e;
}

void brume_engine_free(brume_engine *e) {
  if (e == NULL) return;
  pthread_mutex_lock(&e->mu);
  while (e->jobs > 0) pthread_cond_wait(&e->idle, &e->mu);
  pthread_mutex_unlock(&e->mu);
  /* Unused bucket tokens go back (best effort; otherwise they are lost, which only slows the
   * cluster's cold starts). The blocks need nothing: they go with the lease, which the daemon
   * revokes next. */
  brume_bucket_params bp = cluster_bucket_params(e);
  for (size_t i = 0; i < e->n_slots; i++)
    for (rec *r = e->table[i], *next; r; r = next) {
      next = r->next;
      brume_err *err = NULL;
      if (r->share.local > 0)
        brume_bucket_share_give_back(e->o.etcd, r->share.key, &bp, brume_wall_ms(), r->share.local,
                                     &err);
      brume_err_clear(&err);
      free_rec(r);
    }
  free(e->table);
  brume_tokens_free(e->tokens);
  pthread_mutex_destroy(&e->mu);
  pthread_cond_destroy(&e->idle);
  free(e->root);
  free(e->daemon_id);
  free(e);
}

void brume_engine_acquire(brume_engine *e, const brume_acquire_req *req, brume_acquire_done done,
                          void *user) {
  brume_err *err = NULL;
  if (check_request(req, &err) < 0) {
    done(user, NULL, err);
    brume_err_free(err);
    return;
  }
  brume_acquire_result res;
  job *j = NULL;
  waitlist *wait_on = NULL;
  pthread_mutex_lock(&e->mu);
  admit_outcome o = admit(e, req, brume_mono_ms(), &res, &err, &j, &wait_on);
  if (o == ADMIT_WAITING && req->memory_only) {
    /* Answered now; the job that admission queued (if any) still runs, so that the request,
     * sent again, finds the block grown or joins the job under way. */
    o = ADMIT_ANSWERED;
    wait_on->deferred++;
    brume_err_set(&err, BRUME_ABORTED,
                  "this daemon must first grow its block of concurrency or take scaling tokens "
                  "in etcd; send the request again without memory_only");
  } else if (o == ADMIT_WAITING) {
    /* Only a request that waits is copied. It may be one turned away before and sent again:
     * counted now as a waiter, it is no longer counted as deferred (or a job would count it
     * twice). */
    if (wait_on->deferred > 0) wait_on->deferred--;
    waitlist_push(wait_on, new_waiter(req, done, user));
    if (e->m_waits) brume_counter_inc(e->m_waits, 1);
  }
  pthread_mutex_unlock(&e->mu);
  if (j) push_job(e, j);
  if (o == ADMIT_WAITING) return;
  done(user, err ? NULL : &res, err);
  brume_err_free(err);
}

int brume_engine_release(brume_engine *e, const char *token, bool *was_held, brume_err **err) {
  brume_token *tok = NULL;
  pthread_mutex_lock(&e->mu);
  int rc = brume_tokens_release(e->tokens, token, &tok, err);
  if (rc == 1) unaccount(tok);
  pthread_mutex_unlock(&e->mu);
  brume_token_free(tok);
  if (rc < 0) return -1;
  *was_held = rc == 1;
  return 0;
}

/* A pool's block when shrunk: what is in use plus the same margin a grow adds. */
static uint32_t keep_for(uint32_t in_use) {
  return in_use == 0 ? 0 : in_use + (in_use / 4 > 1 ? in_use / 4 : 1);
}

/* A shrink job for p if its block has been larger than the peak of use needs for
 * shrink_after_ms; NULL otherwise. Under e->mu. */
static job *shrink_if_idle(brume_engine *e, pool *p, int64_t now) {
  /* The block a shrink keeps covers the peak of use over the whole period, not use at this
   * instant: a load that swings between ticks would otherwise shrink below its peaks and grow
   * straight back, a pair of etcd writes every period for nothing. */
  if (p->over_since_ms == 0) p->peak = p->in_use;
  uint32_t keep = keep_for(p->peak);
  if (p->busy || p->waiters.n > 0 || p->held <= keep) {
    p->over_since_ms = 0;
    return NULL;
  }
  if (p->over_since_ms == 0) {
    p->over_since_ms = now;
    return NULL;
  }
  if (now - p->over_since_ms < e->o.shrink_after_ms || e->lease == 0) return NULL;
  /* Granting stops at the smaller block at once; etcd learns it next. */
  p->held = keep;
  p->over_since_ms = 0;
  p->busy = true;
  return new_job(e, JOB_SHRINK, p, NULL, keep);
}

static bool pool_idle(const pool *p) {
  return p->in_use == 0 && p->held == 0 && !p->busy && p->waiters.n == 0;
}

/* A record nothing needs any more: no tokens, no blocks, no bucket tokens, no etcd job, no
 * function pointing at it, and not named for records_idle_ms. Dropping it frees the daemon's
 * memory of accounts and functions no longer invoked; a new Acquire makes it again. */
static bool rec_idle(const brume_engine *e, const rec *r, int64_t now) {
  if (now - r->last_used_ms < e->o.records_idle_ms || r->in_use > 0 || r->n_functions > 0 ||
      !pool_idle(&r->pool) || r->share.local > 0 || r->share.busy || r->share.waiters.n > 0)
    return false;
  for (size_t i = 0; i < r->n_quals; i++)
    if (!pool_idle(&r->quals[i]->pool)) return false;
  return true;
}

void brume_engine_tick(brume_engine *e) {
  int64_t now = brume_mono_ms();
  job *jobs[64];
  size_t n_jobs = 0;
  brume_token *expired[256];
  size_t n_expired = 0, total_expired = 0;

  pthread_mutex_lock(&e->mu);
  follow_lease(e);
  while ((n_expired = brume_tokens_expire(e->tokens, now, expired, BRUME_ARRAY_LEN(expired))) > 0) {
    for (size_t i = 0; i < n_expired; i++) {
      unaccount(expired[i]);
      brume_info("A token was taken back at its deadline, never released.",
                 "account=%s function=%s caller=%s", expired[i]->account_id,
                 expired[i]->function_name, expired[i]->caller_id);
      brume_token_free(expired[i]);
    }
    total_expired += n_expired;
    if (n_expired < BRUME_ARRAY_LEN(expired)) break;
  }
  /* Every SCAN_EVERY_MS: blocks larger than use needs for shrink_after_ms shrink; bucket tokens
   * unused for a second go back; idle records go. At most 64 jobs a scan; the rest wait for the
   * next one. */
  bool scan = now - e->last_scan_ms >= SCAN_EVERY_MS;
  if (scan) e->last_scan_ms = now;
  /* Without a live lease (etcd down, or without its quorum) the writes would fail, and a shrink
   * would only lower what may be granted meanwhile: shrinking and giving back wait for etcd. */
  if (scan && !e->o.lease_healthy(e->o.lease_user)) scan = false;
  for (size_t i = 0; scan && i < e->n_slots && n_jobs < BRUME_ARRAY_LEN(jobs); i++)
    for (rec **link = &e->table[i], *r; (r = *link) != NULL && n_jobs < BRUME_ARRAY_LEN(jobs);) {
      for (size_t k = 0; k <= r->n_quals && n_jobs < BRUME_ARRAY_LEN(jobs); k++) {
        job *j = shrink_if_idle(e, k == 0 ? &r->pool : &r->quals[k - 1]->pool, now);
        if (j) jobs[n_jobs++] = j;
      }
      share *s = &r->share;
      if (s->local > 0 && !s->busy && n_jobs < BRUME_ARRAY_LEN(jobs) &&
          now - s->last_take_ms >= BUCKET_GIVE_BACK_AFTER_MS) {
        s->busy = true;
        jobs[n_jobs++] = new_job(e, JOB_GIVE_BACK, NULL, r, s->local);
        s->local = 0;
      }
      if (rec_idle(e, r, now)) {
        *link = r->next;
        if (r->account) r->account->n_functions--;
        e->n_recs--;
        free_rec(r);
      } else {
        link = &r->next;
      }
    }
  size_t held = brume_tokens_count(e->tokens), records = e->n_recs;
  pthread_mutex_unlock(&e->mu);

  for (size_t i = 0; i < n_jobs; i++) push_job(e, jobs[i]);
  if (e->m_expired && total_expired) brume_counter_inc(e->m_expired, (double)total_expired);
  if (e->m_held) brume_gauge_set(e->m_held, (double)held);
  if (e->m_records) brume_gauge_set(e->m_records, (double)records);
}

size_t brume_engine_records(brume_engine *e) {
  pthread_mutex_lock(&e->mu);
  size_t n = e->n_recs;
  pthread_mutex_unlock(&e->mu);
  return n;
}

void brume_engine_each_use(brume_engine *e, brume_engine_use_fn fn, void *user) {
  pthread_mutex_lock(&e->mu);
  for (size_t i = 0; i < e->n_slots; i++)
    for (const rec *r = e->table[i]; r; r = r->next)
      fn(user, &(brume_engine_use){.account_id = r->account_id,
                                   .function_name = r->function_name,
                                   .in_use = r->in_use,
                                   .held = r->pool.held});
  pthread_mutex_unlock(&e->mu);
}

size_t brume_engine_tokens_held(brume_engine *e) {
  pthread_mutex_lock(&e->mu);
  size_t n = brume_tokens_count(e->tokens);
  pthread_mutex_unlock(&e->mu);
  return n;
}

static uint32_t clamp32(uint64_t v) {
  return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

int brume_engine_state(brume_engine *e, const char *account, const char *function,
                       brume_engine_account_state *acct, brume_engine_function_state *fn,
                       brume_err **err) {
  if (check_name("account id", account, err) < 0) return -1;
  bool want_fn = function && function[0];
  if (want_fn && check_name("function name", function, err) < 0) return -1;
  brume_account_limits al;
  brume_function_limits fl = {0};
  brume_cluster_limits cl;
  brume_limits_store_account(e->o.limits, account, &al);
  brume_limits_store_cluster(e->o.limits, &cl);
  if (want_fn) brume_limits_store_function(e->o.limits, account, function, &fl);
  memset(acct, 0, sizeof(*acct));
  if (fn) memset(fn, 0, sizeof(*fn));
  acct->concurrency_limit = al.limit;
  acct->unreserved_limit = brume_concurrency_unreserved(&al);
  acct->reserved_total = al.reserved_total;
  acct->provisioned_total = al.provisioned_total;

  char *acct_prefix, *acct_share, *fn_prefix = NULL, *fn_share = NULL;
  pthread_mutex_lock(&e->mu);
  rec *ar = get_rec(e, account, NULL);
  acct->in_use = ar->in_use;
  uint64_t held = ar->pool.held;
  acct_prefix = brume_xasprintf("%scount/%s/", e->root, account);
  acct_share = brume_xstrdup(ar->share.key);
  for (size_t i = 0; i < e->n_slots; i++)
    for (rec *r = e->table[i]; r; r = r->next)
      if (r->account == ar) held += r->pool.held;
  acct->held = clamp32(held);
  if (want_fn && fn) {
    rec *fr = get_rec(e, account, function);
    fn->reserved = fl.reserved;
    fn->reserved_concurrency = fl.reserved_concurrency;
    fn->provisioned = fl.provisioned;
    fn->in_use = fr->in_use;
    fn->held = fr->pool.held;
    fn_prefix = brume_xstrdup(fr->pool.prefix);
    fn_share = brume_xstrdup(fr->share.key);
  }
  pthread_mutex_unlock(&e->mu);

  brume_bucket_params bp = bucket_params(&cl);
  int rc = -1;
  if (brume_holdings_sum(e->o.etcd, acct_prefix, &acct->cluster_held, NULL, err) < 0) goto out;
  if (cl.model == BRUME_SCALING_ACCOUNT) {
    acct->has_scaling = true;
    if (brume_bucket_share_state(e->o.etcd, acct_share, &bp, brume_wall_ms(), &acct->scaling, err) <
        0)
      goto out;
  }
  if (want_fn && fn) {
    if (brume_holdings_sum(e->o.etcd, fn_prefix, &fn->cluster_held, NULL, err) < 0) goto out;
    if (cl.model == BRUME_SCALING_FUNCTION) {
      fn->has_scaling = true;
      if (brume_bucket_share_state(e->o.etcd, fn_share, &bp, brume_wall_ms(), &fn->scaling, err) <
          0)
        goto out;
    }
  }
  rc = 0;
out:
  if (rc < 0) etcd_failure(*err);
  free(acct_prefix);
  free(acct_share);
  free(fn_prefix);
  free(fn_share);
  return rc;
}
