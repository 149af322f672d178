#include "cluster_fixture.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "etcd_server.h"
#include "proc.h"
#include "testutil.h"

brume_test_cluster *brume_test_cluster_prepare(int argc, char **argv, const char *name,
                                               const char *host_prefix, size_t n_workers,
                                               int *exit_code) {
  *exit_code = 77;
  if (argc != 6 || n_workers < 1 || n_workers > BRUME_TEST_CLUSTER_MAX_WORKERS) {
    fprintf(stderr,
            "usage: %s GUEST_DIR BRUME_INIT ECHO_RUNTIME_STATIC BRUME_WORKER BRUME_PLACEMENT "
            "(run it through ctest)\n",
            argv[0]);
    *exit_code = 1;
    return NULL;
  }
  if (brume_test_worker_prereqs(argv[0]) != 0) return NULL;
  brume_test_cluster *c = calloc(1, sizeof(*c));
  c->placement_bin = argv[5];
  for (size_t i = 0; i < BRUME_TEST_CLUSTER_MAX_PLACEMENT; i++) {
    brume_test_placement *pl = &c->pl[i];
    pl->pid = -1;
    snprintf(pl->daemon_id, sizeof(pl->daemon_id), "pl-%d-%zu", (int)getpid(), i);
    pl->rpc_port = brume_test_free_port();
    pl->http_port = brume_test_free_port();
  }
  for (size_t i = 0; i < n_workers; i++) {
    brume_err *err = NULL;
    char host_id[48], dir[96];
    snprintf(host_id, sizeof(host_id), "%s%d-%zu", host_prefix, (int)getpid(), i);
    brume_test_worker *w = brume_test_worker_new(argv[4], host_id, &err);
    if (w == NULL) {
      fprintf(stderr, "%s: skipped: %s\n", argv[0], err->msg);
      brume_err_free(err);
      brume_test_cluster_free(c);
      return NULL;
    }
    c->workers[c->n_workers++] = w;
    snprintf(dir, sizeof(dir), "%s-%zu", name, i);
    if (i == 0 && brume_test_worker_guest(w, argv[1], argv[2]) < 0) {
      fprintf(stderr, "%s: skipped: the guest image cannot be built\n", argv[0]);
      brume_test_cluster_free(c);
      return NULL;
    }
    int rc = i == 0 ? brume_test_worker_setup(w, dir, argv[3])
                    : brume_test_worker_setup_sibling(w, c->workers[0], dir);
    if (rc < 0) {
      brume_test_cluster_free(c);
      *exit_code = 1;
      return NULL;
    }
  }
  return c;
}

int brume_test_cluster_start_workers(brume_test_cluster *c, const char *const *extra) {
  for (size_t i = 0; i < c->n_workers; i++)
    if (brume_test_worker_spawn(c->workers[i], extra) <= 0) return -1;
  /* Spawned together, waited for together: their start-up (the accelerator probe) overlaps. */
  for (size_t i = 0; i < c->n_workers; i++)
    if (brume_test_worker_start_wait(c->workers[i]) < 0) return -1;
  return 0;
}

int brume_test_cluster_start_placement(brume_test_cluster *c, size_t i, const char *const *extra) {
  brume_test_placement *pl = &c->pl[i];
  char listen[64], http_listen[64], log[600];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", pl->rpc_port);
  snprintf(http_listen, sizeof(http_listen), "127.0.0.1:%d", pl->http_port);
  snprintf(log, sizeof(log), "%s/placement-%zu.log", c->workers[0]->dir, i);
  char *argv[48] = {(char *)c->placement_bin,
                    "--listen",
                    listen,
                    "--http-listen",
                    http_listen,
                    "--etcd-endpoints",
                    c->workers[0]->etcd->endpoint,
                    "--daemon-id",
                    pl->daemon_id};
  size_t n = 9;
  for (size_t k = 0; extra && extra[k]; k++) {
    if (n + 1 >= sizeof(argv) / sizeof(argv[0])) {
      fprintf(stderr, "cluster fixture: too many flags\n");
      return -1;
    }
    argv[n++] = (char *)extra[k];
  }
  argv[n] = NULL;
  pl->pid = brume_test_spawn(argv, log);
  /* The HTTP listener starts last: once it listens, the daemon is ready. */
  if (pl->pid <= 0 || brume_test_wait_port(pl->rpc_port, 60000) < 0 ||
      brume_test_wait_port(pl->http_port, 10000) < 0) {
    fprintf(stderr, "cluster fixture: brume-placement did not listen on %d and %d\n", pl->rpc_port,
            pl->http_port);
    return -1;
  }
  brume_rpc_client_free(pl->client);
  brume_err *err = NULL;
  char target[64];
  snprintf(target, sizeof(target), "127.0.0.1:%d", pl->rpc_port);
  pl->client = brume_rpc_client_new(target, NULL, &err);
  if (pl->client == NULL) {
    fprintf(stderr, "cluster fixture: client: %s\n", err->msg);
    brume_err_free(err);
    return -1;
  }
  return 0;
}

int brume_test_cluster_stop_placement(brume_test_cluster *c, size_t i, int sig) {
  brume_test_placement *pl = &c->pl[i];
  if (pl->pid <= 0) return -1;
  int status = brume_test_stop(pl->pid, sig, 30000);
  pl->pid = -1;
  return status;
}

long long brume_test_cluster_placement_metric(brume_test_cluster *c, size_t i, const char *name) {
  return brume_test_metric(c->pl[i].http_port, name);
}

void brume_test_cluster_dump_logs(brume_test_cluster *c) {
  if (c == NULL || c->n_workers == 0) return;
  char path[600];
  for (size_t i = 0; i < BRUME_TEST_CLUSTER_MAX_PLACEMENT; i++) {
    snprintf(path, sizeof(path), "%s/placement-%zu.log", c->workers[0]->dir, i);
    if (access(path, F_OK) == 0) brume_test_dump_file(path);
  }
  for (size_t i = 0; i < c->n_workers; i++) brume_test_worker_dump_log(c->workers[i]);
}

void brume_test_cluster_free(brume_test_cluster *c) {
  if (c == NULL) return;
  for (size_t i = 0; i < BRUME_TEST_CLUSTER_MAX_PLACEMENT; i++) {
    brume_test_cluster_stop_placement(c, i, SIGTERM);
    brume_rpc_client_free(c->pl[i].client);
  }
  /* The siblings first: the first worker's etcd is theirs too. */
  for (size_t i = c->n_workers; i-- > 0;) brume_test_worker_free(c->workers[i]);
  free(c);
}
