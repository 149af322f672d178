/* bench_async: asynchronous invocations through the whole path, every daemon its own process (a
 * real etcd, a real nats-server with JetStream, one brume-worker with real microVMs,
 * brume-placement, brume-counting, brume-frontend; tests/harness/cluster_fixture), driven
 * through the Frontend's Invoke (invocation type Event) with an API key, as a client would. The
 * function is the static echo runtime (no work).
 *
 *   1. The delay from acceptance to the start of execution: BENCH_RATE events a second (default
 *      20) for BENCH_SECONDS (default 5) on an empty queue, the frontend delivering
 *      (async_workers BENCH_WORKERS, default 8); each event's state (GetEvent) gives when it was
 *      accepted and when its first try began: p50 and p99.
 *   2. Delivered events a second: BURST_N events queued at once, then the time until every one
 *      of them ended (the frontend's brume_frontend_events_ended_total).
 *   3. Accepted events a second: the frontend restarted with async_workers 0 (it only accepts,
 *      so delivery takes no CPU from it), CALLERS (64) Event invocations kept in flight for
 *      BENCH_SECONDS, each answered 202 only once JetStream acknowledged it: events/s, p50 and
 *      p99 of the round trip. Each event has its own request id (a repeated one would be a
 *      duplicate, acknowledged without being stored again).
 *   4. The same with InvokeEvents: BATCH_CALLERS calls of BATCH events each kept in flight, every
 *      event answered 202 only once JetStream acknowledged it: events/s, the CPU per event, and
 *      the p50 and p99 of a call's round trip.
 *
 * JSON lines in bench/run.sh's format on stdout, progress on stderr; exit 1 when a call fails.
 * Needs root, libvirtd, etcd and nats-server. */
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "brume/async.pb-c.h"
#include "brume/frontend.pb-c.h"
#include "cluster_fixture.h"
#include "err.h"
#include "log.h"
#include "mem.h"
#include "nats_server.h"
#include "proc.h"
#include "rpc.h"
#include "testutil.h"

#define CALLERS 64
#define BATCH_CALLERS 16
#define BATCH 100
#define MAX_SAMPLES (1 << 17)
#define BURST_N 2000
#define LATENCY_MAX 4096

enum { RUN, STOP };

static brume_test_cluster *c;
static brume_test_nats *nats;
static char key[160];
static unsigned m_invoke, m_invoke_events;
static bench_samples lat;
static double t0s[CALLERS];
static uint64_t seqs[CALLERS];
static bench_chains chains = {.mode = STOP};
static _Atomic long accepted, failures;
static char nats_url[128], workers_flag[16];

static void fail_call(const char *what, const brume_err *err) {
  if (atomic_fetch_add(&failures, 1) < 5) fprintf(stderr, "bench_async: %s: %s\n", what, err->msg);
}

/* Every event's payload. */
static const char PAYLOAD[] = "{\"bench\": true}";

static void fill_event(Brume__InvokeRequest *req) {
  brume__invoke_request__init(req);
  req->function_name = "noop";
  req->invocation_type = BRUME__INVOCATION_TYPE__INVOCATION_TYPE_EVENT;
  req->payload.data = (uint8_t *)PAYLOAD;
  req->payload.len = sizeof(PAYLOAD) - 1;
}

/* One blocking Event invocation with request id rid; its event id into id (>= 40). */
static int send_one(const char *rid, char *id) {
  Brume__InvokeRequest req;
  fill_event(&req);
  brume_rpc_call_opts o = {.deadline_ms = 30000, .api_key = key, .request_id = rid};
  Brume__InvokeResponse *r = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (brume_rpc_unary(c->frontend.client, &brume__frontend__descriptor, m_invoke, &req.base,
                      (ProtobufCMessage **)&r, &o, &err) < 0) {
    fail_call("Invoke (Event)", err);
    return -1;
  }
  snprintf(id, 40, "%s", r->event_id);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  return 0;
}

/* ---- 3: accepted events a second, CALLERS in flight ---- */

/* Caller i's call answered (err NULL) with ok events accepted: recorded while recording, then
 * the caller's next call through next, unless the run is stopping or the call failed. */
static void chain_answered(size_t i, const brume_err *err, long ok, void (*next)(size_t i)) {
  if (err == NULL && atomic_load(&chains.recording)) {
    bench_samples_add(&lat, i, (brume_test_mono_ms() - t0s[i]) * 1000);
    atomic_fetch_add(&accepted, ok);
  }
  if (atomic_load(&chains.mode) == STOP || err) {
    atomic_fetch_sub(&chains.running, 1);
    return;
  }
  next(i);
}

static void start_next(size_t i);

static void accepted_done(void *user, ProtobufCMessage *reply, const brume_err *err) {
  size_t i = (size_t)(uintptr_t)user;
  if (err) fail_call("Invoke (Event)", err);
  if (reply) protobuf_c_message_free_unpacked(reply, NULL);
  chain_answered(i, err, 1, start_next);
}

static void start_next(size_t i) {
  Brume__InvokeRequest req;
  fill_event(&req);
  char rid[48];
  snprintf(rid, sizeof(rid), "bench-%zu-%" PRIu64, i, seqs[i]++);
  brume_rpc_call_opts o = {.deadline_ms = 30000, .api_key = key, .request_id = rid};
  t0s[i] = brume_test_mono_ms();
  brume_autoptr(brume_err) err = NULL;
  if (brume_rpc_unary_async(c->frontend.client, &brume__frontend__descriptor, m_invoke, &req.base,
                            &o, accepted_done, (void *)(uintptr_t)i, &err) < 0) {
    fail_call("Invoke (Event) not sent", err);
    atomic_fetch_sub(&chains.running, 1);
  }
}

/* ---- 4: accepted events a second, BATCH_CALLERS calls of BATCH in flight ---- */

static void start_next_batch(size_t i);

static void batch_done(void *user, ProtobufCMessage *reply, const brume_err *err) {
  size_t i = (size_t)(uintptr_t)user;
  long ok = 0;
  if (err) fail_call("InvokeEvents", err);
  const Brume__InvokeEventsResponse *r = (const void *)reply;
  for (size_t k = 0; r && k < r->n_results; k++) {
    if (r->results[k]->status_code == 202) {
      ok++;
    } else {
      brume_err e = {.code = BRUME_INTERNAL, .msg = r->results[k]->error_message};
      fail_call("InvokeEvents entry", &e);
    }
  }
  if (reply) protobuf_c_message_free_unpacked(reply, NULL);
  chain_answered(i, err, ok, start_next_batch);
}

static void start_next_batch(size_t i) {
  Brume__EventEntry entries[BATCH], *ptrs[BATCH];
  char rids[BATCH][48];
  uint64_t seq = seqs[i]++;
  for (size_t k = 0; k < BATCH; k++) {
    brume__event_entry__init(&entries[k]);
    snprintf(rids[k], sizeof(rids[k]), "batch-%zu-%" PRIu64 "-%zu", i, seq, k);
    entries[k].request_id = rids[k];
    entries[k].payload.data = (uint8_t *)PAYLOAD;
    entries[k].payload.len = sizeof(PAYLOAD) - 1;
    ptrs[k] = &entries[k];
  }
  Brume__InvokeEventsRequest req = BRUME__INVOKE_EVENTS_REQUEST__INIT;
  req.function_name = "noop";
  req.entries = ptrs;
  req.n_entries = BATCH;
  brume_rpc_call_opts o = {.deadline_ms = 30000, .api_key = key};
  t0s[i] = brume_test_mono_ms();
  brume_autoptr(brume_err) err = NULL;
  if (brume_rpc_unary_async(c->frontend.client, &brume__frontend__descriptor, m_invoke_events,
                            &req.base, &o, batch_done, (void *)(uintptr_t)i, &err) < 0) {
    fail_call("InvokeEvents not sent", err);
    atomic_fetch_sub(&chains.running, 1);
  }
}

/* Runs n chains of start for seconds, and prints accepted events a second (name), the CPU per
 * event of the frontend, nats-server and this client (name_cpu_*), and each call's round trip
 * (name_p50_us, name_p99_us). */
static void run_accepting(const char *name, size_t n, void (*start)(size_t i), size_t per_call,
                          double seconds) {
  atomic_store(&accepted, 0);
  bench_samples_free(&lat);
  bench_samples_init(&lat, CALLERS, MAX_SAMPLES);
  /* Where the CPU goes, per accepted event (the unrecorded first second included in both). */
  double cpu0[3] = {bench_cpu_us(c->frontend.pid), bench_cpu_us(nats->pid), bench_cpu_us(getpid())};
  long sent0 = 0;
  for (size_t i = 0; i < n; i++) sent0 += (long)seqs[i];
  double rec = bench_chains_run(&chains, RUN, STOP, n, start, seconds);
  long sent = -sent0;
  for (size_t i = 0; i < n; i++) sent += (long)seqs[i];
  sent *= (long)per_call;
  char key_name[64];
  snprintf(key_name, sizeof(key_name), "%s_per_s", name);
  bench_emit("async", key_name, (double)atomic_load(&accepted) / rec, "events/s");
  if (sent > 0) {
    static const char *const who[] = {"frontend", "nats", "client"};
    double cpu1[3] = {bench_cpu_us(c->frontend.pid), bench_cpu_us(nats->pid),
                      bench_cpu_us(getpid())};
    for (int k = 0; k < 3; k++) {
      snprintf(key_name, sizeof(key_name), "%s_cpu_%s_us", name, who[k]);
      bench_emit("async", key_name, (cpu1[k] - cpu0[k]) / (double)sent, "us/event");
    }
  }
  snprintf(key_name, sizeof(key_name), "%s_p50_us", name);
  bench_emit("async", key_name, bench_samples_percentile(&lat, 50), "us");
  snprintf(key_name, sizeof(key_name), "%s_p99_us", name);
  bench_emit("async", key_name, bench_samples_percentile(&lat, 99), "us");
}

/* ---- 1 and 2 ---- */

/* The frontend's brume_frontend_events_ended_total{end="succeeded"}, or -1. */
static long ended_succeeded(void) {
  static char buf[1 << 20];
  if (brume_test_http_get(c->frontend.http_port, "/metrics", buf, sizeof(buf)) <= 0) return -1;
  const char *m = strstr(buf, "brume_frontend_events_ended_total{end=\"succeeded\"} ");
  return m ? atol(m + strlen("brume_frontend_events_ended_total{end=\"succeeded\"} ")) : 0;
}

/* The event's first try began this many ms after it was accepted, or -1 while it has not. */
static double start_delay_ms(const char *id) {
  Brume__GetEventRequest req = BRUME__GET_EVENT_REQUEST__INIT;
  req.event_id = (char *)id;
  Brume__GetEventResponse *r = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (brume_test_cluster_frontend_call(c, "GetEvent", key, NULL, &req, &r, &err) < 0) return -1;
  double d = -1;
  if (r->event && r->event->n_tries > 0)
    d = (double)(r->event->tries[0]->began_unix_ms - r->event->accepted_unix_ms);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  return d;
}

static int start_frontend(const char *workers) {
  snprintf(workers_flag, sizeof(workers_flag), "%s", workers);
  /* Parts 3 and 4 queue far more than the default per-account limit of 100,000, with nothing
   * delivering them. */
  const char *flags[] = {
      "--nats_urls", nats_url, "--async_workers", workers_flag, "--async_max_queued_per_account",
      "10000000",    NULL};
  return brume_test_cluster_start_frontend(c, flags);
}

int main(void) {
  brume_log_init("bench-async", BRUME_LOG_WARN);
  signal(SIGPIPE, SIG_IGN);
  char *argv[] = {"bench_async",        BENCH_GUEST_DIR,      BENCH_BRUME_INIT,
                  BENCH_ECHO_RUNTIME,   BENCH_BRUME_WORKER,   BENCH_BRUME_PLACEMENT,
                  BENCH_BRUME_COUNTING, BENCH_BRUME_FRONTEND, NULL};
  int code = 0;
  c = brume_test_cluster_prepare(8, argv, "bench-async", "ba", 1, &code);
  if (c == NULL) return code == 77 ? 1 : code;
  double seconds = getenv("BENCH_SECONDS") ? atof(getenv("BENCH_SECONDS")) : 5;
  double rate = getenv("BENCH_RATE") ? atof(getenv("BENCH_RATE")) : 20;
  const char *workers = getenv("BENCH_WORKERS") ? getenv("BENCH_WORKERS") : "8";
  m_invoke = (unsigned)(protobuf_c_service_descriptor_get_method_by_name(
                            &brume__frontend__descriptor, "Invoke") -
                        brume__frontend__descriptor.methods);
  m_invoke_events = (unsigned)(protobuf_c_service_descriptor_get_method_by_name(
                                   &brume__frontend__descriptor, "InvokeEvents") -
                               brume__frontend__descriptor.methods);
  bench_samples_init(&lat, CALLERS, MAX_SAMPLES);
  int rc = 1;
  const char *worker_flags[] = {"--pool-size", "2", "--freeze-after", "10s", NULL};
  nats = brume_test_nats_start();
  if (nats == NULL) goto out;
  snprintf(nats_url, sizeof(nats_url), "%s", nats->url);
  if (brume_test_cluster_start_workers(c, worker_flags) < 0 ||
      brume_test_cluster_start_placement(c, 0, NULL) < 0 ||
      brume_test_cluster_start_counting(c, NULL) < 0 || start_frontend(workers) < 0 ||
      brume_test_cluster_bootstrap_key(c, "bench", key, sizeof(key)) < 0)
    goto out;
  brume_err *err = NULL;
  if (brume_test_cluster_create_echo(c, key, "noop", 60000, &err) < 0) {
    fail_call("CreateFunction", err);
    brume_err_free(err);
    goto out;
  }

  /* Warm-up: the first events start the sandboxes (cold starts) the deliveries will use. */
  char id[40], rid[48];
  size_t n_lat = (size_t)(rate * seconds);
  if (n_lat > LATENCY_MAX) n_lat = LATENCY_MAX;
  long before = ended_succeeded();
  for (int i = 0; i < atoi(workers) * 2; i++) {
    snprintf(rid, sizeof(rid), "warm-%d", i);
    if (send_one(rid, id) < 0) goto out;
  }
  for (int w = 0; w < 1200 && ended_succeeded() < before + atoi(workers) * 2; w++)
    usleep(100 * 1000);

  /* 1. The delay from acceptance to the start of execution. */
  fprintf(stderr, "bench_async: %zu events at %.0f/s, from acceptance to execution\n", n_lat, rate);
  char(*ids)[40] = brume_xcalloc(n_lat, 40);
  double t_start = brume_test_mono_ms();
  for (size_t i = 0; i < n_lat; i++) {
    double due = t_start + (double)i * 1000.0 / rate, now = brume_test_mono_ms();
    if (due > now) usleep((useconds_t)((due - now) * 1000));
    snprintf(rid, sizeof(rid), "lat-%zu", i);
    if (send_one(rid, ids[i]) < 0) goto out;
  }
  double *delays = brume_xcalloc(n_lat, sizeof(double));
  for (size_t i = 0; i < n_lat; i++) {
    for (int w = 0; w < 600 && (delays[i] = start_delay_ms(ids[i])) < 0; w++) usleep(50 * 1000);
    if (delays[i] < 0) {
      fprintf(stderr, "bench_async: event %s never started\n", ids[i]);
      goto out;
    }
  }
  bench_emit("async", "accept_to_start_p50_ms", brume_test_percentile(delays, n_lat, 50), "ms");
  bench_emit("async", "accept_to_start_p99_ms", brume_test_percentile(delays, n_lat, 99), "ms");
  free(delays);
  free(ids);

  /* 2. Delivered events a second. */
  fprintf(stderr, "bench_async: %d events queued at once, delivered by %s workers\n", BURST_N,
          workers);
  before = ended_succeeded();
  double t_burst = brume_test_mono_ms();
  for (int i = 0; i < BURST_N; i++) {
    snprintf(rid, sizeof(rid), "burst-%d", i);
    if (send_one(rid, id) < 0) goto out;
  }
  int w = 0;
  for (; w < 3000 && ended_succeeded() < before + BURST_N; w++) usleep(100 * 1000);
  if (ended_succeeded() < before + BURST_N) {
    fprintf(stderr, "bench_async: the burst was not delivered within 300 s\n");
    goto out;
  }
  bench_emit("async", "delivered_per_s", BURST_N / ((brume_test_mono_ms() - t_burst) / 1000),
             "events/s");

  /* 3. Accepted events a second: the frontend only accepts. */
  if (brume_test_cluster_stop_daemon(&c->frontend, SIGTERM) < 0 || start_frontend("0") < 0)
    goto out;
  if (send_one("accept-first", id) < 0) goto out; /* the queue open, the client connected */
  fprintf(stderr, "bench_async: %d Event invocations in flight for %.0f s, accepted only\n",
          CALLERS, seconds);
  run_accepting("accepted", CALLERS, start_next, 1, seconds);
  /* 4. The same, BATCH events a call. */
  fprintf(stderr, "bench_async: %d InvokeEvents calls of %d events in flight for %.0f s\n",
          BATCH_CALLERS, BATCH, seconds);
  run_accepting("accepted_batched", BATCH_CALLERS, start_next_batch, BATCH, seconds);
  rc = atomic_load(&failures) ? 1 : 0;
out:
  if (rc != 0) brume_test_cluster_dump_logs(c);
  brume_test_cluster_free(c);
  brume_test_nats_free(nats);
  bench_samples_free(&lat);
  return rc;
}
