/* Test harness: brume-worker as its own process (worker_fixture.h). */
#include "worker_fixture.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "domain.h"
#include "mem.h"
#include "proc.h"
#include "testutil.h"

static void serve_code(const brume_http_request *req, brume_http_response *resp, void *user) {
  (void)req;
  brume_test_worker *w = user;
  brume_http_reply(resp, 200, "application/zip", w->zip_data, w->zip_len);
}

brume_test_worker *brume_test_worker_new(const char *worker_bin, const char *host_id,
                                         brume_err **err) {
  brume_test_worker *w = calloc(1, sizeof(*w));
  if (w == NULL) return NULL;
  w->worker_bin = worker_bin;
  w->pid = -1;
  snprintf(w->host_id, sizeof(w->host_id), "%s", host_id);
  w->conn = brume_libvirt_connect(NULL, err);
  if (w->conn == NULL) {
    free(w);
    return NULL;
  }
  w->name_prefix = brume_domain_name_prefix("brume", w->host_id, err);
  if (w->name_prefix == NULL) {
    brume_test_worker_free(w);
    return NULL;
  }
  return w;
}

int brume_test_worker_guest(brume_test_worker *w, const char *guest_dir, const char *init_bin) {
  brume_autofree char *k = NULL, *i = NULL;
  if (brume_test_guest_image(guest_dir, init_bin, &k, &i) < 0) return -1;
  snprintf(w->kernel, sizeof(w->kernel), "%s", k);
  snprintf(w->initrd, sizeof(w->initrd), "%s", i);
  return 0;
}

int brume_test_worker_setup(brume_test_worker *w, const char *name, const char *runtime_bin) {
  w->dir = brume_test_tmpdir(name);
  if (w->dir == NULL) return -1;
  chmod(w->dir, 0755);

  /* The function: the static echo runtime as bootstrap, served over HTTP. */
  char zip[600], cmd[800];
  snprintf(zip, sizeof(zip), "%s/echo.zip", w->dir);
  if (brume_test_zip_bootstrap(w->dir, runtime_bin, zip) != 0) {
    fprintf(stderr, "worker fixture: making %s failed\n", zip);
    return -1;
  }
  snprintf(cmd, sizeof(cmd), "sha256sum %s", zip);
  brume_autofree char *sum = brume_test_last_line(cmd);
  if (sum == NULL || strlen(sum) < 64) {
    fprintf(stderr, "worker fixture: sha256sum failed\n");
    return -1;
  }
  memcpy(w->zip_sha, sum, 64);
  w->zip_sha[64] = '\0';
  w->zip_data = brume_test_read_file(zip, &w->zip_len);
  if (w->zip_data == NULL) {
    fprintf(stderr, "worker fixture: reading %s failed\n", zip);
    return -1;
  }
  brume_err *err = NULL;
  w->code_http = brume_http_start("127.0.0.1:0", NULL, &err);
  if (w->code_http == NULL) {
    fprintf(stderr, "worker fixture: code server: %s\n", err->msg);
    brume_err_free(err);
    return -1;
  }
  brume_http_route(w->code_http, "GET", "/code/", serve_code, w);
  snprintf(w->code_url, sizeof(w->code_url), "http://127.0.0.1:%d/code/%s.zip",
           brume_http_port(w->code_http), w->zip_sha);

  w->etcd = brume_test_etcd_start();
  if (w->etcd == NULL) {
    fprintf(stderr, "worker fixture: etcd did not start\n");
    return -1;
  }
  w->rpc_port = brume_test_free_port();
  w->http_port = brume_test_free_port();
  return 0;
}

pid_t brume_test_worker_spawn(brume_test_worker *w, const char *const *extra) {
  char listen[64], http_listen[64], kdir[600], rdir[600], cdir[600], log[600];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", w->rpc_port);
  snprintf(http_listen, sizeof(http_listen), "127.0.0.1:%d", w->http_port);
  snprintf(kdir, sizeof(kdir), "%s/images", w->dir);
  snprintf(rdir, sizeof(rdir), "%s/run", w->dir);
  snprintf(cdir, sizeof(cdir), "%s/code", w->dir);
  snprintf(log, sizeof(log), "%s/worker.log", w->dir);
  char *argv[64] = {(char *)w->worker_bin,
                    "--listen",
                    listen,
                    "--http-listen",
                    http_listen,
                    "--etcd-endpoints",
                    w->etcd->endpoint,
                    "--guest-kernel",
                    w->kernel,
                    "--guest-initrd",
                    w->initrd,
                    "--host-id",
                    w->host_id,
                    "--image-dir",
                    kdir,
                    "--run-dir",
                    rdir,
                    "--code-cache-dir",
                    cdir};
  size_t n = 19;
  for (size_t i = 0; extra && extra[i]; i++) {
    if (n + 1 >= sizeof(argv) / sizeof(argv[0])) {
      fprintf(stderr, "worker fixture: too many flags\n");
      return -1;
    }
    argv[n++] = (char *)extra[i];
  }
  argv[n] = NULL;
  w->pid = brume_test_spawn(argv, log);
  if (w->pid <= 0) {
    fprintf(stderr, "worker fixture: could not start %s\n", w->worker_bin);
    w->pid = -1;
  }
  return w->pid;
}

int brume_test_worker_wait(brume_test_worker *w, int timeout_ms) {
  return brume_test_wait_port(w->rpc_port, timeout_ms);
}

brume_rpc_client *brume_test_worker_client(brume_test_worker *w, brume_err **err) {
  char target[64];
  snprintf(target, sizeof(target), "127.0.0.1:%d", w->rpc_port);
  brume_rpc_client_opts co = {.max_message_bytes = 8u << 20};
  return brume_rpc_client_new(target, &co, err);
}

int brume_test_worker_start(brume_test_worker *w, const char *const *extra, double *ms) {
  double t0 = brume_test_mono_ms();
  if (brume_test_worker_spawn(w, extra) <= 0) return -1;
  if (brume_test_worker_wait(w, 120000) < 0) {
    fprintf(stderr, "worker fixture: brume-worker did not listen on %d\n", w->rpc_port);
    return -1;
  }
  if (ms) *ms = brume_test_mono_ms() - t0;
  brume_rpc_client_free(w->client);
  brume_err *err = NULL;
  w->client = brume_test_worker_client(w, &err);
  if (w->client == NULL) {
    fprintf(stderr, "worker fixture: client: %s\n", err->msg);
    brume_err_free(err);
    return -1;
  }
  return 0;
}

int brume_test_worker_stop(brume_test_worker *w, int sig, int timeout_ms) {
  if (w->pid <= 0) return -1;
  int status = brume_test_stop(w->pid, sig, timeout_ms);
  w->pid = -1;
  return status;
}

int brume_test_worker_pool_vms(brume_test_worker *w) {
  char cmd[256];
  snprintf(cmd, sizeof(cmd),
           "curl -s --max-time 5 http://127.0.0.1:%d/metrics | grep '^brume_worker_pool_vms '",
           w->http_port);
  brume_autofree char *line = brume_test_last_line(cmd);
  if (line == NULL) return -1;
  const char *sp = strchr(line, ' ');
  return sp ? atoi(sp + 1) : -1;
}

void brume_test_worker_dump_log(brume_test_worker *w) {
  if (w == NULL || w->dir == NULL) return;
  char path[600];
  snprintf(path, sizeof(path), "%s/worker.log", w->dir);
  brume_test_dump_file(path);
}

void brume_test_worker_free(brume_test_worker *w) {
  if (w == NULL) return;
  brume_test_worker_stop(w, SIGTERM, 30000);
  brume_rpc_client_free(w->client);
  w->client = NULL;
  if (w->conn && w->name_prefix) {
    brume_libvirt_destroy_by_prefix(w->conn, w->name_prefix, NULL);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -f /var/log/libvirt/qemu/%s*.log", w->name_prefix);
    if (system(cmd) != 0) fprintf(stderr, "worker fixture: could not remove the QEMU logs\n");
  }
  if (w->conn) virConnectClose(w->conn);
  if (w->code_http) brume_http_stop(w->code_http);
  brume_test_etcd_free(w->etcd);
  if (w->dir && getenv("BRUME_TEST_KEEP") == NULL) brume_test_rmtree(w->dir);
  else if (w->dir) fprintf(stderr, "worker fixture: kept %s (BRUME_TEST_KEEP)\n", w->dir);
  free(w->dir);
  free(w->zip_data);
  free(w->name_prefix);
  free(w);
}
