/* brume-frontend: Brume's public gRPC API (proto/brume/frontend.proto): authenticates every call,
 * manages functions, versions, aliases and concurrency, and drives each invocation through
 * counting, placement and a worker; serves function code to the workers over HTTP.
 *
 * Table of contents: the configuration; `brume-frontend bootstrap-key ACCOUNT`, which makes the
 * first admin key; then start() in order (metrics, etcd, the gRPC listener and the registration
 * (common/daemon.h), the HTTP listener (its address goes into code URLs), the code store, the
 * environment key, the key store and the catalog (read from etcd, then followed), the audit log,
 * the counting daemons (a set that follows their registrations) and the placement client, the
 * invocation statistics, the invoker, the management calls, the Frontend service, the operator
 * dashboard on the HTTP listener), and stop() in reverse order; common/daemon.h runs them and
 * waits for SIGTERM or SIGINT. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "brume/frontend.pb-c.h"
#include "catalog.h"
#include "client_set.h"
#include "code_replica.h"
#include "code_store.h"
#include "config.h"
#include "daemon.h"
#include "dashboard.h"
#include "env_crypt.h"
#include "etcd.h"
#include "event_accept.h"
#include "event_delivery.h"
#include "http.h"
#include "invoke.h"
#include "key_store.h"
#include "log.h"
#include "manage.h"
#include "mem.h"
#include "names.h"
#include "policy.h"
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
  char *region;
  char *data_dir;
  char *env_key_file;
  char *audit_log;
  char *counting_addr;
  char *placement_addr;
  char *code_url_base;
  int64_t max_request;
  int64_t session_ttl;
  int64_t max_sessions;
  int64_t replicate_period;
  char *nats_urls;
  char *nats_tls_ca, *nats_tls_cert, *nats_tls_key;
  int64_t nats_timeout;
  int64_t async_replicas;
  int64_t async_max_queued;
  int64_t async_duplicate_window;
  int64_t async_ack_wait;
  int64_t async_workers;
  int64_t idempotency_window;
  int64_t token_hold_margin;
  int64_t async_time_scale;
} cfg;

static const brume_opt opts[] = {
    BRUME_OPT_STRING("daemon_id", &cfg.daemon_id, NULL,
                     "this daemon's id, in its registration and as the caller it names to "
                     "counting and placement; 1-64 characters of [A-Za-z0-9._-] (default: the "
                     "hostname)"),
    BRUME_OPT_STRING("etcd_prefix", &cfg.etcd_prefix, "/brume", "prefix of Brume's etcd keys"),
    BRUME_OPT_DURATION("lease_ttl", &cfg.lease_ttl, BRUME_SECONDS(2), BRUME_MINUTES(5), "10s",
                       "TTL of the registration's etcd lease, whole seconds"),
    BRUME_OPT_INT("threads", &cfg.threads, 1, 64, "2", "threads running gRPC handlers"),
    BRUME_OPT_INT("jobs", &cfg.jobs, 1, 64, "4",
                  "threads running the management calls, which wait for etcd"),
    BRUME_OPT_STRING("region", &cfg.region, "local",
                     "the region in function ARNs (arn:brume:lambda:<region>:...)"),
    BRUME_OPT_PATH("data_dir", &cfg.data_dir, "/var/lib/brume/frontend",
                   "where function code (code/), the audit log and the generated environment "
                   "key live"),
    BRUME_OPT_PATH("env_key_file", &cfg.env_key_file, NULL,
                   "the key that encrypts environment variables at rest: 64 hex digits (default: "
                   "<data_dir>/env.key, made on first start; every frontend of a cluster needs "
                   "the same key)",
                   .flags = BRUME_OPT_SECRET),
    BRUME_OPT_PATH("audit_log", &cfg.audit_log, NULL,
                   "the audit log: refused calls and changes, one JSON object per line (default: "
                   "<data_dir>/audit.log)"),
    BRUME_OPT_STRING("counting_addr", &cfg.counting_addr, NULL,
                     "the preferred counting daemon's gRPC address, as registered in etcd: asked "
                     "first while it answers; the others registered take over when it fails "
                     "(default: one chosen by a hash of daemon_id)"),
    BRUME_OPT_STRING("placement_addr", &cfg.placement_addr, NULL,
                     "the placement daemon's gRPC address (default: the first one registered in "
                     "etcd)"),
    BRUME_OPT_STRING("code_url_base", &cfg.code_url_base, NULL,
                     "the base of the code URLs workers fetch from (default: http://<this "
                     "daemon's http_listen, with the hostname for an empty host>)"),
    BRUME_OPT_SIZE("max_request", &cfg.max_request, 7 * BRUME_MIB, 1 * BRUME_GIB, "64MiB",
                   "largest gRPC request accepted: function code (a 50 MiB zip) travels in "
                   "CreateFunction and UpdateFunctionCode"),
    BRUME_OPT_DURATION("code_replicate_period", &cfg.replicate_period, BRUME_SECONDS(1),
                       BRUME_MINUTES(60), "2s",
                       "how often the code the catalog needs is checked and copied from the other "
                       "frontends when missing here"),
    BRUME_OPT_DURATION("dashboard_session_ttl", &cfg.session_ttl, BRUME_MINUTES(1),
                       BRUME_MINUTES(7 * 24 * 60), "12h",
                       "how long a dashboard login lasts (docs/dashboard.md)"),
    BRUME_OPT_INT("dashboard_max_sessions", &cfg.max_sessions, 1, 100000, "1024",
                  "dashboard logins kept at once; a new one beyond ends the oldest"),
    BRUME_OPT_STRING("nats_urls", &cfg.nats_urls, NULL,
                     "the NATS servers (JetStream) holding the queue of Event invocations, "
                     "\"nats://host:4222\", several comma-separated (default: none, and Event "
                     "invocations are refused UNAVAILABLE; docs/async.md)"),
    BRUME_OPT_PATH("nats_tls_ca", &cfg.nats_tls_ca, NULL,
                   "the CA that signed the NATS servers' certificates (default: plain TCP)"),
    BRUME_OPT_PATH("nats_tls_cert", &cfg.nats_tls_cert, NULL,
                   "this frontend's client certificate for NATS (mutual TLS)"),
    BRUME_OPT_PATH("nats_tls_key", &cfg.nats_tls_key, NULL, "the key of nats_tls_cert"),
    BRUME_OPT_DURATION("nats_timeout", &cfg.nats_timeout, 100, BRUME_MINUTES(1), "5s",
                       "how long an event's publish or a JetStream call waits for its answer"),
    BRUME_OPT_INT("async_replicas", &cfg.async_replicas, 1, 3, "1",
                  "copies JetStream keeps of each queued event: 1, or 3 with three NATS servers"),
    BRUME_OPT_INT("async_max_queued_per_account", &cfg.async_max_queued, 1, 100000000, "100000",
                  "events an account may have queued; beyond, Event invocations are refused "
                  "RESOURCE_EXHAUSTED (TooManyQueuedEventsException)"),
    BRUME_OPT_DURATION("async_duplicate_window", &cfg.async_duplicate_window, BRUME_SECONDS(1),
                       BRUME_MINUTES(24 * 60), "10m",
                       "how long the same request id names the same event, queued once"),
    BRUME_OPT_DURATION("async_ack_wait", &cfg.async_ack_wait, BRUME_SECONDS(1), BRUME_MINUTES(60),
                       "30s",
                       "how long a delivery may go without saying it is still working before "
                       "its event goes to another frontend"),
    BRUME_OPT_INT("async_workers", &cfg.async_workers, 0, 10000, "16",
                  "queued events this frontend runs at once (0: it only accepts events, and "
                  "other frontends deliver them)"),
    BRUME_OPT_DURATION("idempotency_window", &cfg.idempotency_window, BRUME_SECONDS(1),
                       BRUME_MINUTES(7 * 24 * 60), "1h",
                       "how long an idempotency key's answer is kept: the same key again within "
                       "it does not run the function again"),
    BRUME_OPT_DURATION(
        "token_hold_margin", &cfg.token_hold_margin, 0, BRUME_SECONDS(60), "60s",
        "how long counting holds an invocation's concurrency token beyond the "
        "function's timeout before it takes the token back by itself: a cold start "
        "that takes longer than this, less 5 s, asks counting for a new token before "
        "the function runs (at most 60s: counting holds a token 960 s at most)"),
    BRUME_OPT_INT("async_time_scale", &cfg.async_time_scale, 1, 3600, "1",
                  "divides every retry delay, backoff and maximum event age of the deliveries "
                  "(tests: 60 runs a minute in a second)"),
};

static char daemon_id[256];

static int validate(brume_err **err) {
  if (common.etcd_endpoints == NULL)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "etcd_endpoints is required: keys and functions live in etcd");
  bool from_hostname;
  if (brume_daemon_check_base(cfg.daemon_id, daemon_id, sizeof(daemon_id), &from_hostname,
                              cfg.etcd_prefix, cfg.lease_ttl, err) < 0)
    return -1;
  size_t n = strlen(daemon_id);
  bool ok = n >= 1 && n <= 64;
  for (size_t i = 0; ok && i < n; i++)
    ok = isalnum((unsigned char)daemon_id[i]) || strchr("._-", daemon_id[i]);
  if (!ok)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "daemon_id \"%s\" must be 1-64 characters of [A-Za-z0-9._-]", daemon_id);
  if (brume_check_function_name(cfg.region, "region", err) < 0) return -1;
  return 0;
}

static const brume_config_spec spec = {
    .name = "brume-frontend",
    .summary =
        "Brume's public API: authenticates callers, manages functions and runs "
        "invocations through counting, placement and the workers. `brume-frontend "
        "bootstrap-key ACCOUNT [options]` makes an admin API key and exits.",
    .default_config = "/etc/brume/brume-frontend.conf",
    .common = &common,
    .default_listen = "127.0.0.1:7040",
    .default_http_listen = "127.0.0.1:9040",
    .opts = opts,
    .n_opts = BRUME_ARRAY_LEN(opts),
    .validate = validate,
};

/* ---- the daemon ---- */

static struct {
  brume_daemon_base b;
  char caller_id[300];
  brume_http *http;
  brume_code_store *code;
  brume_code_replica *replica;
  brume_env_key env_key;
  brume_key_store *keys;
  brume_catalog *catalog;
  brume_audit *audit;
  brume_rpc_loop *loop; /* where every Invoke step's call completes: one thread, no hops */
  brume_counting_set *counting;
  brume_rpc_client *placement;
  brume_rpc_client *counting_state; /* the dashboard's blocking GetState calls */
  brume_rpc_pool *workers;
  brume_inv_stats *stats;
  brume_dashboard *dashboard;
  brume_invoker *invoker;
  brume_event_accept *events;
  brume_event_delivery *delivery;
  brume_idempotency *idempotency;
  brume_workq *wq;
  brume_manage *manage;
  brume_frontend_service svc;
  bool svc_ready;
} d;

/* The address of the first daemon of kind registered in etcd, or NULL + err. */
static char *discover(brume_etcd *etcd, const char *kind, brume_err **err) {
  json_t *all = brume_registrations_list(etcd, cfg.etcd_prefix, kind, err);
  if (all == NULL) return NULL;
  char *out = NULL;
  size_t i;
  json_t *r;
  json_array_foreach(all, i, r) {
    const char *addr = json_string_value(json_object_get(r, "addr"));
    if (addr && out == NULL) out = brume_xstrdup(addr);
  }
  json_decref(all);
  if (out == NULL)
    brume_err_set(err, BRUME_UNAVAILABLE,
                  "no brume-%s is registered in etcd under %s/svc/%s/: start one, or set %s_addr",
                  kind, cfg.etcd_prefix, kind, kind);
  return out;
}

static int health(void *user, brume_err **err) {
  (void)user;
  if (!brume_registration_healthy(d.b.reg))
    return brume_err_set(err, BRUME_UNAVAILABLE, "the etcd lease is stale");
  return 0;
}

/* What the code replica copies: every digest the catalog names. */
static json_t *code_needed(void *catalog) {
  return brume_catalog_code_digests(catalog);
}

static int open_env_key(brume_err **err) {
  brume_autofree char *path = cfg.env_key_file ? brume_xstrdup(cfg.env_key_file)
                                               : brume_xasprintf("%s/env.key", cfg.data_dir);
  if (cfg.env_key_file == NULL && access(path, F_OK) != 0) {
    if (brume_env_key_generate(path, err) < 0) return -1;
    brume_warn(
        "Made a new key for environment variables; every frontend of the cluster needs "
        "the same one (env_key_file).",
        "path=%s", path);
  }
  return brume_env_key_load(path, &d.env_key, err);
}

static int start(brume_err **err) {
  d.b.max_message_bytes = (size_t)cfg.max_request;
  if (brume_daemon_base_start(&d.b, &common, cfg.etcd_prefix, "frontend", daemon_id,
                              (int)(cfg.lease_ttl / 1000), (int)cfg.threads, err) < 0)
    return -1;
  snprintf(d.caller_id, sizeof(d.caller_id), "frontend/%s", daemon_id);

  d.http = brume_http_start(common.http_listen, d.b.metrics, err);
  if (d.http == NULL) return brume_err_wrap(err, "http_listen %s", common.http_listen);
  brume_http_set_health(d.http, health, NULL);
  brume_autofree char *http_addr =
      brume_config_advertised_addr(common.http_listen, brume_http_port(d.http), err);
  if (http_addr == NULL) return -1;
  brume_autofree char *code_base = cfg.code_url_base ? brume_xstrdup(cfg.code_url_base)
                                                     : brume_xasprintf("http://%s", http_addr);

  if (mkdir(cfg.data_dir, 0700) < 0 && errno != EEXIST)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "data_dir %s: %s", cfg.data_dir,
                         strerror(errno));
  brume_autofree char *code_dir = brume_xasprintf("%s/code", cfg.data_dir);
  d.code = brume_code_store_new(code_dir, err);
  if (d.code == NULL) return brume_err_wrap(err, "code store %s", code_dir);
  brume_code_store_serve(d.code, d.http);
  if (open_env_key(err) < 0) return -1;

  d.keys = brume_key_store_new(d.b.etcd, cfg.etcd_prefix, err);
  if (d.keys == NULL) return -1;
  brume_catalog_opts co = {.etcd = d.b.etcd,
                           .prefix = cfg.etcd_prefix,
                           .region = cfg.region,
                           .env_key = &d.env_key,
                           .code_url_base = code_base};
  d.catalog = brume_catalog_new(&co, err);
  if (d.catalog == NULL) return -1;
  /* The other frontends find this one's code where its registration says. */
  brume_autofree char *reg_value =
      brume_xasprintf("{\"addr\":\"%s\",\"http_addr\":\"%s\"}", d.b.addr, http_addr);
  if (brume_registration_update(d.b.reg, reg_value, err) < 0) return -1;
  brume_code_replica_opts ro = {.etcd = d.b.etcd,
                                .prefix = cfg.etcd_prefix,
                                .self_id = daemon_id,
                                .store = d.code,
                                .needs = code_needed,
                                .needs_user = d.catalog,
                                .period_ms = cfg.replicate_period,
                                .metrics = d.b.metrics};
  d.replica = brume_code_replica_new(&ro);
  brume_autofree char *audit_path =
      cfg.audit_log ? brume_xstrdup(cfg.audit_log) : brume_xasprintf("%s/audit.log", cfg.data_dir);
  d.audit = brume_audit_open(audit_path, err);
  if (d.audit == NULL) return -1;

  brume_autofree char *placement_addr =
      cfg.placement_addr ? brume_xstrdup(cfg.placement_addr) : discover(d.b.etcd, "placement", err);
  if (placement_addr == NULL) return -1;
  d.loop = brume_rpc_loop_new();
  brume_counting_set_opts cso = {
      .etcd = d.b.etcd,
      .prefix = cfg.etcd_prefix,
      .preferred = cfg.counting_addr,
      .caller_id = d.caller_id,
      .client = {.rpc = {.tls = brume_rpc_client_tls(&common), .loop = d.loop}},
      .metrics = d.b.metrics,
      .metrics_prefix = "brume_frontend"};
  d.counting = brume_counting_set_new(&cso, err);
  if (d.counting == NULL) return brume_err_wrap(err, "following the counting daemons");
  /* The dashboard's GetState calls go to the preferred daemon, else to the one the set starts
   * with. Without counting_addr the frontend still refuses to start while no counting daemon is
   * registered, as it did with one daemon; with it, the set answers UNAVAILABLE until one
   * registers. */
  brume_autofree char *counting_addr =
      cfg.counting_addr ? brume_xstrdup(cfg.counting_addr) : brume_counting_set_current(d.counting);
  if (counting_addr == NULL)
    return brume_err_set(err, BRUME_UNAVAILABLE,
                         "no brume-counting is registered in etcd under %s/svc/counting/: start "
                         "one, or set counting_addr",
                         cfg.etcd_prefix);
  brume_rpc_client_opts rco = {
      .tls = brume_rpc_client_tls(&common), .loop = d.loop, .max_message_bytes = 8u << 20};
  d.placement = brume_rpc_client_new(placement_addr, &rco, err);
  if (d.placement == NULL) return brume_err_wrap(err, "placement_addr %s", placement_addr);
  d.workers = brume_rpc_pool_new(&rco);
  brume_rpc_client_opts sco = {.tls = brume_rpc_client_tls(&common)};
  d.counting_state = brume_rpc_client_new(counting_addr, &sco, err);
  if (d.counting_state == NULL) return brume_err_wrap(err, "counting_addr %s", counting_addr);

  d.stats = brume_inv_stats_new(d.b.metrics);
  brume_invoker_opts io = {.catalog = d.catalog,
                           .counting = d.counting,
                           .placement = d.placement,
                           .workers = d.workers,
                           .caller_id = d.caller_id,
                           .metrics = d.b.metrics,
                           .stats = d.stats,
                           .token_hold_margin_ms = (uint32_t)cfg.token_hold_margin};
  d.invoker = brume_invoker_new(&io);
  if (cfg.nats_urls) {
    brume_event_accept_opts eo = {
        .catalog = d.catalog,
        .queue = {.urls = cfg.nats_urls,
                  .tls_ca = cfg.nats_tls_ca,
                  .tls_cert = cfg.nats_tls_cert,
                  .tls_key = cfg.nats_tls_key,
                  .replicas = (int)cfg.async_replicas,
                  .max_queued_per_account = cfg.async_max_queued,
                  .duplicate_window_ms = cfg.async_duplicate_window,
                  /* The longest maximum event age, and an hour for the last retries. */
                  .max_age_ms = BRUME_SECONDS(BRUME_EVENT_AGE_MAX_S) + BRUME_MINUTES(60),
                  .ack_wait_ms = cfg.async_ack_wait,
                  .idempotency_window_ms = cfg.idempotency_window,
                  .timeout_ms = cfg.nats_timeout},
        .accepted_by = daemon_id,
        .retry_ms = BRUME_SECONDS(2),
        .metrics = d.b.metrics};
    d.events = brume_event_accept_new(&eo);
    brume_idempotency_opts io2 = {
        .accept = d.events, .invoker = d.invoker, .threads = 8, .metrics = d.b.metrics};
    d.idempotency = brume_idempotency_new(&io2);
    if (cfg.async_workers > 0) {
      brume_event_delivery_opts edo = {.accept = d.events,
                                       .catalog = d.catalog,
                                       .region = cfg.region,
                                       .invoker = d.invoker,
                                       .delivered_by = daemon_id,
                                       .workers = (int)cfg.async_workers,
                                       .ack_wait_ms = cfg.async_ack_wait,
                                       .time_scale = (double)cfg.async_time_scale,
                                       .metrics = d.b.metrics};
      d.delivery = brume_event_delivery_start(&edo);
    }
  }
  d.wq = brume_workq_new((int)cfg.jobs);
  brume_manage_opts mo = {.etcd = d.b.etcd,
                          .prefix = cfg.etcd_prefix,
                          .region = cfg.region,
                          .catalog = d.catalog,
                          .code = d.code,
                          .env_key = &d.env_key,
                          .placement = d.placement,
                          .caller_id = d.caller_id};
  d.manage = brume_manage_new(&mo);

  d.svc = (brume_frontend_service){.keys = d.keys,
                                   .audit = d.audit,
                                   .invoker = d.invoker,
                                   .events = d.events,
                                   .idempotency = d.idempotency,
                                   .manage = d.manage,
                                   .wq = d.wq,
                                   .region = cfg.region};
  brume_frontend_service_init(&d.svc);
  d.svc_ready = true;
  brume_dashboard_opts dopts = {.http = d.http,
                                .keys = d.keys,
                                .audit = d.audit,
                                .catalog = d.catalog,
                                .stats = d.stats,
                                .etcd = d.b.etcd,
                                .prefix = cfg.etcd_prefix,
                                .counting = d.counting_state,
                                .placement = d.placement,
                                .events = d.events,
                                .delivery = d.delivery,
                                .frontend_id = daemon_id,
                                .region = cfg.region,
                                .max_sessions = (size_t)cfg.max_sessions,
                                .session_ttl_ms = cfg.session_ttl,
                                .sample_period_ms = 1000};
  d.dashboard = brume_dashboard_new(&dopts);
  if (brume_rpc_server_add_service(d.b.rpc, &brume__frontend__descriptor,
                                   brume_frontend_service_handlers(), &d.svc, err) < 0 ||
      brume_rpc_server_start(d.b.rpc, err) < 0)
    return -1;

  brume_counting_set_stats cst;
  brume_counting_set_stats_get(d.counting, &cst);
  brume_info("The frontend is ready.",
             "daemon_id=%s listen=%s http_listen=%s http_port=%d code_url_base=%s counting=%s "
             "counting_daemons=%zu placement=%s etcd=%s audit_log=%s",
             daemon_id, d.b.addr, common.http_listen, brume_http_port(d.http), code_base,
             counting_addr, cst.daemons, placement_addr, common.etcd_endpoints, audit_path);
  return 0;
}

static void stop(void) {
  /* New calls are refused; the invocations under way finish (their clients still open), the
   * queued management calls run out; then the server goes, answering what is left. */
  if (d.svc_ready) brume_frontend_service_stop(&d.svc);
  /* The queued events running end and are settled before the invoker goes. */
  brume_event_delivery_stop(d.delivery);
  brume_invoker_drain(d.invoker);
  /* The answers of the last runs with an idempotency key are stored and sent. */
  brume_idempotency_free(d.idempotency);
  /* The workers fetched the code of the last cold starts; the dashboard's handlers and its
   * sampler use the clients freed below. */
  brume_dashboard_stop(d.dashboard);
  brume_http_stop(d.http);
  d.http = NULL;
  brume_dashboard_free(d.dashboard);
  if (d.wq) brume_workq_stop(d.wq);
  brume_rpc_server_free(d.b.rpc);
  d.b.rpc = NULL;
  brume_workq_free(d.wq);
  brume_manage_free(d.manage);
  brume_event_delivery_free(d.delivery);
  brume_event_accept_free(d.events);
  brume_invoker_free(d.invoker);
  brume_counting_set_free(d.counting);
  brume_inv_stats_free(d.stats);
  brume_rpc_client_free(d.placement);
  brume_rpc_client_free(d.counting_state);
  brume_rpc_pool_free(d.workers);
  brume_rpc_loop_free(d.loop);
  brume_http_stop(d.http);
  brume_audit_close(d.audit);
  brume_code_replica_free(d.replica);
  brume_catalog_free(d.catalog);
  brume_key_store_free(d.keys);
  brume_code_store_free(d.code);
  explicit_bzero(&d.env_key, sizeof(d.env_key));
  brume_daemon_base_stop(&d.b);
}

/* brume-frontend bootstrap-key ACCOUNT [options]: makes an admin key for ACCOUNT in etcd (the
 * options say where) and prints it once on stdout. The first key of a cluster can come from
 * nowhere else: every call, CreateApiKey included, needs a key. */
static int bootstrap_key(int argc, char **argv) {
  if (argc < 3 || argv[2][0] == '-') {
    fprintf(stderr, "usage: brume-frontend bootstrap-key ACCOUNT [options]\n");
    return 2;
  }
  const char *account = argv[2];
  brume_autoptr(brume_err) err = NULL;
  /* The loader skips its argv[0]: ACCOUNT is in that place. */
  int rc = brume_config_load(&spec, argc - 2, argv + 2, &err);
  if (rc != 0) {
    if (rc < 0) fprintf(stderr, "%s\n", err->msg);
    brume_config_free(&spec);
    return rc < 0 ? 2 : 0;
  }
  brume_log_init("frontend", (brume_log_level)common.log_level);
  int status = 1;
  brume_etcd_opts eo = {
      .ca_path = common.tls_ca, .cert_path = common.tls_cert, .key_path = common.tls_key};
  brume_autoptr(brume_etcd) etcd = brume_etcd_new(common.etcd_endpoints, &eo, &err);
  brume_key_store *ks = etcd ? brume_key_store_new(etcd, cfg.etcd_prefix, &err) : NULL;
  char key[BRUME_API_KEY_STRING_LEN + 1];
  brume_api_key_record rec;
  if (ks && brume_check_account_id(account, "ACCOUNT", &err) == 0 &&
      brume_key_store_create(ks, account, BRUME_SCOPE_ADMIN, "bootstrap admin key", key, &rec,
                             &err) == 0) {
    printf("%s\n", key);
    fflush(stdout);
    fprintf(stderr,
            "Made admin key %s for account %s. It is shown this once: store it (e.g. in a file "
            "for `brume --api-key-file`).\n",
            rec.key_id, account);
    explicit_bzero(key, sizeof(key));
    status = 0;
  } else {
    fprintf(stderr, "brume-frontend bootstrap-key: %s\n", err ? err->msg : "failed");
  }
  brume_key_store_free(ks);
  brume_config_free(&spec);
  return status;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "bootstrap-key") == 0) return bootstrap_key(argc, argv);
  return brume_daemon_main(&spec, &common, "frontend", start, stop, argc, argv);
}
