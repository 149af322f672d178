/* brume-placement: hands out sandboxes: a warm idle one of the function version if it has one,
 * else a cold start on the best worker host (placer.h, docs/placement.md).
 *
 * Table of contents: the configuration, then start() in order (metrics, etcd, the gRPC listener
 * (bound first, so that the registration carries the port it got), the etcd registration (the
 * daemon's liveness, which other placement daemons read before adopting its sandboxes), the work
 * queue, the placer (hosts, table, one reconcile, reaper), ListHosts' figures on /metrics, the
 * Placement service, the HTTP /healthz and /metrics listener), then stop() in reverse order;
 * common/daemon.h runs them and waits for SIGTERM or SIGINT in between. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brume/placement.pb-c.h"
#include "config.h"
#include "daemon.h"
#include "etcd.h"
#include "host_metrics.h"
#include "http.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "placer.h"
#include "registration.h"
#include "rpc.h"
#include "service.h"
#include "workq.h"

/* ---- configuration ---- */

static brume_common_config common;
static struct {
  char *daemon_id;
  char *etcd_prefix;
  int64_t lease_ttl;
  int64_t threads;
  int64_t jobs;
  int64_t keep_warm;
  int64_t hold_margin;
  int64_t reconcile_interval;
  int64_t create_timeout;
  int64_t cpu_overcommit;
} cfg;

static const brume_opt opts[] = {
    BRUME_OPT_STRING("daemon_id", &cfg.daemon_id, NULL,
                     "this daemon's id: the owner of the sandboxes it creates, kept across "
                     "restarts; 1-64 printable bytes, no space or '/' (default: the hostname)"),
    BRUME_OPT_STRING("etcd_prefix", &cfg.etcd_prefix, "/brume", "prefix of Brume's etcd keys"),
    BRUME_OPT_DURATION("lease_ttl", &cfg.lease_ttl, BRUME_SECONDS(2), BRUME_MINUTES(5), "10s",
                       "TTL of the registration's etcd lease, whole seconds: how long after this "
                       "daemon dies another one adopts its sandboxes"),
    BRUME_OPT_INT("threads", &cfg.threads, 1, 64, "1", "threads running gRPC handlers"),
    BRUME_OPT_INT("jobs", &cfg.jobs, 1, 64, "4",
                  "threads running blocking work: recording new sandboxes in etcd, destroying "
                  "sandboxes on their workers"),
    BRUME_OPT_DURATION("keep_warm", &cfg.keep_warm, 100, BRUME_MINUTES(24 * 60), "10m",
                       "how long an idle sandbox is kept for the next invocation of its function "
                       "version before it is destroyed (provisioned ones are kept)"),
    BRUME_OPT_DURATION("hold_margin", &cfg.hold_margin, 100, BRUME_MINUTES(30), "30s",
                       "a sandbox not released within its function's timeout plus this is taken "
                       "back and destroyed (its caller died)"),
    BRUME_OPT_DURATION("reconcile_interval", &cfg.reconcile_interval, 100, BRUME_MINUTES(10), "5s",
                       "how often the workers' sandboxes are compared with placement's (lost "
                       "ones forgotten, orphans destroyed, provisioned concurrency kept)"),
    BRUME_OPT_DURATION("create_timeout", &cfg.create_timeout, BRUME_SECONDS(1), BRUME_MINUTES(10),
                       "60s", "deadline of a cold start when the caller set none"),
    BRUME_OPT_INT("cpu_overcommit", &cfg.cpu_overcommit, 1, 64, "8",
                  "vCPU shares of sandboxes one host CPU may carry (idle sandboxes are frozen "
                  "and use none)"),
};

/* The daemon id in use: daemon_id, or the hostname. Set by validate(). */
static char daemon_id[256];

#define DAEMON_ID_MAX 64

static int check_daemon_id(const char *id, brume_err **err) {
  size_t n = strlen(id);
  bool ok = n >= 1 && n <= DAEMON_ID_MAX;
  for (size_t i = 0; ok && i < n; i++) ok = isgraph((unsigned char)id[i]) && id[i] != '/';
  if (!ok)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "daemon_id \"%s\" must be 1-%d printable bytes, with no space and no '/'",
                         id, DAEMON_ID_MAX);
  return 0;
}

static int validate(brume_err **err) {
  if (common.etcd_endpoints == NULL)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "etcd_endpoints is required: placement follows the hosts and records "
                         "its sandboxes in etcd");
  bool from_hostname;
  if (brume_daemon_check_base(cfg.daemon_id, daemon_id, sizeof(daemon_id), &from_hostname,
                              cfg.etcd_prefix, cfg.lease_ttl, err) < 0)
    return -1;
  return check_daemon_id(daemon_id, err);
}

static const brume_config_spec spec = {
    .name = "brume-placement",
    .summary =
        "Hands out sandboxes: a warm idle one of the function version, or a cold start on "
        "the best worker host.",
    .default_config = "/etc/brume/brume-placement.conf",
    .common = &common,
    .default_listen = "127.0.0.1:7020",
    .default_http_listen = "127.0.0.1:9020",
    .opts = opts,
    .n_opts = BRUME_ARRAY_LEN(opts),
    .validate = validate,
};

/* ---- the daemon ---- */

static struct {
  brume_daemon_base b; /* metrics, etcd, the gRPC server, its address, the registration */
  brume_workq *wq;
  brume_placer *placer;
  brume_host_metrics *host_metrics;
  brume_placement_service svc;
  bool svc_ready;
  brume_http *http;
} d;

static int health(void *user, brume_err **err) {
  (void)user;
  if (!brume_registration_healthy(d.b.reg))
    return brume_err_set(err, BRUME_UNAVAILABLE,
                         "the etcd lease is stale: other daemons may adopt this one's sandboxes");
  return 0;
}

/* Every host, as ListHosts answers, for /metrics. */
static Brume__HostInfo **list_hosts(void *placer, size_t *n) {
  return brume_placer_hosts(placer, NULL, n);
}

static int start(brume_err **err) {
  if (brume_daemon_base_start(&d.b, &common, cfg.etcd_prefix, "placement", daemon_id,
                              (int)(cfg.lease_ttl / 1000), (int)cfg.threads, err) < 0)
    return -1;

  d.wq = brume_workq_new((int)cfg.jobs);
  brume_placer_opts po = {
      .etcd = d.b.etcd,
      .prefix = cfg.etcd_prefix,
      .daemon_id = daemon_id,
      .worker_tls = brume_rpc_client_tls(&common),
      .wq = d.wq,
      .metrics = d.b.metrics,
      .cpu_overcommit = (uint32_t)cfg.cpu_overcommit,
      .keep_warm_ms = cfg.keep_warm,
      .hold_margin_ms = cfg.hold_margin,
      .reconcile_ms = cfg.reconcile_interval,
      .create_timeout_ms = cfg.create_timeout,
  };
  d.placer = brume_placer_new(&po, err);
  if (d.placer == NULL) return brume_err_wrap(err, "reading the hosts and sandboxes from etcd");
  d.host_metrics =
      brume_host_metrics_start(d.b.metrics, list_hosts, brume_placer_hosts_free, d.placer);

  brume_placement_service_init(&d.svc, d.placer, d.wq);
  d.svc_ready = true;
  if (brume_rpc_server_add_service(d.b.rpc, &brume__placement__descriptor,
                                   brume_placement_service_handlers(), &d.svc, err) < 0 ||
      brume_rpc_server_start(d.b.rpc, err) < 0)
    return -1;

  d.http = brume_http_start(common.http_listen, d.b.metrics, err);
  if (d.http == NULL) return brume_err_wrap(err, "http_listen %s", common.http_listen);
  brume_http_set_health(d.http, health, NULL);

  brume_info("The placement daemon is ready.",
             "daemon_id=%s listen=%s http_listen=%s http_port=%d etcd=%s keep_warm_ms=%lld",
             daemon_id, d.b.addr, common.http_listen, brume_http_port(d.http),
             common.etcd_endpoints, (long long)cfg.keep_warm);
  return 0;
}

static void stop(void) {
  /* New calls are refused and the loops stop; the work queue then finishes its jobs (answering
   * the cold starts it holds) while the rpc server still holds their calls; the placer's free
   * cancels the cold starts still at a worker, whose callbacks answer their calls. */
  if (d.svc_ready) brume_placement_service_stop(&d.svc);
  brume_placer_stop(d.placer);
  if (d.wq) brume_workq_stop(d.wq);
  brume_host_metrics_stop(d.host_metrics); /* before the placer a scrape would read goes */
  d.host_metrics = NULL;
  brume_placer_free(d.placer);
  d.placer = NULL;
  brume_rpc_server_free(d.b.rpc);
  d.b.rpc = NULL;
  brume_workq_free(d.wq);
  d.wq = NULL;
  brume_http_stop(d.http);
  d.http = NULL;
  /* The sandbox records stay in etcd: a restart with the same daemon_id takes them back. */
  brume_daemon_base_stop(&d.b);
}

int main(int argc, char **argv) {
  return brume_daemon_main(&spec, &common, "placement", start, stop, argc, argv);
}
