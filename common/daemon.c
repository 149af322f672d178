#include "daemon.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"

int brume_daemon_main(const brume_config_spec *spec, const brume_common_config *common,
                      const char *name, int (*start)(brume_err **err), void (*stop)(void), int argc,
                      char **argv) {
  brume_err *err = NULL;
  int rc = brume_config_load(spec, argc, argv, &err);
  if (rc != 0) {
    if (rc < 0) fprintf(stderr, "%s\n", err->msg);
    brume_err_free(err);
    brume_config_free(spec);
    return rc < 0 ? 2 : 0;
  }
  brume_log_init(name, (brume_log_level)common->log_level);

  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  if (start(&err) < 0) {
    char q[1024];
    brume_error("The daemon could not start.", "daemon=%s err=%s", spec->name,
                brume_log_quote(q, sizeof(q), err->msg));
    brume_err_free(err);
    stop();
    brume_config_free(spec);
    return 1;
  }
  int sig = 0;
  sigwait(&sigs, &sig);
  brume_info("Shutting down.", "signal=%d", sig);
  stop();
  brume_info("The daemon stopped.", "daemon=%s", spec->name);
  brume_config_free(spec);
  return 0;
}

int brume_daemon_base_start(brume_daemon_base *b, const brume_common_config *common,
                            const char *prefix, const char *kind, const char *id, int lease_ttl_s,
                            int threads, brume_err **err) {
  b->metrics = brume_metrics_new();
  brume_etcd_opts eo = {
      .ca_path = common->tls_ca, .cert_path = common->tls_cert, .key_path = common->tls_key};
  b->etcd = brume_etcd_new(common->etcd_endpoints, &eo, err);
  if (b->etcd == NULL) return brume_err_wrap(err, "etcd_endpoints");
  /* Bound now, served once the daemon's parts exist: the registration needs the port. */
  brume_rpc_server_opts ro = {
      .listen = common->listen,
      .tls = brume_rpc_server_tls(common),
      .threads = threads,
      .slots_per_method = 256,
      .max_message_bytes = b->max_message_bytes,
      .metrics = b->metrics,
  };
  b->rpc = brume_rpc_server_new(&ro, err);
  if (b->rpc == NULL) return brume_err_wrap(err, "listen %s", common->listen);
  b->addr = brume_config_advertised_addr(common->listen, brume_rpc_server_port(b->rpc), err);
  if (b->addr == NULL) return brume_err_wrap(err, "listen");
  char *value = brume_xasprintf("{\"addr\":\"%s\"}", b->addr);
  b->reg = brume_register(b->etcd, prefix, kind, id, value, lease_ttl_s, err);
  free(value);
  if (b->reg == NULL)
    return brume_err_wrap(err, "registering in etcd at %s", common->etcd_endpoints);
  return 0;
}

void brume_daemon_base_stop(brume_daemon_base *b) {
  brume_rpc_server_free(b->rpc);
  b->rpc = NULL;
  brume_registration_free(b->reg);
  b->reg = NULL;
  brume_etcd_free(b->etcd);
  b->etcd = NULL;
  brume_metrics_free(b->metrics);
  b->metrics = NULL;
  free(b->addr);
  b->addr = NULL;
}

int brume_daemon_check_base(const char *configured_id, char *id, size_t size, bool *from_hostname,
                            const char *etcd_prefix, int64_t lease_ttl_ms, brume_err **err) {
  *from_hostname = configured_id == NULL;
  if (configured_id == NULL) {
    memset(id, 0, size);
    if (gethostname(id, size - 1) < 0)
      return brume_err_set(err, BRUME_INTERNAL, "gethostname: %s", strerror(errno));
  } else {
    snprintf(id, size, "%s", configured_id);
  }
  if (brume_config_check_etcd_prefix(etcd_prefix, err) < 0) return -1;
  if (lease_ttl_ms % 1000 != 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "lease_ttl must be a whole number of seconds (etcd leases count seconds)");
  return 0;
}
