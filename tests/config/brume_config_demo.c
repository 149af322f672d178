/* brume_config_demo: a daemon-shaped program for the golden tests of the configuration loader.
 * Its table has the common options and one option of every type; main() is what a daemon's
 * main.c does before it starts anything. */
#include <stdio.h>

#include "config.h"

static struct {
  brume_common_config common;
  int64_t workers;
  int64_t lease_ttl_ms;
  int64_t keepalive_ms;
  int64_t freeze_after_ms;
  int64_t max_message_size;
  int64_t sandbox_memory;
  int accelerator;
  bool verbose_rpc;
  char *data_dir;
  char *instance_name;
  char *admin_api_key;
} cfg;

static const char *const accelerators[] = {"auto", "kvm", "tcg", NULL};

static const brume_opt demo_opts[] = {
    BRUME_OPT_INT("workers", &cfg.workers, 1, 64, "4", "threads serving RPCs"),
    BRUME_OPT_DURATION("lease_ttl", &cfg.lease_ttl_ms, BRUME_SECONDS(1), BRUME_MINUTES(5), "10s",
                       "TTL of this daemon's etcd lease"),
    BRUME_OPT_DURATION("keepalive_interval", &cfg.keepalive_ms, 100, BRUME_MINUTES(1), "3s",
                       "how often the lease is renewed"),
    BRUME_OPT_DURATION("freeze_after", &cfg.freeze_after_ms, 0, BRUME_MINUTES(60), "0",
                       "idle time before a sandbox is frozen; 0 freezes at once"),
    BRUME_OPT_SIZE("max_message_size", &cfg.max_message_size, BRUME_KIB, 64 * BRUME_MIB, "4MiB",
                   "largest gRPC message accepted"),
    BRUME_OPT_SIZE("sandbox_memory", &cfg.sandbox_memory, 128 * BRUME_MIB, 10 * BRUME_GIB, "128MiB",
                   "memory of a new sandbox"),
    BRUME_OPT_ENUM("accelerator", &cfg.accelerator, accelerators, "auto",
                   "how microVMs run; auto probes KVM, then falls back to TCG"),
    BRUME_OPT_BOOL("verbose_rpc", &cfg.verbose_rpc, "false", "log every RPC at debug level"),
    BRUME_OPT_PATH("data_dir", &cfg.data_dir, "/var/lib/brume", "state directory"),
    BRUME_OPT_STRING("instance_name", &cfg.instance_name, NULL,
                     "name registered in etcd (default: the host name)"),
    BRUME_OPT_STRING("admin_api_key", &cfg.admin_api_key, NULL, "key of the admin API",
                     .flags = BRUME_OPT_SECRET),
};

/* Two missed keepalives must not lose the lease. */
static int validate(brume_err **err) {
  char ka[32], ttl[32];
  if (cfg.keepalive_ms * 3 > cfg.lease_ttl_ms)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "keepalive_interval (%s) must be at most a third of lease_ttl (%s)",
                         brume_config_format_duration(cfg.keepalive_ms, ka, sizeof(ka)),
                         brume_config_format_duration(cfg.lease_ttl_ms, ttl, sizeof(ttl)));
  return 0;
}

static const brume_config_spec spec = {
    .name = "brume-demo",
    .summary = "Shows how a Brume daemon's configuration table drives its file, flags and help.",
    .default_config = "/etc/brume/brume-demo.conf",
    .common = &cfg.common,
    .default_listen = "127.0.0.1:7099",
    .default_http_listen = "127.0.0.1:9099",
    .opts = demo_opts,
    .n_opts = BRUME_ARRAY_LEN(demo_opts),
    .validate = validate,
};

int main(int argc, char **argv) {
  brume_autoptr(brume_err) err = NULL;
  int rc = brume_config_load(&spec, argc, argv, &err);
  if (rc < 0)
    fprintf(stderr, "%s\n", err->msg);
  else if (rc == 0)
    printf("brume-demo would start now: listen=%s workers=%lld\n", cfg.common.listen,
           (long long)cfg.workers);
  brume_config_free(&spec);
  return rc < 0 ? 1 : 0;
}
