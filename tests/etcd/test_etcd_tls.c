/* The etcd client (common/etcd.c) against a real etcd that speaks only TLS and requires client
 * certificates, as a production cluster's etcd does: every kind of call works with the right
 * certificates, and the connection is refused, with an error that says why and what to set,
 * without a client certificate, when the server's certificate is not trusted, or over plain HTTP.
 *
 * usage: test_etcd_tls MAKE_CERTS_SH (tests/harness/make-certs.sh) */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "etcd.h"
#include "etcd_server.h"
#include "proc.h"
#include "registration.h"
#include "testutil.h"

static const char *make_certs;
static char *pki;
static brume_test_etcd *server;

static char *pki_file(const char *name) {
  return brume_xasprintf("%s/%s", pki, name);
}

static int group_setup(void **state) {
  (void)state;
  pki = brume_test_tmpdir("etcd-pki");
  if (brume_test_run("bash %s %s", make_certs, pki) != 0) {
    fprintf(stderr, "%s failed\n", make_certs);
    return -1;
  }
  server = brume_test_etcd_start_tls(pki);
  return server ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  brume_test_etcd_free(server);
  brume_test_rmtree(pki);
  free(pki);
  return 0;
}

/* A client with the given CA and client certificate (NULL: none). */
static brume_etcd *client(const char *ca, const char *cert, const char *key) {
  brume_autofree char *ca_path = ca ? pki_file(ca) : NULL;
  brume_autofree char *cert_path = cert ? pki_file(cert) : NULL;
  brume_autofree char *key_path = key ? pki_file(key) : NULL;
  brume_err *err = NULL;
  brume_etcd_opts o = {
      .timeout_ms = 3000, .ca_path = ca_path, .cert_path = cert_path, .key_path = key_path};
  brume_etcd *e = brume_etcd_new(server->endpoint, &o, &err);
  if (e == NULL) fail_msg("brume_etcd_new: %s", err->msg);
  return e;
}

static atomic_int watched;

static void on_events(const brume_etcd_event *ev, size_t n, void *user) {
  (void)ev;
  (void)user;
  atomic_fetch_add(&watched, (int)n);
}

/* Put, get, txn, leases, a registration and a watch, all over mutual TLS. */
static void test_mutual_tls(void **state) {
  (void)state;
  brume_autoptr(brume_etcd) e = client("ca.pem", "client.pem", "client.key");
  brume_err *err = NULL;
  assert_true(strncmp(server->endpoint, "https://", 8) == 0);

  brume_etcd_watch *w = brume_etcd_watch_prefix(e, "/tls/", 0, on_events, NULL, &err);
  if (w == NULL) fail_msg("watch: %s", err->msg);

  int64_t rev = 0;
  if (brume_etcd_put(e, "/tls/a", "1", 1, 0, &rev, &err) < 0) fail_msg("put: %s", err->msg);
  brume_etcd_kv *kv = NULL;
  assert_int_equal(brume_etcd_get(e, "/tls/a", &kv, NULL, &err), 0);
  assert_non_null(kv);
  assert_string_equal(kv->value, "1");
  brume_etcd_kv_free(kv);

  brume_etcd_cmp cmp = {
      .key = "/tls/a", .target = BRUME_ETCD_MOD, .result = BRUME_ETCD_EQUAL, .number = rev};
  brume_etcd_op put = {.type = BRUME_ETCD_OP_PUT, .key = "/tls/a", .value = "2", .value_len = 1};
  brume_etcd_txn_result *t = brume_etcd_txn(
      e, &(brume_etcd_txn_req){.compare = &cmp, .n_compare = 1, .success = &put, .n_success = 1},
      &err);
  if (t == NULL) fail_msg("txn: %s", err->msg);
  assert_true(t->succeeded);
  brume_etcd_txn_result_free(t);

  brume_registration *reg = brume_register(e, "/tls", "counting", "c1", "{}", 3, &err);
  if (reg == NULL) fail_msg("register: %s", err->msg);
  assert_true(brume_registration_healthy(reg));
  usleep(1500 * 1000); /* a keepalive or two, over TLS */
  assert_true(brume_registration_healthy(reg));
  brume_registration_free(reg);

  for (int i = 0; i < 100 && atomic_load(&watched) < 2; i++) usleep(20000);
  assert_true(atomic_load(&watched) >= 2); /* the put and the txn's put */
  brume_etcd_watch_stop(w);
}

/* The failure must say what happened, not just that something did. */
static void expect_refused(brume_etcd *e, const char *why, const char *hint) {
  brume_err *err = NULL;
  assert_int_equal(brume_etcd_put(e, "/tls/b", "1", 1, 0, NULL, &err), -1);
  assert_non_null(err);
  fprintf(stderr, "  %s: %s (%s)\n", why, err->msg, brume_status_name(err->code));
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  assert_non_null(strstr(err->msg, server->endpoint));
  assert_non_null(strstr(err->msg, hint));
  brume_err_free(err);
}

static void test_refusals(void **state) {
  (void)state;
  brume_autoptr(brume_etcd) no_cert = client("ca.pem", NULL, NULL);
  expect_refused(no_cert, "no client certificate", "set tls_cert and tls_key");
  brume_autoptr(brume_etcd) wrong_ca = client("other-ca.pem", "client.pem", "client.key");
  expect_refused(wrong_ca, "server certificate from an untrusted CA", "not signed by the CA");
  /* Plain HTTP to a TLS-only etcd. */
  brume_err *err = NULL;
  brume_autofree char *plain = brume_xasprintf("http://127.0.0.1:%d", server->client_port);
  brume_autoptr(brume_etcd) http =
      brume_etcd_new(plain, &(brume_etcd_opts){.timeout_ms = 3000}, &err);
  assert_non_null(http);
  assert_int_equal(brume_etcd_put(http, "/tls/c", "1", 1, 0, NULL, &err), -1);
  fprintf(stderr, "  plain HTTP: %s (%s)\n", err->msg, brume_status_name(err->code));
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  assert_non_null(strstr(err->msg, "https://?"));
  brume_err_free(err);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_etcd_tls MAKE_CERTS_SH\n");
    return 2;
  }
  make_certs = argv[1];
  if (!brume_test_etcd_available()) {
    fprintf(stderr, "etcd is not installed (deploy/install-deps.sh installs it): skipping\n");
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mutual_tls),
      cmocka_unit_test(test_refusals),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
