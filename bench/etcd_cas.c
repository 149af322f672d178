/* bench_etcd_cas ENDPOINTS [SECONDS_PER_PHASE]
 *
 * Compare-and-swap throughput through common/etcd.c against a real etcd: each attempt is one txn
 * "if MOD(counter) == m then put counter = v+1 else range counter", the read-modify-write that
 * counting does. A lost race is answered by the failure branch, so a retry needs no extra read.
 * Three phases: 1 thread on its own key, 4 threads on 4 keys (uncontended), 4 threads on one key
 * (contended). Each phase checks at the end that the counters equal the successes (no lost or
 * doubled update). JSON lines on stdout, progress on stderr; exit 1 if a check fails. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcd.h"
#include "log.h"

enum { MAX_THREADS = 4, MAX_SAMPLES = 1 << 20 };

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct worker {
  brume_etcd *e;
  char key[64];
  double until;
  long successes;
  long conflicts;
  long errors;
  size_t n_lat;
  double *lat_ms; /* per attempt */
} worker;

static int64_t parse_counter(const brume_etcd_kv *kv) {
  return kv ? strtoll(kv->value, NULL, 10) : 0;
}

static void *run_worker(void *arg) {
  worker *w = arg;
  int64_t value = 0, mod = 0;
  brume_err *err = NULL;
  brume_etcd_kv *kv = NULL;
  if (brume_etcd_get(w->e, w->key, &kv, NULL, &err) < 0) {
    fprintf(stderr, "bench_etcd_cas: %s\n", err->msg);
    brume_err_free(err);
    w->errors++;
    return NULL;
  }
  value = parse_counter(kv);
  mod = kv ? kv->mod_revision : 0;
  brume_etcd_kv_free(kv);
  while (now_s() < w->until) {
    char next[32];
    int len = snprintf(next, sizeof(next), "%" PRId64, value + 1);
    brume_etcd_cmp cmp[] = {
        {.key = w->key, .target = BRUME_ETCD_MOD, .result = BRUME_ETCD_EQUAL, .number = mod}};
    brume_etcd_op put[] = {
        {.type = BRUME_ETCD_OP_PUT, .key = w->key, .value = next, .value_len = (size_t)len}};
    brume_etcd_op get[] = {{.type = BRUME_ETCD_OP_RANGE, .key = w->key}};
    brume_etcd_txn_req req = {cmp, 1, put, 1, get, 1};
    double t0 = now_s();
    brume_etcd_txn_result *t = brume_etcd_txn(w->e, &req, &err);
    if (w->n_lat < MAX_SAMPLES) w->lat_ms[w->n_lat++] = (now_s() - t0) * 1e3;
    if (t == NULL) {
      fprintf(stderr, "bench_etcd_cas: %s\n", err->msg);
      brume_err_clear(&err);
      w->errors++;
      break;
    }
    if (t->succeeded) {
      w->successes++;
      value++;
      mod = t->revision; /* the put happened at the txn's revision */
    } else {
      w->conflicts++;
      const brume_etcd_range *r = t->n == 1 ? &t->results[0].range : NULL;
      value = r && r->n ? parse_counter(&r->kvs[0]) : 0;
      mod = r && r->n ? r->kvs[0].mod_revision : 0;
    }
    brume_etcd_txn_result_free(t);
  }
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void emit(const char *metric, double value, const char *unit) {
  printf("{\"bench\": \"etcd\", \"metric\": \"%s\", \"value\": %.1f, \"unit\": \"%s\"}\n", metric,
         value, unit);
  fflush(stdout);
}

/* Runs one phase; returns 0 if every counter ended where the successes say it should. */
static int phase(brume_etcd *e, const char *name, int threads, bool shared, double seconds) {
  static worker ws[MAX_THREADS];
  pthread_t tids[MAX_THREADS];
  long before[MAX_THREADS] = {0};
  double until = now_s() + seconds;
  for (int i = 0; i < threads; i++) {
    ws[i] = (worker){.e = e, .until = until};
    snprintf(ws[i].key, sizeof(ws[i].key), "/bench/cas/%s/%d", name, shared ? 0 : i);
    ws[i].lat_ms = brume_xmalloc(MAX_SAMPLES * sizeof(double));
  }
  /* The counters may hold values from an earlier run on the same etcd. */
  for (int i = 0; i < (shared ? 1 : threads); i++) {
    brume_etcd_kv *kv = NULL;
    brume_err *err = NULL;
    if (brume_etcd_get(e, ws[i].key, &kv, NULL, &err) < 0) {
      fprintf(stderr, "bench_etcd_cas: %s\n", err->msg);
      brume_err_free(err);
      return -1;
    }
    before[i] = (long)parse_counter(kv);
    brume_etcd_kv_free(kv);
  }
  double t0 = now_s();
  for (int i = 0; i < threads; i++) pthread_create(&tids[i], NULL, run_worker, &ws[i]);
  long ok = 0, conflicts = 0, errors = 0;
  size_t n_lat = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(tids[i], NULL);
    ok += ws[i].successes;
    conflicts += ws[i].conflicts;
    errors += ws[i].errors;
    n_lat += ws[i].n_lat;
  }
  double elapsed = now_s() - t0;

  double *lat = brume_xmalloc((n_lat ? n_lat : 1) * sizeof(double));
  size_t k = 0;
  for (int i = 0; i < threads; i++) {
    memcpy(lat + k, ws[i].lat_ms, ws[i].n_lat * sizeof(double));
    k += ws[i].n_lat;
    free(ws[i].lat_ms);
  }
  qsort(lat, n_lat, sizeof(double), cmp_double);
  double p50 = n_lat ? lat[n_lat / 2] : 0, p99 = n_lat ? lat[n_lat * 99 / 100] : 0;
  free(lat);

  int rc = errors ? -1 : 0;
  for (int i = 0; i < (shared ? 1 : threads); i++) {
    brume_etcd_kv *kv = NULL;
    brume_err *err = NULL;
    if (brume_etcd_get(e, ws[i].key, &kv, NULL, &err) < 0) {
      brume_err_free(err);
      return -1;
    }
    long want = before[i] + (shared ? ok : ws[i].successes);
    long got = (long)parse_counter(kv);
    brume_etcd_kv_free(kv);
    if (got != want) {
      fprintf(stderr, "bench_etcd_cas: %s: counter %s is %ld, expected %ld\n", name, ws[i].key, got,
              want);
      rc = -1;
    }
  }
  fprintf(stderr,
          "bench_etcd_cas: %-10s threads=%d %.2f s: %ld succeeded, %ld conflicts, %ld errors, "
          "p50 %.2f ms, p99 %.2f ms, counters %s\n",
          name, threads, elapsed, ok, conflicts, errors, p50, p99, rc == 0 ? "correct" : "WRONG");

  char metric[96];
  if (shared) {
    snprintf(metric, sizeof(metric), "cas_txn_per_s_contended_%dthreads", threads);
    emit(metric, ok / elapsed, "txn/s");
    snprintf(metric, sizeof(metric), "cas_conflicts_per_s_contended_%dthreads", threads);
    emit(metric, conflicts / elapsed, "txn/s");
    snprintf(metric, sizeof(metric), "cas_conflict_pct_contended_%dthreads", threads);
    emit(metric, ok + conflicts ? 100.0 * conflicts / (ok + conflicts) : 0, "%");
  } else {
    snprintf(metric, sizeof(metric), "cas_txn_per_s_%dthread%s", threads, threads > 1 ? "s" : "");
    emit(metric, ok / elapsed, "txn/s");
    snprintf(metric, sizeof(metric), "cas_txn_p50_%dthread%s", threads, threads > 1 ? "s" : "");
    emit(metric, p50 * 1000, "us");
    snprintf(metric, sizeof(metric), "cas_txn_p99_%dthread%s", threads, threads > 1 ? "s" : "");
    emit(metric, p99 * 1000, "us");
  }
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: bench_etcd_cas ENDPOINTS [SECONDS_PER_PHASE]\n");
    return 2;
  }
  double seconds = argc == 3 ? atof(argv[2]) : 1.7;
  if (seconds <= 0) seconds = 1.7;
  brume_log_init("bench_etcd_cas", BRUME_LOG_WARN);
  brume_err *err = NULL;
  brume_etcd *e = brume_etcd_new(argv[1], &(brume_etcd_opts){.timeout_ms = 5000}, &err);
  if (e == NULL) {
    fprintf(stderr, "bench_etcd_cas: %s\n", err->msg);
    brume_err_free(err);
    return 1;
  }
  int rc = 0;
  rc |= phase(e, "solo", 1, false, seconds);
  rc |= phase(e, "separate", 4, false, seconds);
  rc |= phase(e, "shared", 4, true, seconds);
  brume_etcd_free(e);
  return rc ? 1 : 0;
}
