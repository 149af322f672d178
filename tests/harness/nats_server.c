#include "nats_server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mem.h"
#include "proc.h"

enum { START_TIMEOUT_MS = 15000, STOP_TIMEOUT_MS = 5000, START_ATTEMPTS = 3 };

/* GET /healthz on the monitoring port: 200 and "ok" once JetStream is up. */
static bool healthz_once(int port) {
  char resp[2048];
  return brume_test_http_get(port, "/healthz", resp, sizeof(resp)) > 0 &&
         strncmp(resp, "HTTP/1.", 7) == 0 && strstr(resp, " 200 ") != NULL &&
         strstr(resp, "\"ok\"") != NULL;
}

static int launch(brume_test_nats *s) {
  char port[16], http_port[16];
  snprintf(port, sizeof(port), "%d", s->port);
  snprintf(http_port, sizeof(http_port), "%d", s->http_port);
  brume_autofree char *store = brume_xasprintf("%s/store", s->dir);
  char *argv[] = {"nats-server", "-a",  "127.0.0.1", "-p", port,         "-m", http_port,
                  "-js",         "-sd", store,       "-n", "brume-test", NULL};
  s->pid = brume_test_spawn(argv, s->log_path);
  if (s->pid < 0) return -1;
  long long end = brume_test_now_ms() + START_TIMEOUT_MS;
  while (brume_test_now_ms() < end) {
    if (healthz_once(s->http_port)) return 0;
    if (waitpid(s->pid, NULL, WNOHANG) == s->pid) break;
    usleep(50000);
  }
  fprintf(stderr, "nats-server on port %d did not become ready; its log: %s\n", s->port,
          s->log_path);
  brume_test_stop(s->pid, SIGKILL, STOP_TIMEOUT_MS);
  s->pid = -1;
  return -1;
}

brume_test_nats *brume_test_nats_start(void) {
  brume_test_nats *s = brume_xcalloc(1, sizeof(*s));
  s->pid = -1;
  s->dir = brume_test_tmpdir("brume-nats");
  s->log_path = brume_xasprintf("%s/nats.log", s->dir);
  for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    s->port = brume_test_free_port();
    s->http_port = brume_test_free_port();
    if (s->port < 0 || s->http_port < 0) break;
    if (launch(s) == 0) {
      s->url = brume_xasprintf("nats://127.0.0.1:%d", s->port);
      return s;
    }
  }
  fprintf(stderr, "cannot start nats-server (is it installed? deploy/install-deps.sh)\n");
  brume_test_nats_free(s);
  return NULL;
}

static int stop_with(brume_test_nats *s, int sig) {
  if (s->pid < 0) return 0;
  brume_test_stop(s->pid, sig, STOP_TIMEOUT_MS);
  s->pid = -1;
  return 0;
}

int brume_test_nats_stop(brume_test_nats *s) {
  return stop_with(s, SIGTERM);
}
int brume_test_nats_kill(brume_test_nats *s) {
  return stop_with(s, SIGKILL);
}

int brume_test_nats_restart(brume_test_nats *s) {
  stop_with(s, SIGTERM);
  for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    if (launch(s) == 0) return 0;
    usleep(200000);
  }
  return -1;
}

void brume_test_nats_free(brume_test_nats *s) {
  if (s == NULL) return;
  stop_with(s, SIGTERM);
  if (s->dir) brume_test_rmtree(s->dir);
  free(s->dir);
  free(s->log_path);
  free(s->url);
  free(s);
}
