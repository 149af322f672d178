/* bench_placement: brume-placement as its own process, with one brume-worker (real 128 MiB
 * microVMs) and a real etcd (tests/harness/cluster_fixture), driven through the Placement service
 * by CALLERS callers, each a chain of asynchronous calls on one channel, all on one function
 * version:
 *
 *   0. Warm-up: CALLERS concurrent AcquireSandbox calls start CALLERS sandboxes (cold starts on
 *      the worker), all released OK: from then on every acquire finds an idle sandbox.
 *   1. AcquireSandbox + ReleaseSandbox pairs, back to back, for BENCH_SECONDS (default 5) after a
 *      1 s warm-up: warm pairs per second, the latency of the pair and of the acquire, and how
 *      many acquires were cold (none should be: the figures are the warm path's).
 *   2. The bare RPC under the same load: ListHosts of a host that does not exist, answered from
 *      memory with nothing, so it measures the gRPC round trip plus the service's dispatch, which
 *      is what the pairs' figures compare to (a pair is two round trips).
 *
 * The placement daemon's CPU time per pair is printed too (/proc/PID/stat): the bench shares the
 * two cores with the daemon. JSON lines in bench/run.sh's format on stdout, progress on stderr;
 * exit 1 when a call fails. Needs root, libvirtd and etcd, as tests/placement does. */
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "brume/placement.pb-c.h"
#include "cluster_fixture.h"
#include "err.h"
#include "log.h"
#include "mem.h"
#include "rpc.h"
#include "testutil.h"

#define CALLERS 64
#define MAX_SAMPLES (1 << 16) /* per caller and figure */
#define CALLER_ID "bench/fe"

enum { P_ACQUIRE, P_RELEASE, P_LIST_HOSTS }; /* placement.proto's order */
enum { FIG_PAIR, FIG_ACQUIRE, FIG_BARE, FIGURES };
typedef enum mode { PAIRS, BARE, STOP } mode;

typedef struct caller {
  double t0, t_acquired;
  double *samples[FIGURES];
  size_t n[FIGURES];
  char sandbox_id[128];
} caller;

static brume_rpc_client *client;
static brume_test_spec spec;
static caller callers[CALLERS];
static bench_chains chains = {.mode = PAIRS};
static _Atomic long pairs, bare_calls, colds, failures;

static void fail_call(const char *what, const brume_err *err) {
  if (atomic_fetch_add(&failures, 1) < 5)
    fprintf(stderr, "bench_placement: %s: %s\n", what, err->msg);
}

static void record(caller *c, int figure, double us) {
  if (atomic_load(&chains.recording) && c->n[figure] < MAX_SAMPLES)
    c->samples[figure][c->n[figure]++] = us;
}

static void start_next(caller *c);

/* A failed call ends its caller's chain (the bench then exits 1). True if the call failed. */
static bool chain_broken(const char *what, ProtobufCMessage *reply, const brume_err *err) {
  if (reply) return false;
  fail_call(what, err);
  atomic_fetch_sub(&chains.running, 1);
  return true;
}

static void on_release(void *user, ProtobufCMessage *reply, const brume_err *err) {
  caller *c = user;
  if (chain_broken("ReleaseSandbox", reply, err)) return;
  protobuf_c_message_free_unpacked(reply, NULL);
  record(c, FIG_PAIR, brume_test_mono_ms() * 1000 - c->t0);
  if (atomic_load(&chains.recording)) atomic_fetch_add(&pairs, 1);
  start_next(c);
}

static void on_acquire(void *user, ProtobufCMessage *reply, const brume_err *err) {
  caller *c = user;
  if (chain_broken("AcquireSandbox", reply, err)) return;
  Brume__AcquireSandboxResponse *r = (void *)reply;
  record(c, FIG_ACQUIRE, brume_test_mono_ms() * 1000 - c->t0);
  if (r->cold && atomic_load(&chains.recording)) atomic_fetch_add(&colds, 1);
  snprintf(c->sandbox_id, sizeof(c->sandbox_id), "%s", r->sandbox_id);
  protobuf_c_message_free_unpacked(reply, NULL);
  Brume__ReleaseSandboxRequest req = BRUME__RELEASE_SANDBOX_REQUEST__INIT;
  req.sandbox_id = c->sandbox_id;
  req.outcome = BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_OK;
  req.caller_id = CALLER_ID;
  brume_autoptr(brume_err) e = NULL;
  if (brume_rpc_unary_async(client, &brume__placement__descriptor, P_RELEASE, &req.base, NULL,
                            on_release, c, &e) < 0) {
    fail_call("ReleaseSandbox", e);
    atomic_fetch_sub(&chains.running, 1);
  }
}

static void on_bare(void *user, ProtobufCMessage *reply, const brume_err *err) {
  caller *c = user;
  if (chain_broken("ListHosts", reply, err)) return;
  protobuf_c_message_free_unpacked(reply, NULL);
  record(c, FIG_BARE, brume_test_mono_ms() * 1000 - c->t0);
  if (atomic_load(&chains.recording)) atomic_fetch_add(&bare_calls, 1);
  start_next(c);
}

static void start_next(caller *c) {
  brume_autoptr(brume_err) e = NULL;
  c->t0 = brume_test_mono_ms() * 1000;
  int rc;
  switch (atomic_load(&chains.mode)) {
    case PAIRS: {
      Brume__AcquireSandboxRequest req = BRUME__ACQUIRE_SANDBOX_REQUEST__INIT;
      req.spec = &spec.spec;
      req.caller_id = CALLER_ID;
      rc = brume_rpc_unary_async(client, &brume__placement__descriptor, P_ACQUIRE, &req.base, NULL,
                                 on_acquire, c, &e);
      break;
    }
    case BARE: {
      Brume__ListHostsRequest req = BRUME__LIST_HOSTS_REQUEST__INIT;
      req.host_id = "no-such-host";
      rc = brume_rpc_unary_async(client, &brume__placement__descriptor, P_LIST_HOSTS, &req.base,
                                 NULL, on_bare, c, &e);
      break;
    }
    default:
      atomic_fetch_sub(&chains.running, 1);
      return;
  }
  if (rc < 0) {
    fail_call("starting a call", e);
    atomic_fetch_sub(&chains.running, 1);
  }
}

static double percentile(int figure, double p) {
  size_t n = 0;
  for (int i = 0; i < CALLERS; i++) n += callers[i].n[figure];
  double *all = brume_xcalloc(n ? n : 1, sizeof(*all));
  size_t k = 0;
  for (int i = 0; i < CALLERS; i++) {
    memcpy(all + k, callers[i].samples[figure], callers[i].n[figure] * sizeof(double));
    k += callers[i].n[figure];
  }
  double v = brume_test_percentile(all, n, p);
  free(all);
  return v;
}

static void start_caller(size_t i) {
  start_next(&callers[i]);
}

/* Runs every caller's chain in mode m: 1 s unrecorded, then seconds recorded; returns the
 * recorded seconds. */
static double run_phase(mode m, double seconds) {
  return bench_chains_run(&chains, m, STOP, CALLERS, start_caller, seconds);
}

/* Warm-up: CALLERS sandboxes started at once, then all released. */
typedef struct warm {
  _Atomic int left;
  char ids[CALLERS][128];
  _Atomic int n;
} warm;

static void on_warm_acquire(void *user, ProtobufCMessage *reply, const brume_err *err) {
  warm *w = user;
  if (reply == NULL) {
    fail_call("AcquireSandbox (warm-up)", err);
  } else {
    int i = atomic_fetch_add(&w->n, 1);
    snprintf(w->ids[i], sizeof(w->ids[i]), "%s",
             ((Brume__AcquireSandboxResponse *)reply)->sandbox_id);
    protobuf_c_message_free_unpacked(reply, NULL);
  }
  atomic_fetch_sub(&w->left, 1);
}

static int warm_up(void) {
  static warm w;
  atomic_store(&w.left, CALLERS);
  double t0 = brume_test_mono_ms();
  for (int i = 0; i < CALLERS; i++) {
    Brume__AcquireSandboxRequest req = BRUME__ACQUIRE_SANDBOX_REQUEST__INIT;
    req.spec = &spec.spec;
    req.caller_id = CALLER_ID;
    brume_rpc_call_opts o = {.deadline_ms = 600000};
    brume_autoptr(brume_err) e = NULL;
    if (brume_rpc_unary_async(client, &brume__placement__descriptor, P_ACQUIRE, &req.base, &o,
                              on_warm_acquire, &w, &e) < 0) {
      fail_call("AcquireSandbox (warm-up)", e);
      return -1;
    }
  }
  while (atomic_load(&w.left) > 0) usleep(50 * 1000);
  if (atomic_load(&failures)) return -1;
  fprintf(stderr, "bench_placement: %d sandboxes started in %.1f s\n", CALLERS,
          (brume_test_mono_ms() - t0) / 1000);
  for (int i = 0; i < CALLERS; i++) {
    Brume__ReleaseSandboxRequest req = BRUME__RELEASE_SANDBOX_REQUEST__INIT;
    req.sandbox_id = w.ids[i];
    req.outcome = BRUME__SANDBOX_OUTCOME__SANDBOX_OUTCOME_OK;
    req.caller_id = CALLER_ID;
    brume_autoptr(ProtobufCMessage) reply = NULL;
    brume_autoptr(brume_err) e = NULL;
    if (brume_rpc_unary(client, &brume__placement__descriptor, P_RELEASE, &req.base, &reply, NULL,
                        &e) < 0) {
      fail_call("ReleaseSandbox (warm-up)", e);
      return -1;
    }
  }
  return 0;
}

int main(void) {
  brume_log_init("bench-placement", BRUME_LOG_WARN);
  signal(SIGPIPE, SIG_IGN);
  char *argv[] = {"bench_placement",
                  BENCH_GUEST_DIR,
                  BENCH_BRUME_INIT,
                  BENCH_ECHO_RUNTIME,
                  BENCH_BRUME_WORKER,
                  BENCH_BRUME_PLACEMENT,
                  NULL};
  int code = 0;
  brume_test_cluster *c = brume_test_cluster_prepare(6, argv, "bench-placement", "bp", 1, &code);
  if (c == NULL) return code == 77 ? 1 : code;
  double seconds = getenv("BENCH_SECONDS") ? atof(getenv("BENCH_SECONDS")) : 5;
  int rc = 1;
  const char *worker_flags[] = {"--pool-size", "2", NULL};
  if (brume_test_cluster_start_workers(c, worker_flags) < 0 ||
      brume_test_cluster_start_placement(c, 0, NULL) < 0)
    goto out;
  client = c->pl[0].client;
  /* A long timeout: the warm-up holds its first sandboxes until the last one is up. */
  brume_test_fn fn = {.function_name = "bench", .timeout_ms = 600000};
  brume_test_spec_init(&spec, c->workers[0], &fn);
  for (int i = 0; i < CALLERS; i++)
    for (int f = 0; f < FIGURES; f++)
      callers[i].samples[f] = brume_xcalloc(MAX_SAMPLES, sizeof(double));
  fprintf(stderr, "bench_placement: starting %d sandboxes (warm-up)\n", CALLERS);
  if (warm_up() < 0) goto out;

  fprintf(stderr, "bench_placement: %d callers, AcquireSandbox+ReleaseSandbox pairs, %.0f s\n",
          CALLERS, seconds);
  double cpu0 = bench_cpu_us(c->pl[0].pid);
  double el = run_phase(PAIRS, seconds);
  double cpu1 = bench_cpu_us(c->pl[0].pid);
  if (atomic_load(&failures)) goto out;
  long np = atomic_load(&pairs);
  bench_emit("placement", "warm_pairs_per_s", np / el, "pairs/s");
  bench_emit("placement", "pair_p50_us", percentile(FIG_PAIR, 50), "us");
  bench_emit("placement", "pair_p99_us", percentile(FIG_PAIR, 99), "us");
  bench_emit("placement", "acquire_p50_us", percentile(FIG_ACQUIRE, 50), "us");
  bench_emit("placement", "acquire_p99_us", percentile(FIG_ACQUIRE, 99), "us");
  bench_emit("placement", "cold_acquires_during_run", (double)atomic_load(&colds), "calls");
  if (np) bench_emit("placement", "daemon_cpu_per_pair_us", (cpu1 - cpu0) / np, "us");

  fprintf(stderr, "bench_placement: %d callers, bare RPC (ListHosts of no host), %.0f s\n", CALLERS,
          seconds);
  cpu0 = bench_cpu_us(c->pl[0].pid);
  el = run_phase(BARE, seconds);
  cpu1 = bench_cpu_us(c->pl[0].pid);
  if (atomic_load(&failures)) goto out;
  long nb = atomic_load(&bare_calls);
  bench_emit("placement", "bare_rpc_per_s", nb / el, "calls/s");
  bench_emit("placement", "bare_rpc_p50_us", percentile(FIG_BARE, 50), "us");
  bench_emit("placement", "bare_rpc_p99_us", percentile(FIG_BARE, 99), "us");
  if (nb) bench_emit("placement", "daemon_cpu_per_bare_call_us", (cpu1 - cpu0) / nb, "us");
  rc = 0;
out:
  if (rc != 0) brume_test_cluster_dump_logs(c);
  brume_test_cluster_free(c);
  for (int i = 0; i < CALLERS; i++)
    for (int f = 0; f < FIGURES; f++) free(callers[i].samples[f]);
  return rc;
}
