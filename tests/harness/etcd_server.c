#include "etcd_server.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc.h"

enum { START_TIMEOUT_MS = 15000, STOP_TIMEOUT_MS = 5000, START_ATTEMPTS = 3 };

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0) abort();
  va_end(ap);
  return s;
}

bool brume_test_etcd_available(void) {
  const char *path = getenv("PATH");
  if (path == NULL) return false;
  char *copy = strdup(path), *save = NULL;
  bool found = false;
  for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
    char *p = xasprintf("%s/etcd", d);
    found = access(p, X_OK) == 0;
    free(p);
  }
  free(copy);
  return found;
}

static bool health_once(int port) {
  char resp[4096];
  return brume_test_http_get(port, "/health", resp, sizeof(resp)) > 0 &&
         strstr(resp, "\"health\":\"true\"") != NULL;
}

/* Where plain-HTTP /health answers: the client port, or with TLS the metrics port. */
static int health_port(const brume_test_etcd *s) {
  return s->pki_dir ? s->metrics_port : s->client_port;
}

bool brume_test_etcd_healthy(const brume_test_etcd *s, int timeout_ms) {
  long long end = brume_test_now_ms() + timeout_ms;
  do {
    if (health_once(health_port(s))) return true;
    usleep(50000);
  } while (brume_test_now_ms() < end);
  return false;
}

int brume_test_etcd_compact(const brume_test_etcd *s, int64_t revision) {
  CURL *h = curl_easy_init();
  if (h == NULL) return -1;
  char *url = xasprintf("%s/v3/kv/compaction", s->endpoint);
  char *body = xasprintf("{\"revision\":\"%" PRId64 "\"}", revision);
  FILE *devnull = fopen("/dev/null", "w");
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, devnull);
  long http = 0;
  if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
  if (devnull) fclose(devnull);
  curl_easy_cleanup(h);
  free(url);
  free(body);
  return http == 200 ? 0 : -1;
}

static bool exited(pid_t pid) {
  int st;
  return waitpid(pid, &st, WNOHANG) == pid;
}

/* Launches etcd on s's ports and data and waits for health. On failure the child is gone. */
static int launch(brume_test_etcd *s) {
  const char *scheme = s->pki_dir ? "https" : "http";
  char *client = xasprintf("%s://127.0.0.1:%d", scheme, s->client_port);
  char *peer = xasprintf("http://127.0.0.1:%d", s->peer_port);
  char *cluster = xasprintf("brume-test=%s", peer);
  char *metrics = xasprintf("http://127.0.0.1:%d", s->metrics_port);
  char *cert = xasprintf("%s/server.pem", s->pki_dir ? s->pki_dir : "");
  char *key = xasprintf("%s/server.key", s->pki_dir ? s->pki_dir : "");
  char *ca = xasprintf("%s/ca.pem", s->pki_dir ? s->pki_dir : "");
  /* clang-format off */
  char *argv[48] = {"etcd",
                  "--name", "brume-test",
                  "--data-dir", s->data_dir,
                  "--listen-client-urls", client,
                  "--advertise-client-urls", client,
                  "--listen-peer-urls", peer,
                  "--initial-advertise-peer-urls", peer,
                  "--initial-cluster", cluster,
                  "--initial-cluster-state", "new",
                  "--initial-cluster-token", "brume-test",
                  "--logger", "zap",
                  "--log-outputs", "stderr",
                  NULL};
  /* clang-format on */
  if (s->pki_dir) {
    char *tls[] = {"--cert-file",
                   cert,
                   "--key-file",
                   key,
                   "--trusted-ca-file",
                   ca,
                   "--client-cert-auth",
                   "--listen-metrics-urls",
                   metrics,
                   NULL};
    size_t n = 0;
    while (argv[n]) n++;
    for (size_t i = 0; tls[i]; i++) {
      if (n + 1 >= sizeof(argv) / sizeof(argv[0])) abort();
      argv[n++] = tls[i];
    }
    argv[n] = NULL;
  }
  s->pid = brume_test_spawn(argv, s->log_path);
  free(client);
  free(peer);
  free(cluster);
  free(metrics);
  free(cert);
  free(key);
  free(ca);
  if (s->pid < 0) return -1;
  long long end = brume_test_now_ms() + START_TIMEOUT_MS;
  while (brume_test_now_ms() < end) {
    if (exited(s->pid)) {
      s->pid = -1;
      fprintf(stderr, "etcd_server: etcd exited during start-up; see %s\n", s->log_path);
      return -1;
    }
    if (health_once(health_port(s))) return 0;
    usleep(50000);
  }
  fprintf(stderr, "etcd_server: etcd not healthy after %d ms; see %s\n", START_TIMEOUT_MS,
          s->log_path);
  brume_test_stop(s->pid, SIGKILL, STOP_TIMEOUT_MS);
  s->pid = -1;
  return -1;
}

static brume_test_etcd *start(const char *pki_dir) {
  brume_test_etcd *s = calloc(1, sizeof(*s));
  if (s == NULL) abort();
  s->pid = -1;
  s->dir = brume_test_tmpdir("etcd");
  s->data_dir = xasprintf("%s/data", s->dir);
  s->log_path = xasprintf("%s/etcd.log", s->dir);
  if (pki_dir) s->pki_dir = xasprintf("%s", pki_dir);
  /* A free port can be taken by someone else before etcd binds it: try fresh ones. */
  for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    s->client_port = brume_test_free_port();
    do s->peer_port = brume_test_free_port();
    while (s->peer_port == s->client_port);
    do s->metrics_port = brume_test_free_port();
    while (s->metrics_port == s->client_port || s->metrics_port == s->peer_port);
    free(s->endpoint);
    s->endpoint = xasprintf("%s://127.0.0.1:%d", pki_dir ? "https" : "http", s->client_port);
    if (launch(s) == 0) return s;
    brume_test_rmtree(s->data_dir);
  }
  brume_test_etcd_free(s);
  return NULL;
}

brume_test_etcd *brume_test_etcd_start(void) {
  return start(NULL);
}

brume_test_etcd *brume_test_etcd_start_tls(const char *pki_dir) {
  return start(pki_dir);
}

static int stop_with(brume_test_etcd *s, int sig) {
  if (s->pid < 0) return 0;
  brume_test_stop(s->pid, sig, STOP_TIMEOUT_MS);
  s->pid = -1;
  return 0;
}

int brume_test_etcd_stop(brume_test_etcd *s) {
  return stop_with(s, SIGTERM);
}
int brume_test_etcd_kill(brume_test_etcd *s) {
  return stop_with(s, SIGKILL);
}

int brume_test_etcd_restart(brume_test_etcd *s) {
  if (s->pid >= 0) stop_with(s, SIGTERM);
  /* The ports were ours a moment ago; a few tries cover a socket still being torn down. */
  for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    if (launch(s) == 0) return 0;
    usleep(200000);
  }
  return -1;
}

void brume_test_etcd_free(brume_test_etcd *s) {
  if (s == NULL) return;
  stop_with(s, SIGTERM);
  if (s->dir && getenv("BRUME_TEST_KEEP") == NULL) brume_test_rmtree(s->dir);
  free(s->dir);
  free(s->data_dir);
  free(s->log_path);
  free(s->endpoint);
  free(s->pki_dir);
  free(s);
}

int brume_test_etcd_open(brume_test_etcd **server, brume_etcd **client) {
  *client = NULL;
  if ((*server = brume_test_etcd_start()) == NULL) return -1;
  brume_err *err = NULL;
  *client = brume_etcd_new((*server)->endpoint, &(brume_etcd_opts){.timeout_ms = 2000}, &err);
  if (*client != NULL) return 0;
  fprintf(stderr, "brume_etcd_new: %s\n", err->msg);
  brume_err_free(err);
  brume_test_etcd_free(*server);
  *server = NULL;
  return -1;
}

void brume_test_etcd_close(brume_test_etcd *server, brume_etcd *client) {
  brume_etcd_free(client);
  brume_test_etcd_free(server);
}
