/* The Runtime API's HTTP parsing (worker-agent/guest/init/http.h): request heads, chunked
 * bodies, routes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"

#define MAX_BODY 1000

static init_http_status parse(const char *text, init_http_request *req) {
  return init_http_parse_head(text, strlen(text), MAX_BODY, req);
}

static void assert_str(init_http_str s, const char *want) {
  assert_int_equal(s.n, strlen(want));
  assert_memory_equal(s.p, want, s.n);
}

static void test_head(void **state) {
  (void)state;
  init_http_request req;
  const char *text =
      "POST /2018-06-01/runtime/invocation/abc/error HTTP/1.1\r\nHost: x\r\n"
      "Content-Length: 12\r\nlambda-runtime-function-error-type:  My.Error "
      "\r\n\r\n{\"a\":\"body\"}";
  assert_int_equal(parse(text, &req), INIT_HTTP_DONE);
  assert_str(req.method, "POST");
  assert_str(req.target, "/2018-06-01/runtime/invocation/abc/error");
  assert_int_equal(req.version_minor, 1);
  assert_true(req.keep_alive);
  assert_false(req.chunked);
  assert_int_equal(req.content_length, 12);
  assert_str(req.error_type, "My.Error");
  assert_string_equal(text + req.head_len, "{\"a\":\"body\"}");
}

static void test_head_incomplete_and_lenient(void **state) {
  (void)state;
  init_http_request req;
  assert_int_equal(parse("GET /x HTTP/1.1\r\nHost: x\r\n", &req), INIT_HTTP_INCOMPLETE);
  assert_int_equal(parse("", &req), INIT_HTTP_INCOMPLETE);
  assert_int_equal(parse("\r\n\r\n", &req), INIT_HTTP_INCOMPLETE);
  /* Bare LF line ends, an empty line before the request, HTTP/1.0 closes by default. */
  assert_int_equal(parse("\r\nGET /x HTTP/1.0\nHost: x\n\n", &req), INIT_HTTP_DONE);
  assert_false(req.keep_alive);
  assert_int_equal(parse("GET /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &req),
                   INIT_HTTP_DONE);
  assert_true(req.keep_alive);
  assert_int_equal(parse("GET /x HTTP/1.1\r\nConnection: foo, close\r\n\r\n", &req),
                   INIT_HTTP_DONE);
  assert_false(req.keep_alive);
  assert_int_equal(
      parse("POST /x HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: Chunked\r\n\r\n", &req),
      INIT_HTTP_DONE);
  assert_true(req.expect_continue);
  assert_true(req.chunked);
}

static void test_head_bad(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int status;
  } cases[] = {
      {"GET\r\n\r\n", 400},
      {"GET /x\r\n\r\n", 400},
      {"GET /x HTTP/2.0\r\n\r\n", 505},
      {"GET /x FTP/1.1\r\n\r\n", 400},
      {"G(T /x HTTP/1.1\r\n\r\n", 400},
      {"GET /x HTTP/1.1\r\nNoColon\r\n\r\n", 400},
      {"GET /x HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400},
      {"GET /x HTTP/1.1\r\nBad Name: b\r\n\r\n", 400},
      {"POST /x HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400},
      {"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
      {"POST /x HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 413},
      {"POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413},
      {"POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
      {"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
      {"GET /x HTTP/1.1\r\nA: b\x01\r\n\r\n", 400},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    init_http_request req;
    if (parse(cases[i].text, &req) != INIT_HTTP_BAD) fail_msg("case %zu was not refused", i);
    assert_int_equal(req.bad_status, cases[i].status);
    assert_non_null(req.bad_reason);
  }
  /* A repeated Content-Length with the same value is fine. */
  init_http_request req;
  assert_int_equal(
      parse("POST /x HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", &req),
      INIT_HTTP_DONE);
}

static void test_head_too_large(void **state) {
  (void)state;
  size_t n = INIT_HTTP_MAX_HEAD + 10;
  char *text = malloc(n + 1);
  memset(text, 'a', n);
  memcpy(text, "GET /x HTTP/1.1\r\nX: ", 20);
  text[n] = '\0';
  init_http_request req;
  assert_int_equal(init_http_parse_head(text, n, MAX_BODY, &req), INIT_HTTP_BAD);
  assert_int_equal(req.bad_status, 431);
  free(text);
}

static init_http_status dechunk(const char *text, size_t step, init_buf *out, size_t *used,
                                int *bad) {
  init_http_chunked c = {0};
  size_t len = strlen(text), off = 0;
  init_http_status st = INIT_HTTP_INCOMPLETE;
  while (off < len && st == INIT_HTTP_INCOMPLETE) {
    size_t n = len - off < step ? len - off : step;
    size_t k;
    st = init_http_chunked_feed(&c, text + off, n, MAX_BODY, out, &k, bad);
    off += k;
    if (st == INIT_HTTP_INCOMPLETE) assert_int_equal(k, n);
  }
  *used = off;
  return st;
}

static void test_chunked(void **state) {
  (void)state;
  const char *text = "5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT";
  /* Any split of the input decodes the same. */
  for (size_t step = 1; step <= strlen(text); step++) {
    init_buf out = {0};
    size_t used;
    int bad = 0;
    assert_int_equal(dechunk(text, step, &out, &used, &bad), INIT_HTTP_DONE);
    assert_int_equal(init_buf_pending(&out), 16);
    assert_memory_equal(init_buf_head(&out), "hello 0123456789", 16);
    assert_string_equal(text + used, "NEXT");
    init_buf_free(&out);
  }
  init_buf out = {0};
  size_t used;
  int bad = 0;
  assert_int_equal(dechunk("3\nabc\n0\n\n", 100, &out, &used, &bad), INIT_HTTP_DONE);
  init_buf_free(&out);
}

static void test_chunked_bad(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int status;
  } cases[] = {
      {"x\r\n", 400},
      {"\r\n", 400},
      {"3\r\nabcX", 400},
      {"3\r\nabc\rX", 400},
      {"3\rX", 400},
      {"1000\r\n", 413},              /* over MAX_BODY */
      {"fffffffffffffffff\r\n", 413}, /* 17 digits */
      {"0\r\n\rX", 400},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    init_buf out = {0};
    size_t used;
    int bad = 0;
    if (dechunk(cases[i].text, 100, &out, &used, &bad) != INIT_HTTP_BAD)
      fail_msg("case %zu was not refused", i);
    assert_int_equal(bad, cases[i].status);
    init_buf_free(&out);
  }
}

static void test_routes(void **state) {
  (void)state;
  static const struct {
    const char *target;
    init_http_route route;
    const char *id;
  } cases[] = {
      {"/2018-06-01/runtime/invocation/next", INIT_HTTP_ROUTE_NEXT, ""},
      {"/2018-06-01/runtime/invocation/next?x=1", INIT_HTTP_ROUTE_NEXT, ""},
      {"/2018-06-01/runtime/invocation/abc-1/response", INIT_HTTP_ROUTE_RESPONSE, "abc-1"},
      {"/2018-06-01/runtime/invocation/abc-1/error", INIT_HTTP_ROUTE_ERROR, "abc-1"},
      {"/2018-06-01/runtime/init/error", INIT_HTTP_ROUTE_INIT_ERROR, ""},
      {"/2018-06-01/runtime/invocation//response", INIT_HTTP_ROUTE_NOT_FOUND, ""},
      {"/2018-06-01/runtime/invocation/a/b/response", INIT_HTTP_ROUTE_NOT_FOUND, ""},
      {"/2018-06-01/runtime/invocation/a/responsex", INIT_HTTP_ROUTE_NOT_FOUND, ""},
      {"/2018-06-01/runtime/invocation/", INIT_HTTP_ROUTE_NOT_FOUND, ""},
      {"/2018-06-01/RUNTIME/invocation/next", INIT_HTTP_ROUTE_NOT_FOUND, ""},
      {"/", INIT_HTTP_ROUTE_NOT_FOUND, ""},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    init_http_str id;
    init_http_str t = {cases[i].target, strlen(cases[i].target)};
    assert_int_equal(init_http_route_target(t, &id), cases[i].route);
    assert_int_equal(id.n, strlen(cases[i].id));
    if (id.n) assert_memory_equal(id.p, cases[i].id, id.n);
  }
  assert_string_equal(init_http_route_method(INIT_HTTP_ROUTE_NEXT), "GET");
  assert_string_equal(init_http_route_method(INIT_HTTP_ROUTE_RESPONSE), "POST");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_head),     cmocka_unit_test(test_head_incomplete_and_lenient),
      cmocka_unit_test(test_head_bad), cmocka_unit_test(test_head_too_large),
      cmocka_unit_test(test_chunked),  cmocka_unit_test(test_chunked_bad),
      cmocka_unit_test(test_routes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
