/* The gateway JSON codec, with no server: answers captured from etcd 3.4.23, and the malformed
 * input the parsers must refuse cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
/* cmocka.h needs setjmp.h, stdarg.h and stddef.h before it. */
#include <cmocka.h>

#include "etcd_json.h"

#define S(lit) lit, sizeof(lit) - 1

static void test_base64(void **state) {
  (void)state;
  static const struct {
    const char *plain;
    const char *b64;
  } cases[] = {{"", ""},
               {"a", "YQ=="},
               {"ab", "YWI="},
               {"abc", "YWJj"},
               {"/brume/svc/x", "L2JydW1lL3N2Yy94"}};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(cases); i++) {
    brume_autofree char *enc = brume_etcd_json_b64_encode(cases[i].plain, strlen(cases[i].plain));
    assert_string_equal(enc, cases[i].b64);
    char *dec = NULL;
    size_t len = 0;
    assert_int_equal(brume_etcd_json_b64_decode(enc, strlen(enc), &dec, &len), 0);
    assert_int_equal(len, strlen(cases[i].plain));
    assert_string_equal(dec, cases[i].plain);
    free(dec);
  }
  unsigned char all[256];
  for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
  brume_autofree char *enc = brume_etcd_json_b64_encode(all, sizeof(all));
  brume_autofree char *dec = NULL;
  size_t len = 0;
  assert_int_equal(brume_etcd_json_b64_decode(enc, strlen(enc), &dec, &len), 0);
  assert_int_equal(len, 256);
  assert_memory_equal(dec, all, 256);

  char *out = NULL;
  assert_int_equal(brume_etcd_json_b64_decode(S("YQ"), &out, &len), 0); /* unpadded */
  assert_string_equal(out, "a");
  free(out);
  const char *bad[] = {"Y", "YQ=", "Y===", "YQ==YQ==", "YQ!=", "Y Q=", "=", "==", "YWJj="};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(bad); i++) {
    out = NULL;
    assert_int_equal(brume_etcd_json_b64_decode(bad[i], strlen(bad[i]), &out, &len), -1);
    assert_null(out);
  }
}

static void test_prefix_end(void **state) {
  (void)state;
  size_t len;
  brume_autofree char *a = brume_etcd_json_prefix_end(S("/a/"), &len);
  assert_int_equal(len, 3);
  assert_memory_equal(a, "/a0", 3);
  brume_autofree char *b = brume_etcd_json_prefix_end(S("a\xff\xff"), &len);
  assert_int_equal(len, 1);
  assert_memory_equal(b, "b", 1);
  brume_autofree char *c = brume_etcd_json_prefix_end(S("\xff"), &len);
  assert_int_equal(len, 1);
  assert_int_equal(c[0], 0);
  brume_autofree char *d = brume_etcd_json_prefix_end(S(""), &len);
  assert_int_equal(len, 1);
  assert_int_equal(d[0], 0);
}

static void test_requests(void **state) {
  (void)state;
  brume_autofree char *r = brume_etcd_json_range_req("/a/", true, false);
  assert_string_equal(r, "{\"key\":\"L2Ev\",\"range_end\":\"L2Ew\"}");
  brume_autofree char *all = brume_etcd_json_range_req("", true, true);
  assert_string_equal(all, "{\"key\":\"AA==\",\"range_end\":\"AA==\",\"count_only\":true}");
  brume_autofree char *p = brume_etcd_json_put_req("a", "1", 1, 42);
  assert_string_equal(p, "{\"key\":\"YQ==\",\"value\":\"MQ==\",\"lease\":\"42\"}");
  brume_autofree char *p0 = brume_etcd_json_put_req("a", NULL, 0, 0);
  assert_string_equal(p0, "{\"key\":\"YQ==\",\"value\":\"\"}");
  brume_autofree char *w = brume_etcd_json_watch_req("a", 7);
  assert_string_equal(
      w, "{\"create_request\":{\"key\":\"YQ==\",\"range_end\":\"Yg==\",\"start_revision\":\"7\"}}");
  brume_autofree char *l = brume_etcd_json_lease_id_req(-5);
  assert_string_equal(l, "{\"ID\":\"-5\"}");

  brume_etcd_cmp cmp[] = {{.key = "a",
                           .prefix = true,
                           .target = BRUME_ETCD_MOD,
                           .result = BRUME_ETCD_LESS,
                           .number = 8},
                          {.key = "b",
                           .target = BRUME_ETCD_VALUE,
                           .result = BRUME_ETCD_NOT_EQUAL,
                           .value = "x",
                           .value_len = 1}};
  brume_etcd_op ok[] = {{.type = BRUME_ETCD_OP_PUT, .key = "a", .value = "1", .value_len = 1}};
  brume_etcd_op ko[] = {{.type = BRUME_ETCD_OP_RANGE, .key = "a", .prefix = true},
                        {.type = BRUME_ETCD_OP_DELETE, .key = "b"}};
  brume_etcd_txn_req req = {cmp, 2, ok, 1, ko, 2};
  brume_err *err = NULL;
  brume_autofree char *t = brume_etcd_json_txn_req(&req, &err);
  assert_null(err);
  assert_string_equal(
      t,
      "{\"compare\":[{\"key\":\"YQ==\",\"range_end\":\"Yg==\",\"target\":\"MOD\",\"result\":"
      "\"LESS\","
      "\"mod_revision\":\"8\"},{\"key\":\"Yg==\",\"target\":\"VALUE\",\"result\":\"NOT_EQUAL\","
      "\"value\":\"eA==\"}],\"success\":[{\"request_put\":{\"key\":\"YQ==\",\"value\":\"MQ==\"}}],"
      "\"failure\":[{\"request_range\":{\"key\":\"YQ==\",\"range_end\":\"Yg==\"}},"
      "{\"request_delete_range\":{\"key\":\"Yg==\"}}]}");

  brume_etcd_op bad_op[] = {{.type = (brume_etcd_op_type)9, .key = "a"}};
  brume_etcd_txn_req bad = {.success = bad_op, .n_success = 1};
  assert_null(brume_etcd_json_txn_req(&bad, &err));
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_clear(&err);
  brume_etcd_cmp bad_cmp[] = {{.key = "a", .target = (brume_etcd_target)7}};
  brume_etcd_txn_req bad2 = {.compare = bad_cmp, .n_compare = 1};
  assert_null(brume_etcd_json_txn_req(&bad2, &err));
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_free(err);
}

static const char range_answer[] =
    "{\"header\":{\"cluster_id\":\"324952591200643719\",\"member_id\":\"3319814642761637952\","
    "\"revision\":\"2\",\"raft_term\":\"2\"},\"kvs\":[{\"key\":\"YQ==\",\"create_revision\":\"2\","
    "\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"MQ==\"}],\"count\":\"1\"}";

static void test_parse_range(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_autoptr(brume_etcd_range) r = brume_etcd_json_parse_range(S(range_answer), &err);
  assert_non_null(r);
  assert_int_equal(r->revision, 2);
  assert_int_equal(r->count, 1);
  assert_int_equal(r->n, 1);
  assert_string_equal(r->kvs[0].key, "a");
  assert_string_equal(r->kvs[0].value, "1");
  assert_int_equal(r->kvs[0].mod_revision, 2);
  assert_int_equal(r->kvs[0].lease, 0);

  /* An empty range: only a header. */
  brume_autoptr(brume_etcd_range) e =
      brume_etcd_json_parse_range(S("{\"header\":{\"revision\":\"9\"}}"), &err);
  assert_non_null(e);
  assert_int_equal(e->n, 0);
  assert_int_equal(e->revision, 9);

  const char *bad[] = {
      "",
      "[]",
      "{\"kvs\":{}}",
      "{\"kvs\":[1]}",
      "{\"kvs\":[{\"key\":\"!!!\"}]}",
      "{\"kvs\":[{\"key\":5}]}",
      "{\"count\":\"99999999999999999999\"}",
      "{\"count\":\"12x\"}",
      "{\"count\":\"\"}",
      "{\"count\":1.5}",
      "{\"header\":[]}",
      "{\"header\":{\"revision\":true}}",
      "{\"more\":\"yes\"}",
      "{\"kvs\":[{\"key\":\"YQ==\"},{\"key\":\"YQ==\",\"version\":\" 1\"}]}",
  };
  for (size_t i = 0; i < BRUME_ARRAY_LEN(bad); i++) {
    assert_null(brume_etcd_json_parse_range(bad[i], strlen(bad[i]), &err));
    assert_non_null(err);
    assert_int_equal(err->code, BRUME_INTERNAL);
    assert_non_null(strstr(err->msg, "etcd sent a malformed range response"));
    brume_err_clear(&err);
  }
}

static void test_parse_txn(void **state) {
  (void)state;
  brume_err *err = NULL;
  /* A failed txn: "succeeded" is absent. */
  brume_autoptr(brume_etcd_txn_result) f = brume_etcd_json_parse_txn(
      S("{\"header\":{\"revision\":\"2\"},\"responses\":[{\"response_range\":{\"header\":{"
        "\"revision\":\"2\"},\"kvs\":[{\"key\":\"YQ==\",\"mod_revision\":\"2\",\"value\":\"MQ==\"}]"
        ","
        "\"count\":\"1\"}}]}"),
      &err);
  assert_non_null(f);
  assert_false(f->succeeded);
  assert_int_equal(f->revision, 2);
  assert_int_equal(f->n, 1);
  assert_int_equal(f->results[0].type, BRUME_ETCD_OP_RANGE);
  assert_int_equal(f->results[0].range.n, 1);
  assert_string_equal(f->results[0].range.kvs[0].value, "1");

  brume_autoptr(brume_etcd_txn_result) s = brume_etcd_json_parse_txn(
      S("{\"header\":{\"revision\":\"3\"},\"succeeded\":true,\"responses\":[{\"response_put\":{"
        "\"header\":{\"revision\":\"3\"}}},{\"response_delete_range\":{\"deleted\":\"2\"}}]}"),
      &err);
  assert_non_null(s);
  assert_true(s->succeeded);
  assert_int_equal(s->n, 2);
  assert_int_equal(s->results[0].type, BRUME_ETCD_OP_PUT);
  assert_int_equal(s->results[1].type, BRUME_ETCD_OP_DELETE);
  assert_int_equal(s->results[1].deleted, 2);

  const char *bad[] = {
      "{\"succeeded\":1}",
      "{\"responses\":[{}]}",
      "{\"responses\":[{\"response_txn\":{}}]}",
      "{\"responses\":[{\"response_put\":{}},{\"response_range\":{\"kvs\":[{\"value\":\"=\"}]}}]}",
      "{\"responses\":[{\"response_delete_range\":{\"deleted\":[]}}]}",
  };
  for (size_t i = 0; i < BRUME_ARRAY_LEN(bad); i++) {
    assert_null(brume_etcd_json_parse_txn(bad[i], strlen(bad[i]), &err));
    assert_int_equal(err->code, BRUME_INTERNAL);
    brume_err_clear(&err);
  }
}

static void test_parse_small(void **state) {
  (void)state;
  brume_err *err = NULL;
  int64_t a = -1, b = -1;
  assert_int_equal(brume_etcd_json_parse_put(S("{\"header\":{\"revision\":\"17\"}}"), &a, &err), 0);
  assert_int_equal(a, 17);
  assert_int_equal(
      brume_etcd_json_parse_delete(S("{\"header\":{\"revision\":\"4\"}}"), &a, &b, &err), 0);
  assert_int_equal(a, 0);
  assert_int_equal(b, 4);
  assert_int_equal(brume_etcd_json_parse_lease_grant(
                       S("{\"ID\":\"2324035652221297678\",\"TTL\":\"5\"}"), &a, &b, &err),
                   0);
  assert_int_equal(a, 2324035652221297678LL);
  assert_int_equal(b, 5);
  assert_int_equal(brume_etcd_json_parse_lease_grant(S("{\"TTL\":\"5\"}"), &a, &b, &err), -1);
  brume_err_clear(&err);
  assert_int_equal(brume_etcd_json_parse_lease_grant(
                       S("{\"ID\":\"1\",\"error\":\"lessor is busy\"}"), &a, &b, &err),
                   -1);
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  brume_err_clear(&err);
  /* A live lease, then a lease that is gone (no TTL). */
  assert_int_equal(brume_etcd_json_parse_lease_keepalive(
                       S("{\"result\":{\"header\":{},\"ID\":\"7\",\"TTL\":\"5\"}}"), &a, &err),
                   0);
  assert_int_equal(a, 5);
  assert_int_equal(brume_etcd_json_parse_lease_keepalive(
                       S("{\"result\":{\"header\":{},\"ID\":\"7\"}}"), &a, &err),
                   0);
  assert_int_equal(a, 0);
  assert_int_equal(brume_etcd_json_parse_lease_keepalive(S("{\"result\":5}"), &a, &err), -1);
  brume_err_free(err);
}

static void test_parse_error(void **state) {
  (void)state;
  brume_status code;
  char *msg = NULL;
  assert_int_equal(
      brume_etcd_json_parse_error(
          S("{\"error\":\"etcdserver: requested lease not found\",\"message\":\"etcdserver: "
            "requested lease not found\",\"code\":5}"),
          &code, &msg),
      1);
  assert_int_equal(code, BRUME_NOT_FOUND);
  assert_string_equal(msg, "etcdserver: requested lease not found");
  free(msg);
  assert_int_equal(
      brume_etcd_json_parse_error(
          S("{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"no leader\"}}"), &code,
          &msg),
      1);
  assert_int_equal(code, BRUME_UNAVAILABLE);
  assert_string_equal(msg, "no leader");
  free(msg);
  assert_int_equal(brume_etcd_json_parse_error(S("{\"error\":\"x\",\"code\":999}"), &code, &msg),
                   1);
  assert_int_equal(code, BRUME_UNKNOWN);
  free(msg);
  assert_int_equal(brume_etcd_json_parse_error(S("{\"error\":\"x\",\"code\":0}"), &code, &msg), 1);
  assert_int_equal(code, BRUME_UNKNOWN);
  free(msg);
  msg = NULL;
  assert_int_equal(brume_etcd_json_parse_error(S(range_answer), &code, &msg), 0);
  assert_int_equal(brume_etcd_json_parse_error(S("{\"ID\":\"1\",\"error\":\"busy\"}"), &code, &msg),
                   0);
  assert_int_equal(brume_etcd_json_parse_error(S("Not Found"), &code, &msg), 0);
  assert_null(msg);
}

static void test_parse_watch(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_etcd_watch_chunk c;
  assert_int_equal(
      brume_etcd_json_parse_watch_chunk(
          S("{\"result\":{\"header\":{\"revision\":\"4\"},\"created\":true}}"), &c, &err),
      0);
  assert_true(c.created);
  assert_int_equal(c.revision, 4);
  assert_int_equal(c.n, 0);
  brume_etcd_json_watch_chunk_clear(&c);

  assert_int_equal(
      brume_etcd_json_parse_watch_chunk(
          S("{\"result\":{\"header\":{\"revision\":\"4\"},\"events\":[{\"kv\":{\"key\":\"YQ==\","
            "\"create_revision\":\"2\",\"mod_revision\":\"3\",\"version\":\"2\",\"value\":\"Mg==\"}"
            "},"
            "{\"type\":\"DELETE\",\"kv\":{\"key\":\"YQ==\",\"mod_revision\":\"4\"}}]}}"),
          &c, &err),
      0);
  assert_int_equal(c.n, 2);
  assert_int_equal(c.events[0].type, BRUME_ETCD_EVENT_PUT);
  assert_string_equal(c.events[0].kv.value, "2");
  assert_int_equal(c.events[0].kv.mod_revision, 3);
  assert_int_equal(c.events[1].type, BRUME_ETCD_EVENT_DELETE);
  assert_string_equal(c.events[1].kv.key, "a");
  assert_int_equal(c.events[1].kv.value_len, 0);
  brume_etcd_json_watch_chunk_clear(&c);

  assert_int_equal(
      brume_etcd_json_parse_watch_chunk(
          S("{\"result\":{\"header\":{},\"canceled\":true,\"compact_revision\":\"5\"}}"), &c, &err),
      0);
  assert_true(c.canceled);
  assert_int_equal(c.compact_revision, 5);
  brume_etcd_json_watch_chunk_clear(&c);

  const char *bad[] = {
      "{}",
      "{\"result\":[]}",
      "{\"result\":{\"events\":[{}]}}",
      "{\"result\":{\"events\":[{\"type\":\"EXPLODE\",\"kv\":{}}]}}",
      "{\"result\":{\"events\":[{\"kv\":{\"key\":\"YQ==\"}},{\"kv\":{\"key\":\"Y\"}}]}}",
      "{\"result\":{\"created\":\"true\"}}",
  };
  for (size_t i = 0; i < BRUME_ARRAY_LEN(bad); i++) {
    assert_int_equal(brume_etcd_json_parse_watch_chunk(bad[i], strlen(bad[i]), &c, &err), -1);
    assert_int_equal(c.n, 0);
    brume_etcd_json_watch_chunk_clear(&c);
    brume_err_clear(&err);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_base64),      cmocka_unit_test(test_prefix_end),
      cmocka_unit_test(test_requests),    cmocka_unit_test(test_parse_range),
      cmocka_unit_test(test_parse_txn),   cmocka_unit_test(test_parse_small),
      cmocka_unit_test(test_parse_error), cmocka_unit_test(test_parse_watch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
