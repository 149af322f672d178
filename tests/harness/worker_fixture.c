/* Test harness: brume-worker as its own process (worker_fixture.h). */
#include "worker_fixture.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "domain.h"
#include "mem.h"
#include "proc.h"
#include "testutil.h"

/* GET /code/<sha>.zip: the zip with that digest; any other path is 404. */
static void serve_code(const brume_http_request *req, brume_http_response *resp, void *user) {
  brume_test_worker *w = user;
  const char *file = req->path + strlen("/code/");
  size_t n = strlen(file);
  pthread_mutex_lock(&w->code_mu);
  for (size_t i = 0; i < w->n_codes; i++) {
    const brume_test_code *c = &w->codes[i];
    if (n == 64 + 4 && memcmp(file, c->sha, 64) == 0 && strcmp(file + 64, ".zip") == 0) {
      brume_http_reply(resp, 200, "application/zip", c->data, c->len); /* copies the body */
      pthread_mutex_unlock(&w->code_mu);
      return;
    }
  }
  pthread_mutex_unlock(&w->code_mu);
  brume_http_replyf(resp, 404, "text/plain", "no code at %s\n", req->path);
}

brume_test_worker *brume_test_worker_new(const char *worker_bin, const char *host_id,
                                         brume_err **err) {
  brume_test_worker *w = calloc(1, sizeof(*w));
  if (w == NULL) return NULL;
  w->worker_bin = worker_bin;
  w->pid = -1;
  pthread_mutex_init(&w->code_mu, NULL);
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
  char cmd[700];
  snprintf(cmd, sizeof(cmd), "%s/build-kernel.sh --smp", guest_dir);
  brume_autofree char *smp = brume_test_last_line(cmd);
  if (smp == NULL) return -1;
  snprintf(w->kernel_smp, sizeof(w->kernel_smp), "%s", smp);
  return 0;
}

/* Serves zip (a file) as codes[n_codes] under name. */
static const brume_test_code *add_zip(brume_test_worker *w, const char *name, const char *zip) {
  if (w->n_codes == BRUME_TEST_WORKER_MAX_CODE) {
    fprintf(stderr, "worker fixture: more than %d zips\n", BRUME_TEST_WORKER_MAX_CODE);
    return NULL;
  }
  brume_test_code c = {0};
  snprintf(c.name, sizeof(c.name), "%s", name);
  char cmd[800];
  snprintf(cmd, sizeof(cmd), "sha256sum %s", zip);
  brume_autofree char *sum = brume_test_last_line(cmd);
  if (sum == NULL || strlen(sum) < 64) {
    fprintf(stderr, "worker fixture: sha256sum %s failed\n", zip);
    return NULL;
  }
  memcpy(c.sha, sum, 64);
  c.sha[64] = '\0';
  c.data = brume_test_read_file(zip, &c.len);
  if (c.data == NULL) {
    fprintf(stderr, "worker fixture: reading %s failed\n", zip);
    return NULL;
  }
  snprintf(c.url, sizeof(c.url), "http://127.0.0.1:%d/code/%s.zip", brume_http_port(w->code_http),
           c.sha);
  pthread_mutex_lock(&w->code_mu);
  brume_test_code *slot = &w->codes[w->n_codes++];
  *slot = c;
  pthread_mutex_unlock(&w->code_mu);
  return slot;
}

int brume_test_worker_setup(brume_test_worker *w, const char *name, const char *runtime_bin) {
  w->dir = brume_test_tmpdir(name);
  if (w->dir == NULL) return -1;
  chmod(w->dir, 0755);

  brume_err *err = NULL;
  w->code_http = brume_http_start("127.0.0.1:0", NULL, &err);
  if (w->code_http == NULL) {
    fprintf(stderr, "worker fixture: code server: %s\n", err->msg);
    brume_err_free(err);
    return -1;
  }
  brume_http_route(w->code_http, "GET", "/code/", serve_code, w);

  /* The function: the static echo runtime as bootstrap. */
  char zip[600];
  snprintf(zip, sizeof(zip), "%s/echo.zip", w->dir);
  if (brume_test_zip_bootstrap(w->dir, runtime_bin, zip) != 0) {
    fprintf(stderr, "worker fixture: making %s failed\n", zip);
    return -1;
  }
  const brume_test_code *echo = add_zip(w, "echo", zip);
  if (echo == NULL) return -1;
  w->zip_data = echo->data;
  w->zip_len = echo->len;
  memcpy(w->zip_sha, echo->sha, sizeof(w->zip_sha));
  snprintf(w->code_url, sizeof(w->code_url), "%s", echo->url);

  w->etcd = brume_test_etcd_start();
  if (w->etcd == NULL) {
    fprintf(stderr, "worker fixture: etcd did not start\n");
    return -1;
  }
  w->rpc_port = brume_test_free_port();
  w->http_port = brume_test_free_port();
  return 0;
}

static const char *or_default(const char *v, const char *def) {
  return v ? v : def;
}

void brume_test_spec_init(brume_test_spec *s, const brume_test_worker *w, const brume_test_fn *fn) {
  static const brume_test_fn none = {0};
  if (fn == NULL) fn = &none;
  brume__function_version_ref__init(&s->fref);
  s->fref.account_id = (char *)or_default(fn->account_id, "acct1");
  s->fref.function_name = (char *)or_default(fn->function_name, "echo");
  s->fref.version = (char *)or_default(fn->version, "1");
  brume__function_code__init(&s->fcode);
  const brume_test_code *code = fn->code ? fn->code : &w->codes[0];
  s->fcode.sha256 = (char *)or_default(fn->sha, code->sha);
  s->fcode.url = (char *)code->url;
  s->fcode.size_bytes = code->len;
  brume__resource_spec__init(&s->fres);
  s->fres.memory_mib = fn->memory_mib ? fn->memory_mib : 128;
  s->fres.ephemeral_storage_mib = 512;
  s->fres.vcpu_milli = fn->vcpu_milli;
  size_t n_env = 0;
  for (; fn->env && fn->env[2 * n_env]; n_env++) {
    if (n_env == BRUME_TEST_MAX_ENV) break; /* at most that many, as the header says */
    brume__sandbox_spec__environment_entry__init(&s->env[n_env]);
    s->env[n_env].key = (char *)fn->env[2 * n_env];
    s->env[n_env].value = (char *)fn->env[2 * n_env + 1];
    s->envp[n_env] = &s->env[n_env];
  }
  snprintf(s->arn, sizeof(s->arn), "arn:brume:lambda:local:%s:function:%s:%s", s->fref.account_id,
           s->fref.function_name, s->fref.version);
  brume__sandbox_spec__init(&s->spec);
  s->spec.function = &s->fref;
  s->spec.code = &s->fcode;
  s->spec.resources = &s->fres;
  s->spec.timeout_ms = fn->timeout_ms ? fn->timeout_ms : 5000;
  s->spec.handler_mode = fn->mode ? fn->mode : BRUME__HANDLER_MODE__HANDLER_MODE_RUNTIME_API;
  s->spec.handler = (char *)or_default(fn->handler, "echo.handler");
  s->spec.n_environment = n_env;
  s->spec.environment = s->envp;
  s->spec.function_arn = s->arn;
}

int brume_test_worker_prereqs(const char *prog) {
  if (geteuid() != 0) {
    fprintf(stderr, "%s: skipped: needs root for qemu:///system\n", prog);
    return 77;
  }
  if (!brume_test_etcd_available()) {
    fprintf(stderr, "%s: skipped: no etcd binary on PATH\n", prog);
    return 77;
  }
  return 0;
}

int brume_test_worker_setup_sibling(brume_test_worker *w, const brume_test_worker *first,
                                    const char *name) {
  w->dir = brume_test_tmpdir(name);
  if (w->dir == NULL) return -1;
  chmod(w->dir, 0755);
  memcpy(w->kernel, first->kernel, sizeof(w->kernel));
  memcpy(w->initrd, first->initrd, sizeof(w->initrd));
  memcpy(w->kernel_smp, first->kernel_smp, sizeof(w->kernel_smp));
  w->etcd = first->etcd;
  w->etcd_shared = true;
  w->rpc_port = brume_test_free_port();
  w->http_port = brume_test_free_port();
  return 0;
}

const brume_test_code *brume_test_worker_add_code(brume_test_worker *w, const char *name,
                                                  const brume_test_file *files, size_t n) {
  char stage[600], zip[600], path[1200];
  snprintf(stage, sizeof(stage), "%s/src-%s", w->dir, name);
  snprintf(zip, sizeof(zip), "%s/%s.zip", w->dir, name);
  for (size_t i = 0; i < w->n_codes; i++)
    if (strcmp(w->codes[i].name, name) == 0) {
      fprintf(stderr, "worker fixture: a zip named %s exists already\n", name);
      return NULL;
    }
  for (size_t i = 0; i < n; i++) {
    snprintf(path, sizeof(path), "%s/%s", stage, files[i].path);
    if (brume_test_run("mkdir -p \"$(dirname '%s')\"", path) != 0) return NULL;
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(files[i].text, f) < 0 || fclose(f) != 0 ||
        chmod(path, files[i].mode) != 0) {
      fprintf(stderr, "worker fixture: writing %s failed\n", path);
      return NULL;
    }
  }
  if (brume_test_run("cd %s && zip -q -r %s .", stage, zip) != 0) return NULL;
  return add_zip(w, name, zip);
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
                    cdir,
                    "--guest-kernel-smp",
                    w->kernel_smp};
  size_t n = 21;
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
  if (brume_test_worker_start_wait(w) < 0) return -1;
  if (ms) *ms = brume_test_mono_ms() - t0;
  return 0;
}

int brume_test_worker_start_wait(brume_test_worker *w) {
  if (brume_test_worker_wait(w, 120000) < 0) {
    fprintf(stderr, "worker fixture: brume-worker did not listen on %d\n", w->rpc_port);
    return -1;
  }
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

long long brume_test_worker_metric(brume_test_worker *w, const char *name) {
  return brume_test_metric(w->http_port, name);
}

int brume_test_worker_pool_vms(brume_test_worker *w) {
  return (int)brume_test_worker_metric(w, "brume_worker_pool_vms");
}

/* How many processes have needle in their command line; the pids of the first max of them go to
 * pids. */
static size_t scan_cmdlines(const char *needle, pid_t *pids, size_t max) {
  size_t n = 0;
  DIR *d = opendir("/proc");
  if (d == NULL) return 0;
  char *buf = brume_xmalloc(65536);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char path[300];
    snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
    /* /proc files have no size to stat: read them as a stream. */
    FILE *f = fopen(path, "r");
    if (f == NULL) continue;
    size_t len = fread(buf, 1, 65535, f);
    fclose(f);
    for (size_t i = 0; i < len; i++)
      if (buf[i] == '\0') buf[i] = ' ';
    buf[len] = '\0';
    if (strstr(buf, needle) == NULL) continue;
    if (n < max) pids[n] = (pid_t)atoi(e->d_name);
    n++;
  }
  free(buf);
  closedir(d);
  return n;
}

pid_t brume_test_qemu_pid(const char *name) {
  char needle[300];
  snprintf(needle, sizeof(needle), "guest=%s,", name);
  pid_t pid = 0;
  scan_cmdlines(needle, &pid, 1);
  return pid;
}

/* How many QEMUs run domains whose names start with prefix; the first max pids go to pids. */
static size_t scan_qemus(const char *prefix, pid_t *pids, size_t max) {
  char needle[300];
  snprintf(needle, sizeof(needle), "guest=%s", prefix);
  return scan_cmdlines(needle, pids, max);
}

size_t brume_test_qemu_count(const char *prefix) {
  return scan_qemus(prefix, NULL, 0);
}

size_t brume_test_qemu_pids(const char *prefix, pid_t *pids, size_t max) {
  size_t n = scan_qemus(prefix, pids, max);
  return n < max ? n : max;
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
  if (!w->etcd_shared) brume_test_etcd_free(w->etcd);
  if (w->dir && getenv("BRUME_TEST_KEEP") == NULL)
    brume_test_rmtree(w->dir);
  else if (w->dir)
    fprintf(stderr, "worker fixture: kept %s (BRUME_TEST_KEEP)\n", w->dir);
  free(w->dir);
  for (size_t i = 0; i < w->n_codes; i++) free(w->codes[i].data);
  pthread_mutex_destroy(&w->code_mu);
  free(w->name_prefix);
  free(w);
}
