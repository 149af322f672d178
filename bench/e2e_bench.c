/* bench_e2e: invocations through the whole path, every daemon its own process (a real etcd, one
 * brume-worker with real 128 MiB microVMs, brume-placement, brume-counting, brume-frontend;
 * tests/harness/cluster_fixture), driven through the Frontend's Invoke with an API key, as a
 * client would. The function is the static echo runtime. The worker runs with pool_size 2 and
 * freeze_after 10s, so warm sandboxes are not frozen between back-to-back invocations.
 *
 *   1. Warm, one caller: back-to-back invocations of one function (its sandbox made by a first,
 *      cold, invocation): p50 and p99 of the client's round trip; the CPU per invocation by
 *      where it went (seq_cpu_*: each daemon, the guests' vCPU threads, QEMU's other threads,
 *      the whole host), and the throughput that cost would allow on this host's CPUs, for the
 *      whole path and for the guests alone (seq_cpu_bound_per_s, seq_guest_bound_per_s).
 *   2. Warm, CALLERS in flight, each a chain of asynchronous calls, after a warm-up that starts
 *      CALLERS sandboxes: invocations per second, p50 and p99, and how many were cold (none
 *      should be), for BENCH_SECONDS (default 5) after 1 s unrecorded; the CPU per invocation
 *      by where it went, as in 1 (warm_64_cpu_*).
 *   3. The bare RPC round trip, under the same load and alone: Invoke with DryRun, which the
 *      frontend authenticates, validates and resolves, then answers without running anything.
 *   4. Cold starts from a pool hit: COLD_N functions, each invoked once when the worker's pool
 *      is full again (no refill boot beside it; the answer's pool_hit says it was a hit) and has
 *      stood BENCH_POOL_AGE_MS more (default 3000: a pooled VM is not taken the moment it is
 *      ready; its warm-up and the guest's first free page reports come in its first seconds).
 *   5. Cold starts from a boot: COLD_N functions with a 1 GiB /tmp, which no pooled VM has.
 *
 * JSON lines in bench/run.sh's format on stdout, progress on stderr; exit 1 when a call fails.
 * Needs root, libvirtd and etcd, as tests/e2e does. */
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "brume/frontend.pb-c.h"
#include "brume/worker.pb-c.h"
#include "cluster_fixture.h"
#include "err.h"
#include "log.h"
#include "mem.h"
#include "rpc.h"
#include "testutil.h"

#define CALLERS_MAX 64
#define MAX_SAMPLES (1 << 15)
#define SEQ_N 2000
#define COLD_N 8

enum { W_STATS = 6 }; /* worker.proto's order */
typedef enum mode { WARM, BARE, STOP } mode;

static brume_test_cluster *c;
static char key[160];
static unsigned m_invoke, m_create;
static bench_samples lat;
static double t0s[CALLERS_MAX];
/* Callers in flight: BENCH_CALLERS, default and at most CALLERS_MAX. */
static size_t callers = CALLERS_MAX;
static bench_chains chains = {.mode = STOP};
static _Atomic long done_calls, colds, failures;

static void fail_call(const char *what, const brume_err *err) {
  if (atomic_fetch_add(&failures, 1) < 5) fprintf(stderr, "bench_e2e: %s: %s\n", what, err->msg);
}

static int call(unsigned method, const ProtobufCMessage *req, ProtobufCMessage **reply,
                brume_err **err) {
  brume_rpc_call_opts o = {.deadline_ms = 600000, .api_key = key};
  return brume_rpc_unary(c->frontend.client, &brume__frontend__descriptor, method, req, reply, &o,
                         err);
}

static int create(const char *name, uint32_t tmp_mib) {
  Brume__CreateFunctionRequest req = BRUME__CREATE_FUNCTION_REQUEST__INIT;
  req.function_name = (char *)name;
  req.handler = "echo.handler";
  req.timeout_ms = 60000;
  req.ephemeral_storage_mib = tmp_mib;
  req.zip_file.data = c->workers[0]->zip_data;
  req.zip_file.len = c->workers[0]->zip_len;
  brume_autoptr(ProtobufCMessage) reply = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (call(m_create, &req.base, &reply, &err) < 0) {
    fail_call("CreateFunction", err);
    return -1;
  }
  return 0;
}

static void fill_invoke(Brume__InvokeRequest *req, const char *fn, bool dry) {
  brume__invoke_request__init(req);
  req->function_name = (char *)fn;
  req->payload.data = (uint8_t *)"bench";
  req->payload.len = 5;
  if (dry) req->invocation_type = BRUME__INVOCATION_TYPE__INVOCATION_TYPE_DRY_RUN;
}

/* One blocking invocation: its round trip in us, or -1. */
static double invoke_once(const char *fn, bool dry, Brume__InvokeResponse **out) {
  Brume__InvokeRequest req;
  fill_invoke(&req, fn, dry);
  ProtobufCMessage *reply = NULL;
  brume_autoptr(brume_err) err = NULL;
  double t0 = brume_test_mono_ms();
  if (call(m_invoke, &req.base, &reply, &err) < 0) {
    fail_call("Invoke", err);
    return -1;
  }
  double us = (brume_test_mono_ms() - t0) * 1000;
  Brume__InvokeResponse *r = (void *)reply;
  if (r->function_error) {
    brume_err e = {.code = BRUME_INTERNAL, .msg = r->function_error->type};
    fail_call("Invoke answered a function error", &e);
    protobuf_c_message_free_unpacked(reply, NULL);
    return -1;
  }
  if (out)
    *out = r;
  else
    protobuf_c_message_free_unpacked(reply, NULL);
  return us;
}

/* ---- chains of asynchronous invocations ---- */

static void start_next(size_t i);

static void on_answer(void *user, ProtobufCMessage *reply, const brume_err *err) {
  size_t i = (size_t)(uintptr_t)user;
  if (reply == NULL) {
    fail_call("Invoke", err);
    atomic_fetch_sub(&chains.running, 1);
    return;
  }
  Brume__InvokeResponse *r = (void *)reply;
  if (atomic_load(&chains.recording)) {
    bench_samples_add(&lat, i, brume_test_mono_ms() * 1000 - t0s[i]);
    atomic_fetch_add(&done_calls, 1);
    if (r->cold_start) atomic_fetch_add(&colds, 1);
  }
  protobuf_c_message_free_unpacked(reply, NULL);
  start_next(i);
}

static void start_next(size_t i) {
  mode m = atomic_load(&chains.mode);
  if (m == STOP) {
    atomic_fetch_sub(&chains.running, 1);
    return;
  }
  Brume__InvokeRequest req;
  fill_invoke(&req, "bench", m == BARE);
  brume_rpc_call_opts o = {.deadline_ms = 60000, .api_key = key};
  brume_autoptr(brume_err) err = NULL;
  t0s[i] = brume_test_mono_ms() * 1000;
  if (brume_rpc_unary_async(c->frontend.client, &brume__frontend__descriptor, m_invoke, &req.base,
                            &o, on_answer, (void *)(uintptr_t)i, &err) < 0) {
    fail_call("starting Invoke", err);
    atomic_fetch_sub(&chains.running, 1);
  }
}

/* Every chain in mode m, 1 s unrecorded then seconds recorded; returns the recorded seconds. */
static double run_phase(mode m, double seconds) {
  bench_samples_clear(&lat);
  atomic_store(&done_calls, 0);
  atomic_store(&colds, 0);
  return bench_chains_run(&chains, m, STOP, callers, start_next, seconds);
}

/* ---- cold starts ---- */

static int pool_ready(void) {
  Brume__WorkerStatsRequest req = BRUME__WORKER_STATS_REQUEST__INIT;
  brume_autoptr(ProtobufCMessage) reply = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (brume_rpc_unary(c->workers[0]->client, &brume__worker__descriptor, W_STATS, &req.base, &reply,
                      NULL, &err) < 0)
    return -1;
  return (int)((Brume__WorkerStatsResponse *)reply)->host->pool_ready;
}

/* COLD_N cold starts of new functions; from the pool (waiting for it to hold a VM) or not. */
static long pool_age_ms;

static int cold_starts(bool from_pool) {
  double total[COLD_N], init[COLD_N];
  int hits = 0;
  for (int k = 0; k < COLD_N; k++) {
    char name[32];
    snprintf(name, sizeof(name), "%s-%d", from_pool ? "pool" : "boot", k);
    if (create(name, from_pool ? 0 : 1024) < 0) return -1;
    /* The pool full again (pool_size 2): no refill boot running beside this cold start. */
    for (int w = 0; from_pool && w < 300 && pool_ready() < 2; w++) usleep(50 * 1000);
    if (from_pool && pool_ready() < 2) {
      fprintf(stderr, "bench_e2e: the worker's pool did not fill again within 15 s\n");
      return -1;
    }
    if (from_pool && pool_age_ms > 0) usleep((useconds_t)pool_age_ms * 1000);
    Brume__InvokeResponse *r = NULL;
    double us = invoke_once(name, false, &r);
    if (us < 0) return -1;
    if (!r->cold_start) {
      brume_err e = {.code = BRUME_INTERNAL, .msg = "the first invocation was not cold"};
      fail_call(name, &e);
      protobuf_c_message_free_unpacked(&r->base, NULL);
      return -1;
    }
    hits += r->pool_hit;
    total[k] = us / 1000;
    init[k] = (double)r->init_duration_us / 1000;
    protobuf_c_message_free_unpacked(&r->base, NULL);
  }
  const char *what = from_pool ? "cold_pool" : "cold_boot";
  char m[64];
  snprintf(m, sizeof(m), "%s_p50_ms", what);
  bench_emit("e2e", m, brume_test_percentile(total, COLD_N, 50), "ms");
  snprintf(m, sizeof(m), "%s_p99_ms", what);
  bench_emit("e2e", m, brume_test_percentile(total, COLD_N, 99), "ms");
  snprintf(m, sizeof(m), "%s_init_p50_ms", what);
  bench_emit("e2e", m, brume_test_percentile(init, COLD_N, 50), "ms");
  snprintf(m, sizeof(m), "%s_pool_hits", what);
  bench_emit("e2e", m, hits, "of 8");
  return 0;
}

/* ---- the run ---- */

static int warm_up(void) {
  /* CALLERS invocations at once: each finds no idle sandbox and starts one. */
  atomic_store(&chains.mode, STOP);
  atomic_store(&chains.running, (int)callers);
  atomic_store(&chains.recording, false);
  for (size_t i = 0; i < callers; i++) {
    Brume__InvokeRequest req;
    fill_invoke(&req, "bench", false);
    brume_rpc_call_opts o = {.deadline_ms = 600000, .api_key = key};
    brume_autoptr(brume_err) err = NULL;
    if (brume_rpc_unary_async(c->frontend.client, &brume__frontend__descriptor, m_invoke, &req.base,
                              &o, on_answer, (void *)(uintptr_t)i, &err) < 0) {
      fail_call("Invoke (warm-up)", err);
      return -1;
    }
  }
  while (atomic_load(&chains.running) > 0) usleep(50 * 1000);
  return atomic_load(&failures) ? -1 : 0;
}

/* Where the host's CPU went, in microseconds so far: each daemon, the QEMUs of this bench's
 * domains (their vCPU threads apart: the guests' own work under TCG), and the whole host. */
typedef struct cpu_snap {
  double frontend, counting, placement, worker, vcpu, qemu_other, host;
} cpu_snap;

static void cpu_take(cpu_snap *s) {
  *s = (cpu_snap){.frontend = bench_cpu_us(c->frontend.pid),
                  .counting = bench_cpu_us(c->counting.pid),
                  .placement = bench_cpu_us(c->pl[0].pid),
                  .worker = bench_cpu_us(c->workers[0]->pid),
                  .host = bench_host_busy_us()};
  pid_t pids[CALLERS_MAX * 2];
  size_t n = brume_test_qemu_pids(c->workers[0]->name_prefix, pids, CALLERS_MAX * 2);
  for (size_t i = 0; i < n; i++) bench_threads_cpu_us(pids[i], "CPU ", &s->vcpu, &s->qemu_other);
}

/* The CPU at the start and the end of a closed-loop phase's recording. */
static cpu_snap phase_cpu[2];

static void take_phase_cpu(bool recording) {
  cpu_take(&phase_cpu[recording ? 0 : 1]);
}

/* The CPU per invocation between a and b (n invocations), by where it went: <phase>_cpu_*. A
 * guest that stopped in between takes its CPU time with it, so the phases keep their sandboxes. */
static void cpu_emit(const char *phase, const cpu_snap *a, const cpu_snap *b, long n) {
  if (n <= 0) return;
  const struct {
    const char *name;
    double us;
  } parts[] = {{"frontend", b->frontend - a->frontend},
               {"counting", b->counting - a->counting},
               {"placement", b->placement - a->placement},
               {"worker", b->worker - a->worker},
               {"guest_vcpu", b->vcpu - a->vcpu},
               {"qemu_other", b->qemu_other - a->qemu_other},
               {"host", b->host - a->host}};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(parts); i++) {
    char metric[96];
    snprintf(metric, sizeof(metric), "%s_cpu_%s_us", phase, parts[i].name);
    bench_emit("e2e", metric, parts[i].us / (double)n, "us/inv");
  }
}

int main(void) {
  brume_log_init("bench-e2e", BRUME_LOG_WARN);
  signal(SIGPIPE, SIG_IGN);
  char *argv[] = {"bench_e2e",          BENCH_GUEST_DIR,      BENCH_BRUME_INIT,
                  BENCH_ECHO_RUNTIME,   BENCH_BRUME_WORKER,   BENCH_BRUME_PLACEMENT,
                  BENCH_BRUME_COUNTING, BENCH_BRUME_FRONTEND, NULL};
  int code = 0;
  c = brume_test_cluster_prepare(8, argv, "bench-e2e", "be", 1, &code);
  if (c == NULL) return code == 77 ? 1 : code;
  double seconds = getenv("BENCH_SECONDS") ? atof(getenv("BENCH_SECONDS")) : 5;
  pool_age_ms = getenv("BENCH_POOL_AGE_MS") ? atol(getenv("BENCH_POOL_AGE_MS")) : 3000;
  m_invoke = (unsigned)(protobuf_c_service_descriptor_get_method_by_name(
                            &brume__frontend__descriptor, "Invoke") -
                        brume__frontend__descriptor.methods);
  m_create = (unsigned)(protobuf_c_service_descriptor_get_method_by_name(
                            &brume__frontend__descriptor, "CreateFunction") -
                        brume__frontend__descriptor.methods);
  if (getenv("BENCH_CALLERS")) {
    long n = atol(getenv("BENCH_CALLERS"));
    callers = n < 1 ? 1 : n > CALLERS_MAX ? CALLERS_MAX : (size_t)n;
  }
  const char *freeze_after = getenv("BENCH_FREEZE_AFTER") ? getenv("BENCH_FREEZE_AFTER") : "10s";
  bench_samples_init(&lat, CALLERS_MAX, MAX_SAMPLES);
  int rc = 1;
  const char *worker_flags[24] = {"--pool-size", "2", "--freeze-after", freeze_after, NULL};
  bench_worker_flags(worker_flags, 4, 24);
  /* BENCH_FRONTEND_DEBUG=1: the frontend logs each invocation's steps (with BRUME_TEST_KEEP=1). */
  const char *debug_flags[] = {"--log-level", "debug", NULL};
  const char *const *frontend_flags = getenv("BENCH_FRONTEND_DEBUG") ? debug_flags : NULL;
  if (brume_test_cluster_start_workers(c, worker_flags) < 0 ||
      brume_test_cluster_start_placement(c, 0, NULL) < 0 ||
      brume_test_cluster_start_counting(c, NULL) < 0 ||
      brume_test_cluster_start_frontend(c, frontend_flags) < 0 ||
      brume_test_cluster_bootstrap_key(c, "bench", key, sizeof(key)) < 0 || create("bench", 0) < 0)
    goto out;

  /* The worker boots its pool at start: measure once that is done. */
  for (int w = 0; w < 600 && pool_ready() < 2; w++) usleep(50 * 1000);
  fprintf(stderr, "bench_e2e: warm, one caller, %d invocations\n", SEQ_N);
  if (invoke_once("bench", false, NULL) < 0) goto out;
  double *seq = brume_xcalloc(SEQ_N, sizeof(double));
  cpu_snap ca, cb;
  cpu_take(&ca);
  for (int i = 0; i < SEQ_N; i++)
    if ((seq[i] = invoke_once("bench", false, NULL)) < 0) goto out;
  cpu_take(&cb);
  bench_emit("e2e", "warm_seq_p50_us", brume_test_percentile(seq, SEQ_N, 50), "us");
  bench_emit("e2e", "warm_seq_p99_us", brume_test_percentile(seq, SEQ_N, 99), "us");
  cpu_emit("seq", &ca, &cb, SEQ_N);
  /* The most this host could serve if an invocation never cost more CPU than one caller's do,
   * and of that, if the daemons cost nothing (the guests alone): the bound TCG sets. */
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  if (cb.host > ca.host)
    bench_emit("e2e", "seq_cpu_bound_per_s", ncpu * 1e6 * SEQ_N / (cb.host - ca.host), "inv/s");
  if (cb.vcpu > ca.vcpu)
    bench_emit("e2e", "seq_guest_bound_per_s", ncpu * 1e6 * SEQ_N / (cb.vcpu - ca.vcpu), "inv/s");
  for (int i = 0; i < SEQ_N; i++)
    if ((seq[i] = invoke_once("bench", true, NULL)) < 0) goto out;
  bench_emit("e2e", "bare_seq_p50_us", brume_test_percentile(seq, SEQ_N, 50), "us");
  /* Next calls that overtook their predecessor's releases and waited for them (frontend). */
  bench_emit("e2e", "seq_release_waits",
             (double)brume_test_metric(c->frontend.http_port, "brume_frontend_release_waits_total"),
             "invocations");
  free(seq);

  fprintf(stderr, "bench_e2e: starting %zu sandboxes (warm-up)\n", callers);
  double tw = brume_test_mono_ms();
  if (warm_up() < 0) goto out;
  fprintf(stderr, "bench_e2e: %zu sandboxes in %.1f s; %zu callers in flight, %.0f s\n", callers,
          (brume_test_mono_ms() - tw) / 1000, callers, seconds);
  chains.on_recording = take_phase_cpu;
  double el = run_phase(WARM, seconds);
  chains.on_recording = NULL;
  if (atomic_load(&failures)) goto out;
  long n = atomic_load(&done_calls);
  bench_emit("e2e", "warm_invocations_per_s", n / el, "inv/s");
  bench_emit("e2e", "warm_64_p50_us", bench_samples_percentile(&lat, 50), "us");
  bench_emit("e2e", "warm_64_p99_us", bench_samples_percentile(&lat, 99), "us");
  bench_emit("e2e", "cold_during_warm_run", (double)atomic_load(&colds), "invocations");
  cpu_emit("warm_64", &phase_cpu[0], &phase_cpu[1], n);

  fprintf(stderr, "bench_e2e: bare RPC (Invoke DryRun), %zu callers in flight, %.0f s\n", callers,
          seconds);
  el = run_phase(BARE, seconds);
  if (atomic_load(&failures)) goto out;
  bench_emit("e2e", "bare_64_per_s", atomic_load(&done_calls) / el, "calls/s");
  bench_emit("e2e", "bare_64_p50_us", bench_samples_percentile(&lat, 50), "us");

  /* The warm run's sandboxes freeze after 10 s idle; the cold starts are measured after that. */
  fprintf(stderr, "bench_e2e: waiting for the warm sandboxes to freeze, then cold starts\n");
  sleep(11);
  if (cold_starts(true) < 0 || cold_starts(false) < 0) goto out;
  rc = 0;
out:
  if (rc != 0) brume_test_cluster_dump_logs(c);
  brume_test_cluster_free(c);
  bench_samples_free(&lat);
  return rc;
}
