#include "cluster_fixture.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "brume/frontend.pb-c.h"
#include "err.h"
#include "etcd_server.h"
#include "proc.h"
#include "testutil.h"

brume_test_cluster *brume_test_cluster_prepare(int argc, char **argv, const char *name,
                                               const char *host_prefix, size_t n_workers,
                                               int *exit_code) {
  *exit_code = 77;
  if ((argc != 6 && argc != 8) || n_workers < 1 || n_workers > BRUME_TEST_CLUSTER_MAX_WORKERS) {
    fprintf(stderr,
            "usage: %s GUEST_DIR BRUME_INIT ECHO_RUNTIME_STATIC BRUME_WORKER BRUME_PLACEMENT "
            "[BRUME_COUNTING BRUME_FRONTEND] (run it through ctest)\n",
            argv[0]);
    *exit_code = 1;
    return NULL;
  }
  if (brume_test_worker_prereqs(argv[0]) != 0) return NULL;
  brume_test_cluster *c = calloc(1, sizeof(*c));
  c->placement_bin = argv[5];
  if (argc == 8) {
    c->counting_bin = argv[6];
    c->frontend_bin = argv[7];
  }
  for (size_t i = 0; i < BRUME_TEST_CLUSTER_MAX_PLACEMENT; i++) {
    brume_test_placement *pl = &c->pl[i];
    pl->pid = -1;
    snprintf(pl->daemon_id, sizeof(pl->daemon_id), "pl-%d-%zu", (int)getpid(), i);
    pl->rpc_port = brume_test_free_port();
    pl->http_port = brume_test_free_port();
  }
  brume_test_daemon *cd[] = {&c->counting, &c->frontend};
  for (size_t i = 0; i < 2; i++) {
    cd[i]->pid = -1;
    snprintf(cd[i]->daemon_id, sizeof(cd[i]->daemon_id), "%s-%d", i ? "fe" : "ct", (int)getpid());
    cd[i]->rpc_port = brume_test_free_port();
    cd[i]->http_port = brume_test_free_port();
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

/* Spawns bin with its listeners, daemon id and etcd, then base and extra flags; waits until it
 * listens (gRPC, then HTTP, which daemons start last) and opens d->client. */
static int start_daemon(brume_test_cluster *c, brume_test_daemon *d, const char *bin,
                        const char *const *base, const char *const *extra,
                        const brume_rpc_client_opts *client_opts) {
  char listen[64], http_listen[64];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", d->rpc_port);
  snprintf(http_listen, sizeof(http_listen), "127.0.0.1:%d", d->http_port);
  char *argv[64] = {(char *)bin,
                    "--listen",
                    listen,
                    "--http-listen",
                    http_listen,
                    "--etcd-endpoints",
                    c->workers[0]->etcd->endpoint,
                    "--daemon-id",
                    d->daemon_id};
  size_t n = 9;
  const char *const *lists[] = {base, extra};
  for (size_t l = 0; l < 2; l++)
    for (size_t k = 0; lists[l] && lists[l][k]; k++) {
      if (n + 1 >= sizeof(argv) / sizeof(argv[0])) {
        fprintf(stderr, "cluster fixture: too many flags\n");
        return -1;
      }
      argv[n++] = (char *)lists[l][k];
    }
  argv[n] = NULL;
  d->pid = brume_test_spawn(argv, d->log);
  if (d->pid <= 0 || brume_test_wait_port(d->rpc_port, 60000) < 0 ||
      brume_test_wait_port(d->http_port, 10000) < 0) {
    fprintf(stderr, "cluster fixture: %s did not listen on %d and %d (log %s)\n", bin, d->rpc_port,
            d->http_port, d->log);
    return -1;
  }
  brume_rpc_client_free(d->client);
  brume_err *err = NULL;
  char target[64];
  snprintf(target, sizeof(target), "127.0.0.1:%d", d->rpc_port);
  d->client = brume_rpc_client_new(target, client_opts, &err);
  if (d->client == NULL) {
    fprintf(stderr, "cluster fixture: client: %s\n", err->msg);
    brume_err_free(err);
    return -1;
  }
  return 0;
}

int brume_test_cluster_start_placement(brume_test_cluster *c, size_t i, const char *const *extra) {
  brume_test_placement *pl = &c->pl[i];
  snprintf(pl->log, sizeof(pl->log), "%s/placement-%zu.log", c->workers[0]->dir, i);
  return start_daemon(c, pl, c->placement_bin, NULL, extra, NULL);
}

int brume_test_cluster_start_counting(brume_test_cluster *c, const char *const *extra) {
  if (c->counting_bin == NULL) return -1;
  snprintf(c->counting.log, sizeof(c->counting.log), "%s/counting.log", c->workers[0]->dir);
  return start_daemon(c, &c->counting, c->counting_bin, NULL, extra, NULL);
}

int brume_test_cluster_start_frontend(brume_test_cluster *c, const char *const *extra) {
  if (c->frontend_bin == NULL) return -1;
  snprintf(c->frontend.log, sizeof(c->frontend.log), "%s/frontend.log", c->workers[0]->dir);
  snprintf(c->frontend_dir, sizeof(c->frontend_dir), "%s/frontend", c->workers[0]->dir);
  char counting[64], placement[64];
  snprintf(counting, sizeof(counting), "127.0.0.1:%d", c->counting.rpc_port);
  snprintf(placement, sizeof(placement), "127.0.0.1:%d", c->pl[0].rpc_port);
  const char *base[] = {"--data-dir", c->frontend_dir,    "--counting-addr",
                        counting,     "--placement-addr", placement,
                        NULL};
  brume_rpc_client_opts co = {.max_message_bytes = 64u << 20};
  return start_daemon(c, &c->frontend, c->frontend_bin, base, extra, &co);
}

int brume_test_cluster_stop_daemon(brume_test_daemon *d, int sig) {
  if (d->pid <= 0) return -1;
  int status = brume_test_stop(d->pid, sig, 30000);
  d->pid = -1;
  return status;
}

int brume_test_cluster_bootstrap_key(brume_test_cluster *c, const char *account, char *key,
                                     size_t size) {
  char cmd[2048];
  snprintf(cmd, sizeof(cmd), "'%s' bootstrap-key '%s' --etcd-endpoints '%s' 2>>'%s/bootstrap.log'",
           c->frontend_bin, account, c->workers[0]->etcd->endpoint, c->workers[0]->dir);
  char *line = brume_test_last_line(cmd);
  if (line == NULL || strncmp(line, "brume_", 6) != 0) {
    fprintf(stderr, "cluster fixture: bootstrap-key printed no key\n");
    free(line);
    return -1;
  }
  snprintf(key, size, "%s", line);
  free(line);
  /* The key went to etcd from another process: the frontend knows it once its watch has
   * delivered it. Wait for that (ListFunctions needs any valid key), so that the first call of
   * a test never races the watch. */
  if (c->frontend.client == NULL) return 0;
  const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(
      &brume__frontend__descriptor, "ListFunctions");
  Brume__ListFunctionsRequest req = BRUME__LIST_FUNCTIONS_REQUEST__INIT;
  brume_rpc_call_opts co = {.deadline_ms = 2000, .api_key = key};
  for (int i = 0; i < 100; i++) {
    ProtobufCMessage *reply = NULL;
    brume_err *err = NULL;
    int rc = brume_rpc_unary(c->frontend.client, &brume__frontend__descriptor,
                             (unsigned)(m - brume__frontend__descriptor.methods), &req.base, &reply,
                             &co, &err);
    bool unknown = rc < 0 && err->code == BRUME_UNAUTHENTICATED;
    if (reply) protobuf_c_message_free_unpacked(reply, NULL);
    brume_err_free(err);
    if (!unknown) return 0;
    usleep(50 * 1000);
  }
  fprintf(stderr, "cluster fixture: the frontend did not learn the bootstrap key within 5 s\n");
  return -1;
}

int brume_test_cluster_stop_placement(brume_test_cluster *c, size_t i, int sig) {
  return brume_test_cluster_stop_daemon(&c->pl[i], sig);
}

long long brume_test_cluster_placement_metric(brume_test_cluster *c, size_t i, const char *name) {
  return brume_test_metric(c->pl[i].http_port, name);
}

void brume_test_cluster_dump_logs(brume_test_cluster *c) {
  if (c == NULL || c->n_workers == 0) return;
  for (size_t i = 0; i < BRUME_TEST_CLUSTER_MAX_PLACEMENT; i++)
    if (c->pl[i].log[0] && access(c->pl[i].log, F_OK) == 0) brume_test_dump_file(c->pl[i].log);
  brume_test_daemon *cd[] = {&c->counting, &c->frontend};
  for (size_t i = 0; i < 2; i++)
    if (cd[i]->log[0] && access(cd[i]->log, F_OK) == 0) brume_test_dump_file(cd[i]->log);
  for (size_t i = 0; i < c->n_workers; i++) brume_test_worker_dump_log(c->workers[i]);
}

void brume_test_cluster_free(brume_test_cluster *c) {
  if (c == NULL) return;
  /* The frontend first (it calls the others), then counting, then placement. */
  brume_test_daemon *cd[] = {&c->frontend, &c->counting};
  for (size_t i = 0; i < 2; i++) {
    brume_test_cluster_stop_daemon(cd[i], SIGTERM);
    brume_rpc_client_free(cd[i]->client);
  }
  for (size_t i = 0; i < BRUME_TEST_CLUSTER_MAX_PLACEMENT; i++) {
    brume_test_cluster_stop_placement(c, i, SIGTERM);
    brume_rpc_client_free(c->pl[i].client);
  }
  /* The siblings first: the first worker's etcd is theirs too. */
  for (size_t i = c->n_workers; i-- > 0;) brume_test_worker_free(c->workers[i]);
  free(c);
}

int brume_test_cluster_frontend_call(brume_test_cluster *c, const char *method, const char *key,
                                     const char *request_id, const void *req, void *reply,
                                     brume_err **err) {
  const ProtobufCMethodDescriptor *m =
      protobuf_c_service_descriptor_get_method_by_name(&brume__frontend__descriptor, method);
  if (m == NULL) return brume_err_set(err, BRUME_INVALID_ARGUMENT, "no method %s", method);
  brume_rpc_call_opts o = {
      .deadline_ms = 120000, .api_key = key, .request_id = request_id ? request_id : "test"};
  return brume_rpc_unary(c->frontend.client, &brume__frontend__descriptor,
                         (unsigned)(m - brume__frontend__descriptor.methods), req,
                         (ProtobufCMessage **)reply, &o, err);
}

int brume_test_cluster_create_echo(brume_test_cluster *c, const char *key, const char *fn,
                                   uint32_t timeout_ms, brume_err **err) {
  Brume__CreateFunctionRequest req = BRUME__CREATE_FUNCTION_REQUEST__INIT;
  req.function_name = (char *)fn;
  req.handler = "echo.handler";
  req.handler_mode = BRUME__HANDLER_MODE__HANDLER_MODE_RUNTIME_API;
  req.memory_size_mib = 128;
  req.timeout_ms = timeout_ms;
  req.zip_file.data = c->workers[0]->zip_data;
  req.zip_file.len = c->workers[0]->zip_len;
  Brume__CreateFunctionResponse *resp = NULL;
  if (brume_test_cluster_frontend_call(c, "CreateFunction", key, NULL, &req, &resp, err) < 0)
    return -1;
  protobuf_c_message_free_unpacked(&resp->base, NULL);
  return 0;
}
