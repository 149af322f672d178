/* The gRPC server side of the rpc module (see rpc.h).
 *
 * One completion queue, served by opts->threads threads. For every registered method a few
 * request slots stay armed (grpc_server_request_registered_call); a slot that fires becomes a
 * brume_rpc_call and is re-armed at once, so the number of calls in flight is bounded by memory,
 * not by slots or threads. Generic slots (grpc_server_request_call) catch unknown methods and
 * answer UNIMPLEMENTED straight away: without them gRPC would hold such a call until the
 * client's deadline.
 *
 * A call is freed when three references are gone: the dispatching thread's, the close
 * notification's (RECV_CLOSE_ON_SERVER, which also tells us about cancellation) and the answer's
 * (the send batch completing). A handler that answers at once, on the dispatching thread, sends
 * RECV_CLOSE_ON_SERVER in its answer batch: one completion per call instead of two. A call that
 * is parked gets a close batch of its own when the handler returns, so that its owner learns of
 * a cancellation. */
#include <grpc/grpc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "rpc.h"
#include "rpc_codec.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

enum tag_kind { TAG_SLOT, TAG_GENERIC, TAG_CLOSED, TAG_SENT, TAG_UNIMPLEMENTED_DONE, TAG_SHUTDOWN };
struct tag {
  enum tag_kind kind;
};

struct service {
  const ProtobufCServiceDescriptor *desc;
  const brume_rpc_handler *handlers;
  void *user;
};

struct method {
  struct service *svc;
  const ProtobufCMethodDescriptor *desc;
  brume_rpc_handler handler;
  char *path;
  void *registered;
};

/* An armed request for one registered method. */
struct slot {
  struct tag tag;
  struct method *method;
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_byte_buffer *payload;
};

/* An armed request for any method the server does not know. */
struct generic_slot {
  struct tag tag;
  grpc_call *call;
  grpc_call_details details;
  grpc_metadata_array md;
};

/* An UNIMPLEMENTED answer on its way out. */
struct unimplemented {
  struct tag tag;
  grpc_call *call;
  grpc_slice details;
  int cancelled;
};

struct md_copy {
  struct md_copy *next;
  char *key;
  char *value;
};

struct brume_rpc_call {
  struct tag closed_tag;
  struct tag sent_tag;
  brume_rpc_server *srv;
  struct method *method;
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  struct md_copy *md_copies;
  ProtobufCMessage *request;
  atomic_int refs;
  atomic_bool answered;
  atomic_bool closed;
  bool close_in_answer; /* RECV_CLOSE_ON_SERVER went out with the answer (dispatch thread only) */
  int cancelled; /* written by gRPC when the close batch completes */
  grpc_byte_buffer *reply;
  grpc_slice status_details;
  gpr_timespec started;
  struct brume_rpc_call *prev, *next; /* srv->live */
};

struct brume_rpc_server {
  grpc_server *server;
  grpc_completion_queue *cq;
  int port;
  int threads_wanted;
  int nthreads; /* threads running */
  int slots_per_method;
  pthread_t *threads;
  bool started;
  atomic_bool stopping;
  char *listen;

  struct service **services;
  size_t nservices;
  struct method **methods;
  size_t nmethods;
  struct slot *slots;
  size_t nslots;
  struct generic_slot *generic;
  size_t ngeneric;

  struct tag shutdown_tag;
  pthread_mutex_t lock; /* live list, shutdown flag */
  pthread_cond_t shutdown_cond;
  bool shutdown_done;
  struct brume_rpc_call *live;

  brume_counter *calls_total;
  brume_histogram *call_seconds;
  brume_gauge *in_flight;
};

/* The call whose handler this thread is running, if any. */
static _Thread_local brume_rpc_call *dispatching;

static void arm_slot(brume_rpc_server *srv, struct slot *s) {
  s->call = NULL;
  s->payload = NULL;
  grpc_metadata_array_init(&s->md);
  if (atomic_load(&srv->stopping)) return;
  grpc_call_error rc = grpc_server_request_registered_call(
      srv->server, s->method->registered, &s->call, &s->deadline, &s->md, &s->payload, srv->cq,
      srv->cq, &s->tag);
  if (rc != GRPC_CALL_OK && !atomic_load(&srv->stopping))
    brume_error("Cannot arm a request slot.", "method=%s code=%d", s->method->path, rc);
}

static void arm_generic(brume_rpc_server *srv, struct generic_slot *g) {
  g->call = NULL;
  grpc_call_details_init(&g->details);
  grpc_metadata_array_init(&g->md);
  if (atomic_load(&srv->stopping)) return;
  grpc_server_request_call(srv->server, &g->call, &g->details, &g->md, srv->cq, srv->cq, &g->tag);
}

static void call_free(brume_rpc_call *c) {
  brume_rpc_server *srv = c->srv;
  pthread_mutex_lock(&srv->lock);
  if (c->prev) c->prev->next = c->next;
  else srv->live = c->next;
  if (c->next) c->next->prev = c->prev;
  pthread_mutex_unlock(&srv->lock);

  if (c->call) grpc_call_unref(c->call);
  grpc_metadata_array_destroy(&c->md);
  for (struct md_copy *m = c->md_copies, *n; m; m = n) {
    n = m->next;
    free(m->key);
    free(m->value);
    free(m);
  }
  if (c->request) protobuf_c_message_free_unpacked(c->request, NULL);
  if (c->reply) grpc_byte_buffer_destroy(c->reply);
  grpc_slice_unref(c->status_details);
  free(c);
}

static void call_unref(brume_rpc_call *c) {
  if (atomic_fetch_sub(&c->refs, 1) == 1) call_free(c);
}

/* Sends the answer: initial metadata, the reply (if any) and the status, in one batch. */
static void answer(brume_rpc_call *c, grpc_status_code code, const char *details,
                   grpc_byte_buffer *reply) {
  if (atomic_exchange(&c->answered, true))
    brume_fatal("rpc call %s answered twice", c->method->path);
  brume_rpc_server *srv = c->srv;
  if (srv->calls_total) {
    double secs = gpr_timespec_to_micros(gpr_time_sub(gpr_now(GPR_CLOCK_MONOTONIC), c->started)) / 1e6;
    brume_counter_inc(srv->calls_total, 1, c->method->path, brume_status_name(code));
    brume_histogram_observe(srv->call_seconds, secs, c->method->path);
    brume_gauge_add(srv->in_flight, -1);
  }
  c->reply = reply;
  c->status_details = grpc_slice_from_copied_string(details ? details : "");
  grpc_op ops[4];
  memset(ops, 0, sizeof(ops));
  size_t n = 0;
  if (dispatching == c) {
    c->close_in_answer = true;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
  }
  ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[n++].data.send_initial_metadata.count = 0;
  if (reply) {
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = reply;
  }
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.trailing_metadata_count = 0;
  ops[n].data.send_status_from_server.status = code;
  ops[n++].data.send_status_from_server.status_details = &c->status_details;
  grpc_call_error rc = grpc_call_start_batch(c->call, ops, n, &c->sent_tag, NULL);
  if (rc != GRPC_CALL_OK) {
    brume_warn("Cannot send an answer.", "method=%s code=%d", c->method->path, rc);
    if (c->close_in_answer) call_unref(c);
    call_unref(c);
  }
}

void brume_rpc_call_reply(brume_rpc_call *call, const ProtobufCMessage *reply) {
  answer(call, GRPC_STATUS_OK, NULL, brume_rpc_pack(reply));
}

void brume_rpc_call_fail(brume_rpc_call *call, brume_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  brume_autofree char *msg = brume_xvasprintf(fmt, ap);
  va_end(ap);
  /* OK without a message would leave the client waiting for one. */
  answer(call, code == BRUME_OK ? GRPC_STATUS_INTERNAL : (grpc_status_code)code, msg, NULL);
}

void brume_rpc_call_fail_err(brume_rpc_call *call, const brume_err *err) {
  brume_rpc_call_fail(call, err ? err->code : BRUME_INTERNAL, "%s", err ? err->msg : "internal error");
}

const char *brume_rpc_call_method(const brume_rpc_call *call) { return call->method->path; }

const char *brume_rpc_call_metadata(brume_rpc_call *call, const char *key) {
  for (struct md_copy *m = call->md_copies; m; m = m->next)
    if (strcmp(m->key, key) == 0) return m->value;
  size_t klen = strlen(key);
  for (size_t i = 0; i < call->md.count; i++) {
    const grpc_metadata *md = &call->md.metadata[i];
    if (GRPC_SLICE_LENGTH(md->key) == klen &&
        memcmp(GRPC_SLICE_START_PTR(md->key), key, klen) == 0) {
      struct md_copy *m = brume_xmalloc(sizeof(*m));
      m->key = brume_xstrdup(key);
      m->value = brume_xstrndup((const char *)GRPC_SLICE_START_PTR(md->value),
                                GRPC_SLICE_LENGTH(md->value));
      m->next = call->md_copies;
      call->md_copies = m;
      return m->value;
    }
  }
  return NULL;
}

int64_t brume_rpc_call_deadline_left_ms(const brume_rpc_call *call) {
  if (gpr_time_cmp(call->deadline, gpr_inf_future(call->deadline.clock_type)) == 0) return -1;
  gpr_timespec d = gpr_convert_clock_type(call->deadline, GPR_CLOCK_MONOTONIC);
  gpr_timespec left = gpr_time_sub(d, gpr_now(GPR_CLOCK_MONOTONIC));
  return gpr_time_to_millis(left);
}

bool brume_rpc_call_cancelled(const brume_rpc_call *call) {
  if (atomic_load(&call->closed) && call->cancelled) return true;
  int64_t left = brume_rpc_call_deadline_left_ms(call);
  return left != -1 && left <= 0;
}

static void on_new_call(brume_rpc_server *srv, struct slot *s, bool ok) {
  if (!ok) return; /* the server is shutting down: the slot stays unarmed */
  brume_rpc_call *c = brume_xcalloc(1, sizeof(*c));
  c->closed_tag.kind = TAG_CLOSED;
  c->sent_tag.kind = TAG_SENT;
  c->srv = srv;
  c->method = s->method;
  c->call = s->call;
  c->deadline = s->deadline;
  c->md = s->md;
  c->status_details = grpc_empty_slice();
  atomic_init(&c->refs, 3);
  c->started = gpr_now(GPR_CLOCK_MONOTONIC);
  if (srv->in_flight) brume_gauge_add(srv->in_flight, 1);
  grpc_byte_buffer *payload = s->payload;
  arm_slot(srv, s);

  pthread_mutex_lock(&srv->lock);
  c->next = srv->live;
  if (srv->live) srv->live->prev = c;
  srv->live = c;
  pthread_mutex_unlock(&srv->lock);

  brume_err *err = NULL;
  dispatching = c;
  c->request = brume_rpc_unpack_buffer(c->method->desc->input, payload, &err);
  if (payload) grpc_byte_buffer_destroy(payload);
  if (c->request == NULL) {
    brume_rpc_call_fail_err(c, err);
    brume_err_free(err);
  } else if (c->method->handler == NULL) {
    brume_rpc_call_fail(c, BRUME_UNIMPLEMENTED, "%s is not implemented by this server",
                        c->method->path);
  } else {
    c->method->handler(c, c->request, c->method->svc->user);
  }
  dispatching = NULL;
  if (!c->close_in_answer) {
    /* Parked: a recv-only batch may run beside the send batch another thread starts. */
    grpc_op close_op;
    memset(&close_op, 0, sizeof(close_op));
    close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    close_op.data.recv_close_on_server.cancelled = &c->cancelled;
    if (grpc_call_start_batch(c->call, &close_op, 1, &c->closed_tag, NULL) != GRPC_CALL_OK)
      call_unref(c);
  }
  call_unref(c);
}

static void on_unknown_call(brume_rpc_server *srv, struct generic_slot *g, bool ok) {
  if (!ok) return;
  struct unimplemented *u = brume_xcalloc(1, sizeof(*u));
  u->tag.kind = TAG_UNIMPLEMENTED_DONE;
  u->call = g->call;
  char method[256];
  size_t len = GRPC_SLICE_LENGTH(g->details.method);
  if (len >= sizeof(method)) len = sizeof(method) - 1;
  memcpy(method, GRPC_SLICE_START_PTR(g->details.method), len);
  method[len] = '\0';
  grpc_call_details_destroy(&g->details);
  grpc_metadata_array_destroy(&g->md);
  arm_generic(srv, g);

  brume_autofree char *msg = brume_xasprintf("unknown method %s", method);
  u->details = grpc_slice_from_copied_string(msg);
  grpc_op ops[3];
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[1].data.send_status_from_server.status = GRPC_STATUS_UNIMPLEMENTED;
  ops[1].data.send_status_from_server.status_details = &u->details;
  ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[2].data.recv_close_on_server.cancelled = &u->cancelled;
  if (grpc_call_start_batch(u->call, ops, 3, &u->tag, NULL) != GRPC_CALL_OK) {
    grpc_call_unref(u->call);
    grpc_slice_unref(u->details);
    free(u);
  }
}

static void *serve(void *arg) {
  brume_rpc_server *srv = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    struct tag *t = ev.tag;
    switch (t->kind) {
      case TAG_SLOT:
        on_new_call(srv, container_of(t, struct slot, tag), ev.success);
        break;
      case TAG_GENERIC:
        on_unknown_call(srv, container_of(t, struct generic_slot, tag), ev.success);
        break;
      case TAG_CLOSED: {
        brume_rpc_call *c = container_of(t, brume_rpc_call, closed_tag);
        atomic_store(&c->closed, true);
        call_unref(c);
        break;
      }
      case TAG_SENT: {
        brume_rpc_call *c = container_of(t, brume_rpc_call, sent_tag);
        if (c->close_in_answer) {
          atomic_store(&c->closed, true);
          call_unref(c);
        }
        call_unref(c);
        break;
      }
      case TAG_UNIMPLEMENTED_DONE: {
        struct unimplemented *u = container_of(t, struct unimplemented, tag);
        grpc_call_unref(u->call);
        grpc_slice_unref(u->details);
        free(u);
        break;
      }
      case TAG_SHUTDOWN:
        pthread_mutex_lock(&srv->lock);
        srv->shutdown_done = true;
        pthread_cond_broadcast(&srv->shutdown_cond);
        pthread_mutex_unlock(&srv->lock);
        break;
    }
  }
  return NULL;
}

brume_rpc_server *brume_rpc_server_new(const brume_rpc_server_opts *opts, brume_err **err) {
  if (opts == NULL || opts->listen == NULL || !*opts->listen) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "the RPC server needs a listen address");
    return NULL;
  }
  brume_rpc_lib_ref();
  brume_rpc_server *srv = brume_xcalloc(1, sizeof(*srv));
  srv->threads_wanted = opts->threads > 0 ? opts->threads : 1;
  srv->slots_per_method = opts->slots_per_method > 0 ? opts->slots_per_method : 16;
  srv->listen = brume_xstrdup(opts->listen);
  srv->shutdown_tag.kind = TAG_SHUTDOWN;
  if (opts->metrics) {
    srv->calls_total = brume_metrics_counter(opts->metrics, "brume_rpc_server_calls_total",
                                             "RPC calls answered, by method and status code.",
                                             "method", "code", NULL);
    srv->call_seconds = brume_metrics_histogram(
        opts->metrics, "brume_rpc_server_call_duration_seconds",
        "Time from receiving an RPC call to sending its answer.", NULL, 0, "method", NULL);
    srv->in_flight = brume_metrics_gauge(opts->metrics, "brume_rpc_server_calls_in_flight",
                                         "RPC calls received and not yet answered.", NULL);
  }
  pthread_mutex_init(&srv->lock, NULL);
  pthread_cond_init(&srv->shutdown_cond, NULL);

  int max = opts->max_message_bytes ? (int)opts->max_message_bytes : (int)BRUME_RPC_DEFAULT_MAX_MESSAGE;
  grpc_arg args[5];
  memset(args, 0, sizeof(args));
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[0].value.integer = max;
  args[1].type = GRPC_ARG_INTEGER;
  args[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
  args[1].value.integer = -1;
  /* gRPC sets SO_REUSEPORT by default: a second server on a taken port would start and share
   * the connections instead of failing. */
  args[2].type = GRPC_ARG_INTEGER;
  args[2].key = GRPC_ARG_ALLOW_REUSEPORT;
  args[2].value.integer = 0;
  /* Brume's clients ping every BRUME_RPC_KEEPALIVE_MS while a call is under way (rpc_client.c):
   * by default gRPC would take pings more often than every 5 min without data for abuse and close
   * the connection, calls and all. */
  args[3].type = GRPC_ARG_INTEGER;
  args[3].key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS;
  args[3].value.integer = BRUME_RPC_KEEPALIVE_MS / 2;
  args[4].type = GRPC_ARG_INTEGER;
  args[4].key = GRPC_ARG_HTTP2_MAX_PING_STRIKES;
  args[4].value.integer = 0; /* no limit */
  grpc_channel_args chargs = {.num_args = 5, .args = args};
  srv->server = grpc_server_create(&chargs, NULL);
  srv->cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(srv->server, srv->cq, NULL);

  grpc_server_credentials *creds = brume_rpc_server_credentials(&opts->tls, err);
  if (creds == NULL) {
    brume_err_wrap(err, "RPC server %s", opts->listen);
    brume_rpc_server_free(srv);
    return NULL;
  }
  srv->port = grpc_server_add_http2_port(srv->server, opts->listen, creds);
  grpc_server_credentials_release(creds);
  if (srv->port <= 0) {
    brume_err_set(err, BRUME_UNAVAILABLE,
                  "RPC server cannot listen on %s (address in use or invalid)", opts->listen);
    brume_rpc_server_free(srv);
    return NULL;
  }
  return srv;
}

int brume_rpc_server_add_service(brume_rpc_server *srv, const ProtobufCServiceDescriptor *svc,
                                 const brume_rpc_handler *handlers, void *user, brume_err **err) {
  if (srv->started)
    return brume_err_set(err, BRUME_FAILED_PRECONDITION,
                         "service %s added after the RPC server started", svc->name);
  struct service *s = brume_xmalloc(sizeof(*s));
  *s = (struct service){.desc = svc, .handlers = handlers, .user = user};
  srv->services = brume_xrealloc(srv->services, (srv->nservices + 1) * sizeof(*srv->services));
  srv->services[srv->nservices++] = s;
  srv->methods = brume_xrealloc(srv->methods, (srv->nmethods + svc->n_methods) * sizeof(*srv->methods));
  for (unsigned i = 0; i < svc->n_methods; i++) {
    struct method *m = brume_xcalloc(1, sizeof(*m));
    m->svc = s;
    m->desc = &svc->methods[i];
    m->handler = handlers ? handlers[i] : NULL;
    m->path = brume_xasprintf("/%s/%s", svc->name, svc->methods[i].name);
    m->registered = grpc_server_register_method(srv->server, m->path, NULL,
                                                GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    srv->methods[srv->nmethods++] = m;
    if (m->registered == NULL)
      return brume_err_set(err, BRUME_ALREADY_EXISTS, "method %s is registered twice", m->path);
  }
  return 0;
}

int brume_rpc_server_start(brume_rpc_server *srv, brume_err **err) {
  grpc_server_start(srv->server);
  srv->started = true;
  srv->nslots = srv->nmethods * (size_t)srv->slots_per_method;
  srv->slots = brume_xcalloc(srv->nslots ? srv->nslots : 1, sizeof(*srv->slots));
  for (size_t i = 0; i < srv->nslots; i++) {
    struct slot *s = &srv->slots[i];
    s->tag.kind = TAG_SLOT;
    s->method = srv->methods[i / (size_t)srv->slots_per_method];
    arm_slot(srv, s);
  }
  srv->ngeneric = 4;
  srv->generic = brume_xcalloc(srv->ngeneric, sizeof(*srv->generic));
  for (size_t i = 0; i < srv->ngeneric; i++) {
    srv->generic[i].tag.kind = TAG_GENERIC;
    arm_generic(srv, &srv->generic[i]);
  }
  srv->threads = brume_xcalloc((size_t)srv->threads_wanted, sizeof(pthread_t));
  for (int i = 0; i < srv->threads_wanted; i++) {
    if (pthread_create(&srv->threads[i], NULL, serve, srv) != 0)
      return brume_err_set(err, BRUME_RESOURCE_EXHAUSTED, "cannot start RPC server threads");
    srv->nthreads = i + 1;
  }
  brume_info("RPC server is listening.", "addr=%s port=%d threads=%d methods=%zu", srv->listen,
             srv->port, srv->nthreads, srv->nmethods);
  return 0;
}

int brume_rpc_server_port(const brume_rpc_server *srv) { return srv->port; }

/* Frees the calls that handlers parked and never answered, once gRPC has closed them (after
 * grpc_server_cancel_all_calls). Waits up to 5 s for calls still being dispatched or answered. */
static void reap_unanswered_calls(brume_rpc_server *srv) {
  for (int waited_ms = 0; waited_ms < 5000; waited_ms++) {
    brume_rpc_call *reap[64];
    size_t n = 0;
    pthread_mutex_lock(&srv->lock);
    bool empty = srv->live == NULL;
    for (brume_rpc_call *c = srv->live; c && n < BRUME_ARRAY_LEN(reap); c = c->next) {
      if (atomic_load(&c->closed) && atomic_load(&c->refs) == 1 &&
          !atomic_exchange(&c->answered, true))
        reap[n++] = c;
    }
    pthread_mutex_unlock(&srv->lock);
    if (empty) return;
    for (size_t i = 0; i < n; i++) {
      if (srv->in_flight) brume_gauge_add(srv->in_flight, -1);
      call_unref(reap[i]);
    }
    if (n == 0) usleep(1000);
  }
  brume_warn("RPC calls were still in flight at shutdown.", "addr=%s", srv->listen);
}

void brume_rpc_server_free(brume_rpc_server *srv) {
  if (srv == NULL) return;
  atomic_store(&srv->stopping, true);
  if (srv->started) {
    grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->shutdown_tag);
    grpc_server_cancel_all_calls(srv->server);
    reap_unanswered_calls(srv);
    pthread_mutex_lock(&srv->lock);
    while (!srv->shutdown_done && srv->nthreads > 0)
      pthread_cond_wait(&srv->shutdown_cond, &srv->lock);
    pthread_mutex_unlock(&srv->lock);
  }
  grpc_completion_queue_shutdown(srv->cq);
  for (int i = 0; i < srv->nthreads; i++) pthread_join(srv->threads[i], NULL);
  if (srv->nthreads == 0 || !srv->started) {
    /* No thread ever ran: drain the queue here. */
    while (grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
  }
  for (size_t i = 0; i < srv->nslots; i++) grpc_metadata_array_destroy(&srv->slots[i].md);
  for (size_t i = 0; i < srv->ngeneric; i++) {
    grpc_call_details_destroy(&srv->generic[i].details);
    grpc_metadata_array_destroy(&srv->generic[i].md);
  }
  grpc_server_destroy(srv->server);
  grpc_completion_queue_destroy(srv->cq);
  for (size_t i = 0; i < srv->nmethods; i++) {
    free(srv->methods[i]->path);
    free(srv->methods[i]);
  }
  for (size_t i = 0; i < srv->nservices; i++) free(srv->services[i]);
  free(srv->methods);
  free(srv->services);
  free(srv->slots);
  free(srv->generic);
  free(srv->threads);
  free(srv->listen);
  pthread_mutex_destroy(&srv->lock);
  pthread_cond_destroy(&srv->shutdown_cond);
  free(srv);
  brume_rpc_lib_unref();
}
