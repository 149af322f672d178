/* brume-counting daemons as processes (counting_proc.h). */
#include "counting_proc.h"

#include <signal.h>
#include <stdio.h>

#include "proc.h"
#include "testutil.h"

int brume_test_counting_init(brume_test_counting *d, const char *id, const char *dir) {
  *d = (brume_test_counting){.pid = -1};
  snprintf(d->id, sizeof(d->id), "%s", id);
  snprintf(d->log_path, sizeof(d->log_path), "%s/%s.log", dir, id);
  d->port = brume_test_free_port();
  d->http_port = brume_test_free_port();
  return d->port < 0 || d->http_port < 0 ? -1 : 0;
}

int brume_test_counting_start(brume_test_counting *d, const char *bin, const char *etcd_endpoint,
                              const char *prefix, int lease_ttl_s) {
  char listen[64], http_listen[64], lease_ttl[16];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", d->port);
  snprintf(http_listen, sizeof(http_listen), "127.0.0.1:%d", d->http_port);
  snprintf(lease_ttl, sizeof(lease_ttl), "%ds", lease_ttl_s);
  /* clang-format off */
  char *argv[] = {(char *)bin,
                  "--listen", listen,
                  "--http_listen", http_listen,
                  "--etcd_endpoints", (char *)etcd_endpoint,
                  "--daemon_id", d->id,
                  "--etcd_prefix", (char *)prefix,
                  "--lease_ttl", lease_ttl,
                  "--log_level", "info",
                  NULL};
  /* clang-format on */
  d->pid = brume_test_spawn(argv, d->log_path);
  if (d->pid < 0) return -1;
  if (brume_test_wait_port(d->port, 20000) < 0 || brume_test_wait_port(d->http_port, 5000) < 0) {
    fprintf(stderr, "counting %s does not listen on %d/%d\n", d->id, d->port, d->http_port);
    brume_test_dump_file(d->log_path);
    brume_test_counting_stop(d, SIGKILL);
    return -1;
  }
  return 0;
}

int brume_test_counting_stop(brume_test_counting *d, int sig) {
  if (d->pid <= 0) return -1;
  int st = brume_test_stop(d->pid, sig, 5000);
  d->pid = -1;
  return st;
}
