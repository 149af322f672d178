/* The gRPC client side of the rpc module (see rpc.h).
 *
 * A client is one channel, kept open; gRPC reconnects it with a short backoff after the server
 * goes away. Methods are registered on the channel on first use (grpc_channel_register_call), so
 * later calls skip parsing the method path. Each unary call is one batch of six operations.
 * Blocking calls wait on a completion queue of their own (pluck); async calls complete on the
 * client's queue, which one thread serves and where the callbacks run. That thread starts with
 * the first async call: while it idles in the queue, gRPC hands it the channel's socket reads,
 * and every blocking call's reply would then take a detour through it (+12 us p50, measured by
 * bench/run.sh rpc). */
#include <grpc/grpc.h>
#include <grpc/support/alloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "rpc.h"
#include "rpc_codec.h"

struct registered {
  const ProtobufCServiceDescriptor *svc;
  unsigned method;
  char *path;
  void *handle;
};

struct brume_rpc_client {
  char *target;
  grpc_channel *channel;
  int64_t default_deadline_ms;
  pthread_rwlock_t reg_lock;
  struct registered *reg;
  size_t nreg;
  /* async completions: on the shared loop given at creation, or on the client's own, which
   * exists from the first async call on */
  pthread_mutex_t async_lock;
  brume_rpc_loop *loop;
  bool own_loop;
  atomic_long outstanding;
  struct pending *live; /* async calls under way, under async_lock: free cancels them */
};

/* Everything one unary call needs until its batch completes. */
struct pending {
  struct pending *prev, *next; /* in client->live, for async calls */
  brume_rpc_client *client;
  const ProtobufCMethodDescriptor *method;
  const char *path;
  grpc_call *call;
  grpc_metadata md[2];
  size_t nmd;
  grpc_byte_buffer *request;
  grpc_metadata_array initial_md;
  grpc_metadata_array trailing_md;
  grpc_byte_buffer *reply;
  grpc_status_code status;
  grpc_slice details;
  const char *error_string;
  brume_rpc_done done;
  void *user;
};

struct brume_rpc_loop {
  grpc_completion_queue *cq;
  pthread_t thread;
};

static void *complete_async(void *arg);

brume_rpc_loop *brume_rpc_loop_new(void) {
  brume_rpc_lib_ref();
  brume_rpc_loop *l = brume_xcalloc(1, sizeof(*l));
  l->cq = grpc_completion_queue_create_for_next(NULL);
  if (pthread_create(&l->thread, NULL, complete_async, l) != 0)
    brume_fatal("cannot start an RPC completion thread");
  return l;
}

void brume_rpc_loop_free(brume_rpc_loop *l) {
  if (l == NULL) return;
  grpc_completion_queue_shutdown(l->cq);
  pthread_join(l->thread, NULL);
  grpc_completion_queue_destroy(l->cq);
  free(l);
  brume_rpc_lib_unref();
}

/* Appends the integer channel argument key = value to args (n of them so far). */
static void int_arg(grpc_arg *args, size_t *n, const char *key, int value) {
  args[*n].type = GRPC_ARG_INTEGER;
  args[*n].key = (char *)key;
  args[(*n)++].value.integer = value;
}

brume_rpc_client *brume_rpc_client_new(const char *target, const brume_rpc_client_opts *opts,
                                       brume_err **err) {
  static const brume_rpc_client_opts defaults;
  if (opts == NULL) opts = &defaults;
  if (target == NULL || !*target) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "the RPC client needs a target address");
    return NULL;
  }
  brume_rpc_lib_ref();
  grpc_channel_credentials *creds = brume_rpc_channel_credentials(&opts->tls, err);
  if (creds == NULL) {
    brume_err_wrap(err, "RPC client for %s", target);
    brume_rpc_lib_unref();
    return NULL;
  }
  int max =
      opts->max_message_bytes ? (int)opts->max_message_bytes : (int)BRUME_RPC_DEFAULT_MAX_MESSAGE;
  grpc_arg args[11];
  memset(args, 0, sizeof(args));
  size_t n = 0;
  int_arg(args, &n, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, max);
  /* The server decides what it accepts, and says so. */
  int_arg(args, &n, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, -1);
  /* A restarted server is found again within about a second, not gRPC's default 1-120 s. */
  int_arg(args, &n, GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  /* Despite its name, gRPC core takes this as the least time one connection attempt may take
   * (TCP, the TLS handshake, the server's SETTINGS frame): at 100 ms, TLS handshakes on a loaded
   * host timed out ("connection attempt timed out before receiving SETTINGS frame"). A refused
   * connection fails at once whatever it is; this only bounds a host that does not answer. */
  int_arg(args, &n, GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000);
  int_arg(args, &n, GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  /* While a call is under way, a ping every 2 s that must be answered within 6 s: a peer cut
   * off (its host's network down, the machine gone) then fails the calls in flight within about
   * 8 s, UNAVAILABLE, instead of at their deadlines (a function's timeout, minutes) or TCP's
   * retransmission limit (15 min). Idle connections send none. Servers accept these pings
   * (rpc_server.c). */
  int_arg(args, &n, GRPC_ARG_KEEPALIVE_TIME_MS, BRUME_RPC_KEEPALIVE_MS);
  int_arg(args, &n, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, BRUME_RPC_KEEPALIVE_TIMEOUT_MS);
  int_arg(args, &n, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  /* gRPC stops pinging after two pings without data; a long invocation sends none. */
  int_arg(args, &n, GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  /* Several clients of one process talk to one target over separate connections. */
  int_arg(args, &n, GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (opts->tls.server_name && *opts->tls.server_name) {
    args[n].type = GRPC_ARG_STRING;
    args[n].key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
    args[n++].value.string = (char *)opts->tls.server_name;
  }
  grpc_channel_args chargs = {.num_args = n, .args = args};

  brume_rpc_client *c = brume_xcalloc(1, sizeof(*c));
  c->target = brume_xstrdup(target);
  c->default_deadline_ms =
      opts->default_deadline_ms > 0 ? opts->default_deadline_ms : BRUME_RPC_DEFAULT_DEADLINE_MS;
  c->channel = grpc_channel_create(target, creds, &chargs);
  grpc_channel_credentials_release(creds);
  pthread_rwlock_init(&c->reg_lock, NULL);
  pthread_mutex_init(&c->async_lock, NULL);
  c->loop = opts->loop;
  return c;
}

const char *brume_rpc_client_target(const brume_rpc_client *client) {
  return client->target;
}

void brume_rpc_client_free(brume_rpc_client *c) {
  if (c == NULL) return;
  /* Destroying the channel does not end the calls on it (each holds a reference): cancel them,
   * so that their callbacks run now with CANCELLED rather than at their deadlines. Then wait for
   * them, so that every callback has run before the queue goes. */
  pthread_mutex_lock(&c->async_lock);
  for (struct pending *p = c->live; p; p = p->next)
    if (p->call) grpc_call_cancel(p->call, NULL);
  pthread_mutex_unlock(&c->async_lock);
  grpc_channel_destroy(c->channel);
  c->channel = NULL;
  while (atomic_load(&c->outstanding) > 0) usleep(1000);
  if (c->own_loop) brume_rpc_loop_free(c->loop);
  pthread_mutex_destroy(&c->async_lock);
  for (size_t i = 0; i < c->nreg; i++) free(c->reg[i].path);
  free(c->reg);
  pthread_rwlock_destroy(&c->reg_lock);
  free(c->target);
  free(c);
  brume_rpc_lib_unref();
}

/* The channel's registered handle for svc->methods[method]. */
static struct registered *lookup(brume_rpc_client *c, const ProtobufCServiceDescriptor *svc,
                                 unsigned method) {
  pthread_rwlock_rdlock(&c->reg_lock);
  for (size_t i = 0; i < c->nreg; i++) {
    if (c->reg[i].svc == svc && c->reg[i].method == method) {
      struct registered *r = &c->reg[i];
      pthread_rwlock_unlock(&c->reg_lock);
      return r;
    }
  }
  pthread_rwlock_unlock(&c->reg_lock);
  pthread_rwlock_wrlock(&c->reg_lock);
  struct registered *r = NULL;
  for (size_t i = 0; i < c->nreg && !r; i++)
    if (c->reg[i].svc == svc && c->reg[i].method == method) r = &c->reg[i];
  if (r == NULL) {
    /* Entries never move once handed out: grow by copying into a bigger array is not safe
     * with readers holding pointers, so the array is sized generously up front. */
    if (c->nreg == 0) c->reg = brume_xcalloc(256, sizeof(*c->reg));
    if (c->nreg == 256) brume_fatal("RPC client for %s uses more than 256 methods", c->target);
    r = &c->reg[c->nreg++];
    r->svc = svc;
    r->method = method;
    r->path = brume_xasprintf("/%s/%s", svc->name, svc->methods[method].name);
    r->handle = grpc_channel_register_call(c->channel, r->path, NULL, NULL);
  }
  pthread_rwlock_unlock(&c->reg_lock);
  return r;
}

static void pending_free(struct pending *p) {
  if (p->call) grpc_call_unref(p->call);
  for (size_t i = 0; i < p->nmd; i++) grpc_slice_unref(p->md[i].value);
  if (p->request) grpc_byte_buffer_destroy(p->request);
  if (p->reply) grpc_byte_buffer_destroy(p->reply);
  grpc_metadata_array_destroy(&p->initial_md);
  grpc_metadata_array_destroy(&p->trailing_md);
  grpc_slice_unref(p->details);
  if (p->error_string) gpr_free((void *)p->error_string);
  free(p);
}

/* Links p into (or out of) the client's list of async calls under way. */
static void live_add(brume_rpc_client *c, struct pending *p) {
  pthread_mutex_lock(&c->async_lock);
  p->prev = NULL;
  p->next = c->live;
  if (c->live) c->live->prev = p;
  c->live = p;
  pthread_mutex_unlock(&c->async_lock);
}

static void live_remove(brume_rpc_client *c, struct pending *p) {
  pthread_mutex_lock(&c->async_lock);
  if (p->prev)
    p->prev->next = p->next;
  else
    c->live = p->next;
  if (p->next) p->next->prev = p->prev;
  pthread_mutex_unlock(&c->async_lock);
}

/* Creates the call and starts its one batch; the completion goes to cq with tag p. */
static int start(brume_rpc_client *c, const ProtobufCServiceDescriptor *svc, unsigned method,
                 const ProtobufCMessage *request, const brume_rpc_call_opts *opts,
                 grpc_completion_queue *cq, struct pending *p, brume_err **err) {
  if (method >= svc->n_methods)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "service %s has no method %u", svc->name,
                         method);
  struct registered *r = lookup(c, svc, method);
  p->client = c;
  p->method = &svc->methods[method];
  p->path = r->path;
  p->details = grpc_empty_slice();
  grpc_metadata_array_init(&p->initial_md);
  grpc_metadata_array_init(&p->trailing_md);
  if (request->descriptor != p->method->input)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s takes a %s, not a %s", r->path,
                         p->method->input->name, request->descriptor->name);
  int64_t deadline_ms = opts && opts->deadline_ms > 0 ? opts->deadline_ms : c->default_deadline_ms;
  p->call =
      grpc_channel_create_registered_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, r->handle,
                                          brume_rpc_deadline_in(deadline_ms), NULL);
  p->request = brume_rpc_pack(request);

  /* Copied: an async caller's strings need not outlive this function. */
  size_t nmd = 0;
  if (opts && opts->api_key) {
    p->md[nmd].key = grpc_slice_from_static_string(BRUME_MD_API_KEY);
    p->md[nmd++].value = grpc_slice_from_copied_string(opts->api_key);
  }
  if (opts && opts->request_id) {
    p->md[nmd].key = grpc_slice_from_static_string(BRUME_MD_REQUEST_ID);
    p->md[nmd++].value = grpc_slice_from_copied_string(opts->request_id);
  }
  p->nmd = nmd;
  grpc_op ops[6];
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = nmd;
  ops[0].data.send_initial_metadata.metadata = nmd ? p->md : NULL;
  if (opts && opts->wait_for_ready) ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = p->request;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &p->initial_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &p->reply;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &p->trailing_md;
  ops[5].data.recv_status_on_client.status = &p->status;
  ops[5].data.recv_status_on_client.status_details = &p->details;
  ops[5].data.recv_status_on_client.error_string = &p->error_string;
  grpc_call_error rc = grpc_call_start_batch(p->call, ops, 6, p, NULL);
  if (rc != GRPC_CALL_OK)
    return brume_err_set(err, BRUME_INTERNAL, "%s: gRPC refused the call (error %d)", r->path, rc);
  return 0;
}

/* Turns a completed batch into a reply or an error. */
static ProtobufCMessage *finish(struct pending *p, brume_err **err) {
  if (p->status != GRPC_STATUS_OK) {
    brume_autofree char *details = grpc_slice_to_c_string(p->details);
    /* The status details say it all; gRPC's error_string repeats them with debug noise. */
    brume_err_set(err, (brume_status)p->status, "%s %s: %s", p->client->target, p->path,
                  *details          ? details
                  : p->error_string ? p->error_string
                                    : brume_status_name(p->status));
    return NULL;
  }
  ProtobufCMessage *reply = brume_rpc_unpack_buffer(p->method->output, p->reply, err);
  if (reply == NULL) {
    if (err && *err) (*err)->code = BRUME_INTERNAL;
    brume_err_wrap(err, "%s %s: bad reply", p->client->target, p->path);
  }
  return reply;
}

int brume_rpc_unary(brume_rpc_client *c, const ProtobufCServiceDescriptor *svc, unsigned method,
                    const ProtobufCMessage *request, ProtobufCMessage **reply,
                    const brume_rpc_call_opts *opts, brume_err **err) {
  *reply = NULL;
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  struct pending *p = brume_xcalloc(1, sizeof(*p));
  int rc = start(c, svc, method, request, opts, cq, p, err);
  if (rc == 0) {
    grpc_event ev = grpc_completion_queue_pluck(cq, p, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    BRUME_ENSURE(ev.type == GRPC_OP_COMPLETE);
    *reply = finish(p, err);
    rc = *reply ? 0 : -1;
  }
  pending_free(p);
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
  return rc;
}

int brume_rpc_unary_async(brume_rpc_client *c, const ProtobufCServiceDescriptor *svc,
                          unsigned method, const ProtobufCMessage *request,
                          const brume_rpc_call_opts *opts, brume_rpc_done done, void *user,
                          brume_err **err) {
  pthread_mutex_lock(&c->async_lock);
  if (c->loop == NULL) {
    c->loop = brume_rpc_loop_new();
    c->own_loop = true;
  }
  pthread_mutex_unlock(&c->async_lock);
  struct pending *p = brume_xcalloc(1, sizeof(*p));
  p->done = done;
  p->user = user;
  atomic_fetch_add(&c->outstanding, 1);
  /* Listed before it starts: its completion, which unlinks it, may come before start returns. */
  live_add(c, p);
  if (start(c, svc, method, request, opts, c->loop->cq, p, err) < 0) {
    live_remove(c, p);
    pending_free(p);
    atomic_fetch_sub(&c->outstanding, 1);
    return -1;
  }
  return 0;
}

static void *complete_async(void *arg) {
  brume_rpc_loop *l = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(l->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    struct pending *p = ev.tag;
    brume_rpc_client *c = p->client;
    live_remove(c, p);
    brume_err *err = NULL;
    ProtobufCMessage *reply = finish(p, &err);
    p->done(p->user, reply, err);
    brume_err_free(err);
    pending_free(p);
    atomic_fetch_sub(&c->outstanding, 1);
  }
  return NULL;
}

struct brume_rpc_pool {
  pthread_mutex_t lock;
  brume_rpc_client_opts opts;
  char *tls_strings[4]; /* the copied strings opts points to */
  brume_rpc_client **clients;
  size_t n;
};

brume_rpc_pool *brume_rpc_pool_new(const brume_rpc_client_opts *opts) {
  brume_rpc_pool *pool = brume_xcalloc(1, sizeof(*pool));
  pthread_mutex_init(&pool->lock, NULL);
  if (opts) {
    pool->opts = *opts;
    const char **fields[] = {&pool->opts.tls.ca_file, &pool->opts.tls.cert_file,
                             &pool->opts.tls.key_file, &pool->opts.tls.server_name};
    for (size_t i = 0; i < BRUME_ARRAY_LEN(fields); i++)
      *fields[i] = pool->tls_strings[i] = brume_xstrdup(*fields[i]);
  }
  return pool;
}

brume_rpc_client *brume_rpc_pool_get(brume_rpc_pool *pool, const char *target, brume_err **err) {
  pthread_mutex_lock(&pool->lock);
  brume_rpc_client *c = NULL;
  for (size_t i = 0; i < pool->n && !c; i++)
    if (strcmp(pool->clients[i]->target, target) == 0) c = pool->clients[i];
  if (c == NULL && (c = brume_rpc_client_new(target, &pool->opts, err)) != NULL) {
    pool->clients = brume_xrealloc(pool->clients, (pool->n + 1) * sizeof(*pool->clients));
    pool->clients[pool->n++] = c;
  }
  pthread_mutex_unlock(&pool->lock);
  return c;
}

void brume_rpc_pool_free(brume_rpc_pool *pool) {
  if (pool == NULL) return;
  for (size_t i = 0; i < pool->n; i++) brume_rpc_client_free(pool->clients[i]);
  for (size_t i = 0; i < BRUME_ARRAY_LEN(pool->tls_strings); i++) free(pool->tls_strings[i]);
  free(pool->clients);
  pthread_mutex_destroy(&pool->lock);
  free(pool);
}
