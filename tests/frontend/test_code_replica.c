/* Tests for frontend/code_replica against a real etcd and real HTTP listeners: a frontend copies
 * the code its catalog needs from another registered frontend, verified by digest; then serves
 * it when that frontend is gone; bytes that do not hash to their digest are never stored; an
 * unreachable or empty peer is skipped for the next one.
 * Exit 77 when there is no etcd binary. */
#include <curl/curl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "code_replica.h"
#include "etcd_server.h"
#include "http.h"
#include "log.h"
#include "mem.h"
#include "proc.h"
#include "testutil.h"

#define PREFIX "/brume-replica-test"

static char *tmp;
static brume_test_etcd *server;
static brume_etcd *etcd;

/* One frontend's code: a store in its own directory, served on its own listener. */
typedef struct peer {
  brume_code_store *store;
  brume_http *http;
  char addr[64];
} peer;

static void peer_start(peer *p, const char *name) {
  brume_autofree char *dir = brume_xasprintf("%s/%s", tmp, name);
  brume_autoptr(brume_err) err = NULL;
  p->store = brume_code_store_new(dir, &err);
  assert_non_null(p->store);
  p->http = brume_http_start("127.0.0.1:0", NULL, &err);
  assert_non_null(p->http);
  brume_code_store_serve(p->store, p->http);
  snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d", brume_http_port(p->http));
}

static void peer_stop(peer *p) {
  brume_http_stop(p->http);
  brume_code_store_free(p->store);
}

static void register_frontend(const char *id, const char *http_addr) {
  brume_autofree char *key = brume_xasprintf(PREFIX "/svc/frontend/%s", id);
  brume_autofree char *value =
      brume_xasprintf("{\"addr\":\"x:1\",\"http_addr\":\"%s\"}", http_addr);
  brume_autoptr(brume_err) err = NULL;
  assert_int_equal(brume_etcd_put(etcd, key, value, strlen(value), 0, NULL, &err), 0);
}

static uint8_t *make_zip(const char *name, size_t *len) {
  assert_int_equal(brume_test_run("set -e; cd %s; mkdir -p z-%s; echo 'echo %s' > z-%s/bootstrap; "
                                  "cd z-%s && zip -q ../%s.zip bootstrap",
                                  tmp, name, name, name, name, name),
                   0);
  brume_autofree char *path = brume_xasprintf("%s/%s.zip", tmp, name);
  uint8_t *z = brume_test_read_file(path, len);
  assert_non_null(z);
  return z;
}

static json_t *needed; /* what the fake catalog needs */

static json_t *needs(void *user) {
  (void)user;
  return json_incref(needed);
}

static brume_code_replica *replica_of(peer *p, const char *self_id) {
  brume_code_replica_opts o = {.etcd = etcd,
                               .prefix = PREFIX,
                               .self_id = self_id,
                               .store = p->store,
                               .needs = needs,
                               .fetch_timeout_ms = 5000};
  return brume_code_replica_new(&o);
}

static void test_copies_then_serves_alone(void **state) {
  (void)state;
  peer a, b;
  peer_start(&a, "a");
  peer_start(&b, "b");
  register_frontend("fe-a", a.addr);
  register_frontend("fe-b", b.addr);
  size_t len;
  brume_autofree uint8_t *zip = make_zip("one", &len);
  char sha[65];
  brume_autoptr(brume_err) err = NULL;
  assert_int_equal(brume_code_store_put(a.store, zip, len, sha, &err), 0);
  needed = json_pack("[s]", sha);

  brume_code_replica *rb = replica_of(&b, "fe-b");
  assert_false(brume_code_store_has(b.store, sha, NULL));
  assert_int_equal(brume_code_replica_sync(rb, &err), 0);
  uint64_t size = 0;
  assert_true(brume_code_store_has(b.store, sha, &size));
  assert_int_equal(size, len);
  /* A holds it already: nothing to copy. */
  brume_code_replica *ra = replica_of(&a, "fe-a");
  assert_int_equal(brume_code_replica_sync(ra, &err), 0);

  /* A goes away: B serves the archive itself, byte for byte. */
  brume_code_replica_free(ra);
  peer_stop(&a);
  assert_int_equal(brume_test_run("curl -sf http://%s/code/%s -o %s/served.zip && cmp -s "
                                  "%s/served.zip %s/one.zip",
                                  b.addr, sha, tmp, tmp, tmp),
                   0);
  brume_code_replica_free(rb);
  peer_stop(&b);
  json_decref(needed);
  needed = NULL;
  brume_autoptr(brume_err) derr = NULL;
  assert_int_equal(brume_etcd_delete(etcd, PREFIX "/svc/", true, NULL, &derr), 0);
}

static void test_skips_bad_peers(void **state) {
  (void)state;
  peer good, liar, empty, c;
  peer_start(&good, "good");
  peer_start(&liar, "liar");
  peer_start(&empty, "empty");
  peer_start(&c, "c");
  size_t len, other_len;
  brume_autofree uint8_t *zip = make_zip("two", &len);
  brume_autofree uint8_t *other = make_zip("three", &other_len);
  char sha[65], other_sha[65];
  brume_autoptr(brume_err) err = NULL;
  assert_int_equal(brume_code_store_put(good.store, zip, len, sha, &err), 0);
  assert_int_equal(brume_code_store_put(liar.store, other, other_len, other_sha, &err), 0);
  /* The liar serves other bytes under the wanted digest: rename its file. */
  assert_int_equal(brume_test_run("mv %s/liar/%s.zip %s/liar/%s.zip", tmp, other_sha, tmp, sha), 0);
  /* Ids sort the liar, the empty one and a dead one before the good one. */
  register_frontend("fe-1-liar", liar.addr);
  register_frontend("fe-2-empty", empty.addr);
  register_frontend("fe-3-dead", "127.0.0.1:1");
  register_frontend("fe-c", c.addr);
  needed = json_pack("[s]", sha);

  brume_code_replica *rc = replica_of(&c, "fe-c");
  assert_int_equal(brume_code_replica_sync(rc, &err), 1); /* nobody honest has it yet */
  assert_false(brume_code_store_has(c.store, sha, NULL));
  assert_false(brume_code_store_has(c.store, other_sha, NULL));
  register_frontend("fe-9-good", good.addr);
  assert_int_equal(brume_code_replica_sync(rc, &err), 0);
  assert_true(brume_code_store_has(c.store, sha, NULL));
  assert_false(brume_code_store_has(c.store, other_sha, NULL));

  brume_code_replica_free(rc);
  peer_stop(&good);
  peer_stop(&liar);
  peer_stop(&empty);
  peer_stop(&c);
  json_decref(needed);
  needed = NULL;
}

static int setup(void **state) {
  (void)state;
  tmp = brume_test_tmpdir("code-replica");
  return brume_test_etcd_open(&server, &etcd);
}

static int teardown(void **state) {
  (void)state;
  brume_test_etcd_close(server, etcd);
  brume_test_rmtree(tmp);
  free(tmp);
  return 0;
}

int main(void) {
  if (!brume_test_etcd_available()) {
    fprintf(stderr, "test_code_replica: skipped: no etcd binary\n");
    return 77;
  }
  brume_log_init("test-code-replica", BRUME_LOG_ERROR);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_copies_then_serves_alone),
      cmocka_unit_test(test_skips_bad_peers),
  };
  int rc = cmocka_run_group_tests(tests, setup, teardown);
  curl_global_cleanup();
  return rc;
}
