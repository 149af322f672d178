/* Test harness: the Worker gRPC calls the cmocka tests of brume-worker make through a
 * brume_test_worker (worker_fixture.h), and the checks they share. Unlike the fixture these fail
 * the running cmocka test (fail_msg, assert_*) where a call that must succeed does not; calls
 * that may fail on purpose return their status instead. Used by tests/worker/test_worker_daemon
 * and test_worker_functions. */
#ifndef BRUME_TEST_WORKER_CALLS_H
#define BRUME_TEST_WORKER_CALLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "brume/worker.pb-c.h"
#include "err.h"
#include "worker_fixture.h"

/* The Worker service's methods, in worker.proto's order. */
enum {
  BRUME_TEST_W_CREATE,
  BRUME_TEST_W_INVOKE,
  BRUME_TEST_W_FREEZE,
  BRUME_TEST_W_THAW,
  BRUME_TEST_W_DESTROY,
  BRUME_TEST_W_LIST,
  BRUME_TEST_W_STATS,
  BRUME_TEST_W_DRAIN
};

/* What a worker test's main does first, for argv = GUEST_DIR BRUME_INIT ECHO_RUNTIME_STATIC
 * BRUME_WORKER: checks root, etcd and libvirtd, builds the guest image and sets the fixture up
 * under name (brume_test_worker_setup) with host id <host_prefix><pid>; the worker is not
 * started. Returns the fixture, or NULL with *exit_code 77 (skip: the reason on stderr) or 1. */
brume_test_worker *brume_test_worker_prepare(int argc, char **argv, const char *name,
                                             const char *host_prefix, int *exit_code);

/* One call on w->client (deadline 120 s, waits for the channel). 0, or -1 with *err. */
int brume_test_worker_call(brume_test_worker *w, unsigned method, const void *req, void *reply,
                           brume_err **err);

/* CreateSandbox of fn; returns 0 and fills id, or the status code with *err. On success the
 * test fails on an init error or inconsistent timings; *ms (may be NULL) gets the round trip,
 * *hit gets pool_hit (NULL: it must be false). */
int brume_test_worker_create(brume_test_worker *w, const brume_test_fn *fn, char *id, size_t idsize,
                             double *ms, bool *hit, brume_err **err);

/* Invoke of sandbox id with request id rid; 0 with *resp (caller frees), or -1 with *err. */
int brume_test_worker_invoke(brume_test_worker *w, const char *id, const char *rid,
                             const void *payload, size_t len, Brume__WorkerInvokeResponse **resp,
                             brume_err **err);

/* Invokes id with payload and fails the test unless the answer is exactly want, with no function
 * error and the sandbox IDLE. Returns the invocation's duration_us (as the guest measured it). */
uint64_t brume_test_worker_expect_reply(brume_test_worker *w, const char *id, const char *rid,
                                        const char *payload, const char *want);

/* Destroy of id (the worker's grace); fails the test unless it answers GONE. */
void brume_test_worker_destroy(brume_test_worker *w, const char *id);

/* Fails the test unless the call failed (rc != 0) with status want. */
void brume_test_expect_code(int rc, const brume_err *err, brume_status want, const char *what);

/* How many libvirt domains the worker's host id has (sandboxes and pooled VMs). */
size_t brume_test_worker_domains(brume_test_worker *w);

/* Sandbox id's domain state (VIR_DOMAIN_*), -1 when libvirt has no such domain. */
int brume_test_worker_domain_state(brume_test_worker *w, const char *id);

/* Sandbox id's domain name (caller frees). */
char *brume_test_worker_domain_name(brume_test_worker *w, const char *id);

/* Fails the test unless, within 5 s, sandbox id's domain is unknown to libvirt and no process
 * runs its QEMU (a TERMINATING sandbox is destroyed after its answer; a destroyed QEMU still has
 * to be reaped); returns how long that took, in ms. */
double brume_test_worker_expect_no_vm(brume_test_worker *w, const char *id);

/* Starts the worker with extra flags and a fresh w->client; on failure prints worker.log and
 * fails the test. Prints the time to listen. */
void brume_test_worker_run(brume_test_worker *w, const char *const *extra);

/* Waits up to timeout_ms until the pool holds want VMs, or fails the test (what names the
 * moment); prints how long it took. */
void brume_test_worker_wait_pool(brume_test_worker *w, int want, int timeout_ms, const char *what);

#endif
