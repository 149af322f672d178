/* Test harness: a real, single-member etcd on loopback.
 *
 * Each server gets free client and peer ports and a fresh data directory under $TMPDIR; its log
 * goes to etcd.log next to the data. A restart reuses the same ports and data, so the keys,
 * revisions and leases a test wrote are still there, as after a real etcd restart. */
#ifndef BRUME_TEST_ETCD_SERVER_H
#define BRUME_TEST_ETCD_SERVER_H

#include <stdbool.h>
#include <sys/types.h>

#include "etcd.h"

typedef struct brume_test_etcd {
  char *dir; /* the temp directory holding data/ and etcd.log */
  char *data_dir;
  char *log_path;
  int client_port;
  int peer_port;
  char *endpoint; /* "http://127.0.0.1:<client_port>", https:// with TLS */
  pid_t pid;      /* -1 while stopped */
  /* With TLS (brume_test_etcd_start_tls): the PKI directory (tests/harness/make-certs.sh), and the
   * plain-HTTP port serving /health and /metrics. */
  char *pki_dir;
  int metrics_port;
} brume_test_etcd;

/* True if an etcd binary is on PATH; tests skip (exit 77) when it is not. */
bool brume_test_etcd_available(void);
/* Starts etcd and waits until GET /health says it is healthy (up to 15 s). Returns NULL and
 * prints why on stderr on failure. */
brume_test_etcd *brume_test_etcd_start(void);
/* The same with TLS and client certificates required: clients must present a certificate signed
 * by pki_dir/ca.pem (server.pem/server.key from tests/harness/make-certs.sh serve it). */
brume_test_etcd *brume_test_etcd_start_tls(const char *pki_dir);
/* SIGTERM and wait (etcd shuts down cleanly); the data stays. 0 on success. */
int brume_test_etcd_stop(brume_test_etcd *s);
/* SIGKILL: a crash. The data stays. 0 on success. */
int brume_test_etcd_kill(brume_test_etcd *s);
/* Starts a stopped server again on the same ports and data and waits until healthy. */
int brume_test_etcd_restart(brume_test_etcd *s);
/* Compacts s's history up to revision (etcd's client API has no place for it here: the gateway's
 * /v3/kv/compaction, plain HTTP only). 0 on success. */
int brume_test_etcd_compact(const brume_test_etcd *s, int64_t revision);
/* True if GET /health answers healthy within timeout_ms. */
bool brume_test_etcd_healthy(const brume_test_etcd *s, int timeout_ms);
/* Stops the server if running, deletes its directory and frees s. NULL is allowed. */
void brume_test_etcd_free(brume_test_etcd *s);

/* A cmocka group's etcd: starts a server and a client on it (2 s per call). 0, or -1 with the
 * reason on stderr and nothing left running. */
int brume_test_etcd_open(brume_test_etcd **server, brume_etcd **client);
/* Frees the client, then stops and removes the server. NULLs are fine. */
void brume_test_etcd_close(brume_test_etcd *server, brume_etcd *client);

/* For a cmocka group whose tests share one etcd and nothing else: declares `server` and `etcd`
 * (file statics) and the group's group_setup and group_teardown, which open and close them with
 * brume_test_etcd_open and brume_test_etcd_close. */
#define BRUME_TEST_ETCD_GROUP()                  \
  static brume_test_etcd *server;                \
  static brume_etcd *etcd;                       \
  static int group_setup(void **state) {         \
    (void)state;                                 \
    return brume_test_etcd_open(&server, &etcd); \
  }                                              \
  static int group_teardown(void **state) {      \
    (void)state;                                 \
    brume_test_etcd_close(server, etcd);         \
    return 0;                                    \
  }

#endif
