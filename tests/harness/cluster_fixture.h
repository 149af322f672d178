/* Test harness: a small Brume cluster on this machine, each daemon its own process: worker hosts
 * (brume-worker, real microVMs) sharing one real etcd, and a brume-placement daemon with a client
 * to it. Shared by tests/placement/test_placement_daemon and bench/placement_bench; no cmocka
 * here: failures return -1 (or NULL) with a line on stderr. Needs root and libvirtd. */
#ifndef BRUME_TEST_CLUSTER_FIXTURE_H
#define BRUME_TEST_CLUSTER_FIXTURE_H

#include <stddef.h>
#include <sys/types.h>

#include "rpc.h"
#include "worker_fixture.h"

#define BRUME_TEST_CLUSTER_MAX_WORKERS 4

#define BRUME_TEST_CLUSTER_MAX_PLACEMENT 2

/* One brume-placement daemon of the cluster. */
typedef struct brume_test_placement {
  char daemon_id[64]; /* "pl-<pid>-<i>" */
  int rpc_port, http_port;
  pid_t pid; /* -1 when not running */
  brume_rpc_client *client;
} brume_test_placement;

typedef struct brume_test_cluster {
  brume_test_worker *workers[BRUME_TEST_CLUSTER_MAX_WORKERS]; /* [0] owns etcd and the codes */
  size_t n_workers;
  const char *placement_bin;
  brume_test_placement pl[BRUME_TEST_CLUSTER_MAX_PLACEMENT];
} brume_test_cluster;

/* For argv = GUEST_DIR BRUME_INIT ECHO_RUNTIME_STATIC BRUME_WORKER BRUME_PLACEMENT: checks root,
 * etcd and libvirtd, builds the guest image and sets up n_workers worker fixtures (host ids
 * <host_prefix><pid>-<i>) around one etcd; nothing is started. NULL with *exit_code 77 (skip, the
 * reason on stderr) or 1. */
brume_test_cluster *brume_test_cluster_prepare(int argc, char **argv, const char *name,
                                               const char *host_prefix, size_t n_workers,
                                               int *exit_code);
/* Starts every worker with the common flags and extra (NULL-terminated, may be NULL). */
int brume_test_cluster_start_workers(brume_test_cluster *c, const char *const *extra);
/* Starts placement daemon i (< BRUME_TEST_CLUSTER_MAX_PLACEMENT; its log placement-<i>.log in the
 * first worker's directory) with extra flags, waits for it to listen (gRPC and HTTP) and opens
 * c->pl[i].client.
 * A restart keeps its daemon id and ports. */
int brume_test_cluster_start_placement(brume_test_cluster *c, size_t i, const char *const *extra);
/* Signals placement daemon i and reaps it; its wait status, or -1. */
int brume_test_cluster_stop_placement(brume_test_cluster *c, size_t i, int sig);
/* Placement daemon i's /metrics sum of metric name (any labels), or -1. */
long long brume_test_cluster_placement_metric(brume_test_cluster *c, size_t i, const char *name);
/* Prints the placement logs and every worker.log to stderr. */
void brume_test_cluster_dump_logs(brume_test_cluster *c);
/* Stops everything, destroys the domains, removes the temp directories. NULL is fine. */
void brume_test_cluster_free(brume_test_cluster *c);

#endif
