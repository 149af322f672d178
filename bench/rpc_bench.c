/* bench_rpc: what the RPC layer (common/rpc_*.c) costs over the bare gRPC core.
 *
 * The same Echo round trip, on loopback between two processes, measured twice: through
 * brume_rpc_server / brume_rpc_client, and through a client and server written straight against
 * grpc/grpc.h (nothing from libbrume on that path). bench/rpc.sh drives it:
 *
 *   bench_rpc serve-layer PORT THREADS    brume_rpc_server; Echo answered at once from the handler
 *   bench_rpc serve-bare PORT THREADS     one completion queue; echoes the request's byte buffer
 *   bench_rpc client-layer ADDR [CALLS [SECONDS]]
 *   bench_rpc client-bare ADDR [CALLS [SECONDS]]
 *
 * Servers run until SIGTERM or SIGINT. A client first makes WARMUP_CALLS calls, then CALLS
 * sequential calls (default 5,000; p50 and p99 of the round trip), then keeps INFLIGHT calls in
 * flight for SECONDS (default 3; each completion starts the next call, the first half second is
 * not counted) and prints three JSON lines in bench/run.sh's format: <side>_seq_p50,
 * <side>_seq_p99 and <side>_inflight64_calls_per_s, and on stderr its CPU time per call with
 * 64 in flight (cpu_us_per_call=; a server prints its own when it stops). Any failed call makes
 * it exit 1 without figures.
 *
 * Both clients send the same bytes (a packed EchoRequest with a 64-byte payload) with the same
 * 30 s deadline and no metadata, and both servers answer with the same bytes: a packed EchoReply
 * holding only the payload is byte for byte the request. */
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "brume/test/echo.pb-c.h"
#include "err.h"
#include "log.h"
#include "rpc.h"

#define PAYLOAD_BYTES 64
#define WARMUP_CALLS 500
#define DEFAULT_SEQ_CALLS 5000
#define DEFAULT_SECONDS 3.0
#define ASYNC_WARMUP_SECONDS 0.5
#define INFLIGHT 64
#define DEADLINE_MS 30000 /* the layer client's default deadline, sent by the bare client too */
#define ECHO_PATH "/brume.test.Echo/Echo"
#define SLOTS 16  /* request slots armed by the bare server, as brume_rpc_server's default */
#define GENERIC_SLOTS 4

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of the whole process (every thread, user and system), in seconds. */
static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void sleep_s(double s) {
  struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* Plain calloc that never returns NULL: the bare path uses nothing from libbrume. */
static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  if (p == NULL) {
    fprintf(stderr, "bench_rpc: out of memory\n");
    abort();
  }
  return p;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile of n > 0 sorted values. */
static double percentile(const double *sorted, size_t n, unsigned pct) {
  size_t rank = (pct * n + 99) / 100;
  return sorted[rank > 0 ? rank - 1 : 0];
}

static void print_metric(const char *side, const char *metric, double value, const char *unit,
                         int decimals) {
  printf("{\"bench\": \"rpc\", \"metric\": \"%s_%s\", \"value\": %.*f, \"unit\": \"%s\"}\n", side,
         metric, decimals, value, unit);
}

/* Round trips in seconds -> p50 and p99 lines. */
static void report_seq(const char *side, double *rtt, size_t n) {
  qsort(rtt, n, sizeof(*rtt), cmp_double);
  print_metric(side, "seq_p50", percentile(rtt, n, 50) * 1e6, "us", 1);
  print_metric(side, "seq_p99", percentile(rtt, n, 99) * 1e6, "us", 1);
}

static void report_client_cpu(const char *side, double cpu, long calls) {
  fprintf(stderr, "bench_rpc client-%s: %ld calls with 64 in flight, cpu_us_per_call=%.1f\n", side,
          calls, calls ? cpu * 1e6 / (double)calls : 0.0);
}

/* Prints one client's figures (sequential percentiles, then calls/s in flight) and frees rtt. */
static void report_client(const char *side, double *rtt, size_t ncalls, long calls, double secs,
                          double cpu) {
  report_client_cpu(side, cpu, calls);
  report_seq(side, rtt, ncalls);
  print_metric(side, "inflight64_calls_per_s", (double)calls / secs, "calls/s", 0);
  free(rtt);
}

static uint8_t payload[PAYLOAD_BYTES];

static Brume__Test__EchoRequest echo_request(void) {
  for (size_t i = 0; i < sizeof(payload); i++) payload[i] = (uint8_t)('a' + i % 26);
  Brume__Test__EchoRequest req = BRUME__TEST__ECHO_REQUEST__INIT;
  req.payload.data = payload;
  req.payload.len = sizeof(payload);
  return req;
}

/* Blocks SIGTERM and SIGINT in this thread and every thread started after it, so that the
 * servers' main thread can sigwait() for them and shut down in order. */
static void block_stop_signals(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGINT);
  pthread_sigmask(SIG_BLOCK, set, NULL);
}

/* Calls a server answered; with its CPU time, printed to stderr when it stops. CPU per call does
 * not swing with thread placement as much as calls/s does. */
static atomic_long served;

static void report_server_cpu(const char *kind) {
  long n = atomic_load(&served);
  fprintf(stderr, "bench_rpc serve-%s: %ld calls, cpu_us_per_call=%.1f\n", kind, n,
          n ? cpu_s() * 1e6 / (double)n : 0.0);
}

static int parse_threads(const char *s) {
  int n = atoi(s);
  if (n < 1 || n > 64) {
    fprintf(stderr, "bench_rpc: THREADS must be 1-64, not %s\n", s);
    exit(2);
  }
  return n;
}

/* ---- layer server ---- */

static void layer_echo(brume_rpc_call *call, const ProtobufCMessage *request, void *user) {
  (void)user;
  const Brume__Test__EchoRequest *req = (const Brume__Test__EchoRequest *)request;
  Brume__Test__EchoReply reply = BRUME__TEST__ECHO_REPLY__INIT;
  reply.payload = req->payload;
  brume_rpc_call_reply(call, &reply.base);
  atomic_fetch_add_explicit(&served, 1, memory_order_relaxed);
}

/* Echo only; Gather answers UNIMPLEMENTED. */
static const brume_rpc_handler layer_handlers[] = {layer_echo, NULL};

static int serve_layer(const char *port, int threads) {
  sigset_t stop;
  block_stop_signals(&stop);
  brume_autofree char *listen = brume_xasprintf("127.0.0.1:%s", port);
  brume_rpc_server_opts opts = {.listen = listen, .threads = threads};
  brume_err *err = NULL;
  brume_rpc_server *srv = brume_rpc_server_new(&opts, &err);
  if (srv == NULL ||
      brume_rpc_server_add_service(srv, &brume__test__echo__descriptor, layer_handlers, NULL,
                                   &err) < 0 ||
      brume_rpc_server_start(srv, &err) < 0) {
    fprintf(stderr, "bench_rpc serve-layer: %s\n", err->msg);
    return 1;
  }
  int sig;
  sigwait(&stop, &sig);
  report_server_cpu("layer");
  brume_rpc_server_free(srv);
  return 0;
}

/* ---- bare server ---- */

enum bare_tag { BARE_SLOT, BARE_GENERIC, BARE_ANSWERED, BARE_SHUTDOWN };

struct bare_slot {
  enum bare_tag kind; /* first: completion tags point here */
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_byte_buffer *payload;
};

struct bare_generic {
  enum bare_tag kind;
  grpc_call *call;
  grpc_call_details details;
  grpc_metadata_array md;
};

/* A call being answered: freed when its one batch completes. */
struct bare_answer {
  enum bare_tag kind;
  grpc_call *call;
  grpc_byte_buffer *payload;
  int cancelled;
};

struct bare_server {
  grpc_server *server;
  grpc_completion_queue *cq;
  void *echo;
  atomic_bool stopping;
  atomic_bool shutdown_done;
  enum bare_tag shutdown_tag;
  struct bare_slot slots[SLOTS];
  struct bare_generic generic[GENERIC_SLOTS];
};

static void bare_arm(struct bare_server *b, struct bare_slot *s) {
  s->call = NULL;
  s->payload = NULL;
  grpc_metadata_array_init(&s->md);
  if (atomic_load(&b->stopping)) return;
  grpc_server_request_registered_call(b->server, b->echo, &s->call, &s->deadline, &s->md,
                                      &s->payload, b->cq, b->cq, s);
}

static void bare_arm_generic(struct bare_server *b, struct bare_generic *g) {
  g->call = NULL;
  grpc_call_details_init(&g->details);
  grpc_metadata_array_init(&g->md);
  if (atomic_load(&b->stopping)) return;
  grpc_server_request_call(b->server, &g->call, &g->details, &g->md, b->cq, b->cq, g);
}

/* Answers a call in one batch: the request's own bytes as the reply, then OK. */
static void bare_answer(struct bare_answer *a, grpc_status_code status) {
  grpc_op ops[4];
  memset(ops, 0, sizeof(ops));
  size_t n = 0;
  ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (a->payload) {
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = a->payload;
  }
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n++].data.send_status_from_server.status = status;
  ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[n++].data.recv_close_on_server.cancelled = &a->cancelled;
  if (grpc_call_start_batch(a->call, ops, n, a, NULL) != GRPC_CALL_OK) {
    fprintf(stderr, "bench_rpc serve-bare: gRPC refused an answer batch\n");
    exit(1);
  }
}

static void *bare_serve(void *arg) {
  struct bare_server *b = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(b->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) return NULL;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    switch (*(enum bare_tag *)ev.tag) {
      case BARE_SLOT: {
        struct bare_slot *s = ev.tag;
        if (!ev.success) break; /* shutting down: stays unarmed */
        struct bare_answer *a = xcalloc(1, sizeof(*a));
        a->kind = BARE_ANSWERED;
        a->call = s->call;
        a->payload = s->payload;
        grpc_metadata_array_destroy(&s->md);
        bare_arm(b, s);
        bare_answer(a, GRPC_STATUS_OK);
        atomic_fetch_add_explicit(&served, 1, memory_order_relaxed);
        break;
      }
      case BARE_GENERIC: {
        struct bare_generic *g = ev.tag;
        if (!ev.success) break;
        struct bare_answer *a = xcalloc(1, sizeof(*a));
        a->kind = BARE_ANSWERED;
        a->call = g->call;
        grpc_call_details_destroy(&g->details);
        grpc_metadata_array_destroy(&g->md);
        bare_arm_generic(b, g);
        bare_answer(a, GRPC_STATUS_UNIMPLEMENTED);
        break;
      }
      case BARE_ANSWERED: {
        struct bare_answer *a = ev.tag;
        if (a->payload) grpc_byte_buffer_destroy(a->payload);
        grpc_call_unref(a->call);
        free(a);
        break;
      }
      case BARE_SHUTDOWN:
        atomic_store(&b->shutdown_done, true);
        break;
    }
  }
}

static int serve_bare(const char *port, int nthreads) {
  sigset_t stop;
  block_stop_signals(&stop);
  grpc_init();
  struct bare_server *b = xcalloc(1, sizeof(*b));
  b->shutdown_tag = BARE_SHUTDOWN;
  /* gRPC sets SO_REUSEPORT by default: without this a port already taken would be shared with
   * its owner instead of failing, and bench/rpc.sh's retry on a taken port would not work. */
  grpc_arg reuseport = {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT,
                        .value.integer = 0};
  grpc_channel_args args = {.num_args = 1, .args = &reuseport};
  b->server = grpc_server_create(&args, NULL);
  b->cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(b->server, b->cq, NULL);
  b->echo = grpc_server_register_method(b->server, ECHO_PATH, NULL,
                                        GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%s", port);
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  int bound = grpc_server_add_http2_port(b->server, addr, creds);
  grpc_server_credentials_release(creds);
  if (bound <= 0) {
    fprintf(stderr, "bench_rpc serve-bare: cannot listen on %s\n", addr);
    return 1;
  }
  grpc_server_start(b->server);
  for (size_t i = 0; i < SLOTS; i++) {
    b->slots[i].kind = BARE_SLOT;
    bare_arm(b, &b->slots[i]);
  }
  for (size_t i = 0; i < GENERIC_SLOTS; i++) {
    b->generic[i].kind = BARE_GENERIC;
    bare_arm_generic(b, &b->generic[i]);
  }
  pthread_t threads[64];
  for (int i = 0; i < nthreads; i++)
    if (pthread_create(&threads[i], NULL, bare_serve, b) != 0) {
      fprintf(stderr, "bench_rpc serve-bare: cannot start a thread\n");
      return 1;
    }
  fprintf(stderr, "bench_rpc serve-bare: listening on %s with %d threads\n", addr, nthreads);

  int sig;
  sigwait(&stop, &sig);
  report_server_cpu("bare");
  atomic_store(&b->stopping, true);
  grpc_server_shutdown_and_notify(b->server, b->cq, &b->shutdown_tag);
  grpc_server_cancel_all_calls(b->server);
  while (!atomic_load(&b->shutdown_done)) usleep(1000);
  grpc_completion_queue_shutdown(b->cq);
  for (int i = 0; i < nthreads; i++) pthread_join(threads[i], NULL);
  for (size_t i = 0; i < SLOTS; i++) grpc_metadata_array_destroy(&b->slots[i].md);
  for (size_t i = 0; i < GENERIC_SLOTS; i++) {
    grpc_call_details_destroy(&b->generic[i].details);
    grpc_metadata_array_destroy(&b->generic[i].md);
  }
  grpc_server_destroy(b->server);
  grpc_completion_queue_destroy(b->cq);
  free(b);
  grpc_shutdown();
  return 0;
}

/* ---- layer client ---- */

static bool layer_reply_ok(const ProtobufCMessage *reply) {
  const Brume__Test__EchoReply *r = (const Brume__Test__EchoReply *)reply;
  return r && r->payload.len == PAYLOAD_BYTES && memcmp(r->payload.data, payload, PAYLOAD_BYTES) == 0;
}

struct layer_async {
  brume_rpc_client *client;
  const Brume__Test__EchoRequest *req;
  atomic_long completed;
  atomic_long failed;
  atomic_int inflight;
  atomic_bool stop;
};

static void layer_async_done(void *user, ProtobufCMessage *reply, const brume_err *err);

static int layer_async_start(struct layer_async *a) {
  brume_err *err = NULL;
  if (brume_rpc_unary_async(a->client, &brume__test__echo__descriptor, 0, &a->req->base, NULL,
                           layer_async_done, a, &err) < 0) {
    fprintf(stderr, "bench_rpc client-layer: %s\n", err->msg);
    brume_err_free(err);
    atomic_fetch_add(&a->failed, 1);
    return -1;
  }
  return 0;
}

/* On the client's completion thread: count, then start the next call in this call's place. */
static void layer_async_done(void *user, ProtobufCMessage *reply, const brume_err *err) {
  struct layer_async *a = user;
  if (!layer_reply_ok(reply)) {
    if (atomic_fetch_add(&a->failed, 1) == 0)
      fprintf(stderr, "bench_rpc client-layer: %s\n", err ? err->msg : "wrong reply payload");
  }
  if (reply) protobuf_c_message_free_unpacked(reply, NULL);
  atomic_fetch_add(&a->completed, 1);
  if (!atomic_load(&a->stop) && layer_async_start(a) == 0) return;
  atomic_fetch_sub(&a->inflight, 1);
}

static int client_layer(const char *addr, size_t ncalls, double seconds) {
  Brume__Test__EchoRequest req = echo_request();
  brume_err *err = NULL;
  brume_rpc_client *client = brume_rpc_client_new(addr, NULL, &err);
  if (client == NULL) {
    fprintf(stderr, "bench_rpc client-layer: %s\n", err->msg);
    return 1;
  }

  /* Sequential: warm-up (the first call connects), then timed calls. */
  double *rtt = xcalloc(ncalls, sizeof(*rtt));
  brume_rpc_call_opts warm = {.wait_for_ready = true};
  for (size_t i = 0; i < WARMUP_CALLS + ncalls; i++) {
    ProtobufCMessage *reply = NULL;
    double t0 = now_s();
    int rc = brume_rpc_unary(client, &brume__test__echo__descriptor, 0, &req.base, &reply,
                            i < WARMUP_CALLS ? &warm : NULL, &err);
    double t1 = now_s();
    if (rc < 0 || !layer_reply_ok(reply)) {
      fprintf(stderr, "bench_rpc client-layer: call %zu: %s\n", i,
                      err ? err->msg : "wrong reply payload");
      return 1;
    }
    protobuf_c_message_free_unpacked(reply, NULL);
    if (i >= WARMUP_CALLS) rtt[i - WARMUP_CALLS] = t1 - t0;
  }

  /* INFLIGHT calls in flight, each completion starting the next. */
  struct layer_async a = {.client = client, .req = &req};
  atomic_store(&a.inflight, INFLIGHT);
  for (int i = 0; i < INFLIGHT; i++)
    if (layer_async_start(&a) < 0) return 1;
  sleep_s(ASYNC_WARMUP_SECONDS);
  long c0 = atomic_load(&a.completed);
  double t0 = now_s(), cpu0 = cpu_s();
  sleep_s(seconds);
  long c1 = atomic_load(&a.completed);
  double t1 = now_s(), cpu1 = cpu_s();
  atomic_store(&a.stop, true);
  while (atomic_load(&a.inflight) > 0) usleep(1000);
  brume_rpc_client_free(client);
  if (atomic_load(&a.failed) > 0) {
    fprintf(stderr, "bench_rpc client-layer: %ld of %ld async calls failed\n",
            atomic_load(&a.failed), atomic_load(&a.completed));
    return 1;
  }

  report_client("layer", rtt, ncalls, c1 - c0, t1 - t0, cpu1 - cpu0);
  return 0;
}

/* ---- bare client ---- */

struct bare_client {
  grpc_channel *channel;
  grpc_completion_queue *cq;
  void *echo;
  grpc_slice request; /* the packed EchoRequest, shared by every call's byte buffer */
};

/* Everything one call needs until its batch completes; reused call after call. */
struct bare_call {
  grpc_call *call;
  grpc_byte_buffer *request;
  grpc_metadata_array initial_md;
  grpc_metadata_array trailing_md;
  grpc_byte_buffer *reply;
  grpc_status_code status;
  grpc_slice details;
};

static void bare_start(struct bare_client *b, struct bare_call *c, bool wait_for_ready) {
  memset(c, 0, sizeof(*c));
  gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                       gpr_time_from_millis(DEADLINE_MS, GPR_TIMESPAN));
  c->call = grpc_channel_create_registered_call(b->channel, NULL, GRPC_PROPAGATE_DEFAULTS, b->cq,
                                                b->echo, deadline, NULL);
  c->request = grpc_raw_byte_buffer_create(&b->request, 1);
  grpc_metadata_array_init(&c->initial_md);
  grpc_metadata_array_init(&c->trailing_md);
  grpc_op ops[6];
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (wait_for_ready) ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = c->request;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &c->reply;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
  ops[5].data.recv_status_on_client.status = &c->status;
  ops[5].data.recv_status_on_client.status_details = &c->details;
  if (grpc_call_start_batch(c->call, ops, 6, c, NULL) != GRPC_CALL_OK) {
    fprintf(stderr, "bench_rpc client-bare: gRPC refused a call batch\n");
    exit(1);
  }
}

/* Releases a completed call; true if it succeeded with a reply of the request's length. */
static bool bare_finish(struct bare_client *b, struct bare_call *c) {
  bool ok = c->status == GRPC_STATUS_OK && c->reply &&
            grpc_byte_buffer_length(c->reply) == GRPC_SLICE_LENGTH(b->request);
  if (!ok) {
    char *details = grpc_slice_to_c_string(c->details);
    fprintf(stderr, "bench_rpc client-bare: status %d %s\n", c->status, details);
    gpr_free(details);
  }
  grpc_call_unref(c->call);
  grpc_byte_buffer_destroy(c->request);
  if (c->reply) grpc_byte_buffer_destroy(c->reply);
  grpc_metadata_array_destroy(&c->initial_md);
  grpc_metadata_array_destroy(&c->trailing_md);
  grpc_slice_unref(c->details);
  return ok;
}

/* Waits for the next completed call on the queue. */
static struct bare_call *bare_next(struct bare_client *b) {
  grpc_event ev = grpc_completion_queue_next(b->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
  if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
    fprintf(stderr, "bench_rpc client-bare: unexpected completion (type %d)\n", ev.type);
    exit(1);
  }
  return ev.tag;
}

struct bare_async {
  struct bare_client *b;
  atomic_long completed;
  atomic_long failed;
  atomic_bool stop;
};

/* Serves the queue until the INFLIGHT calls are done, each completion starting the next call in
 * its place until told to stop. */
static void *bare_drive(void *arg) {
  struct bare_async *a = arg;
  for (int inflight = INFLIGHT; inflight > 0;) {
    struct bare_call *c = bare_next(a->b);
    if (!bare_finish(a->b, c)) atomic_fetch_add(&a->failed, 1);
    atomic_fetch_add(&a->completed, 1);
    if (atomic_load(&a->stop)) inflight--;
    else bare_start(a->b, c, false);
  }
  return NULL;
}

static int client_bare(const char *addr, size_t ncalls, double seconds) {
  grpc_init();
  Brume__Test__EchoRequest req = echo_request();
  size_t len = protobuf_c_message_get_packed_size(&req.base);
  struct bare_client b = {.request = grpc_slice_malloc(len)};
  protobuf_c_message_pack(&req.base, GRPC_SLICE_START_PTR(b.request));
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  b.channel = grpc_channel_create(addr, creds, NULL);
  grpc_channel_credentials_release(creds);
  b.cq = grpc_completion_queue_create_for_next(NULL);
  b.echo = grpc_channel_register_call(b.channel, ECHO_PATH, NULL, NULL);
  gpr_timespec forever = gpr_inf_future(GPR_CLOCK_MONOTONIC);

  double *rtt = xcalloc(ncalls, sizeof(*rtt));
  struct bare_call one;
  for (size_t i = 0; i < WARMUP_CALLS + ncalls; i++) {
    double t0 = now_s();
    bare_start(&b, &one, i < WARMUP_CALLS);
    bare_next(&b);
    double t1 = now_s();
    if (!bare_finish(&b, &one)) return 1;
    if (i >= WARMUP_CALLS) rtt[i - WARMUP_CALLS] = t1 - t0;
  }

  /* INFLIGHT calls in flight on the one queue, served by a thread of their own while this one
   * samples the count, as the layer's completion thread does. */
  struct bare_async a = {.b = &b};
  static struct bare_call calls[INFLIGHT];
  for (int i = 0; i < INFLIGHT; i++) bare_start(&b, &calls[i], false);
  pthread_t driver;
  if (pthread_create(&driver, NULL, bare_drive, &a) != 0) {
    fprintf(stderr, "bench_rpc client-bare: cannot start a thread\n");
    return 1;
  }
  sleep_s(ASYNC_WARMUP_SECONDS);
  long c0 = atomic_load(&a.completed);
  double t0 = now_s(), cpu0 = cpu_s();
  sleep_s(seconds);
  long c1 = atomic_load(&a.completed);
  double t1 = now_s(), cpu1 = cpu_s();
  atomic_store(&a.stop, true);
  pthread_join(driver, NULL);
  long failed = atomic_load(&a.failed), completed = atomic_load(&a.completed);
  grpc_channel_destroy(b.channel);
  grpc_completion_queue_shutdown(b.cq);
  while (grpc_completion_queue_next(b.cq, forever, NULL).type != GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(b.cq);
  grpc_slice_unref(b.request);
  grpc_shutdown();
  if (failed > 0) {
    fprintf(stderr, "bench_rpc client-bare: %ld of %ld async calls failed\n", failed, completed);
    return 1;
  }

  report_client("bare", rtt, ncalls, c1 - c0, t1 - t0, cpu1 - cpu0);
  return 0;
}

/* ---- main ---- */

static int usage(void) {
  fprintf(stderr,
          "usage: bench_rpc serve-layer|serve-bare PORT THREADS\n"
          "       bench_rpc client-layer|client-bare ADDR [CALLS [SECONDS]]\n");
  return 2;
}

int main(int argc, char **argv) {
  brume_log_init("bench-rpc", BRUME_LOG_INFO);
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 4 && strcmp(argv[1], "serve-layer") == 0)
    return serve_layer(argv[2], parse_threads(argv[3]));
  if (argc == 4 && strcmp(argv[1], "serve-bare") == 0)
    return serve_bare(argv[2], parse_threads(argv[3]));
  if (argc >= 3 && argc <= 5 && strncmp(argv[1], "client-", 7) == 0) {
    long calls = argc > 3 ? atol(argv[3]) : DEFAULT_SEQ_CALLS;
    double seconds = argc > 4 ? atof(argv[4]) : DEFAULT_SECONDS;
    if (calls < 1 || seconds <= 0) return usage();
    if (strcmp(argv[1], "client-layer") == 0) return client_layer(argv[2], (size_t)calls, seconds);
    if (strcmp(argv[1], "client-bare") == 0) return client_bare(argv[2], (size_t)calls, seconds);
  }
  return usage();
}
