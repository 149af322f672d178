/* bench_worker: brume-worker as its own process, a real etcd, real 128 MiB microVMs.
 *
 * Run by bench/worker.sh (root, libvirtd up, etcd on PATH). The guest image is built as
 * tests/worker/test_worker_daemon does (cached); the function is the static echo runtime in a
 * zip served over HTTP. Through the Worker gRPC service it measures, and prints as JSON lines on
 * stdout (progress on stderr):
 *   accelerator                          0 = TCG, 1 = KVM (the worker's probe, from Stats)
 *   create_from_boot_p50_ms/_p99_ms      CreateSandbox round trip with pool_size 0
 *   host_memory_per_idle_sandbox_mib     Pss (shared pages split among their users) of the idle
 *                                        sandboxes' qemu processes / count
 *   host_rss_per_idle_sandbox_mib        the same with VmRSS (shared pages counted in full)
 *   host_{memory,rss}_per_invoked_sandbox_mib  the same after ten Invokes of each (frozen)
 *   warm_invoke_p50_us/_p99_us           Invoke round trip on a sandbox that stays thawed
 *                                        (freeze_after 10s), back to back: the p99 is the
 *                                        sandbox's CPU share running out (7.2 ms of every
 *                                        100 ms for 128 MiB), see docs/worker.md
 *   warm_invoke_1769mib_*                the same on a sandbox with a whole vCPU
 *   warm_invoke_[freeze_at_once_]rpc_floor_p50_us   Invoke of an unknown sandbox (gRPC, the job
 *                                        queue, the table: what the worker adds)
 *   warm_invoke_[freeze_at_once_]in_guest_p50_us    the part brume-init measured in the guest
 *   warm_invoke_freeze_at_once_p50_us/_p99_us  the same with freeze_after 0: each call pays a
 *                                        thaw before it and a freeze after it
 *   freeze_ms, thaw_ms                   Freeze / Thaw round trips (p50)
 *   creations_per_s_4_parallel           CreateSandbox from boot, 4 callers at once
 *   create_from_pool_p50_ms/_p99_ms      CreateSandbox with pool_size 2, the pool full each time
 * Part 1 runs with pool_size 0 and freeze_after 0, part 2 with pool_size 2 and freeze_after 10s.
 * Environment: BENCH_WORKER_HOST_ID (default bw<pid>), BENCH_WORKER_BOOTS (5),
 * BENCH_WORKER_INVOKES (200), BENCH_WORKER_POOL_TAKES (5), BENCH_WORKER_PARALLEL_TOTAL (8),
 * BENCH_WORKER_FLAGS (more brume-worker flags, e.g. "--tcg-tb-cache 16MiB").
 * Whatever happens, on exit the worker gets SIGTERM, the domains of its host id are destroyed,
 * etcd stops and the temp directories go. */
#include <ctype.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"
#include "brume/worker.pb-c.h"
#include "log.h"
#include "proc.h"
#include "testutil.h"
#include "worker_fixture.h"

enum { M_CREATE, M_INVOKE, M_FREEZE, M_THAW, M_DESTROY, M_LIST, M_STATS };

static brume_test_worker *w;
static brume_rpc_client *client; /* w->client */

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("bench_worker: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static void emit(const char *metric, double value, const char *unit) {
  printf("{\"bench\": \"worker\", \"metric\": \"%s\", \"value\": %.3f, \"unit\": \"%s\"}\n", metric,
         value, unit);
  fflush(stdout);
}

static void cleanup(void) {
  brume_test_worker_free(w);
  w = NULL;
  client = NULL;
}

static void on_signal(int sig) {
  (void)sig;
  exit(130); /* runs cleanup() through atexit */
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("bench_worker: FAILED: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  brume_test_worker_dump_log(w);
  exit(1);
}

static int env_int(const char *name, int def) {
  const char *v = getenv(name);
  return v && *v ? atoi(v) : def;
}

static brume_rpc_client *new_client(void) {
  brume_err *err = NULL;
  brume_rpc_client *c = brume_test_worker_client(w, &err);
  if (c == NULL) die("client: %s", err->msg);
  return c;
}

static void start_worker(const char *pool_size, const char *freeze_after) {
  /* BENCH_WORKER_FLAGS: more brume-worker flags, split at spaces (e.g. "--tcg-tb-cache 16MiB"). */
  const char *flags[24] = {"--pool-size", pool_size, "--freeze-after", freeze_after, NULL};
  bench_worker_flags(flags, 4, 24);
  double ms = 0;
  if (brume_test_worker_start(w, flags, &ms) < 0) die("could not start %s", BENCH_BRUME_WORKER);
  client = w->client;
  progress("worker (pool_size %s, freeze_after %s) listening after %.0f ms", pool_size,
           freeze_after, ms);
}

static void stop_worker(void) {
  brume_test_worker_stop(w, SIGTERM, 30000);
}

static int call_on(brume_rpc_client *c, unsigned method, const void *req, void *reply,
                   brume_err **err) {
  brume_rpc_call_opts o = {
      .deadline_ms = 120000, .request_id = "bench-worker", .wait_for_ready = true};
  return brume_rpc_unary(c, &brume__worker__descriptor, method, req, (ProtobufCMessage **)reply, &o,
                         err);
}

/* CreateSandbox of 128 MiB through c; returns the round trip in ms, fills id and *hit. */
static double create_mib_on(brume_rpc_client *c, uint32_t memory_mib, char *id, size_t idsize,
                            bool *hit) {
  Brume__FunctionVersionRef fref = BRUME__FUNCTION_VERSION_REF__INIT;
  Brume__FunctionCode fcode = BRUME__FUNCTION_CODE__INIT;
  Brume__ResourceSpec fres = BRUME__RESOURCE_SPEC__INIT;
  fref.account_id = "acct1";
  fref.function_name = "echo";
  fref.version = "1";
  fcode.sha256 = w->zip_sha;
  fcode.url = w->code_url;
  fcode.size_bytes = w->zip_len;
  fres.memory_mib = memory_mib;
  fres.ephemeral_storage_mib = 512;
  Brume__SandboxSpec s = BRUME__SANDBOX_SPEC__INIT;
  s.function = &fref;
  s.code = &fcode;
  s.resources = &fres;
  s.timeout_ms = 5000;
  s.handler_mode = BRUME__HANDLER_MODE__HANDLER_MODE_RUNTIME_API;
  s.handler = "echo.handler";
  s.function_arn = "arn:brume:lambda:local:acct1:function:echo:1";
  Brume__WorkerCreateSandboxRequest req = BRUME__WORKER_CREATE_SANDBOX_REQUEST__INIT;
  req.spec = &s;
  req.caller_id = "bench/worker";
  Brume__WorkerCreateSandboxResponse *resp = NULL;
  brume_err *err = NULL;
  double t0 = brume_test_mono_ms();
  if (call_on(c, M_CREATE, &req, &resp, &err) < 0) die("CreateSandbox: %s", err->msg);
  double ms = brume_test_mono_ms() - t0;
  if (resp->init_error) die("init error %s: %s", resp->init_error->type, resp->init_error->message);
  if (hit) *hit = resp->pool_hit;
  snprintf(id, idsize, "%s", resp->sandbox_id);
  brume__worker_create_sandbox_response__free_unpacked(resp, NULL);
  return ms;
}

static double create_on(brume_rpc_client *c, char *id, size_t idsize, bool *hit) {
  return create_mib_on(c, 128, id, idsize, hit);
}

static void destroy(brume_rpc_client *c, const char *id) {
  Brume__WorkerDestroyRequest dr = BRUME__WORKER_DESTROY_REQUEST__INIT;
  dr.sandbox_id = (char *)id;
  Brume__WorkerDestroyResponse *d = NULL;
  brume_err *err = NULL;
  if (call_on(c, M_DESTROY, &dr, &d, &err) < 0) die("Destroy %s: %s", id, err->msg);
  brume__worker_destroy_response__free_unpacked(d, NULL);
}

static double wait_pool(int want, int timeout_ms) {
  double t0 = brume_test_mono_ms();
  long long end = brume_test_now_ms() + timeout_ms;
  while (brume_test_worker_pool_vms(w) != want && brume_test_now_ms() < end) usleep(50 * 1000);
  if (brume_test_worker_pool_vms(w) != want)
    die("the pool holds %d VMs after %d ms, want %d", brume_test_worker_pool_vms(w), timeout_ms,
        want);
  return brume_test_mono_ms() - t0;
}

/* Sums of Pss and Rss (KiB, from smaps_rollup) of the processes whose command line holds
 * name_prefix; *count gets their number. */
static void qemu_memory_kib(int *count, long long *pss, long long *rss) {
  *pss = *rss = 0;
  *count = 0;
  DIR *d = opendir("/proc");
  if (d == NULL) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!isdigit((unsigned char)e->d_name[0])) continue;
    if (atoi(e->d_name) == (int)getpid()) continue;
    char path[300];
    snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
    /* /proc files have no size to stat: read them as a stream. */
    FILE *cf = fopen(path, "r");
    if (cf == NULL) continue;
    char *cl = calloc(1, 65537);
    size_t len = fread(cl, 1, 65536, cf);
    fclose(cf);
    for (size_t i = 0; i < len; i++)
      if (cl[i] == '\0') cl[i] = ' ';
    cl[len] = '\0';
    bool match = strstr((char *)cl, w->name_prefix) != NULL && strstr((char *)cl, "qemu") != NULL;
    free(cl);
    if (!match) continue;
    snprintf(path, sizeof(path), "/proc/%s/smaps_rollup", e->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL) continue;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
      if (strncmp(line, "Rss:", 4) == 0) *rss += atoll(line + 4);
      if (strncmp(line, "Pss:", 4) == 0) *pss += atoll(line + 4);
    }
    (*count)++;
    fclose(f);
  }
  closedir(d);
}

/* After 3 s for the sandboxes' memory to settle: Pss and Rss per qemu process, as metrics. */
static void idle_memory(const char *pss_metric, const char *rss_metric, int n_sandboxes) {
  usleep(3000 * 1000);
  int nq = 0;
  long long pss = 0, rss = 0;
  qemu_memory_kib(&nq, &pss, &rss);
  if (nq != n_sandboxes) progress("%d qemu processes for %d sandboxes", nq, n_sandboxes);
  if (nq == 0) return;
  progress("%s: %d qemu processes, Pss %.1f MiB and Rss %.1f MiB in all", pss_metric, nq,
           pss / 1024.0, rss / 1024.0);
  emit(pss_metric, pss / 1024.0 / nq, "MiB");
  emit(rss_metric, rss / 1024.0 / nq, "MiB");
}

/* One Invoke of sandbox id with a payload numbered seq, checked; returns the round trip (us) and
 * sets *in_guest_us to the guest's own duration. */
static double invoke_once(const char *id, int seq, double *in_guest_us) {
  brume_err *err = NULL;
  char rid[32], payload[64];
  snprintf(rid, sizeof(rid), "req-%d", seq);
  snprintf(payload, sizeof(payload), "bench event %d", seq);
  Brume__WorkerInvokeRequest req = BRUME__WORKER_INVOKE_REQUEST__INIT;
  req.sandbox_id = (char *)id;
  req.request_id = rid;
  req.payload.data = (uint8_t *)payload;
  req.payload.len = strlen(payload);
  Brume__WorkerInvokeResponse *r = NULL;
  double t0 = brume_test_mono_ms();
  if (call_on(client, M_INVOKE, &req, &r, &err) < 0) die("Invoke: %s", err->msg);
  double us = (brume_test_mono_ms() - t0) * 1000.0;
  if (r->function_error)
    die("function error %s: %s", r->function_error->type, r->function_error->message);
  if (r->payload.len < strlen(payload) || memcmp(r->payload.data, payload, strlen(payload)))
    die("wrong payload %.*s", (int)r->payload.len, (const char *)r->payload.data);
  *in_guest_us = (double)r->duration_us;
  brume__worker_invoke_response__free_unpacked(r, NULL);
  return us;
}

/* n warm Invokes on sandbox id (10 more first, not counted), back to back; p50 and p99 in us as
 * name_p50_us and name_p99_us, and the p50 of the part spent in the guest (brume-init's duration:
 * the event handed to the runtime until its response) as name_in_guest_p50_us. */
static void warm_invokes(const char *id, int n_invoke, const char *name) {
  brume_err *err = NULL;
  double *rtt = calloc((size_t)n_invoke, sizeof(double));
  double *in_guest = calloc((size_t)n_invoke, sizeof(double));
  char metric[96];
  for (int n = -10; n < n_invoke; n++) {
    double guest_us = 0;
    double us = invoke_once(id, n + 11, &guest_us);
    if (n >= 0) {
      rtt[n] = us;
      in_guest[n] = guest_us;
    }
  }
  snprintf(metric, sizeof(metric), "%s_p50_us", name);
  emit(metric, brume_test_percentile(rtt, n_invoke, 50), "us");
  snprintf(metric, sizeof(metric), "%s_p99_us", name);
  emit(metric, brume_test_percentile(rtt, n_invoke, 99), "us");
  /* The floor under that: the same call on an unknown sandbox (gRPC, the job queue, the table,
   * NOT_FOUND). */
  for (int n = 0; n < n_invoke; n++) {
    Brume__WorkerInvokeRequest req = BRUME__WORKER_INVOKE_REQUEST__INIT;
    req.sandbox_id = "sb-unknown";
    Brume__WorkerInvokeResponse *r = NULL;
    double t0 = brume_test_mono_ms();
    if (call_on(client, M_INVOKE, &req, &r, &err) == 0) die("Invoke of an unknown sandbox passed");
    rtt[n] = (brume_test_mono_ms() - t0) * 1000.0;
    brume_err_clear(&err);
  }
  snprintf(metric, sizeof(metric), "%s_rpc_floor_p50_us", name);
  emit(metric, brume_test_percentile(rtt, n_invoke, 50), "us");
  snprintf(metric, sizeof(metric), "%s_in_guest_p50_us", name);
  emit(metric, brume_test_percentile(in_guest, n_invoke, 50), "us");
  free(rtt);
  free(in_guest);
}

typedef struct {
  int n;
  char ids[8][80];
} par_arg;

static void *par_thread(void *p) {
  par_arg *a = p;
  brume_rpc_client *c = new_client();
  for (int i = 0; i < a->n; i++) {
    bool hit = false;
    create_on(c, a->ids[i], sizeof(a->ids[i]), &hit);
  }
  brume_rpc_client_free(c);
  return NULL;
}

int main(void) {
  brume_log_init("bench-worker", BRUME_LOG_WARN);
  setvbuf(stderr, NULL, _IONBF, 0);
  if (geteuid() != 0) die("needs root for qemu:///system");
  if (!brume_test_etcd_available()) die("no etcd binary on PATH");
  int n_boot = env_int("BENCH_WORKER_BOOTS", 5);
  int n_invoke = env_int("BENCH_WORKER_INVOKES", 200);
  int n_take = env_int("BENCH_WORKER_POOL_TAKES", 5);
  int n_par = env_int("BENCH_WORKER_PARALLEL_TOTAL", 8);
  if (n_boot < 1 || n_boot > 16 || n_invoke < 1 || n_take < 1 || n_par < 4 || n_par > 32)
    die("bad BENCH_WORKER_* setting");
  const char *hid = getenv("BENCH_WORKER_HOST_ID");
  char host_id[64];
  snprintf(host_id, sizeof(host_id), "%s", hid && *hid ? hid : "");
  if (host_id[0] == '\0') snprintf(host_id, sizeof(host_id), "bw%d", (int)getpid());

  atexit(cleanup);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGHUP, on_signal);

  brume_err *err = NULL;
  w = brume_test_worker_new(BENCH_BRUME_WORKER, host_id, &err);
  if (w == NULL) die("libvirt or host id %s: %s", host_id, err->msg);
  progress("guest image (cached after the first build)");
  if (brume_test_worker_guest(w, BENCH_GUEST_DIR, BENCH_BRUME_INIT) < 0)
    die("the guest image cannot be built");
  if (brume_test_worker_setup(w, "bench-worker", BENCH_ECHO_RUNTIME) < 0)
    die("the fixture (code zip, code server, etcd) could not be set up");

  /* Part 1: pool_size 0, every CreateSandbox boots. */
  start_worker("0", "0");
  Brume__WorkerStatsRequest sr = BRUME__WORKER_STATS_REQUEST__INIT;
  Brume__WorkerStatsResponse *st = NULL;
  if (call_on(client, M_STATS, &sr, &st, &err) < 0) die("Stats: %s", err->msg);
  int accel = st->host ? (int)st->host->accelerator : 0;
  brume__worker_stats_response__free_unpacked(st, NULL);
  const char *accel_name = accel == BRUME__ACCELERATOR__ACCELERATOR_KVM   ? "KVM"
                           : accel == BRUME__ACCELERATOR__ACCELERATOR_TCG ? "TCG"
                                                                          : "unknown";
  progress("accelerator: %s", accel_name);
  emit("accelerator", accel == BRUME__ACCELERATOR__ACCELERATOR_KVM ? 1 : 0, "enum");

  char ids[16][80];
  double boot[16];
  for (int b = 0; b < n_boot; b++) {
    bool hit = true;
    boot[b] = create_on(client, ids[b], sizeof(ids[b]), &hit);
    if (hit) die("a pool hit with pool_size 0");
    progress("create from boot %d: %.0f ms", b + 1, boot[b]);
  }
  emit("create_from_boot_p50_ms", brume_test_percentile(boot, n_boot, 50), "ms");
  emit("create_from_boot_p99_ms", brume_test_percentile(boot, n_boot, 99), "ms");

  /* The sandboxes are idle (not invoked yet, so running: freeze_after 0 freezes after an
   * invocation); let their memory settle (free page reporting waits 2 s). Then again after ten
   * invocations each, frozen between them as Lambda leaves a warm environment. */
  idle_memory("host_memory_per_idle_sandbox_mib", "host_rss_per_idle_sandbox_mib", n_boot);
  for (int b = 0; b < n_boot; b++)
    for (int n = 0; n < 10; n++) {
      double guest_us;
      invoke_once(ids[b], n + 1, &guest_us);
    }
  idle_memory("host_memory_per_invoked_sandbox_mib", "host_rss_per_invoked_sandbox_mib", n_boot);

  /* Warm Invoke on the first sandbox: freeze_after 0, so each call thaws and freezes. */
  progress("warm Invoke with freeze_after 0: each call pays a thaw before and a freeze after it");
  warm_invokes(ids[0], n_invoke, "warm_invoke_freeze_at_once");

  /* Freeze / Thaw round trips: thaw then freeze, 10 times (the sandbox is frozen now). */
  double fz[10], th[10];
  for (int n = 0; n < 10; n++) {
    Brume__WorkerThawRequest tr = BRUME__WORKER_THAW_REQUEST__INIT;
    tr.sandbox_id = ids[0];
    Brume__WorkerThawResponse *trr = NULL;
    double t0 = brume_test_mono_ms();
    if (call_on(client, M_THAW, &tr, &trr, &err) < 0) die("Thaw: %s", err->msg);
    th[n] = brume_test_mono_ms() - t0;
    brume__worker_thaw_response__free_unpacked(trr, NULL);
    Brume__WorkerFreezeRequest fr = BRUME__WORKER_FREEZE_REQUEST__INIT;
    fr.sandbox_id = ids[0];
    Brume__WorkerFreezeResponse *frr = NULL;
    t0 = brume_test_mono_ms();
    if (call_on(client, M_FREEZE, &fr, &frr, &err) < 0) die("Freeze: %s", err->msg);
    fz[n] = brume_test_mono_ms() - t0;
    brume__worker_freeze_response__free_unpacked(frr, NULL);
  }
  emit("freeze_ms", brume_test_percentile(fz, 10, 50), "ms");
  emit("thaw_ms", brume_test_percentile(th, 10, 50), "ms");

  for (int b = 0; b < n_boot; b++) destroy(client, ids[b]);

  /* 4 callers at once, n_par creations from boot in all. */
  par_arg pa[4];
  pthread_t tid[4];
  memset(pa, 0, sizeof(pa));
  for (int t = 0; t < 4; t++) pa[t].n = n_par / 4 + (t < n_par % 4 ? 1 : 0);
  double t0 = brume_test_mono_ms();
  for (int t = 0; t < 4; t++) pthread_create(&tid[t], NULL, par_thread, &pa[t]);
  for (int t = 0; t < 4; t++) pthread_join(tid[t], NULL);
  double wall = brume_test_mono_ms() - t0;
  progress("%d creations from boot by 4 callers at once: %.0f ms", n_par, wall);
  emit("creations_per_s_4_parallel", n_par / (wall / 1000.0), "1/s");
  for (int t = 0; t < 4; t++)
    for (int n = 0; n < pa[t].n; n++) destroy(client, pa[t].ids[n]);
  stop_worker();

  /* Part 2: pool_size 2, freeze_after 10s; each take with the pool full again. */
  start_worker("2", "10s");
  progress("pool of 2 ready after %.0f ms", wait_pool(2, 120000));
  double take[16];
  if (n_take > 16) n_take = 16;
  for (int n = 0; n < n_take; n++) {
    char id[80];
    bool hit = false;
    take[n] = create_on(client, id, sizeof(id), &hit);
    if (!hit) die("CreateSandbox of 128 MiB missed a full pool");
    destroy(client, id);
    double refill = wait_pool(2, 120000);
    progress("create from pool %d: %.1f ms (refilled after %.0f ms)", n + 1, take[n], refill);
  }
  emit("create_from_pool_p50_ms", brume_test_percentile(take, n_take, 50), "ms");
  emit("create_from_pool_p99_ms", brume_test_percentile(take, n_take, 99), "ms");

  /* Warm Invoke on a sandbox that stays thawed between calls (freeze_after 10s). */
  char warm_id[80];
  bool warm_hit = false;
  create_on(client, warm_id, sizeof(warm_id), &warm_hit);
  progress("warm Invoke with freeze_after 10s: no thaw or freeze on the hot path");
  warm_invokes(warm_id, n_invoke, "warm_invoke");
  destroy(client, warm_id);
  /* The same with a whole vCPU (1,769 MiB): no CPU share to run out of. */
  create_mib_on(client, 1769, warm_id, sizeof(warm_id), &warm_hit);
  progress("warm Invoke on a sandbox of 1,769 MiB (one whole vCPU)");
  warm_invokes(warm_id, n_invoke, "warm_invoke_1769mib");
  destroy(client, warm_id);
  stop_worker();
  return 0;
}
