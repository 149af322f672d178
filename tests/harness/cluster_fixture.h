/* Test harness: a small Brume cluster on this machine, each daemon its own process: worker hosts
 * (brume-worker, real microVMs) sharing one real etcd, brume-placement daemons, and for the
 * end-to-end tests a brume-counting and a brume-frontend, each with a client to it. Shared by
 * tests/placement/test_placement_daemon, tests/e2e and the benchmarks; no cmocka here: failures
 * return -1 (or NULL) with a line on stderr. Needs root and libvirtd. */
#ifndef BRUME_TEST_CLUSTER_FIXTURE_H
#define BRUME_TEST_CLUSTER_FIXTURE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rpc.h"
#include "worker_fixture.h"

#define BRUME_TEST_CLUSTER_MAX_WORKERS 4

#define BRUME_TEST_CLUSTER_MAX_PLACEMENT 2

/* One control-plane daemon of the cluster (placement, counting, frontend). */
typedef struct brume_test_daemon {
  char daemon_id[64]; /* "pl-<pid>-<i>", "ct-<pid>", "fe-<pid>" */
  int rpc_port, http_port;
  pid_t pid; /* -1 when not running */
  brume_rpc_client *client;
  char log[600]; /* its log file, in the first worker's directory */
} brume_test_daemon;
typedef brume_test_daemon brume_test_placement;

typedef struct brume_test_cluster {
  brume_test_worker *workers[BRUME_TEST_CLUSTER_MAX_WORKERS]; /* [0] owns etcd and the codes */
  size_t n_workers;
  const char *placement_bin;
  brume_test_placement pl[BRUME_TEST_CLUSTER_MAX_PLACEMENT];
  const char *counting_bin, *frontend_bin; /* NULL unless given to prepare */
  brume_test_daemon counting, frontend;
  char frontend_dir[600]; /* the frontend's data_dir (code, audit.log, env.key) */
} brume_test_cluster;

/* For argv = GUEST_DIR BRUME_INIT ECHO_RUNTIME_STATIC BRUME_WORKER BRUME_PLACEMENT
 * [BRUME_COUNTING BRUME_FRONTEND]: checks root, etcd and libvirtd, builds the guest image and
 * sets up n_workers worker fixtures (host ids <host_prefix><pid>-<i>) around one etcd; nothing is
 * started. NULL with *exit_code 77 (skip, the reason on stderr) or 1. */
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
/* Starts brume-counting (log counting.log) with extra flags, waits for it and opens its client. */
int brume_test_cluster_start_counting(brume_test_cluster *c, const char *const *extra);
/* Starts brume-frontend (log frontend.log, data_dir frontend_dir) pointed at the counting daemon
 * and placement daemon 0, with extra flags; waits for it and opens its client (which accepts
 * 64 MiB replies). */
int brume_test_cluster_start_frontend(brume_test_cluster *c, const char *const *extra);
/* A Frontend call by method name with API key (NULL: none) and request id (NULL: "test"), a
 * deadline of 120 s: 0 with *reply set, or -1 with err. */
int brume_test_cluster_frontend_call(brume_test_cluster *c, const char *method, const char *key,
                                     const char *request_id, const void *req, void *reply,
                                     brume_err **err);
/* Creates function fn in key's account from the echo runtime's zip (128 MiB, timeout_ms). */
int brume_test_cluster_create_echo(brume_test_cluster *c, const char *key, const char *fn,
                                   uint32_t timeout_ms, brume_err **err);
/* Signals a daemon and reaps it; its wait status, or -1. */
int brume_test_cluster_stop_daemon(brume_test_daemon *d, int sig);
/* Makes an admin key for account with `brume-frontend bootstrap-key` into key (at least 128
 * bytes). */
int brume_test_cluster_bootstrap_key(brume_test_cluster *c, const char *account, char *key,
                                     size_t size);
/* Signals placement daemon i and reaps it; its wait status, or -1. */
int brume_test_cluster_stop_placement(brume_test_cluster *c, size_t i, int sig);
/* Placement daemon i's /metrics sum of metric name (any labels), or -1. */
long long brume_test_cluster_placement_metric(brume_test_cluster *c, size_t i, const char *name);
/* Prints the placement logs and every worker.log to stderr. */
void brume_test_cluster_dump_logs(brume_test_cluster *c);
/* Stops everything, destroys the domains, removes the temp directories. NULL is fine. */
void brume_test_cluster_free(brume_test_cluster *c);

#endif
