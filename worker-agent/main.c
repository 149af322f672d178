/* brume-worker: runs the sandboxes of one host as QEMU microVMs through libvirt.
 *
 * Table of contents: the configuration, then start() in order (log, libvirt and the restart
 * cleanup, the guest image, the accelerator, the code cache, the job pool, the pool of booted
 * VMs, Stats' figures on /metrics, the gRPC Worker service, the HTTP /healthz and /metrics
 * listener, the etcd registration), then stop() in reverse order; common/daemon.h runs them and
 * waits for SIGTERM or SIGINT in between. docs/worker.md, "brume-worker". */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accel.h"
#include "brume/worker.pb-c.h"
#include "code_cache.h"
#include "config.h"
#include "daemon.h"
#include "domain.h"
#include "etcd.h"
#include "freezer.h"
#include "http.h"
#include "libvirt.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "registration.h"
#include "resources.h"
#include "rpc.h"
#include "scratch.h"
#include "service.h"
#include "ticker.h"
#include "workq.h"

/* ---- configuration ---- */

static brume_common_config common;
static struct {
  char *host_id;
  char *etcd_prefix;
  char *libvirt_uri;
  char *guest_kernel;
  char *guest_kernel_smp;
  char *guest_initrd;
  char *image_dir;
  char *run_dir;
  char *code_cache_dir;
  int accelerator;
  int64_t threads;
  int64_t max_message_size;
  int64_t freeze_after;
  int64_t init_timeout;
  int64_t boot_timeout;
  int64_t max_boots;
  int64_t shutdown_grace;
  int64_t pool_size;
  char *pool_memory;
  int64_t tcg_tb_cache;
  int64_t tcg_cpu_scale;
  int64_t reserved_memory;
} cfg;

/* pool_memory_mib, parsed by validate(). */
#define MAX_POOL_SIZES 8
static uint32_t pool_sizes[MAX_POOL_SIZES];
static size_t n_pool_sizes;

static const char *const accel_choices[] = {"auto", "kvm", "tcg", NULL};
enum { ACCEL_AUTO, ACCEL_KVM, ACCEL_TCG };

static const brume_opt opts[] = {
    BRUME_OPT_STRING("host_id", &cfg.host_id, NULL,
                     "this worker's id in etcd and in domain names (default: the hostname)"),
    BRUME_OPT_STRING("etcd_prefix", &cfg.etcd_prefix, "/brume", "prefix of Brume's etcd keys"),
    BRUME_OPT_STRING("libvirt_uri", &cfg.libvirt_uri, BRUME_LIBVIRT_DEFAULT_URI,
                     "libvirt connection URI"),
    BRUME_OPT_PATH("guest_kernel", &cfg.guest_kernel, NULL, "the guest kernel (vmlinux, PVH)",
                   .flags = BRUME_OPT_REQUIRED),
    BRUME_OPT_PATH("guest_kernel_smp", &cfg.guest_kernel_smp, NULL,
                   "the SMP guest kernel for sandboxes of more than one vCPU (default: none, and "
                   "those guests use one of their vCPUs)"),
    BRUME_OPT_PATH("guest_initrd", &cfg.guest_initrd, NULL,
                   "the guest initramfs (brume-init and busybox)", .flags = BRUME_OPT_REQUIRED),
    BRUME_OPT_PATH("image_dir", &cfg.image_dir, "/var/lib/brume/images",
                   "where the guest image is copied for QEMU to read"),
    BRUME_OPT_PATH("run_dir", &cfg.run_dir, "/var/lib/brume/run",
                   "control sockets and console logs of the sandboxes"),
    BRUME_OPT_PATH("code_cache_dir", &cfg.code_cache_dir, "/var/lib/brume/code",
                   "the cache of function code archives"),
    BRUME_OPT_ENUM("accelerator", &cfg.accelerator, accel_choices, "auto",
                   "auto (probe: KVM only if it boots the guest), kvm or tcg"),
    BRUME_OPT_INT("threads", &cfg.threads, 1, 1024, "128",
                  "threads running blocking jobs; an invocation holds one for as long as the "
                  "function runs, so this bounds the invocations running at once on this host"),
    BRUME_OPT_SIZE("max_message_size", &cfg.max_message_size, 1 * BRUME_MIB, 64 * BRUME_MIB, "7MiB",
                   "largest gRPC request (6 MiB payloads plus headroom)"),
    BRUME_OPT_DURATION("freeze_after", &cfg.freeze_after, 0, BRUME_MINUTES(60), "0",
                       "idle time before a sandbox is frozen (0: at once)"),
    BRUME_OPT_DURATION("init_timeout", &cfg.init_timeout, 100, BRUME_MINUTES(15), "10s",
                       "a runtime's init limit when CreateSandbox gives none"),
    BRUME_OPT_DURATION("boot_timeout", &cfg.boot_timeout, 100, BRUME_MINUTES(10), "60s",
                       "a microVM's start to its agent's answer (a quarter of it, then a fresh "
                       "VM gets the rest)"),
    BRUME_OPT_INT("max_boots", &cfg.max_boots, 0, 1024, "0",
                  "microVM boots under way at once (pool and cold starts); more wait their turn. "
                  "0: no bound"),
    BRUME_OPT_DURATION("shutdown_grace", &cfg.shutdown_grace, 0, BRUME_MINUTES(1), "500ms",
                       "time a runtime gets after its shutdown signal before its VM goes"),
    BRUME_OPT_INT("pool_size", &cfg.pool_size, 0, 64, "2",
                  "booted, not yet specialised VMs kept ready per pooled memory size (0: no pool)"),
    BRUME_OPT_STRING("pool_memory_mib", &cfg.pool_memory, "128",
                     "the memory sizes pooled, MiB, comma-separated (other sizes boot)"),
    BRUME_OPT_INT(
        "tcg_cpu_scale", &cfg.tcg_cpu_scale, 1, 100, "10",
        "under TCG, each sandbox's CPU cap is its vCPU share times this (at most a "
        "whole CPU per vCPU): emulation costs several host instructions per guest "
        "instruction, and a 128 MiB sandbox held to its 7.2 percent share stalls for tens of "
        "ms after a few invocations; 1 = the share itself, as under KVM"),
    BRUME_OPT_SIZE("tcg_tb_cache", &cfg.tcg_tb_cache, 1 * BRUME_MIB, 1024 * BRUME_MIB, "16MiB",
                   "TCG's translation cache per microVM (resident memory; unused under KVM)"),
    BRUME_OPT_SIZE("reserved_memory", &cfg.reserved_memory, 0, 1024 * 1024 * BRUME_MIB, "1GiB",
                   "host memory kept out of the sandboxes' reach (the host, QEMU's own)"),
};

/* "128,512" -> pool_sizes; each a valid sandbox memory size, at most MAX_POOL_SIZES, distinct. */
static int parse_pool_sizes(const char *list, brume_err **err) {
  n_pool_sizes = 0;
  const char *p = list;
  while (*p) {
    while (*p == ' ' || *p == ',') p++;
    if (*p == '\0') break;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(p, &end, 10);
    if (end == p || errno != 0 || v > UINT32_MAX || (*end && *end != ',' && *end != ' '))
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           "pool_memory_mib: \"%s\" is not a comma-separated list of MiB", list);
    if (brume_resources_check_memory((uint32_t)v, err) < 0)
      return brume_err_wrap(err, "pool_memory_mib");
    for (size_t i = 0; i < n_pool_sizes; i++)
      if (pool_sizes[i] == v)
        return brume_err_set(err, BRUME_INVALID_ARGUMENT, "pool_memory_mib: %lu is listed twice",
                             v);
    if (n_pool_sizes == MAX_POOL_SIZES)
      return brume_err_set(err, BRUME_INVALID_ARGUMENT, "pool_memory_mib: at most %d sizes",
                           MAX_POOL_SIZES);
    pool_sizes[n_pool_sizes++] = (uint32_t)v;
    p = end;
  }
  return 0;
}

static int validate(brume_err **err) {
  if (common.etcd_endpoints == NULL)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "etcd_endpoints is required: the worker registers its host in etcd");
  return parse_pool_sizes(cfg.pool_memory, err);
}

static const brume_config_spec spec = {
    .name = "brume-worker",
    .summary = "Runs the sandboxes of one host as microVMs through libvirt.",
    .default_config = "/etc/brume/brume-worker.conf",
    .common = &common,
    .default_listen = "127.0.0.1:7030",
    .default_http_listen = "127.0.0.1:9030",
    .opts = opts,
    .n_opts = BRUME_ARRAY_LEN(opts),
    .validate = validate,
};

/* ---- the daemon ---- */

/* With freeze_after 0: how long a sandbox never invoked stays running before it is frozen. */
#define UNINVOKED_FREEZE_MS 1000

static struct {
  char host_id[256];
  char kernel[4096], kernel_smp[4096], initrd[4096];
  virConnectPtr conn;
  brume_accel accel;
  brume_code_cache *cache;
  brume_sandboxes *table;
  brume_workq *wq;
  brume_pool *pool;
  brume_freezer *freezer;
  brume_worker_service svc;
  brume_metrics *metrics;
  brume_rpc_server *rpc;
  brume_http *http;
  brume_etcd *etcd;
  brume_registration *reg;
  /* The publisher: rewrites the registration when the free memory changes. */
  brume_ticker *publisher;
  char *published;        /* the registration's value in etcd; the publisher's own */
  uint32_t available_mib; /* MemAvailable as published (available_to_publish) */
} d;

static int mkdir_p(const char *path, mode_t mode, brume_err **err) {
  char buf[4096];
  snprintf(buf, sizeof(buf), "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
      return brume_err_set(err, BRUME_INTERNAL, "mkdir %s: %s", buf, strerror(errno));
    *p = '/';
  }
  if (mkdir(buf, mode) < 0 && errno != EEXIST)
    return brume_err_set(err, BRUME_INTERNAL, "mkdir %s: %s", buf, strerror(errno));
  if (chmod(buf, mode) < 0)
    return brume_err_set(err, BRUME_INTERNAL, "chmod %s: %s", buf, strerror(errno));
  return 0;
}

/* Copies src to dir/<name> (name NULL: src's basename; mode 0644, through a temporary file),
 * that path into out. */
static int copy_image(const char *src, const char *dir, const char *name, char *out, size_t size,
                      brume_err **err) {
  brume_autofree char *b = brume_xstrdup(src);
  snprintf(out, size, "%s/%s", dir, name ? name : basename(b));
  brume_autofree char *tmp = brume_xasprintf("%s.tmp.%d", out, (int)getpid());
  brume_autoclose int in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "open %s: %s", src, strerror(errno));
  brume_autoclose int o = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (o < 0) return brume_err_set(err, BRUME_INTERNAL, "create %s: %s", tmp, strerror(errno));
  char buf[1 << 16];
  ssize_t n;
  while ((n = read(in, buf, sizeof(buf))) > 0)
    if (write(o, buf, (size_t)n) != n) {
      unlink(tmp);
      return brume_err_set(err, BRUME_INTERNAL, "write %s: %s", tmp, strerror(errno));
    }
  if (n < 0 || fchmod(o, 0644) < 0 || rename(tmp, out) < 0) {
    unlink(tmp);
    return brume_err_set(err, BRUME_INTERNAL, "copy %s to %s: %s", src, out, strerror(errno));
  }
  return 0;
}

static int health(void *user, brume_err **err) {
  (void)user;
  if (virConnectIsAlive(d.conn) != 1)
    return brume_err_set(err, BRUME_UNAVAILABLE, "libvirtd is not answering");
  if (d.reg && !brume_registration_healthy(d.reg))
    return brume_err_set(err, BRUME_UNAVAILABLE, "the etcd registration is stale");
  return 0;
}

static brume_accel decide_accel(brume_err **err) {
  if (cfg.accelerator == ACCEL_KVM) return BRUME_ACCEL_KVM;
  if (cfg.accelerator == ACCEL_TCG) {
    brume_info("Accelerator set by configuration.", "accelerator=tcg");
    return BRUME_ACCEL_TCG;
  }
  brume_domain_spec tmpl = {
      .name_prefix = BRUME_WORKER_NAME_PREFIX,
      .host_id = d.host_id,
      .kernel = d.kernel,
      .initrd = d.initrd,
      .tsc_khz = brume_domain_host_tsc_khz(),
  };
  brume_accel_libvirt_ctx ctx = {.conn = d.conn, .spec = &tmpl, .work_dir = cfg.run_dir};
  brume_accel_probe_opts o = {.boot = brume_accel_libvirt_boot, .boot_user = &ctx};
  brume_accel_result res = {0};
  if (brume_accel_probe(&o, &res, err) < 0) return BRUME_ACCEL_UNSPECIFIED;
  brume_accel a = res.accel;
  brume_accel_result_clear(&res);
  return a;
}

/* How far MemAvailable must move before the registration publishes it again. */
#define AVAILABLE_STEP_MIB 64

/* The host's MemAvailable as the registration publishes it. The kernel's figure moves all the
 * time, and each new figure would be an etcd write: it is published again only once it is
 * AVAILABLE_STEP_MIB away from the published one. It only informs operators (placement reports
 * it in ListHosts); placement places by free_memory_mib. */
static uint32_t available_to_publish(void) {
  uint32_t now = brume_worker_host_available_mib();
  uint32_t moved = now > d.available_mib ? now - d.available_mib : d.available_mib - now;
  if (moved >= AVAILABLE_STEP_MIB) d.available_mib = now;
  return d.available_mib;
}

static char *registration_value(void) {
  return brume_xasprintf("{\"addr\":\"%s\",\"vcpus\":%" PRIu32 ",\"memory_mib\":%" PRIu32
                         ",\"free_memory_mib\":%" PRIu32 ",\"vcpu_milli_committed\":%" PRIu32
                         ",\"host_memory_available_mib\":%" PRIu32
                         ",\"pool_ready\":%zu"
                         ",\"sandboxes_created\":%" PRIu64 ",\"accelerator\":\"%s\"%s}",
                         common.listen, brume_worker_host_vcpus(), brume_worker_host_memory_mib(),
                         brume_worker_free_memory_published_mib(&d.svc),
                         brume_worker_vcpu_milli_committed(&d.svc), available_to_publish(),
                         brume_pool_ready(d.pool), (uint64_t)atomic_load(&d.svc.created),
                         d.accel == BRUME_ACCEL_KVM ? "KVM" : "TCG",
                         atomic_load(&d.svc.draining) ? ",\"draining\":true" : "");
}

/* How often the publisher compares the registration with the host's free memory. */
#define PUBLISH_EVERY_MS 1000

/* A tick of the publisher: rewrites the registration if its value changed (d.published is the
 * value etcd has). */
static void publish(void *arg) {
  (void)arg;
  char *value = registration_value();
  brume_err *err = NULL;
  if (strcmp(value, d.published) == 0) {
    free(value);
  } else if (brume_registration_update(d.reg, value, &err) < 0) {
    char q[512];
    brume_warn("Could not update the registration; trying again.", "err=%s",
               brume_log_quote(q, sizeof(q), err->msg));
    brume_err_free(err);
    free(value);
  } else {
    free(d.published);
    d.published = value;
  }
}

/* The registration's lease was lost (registration.h): placement has dropped this host's
 * sandboxes, so they go before the worker registers again. */
static void lease_lost(void *user, int64_t lost_lease) {
  brume_worker_service_drop_stale(user, lost_lease);
}

static int start(brume_err **err) {
  if (cfg.host_id == NULL) {
    if (gethostname(d.host_id, sizeof(d.host_id) - 1) < 0)
      return brume_err_set(err, BRUME_INTERNAL, "gethostname: %s", strerror(errno));
  } else {
    snprintf(d.host_id, sizeof(d.host_id), "%s", cfg.host_id);
  }
  brume_autofree char *prefix = brume_domain_name_prefix(BRUME_WORKER_NAME_PREFIX, d.host_id, err);
  if (prefix == NULL) return brume_err_wrap(err, "host_id");

  /* libvirt, and the domains an earlier run of this worker left. */
  d.conn = brume_libvirt_connect(cfg.libvirt_uri, err);
  if (d.conn == NULL) return -1;
  int n = brume_libvirt_destroy_by_prefix(d.conn, prefix, err);
  if (n < 0) return brume_err_wrap(err, "destroying leftover domains");
  brume_info("Leftover domains destroyed.", "prefix=%s count=%d", prefix, n);

  /* The guest image where QEMU (libvirt-qemu) can read it; sockets where it can listen. */
  if (mkdir_p(cfg.image_dir, 0755, err) < 0 || mkdir_p(cfg.run_dir, 0755, err) < 0) return -1;
  int stale = brume_scratch_remove_all(cfg.run_dir);
  if (stale > 0) brume_info("Leftover /tmp images removed.", "dir=%s count=%d", cfg.run_dir, stale);
  if (copy_image(cfg.guest_kernel, cfg.image_dir, "vmlinux", d.kernel, sizeof(d.kernel), err) < 0 ||
      copy_image(cfg.guest_initrd, cfg.image_dir, NULL, d.initrd, sizeof(d.initrd), err) < 0)
    return -1;
  if (cfg.guest_kernel_smp && copy_image(cfg.guest_kernel_smp, cfg.image_dir, "vmlinux-smp",
                                         d.kernel_smp, sizeof(d.kernel_smp), err) < 0)
    return -1;

  d.accel = decide_accel(err);
  if (d.accel == BRUME_ACCEL_UNSPECIFIED) return brume_err_wrap(err, "accelerator probe");

  brume_code_cache_opts co = {.dir = cfg.code_cache_dir};
  d.cache = brume_code_cache_new(&co, err);
  if (d.cache == NULL) return -1;
  d.table = brume_sandboxes_new();
  d.wq = brume_workq_new((int)cfg.threads);

  d.svc = (brume_worker_service){
      .host_id = d.host_id,
      .address = common.listen,
      .accel = d.accel,
      .cpu_scale = d.accel == BRUME_ACCEL_TCG ? (uint32_t)cfg.tcg_cpu_scale : 1,
      .freeze_after_ms = cfg.freeze_after,
      .init_timeout_ms = cfg.init_timeout,
      .grace_ms = cfg.shutdown_grace,
      .reserved_mib = (uint32_t)(cfg.reserved_memory / BRUME_MIB),
      .cache = d.cache,
      .table = d.table,
      .wq = d.wq,
  };

  d.metrics = brume_metrics_new();
  brume_pool_opts po = {
      .size = (size_t)cfg.pool_size,
      .memory_mib = pool_sizes,
      .n_sizes = n_pool_sizes,
      .conn = d.conn,
      .tmpl =
          {
              .name_prefix = BRUME_WORKER_NAME_PREFIX,
              .host_id = d.host_id,
              .accel = d.accel,
              .kernel = d.kernel,
              .initrd = d.initrd,
              .tsc_khz = brume_domain_host_tsc_khz(),
              .tb_cache_mib = (uint32_t)(cfg.tcg_tb_cache / BRUME_MIB),
          },
      .kernel_smp = cfg.guest_kernel_smp ? d.kernel_smp : NULL,
      .run_dir = cfg.run_dir,
      .boot_timeout_ms = (int)cfg.boot_timeout,
      .max_boots = (unsigned)cfg.max_boots,
      .fits = brume_worker_fits,
      .fits_user = &d.svc,
      .metrics = d.metrics,
  };
  d.pool = brume_pool_start(&po);
  d.svc.pool = d.pool;
  brume_worker_metrics_start(&d.svc, d.metrics);
  /* With freeze_after 0 Invoke freezes; the freezer catches those never invoked, after a second
   * (a cold start is invoked at once, and should not pay a freeze and a thaw for it). */
  if (cfg.freeze_after > 0)
    d.freezer = brume_freezer_start(d.table, cfg.freeze_after, false, d.metrics);
  else
    d.freezer = brume_freezer_start(d.table, UNINVOKED_FREEZE_MS, true, d.metrics);

  brume_rpc_server_opts ro = {
      .listen = common.listen,
      .tls = brume_rpc_server_tls(&common),
      .max_message_bytes = (size_t)cfg.max_message_size,
      .threads = 2,
      .slots_per_method = 64,
      .metrics = d.metrics,
  };
  d.rpc = brume_rpc_server_new(&ro, err);
  if (d.rpc == NULL) return -1;
  if (brume_rpc_server_add_service(d.rpc, &brume__worker__descriptor,
                                   brume_worker_service_handlers(), &d.svc, err) < 0 ||
      brume_rpc_server_start(d.rpc, err) < 0)
    return -1;

  d.http = brume_http_start(common.http_listen, d.metrics, err);
  if (d.http == NULL) return -1;
  brume_http_set_health(d.http, health, NULL);

  brume_etcd_opts eo = {
      .ca_path = common.tls_ca, .cert_path = common.tls_cert, .key_path = common.tls_key};
  d.etcd = brume_etcd_new(common.etcd_endpoints, &eo, err);
  if (d.etcd == NULL) return brume_err_wrap(err, "etcd_endpoints");
  d.published = registration_value();
  d.reg = brume_register(d.etcd, cfg.etcd_prefix, "worker", d.host_id, d.published, 10, err);
  if (d.reg == NULL) return brume_err_wrap(err, "registering in etcd at %s", common.etcd_endpoints);
  brume_registration_on_lost(d.reg, lease_lost, &d.svc);
  d.publisher = brume_ticker_start(PUBLISH_EVERY_MS, publish, NULL);
  brume_info("Worker registered.", "host_id=%s accelerator=%s", d.host_id,
             brume_accel_name(d.accel));
  return 0;
}

static void stop(void) {
  /* No stale sandboxes from now on: destroy_all below destroys them all. */
  if (d.reg) brume_registration_on_lost(d.reg, NULL, NULL);
  if (d.wq) brume_workq_stop(d.wq); /* finishes the jobs under way; new calls are refused */
  brume_rpc_server_free(d.rpc);
  d.rpc = NULL;
  brume_freezer_stop(d.freezer);
  d.freezer = NULL;
  if (d.table) brume_worker_service_destroy_all(&d.svc);
  /* The scrapes and the publisher read the pool and the table: they stop first. */
  brume_worker_metrics_stop(&d.svc);
  brume_ticker_stop(d.publisher);
  brume_pool_stop(d.pool); /* after the last take: the job pool has stopped */
  d.pool = NULL;
  free(d.published);
  brume_registration_free(d.reg);
  brume_etcd_free(d.etcd);
  brume_http_stop(d.http);
  brume_workq_free(d.wq);
  brume_sandboxes_free(d.table);
  brume_code_cache_free(d.cache);
  brume_metrics_free(d.metrics);
  if (d.conn) virConnectClose(d.conn);
}

int main(int argc, char **argv) {
  return brume_daemon_main(&spec, &common, "worker", start, stop, argc, argv);
}
