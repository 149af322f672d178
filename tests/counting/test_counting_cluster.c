/* brume-counting as a cluster: one real etcd and three daemons as processes, driven through the
 * Counting service (test_counting_cluster BRUME_COUNTING).
 *
 * The etcd and the daemons are shared by every case (group setup); each case has its own account
 * so that cases do not see each other's blocks. The cases, in order:
 *   a. 3 clients x 200 threads on a limit of 100: never more than 100 held (sampled every ms,
 *      and the blocks in etcd a few times a second), the limit actually reached, every throttle
 *      ConcurrentInvocationLimitExceeded, no RPC error.
 *   b. a reserved function keeps its 100 while an unreserved one floods the other 300.
 *   c. kill -9 of a daemon holding the whole limit: another gets it all within lease_ttl + 2 s.
 *   d. a token never released is taken back at its deadline.
 *   e. the account scaling bucket on a compressed clock: 300 + 500 t new environments, +-2 %.
 *   f. the function model: 300 + 1,000 per 10 s per function, compressed 5 times (300 + 500 t),
 *      and a second function's own burst.
 *   g. etcd stopped: nothing granted past the blocks held, UNAVAILABLE and /healthz failing once
 *      the lease is older than its TTL, grants again after etcd is back.
 * e and f change limits/cluster (every account's) and delete it after; g disturbs the etcd, so it
 * runs last. The daemons' logs are in a temp directory and are printed when a case fails. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "brume/counting.pb-c.h"
#include "counting_proc.h"
#include "etcd.h"
#include "etcd_server.h"
#include "proc.h"
#include "rpc.h"
#include "testutil.h"

#define N_DAEMONS 3
#define LEASE_TTL_S 3
#define PREFIX "/brume"
#define STACK_SIZE (64 * 1024)
#define CALL_DEADLINE_MS 10000
#define LIMITS_WAIT_MS 15000
#define TOKEN_MAX 128

enum { M_ACQUIRE, M_RELEASE, M_GET_STATE }; /* counting.proto's order */

typedef struct daemon_proc {
  brume_test_counting p; /* the process: id, ports, pid, log */
  brume_rpc_client *client;
} daemon_proc;

static const char *counting_bin;
static char *tmpdir;
static brume_test_etcd *server;
static brume_etcd *etcd;
static daemon_proc daemons[N_DAEMONS];
static bool case_passed;

/* ---- Daemons ---- */

static int daemon_spawn(daemon_proc *d) {
  if (brume_test_counting_start(&d->p, counting_bin, server->endpoint, PREFIX, LEASE_TTL_S) < 0)
    return -1;
  char listen[64];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", d->p.port);
  brume_rpc_client_opts opts = {.default_deadline_ms = CALL_DEADLINE_MS};
  brume_err *err = NULL;
  brume_rpc_client_free(d->client);
  d->client = brume_rpc_client_new(listen, &opts, &err);
  if (d->client == NULL) {
    fprintf(stderr, "test_counting_cluster: client of %s: %s\n", d->p.id, err->msg);
    brume_err_free(err);
    return -1;
  }
  return 0;
}

static void dump_logs(void) {
  for (int i = 0; i < N_DAEMONS; i++) {
    fprintf(stderr, "---- last lines of %s\n", daemons[i].p.log_path);
    brume_test_run("tail -n 60 '%s' >&2", daemons[i].p.log_path);
  }
  fprintf(stderr, "---- last lines of %s\n", server->log_path);
  brume_test_run("tail -n 20 '%s' >&2", server->log_path);
}

static int group_setup(void **state) {
  (void)state;
  if (brume_test_etcd_open(&server, &etcd) < 0) return -1;
  tmpdir = brume_test_tmpdir("counting-cluster");
  for (int i = 0; i < N_DAEMONS; i++) {
    daemon_proc *d = &daemons[i];
    char id[8];
    snprintf(id, sizeof(id), "c%d", i);
    if (brume_test_counting_init(&d->p, id, tmpdir) < 0 || daemon_spawn(d) < 0) return -1;
  }
  fprintf(stderr, "test_counting_cluster: etcd %s, daemons on %d %d %d, logs in %s\n",
          server->endpoint, daemons[0].p.port, daemons[1].p.port, daemons[2].p.port, tmpdir);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  for (int i = 0; i < N_DAEMONS; i++) {
    brume_rpc_client_free(daemons[i].client);
    brume_test_counting_stop(&daemons[i].p, SIGTERM);
  }
  brume_test_etcd_close(server, etcd);
  if (tmpdir) brume_test_rmtree(tmpdir);
  free(tmpdir);
  return 0;
}

/* Each case sets case_passed as its last statement; the logs are printed when it did not. */
static int case_setup(void **state) {
  (void)state;
  case_passed = false;
  for (int i = 0; i < N_DAEMONS; i++) {
    int st;
    if (daemons[i].p.pid <= 0 || waitpid(daemons[i].p.pid, &st, WNOHANG) == daemons[i].p.pid) {
      fprintf(stderr, "test_counting_cluster: %s is not running\n", daemons[i].p.id);
      daemons[i].p.pid = -1;
      dump_logs();
      return -1;
    }
  }
  return 0;
}

static int case_teardown(void **state) {
  (void)state;
  if (!case_passed) dump_logs();
  /* e and f set the cluster-wide scaling settings; a failed one must not leave them behind. */
  if (server->pid > 0) brume_etcd_delete(etcd, PREFIX "/limits/cluster", false, NULL, NULL);
  return 0;
}

/* ---- Calls ---- */

/* One Acquire's outcome: code BRUME_OK with granted/reason, or the RPC's status. */
typedef struct acq {
  brume_status code;
  bool granted;
  int reason;
  uint32_t retry_after_ms;
  int64_t deadline_ms;
  char token[TOKEN_MAX];
  char msg[160];
} acq;

static void acquire(daemon_proc *d, const char *account, const char *function, int kind,
                    uint32_t hold_ms, acq *out) {
  Brume__FunctionRef fn = BRUME__FUNCTION_REF__INIT;
  fn.account_id = (char *)account;
  fn.function_name = (char *)function;
  Brume__AcquireRequest req = BRUME__ACQUIRE_REQUEST__INIT;
  req.function = &fn;
  req.caller_id = "test/counting-cluster";
  req.kind = kind;
  req.hold_ms = hold_ms;
  ProtobufCMessage *reply = NULL;
  brume_err *err = NULL;
  memset(out, 0, sizeof(*out));
  if (brume_rpc_unary(d->client, &brume__counting__descriptor, M_ACQUIRE, &req.base, &reply, NULL,
                      &err) < 0) {
    out->code = err ? err->code : BRUME_UNKNOWN;
    snprintf(out->msg, sizeof(out->msg), "%s", err ? err->msg : "?");
    brume_err_free(err);
    return;
  }
  Brume__AcquireResponse *r = (Brume__AcquireResponse *)reply;
  out->code = BRUME_OK;
  out->granted = r->granted;
  out->reason = r->throttle_reason;
  out->retry_after_ms = r->retry_after_ms;
  out->deadline_ms = r->token_deadline_unix_ms;
  snprintf(out->token, sizeof(out->token), "%s", r->token ? r->token : "");
  brume_proto_free(reply);
}

static acq warm(daemon_proc *d, const char *account, const char *function) {
  acq a;
  acquire(d, account, function, BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT, 60000, &a);
  return a;
}

/* Release's status; *was_held its answer. */
static brume_status release(daemon_proc *d, const char *token, bool *was_held) {
  Brume__ReleaseRequest req = BRUME__RELEASE_REQUEST__INIT;
  req.token = (char *)token;
  req.caller_id = "test/counting-cluster";
  ProtobufCMessage *reply = NULL;
  brume_err *err = NULL;
  if (brume_rpc_unary(d->client, &brume__counting__descriptor, M_RELEASE, &req.base, &reply, NULL,
                      &err) < 0) {
    brume_status code = err ? err->code : BRUME_UNKNOWN;
    brume_err_free(err);
    return code;
  }
  if (was_held) *was_held = ((Brume__ReleaseResponse *)reply)->was_held;
  brume_proto_free(reply);
  return BRUME_OK;
}

/* Releases a token that must have been held; fails the test otherwise. */
static void release_held(daemon_proc *d, const char *token) {
  bool was_held = false;
  brume_status code = release(d, token, &was_held);
  if (code != BRUME_OK) fail_msg("release %s on %s: %s", token, d->p.id, brume_status_name(code));
  if (!was_held) fail_msg("release %s on %s: was not held", token, d->p.id);
}

/* GetState; NULL with *code on failure. The caller frees with brume_proto_free. */
static Brume__GetStateResponse *get_state(daemon_proc *d, const char *account, const char *function,
                                          brume_status *code) {
  Brume__GetStateRequest req = BRUME__GET_STATE_REQUEST__INIT;
  req.account_id = (char *)account;
  req.function_name = (char *)(function ? function : "");
  ProtobufCMessage *reply = NULL;
  brume_err *err = NULL;
  if (brume_rpc_unary(d->client, &brume__counting__descriptor, M_GET_STATE, &req.base, &reply, NULL,
                      &err) < 0) {
    if (code) *code = err ? err->code : BRUME_UNKNOWN;
    brume_err_free(err);
    return NULL;
  }
  if (code) *code = BRUME_OK;
  return (Brume__GetStateResponse *)reply;
}

/* The account's in_use on daemon d; fails the test when GetState fails. */
static uint32_t in_use(daemon_proc *d, const char *account) {
  brume_status code = BRUME_OK;
  Brume__GetStateResponse *s = get_state(d, account, NULL, &code);
  if (s == NULL) fail_msg("GetState %s on %s: %s", account, d->p.id, brume_status_name(code));
  if (s->account == NULL) fail_msg("GetState %s on %s: no account", account, d->p.id);
  uint32_t n = s->account->in_use;
  brume_proto_free(&s->base);
  return n;
}

typedef bool (*state_ok_fn)(const Brume__GetStateResponse *s, const void *arg);

/* Polls GetState(account, function) on every daemon until ok() holds on all of them: how a test
 * knows that a limits change it wrote has reached every daemon's watch. */
static void wait_state(const char *account, const char *function, state_ok_fn ok, const void *arg,
                       const char *what) {
  long long t0 = brume_test_now_ms();
  for (int i = 0; i < N_DAEMONS; i++) {
    brume_status code = BRUME_OK;
    for (;;) {
      Brume__GetStateResponse *s = get_state(&daemons[i], account, function, &code);
      bool good = s != NULL && ok(s, arg);
      if (s) brume_proto_free(&s->base);
      if (good) break;
      if (brume_test_now_ms() - t0 > LIMITS_WAIT_MS)
        fail_msg("%s: %s does not show it after %d ms (last GetState: %s)", what, daemons[i].p.id,
                 LIMITS_WAIT_MS, brume_status_name(code));
      usleep(50000);
    }
  }
}

typedef struct account_want {
  uint32_t limit, unreserved, reserved_total;
} account_want;

static bool account_ok(const Brume__GetStateResponse *s, const void *arg) {
  const account_want *w = arg;
  return s->account && s->account->concurrency_limit == w->limit &&
         s->account->unreserved_limit == w->unreserved &&
         s->account->reserved_total == w->reserved_total;
}

static void put_key(const char *key, const char *value) {
  brume_err *err = NULL;
  if (brume_etcd_put(etcd, key, value, strlen(value), 0, NULL, &err) < 0)
    fail_msg("put %s: %s", key, err->msg);
}

/* Writes the account's limit and waits until every daemon applies it (with reserved_total of
 * the functions configured before). */
static void set_account_limit(const char *account, uint32_t limit, uint32_t reserved_total) {
  char key[256], value[64];
  snprintf(key, sizeof(key), PREFIX "/limits/account/%s", account);
  snprintf(value, sizeof(value), "{\"concurrency_limit\":%u}", limit);
  put_key(key, value);
  account_want w = {limit, limit - reserved_total, reserved_total};
  wait_state(account, NULL, account_ok, &w, key);
}

/* Sum of the decimal values under prefix in etcd, or -1 when etcd cannot be read. */
static long long etcd_sum(const char *prefix) {
  brume_etcd_range *r = brume_etcd_get_prefix(etcd, prefix, NULL);
  if (r == NULL) return -1;
  long long sum = 0;
  for (size_t i = 0; i < r->n; i++) sum += strtoll(r->kvs[i].value, NULL, 10);
  brume_etcd_range_free(r);
  return sum;
}

/* The HTTP status of GET path on 127.0.0.1:port, or -1 when it cannot be had within 2 s. */
static int http_status(int port, const char *path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct timeval tv = {.tv_sec = 2};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int status = -1;
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
    char req[256], buf[256];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    if (write(fd, req, (size_t)n) == n) {
      ssize_t got = read(fd, buf, sizeof(buf) - 1);
      if (got > 12) {
        buf[got] = '\0';
        if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) status = -1;
      }
    }
  }
  close(fd);
  return status;
}

/* Starts n threads of fn(&args[i * stride]) on small stacks. */
static void start_threads(pthread_t *th, size_t n, void *(*fn)(void *), void *args, size_t stride) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, STACK_SIZE);
  for (size_t i = 0; i < n; i++) {
    int rc = pthread_create(&th[i], &attr, fn, (char *)args + i * stride);
    if (rc != 0) fail_msg("pthread_create %zu: %s", i, strerror(rc));
  }
  pthread_attr_destroy(&attr);
}

static void join_threads(pthread_t *th, size_t n) {
  for (size_t i = 0; i < n; i++) pthread_join(th[i], NULL);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

/* Counters shared by hammering threads. */
typedef struct tally {
  _Atomic long grants, throttles, wrong_reason, unavailable, other_errors, release_errors;
  _Atomic int first_wrong_reason, first_other_code;
} tally;

static void tally_error(tally *t, const acq *a) {
  if (a->code == BRUME_UNAVAILABLE) {
    if (atomic_fetch_add(&t->unavailable, 1) == 0)
      fprintf(stderr, "  first UNAVAILABLE: %s\n", a->msg);
  } else {
    if (atomic_fetch_add(&t->other_errors, 1) == 0) {
      atomic_store(&t->first_other_code, (int)a->code);
      fprintf(stderr, "  first error %s: %s\n", brume_status_name(a->code), a->msg);
    }
  }
}

static void tally_throttle(tally *t, const acq *a, int want_reason) {
  atomic_fetch_add(&t->throttles, 1);
  if (a->reason != want_reason && atomic_fetch_add(&t->wrong_reason, 1) == 0)
    atomic_store(&t->first_wrong_reason, a->reason);
}

static void tally_print(const char *what, tally *t) {
  fprintf(stderr,
          "  %s: %ld grants, %ld throttles (%ld with another reason, first %d), %ld UNAVAILABLE, "
          "%ld other errors (first %s), %ld failed releases\n",
          what, atomic_load(&t->grants), atomic_load(&t->throttles), atomic_load(&t->wrong_reason),
          atomic_load(&t->first_wrong_reason), atomic_load(&t->unavailable),
          atomic_load(&t->other_errors), brume_status_name(atomic_load(&t->first_other_code)),
          atomic_load(&t->release_errors));
}

/* ---- a. 600 threads on a limit of 100 ---- */

#define A_THREADS_PER_DAEMON 200
#define A_LIMIT 100
#define A_SECONDS 5

static struct {
  _Atomic bool stop;
  _Atomic int held; /* incremented after a grant, decremented before its release */
  int max_held;
  long samples;
  long long max_blocks;
  long block_samples, block_read_errors;
  tally t;
} ca;

typedef struct hammer_arg {
  daemon_proc *d;
  unsigned seed;
} hammer_arg;

static void *a_hammer(void *arg) {
  hammer_arg *h = arg;
  while (!atomic_load(&ca.stop)) {
    acq a = warm(h->d, "acct-a", "f");
    if (a.code != BRUME_OK) {
      tally_error(&ca.t, &a);
      sleep_ms(1);
      continue;
    }
    if (!a.granted) {
      tally_throttle(&ca.t, &a,
                     BRUME__THROTTLE_REASON__THROTTLE_REASON_CONCURRENT_INVOCATION_LIMIT_EXCEEDED);
      usleep(1000 + rand_r(&h->seed) % 2000);
      continue;
    }
    atomic_fetch_add(&ca.t.grants, 1);
    atomic_fetch_add(&ca.held, 1);
    /* The invocation: long next to the two RPCs around it, so that the tokens a daemon counts
     * as in use are held here almost all the time and the limit shows in ca.held. With 20-50 ms
     * the tokens in transit (a release sent, a grant not yet received) were up to 12 under ASan
     * on 2 cores, 1 run in about 15, and max_held fell to 88; with 60-120 ms, CI once saw 82
     * (about 20 ms in transit per token). 200-300 ms keeps the part in transit under 10 %. */
    usleep(200000 + rand_r(&h->seed) % 100000);
    atomic_fetch_sub(&ca.held, 1);
    bool was_held = false;
    if (release(h->d, a.token, &was_held) != BRUME_OK || !was_held)
      atomic_fetch_add(&ca.t.release_errors, 1);
  }
  return NULL;
}

static void *a_sampler(void *arg) {
  (void)arg;
  while (!atomic_load(&ca.stop)) {
    int h = atomic_load(&ca.held);
    if (h > ca.max_held) ca.max_held = h;
    ca.samples++;
    usleep(1000);
  }
  return NULL;
}

static void *a_block_sampler(void *arg) {
  (void)arg;
  while (!atomic_load(&ca.stop)) {
    long long sum = etcd_sum(PREFIX "/count/acct-a/unreserved/");
    if (sum < 0) {
      ca.block_read_errors++;
    } else {
      if (sum > ca.max_blocks) ca.max_blocks = sum;
      ca.block_samples++;
    }
    usleep(200000);
  }
  return NULL;
}

static void test_a_limit_under_hammering(void **state) {
  (void)state;
  set_account_limit("acct-a", A_LIMIT, 0);
  enum { N = N_DAEMONS * A_THREADS_PER_DAEMON };
  static pthread_t th[N];
  static hammer_arg args[N];
  pthread_t sampler, block_sampler;
  memset(&ca, 0, sizeof(ca));
  for (int i = 0; i < N; i++) args[i] = (hammer_arg){&daemons[i % N_DAEMONS], (unsigned)i * 7919u};
  start_threads(&sampler, 1, a_sampler, NULL, 0);
  start_threads(&block_sampler, 1, a_block_sampler, NULL, 0);
  start_threads(th, N, a_hammer, args, sizeof(args[0]));
  sleep_ms(A_SECONDS * 1000);
  atomic_store(&ca.stop, true);
  join_threads(th, N);
  join_threads(&sampler, 1);
  join_threads(&block_sampler, 1);

  tally_print("a", &ca.t);
  fprintf(stderr,
          "  a: max held %d (of %d; %ld samples), max sum of blocks in etcd %lld (%ld samples, "
          "%ld read errors)\n",
          ca.max_held, A_LIMIT, ca.samples, ca.max_blocks, ca.block_samples, ca.block_read_errors);
  assert_true(ca.max_held <= A_LIMIT);
  /* The limit was reached: the daemons' blocks in etcd took all of it, and the clients held
   * most of it at once (the rest in transit between a release and the next grant). */
  assert_int_equal(ca.max_blocks, A_LIMIT);
  assert_true(ca.max_held >= 85);
  assert_true(ca.samples >= A_SECONDS * 200);
  assert_true(atomic_load(&ca.t.grants) > 1000);
  assert_true(atomic_load(&ca.t.throttles) > 0);
  assert_int_equal(atomic_load(&ca.t.wrong_reason), 0);
  assert_int_equal(atomic_load(&ca.t.unavailable), 0);
  assert_int_equal(atomic_load(&ca.t.other_errors), 0);
  assert_int_equal(atomic_load(&ca.t.release_errors), 0);
  assert_true(ca.block_samples >= A_SECONDS * 2);
  assert_true(ca.max_blocks <= A_LIMIT);
  assert_true(ca.max_blocks > 0);
  for (int i = 0; i < N_DAEMONS; i++) assert_int_equal(in_use(&daemons[i], "acct-a"), 0);
  case_passed = true;
}

/* ---- b. a reserved function keeps its share under a flood ---- */

#define B_FLOOD_THREADS 100
#define B_MAX_TOKENS 400

static struct {
  _Atomic bool stop;
  _Atomic int held;
  _Atomic int max_held;
  tally t;
} cb;

typedef struct flood_arg {
  daemon_proc *d;
  int n;
  char tokens[B_MAX_TOKENS][TOKEN_MAX];
} flood_arg;

static void *b_flood(void *arg) {
  flood_arg *f = arg;
  while (!atomic_load(&cb.stop)) {
    acq a = warm(f->d, "acct-b", "flood");
    if (a.code != BRUME_OK) {
      tally_error(&cb.t, &a);
      sleep_ms(5);
      continue;
    }
    if (!a.granted) {
      tally_throttle(&cb.t, &a,
                     BRUME__THROTTLE_REASON__THROTTLE_REASON_CONCURRENT_INVOCATION_LIMIT_EXCEEDED);
      sleep_ms(2);
      continue;
    }
    atomic_fetch_add(&cb.t.grants, 1);
    int h = atomic_fetch_add(&cb.held, 1) + 1;
    int m = atomic_load(&cb.max_held);
    while (h > m && !atomic_compare_exchange_weak(&cb.max_held, &m, h)) {
    }
    if (f->n < B_MAX_TOKENS && strlen(a.token) < sizeof(f->tokens[0]))
      snprintf(f->tokens[f->n++], sizeof(f->tokens[0]), "%s", a.token);
    else
      atomic_fetch_add(&cb.t.release_errors, 1); /* cannot keep it: counted as a failure */
  }
  for (int i = 0; i < f->n; i++) {
    atomic_fetch_sub(&cb.held, 1);
    bool was_held = false;
    if (release(f->d, f->tokens[i], &was_held) != BRUME_OK || !was_held)
      atomic_fetch_add(&cb.t.release_errors, 1);
  }
  return NULL;
}

static bool function_reserved_ok(const Brume__GetStateResponse *s, const void *arg) {
  (void)arg;
  return s->account && s->account->unreserved_limit == 300 && s->function &&
         s->function->reserved && s->function->reserved_concurrency == 100;
}

static void test_b_reserved_share(void **state) {
  (void)state;
  put_key(PREFIX "/limits/function/acct-b/res", "{\"reserved_concurrency\":100}");
  set_account_limit("acct-b", 400, 100);
  wait_state("acct-b", "res", function_reserved_ok, NULL, "acct-b/res reserved 100");

  memset(&cb, 0, sizeof(cb));
  static flood_arg args[B_FLOOD_THREADS];
  static pthread_t th[B_FLOOD_THREADS];
  for (int i = 0; i < B_FLOOD_THREADS; i++) {
    args[i].d = &daemons[i % N_DAEMONS];
    args[i].n = 0;
  }
  start_threads(th, B_FLOOD_THREADS, b_flood, args, sizeof(args[0]));

  /* Let the flood take all it can (the whole unreserved pool), then take the reserved 100. */
  long long t0 = brume_test_now_ms();
  while (atomic_load(&cb.held) < 300 && brume_test_now_ms() - t0 < 15000) sleep_ms(50);
  fprintf(stderr, "  b: the flood holds %d after %lld ms\n", atomic_load(&cb.held),
          brume_test_now_ms() - t0);

  static char res_tokens[100][TOKEN_MAX];
  int res_daemon[100];
  int granted = 0, redirects = 0, wrong = 0, errors = 0;
  long long r0 = brume_test_now_ms();
  for (int i = 0; i < 100 && brume_test_now_ms() - r0 < 10000;) {
    /* Daemon i % 3 first; when it throttles, the others (as a frontend would), then again. */
    bool got = false;
    for (int k = 0; k < N_DAEMONS && !got; k++) {
      int di = (i + k) % N_DAEMONS;
      acq a = warm(&daemons[di], "acct-b", "res");
      if (a.code != BRUME_OK) {
        if (errors++ == 0) fprintf(stderr, "  b: res acquire on %s: %s\n", daemons[di].p.id, a.msg);
      } else if (a.granted) {
        snprintf(res_tokens[i], sizeof(res_tokens[i]), "%s", a.token);
        res_daemon[i] = di;
        got = true;
      } else {
        if (a.reason !=
            BRUME__THROTTLE_REASON__THROTTLE_REASON_RESERVED_FUNCTION_CONCURRENT_INVOCATION_LIMIT_EXCEEDED)
          wrong++;
        redirects++;
      }
    }
    if (got) {
      granted = ++i;
    } else {
      sleep_ms(100);
    }
  }
  fprintf(stderr,
          "  b: %d of 100 tokens of the reserved function in %lld ms (%d throttles on the way, "
          "%d with a wrong reason, %d errors)\n",
          granted, brume_test_now_ms() - r0, redirects, wrong, errors);

  /* The 101st, on every daemon. */
  int extra_reason[N_DAEMONS];
  bool extra_granted = false;
  brume_status extra_code = BRUME_OK;
  for (int di = 0; di < N_DAEMONS; di++) {
    acq a = warm(&daemons[di], "acct-b", "res");
    extra_reason[di] = a.reason;
    if (a.code != BRUME_OK) extra_code = a.code;
    if (a.code == BRUME_OK && a.granted) {
      extra_granted = true;
      release_held(&daemons[di], a.token);
    }
  }
  long long res_blocks = etcd_sum(PREFIX "/count/acct-b/fn/res/");
  long long flood_blocks = etcd_sum(PREFIX "/count/acct-b/unreserved/");
  int flood_now = atomic_load(&cb.held);
  sleep_ms(500); /* the flood keeps trying while the reserved tokens are held */
  atomic_store(&cb.stop, true);
  join_threads(th, B_FLOOD_THREADS);
  tally_print("b flood", &cb.t);
  fprintf(stderr,
          "  b: 101st res: granted %d, reasons %d %d %d, code %s; blocks in etcd: res %lld, "
          "unreserved %lld; flood held %d then, max %d\n",
          extra_granted, extra_reason[0], extra_reason[1], extra_reason[2],
          brume_status_name(extra_code), res_blocks, flood_blocks, flood_now,
          atomic_load(&cb.max_held));
  for (int i = 0; i < granted; i++) release_held(&daemons[res_daemon[i]], res_tokens[i]);

  assert_int_equal(granted, 100);
  assert_int_equal(wrong, 0);
  assert_int_equal(errors, 0);
  assert_false(extra_granted);
  assert_int_equal(extra_code, BRUME_OK);
  for (int di = 0; di < N_DAEMONS; di++)
    assert_int_equal(
        extra_reason[di],
        BRUME__THROTTLE_REASON__THROTTLE_REASON_RESERVED_FUNCTION_CONCURRENT_INVOCATION_LIMIT_EXCEEDED);
  assert_true(res_blocks <= 100);
  assert_true(flood_blocks <= 300);
  assert_true(atomic_load(&cb.max_held) <= 300);
  assert_true(atomic_load(&cb.max_held) >= 290);
  assert_true(atomic_load(&cb.t.throttles) > 0);
  assert_int_equal(atomic_load(&cb.t.wrong_reason), 0);
  assert_int_equal(atomic_load(&cb.t.unavailable), 0);
  assert_int_equal(atomic_load(&cb.t.other_errors), 0);
  assert_int_equal(atomic_load(&cb.t.release_errors), 0);
  case_passed = true;
}

/* ---- c. kill -9 of the daemon that holds the whole limit ---- */

static void test_c_kill_holder(void **state) {
  (void)state;
  set_account_limit("acct-c", 100, 0);
  static char tokens[100][TOKEN_MAX];
  for (int i = 0; i < 100; i++) {
    acq a = warm(&daemons[0], "acct-c", "f");
    if (a.code != BRUME_OK || !a.granted)
      fail_msg("acct-c token %d on c0: code %s, reason %d (%s)", i, brume_status_name(a.code),
               a.reason, a.msg);
  }
  acq a = warm(&daemons[1], "acct-c", "f");
  assert_int_equal(a.code, BRUME_OK);
  assert_false(a.granted);
  assert_int_equal(a.reason,
                   BRUME__THROTTLE_REASON__THROTTLE_REASON_CONCURRENT_INVOCATION_LIMIT_EXCEEDED);
  long long held_c0 = etcd_sum(PREFIX "/count/acct-c/unreserved/c0");
  assert_int_equal(held_c0, 100);

  assert_int_equal(kill(daemons[0].p.pid, SIGKILL), 0);
  long long t0 = brume_test_now_ms();
  brume_test_stop(daemons[0].p.pid, SIGKILL, 5000);
  daemons[0].p.pid = -1;

  int n = 0, errors = 0, throttles = 0;
  long long took = -1;
  while (brume_test_now_ms() - t0 < 15000) {
    acq b = warm(&daemons[1], "acct-c", "f");
    if (b.code != BRUME_OK) {
      errors++;
    } else if (b.granted) {
      snprintf(tokens[n++], sizeof(tokens[0]), "%s", b.token);
      if (n == 100) {
        took = brume_test_now_ms() - t0;
        break;
      }
      continue;
    } else {
      throttles++;
    }
    sleep_ms(20);
  }
  fprintf(stderr,
          "  c: c1 holds %d of 100 %lld ms after kill -9 of c0 (lease_ttl %d s; %d throttles, %d "
          "errors on the way)\n",
          n, took, LEASE_TTL_S, throttles, errors);
  for (int i = 0; i < n; i++) release_held(&daemons[1], tokens[i]);

  /* Back to three daemons for the next cases. */
  assert_int_equal(daemon_spawn(&daemons[0]), 0);

  assert_int_equal(n, 100);
  assert_true(took >= 0 && took <= (LEASE_TTL_S + 2) * 1000);
  assert_int_equal(errors, 0);
  case_passed = true;
}

/* ---- d. a token never released ---- */

static void test_d_token_deadline(void **state) {
  (void)state;
  set_account_limit("acct-d", 100, 0);
  daemon_proc *d = &daemons[2];
  int64_t w0 = brume_test_wall_ms();
  long long t0 = brume_test_now_ms();
  acq a;
  acquire(d, "acct-d", "f", BRUME__ACQUIRE_KIND__ACQUIRE_KIND_WARM_ENVIRONMENT, 1000, &a);
  int64_t w1 = brume_test_wall_ms();
  assert_int_equal(a.code, BRUME_OK);
  assert_true(a.granted);
  fprintf(stderr, "  d: token %s, deadline %" PRId64 " ms after the call began\n", a.token,
          a.deadline_ms - w0);
  assert_true(a.deadline_ms >= w0 + 1000 - 50 && a.deadline_ms <= w1 + 1000 + 50);
  assert_int_equal(in_use(d, "acct-d"), 1);

  long long left = 1500 - (brume_test_now_ms() - t0);
  if (left > 0) sleep_ms(left);
  assert_int_equal(in_use(d, "acct-d"), 0);
  bool was_held = true;
  assert_int_equal(release(d, a.token, &was_held), BRUME_OK);
  assert_false(was_held);
  case_passed = true;
}

/* ---- e, f. the scaling rate on a compressed clock ---- */

#define CURVE_THREADS_PER_DAEMON 16
#define CURVE_THREADS (N_DAEMONS * CURVE_THREADS_PER_DAEMON)
#define CURVE_MAX_GRANTS 8192
#define CURVE_SECONDS 3

static struct {
  const char *account, *function;
  _Atomic bool stop;
  tally t;
} cc;

typedef struct curve_arg {
  daemon_proc *d;
  size_t n;
  double at_ms[CURVE_MAX_GRANTS]; /* brume_test_mono_ms() of each grant's answer */
} curve_arg;

static void *curve_worker(void *arg) {
  curve_arg *c = arg;
  while (!atomic_load(&cc.stop)) {
    acq a;
    acquire(c->d, cc.account, cc.function, BRUME__ACQUIRE_KIND__ACQUIRE_KIND_NEW_ENVIRONMENT, 60000,
            &a);
    double now = brume_test_mono_ms();
    if (a.code != BRUME_OK) {
      tally_error(&cc.t, &a);
      sleep_ms(2);
      continue;
    }
    if (!a.granted) {
      tally_throttle(&cc.t, &a,
                     BRUME__THROTTLE_REASON__THROTTLE_REASON_CONCURRENCY_SCALING_RATE_EXCEEDED);
      sleep_ms(2);
      continue;
    }
    atomic_fetch_add(&cc.t.grants, 1);
    if (c->n < CURVE_MAX_GRANTS) c->at_ms[c->n++] = now;
    bool was_held = false;
    if (release(c->d, a.token, &was_held) != BRUME_OK || !was_held)
      atomic_fetch_add(&cc.t.release_errors, 1);
  }
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Runs the curve threads on account/function until CURVE_SECONDS after the first grant (they
 * keep running when keep_running is set: the caller stops them with curve_stop), then checks
 * granted(t) against burst + rate * t at t = 1, 2, 3 s within 2 %, printing the curve. */
static curve_arg *curve_args;
static pthread_t curve_threads[CURVE_THREADS];

static void curve_start(const char *account, const char *function) {
  memset(&cc, 0, sizeof(cc));
  cc.account = account;
  cc.function = function;
  curve_args = calloc(CURVE_THREADS, sizeof(*curve_args));
  assert_non_null(curve_args);
  for (int i = 0; i < CURVE_THREADS; i++) curve_args[i].d = &daemons[i % N_DAEMONS];
  start_threads(curve_threads, CURVE_THREADS, curve_worker, curve_args, sizeof(curve_args[0]));
}

static void curve_stop(void) {
  atomic_store(&cc.stop, true);
  join_threads(curve_threads, CURVE_THREADS);
}

/* Waits until CURVE_SECONDS (and a bit) after the first grant. */
static void curve_wait(void) {
  long long t0 = brume_test_now_ms();
  while (atomic_load(&cc.t.grants) == 0 && brume_test_now_ms() - t0 < 10000) sleep_ms(1);
  sleep_ms(CURVE_SECONDS * 1000 + 300);
}

static void curve_check(const char *what, double burst, double per_s) {
  size_t total = 0;
  for (int i = 0; i < CURVE_THREADS; i++) total += curve_args[i].n;
  double *all = malloc((total + 1) * sizeof(double));
  assert_non_null(all);
  size_t k = 0;
  for (int i = 0; i < CURVE_THREADS; i++)
    for (size_t j = 0; j < curve_args[i].n; j++) all[k++] = curve_args[i].at_ms[j];
  qsort(all, total, sizeof(double), cmp_double);
  tally_print(what, &cc.t);
  if (total == 0) {
    free(all);
    fail_msg("%s: nothing granted", what);
  }
  double first = all[0];
  fprintf(stderr, "  %s: t(s)  granted  expected\n", what);
  size_t idx = 0;
  double worst = 0;
  bool ok = true;
  for (int step = 1; step <= CURVE_SECONDS * 10; step++) {
    double t = step / 10.0;
    while (idx < total && all[idx] - first <= t * 1000) idx++;
    double expected = burst + per_s * t;
    double dev = ((double)idx - expected) / expected;
    if (step % 10 == 0) {
      if (dev < 0 ? -dev > worst : dev > worst) worst = dev < 0 ? -dev : dev;
      if (dev > 0.02 || dev < -0.02) ok = false;
    }
    fprintf(stderr, "  %s: %4.1f  %7zu  %8.0f%s\n", what, t, idx, expected,
            step % 10 == 0 ? (dev > 0.02 || dev < -0.02 ? "  <- off by more than 2 %" : "  checked")
                           : "");
  }
  fprintf(stderr, "  %s: worst deviation at t = 1, 2, 3 s: %.2f %%\n", what, worst * 100);
  free(all);
  assert_true(ok);
  assert_true(atomic_load(&cc.t.throttles) > 0);
  assert_int_equal(atomic_load(&cc.t.wrong_reason), 0);
  assert_int_equal(atomic_load(&cc.t.unavailable), 0);
  assert_int_equal(atomic_load(&cc.t.other_errors), 0);
  assert_int_equal(atomic_load(&cc.t.release_errors), 0);
}

static void curve_free(void) {
  free(curve_args);
  curve_args = NULL;
}

static void delete_cluster_limits(void) {
  brume_etcd_delete(etcd, PREFIX "/limits/cluster", false, NULL, NULL);
}

static bool account_bucket_ok(const Brume__GetStateResponse *s, const void *arg) {
  (void)arg;
  return s->account && s->account->scaling && s->account->scaling->capacity == 300;
}

static void test_e_account_scaling_curve(void **state) {
  (void)state;
  put_key(PREFIX "/limits/cluster",
          "{\"scaling_model\":\"account\",\"account_burst\":300,"
          "\"account_refill_per_minute\":500,\"time_scale\":60}");
  set_account_limit("acct-e", 100000, 0);
  wait_state("acct-e", NULL, account_bucket_ok, NULL, "account bucket of 300");
  curve_start("acct-e", "f");
  curve_wait();
  curve_stop();
  delete_cluster_limits();
  curve_check("e", 300, 500);
  curve_free();
  case_passed = true;
}

static bool function_bucket_ok(const Brume__GetStateResponse *s, const void *arg) {
  (void)arg;
  return s->account && s->account->scaling == NULL && s->function && s->function->scaling &&
         s->function->scaling->capacity == 300;
}

/* The clock runs 5 times fast, not 10: at 10 the curve is 300 + 1,000 t, and the 48 client
 * threads (an Acquire and a Release per grant, on 2 loaded cores) manage about 1,300 grants a
 * second, so they caught up with the burst only near t = 1 s and the check there measured the
 * client's speed, not the bucket (CI failed it at 2.46 %). At 5 (300 + 500 t, as in e) they catch
 * up by t = 0.4 s. */
static void test_f_function_scaling_curve(void **state) {
  (void)state;
  put_key(PREFIX "/limits/cluster",
          "{\"scaling_model\":\"function\",\"function_burst\":300,"
          "\"function_refill_per_10s\":1000,\"time_scale\":5}");
  set_account_limit("acct-f", 100000, 0);
  wait_state("acct-f", "f1", function_bucket_ok, NULL, "function bucket of 300 (f1)");
  wait_state("acct-f", "f2", function_bucket_ok, NULL, "function bucket of 300 (f2)");
  curve_start("acct-f", "f1");
  curve_wait();

  /* f1 is throttled now, its threads still running: f2 has its own burst. */
  long throttled_before = atomic_load(&cc.t.throttles);
  int granted = 0, throttled = 0, errors = 0, reason = 0;
  long long t0 = brume_test_now_ms();
  for (int i = 0; i < 300; i++) {
    acq a;
    daemon_proc *d = &daemons[i % N_DAEMONS];
    acquire(d, "acct-f", "f2", BRUME__ACQUIRE_KIND__ACQUIRE_KIND_NEW_ENVIRONMENT, 60000, &a);
    if (a.code != BRUME_OK) {
      errors++;
    } else if (!a.granted) {
      throttled++;
      reason = a.reason;
    } else {
      granted++;
      release_held(d, a.token);
    }
  }
  long long took = brume_test_now_ms() - t0;
  long f1_throttled_meanwhile = atomic_load(&cc.t.throttles) - throttled_before;
  curve_stop();
  delete_cluster_limits();
  fprintf(stderr,
          "  f: f2's burst: %d of 300 granted in %lld ms (%d throttled, last reason %d, %d errors) "
          "while f1 was throttled %ld times\n",
          granted, took, throttled, reason, errors, f1_throttled_meanwhile);
  curve_check("f", 300, 500);
  curve_free();
  assert_int_equal(granted, 300);
  assert_int_equal(errors, 0);
  assert_true(f1_throttled_meanwhile > 0);
  case_passed = true;
}

/* ---- g. etcd stopped ---- */

static void test_g_etcd_stopped(void **state) {
  (void)state;
  set_account_limit("acct-g", 100, 0);
  daemon_proc *d = &daemons[0];
  for (int i = 0; i < N_DAEMONS; i++)
    assert_int_equal(http_status(daemons[i].p.http_port, "/healthz"), 200);

  static char tokens[200][TOKEN_MAX];
  int n = 0;
  for (; n < 10; n++) {
    acq a = warm(d, "acct-g", "f");
    if (a.code != BRUME_OK || !a.granted)
      fail_msg("acct-g token %d: code %s granted %d (%s)", n, brume_status_name(a.code), a.granted,
               a.msg);
    snprintf(tokens[n], sizeof(tokens[0]), "%s", a.token);
  }
  long long block = etcd_sum(PREFIX "/count/acct-g/unreserved/c0");
  assert_true(block >= n && block <= 100);

  assert_int_equal(brume_test_etcd_stop(server), 0);
  long long stopped = brume_test_now_ms();
  int held_before = n, unavailable = 0, throttled = 0, others = 0;
  brume_status other_code = BRUME_OK;
  for (int i = 0; i < (int)block - held_before + 5; i++) {
    acq a = warm(d, "acct-g", "f");
    if (a.code == BRUME_OK && a.granted) {
      snprintf(tokens[n++], sizeof(tokens[0]), "%s", a.token);
    } else if (a.code == BRUME_OK) {
      throttled++;
    } else if (a.code == BRUME_UNAVAILABLE) {
      unavailable++;
    } else {
      others++;
      other_code = a.code;
    }
  }
  long long phase1_ms = brume_test_now_ms() - stopped;
  fprintf(stderr,
          "  g: c0's block %lld with %d held; after etcd stopped: %d more granted, %d UNAVAILABLE, "
          "%d throttled, %d other (%s), in %lld ms\n",
          block, held_before, n - held_before, unavailable, throttled, others,
          brume_status_name(other_code), phase1_ms);
  /* Give the units back while the lease is still young, so c0 has room in memory. */
  int release_failures = 0;
  for (int i = 0; i < n; i++) {
    bool was_held = false;
    if (release(d, tokens[i], &was_held) != BRUME_OK || !was_held) release_failures++;
  }
  assert_true(phase1_ms < (LEASE_TTL_S - 1) * 1000);
  assert_true(n <= block);
  assert_true(unavailable >= 5);
  assert_int_equal(throttled, 0);
  assert_int_equal(others, 0);
  assert_int_equal(release_failures, 0);

  /* Once the lease is older than its TTL: nothing is granted, not even from the block. */
  long long left = (LEASE_TTL_S + 1) * 1000 - (brume_test_now_ms() - stopped);
  if (left > 0) sleep_ms(left);
  int late_grants = 0, late_unavailable = 0, late_other = 0;
  int healthz[N_DAEMONS];
  for (int i = 0; i < N_DAEMONS; i++) {
    for (int k = 0; k < 10; k++) {
      acq a = warm(&daemons[i], "acct-g", "f");
      if (a.code == BRUME_UNAVAILABLE) {
        late_unavailable++;
      } else if (a.code == BRUME_OK && a.granted) {
        late_grants++;
        release(&daemons[i], a.token, NULL);
      } else {
        late_other++;
      }
    }
    healthz[i] = http_status(daemons[i].p.http_port, "/healthz");
  }
  fprintf(stderr,
          "  g: %lld ms after the stop: %d granted, %d UNAVAILABLE, %d other; /healthz %d %d %d\n",
          brume_test_now_ms() - stopped, late_grants, late_unavailable, late_other, healthz[0],
          healthz[1], healthz[2]);

  assert_int_equal(brume_test_etcd_restart(server), 0);
  long long restarted = brume_test_now_ms();
  long long back_ms[N_DAEMONS];
  for (int i = 0; i < N_DAEMONS; i++) {
    back_ms[i] = -1;
    while (brume_test_now_ms() - restarted < (LEASE_TTL_S + 10) * 1000) {
      acq a = warm(&daemons[i], "acct-g", "f");
      if (a.code == BRUME_OK && a.granted) {
        back_ms[i] = brume_test_now_ms() - restarted;
        release_held(&daemons[i], a.token);
        break;
      }
      sleep_ms(50);
    }
  }
  int healthz_after[N_DAEMONS];
  for (int i = 0; i < N_DAEMONS; i++)
    healthz_after[i] = http_status(daemons[i].p.http_port, "/healthz");
  fprintf(stderr,
          "  g: after etcd restarted, grants again after %lld %lld %lld ms; /healthz %d %d %d\n",
          back_ms[0], back_ms[1], back_ms[2], healthz_after[0], healthz_after[1], healthz_after[2]);

  assert_int_equal(late_grants, 0);
  assert_int_equal(late_other, 0);
  assert_int_equal(late_unavailable, N_DAEMONS * 10);
  for (int i = 0; i < N_DAEMONS; i++) {
    assert_true(healthz[i] != 200);
    assert_true(back_ms[i] >= 0 && back_ms[i] <= (LEASE_TTL_S + 5) * 1000);
    assert_int_equal(healthz_after[i], 200);
  }
  case_passed = true;
}

int main(int argc, char **argv) {
  if (!brume_test_etcd_available()) {
    fprintf(stderr, "test_counting_cluster: skipped: no etcd on PATH\n");
    return 77;
  }
  if (argc < 2) {
    fprintf(stderr, "usage: test_counting_cluster BRUME_COUNTING\n");
    return 1;
  }
  counting_bin = argv[1];
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_a_limit_under_hammering, case_setup, case_teardown),
      cmocka_unit_test_setup_teardown(test_b_reserved_share, case_setup, case_teardown),
      cmocka_unit_test_setup_teardown(test_c_kill_holder, case_setup, case_teardown),
      cmocka_unit_test_setup_teardown(test_d_token_deadline, case_setup, case_teardown),
      cmocka_unit_test_setup_teardown(test_e_account_scaling_curve, case_setup, case_teardown),
      cmocka_unit_test_setup_teardown(test_f_function_scaling_curve, case_setup, case_teardown),
      cmocka_unit_test_setup_teardown(test_g_etcd_stopped, case_setup, case_teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
