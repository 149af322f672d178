/* brume-counting: admits invocations against concurrency limits and the scaling rate, from
 * memory, holding blocks of concurrency in etcd (engine.h, docs/counting.md).
 *
 * Table of contents: the configuration, then start() in order (metrics, etcd, the gRPC listener
 * (bound first, so that the registration carries the port it got), the etcd registration whose
 * lease the engine's blocks live under, the limits store, the work queue for etcd calls, the
 * engine and its ticker, GetState's figures on /metrics, the Counting service, the HTTP
 * /healthz and /metrics listener), then stop() in reverse order; common/daemon.h runs them and
 * waits for SIGTERM or SIGINT in between. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brume/counting.pb-c.h"
#include "config.h"
#include "daemon.h"
#include "engine.h"
#include "etcd.h"
#include "http.h"
#include "limits_store.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "quorum_guard.h"
#include "registration.h"
#include "rpc.h"
#include "service.h"
#include "state_metrics.h"
#include "ticker.h"
#include "tokens.h"
#include "workq.h"

/* ---- configuration ---- */

static brume_common_config common;
static struct {
  char *daemon_id;
  char *etcd_prefix;
  int64_t lease_ttl;
  int64_t threads;
  int64_t etcd_jobs;
  int64_t shrink_after;
  bool static_stability;
} cfg;

static const brume_opt opts[] = {
    BRUME_OPT_STRING("daemon_id", &cfg.daemon_id, NULL,
                     "this daemon's id in etcd and in its tokens: 1-64 printable bytes, no space "
                     "or '/' (default: the hostname)"),
    BRUME_OPT_STRING("etcd_prefix", &cfg.etcd_prefix, "/brume",
                     "prefix of Brume's etcd keys (the engine's root is this plus '/')"),
    BRUME_OPT_DURATION("lease_ttl", &cfg.lease_ttl, BRUME_SECONDS(2), BRUME_MINUTES(5), "10s",
                       "TTL of the registration's etcd lease, whole seconds; the blocks of "
                       "concurrency live under it, and the daemon grants nothing once it is stale"),
    BRUME_OPT_INT("threads", &cfg.threads, 1, 64, "1",
                  "threads running gRPC handlers (one serves about 48,000 Acquire+Release pairs a "
                  "second; a second helps only with cores to spare, see docs/counting.md)"),
    BRUME_OPT_INT("etcd_jobs", &cfg.etcd_jobs, 1, 64, "4",
                  "threads running etcd calls (growing and shrinking blocks, GetState)"),
    BRUME_OPT_DURATION("shrink_after", &cfg.shrink_after, 100, BRUME_MINUTES(10), "2s",
                       "how long a block stays larger than its use before it shrinks"),
    BRUME_OPT_BOOL("static_stability", &cfg.static_stability, "true",
                   "while etcd has lost its quorum, go on granting from the blocks held, so that "
                   "warm invocations keep working (counting/quorum_guard.h says when this is "
                   "safe); false grants nothing without a live lease"),
};

/* The daemon id in use: daemon_id, or the hostname. Set by validate(). */
static char daemon_id[256];

static int validate(brume_err **err) {
  if (common.etcd_endpoints == NULL)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "etcd_endpoints is required: counting holds its blocks and registers in "
                         "etcd");
  bool from_hostname;
  if (brume_daemon_check_base(cfg.daemon_id, daemon_id, sizeof(daemon_id), &from_hostname,
                              cfg.etcd_prefix, cfg.lease_ttl, err) < 0)
    return -1;
  if (brume_engine_check_daemon_id(daemon_id, err) < 0)
    return brume_err_wrap(err, "daemon_id%s must be 1-%d printable bytes, with no space and no '/'",
                          from_hostname ? " (the hostname; set daemon_id)" : "",
                          BRUME_TOKENS_DAEMON_ID_MAX);
  return 0;
}

static const brume_config_spec spec = {
    .name = "brume-counting",
    .summary =
        "Admits invocations against concurrency limits and the scaling rate, holding "
        "blocks of concurrency in etcd.",
    .default_config = "/etc/brume/brume-counting.conf",
    .common = &common,
    .default_listen = "127.0.0.1:7010",
    .default_http_listen = "127.0.0.1:9010",
    .opts = opts,
    .n_opts = BRUME_ARRAY_LEN(opts),
    .validate = validate,
};

/* ---- the daemon ---- */

/* How often the engine takes back overdue tokens, queues shrinks and looks at the lease. */
#define TICK_MS 50

static struct {
  brume_daemon_base b; /* metrics, etcd, the gRPC server, its address, the registration */
  char *root;          /* etcd_prefix + "/" */
  brume_limits_store *limits;
  brume_workq *wq;
  brume_engine *engine;
  brume_ticker *ticker;
  brume_quorum_guard *quorum_guard; /* NULL unless static_stability */
  brume_state_metrics *state_metrics;
  brume_counting_service svc;
  bool svc_ready;
  brume_http *http;
} d;

static int64_t lease_of(void *reg) {
  return brume_registration_lease(reg);
}
static bool lease_healthy(void *reg) {
  return brume_registration_healthy(reg);
}
static bool quorum_lost(void *reg) {
  (void)reg;
  return brume_quorum_guard_holding(d.quorum_guard);
}

static void tick(void *engine) {
  brume_engine_tick(engine);
}

static int health(void *user, brume_err **err) {
  (void)user;
  if (brume_quorum_guard_holding(d.quorum_guard))
    return brume_err_set(err, BRUME_UNAVAILABLE,
                         "etcd has lost its quorum: granting only from the blocks held");
  if (!brume_registration_healthy(d.b.reg))
    return brume_err_set(err, BRUME_UNAVAILABLE, "the etcd lease is stale: granting nothing");
  return 0;
}

static int start(brume_err **err) {
  d.root = brume_xasprintf("%s/", cfg.etcd_prefix);

  if (brume_daemon_base_start(&d.b, &common, cfg.etcd_prefix, "counting", daemon_id,
                              (int)(cfg.lease_ttl / 1000), (int)cfg.threads, err) < 0)
    return -1;

  d.limits = brume_limits_store_start(d.b.etcd, d.root, NULL, NULL, err);
  if (d.limits == NULL) return brume_err_wrap(err, "reading the limits under %slimits/", d.root);

  if (cfg.static_stability) {
    brume_quorum_guard_opts qo = {
        .reg = d.b.reg, .etcd = d.b.etcd, .ttl_ms = (int)cfg.lease_ttl, .metrics = d.b.metrics};
    d.quorum_guard = brume_quorum_guard_start(&qo);
  }
  d.wq = brume_workq_new((int)cfg.etcd_jobs);
  brume_engine_opts en = {
      .etcd = d.b.etcd,
      .root = d.root,
      .daemon_id = daemon_id,
      .limits = d.limits,
      .wq = d.wq,
      .lease = lease_of,
      .lease_healthy = lease_healthy,
      .quorum_lost = quorum_lost,
      .lease_user = d.b.reg,
      .shrink_after_ms = cfg.shrink_after,
      .metrics = d.b.metrics,
  };
  d.engine = brume_engine_new(&en, err);
  if (d.engine == NULL) return brume_err_wrap(err, "the engine");
  d.ticker = brume_ticker_start(TICK_MS, tick, d.engine);
  brume_state_metrics_opts so = {.metrics = d.b.metrics,
                                 .engine = d.engine,
                                 .limits = d.limits,
                                 .etcd = d.b.etcd,
                                 .root = d.root};
  d.state_metrics = brume_state_metrics_start(&so);

  brume_counting_service_init(&d.svc, d.engine, d.wq, d.b.metrics);
  d.svc_ready = true;
  if (brume_rpc_server_add_service(d.b.rpc, &brume__counting__descriptor,
                                   brume_counting_service_handlers(), &d.svc, err) < 0 ||
      brume_rpc_server_start(d.b.rpc, err) < 0)
    return -1;

  d.http = brume_http_start(common.http_listen, d.b.metrics, err);
  if (d.http == NULL) return brume_err_wrap(err, "http_listen %s", common.http_listen);
  brume_http_set_health(d.http, health, NULL);

  brume_info("The counting daemon is ready.",
             "daemon_id=%s listen=%s http_listen=%s http_port=%d etcd=%s", daemon_id, d.b.addr,
             common.http_listen, brume_http_port(d.http), common.etcd_endpoints);
  return 0;
}

static void stop(void) {
  /* New calls are refused, then the work queue answers the calls parked on it (GetState, and
   * Acquires waiting for a block to grow) while the rpc server still holds them: it frees the
   * unanswered ones, and a job answering one afterwards would touch freed memory. */
  if (d.svc_ready) brume_counting_service_stop(&d.svc);
  if (d.wq) brume_workq_stop(d.wq);
  brume_rpc_server_free(d.b.rpc);
  d.b.rpc = NULL;
  brume_ticker_stop(d.ticker);
  d.ticker = NULL;
  brume_quorum_guard_stop(d.quorum_guard);
  d.quorum_guard = NULL;
  brume_state_metrics_stop(d.state_metrics); /* before what a scrape would read goes */
  d.state_metrics = NULL;
  brume_engine_free(d.engine); /* gives unused bucket tokens back to etcd */
  d.engine = NULL;
  brume_workq_free(d.wq);
  d.wq = NULL;
  brume_limits_store_stop(d.limits);
  d.limits = NULL;
  brume_http_stop(d.http);
  d.http = NULL;
  brume_daemon_base_stop(&d.b); /* revokes the lease: the key and any block left go */
  free(d.root);
}

int main(int argc, char **argv) {
  return brume_daemon_main(&spec, &common, "counting", start, stop, argc, argv);
}
