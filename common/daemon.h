/* The life of every Brume daemon's process, in one place: configuration, log, signals, start,
 * wait, stop. Each daemon's main() is one call:
 *
 *   int main(int argc, char **argv) {
 *     return brume_daemon_main(&spec, &common, "counting", start, stop, argc, argv);
 *   }
 *
 * brume_daemon_main() loads the configuration (--help and --check-config answer and exit 0; a
 * wrong one prints every error and exits 2), starts the log under the daemon's name, blocks
 * SIGTERM and SIGINT before any thread exists (so that every thread inherits the mask and only
 * the wait sees them) and ignores SIGPIPE, then runs start(). If start fails, the error is logged,
 * stop() undoes what start did, and the exit status is 1. Otherwise it waits for SIGTERM or SIGINT,
 * runs stop() and returns 0. stop() must cope with a start that failed half-way. */
#ifndef BRUME_DAEMON_H
#define BRUME_DAEMON_H
#include "config.h"
#include "err.h"
#include "etcd.h"
#include "metrics.h"
#include "registration.h"
#include "rpc.h"

int brume_daemon_main(const brume_config_spec *spec, const brume_common_config *common,
                      const char *name, int (*start)(brume_err **err), void (*stop)(void), int argc,
                      char **argv);
/* What a control-plane daemon (counting, placement) stands up first, in this order: a metrics
 * registry; an etcd client for common->etcd_endpoints (with the common TLS files); its gRPC server,
 * bound to common->listen but not serving yet (add the services, then brume_rpc_server_start);
 * the address other daemons reach it at (the bound port, the hostname for an empty host); and its
 * registration <prefix>/svc/<kind>/<id> = {"addr": ...} under a lease of lease_ttl_s. On failure
 * err names the step; what was made is in b for the daemon's stop() to free. */
typedef struct brume_daemon_base {
  /* Set by the caller before start: the largest request the gRPC server accepts (0 =
   * BRUME_RPC_DEFAULT_MAX_MESSAGE); the frontend takes function code in its requests. */
  size_t max_message_bytes;
  brume_metrics *metrics;
  brume_etcd *etcd;
  brume_rpc_server *rpc;
  char *addr;
  brume_registration *reg;
} brume_daemon_base;

int brume_daemon_base_start(brume_daemon_base *b, const brume_common_config *common,
                            const char *prefix, const char *kind, const char *id, int lease_ttl_s,
                            int threads, brume_err **err);

/* Frees what brume_daemon_base_start made that is still there, in the safe order (the gRPC
 * server first unless the daemon freed it earlier and set it NULL; the registration, whose lease
 * is revoked; etcd; the metrics, so the HTTP listener must be stopped before). */
void brume_daemon_base_stop(brume_daemon_base *b);

/* The options every control-plane daemon checks alike, for its validate(): the daemon id in use
 * (configured, or the hostname: *from_hostname) copied into id; etcd_prefix
 * (brume_config_check_etcd_prefix); lease_ttl_ms a whole number of seconds. The daemon checks the
 * id's own syntax afterwards. */
int brume_daemon_check_base(const char *configured_id, char *id, size_t size, bool *from_hostname,
                            const char *etcd_prefix, int64_t lease_ttl_ms, brume_err **err);

#endif
