/* Test harness: brume-counting daemons as processes on one real etcd, each on free loopback
 * ports, for the tests that need more than one (tests/counting). No cmocka here: failures return
 * -1 with a line on stderr. */
#ifndef BRUME_TEST_COUNTING_PROC_H
#define BRUME_TEST_COUNTING_PROC_H

#include <sys/types.h>

typedef struct brume_test_counting {
  char id[32];         /* its daemon_id: its tokens start with "<id>." */
  int port, http_port; /* gRPC and HTTP (/healthz, /metrics) on 127.0.0.1 */
  pid_t pid;           /* -1 while stopped */
  char log_path[512];  /* appended to across restarts */
} brume_test_counting;

/* Fills d (id, two free ports, log_path = <dir>/<id>.log); nothing is started. -1 when no free
 * port is found. */
int brume_test_counting_init(brume_test_counting *d, const char *id, const char *dir);
/* Starts brume-counting (bin) as d against etcd_endpoint under prefix with lease_ttl_s, at info
 * level, and waits until both listeners accept (20 s). A restart keeps d's id and ports. 0, or
 * -1 with the end of its log on stderr and nothing left running. */
int brume_test_counting_start(brume_test_counting *d, const char *bin, const char *etcd_endpoint,
                              const char *prefix, int lease_ttl_s);
/* Sends sig (SIGKILL: a crash) and reaps the daemon; its wait status, or -1 when none runs. */
int brume_test_counting_stop(brume_test_counting *d, int sig);

#endif
