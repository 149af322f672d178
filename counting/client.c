/* Acquire and Release coalesced into batch calls (client.h). */
#include "client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"

/* counting.proto's method order (checked in brume_counting_client_new). */
enum { M_ACQUIRE_BATCH = 3, M_RELEASE_BATCH = 4 };

#define DEFAULT_MAX_BATCH 256
#define DEFAULT_MAX_IN_FLIGHT 2

/* A queued request: a copy of the caller's message (one allocation with its strings) and its
 * callback, of the lane's kind. */
typedef struct entry {
  void *req; /* Brume__AcquireRequest or Brume__ReleaseRequest */
  union {
    brume_counting_acquire_done acquire;
    brume_counting_release_done release;
  } done;
  void *user;
} entry;

/* The queue and the batch calls of one kind. */
typedef struct lane {
  brume_counting_client *client;
  unsigned method;
  bool is_acquire;
  pthread_mutex_t lock; /* guards the fields below */
  entry *queue;
  size_t n, cap;
  unsigned in_flight; /* batch calls under way, not counting those that may wait */
  uint64_t batches, requests, waiting_batches, waiting_requests;
} lane;

struct brume_counting_client {
  brume_rpc_client *rpc;
  unsigned max_batch, max_in_flight;
  pthread_rwlock_t send_lock; /* read: starting a batch call; write: setting closing */
  atomic_bool closing;
  lane acquire, release;
};

/* A batch call under way: the entries it carries, in the request's order. An Acquire batch is
 * first sent memory_only; the requests that would have waited for etcd come back ABORTED and
 * leave again at once in a batch that may wait (may_wait), which holds no slot of the lane. */
typedef struct batch {
  lane *lane;
  bool may_wait;
  size_t n;
  entry *entries;
} batch;

/* Answers e (resp or err) and frees its copy. */
static void answer(const lane *l, entry *e, const ProtobufCMessage *resp, const brume_err *err) {
  if (l->is_acquire)
    e->done.acquire(e->user, (const Brume__AcquireResponse *)resp, err);
  else
    e->done.release(e->user, (const Brume__ReleaseResponse *)resp, err);
  free(e->req);
}

static void answer_all(batch *b, const brume_err *err) {
  for (size_t i = 0; i < b->n; i++) answer(b->lane, &b->entries[i], NULL, err);
}

/* With l->lock held: the next batch (up to max_batch of the queued entries, oldest first), or
 * NULL when nothing waits or max_in_flight batch calls are under way. */
static batch *take_batch(lane *l) {
  brume_counting_client *c = l->client;
  if (l->n == 0 || l->in_flight >= c->max_in_flight || atomic_load(&c->closing)) return NULL;
  size_t k = l->n < c->max_batch ? l->n : c->max_batch;
  batch *b = brume_xmalloc(sizeof(*b));
  b->lane = l;
  b->may_wait = false;
  b->n = k;
  b->entries = brume_xmalloc(k * sizeof(*b->entries));
  memcpy(b->entries, l->queue, k * sizeof(*b->entries));
  memmove(l->queue, l->queue + k, (l->n - k) * sizeof(*l->queue));
  l->n -= k;
  l->in_flight++;
  l->batches++;
  l->requests += k;
  return b;
}

static bool start_batch(batch *b);

/* b is answered: frees it and sends what queued meanwhile. A batch that cannot start is answered
 * at once and the next one tried, in this loop rather than by recursion (a deep queue of small
 * batches would otherwise go as deep into the stack). */
static void finish_batch(batch *b) {
  for (;;) {
    lane *l = b->lane;
    bool held_slot = !b->may_wait;
    free(b->entries);
    free(b);
    if (!held_slot) return;
    pthread_mutex_lock(&l->lock);
    l->in_flight--;
    batch *next = take_batch(l);
    pthread_mutex_unlock(&l->lock);
    if (next == NULL || start_batch(next)) return;
    b = next;
  }
}

/* Starts b's call; when it cannot start, answers its requests and finishes it. */
static void send_batch(batch *b) {
  if (!start_batch(b)) finish_batch(b);
}

/* The statuses of a batch answer, checked against the batch: -1 with INTERNAL when the daemon
 * answered another number of requests than it was sent. */
static int check_counts(const batch *b, size_t n_responses, size_t n_statuses, brume_err **err) {
  if (n_responses == b->n && n_statuses == b->n) return 0;
  return brume_err_set(err, BRUME_INTERNAL,
                       "the counting daemon answered a batch of %zu requests with %zu answers and "
                       "%zu statuses",
                       b->n, n_responses, n_statuses);
}

static void on_batch_done(void *user, ProtobufCMessage *reply, const brume_err *err) {
  batch *b = user;
  lane *l = b->lane;
  if (reply == NULL) {
    answer_all(b, err);
    finish_batch(b);
    return;
  }
  ProtobufCMessage **responses;
  Brume__BatchStatus **statuses;
  size_t n_responses, n_statuses;
  if (l->is_acquire) {
    Brume__AcquireBatchResponse *r = (Brume__AcquireBatchResponse *)reply;
    responses = (ProtobufCMessage **)r->responses;
    n_responses = r->n_responses;
    statuses = r->statuses;
    n_statuses = r->n_statuses;
  } else {
    Brume__ReleaseBatchResponse *r = (Brume__ReleaseBatchResponse *)reply;
    responses = (ProtobufCMessage **)r->responses;
    n_responses = r->n_responses;
    statuses = r->statuses;
    n_statuses = r->n_statuses;
  }
  brume_autoptr(brume_err) bad = NULL;
  batch *again = NULL; /* the requests that would have waited for etcd */
  if (check_counts(b, n_responses, n_statuses, &bad) < 0) {
    answer_all(b, bad);
  } else {
    for (size_t i = 0; i < b->n; i++) {
      int32_t code = statuses[i]->code;
      if (code == BRUME_OK) {
        answer(l, &b->entries[i], responses[i], NULL);
        continue;
      }
      if (code == BRUME_ABORTED && l->is_acquire && !b->may_wait) {
        if (again == NULL) {
          again = brume_xmalloc(sizeof(*again));
          *again = (batch){.lane = b->lane, .may_wait = true};
          again->entries = brume_xmalloc(b->n * sizeof(*again->entries));
        }
        again->entries[again->n++] = b->entries[i];
        continue;
      }
      brume_autoptr(brume_err) one = NULL;
      /* A code outside gRPC's range would not mean anything to the caller. */
      brume_err_set(&one, code > 0 && code <= BRUME_UNAUTHENTICATED ? code : BRUME_INTERNAL, "%s",
                    statuses[i]->message);
      answer(l, &b->entries[i], NULL, one);
    }
  }
  brume_proto_free(reply);
  finish_batch(b);
  if (again) {
    pthread_mutex_lock(&l->lock);
    l->waiting_batches++;
    l->waiting_requests += again->n;
    pthread_mutex_unlock(&l->lock);
    send_batch(again);
  }
}

/* Starts b's batch call: true, or false once b's requests are answered with the reason it could
 * not start (b is then the caller's to finish). */
static bool start_batch(batch *b) {
  lane *l = b->lane;
  brume_counting_client *c = l->client;
  void **reqs = brume_xmalloc(b->n * sizeof(*reqs));
  for (size_t i = 0; i < b->n; i++) reqs[i] = b->entries[i].req;
  Brume__AcquireBatchRequest ab = BRUME__ACQUIRE_BATCH_REQUEST__INIT;
  Brume__ReleaseBatchRequest rb = BRUME__RELEASE_BATCH_REQUEST__INIT;
  ProtobufCMessage *msg;
  if (l->is_acquire) {
    ab.n_requests = b->n;
    ab.requests = (Brume__AcquireRequest **)reqs;
    ab.memory_only = !b->may_wait;
    msg = &ab.base;
  } else {
    rb.n_requests = b->n;
    rb.requests = (Brume__ReleaseRequest **)reqs;
    msg = &rb.base;
  }
  brume_autoptr(brume_err) err = NULL;
  /* Under the read lock: brume_counting_client_free sets closing under the write lock, so no
   * call starts once it has begun to free the rpc client. The message is packed before
   * brume_rpc_unary_async returns, so reqs may go at once. */
  pthread_rwlock_rdlock(&c->send_lock);
  int rc = -1;
  if (atomic_load(&c->closing))
    brume_err_set(&err, BRUME_CANCELLED, "the counting client is closing");
  else
    rc = brume_rpc_unary_async(c->rpc, &brume__counting__descriptor, l->method, msg, NULL,
                               on_batch_done, b, &err);
  pthread_rwlock_unlock(&c->send_lock);
  free(reqs);
  if (rc == 0) return true;
  answer_all(b, err);
  return false;
}

static void enqueue(lane *l, entry e) {
  if (atomic_load(&l->client->closing)) {
    brume_autoptr(brume_err) err = NULL;
    brume_err_set(&err, BRUME_CANCELLED, "the counting client is closing");
    answer(l, &e, NULL, err);
    return;
  }
  pthread_mutex_lock(&l->lock);
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 64;
    l->queue = brume_xrealloc(l->queue, l->cap * sizeof(*l->queue));
  }
  l->queue[l->n++] = e;
  batch *b = take_batch(l);
  pthread_mutex_unlock(&l->lock);
  if (b) send_batch(b);
}

/* Appends a copy of s (NULL: "") at *p and returns it. */
static char *put(char **p, const char *s) {
  char *at = *p;
  size_t len = s ? strlen(s) : 0;
  if (len) memcpy(at, s, len);
  at[len] = '\0';
  *p += len + 1;
  return at;
}

/* A message decoded from the wire may carry fields this build does not know, which protobuf-c
 * would pack again: the copy must not point at the caller's, which may go. */
static void drop_unknown_fields(ProtobufCMessage *m) {
  m->n_unknown_fields = 0;
  m->unknown_fields = NULL;
}

static size_t len0(const char *s) {
  return (s ? strlen(s) : 0) + 1;
}

typedef struct acquire_copy {
  Brume__AcquireRequest req;
  Brume__FunctionRef fn;
  char strings[];
} acquire_copy;

void brume_counting_client_acquire(brume_counting_client *c, const Brume__AcquireRequest *req,
                                   brume_counting_acquire_done done, void *user) {
  const Brume__FunctionRef *fn = req->function;
  size_t size = len0(req->caller_id) + len0(req->upgrade_token);
  if (fn) size += len0(fn->account_id) + len0(fn->function_name) + len0(fn->qualifier);
  acquire_copy *cp = brume_xmalloc(sizeof(*cp) + size);
  char *p = cp->strings;
  cp->req = *req;
  drop_unknown_fields(&cp->req.base);
  cp->req.caller_id = put(&p, req->caller_id);
  cp->req.upgrade_token = put(&p, req->upgrade_token);
  if (fn) {
    cp->fn = *fn;
    drop_unknown_fields(&cp->fn.base);
    cp->fn.account_id = put(&p, fn->account_id);
    cp->fn.function_name = put(&p, fn->function_name);
    cp->fn.qualifier = put(&p, fn->qualifier);
    cp->req.function = &cp->fn;
  }
  enqueue(&c->acquire, (entry){.req = &cp->req, .done.acquire = done, .user = user});
}

typedef struct release_copy {
  Brume__ReleaseRequest req;
  char strings[];
} release_copy;

void brume_counting_client_release(brume_counting_client *c, const Brume__ReleaseRequest *req,
                                   brume_counting_release_done done, void *user) {
  release_copy *cp = brume_xmalloc(sizeof(*cp) + len0(req->token) + len0(req->caller_id));
  char *p = cp->strings;
  cp->req = *req;
  drop_unknown_fields(&cp->req.base);
  cp->req.token = put(&p, req->token);
  cp->req.caller_id = put(&p, req->caller_id);
  enqueue(&c->release, (entry){.req = &cp->req, .done.release = done, .user = user});
}

static void lane_init(lane *l, brume_counting_client *c, unsigned method, bool is_acquire) {
  *l = (lane){.client = c, .method = method, .is_acquire = is_acquire};
  pthread_mutex_init(&l->lock, NULL);
}

brume_counting_client *brume_counting_client_new(const char *target,
                                                 const brume_counting_client_opts *opts,
                                                 brume_err **err) {
  static const brume_counting_client_opts defaults;
  if (opts == NULL) opts = &defaults;
  BRUME_ENSURE(
      strcmp(brume__counting__descriptor.methods[M_ACQUIRE_BATCH].name, "AcquireBatch") == 0 &&
      strcmp(brume__counting__descriptor.methods[M_RELEASE_BATCH].name, "ReleaseBatch") == 0);
  if (opts->max_batch > BRUME_COUNTING_BATCH_MAX) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT,
                  "counting client: a batch of %u requests is over the daemon's %d",
                  opts->max_batch, BRUME_COUNTING_BATCH_MAX);
    return NULL;
  }
  brume_rpc_client *rpc = brume_rpc_client_new(target, &opts->rpc, err);
  if (rpc == NULL) return NULL;
  brume_counting_client *c = brume_xcalloc(1, sizeof(*c));
  c->rpc = rpc;
  c->max_batch = opts->max_batch ? opts->max_batch : DEFAULT_MAX_BATCH;
  c->max_in_flight = opts->max_in_flight ? opts->max_in_flight : DEFAULT_MAX_IN_FLIGHT;
  atomic_init(&c->closing, false);
  pthread_rwlock_init(&c->send_lock, NULL);
  lane_init(&c->acquire, c, M_ACQUIRE_BATCH, true);
  lane_init(&c->release, c, M_RELEASE_BATCH, false);
  return c;
}

void brume_counting_client_stats_get(brume_counting_client *c, brume_counting_client_stats *out) {
  pthread_mutex_lock(&c->acquire.lock);
  out->acquire_batches = c->acquire.batches;
  out->acquire_requests = c->acquire.requests;
  out->acquire_waiting_batches = c->acquire.waiting_batches;
  out->acquire_waiting_requests = c->acquire.waiting_requests;
  pthread_mutex_unlock(&c->acquire.lock);
  pthread_mutex_lock(&c->release.lock);
  out->release_batches = c->release.batches;
  out->release_requests = c->release.requests;
  pthread_mutex_unlock(&c->release.lock);
}

static void lane_close(lane *l) {
  brume_autoptr(brume_err) err = NULL;
  brume_err_set(&err, BRUME_CANCELLED, "the counting client is closing");
  /* Nothing is sent once closing is set, and every batch call has ended: the queue is ours. */
  for (size_t i = 0; i < l->n; i++) answer(l, &l->queue[i], NULL, err);
  free(l->queue);
  pthread_mutex_destroy(&l->lock);
}

void brume_counting_client_free(brume_counting_client *c) {
  if (c == NULL) return;
  pthread_rwlock_wrlock(&c->send_lock);
  atomic_store(&c->closing, true);
  pthread_rwlock_unlock(&c->send_lock);
  /* Cancels the batch calls under way and waits for their callbacks, which send nothing more. */
  brume_rpc_client_free(c->rpc);
  lane_close(&c->acquire);
  lane_close(&c->release);
  pthread_rwlock_destroy(&c->send_lock);
  free(c);
}
