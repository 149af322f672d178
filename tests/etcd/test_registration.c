/* Service registration (common/registration.c) against a real etcd: the key lives exactly as
 * long as its daemon, comes back when its lease is lost, and reports its health. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "etcd.h"
#include "etcd_server.h"
#include "proc.h"
#include "registration.h"

BRUME_TEST_ETCD_GROUP()

/* The key's value, or NULL when it is absent. */
static char *value_of(const char *key) {
  brume_etcd_kv *kv = NULL;
  if (brume_etcd_get(etcd, key, &kv, NULL, NULL) < 0 || kv == NULL) return NULL;
  char *v = brume_xstrdup(kv->value);
  brume_etcd_kv_free(kv);
  return v;
}

/* Polls until the key's presence equals want, up to timeout_ms; returns the time it took or -1. */
static long long wait_presence(const char *key, bool want, int timeout_ms) {
  long long t0 = brume_test_now_ms();
  while (brume_test_now_ms() - t0 < timeout_ms) {
    char *v = value_of(key);
    bool present = v != NULL;
    free(v);
    if (present == want) return brume_test_now_ms() - t0;
    usleep(50000);
  }
  return -1;
}

static void test_register_update_free(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_registration *reg =
      brume_register(etcd, "/t1", "worker", "w1", "{\"addr\":\"127.0.0.1:7000\"}", 3, &err);
  assert_non_null(reg);
  assert_true(brume_registration_healthy(reg));
  brume_autofree char *key = brume_registration_key("/t1", "worker", "w1");
  assert_string_equal(key, "/t1/svc/worker/w1");
  brume_autofree char *v1 = value_of(key);
  assert_string_equal(v1, "{\"addr\":\"127.0.0.1:7000\"}");

  brume_etcd_kv *kv = NULL;
  assert_int_equal(brume_etcd_get(etcd, key, &kv, NULL, NULL), 0);
  assert_int_equal(kv->lease, brume_registration_lease(reg));
  brume_etcd_kv_free(kv);

  assert_int_equal(brume_registration_update(reg, "{\"free_mib\":100}", NULL), 0);
  brume_autofree char *v2 = value_of(key);
  assert_string_equal(v2, "{\"free_mib\":100}");

  /* Renewals keep it alive past its TTL. */
  sleep(4);
  assert_true(brume_registration_healthy(reg));
  assert_true(wait_presence(key, true, 100) >= 0);

  brume_registration_free(reg);
  assert_true(wait_presence(key, false, 100) >= 0); /* gone at once: the lease is revoked */
}

static void test_lost_lease_registers_again(void **state) {
  (void)state;
  brume_registration *reg = brume_register(etcd, "/t2", "counting", "c1", "v", 3, NULL);
  assert_non_null(reg);
  brume_autofree char *key = brume_registration_key("/t2", "counting", "c1");
  int64_t first = brume_registration_lease(reg);
  /* Someone (an operator, an etcd outage longer than the TTL) ends the lease. */
  assert_int_equal(brume_etcd_lease_revoke(etcd, first, NULL), 0);
  assert_true(wait_presence(key, false, 1000) >= 0);
  long long back = wait_presence(key, true, 5000);
  printf("# registered again %lld ms after its lease was revoked\n", back);
  assert_true(back >= 0);
  assert_int_not_equal(brume_registration_lease(reg), first);
  assert_true(brume_registration_healthy(reg));
  brume_registration_free(reg);
}

static void test_unhealthy_while_etcd_is_down(void **state) {
  (void)state;
  brume_registration *reg = brume_register(etcd, "/t3", "frontend", "f1", "v", 2, NULL);
  assert_non_null(reg);
  assert_int_equal(brume_test_etcd_stop(server), 0);
  sleep(3); /* longer than the TTL without a renewal */
  assert_false(brume_registration_healthy(reg));
  assert_int_equal(brume_test_etcd_restart(server), 0);
  long long t0 = brume_test_now_ms();
  while (!brume_registration_healthy(reg) && brume_test_now_ms() - t0 < 8000) usleep(50000);
  printf("# healthy again %lld ms after etcd came back\n", brume_test_now_ms() - t0);
  assert_true(brume_registration_healthy(reg));
  brume_autofree char *key = brume_registration_key("/t3", "frontend", "f1");
  assert_true(wait_presence(key, true, 1000) >= 0);
  brume_registration_free(reg);
}

/* A daemon killed with SIGKILL cannot revoke anything: its key goes with its lease. */
static void test_dead_daemon_disappears_within_ttl(void **state) {
  (void)state;
  int ready[2];
  assert_int_equal(pipe(ready), 0);
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
    brume_etcd *own = brume_etcd_new(server->endpoint, NULL, NULL);
    brume_registration *reg =
        own ? brume_register(own, "/t4", "placement", "p1", "v", 2, NULL) : NULL;
    ssize_t w = write(ready[1], reg ? "y" : "n", 1);
    (void)w;
    for (;;) pause();
  }
  char c = 0;
  assert_int_equal(read(ready[0], &c, 1), 1);
  close(ready[0]);
  close(ready[1]);
  assert_int_equal(c, 'y');
  brume_autofree char *key = brume_registration_key("/t4", "placement", "p1");
  assert_true(wait_presence(key, true, 100) >= 0);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  long long gone = wait_presence(key, false, 6000);
  printf("# key gone %lld ms after SIGKILL (TTL 2 s)\n", gone);
  assert_true(gone >= 0);
}

static void test_bad_ttl_and_etcd_down(void **state) {
  (void)state;
  brume_err *err = NULL;
  assert_null(brume_register(etcd, "/t5", "worker", "w", "v", 1, &err));
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_clear(&err);
  brume_etcd *dead =
      brume_etcd_new("http://127.0.0.1:1", &(brume_etcd_opts){.timeout_ms = 500}, NULL);
  assert_null(brume_register(dead, "/t5", "worker", "w", "v", 3, &err));
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  assert_non_null(strstr(err->msg, "/t5/svc/worker/w"));
  brume_err_free(err);
  brume_etcd_free(dead);
}

int main(void) {
  if (!brume_test_etcd_available()) {
    fprintf(stderr, "etcd is not installed (deploy/install-deps.sh installs it): skipping\n");
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_register_update_free),
      cmocka_unit_test(test_lost_lease_registers_again),
      cmocka_unit_test(test_dead_daemon_disappears_within_ttl),
      cmocka_unit_test(test_bad_ttl_and_etcd_down),
      cmocka_unit_test(test_unhealthy_while_etcd_is_down),
  };
  return cmocka_run_group_tests_name("registration", tests, group_setup, group_teardown);
}
