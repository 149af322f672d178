/* cluster_load: many callers invoking one function through several frontends at once, as the
 * clients of a cluster would; for tests/cluster and bench/run.sh cluster.
 *
 *   cluster_load --endpoints HOST:PORT[,HOST:PORT...] --api-key-file F --function NAME
 *                [--tls-ca F --tls-cert F --tls-key F] [--callers N] [--seconds S]
 *                [--payload JSON] [--deadline-ms MS] [--throttle-pause-ms MS] [--calls FILE]
 *
 * Caller i sends to endpoint i mod n, one synchronous Invoke after another, for S seconds (a call
 * under way when they end is waited for), or until SIGTERM or SIGINT, which end the load the same
 * way: a test that cannot know beforehand how long it needs the load stops it when it is done. A throttled caller pauses --throttle-pause-ms (default
 * 50) before its next call, as a client backing off would. Prints one JSON object: calls, ok,
 * function errors, cold starts, throttles by reason, other errors by status code (with the first
 * and the last message of each), ok calls per second, p50 and p99 of the ok calls in ms, and per
 * endpoint the ok calls. --calls FILE gets one line per call: "start_mono_us end_mono_us
 * endpoint_index code cold" (code 0 = OK; CLOCK_MONOTONIC, comparable with the worker's log on the
 * same machine). Exit 0 unless the arguments or the set-up are wrong: the caller judges the
 * figures. */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "brume/frontend.pb-c.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "mem.h"
#include "rpc.h"

#define MAX_ENDPOINTS 8
#define MAX_CALLERS 1000
#define MAX_REASONS 8
#define MAX_CODES 17 /* gRPC status codes */

typedef struct call_rec {
  int64_t start_us, end_us;
  int code;
  bool cold;
  unsigned endpoint;
} call_rec;

typedef struct caller {
  size_t index;
  call_rec *recs;
  size_t n, cap;
} caller;

static struct {
  const char *endpoints[MAX_ENDPOINTS];
  size_t n_endpoints;
  brume_rpc_client *clients[MAX_ENDPOINTS];
  char key[256];
  const char *function;
  const char *payload;
  int callers, seconds, deadline_ms, throttle_pause_ms;
  const char *calls_path;
  unsigned m_invoke;
  int64_t end_us;
} cfg = {
    .callers = 200, .seconds = 10, .deadline_ms = 60000, .throttle_pause_ms = 50, .payload = "{}"};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
/* Under mu. */
static struct {
  long ok, function_errors, cold;
  struct {
    char reason[96];
    long n;
  } throttles[MAX_REASONS];
  long errors[MAX_CODES];
  char *first_msg[MAX_CODES], *last_msg[MAX_CODES];
  long per_endpoint[MAX_ENDPOINTS];
} st;

/* The throttle's reason: the first word of the server's message that ends in "Exceeded". */
static void count_throttle(const char *msg) {
  char reason[96] = "unknown";
  for (const char *p = msg; p && *p;) {
    size_t n = strcspn(p, " :,;()");
    if (n > 8 && n < sizeof(reason) && strncmp(p + n - 8, "Exceeded", 8) == 0) {
      memcpy(reason, p, n);
      reason[n] = '\0';
      break;
    }
    p += n;
    p += strspn(p, " :,;()");
  }
  for (size_t i = 0; i < MAX_REASONS; i++) {
    if (st.throttles[i].reason[0] == '\0') snprintf(st.throttles[i].reason, 96, "%s", reason);
    if (strcmp(st.throttles[i].reason, reason) == 0) {
      st.throttles[i].n++;
      return;
    }
  }
}

/* Set by SIGTERM and SIGINT: the callers start no new call. */
static volatile sig_atomic_t stopping;

static void on_stop_signal(int sig) {
  (void)sig;
  stopping = 1;
}

static void *run_caller(void *arg) {
  caller *c = arg;
  unsigned ep = (unsigned)(c->index % cfg.n_endpoints);
  Brume__InvokeRequest req = BRUME__INVOKE_REQUEST__INIT;
  req.function_name = (char *)cfg.function;
  req.payload.data = (uint8_t *)cfg.payload;
  req.payload.len = strlen(cfg.payload);
  brume_rpc_call_opts o = {.deadline_ms = cfg.deadline_ms, .api_key = cfg.key};
  while (!stopping && brume_mono_us() < cfg.end_us) {
    Brume__InvokeResponse *resp = NULL;
    brume_err *err = NULL;
    int64_t t0 = brume_mono_us();
    int rc = brume_rpc_unary(cfg.clients[ep], &brume__frontend__descriptor, cfg.m_invoke, &req.base,
                             (ProtobufCMessage **)&resp, &o, &err);
    int64_t t1 = brume_mono_us();
    int code = rc == 0 ? 0 : (int)err->code;
    bool cold = rc == 0 && resp->cold_start;
    pthread_mutex_lock(&mu);
    if (rc == 0) {
      st.ok++;
      st.per_endpoint[ep]++;
      if (resp->function_error) st.function_errors++;
      if (cold) st.cold++;
    } else if (err->code == BRUME_RESOURCE_EXHAUSTED) {
      count_throttle(err->msg);
    } else {
      int k = code >= 0 && code < MAX_CODES ? code : 2;
      st.errors[k]++;
      if (st.first_msg[k] == NULL) st.first_msg[k] = brume_xstrdup(err->msg);
      free(st.last_msg[k]);
      st.last_msg[k] = brume_xstrdup(err->msg);
    }
    pthread_mutex_unlock(&mu);
    if (c->n == c->cap) {
      c->cap = c->cap ? c->cap * 2 : 64;
      c->recs = brume_xrealloc(c->recs, c->cap * sizeof(*c->recs));
    }
    c->recs[c->n++] = (call_rec){t0, t1, code, cold, ep};
    if (resp) protobuf_c_message_free_unpacked(&resp->base, NULL);
    brume_err_free(err);
    /* A throttle or an error: back off a little, as a client would, rather than spin. */
    if (rc < 0 && !stopping) usleep((useconds_t)cfg.throttle_pause_ms * 1000);
  }
  return NULL;
}

static void print_json_string(const char *s) {
  putchar('"');
  for (const char *p = s; *p; p++) {
    if (*p == '"' || *p == '\\') putchar('\\');
    putchar((unsigned char)*p < 0x20 ? ' ' : *p);
  }
  putchar('"');
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void usage(void) {
  fprintf(stderr,
          "usage: cluster_load --endpoints HOST:PORT[,...] --api-key-file F --function NAME\n"
          "  [--tls-ca F --tls-cert F --tls-key F] [--callers N] [--seconds S] [--payload JSON]\n"
          "  [--deadline-ms MS] [--throttle-pause-ms MS] [--calls FILE]\n");
  exit(2);
}

int main(int argc, char **argv) {
  brume_tls_config tls = {0};
  const char *key_file = NULL;
  char *endpoints = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) usage();
    i++;
    if (strcmp(a, "--endpoints") == 0)
      endpoints = brume_xstrdup(v);
    else if (strcmp(a, "--api-key-file") == 0)
      key_file = v;
    else if (strcmp(a, "--function") == 0)
      cfg.function = v;
    else if (strcmp(a, "--tls-ca") == 0)
      tls.ca_file = v;
    else if (strcmp(a, "--tls-cert") == 0)
      tls.cert_file = v;
    else if (strcmp(a, "--tls-key") == 0)
      tls.key_file = v;
    else if (strcmp(a, "--callers") == 0)
      cfg.callers = atoi(v);
    else if (strcmp(a, "--seconds") == 0)
      cfg.seconds = atoi(v);
    else if (strcmp(a, "--payload") == 0)
      cfg.payload = v;
    else if (strcmp(a, "--deadline-ms") == 0)
      cfg.deadline_ms = atoi(v);
    else if (strcmp(a, "--throttle-pause-ms") == 0)
      cfg.throttle_pause_ms = atoi(v);
    else if (strcmp(a, "--calls") == 0)
      cfg.calls_path = v;
    else
      usage();
  }
  if (endpoints == NULL || key_file == NULL || cfg.function == NULL || cfg.callers < 1 ||
      cfg.callers > MAX_CALLERS || cfg.seconds < 1)
    usage();
  FILE *kf = fopen(key_file, "r");
  if (kf == NULL || fgets(cfg.key, sizeof(cfg.key), kf) == NULL) {
    fprintf(stderr, "cluster_load: cannot read %s\n", key_file);
    return 2;
  }
  fclose(kf);
  cfg.key[strcspn(cfg.key, "\r\n")] = '\0';
  for (char *save = NULL, *t = strtok_r(endpoints, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (cfg.n_endpoints == MAX_ENDPOINTS) usage();
    brume_err *err = NULL;
    brume_rpc_client_opts co = {.tls = tls};
    cfg.endpoints[cfg.n_endpoints] = t;
    cfg.clients[cfg.n_endpoints] = brume_rpc_client_new(t, &co, &err);
    if (cfg.clients[cfg.n_endpoints] == NULL) {
      fprintf(stderr, "cluster_load: %s: %s\n", t, err->msg);
      return 2;
    }
    cfg.n_endpoints++;
  }
  if (cfg.n_endpoints == 0) usage();
  cfg.m_invoke = (unsigned)(protobuf_c_service_descriptor_get_method_by_name(
                                &brume__frontend__descriptor, "Invoke") -
                            brume__frontend__descriptor.methods);

  caller *callers = brume_xcalloc((size_t)cfg.callers, sizeof(*callers));
  pthread_t *threads = brume_xcalloc((size_t)cfg.callers, sizeof(*threads));
  struct sigaction sa = {.sa_handler = on_stop_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  int64_t t_start = brume_mono_us();
  cfg.end_us = t_start + (int64_t)cfg.seconds * 1000000;
  for (int i = 0; i < cfg.callers; i++) {
    callers[i].index = (size_t)i;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256 * 1024);
    if (pthread_create(&threads[i], &at, run_caller, &callers[i]) != 0) {
      fprintf(stderr, "cluster_load: cannot start caller %d\n", i);
      return 2;
    }
    pthread_attr_destroy(&at);
  }
  for (int i = 0; i < cfg.callers; i++) pthread_join(threads[i], NULL);
  double elapsed_s = (double)(brume_mono_us() - t_start) / 1e6;

  size_t n_all = 0;
  for (int i = 0; i < cfg.callers; i++) n_all += callers[i].n;
  double *lat = brume_xcalloc(n_all + 1, sizeof(*lat));
  size_t n_ok = 0;
  FILE *cf = cfg.calls_path ? fopen(cfg.calls_path, "w") : NULL;
  for (int i = 0; i < cfg.callers; i++)
    for (size_t j = 0; j < callers[i].n; j++) {
      const call_rec *r = &callers[i].recs[j];
      if (r->code == 0) lat[n_ok++] = (double)(r->end_us - r->start_us) / 1000.0;
      if (cf)
        fprintf(cf, "%" PRId64 " %" PRId64 " %u %d %d\n", r->start_us, r->end_us, r->endpoint,
                r->code, r->cold ? 1 : 0);
    }
  if (cf) fclose(cf);
  qsort(lat, n_ok, sizeof(*lat), cmp_double);

  printf("{\"calls\": %zu, \"ok\": %ld, \"function_errors\": %ld, \"cold\": %ld, ", n_all, st.ok,
         st.function_errors, st.cold);
  printf("\"ok_per_s\": %.1f, \"p50_ms\": %.2f, \"p99_ms\": %.2f, \"seconds\": %.1f, ",
         (double)st.ok / elapsed_s, n_ok ? lat[n_ok / 2] : 0.0,
         n_ok ? lat[(size_t)((double)(n_ok - 1) * 0.99)] : 0.0, elapsed_s);
  printf("\"throttles\": {");
  for (size_t i = 0, first = 1; i < MAX_REASONS && st.throttles[i].reason[0]; i++, first = 0)
    printf("%s\"%s\": %ld", first ? "" : ", ", st.throttles[i].reason, st.throttles[i].n);
  printf("}, \"errors\": {");
  for (int k = 0, first = 1; k < MAX_CODES; k++) {
    if (st.errors[k] == 0) continue;
    printf("%s\"%s\": {\"n\": %ld, \"first\": ", first ? "" : ", ", brume_status_name(k),
           st.errors[k]);
    print_json_string(st.first_msg[k]);
    printf(", \"last\": ");
    print_json_string(st.last_msg[k]);
    printf("}");
    first = 0;
  }
  printf("}, \"ok_per_endpoint\": {");
  for (size_t e = 0; e < cfg.n_endpoints; e++)
    printf("%s\"%s\": %ld", e ? ", " : "", cfg.endpoints[e], st.per_endpoint[e]);
  printf("}}\n");
  return 0;
}
