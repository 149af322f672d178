/* Test harness: a real NATS server with JetStream on loopback.
 *
 * Each server gets free client and monitoring ports and a fresh store directory under $TMPDIR;
 * its log goes to nats.log next to the store. A restart reuses the ports and the store, so the
 * streams, consumers and messages a test left are there again, as after a real restart. */
#ifndef BRUME_TEST_NATS_SERVER_H
#define BRUME_TEST_NATS_SERVER_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct brume_test_nats {
  char *dir; /* the temp directory holding store/ and nats.log */
  char *log_path;
  int port;      /* clients */
  int http_port; /* monitoring: /healthz */
  char *url;     /* "nats://127.0.0.1:<port>" */
  pid_t pid;     /* -1 while stopped */
} brume_test_nats;

/* Starts nats-server -js and waits until /healthz says JetStream is ready (up to 15 s). NULL and
 * the reason on stderr on failure (nats-server missing: deploy/install-deps.sh installs it). */
brume_test_nats *brume_test_nats_start(void);
/* SIGTERM and wait: a clean shutdown. The store stays. 0 on success. */
int brume_test_nats_stop(brume_test_nats *s);
/* SIGKILL: a crash. The store stays. 0 on success. */
int brume_test_nats_kill(brume_test_nats *s);
/* Starts a stopped server again on the same ports and store, and waits until it is ready. */
int brume_test_nats_restart(brume_test_nats *s);
/* Stops the server if it runs, deletes its directory and frees s. NULL is allowed. */
void brume_test_nats_free(brume_test_nats *s);

#endif
