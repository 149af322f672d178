/* Test harness: Worker gRPC calls and shared checks for the cmocka tests (worker_calls.h). */
#include "worker_calls.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "domain.h"
#include "mem.h"
#include "proc.h"
#include "testutil.h"

brume_test_worker *brume_test_worker_prepare(int argc, char **argv, const char *name,
                                             const char *host_prefix, int *exit_code) {
  *exit_code = 77;
  if (argc != 5) {
    fprintf(stderr,
            "usage: %s GUEST_DIR BRUME_INIT ECHO_RUNTIME_STATIC BRUME_WORKER (run it through "
            "ctest)\n",
            argv[0]);
    *exit_code = 1;
    return NULL;
  }
  if (brume_test_worker_prereqs(argv[0]) != 0) return NULL;
  brume_err *err = NULL;
  char host_id[32];
  snprintf(host_id, sizeof(host_id), "%s%d", host_prefix, (int)getpid());
  brume_test_worker *w = brume_test_worker_new(argv[4], host_id, &err);
  if (w == NULL) {
    fprintf(stderr, "%s: skipped: %s\n", argv[0], err->msg);
    brume_err_free(err);
    return NULL;
  }
  if (brume_test_worker_guest(w, argv[1], argv[2]) < 0) {
    fprintf(stderr, "%s: skipped: the guest image cannot be built\n", argv[0]);
    brume_test_worker_free(w);
    return NULL;
  }
  if (brume_test_worker_setup(w, name, argv[3]) < 0) {
    brume_test_worker_free(w);
    *exit_code = 1;
    return NULL;
  }
  return w;
}

int brume_test_worker_call(brume_test_worker *w, unsigned method, const void *req, void *reply,
                           brume_err **err) {
  brume_rpc_call_opts o = {
      .deadline_ms = 120000, .request_id = "brume-test-worker", .wait_for_ready = true};
  return brume_rpc_unary(w->client, &brume__worker__descriptor, method, req,
                         (ProtobufCMessage **)reply, &o, err);
}

int brume_test_worker_create(brume_test_worker *w, const brume_test_fn *fn, char *id, size_t idsize,
                             double *ms, bool *hit, brume_err **err) {
  brume_test_spec ts;
  brume_test_spec_init(&ts, w, fn);
  Brume__SandboxSpec spec = ts.spec;
  Brume__FunctionVersionRef fref = ts.fref;
  Brume__WorkerCreateSandboxRequest req = BRUME__WORKER_CREATE_SANDBOX_REQUEST__INIT;
  req.spec = &spec;
  req.caller_id = "test/worker";
  Brume__WorkerCreateSandboxResponse *resp = NULL;
  double t0 = brume_test_mono_ms();
  if (brume_test_worker_call(w, BRUME_TEST_W_CREATE, &req, &resp, err) < 0) return (*err)->code;
  if (ms) *ms = brume_test_mono_ms() - t0;
  if (resp->init_error)
    fail_msg("init error %s: %s", resp->init_error->type, resp->init_error->message);
  if (hit)
    *hit = resp->pool_hit;
  else
    assert_false(resp->pool_hit);
  assert_true(resp->init_duration_us > 0);
  if (resp->pool_hit)
    assert_int_equal(resp->vm_ready_us, 0);
  else
    assert_true(resp->vm_ready_us > 0 && resp->vm_ready_us <= resp->init_duration_us);
  print_message(
      "# CreateSandbox %s/%s (%s): init %.1f ms = vm ready %.1f ms + code %.1f ms + runtime %.1f "
      "ms\n",
      fref.account_id, fref.function_name, resp->pool_hit ? "pool hit" : "boot",
      resp->init_duration_us / 1000.0, resp->vm_ready_us / 1000.0, resp->code_load_us / 1000.0,
      resp->runtime_init_us / 1000.0);
  snprintf(id, idsize, "%s", resp->sandbox_id);
  brume__worker_create_sandbox_response__free_unpacked(resp, NULL);
  return 0;
}

int brume_test_worker_invoke(brume_test_worker *w, const char *id, const char *rid,
                             const void *payload, size_t len, Brume__WorkerInvokeResponse **resp,
                             brume_err **err) {
  Brume__WorkerInvokeRequest req = BRUME__WORKER_INVOKE_REQUEST__INIT;
  req.sandbox_id = (char *)id;
  req.request_id = (char *)rid;
  req.payload.data = (uint8_t *)payload;
  req.payload.len = len;
  return brume_test_worker_call(w, BRUME_TEST_W_INVOKE, &req, resp, err);
}

uint64_t brume_test_worker_expect_reply(brume_test_worker *w, const char *id, const char *rid,
                                        const char *payload, const char *want) {
  brume_err *err = NULL;
  Brume__WorkerInvokeResponse *r = NULL;
  if (brume_test_worker_invoke(w, id, rid, payload, strlen(payload), &r, &err) < 0)
    fail_msg("Invoke %s of %s: %s", rid, id, err->msg);
  if (r->function_error)
    fail_msg("Invoke %s of %s: function error %s: %s", rid, id, r->function_error->type,
             r->function_error->message);
  if (r->payload.len != strlen(want) || memcmp(r->payload.data, want, r->payload.len) != 0)
    fail_msg("Invoke %s of %s: payload \"%.*s\", want \"%s\"", rid, id, (int)r->payload.len,
             (const char *)r->payload.data, want);
  assert_int_equal(r->state, BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE);
  uint64_t us = r->duration_us;
  brume__worker_invoke_response__free_unpacked(r, NULL);
  return us;
}

void brume_test_worker_destroy(brume_test_worker *w, const char *id) {
  brume_err *err = NULL;
  Brume__WorkerDestroyRequest dr = BRUME__WORKER_DESTROY_REQUEST__INIT;
  dr.sandbox_id = (char *)id;
  Brume__WorkerDestroyResponse *d = NULL;
  double t0 = brume_test_mono_ms();
  if (brume_test_worker_call(w, BRUME_TEST_W_DESTROY, &dr, &d, &err) < 0)
    fail_msg("Destroy %s: %s", id, err->msg);
  print_message("# Destroy %s %.0f ms\n", id, brume_test_mono_ms() - t0);
  assert_int_equal(d->state, BRUME__SANDBOX_STATE__SANDBOX_STATE_GONE);
  brume__worker_destroy_response__free_unpacked(d, NULL);
}

void brume_test_expect_code(int rc, const brume_err *err, brume_status want, const char *what) {
  if (rc == 0) fail_msg("%s: succeeded, want status %d", what, want);
  if ((int)err->code != (int)want)
    fail_msg("%s: status %d (%s), want %d", what, err->code, err->msg, want);
}

size_t brume_test_worker_domains(brume_test_worker *w) {
  size_t n = 0;
  brume_err *err = NULL;
  char **names = brume_libvirt_list_by_prefix(w->conn, w->name_prefix, &n, &err);
  if (names == NULL) fail_msg("list domains: %s", err->msg);
  brume_libvirt_names_free(names);
  return n;
}

char *brume_test_worker_domain_name(brume_test_worker *w, const char *id) {
  char *name = brume_domain_name("brume", w->host_id, id, NULL);
  assert_non_null(name);
  return name;
}

int brume_test_worker_domain_state(brume_test_worker *w, const char *id) {
  brume_err *err = NULL;
  brume_autofree char *name = brume_test_worker_domain_name(w, id);
  virDomainPtr dom = brume_libvirt_lookup(w->conn, name, &err);
  if (dom == NULL) {
    if (err->code != BRUME_NOT_FOUND) fail_msg("lookup %s: %s", name, err->msg);
    brume_err_free(err);
    return -1;
  }
  int st = -2;
  int rc = brume_libvirt_state(dom, &st, NULL, &err);
  virDomainFree(dom);
  if (rc < 0) {
    /* Destroyed between the lookup and the question (a TERMINATING sandbox goes after its
     * answer): as good as not found. */
    if (err->code != BRUME_NOT_FOUND) fail_msg("state of %s: %s", name, err->msg);
    brume_err_free(err);
    return -1;
  }
  return st;
}

double brume_test_worker_expect_no_vm(brume_test_worker *w, const char *id) {
  brume_autofree char *name = brume_test_worker_domain_name(w, id);
  double t0 = brume_test_mono_ms();
  long long end = brume_test_now_ms() + 5000;
  while (brume_test_worker_domain_state(w, id) != -1 && brume_test_now_ms() < end)
    usleep(20 * 1000);
  assert_int_equal(brume_test_worker_domain_state(w, id), -1);
  while (brume_test_qemu_pid(name) != 0 && brume_test_now_ms() < end) usleep(20 * 1000);
  pid_t pid = brume_test_qemu_pid(name);
  if (pid != 0) fail_msg("QEMU of %s (pid %d) still runs 5 s after its domain went", name, pid);
  return brume_test_mono_ms() - t0;
}

void brume_test_worker_run(brume_test_worker *w, const char *const *extra) {
  double ms = 0;
  if (brume_test_worker_start(w, extra, &ms) < 0) {
    brume_test_worker_dump_log(w);
    fail_msg("brume-worker did not start and listen on %d", w->rpc_port);
  }
  print_message("# worker start (libvirt, cleanup, accelerator probe, etcd) %.0f ms\n", ms);
}

void brume_test_worker_wait_pool(brume_test_worker *w, int want, int timeout_ms, const char *what) {
  double t0 = brume_test_mono_ms();
  long long end = brume_test_now_ms() + timeout_ms;
  while (brume_test_worker_pool_vms(w) != want && brume_test_now_ms() < end) usleep(100 * 1000);
  if (brume_test_worker_pool_vms(w) != want) {
    brume_test_worker_dump_log(w);
    fail_msg("%s: the pool holds %d VMs after %d ms, want %d", what, brume_test_worker_pool_vms(w),
             timeout_ms, want);
  }
  print_message("# %s: pool of %d ready after %.0f ms\n", what, want, brume_test_mono_ms() - t0);
}
