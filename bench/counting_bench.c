/* bench_counting COUNTING_ADDR ETCD_ENDPOINT DAEMON_ID [DAEMON_PID]
 *
 * One brume-counting daemon (bench/counting.sh starts it and its etcd) driven through the
 * Counting service by CALLERS callers, each a chain of asynchronous calls on one channel, all on
 * one function of one account whose limit (10,000) never throttles them:
 *
 *   1. Acquire(WARM_ENVIRONMENT) + Release pairs, back to back, for BENCH_SECONDS (default 5)
 *      after a 1 s warm-up: pairs per second, the latency of Acquire, Release and the pair, and
 *      the etcd txns the daemon made meanwhile (a steady load should make none).
 *   1a. The same pairs through counting/client, which coalesces the 64 callers' requests into
 *       AcquireBatch and ReleaseBatch calls (BENCH_MAX_IN_FLIGHT batch calls of a kind under
 *       way at once; default: the client's, 2): pairs per second, latencies, requests per call,
 *       the daemon's CPU per pair.
 *   1b. The same from one caller: Acquire's latency when nothing queues.
 *   2. The bare RPC: the same 64-in-flight load on a call that does no admission work. GetState
 *      would not do (it reads etcd); Release of a well-formed token this daemon never granted
 *      ("<daemon_id>.0000000000000001") is answered from memory (was_held false), so it measures
 *      the gRPC round trip plus the service's parsing, which is what Acquire's figures compare to.
 *   3. Demand changes: 64 callers, then 8, then 64 again (BENCH_STEP_SECONDS each, default 4, more
 *      than the daemon's 2 s shrink_after), printing every 500 ms on stderr the pairs and the
 *      etcd txns of that half second: etcd traffic follows the changes of demand (a block shrinks
 *      after the drop, grows in a few steps after the rise), not the request rate.
 *
 * etcd's txns are read from etcd's own /metrics: grpc_server_handled_total{grpc_method="Txn"}
 * summed over its codes, i.e. every Txn RPC etcd answered (the JSON gateway the daemon speaks to
 * forwards each txn as one gRPC Txn). etcd 3.4's etcd_mvcc_txn_total is not used: it leaves out
 * txns that write nothing (a grow refused by its compare). etcd_server_proposals_committed_total
 * (every raft write: puts, deletes, lease grants and revokes) is printed next to it.
 *
 * With DAEMON_PID, the daemon's CPU time (user + system, /proc/PID/stat) per pair and per bare call
 * is printed too: the client shares the machine's cores with the daemon, so pairs per second
 * measure both; CPU per pair is what the daemon itself costs, and 1e6 / it is the pairs per second
 * one core of its own would serve.
 *
 * JSON lines in bench/run.sh's format on stdout, progress on stderr; exit 1 when a call fails or
 * is throttled (the figures would not be the daemon's admission path). */
#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "brume/counting.pb-c.h"
#include "client.h"
#include "clock.h"
#include "err.h"
#include "etcd.h"
#include "mem.h"
#include "rpc.h"
#include "testutil.h"

#define CALLERS 64
#define LOW_CALLERS 8
/* One channel, as a frontend has to each counting daemon; a second one (a second completion
 * thread) made the two cores' scheduling worse, not the throughput better. */
#define CLIENTS 1
#define MAX_SAMPLES (1 << 15) /* per thread and figure */
#define ACCOUNT "bench-acct"
#define FUNCTION "bench-fn"
#define LIMIT 10000

enum { M_ACQUIRE, M_RELEASE, M_GET_STATE }; /* counting.proto's order */

/* The latencies each caller records. */
enum { FIG_ACQUIRE, FIG_RELEASE, FIG_PAIR, FIG_BARE, FIGURES };

typedef enum mode { IDLE, PAIRS, BATCHED, BARE, STOP } mode;

typedef struct caller {
  int index;
  brume_rpc_client *client;
  brume_counting_client *batching; /* the BATCHED phase's */
  bool pair_batched;               /* the pair under way began in the BATCHED phase */
  _Atomic bool parked;
  double t0, t2; /* when the call under way (Acquire or bare), and its Release, started */
  size_t n[FIGURES];
  float us[FIGURES][MAX_SAMPLES];
} caller;

static const char *daemon_id;
static _Atomic int current_mode = IDLE;
static caller *callers;              /* for run_phase() to kick */
static _Atomic int active = CALLERS; /* callers with index < active work */
static _Atomic bool recording;
static _Atomic long pairs, bare_calls, throttles, failures;
static char bare_token[128];

static double now_us(void) {
  return (double)brume_mono_us();
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

static void fail_call(const char *what, const brume_err *err) {
  if (atomic_fetch_add(&failures, 1) == 0)
    fprintf(stderr, "bench_counting: %s: %s\n", what, err ? err->msg : "?");
}

static void record(caller *c, int figure, double us) {
  if (atomic_load(&recording) && c->n[figure] < MAX_SAMPLES)
    c->us[figure][c->n[figure]++] = (float)us;
}

/* Each caller is a chain of asynchronous calls: Acquire, then Release when it is answered, then
 * the next Acquire, and so on; the replies arrive on the clients' completion threads. That keeps
 * CALLERS calls in flight with a few client threads instead of one thread per call, so that the
 * client takes less of the two cores it shares with the daemon. A caller that may not go on (the
 * phase is idle, or it is beyond the active callers) parks; kick_parked() restarts it. */
static void start_next(caller *c);

static bool may_run(const caller *c) {
  int m = atomic_load(&current_mode);
  return (m == PAIRS || m == BATCHED || m == BARE) && c->index < atomic_load(&active) &&
         atomic_load(&failures) == 0;
}

/* Parks c, unless it became runnable meanwhile (then it goes on). */
static void park(caller *c) {
  atomic_store(&c->parked, true);
  if (may_run(c) && atomic_exchange(&c->parked, false)) start_next(c);
}

static void kick_parked(caller *cs) {
  for (int i = 0; i < CALLERS; i++)
    if (may_run(&cs[i]) && atomic_exchange(&cs[i].parked, false)) start_next(&cs[i]);
}

/* A Release answered, unary or batched (counting/client calls this itself): records the pair
 * and starts the caller's next call. */
static void released(void *user, const Brume__ReleaseResponse *resp, const brume_err *err) {
  caller *c = user;
  double t3 = now_us();
  if (resp == NULL) {
    fail_call("Release", err);
    park(c);
    return;
  }
  if (!resp->was_held) fail_call("Release: the token was not held", NULL);
  record(c, FIG_RELEASE, t3 - c->t2);
  record(c, FIG_PAIR, t3 - c->t0);
  atomic_fetch_add(&pairs, 1);
  start_next(c);
}

static void on_release(void *user, ProtobufCMessage *reply, const brume_err *err) {
  released(user, (const Brume__ReleaseResponse *)reply, err);
  if (reply) brume_proto_free(reply);
}

/* Releases token the way c's pair began: through counting/client in the BATCHED phase, else a
 * unary call. */
static void send_release(caller *c, const char *token) {
  Brume__ReleaseRequest rel = BRUME__RELEASE_REQUEST__INIT;
  rel.token = (char *)token;
  rel.caller_id = "bench/counting";
  c->t2 = now_us();
  if (c->pair_batched) {
    brume_counting_client_release(c->batching, &rel, released, c);
    return;
  }
  brume_err *e = NULL;
  if (brume_rpc_unary_async(c->client, &brume__counting__descriptor, M_RELEASE, &rel.base, NULL,
                            on_release, c, &e) < 0) {
    fail_call("Release", e);
    brume_err_free(e);
    park(c);
  }
}

/* An Acquire answered, unary or batched (counting/client calls this itself): a grant is
 * released at once; anything else stops the bench (its figures would not be the admission
 * path's). */
static void acquired(void *user, const Brume__AcquireResponse *resp, const brume_err *err) {
  caller *c = user;
  double t1 = now_us();
  if (resp == NULL) {
    fail_call("Acquire", err);
    park(c);
    return;
  }
  if (!resp->granted) {
    if (atomic_fetch_add(&throttles, 1) == 0)
      fprintf(stderr, "bench_counting: Acquire throttled, reason %d\n", resp->throttle_reason);
    atomic_fetch_add(&failures, 1);
    park(c);
    return;
  }
  record(c, FIG_ACQUIRE, t1 - c->t0);
  send_release(c, resp->token);
}

static void on_acquire(void *user, ProtobufCMessage *reply, const brume_err *err) {
  acquired(user, (const Brume__AcquireResponse *)reply, err);
  if (reply) brume_proto_free(reply);
}

static void on_bare(void *user, ProtobufCMessage *reply, const brume_err *err) {
  caller *c = user;
  double t1 = now_us();
  if (reply == NULL) {
    fail_call("Release (bare)", err);
    park(c);
    return;
  }
  brume_proto_free(reply);
  record(c, FIG_BARE, t1 - c->t0);
  atomic_fetch_add(&bare_calls, 1);
  start_next(c);
}

/* Starts c's next call for the current phase, or parks it. */
static void start_next(caller *c) {
  if (!may_run(c)) {
    park(c);
    return;
  }
  brume_err *err = NULL;
  int rc;
  c->t0 = now_us();
  int m = atomic_load(&current_mode);
  if (m == PAIRS || m == BATCHED) {
    Brume__FunctionRef fn = BRUME__FUNCTION_REF__INIT;
    fn.account_id = ACCOUNT;
    fn.function_name = FUNCTION;
    Brume__AcquireRequest req = BRUME__ACQUIRE_REQUEST__INIT;
    req.function = &fn;
    req.caller_id = "bench/counting";
    req.kind = BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT;
    req.hold_ms = 60000;
    c->pair_batched = m == BATCHED;
    if (c->pair_batched) {
      brume_counting_client_acquire(c->batching, &req, acquired, c);
      return;
    }
    rc = brume_rpc_unary_async(c->client, &brume__counting__descriptor, M_ACQUIRE, &req.base, NULL,
                               on_acquire, c, &err);
  } else {
    /* Release of a token never granted: answered from memory. */
    Brume__ReleaseRequest rel = BRUME__RELEASE_REQUEST__INIT;
    rel.token = bare_token;
    rel.caller_id = "bench/counting";
    rc = brume_rpc_unary_async(c->client, &brume__counting__descriptor, M_RELEASE, &rel.base, NULL,
                               on_bare, c, &err);
  }
  if (rc < 0) {
    fail_call("start a call", err);
    brume_err_free(err);
    park(c);
  }
}

/* ---- etcd's /metrics ---- */

typedef struct buf {
  char *data;
  size_t len;
} buf;

static size_t on_data(char *p, size_t size, size_t n, void *user) {
  buf *b = user;
  size_t add = size * n;
  char *grown = realloc(b->data, b->len + add + 1);
  if (grown == NULL) return 0;
  b->data = grown;
  memcpy(b->data + b->len, p, add);
  b->len += add;
  b->data[b->len] = '\0';
  return add;
}

typedef struct etcd_counts {
  double txns, proposals;
} etcd_counts;

static const char *metrics_url;

/* etcd's Txn RPCs and committed proposals so far; -1 each when /metrics cannot be read. */
static etcd_counts etcd_read(void) {
  etcd_counts out = {-1, -1};
  CURL *curl = curl_easy_init();
  if (curl == NULL) return out;
  buf b = {0};
  curl_easy_setopt(curl, CURLOPT_URL, metrics_url);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (curl_easy_perform(curl) == CURLE_OK && b.data) {
    out.txns = 0;
    for (char *line = strtok(b.data, "\n"); line; line = strtok(NULL, "\n")) {
      double v = 0;
      if (strncmp(line, "grpc_server_handled_total{", 26) == 0 &&
          strstr(line, "grpc_method=\"Txn\"") && sscanf(strrchr(line, ' '), "%lf", &v) == 1)
        out.txns += v;
      else if (strncmp(line, "etcd_server_proposals_committed_total ", 38) == 0)
        sscanf(line + 38, "%lf", &out.proposals);
    }
  }
  free(b.data);
  curl_easy_cleanup(curl);
  return out;
}

/* ---- output ---- */

/* The CPU time pid has used (user + system), in microseconds; -1 if it cannot be read. */
static double cpu_us(const char *pid) {
  if (pid == NULL) return -1;
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%s/stat", pid);
  FILE *f = fopen(path, "re");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* Fields 14 and 15, counted after the command's closing parenthesis (it may hold spaces). */
  const char *p = strrchr(buf, ')');
  unsigned long utime, stime;
  if (p == NULL ||
      sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
    return -1;
  return (double)(utime + stime) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

static void emit(const char *metric, double value, const char *unit) {
  printf("{\"bench\": \"counting\", \"metric\": \"%s\", \"value\": %.1f, \"unit\": \"%s\"}\n",
         metric, value, unit);
  fflush(stdout);
}

/* Percentile p of one figure over every caller (tests/harness's nearest rank). */
static double percentile(caller *cs, int figure, double p) {
  size_t total = 0;
  for (int i = 0; i < CALLERS; i++) total += cs[i].n[figure];
  double *all = brume_xmalloc((total + 1) * sizeof(double));
  size_t k = 0;
  for (int i = 0; i < CALLERS; i++)
    for (size_t j = 0; j < cs[i].n[figure]; j++) all[k++] = cs[i].us[figure][j];
  double v = brume_test_percentile(all, total, p);
  free(all);
  return v;
}

/* Runs mode m for seconds (recording when rec is set); returns the calls made. */
static long run_phase(mode m, double seconds, bool rec, double *elapsed) {
  _Atomic long *counter = m == BARE ? &bare_calls : &pairs;
  long before = atomic_load(counter);
  atomic_store(&recording, rec);
  atomic_store(&current_mode, m);
  kick_parked(callers);
  double t0 = now_us();
  sleep_s(seconds);
  long calls = atomic_load(counter) - before;
  *elapsed = (now_us() - t0) / 1e6;
  atomic_store(&recording, false);
  return calls;
}

/* Waits (2 s at most) until every chain has parked after its call under way. */
static void wait_all_parked(caller *cs) {
  for (int tries = 0; tries < 400; tries++) {
    int parked = 0;
    for (int i = 0; i < CALLERS; i++) parked += atomic_load(&cs[i].parked);
    if (parked == CALLERS) return;
    sleep_s(0.005);
  }
}

static int check_failures(void) {
  if (atomic_load(&failures) || atomic_load(&throttles)) {
    fprintf(stderr, "bench_counting: %ld failed calls, %ld throttled: no figures\n",
            atomic_load(&failures), atomic_load(&throttles));
    return -1;
  }
  return 0;
}

/* Writes the bench account's limit and waits until the daemon shows it. */
static int set_limit(brume_etcd *etcd, brume_rpc_client *client) {
  const char *key = "/brume/limits/account/" ACCOUNT;
  char value[64];
  snprintf(value, sizeof(value), "{\"concurrency_limit\":%d}", LIMIT);
  brume_err *err = NULL;
  if (brume_etcd_put(etcd, key, value, strlen(value), 0, NULL, &err) < 0) {
    fprintf(stderr, "bench_counting: put %s: %s\n", key, err->msg);
    brume_err_free(err);
    return -1;
  }
  for (int i = 0; i < 200; i++) {
    Brume__GetStateRequest req = BRUME__GET_STATE_REQUEST__INIT;
    req.account_id = ACCOUNT;
    ProtobufCMessage *reply = NULL;
    if (brume_rpc_unary(client, &brume__counting__descriptor, M_GET_STATE, &req.base, &reply, NULL,
                        &err) == 0) {
      Brume__GetStateResponse *s = (Brume__GetStateResponse *)reply;
      bool ok = s->account && s->account->concurrency_limit == LIMIT;
      brume_proto_free(reply);
      if (ok) return 0;
    }
    brume_err_clear(&err);
    sleep_s(0.05);
  }
  fprintf(stderr, "bench_counting: the daemon does not show the limit of %s after 10 s\n", ACCOUNT);
  return -1;
}

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: bench_counting COUNTING_ADDR ETCD_ENDPOINT DAEMON_ID [DAEMON_PID]\n");
    return 2;
  }
  const char *daemon_pid = argc == 5 ? argv[4] : NULL;
  daemon_id = argv[3];
  const char *env = getenv("BENCH_SECONDS");
  double seconds = env && atof(env) > 0 ? atof(env) : 5.0;
  env = getenv("BENCH_STEP_SECONDS");
  double step_seconds = env && atof(env) > 0 ? atof(env) : 4.0;
  snprintf(bare_token, sizeof(bare_token), "%s.0000000000000001", daemon_id);
  char *url = NULL;
  if (asprintf(&url, "%s/metrics", argv[2]) < 0) abort();
  metrics_url = url;
  curl_global_init(CURL_GLOBAL_DEFAULT);

  brume_err *err = NULL;
  brume_etcd *etcd = brume_etcd_new(argv[2], NULL, &err);
  brume_rpc_client *clients[CLIENTS] = {0};
  for (int i = 0; i < CLIENTS && etcd; i++) {
    clients[i] = brume_rpc_client_new(argv[1], NULL, &err);
    if (clients[i] == NULL) break;
  }
  if (etcd == NULL || clients[CLIENTS - 1] == NULL) {
    fprintf(stderr, "bench_counting: %s\n", err ? err->msg : "?");
    return 1;
  }
  if (set_limit(etcd, clients[0]) < 0) return 1;
  brume_counting_client *batching = NULL; /* the last phase's */

  caller *cs = calloc(CALLERS, sizeof(caller));
  if (cs == NULL) abort();
  for (int i = 0; i < CALLERS; i++) {
    cs[i].index = i;
    cs[i].client = clients[i % CLIENTS];
    atomic_init(&cs[i].parked, true);
  }
  callers = cs;

  int rc = 1;
  double el = 0;
  fprintf(stderr, "bench_counting: %d callers, Acquire(WARM)+Release pairs: 1 s warm-up, %.1f s\n",
          CALLERS, seconds);
  run_phase(PAIRS, 1.0, false, &el);
  etcd_counts e0 = etcd_read();
  double cpu0 = cpu_us(daemon_pid);
  long n = run_phase(PAIRS, seconds, true, &el);
  double cpu1 = cpu_us(daemon_pid);
  etcd_counts e1 = etcd_read();
  if (check_failures() < 0) goto out;
  double pairs_per_s = (double)n / el;
  fprintf(stderr,
          "bench_counting: %ld pairs in %.2f s; etcd meanwhile: %.0f txns, %.0f proposals\n", n, el,
          e1.txns - e0.txns, e1.proposals - e0.proposals);
  emit("acquire_release_pairs_per_s", pairs_per_s, "pairs/s");
  emit("acquire_p50_us", percentile(cs, FIG_ACQUIRE, 50), "us");
  emit("acquire_p99_us", percentile(cs, FIG_ACQUIRE, 99), "us");
  emit("release_p50_us", percentile(cs, FIG_RELEASE, 50), "us");
  emit("pair_p50_us", percentile(cs, FIG_PAIR, 50), "us");
  emit("pair_p99_us", percentile(cs, FIG_PAIR, 99), "us");
  if (cpu0 >= 0 && cpu1 >= 0 && n > 0) {
    emit("daemon_cpu_per_pair_us", (cpu1 - cpu0) / (double)n, "us");
    emit("daemon_cpu_cores_used", (cpu1 - cpu0) / 1e6 / el, "cores");
    emit("pairs_per_daemon_cpu_s", (double)n / ((cpu1 - cpu0) / 1e6), "pairs/s");
  }
  if (e0.txns >= 0 && e1.txns >= 0) {
    emit("etcd_txns_per_s", (e1.txns - e0.txns) / el, "txns/s");
    emit("etcd_proposals_per_s", (e1.proposals - e0.proposals) / el, "proposals/s");
  } else {
    fprintf(stderr, "bench_counting: cannot read %s\n", metrics_url);
  }

  /* The same pairs from one caller: the latency of an Acquire when nothing queues (the figures
   * above, with 64 in flight on two cores shared with this client, are mostly queueing). */
  for (int i = 0; i < CALLERS; i++) memset(cs[i].n, 0, sizeof(cs[i].n));
  atomic_store(&active, 1);
  fprintf(stderr, "bench_counting: 1 caller, Acquire(WARM)+Release pairs, %.1f s\n", seconds / 2);
  run_phase(PAIRS, seconds / 2, true, &el);
  if (check_failures() < 0) goto out;
  emit("one_caller_acquire_p50_us", percentile(cs, FIG_ACQUIRE, 50), "us");
  emit("one_caller_acquire_p99_us", percentile(cs, FIG_ACQUIRE, 99), "us");
  atomic_store(&active, CALLERS);

  fprintf(stderr,
          "bench_counting: bare RPC (Release of a token never granted), %d callers, %.1f s\n",
          CALLERS, seconds);
  run_phase(BARE, 0.5, false, &el);
  cpu0 = cpu_us(daemon_pid);
  n = run_phase(BARE, seconds, true, &el);
  cpu1 = cpu_us(daemon_pid);
  if (check_failures() < 0) goto out;
  emit("bare_rpc_calls_per_s", (double)n / el, "calls/s");
  if (cpu0 >= 0 && cpu1 >= 0 && n > 0)
    emit("daemon_cpu_per_bare_call_us", (cpu1 - cpu0) / (double)n, "us");
  emit("bare_rpc_p50_us", percentile(cs, FIG_BARE, 50), "us");
  emit("bare_rpc_p99_us", percentile(cs, FIG_BARE, 99), "us");

  /* Demand changes: 64, 8, 64 callers. */
  const int steps[] = {CALLERS, LOW_CALLERS, CALLERS};
  const char *names[] = {"64", "8", "64_again"};
  fprintf(stderr, "bench_counting: demand changes 64 -> 8 -> 64 callers, %.1f s each\n",
          step_seconds);
  fprintf(stderr, "bench_counting:   t(s) callers  pairs/s  etcd_txns  etcd_proposals\n");
  atomic_store(&current_mode, PAIRS);
  kick_parked(cs);
  double start = now_us();
  for (int s = 0; s < 3; s++) {
    atomic_store(&active, steps[s]);
    kick_parked(cs);
    etcd_counts s0 = etcd_read();
    long p0 = atomic_load(&pairs);
    double t0 = now_us();
    etcd_counts prev = s0;
    long pprev = p0;
    for (int tick = 0; tick < (int)(step_seconds * 2 + 0.5); tick++) {
      sleep_s(0.5);
      etcd_counts cur = etcd_read();
      long pc = atomic_load(&pairs);
      fprintf(stderr, "bench_counting:   %4.1f %7d %8.0f %10.0f %15.0f\n", (now_us() - start) / 1e6,
              steps[s], (double)(pc - pprev) / 0.5, cur.txns - prev.txns,
              cur.proposals - prev.proposals);
      prev = cur;
      pprev = pc;
    }
    double dt = (now_us() - t0) / 1e6;
    char metric[96];
    snprintf(metric, sizeof(metric), "demand_%s_pairs_per_s", names[s]);
    emit(metric, (double)(pprev - p0) / dt, "pairs/s");
    snprintf(metric, sizeof(metric), "demand_%s_etcd_txns", names[s]);
    emit(metric, prev.txns - s0.txns, "txns");
  }
  if (check_failures() < 0) goto out;

  /* The same pairs through counting/client's batches; last, so that its second channel and
   * threads are not there while the unary figures are taken. */
  atomic_store(&current_mode, IDLE);
  wait_all_parked(cs);
  atomic_store(&active, CALLERS);
  brume_counting_client_opts copts = {0};
  env = getenv("BENCH_MAX_IN_FLIGHT");
  if (env && atoi(env) > 0) copts.max_in_flight = (unsigned)atoi(env);
  batching = brume_counting_client_new(argv[1], &copts, &err);
  if (batching == NULL) {
    fprintf(stderr, "bench_counting: %s\n", err->msg);
    goto out;
  }
  for (int i = 0; i < CALLERS; i++) {
    memset(cs[i].n, 0, sizeof(cs[i].n));
    cs[i].batching = batching;
  }
  fprintf(stderr,
          "bench_counting: %d callers, the same pairs coalesced into AcquireBatch and "
          "ReleaseBatch calls: 1 s warm-up, %.1f s\n",
          CALLERS, seconds);
  run_phase(BATCHED, 1.0, false, &el);
  brume_counting_client_stats st0, st1;
  brume_counting_client_stats_get(batching, &st0);
  cpu0 = cpu_us(daemon_pid);
  n = run_phase(BATCHED, seconds, true, &el);
  cpu1 = cpu_us(daemon_pid);
  brume_counting_client_stats_get(batching, &st1);
  if (check_failures() < 0) goto out;
  emit("batched_pairs_per_s", (double)n / el, "pairs/s");
  emit("batched_acquire_p50_us", percentile(cs, FIG_ACQUIRE, 50), "us");
  emit("batched_acquire_p99_us", percentile(cs, FIG_ACQUIRE, 99), "us");
  emit("batched_pair_p99_us", percentile(cs, FIG_PAIR, 99), "us");
  if (st1.acquire_batches > st0.acquire_batches)
    emit("batched_acquires_per_call",
         (double)(st1.acquire_requests - st0.acquire_requests) /
             (double)(st1.acquire_batches - st0.acquire_batches),
         "requests");
  /* Requests that found no room in this daemon's block and were sent again to wait for etcd:
   * a steady load should need none. */
  emit("batched_requests_waiting_for_etcd",
       (double)(st1.acquire_waiting_requests - st0.acquire_waiting_requests), "requests");
  if (cpu0 >= 0 && cpu1 >= 0 && n > 0) {
    emit("batched_daemon_cpu_per_pair_us", (cpu1 - cpu0) / (double)n, "us");
    emit("batched_daemon_cpu_cores_used", (cpu1 - cpu0) / 1e6 / el, "cores");
  }

  rc = 0;
out:
  /* Every chain parks after its call under way; then the clients can go. */
  atomic_store(&current_mode, STOP);
  wait_all_parked(cs);
  brume_counting_client_free(batching);
  for (int i = 0; i < CLIENTS; i++) brume_rpc_client_free(clients[i]);
  brume_etcd_free(etcd);
  free(cs);
  free(url);
  curl_global_cleanup();
  return rc;
}
