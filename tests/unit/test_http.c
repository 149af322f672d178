/* Unit tests for common/http: a listener on 127.0.0.1 port 0, driven with libcurl. */
#include <curl/curl.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "http.h"

BRUME_DEFINE_AUTOPTR(CURL, curl_easy_cleanup)

typedef struct reply {
  long status;
  char *body;
  size_t len;
  char *content_type;
  char allow[128];
} reply;

static size_t on_body(char *p, size_t size, size_t n, void *user) {
  reply *r = user;
  r->body = brume_xrealloc(r->body, r->len + size * n + 1);
  memcpy(r->body + r->len, p, size * n);
  r->len += size * n;
  r->body[r->len] = '\0';
  return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *user) {
  reply *r = user;
  if (n * size > 7 && strncasecmp(p, "Allow: ", 7) == 0) {
    size_t l = n * size - 7;
    while (l && (p[7 + l - 1] == '\r' || p[7 + l - 1] == '\n')) l--;
    snprintf(r->allow, sizeof(r->allow), "%.*s", (int)l, p + 7);
  }
  return size * n;
}

static void reply_free(reply *r) {
  free(r->body);
  free(r->content_type);
}

/* method NULL: GET. body non-NULL: sent as the request body. */
static reply request(int port, const char *method, const char *path, const char *body,
                     size_t body_len) {
  reply r = {0};
  brume_autoptr(CURL) c = curl_easy_init();
  assert_non_null(c);
  char url[256];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  if (method) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  if (body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
  }
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) fail_msg("%s %s: %s", method ? method : "GET", path, curl_easy_strerror(rc));
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  char *ct = NULL;
  curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
  r.content_type = brume_xstrdup(ct ? ct : "");
  if (!r.body) r.body = brume_xstrdup("");
  return r;
}

static int health_state; /* 0 healthy, else the failure */

static int health(void *user, brume_err **err) {
  assert_ptr_equal(user, &health_state);
  if (health_state)
    return brume_err_set(err, BRUME_UNAVAILABLE, "etcd lease expired %d s ago", health_state);
  return 0;
}

static void echo_handler(const brume_http_request *req, brume_http_response *resp, void *user) {
  const char *name = brume_http_query(req, "name");
  brume_http_replyf(resp, 201, "application/json",
                    "{\"user\":\"%s\",\"method\":\"%s\",\"path\":\"%s\","
                    "\"name\":\"%s\",\"body\":\"%s\",\"len\":%zu}",
                    (const char *)user, req->method, req->path, name ? name : "", req->body,
                    req->body_len);
  brume_http_reply_header(resp, "X-Brume", "1");
}

static void silent_handler(const brume_http_request *req, brume_http_response *resp, void *user) {
  (void)req;
  (void)resp;
  (void)user;
}

static void test_routes(void **state) {
  (void)state;
  brume_metrics *reg = brume_metrics_new();
  brume_counter *c = brume_metrics_counter(reg, "brume_http_test_total", "Test.", NULL);
  brume_counter_inc(c, 3);
  brume_err *err = NULL;
  brume_http *h = brume_http_start("127.0.0.1:0", reg, &err);
  assert_null(err);
  assert_non_null(h);
  int port = brume_http_port(h);
  assert_true(port > 0);

  reply r = request(port, NULL, "/healthz", NULL, 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "ok\n");
  reply_free(&r);

  brume_http_set_health(h, health, &health_state);
  health_state = 12;
  r = request(port, NULL, "/healthz", NULL, 0);
  assert_int_equal(r.status, 503);
  assert_string_equal(r.body, "etcd lease expired 12 s ago\n");
  reply_free(&r);
  health_state = 0;
  r = request(port, NULL, "/healthz", NULL, 0);
  assert_int_equal(r.status, 200);
  reply_free(&r);

  r = request(port, NULL, "/metrics", NULL, 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  assert_string_equal(r.body,
                      "# HELP brume_http_test_total Test.\n"
                      "# TYPE brume_http_test_total counter\n"
                      "brume_http_test_total 3\n");
  reply_free(&r);

  r = request(port, NULL, "/nope", NULL, 0);
  assert_int_equal(r.status, 404);
  assert_string_equal(r.body, "not found\n");
  reply_free(&r);
  r = request(port, NULL, "/metricsx", NULL, 0); /* a prefix only matches whole segments */
  assert_int_equal(r.status, 404);
  reply_free(&r);

  r = request(port, "POST", "/metrics", "x", 1);
  assert_int_equal(r.status, 405);
  assert_string_equal(r.allow, "GET, HEAD");
  reply_free(&r);

  /* Routes can be added while serving; the longest prefix wins, then the method decides. */
  brume_http_route(h, NULL, "/dash", echo_handler, "any");
  brume_http_route(h, "POST", "/dash/api", echo_handler, "post");
  r = request(port, NULL, "/dash/functions?name=a%20b&x=1", NULL, 0);
  assert_int_equal(r.status, 201);
  assert_string_equal(r.content_type, "application/json");
  assert_string_equal(r.body,
                      "{\"user\":\"any\",\"method\":\"GET\",\"path\":\"/dash/functions\","
                      "\"name\":\"a b\",\"body\":\"\",\"len\":0}");
  reply_free(&r);
  r = request(port, "POST", "/dash/api/x", "hello", 5);
  assert_int_equal(r.status, 201);
  assert_string_equal(r.body,
                      "{\"user\":\"post\",\"method\":\"POST\",\"path\":\"/dash/api/x\","
                      "\"name\":\"\",\"body\":\"hello\",\"len\":5}");
  reply_free(&r);
  r = request(port, "PUT", "/dash/api", "x", 1); /* falls back to the any-method /dash */
  assert_int_equal(r.status, 201);
  assert_non_null(strstr(r.body, "\"user\":\"any\""));
  reply_free(&r);

  brume_http_route(h, "GET", "/silent", silent_handler, NULL);
  r = request(port, NULL, "/silent", NULL, 0);
  assert_int_equal(r.status, 500);
  reply_free(&r);

  brume_http_stop(h);
  brume_metrics_free(reg);
}

static void test_body_limit(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_http *h = brume_http_start(":0", NULL, &err);
  assert_non_null(h);
  brume_http_route(h, "POST", "/upload", echo_handler, "u");
  size_t n = BRUME_HTTP_MAX_BODY + 1;
  char *big = brume_xmalloc(n);
  memset(big, 'a', n);
  reply r = request(brume_http_port(h), "POST", "/upload", big, n);
  assert_int_equal(r.status, 413);
  reply_free(&r);
  free(big);
  r = request(brume_http_port(h), NULL, "/metrics", NULL, 0); /* no registry, no /metrics */
  assert_int_equal(r.status, 404);
  reply_free(&r);
  brume_http_stop(h);
}

static void test_bad_addresses(void **state) {
  (void)state;
  brume_err *err = NULL;
  assert_null(brume_http_start("localhost", NULL, &err));
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  assert_string_equal(err->msg, "address 'localhost' must be host:port or :port");
  brume_err_clear(&err);

  brume_http *h = brume_http_start("127.0.0.1:0", NULL, &err);
  assert_non_null(h);
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", brume_http_port(h));
  assert_null(brume_http_start(addr, NULL, &err));
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  char want[128];
  snprintf(want, sizeof(want), "HTTP listen on %s: Address already in use", addr);
  assert_string_equal(err->msg, want);
  brume_err_clear(&err);
  brume_http_stop(h);
  brume_http_stop(NULL);
}

static int count_fds(void) {
  int n = 0;
  for (int fd = 0; fd < 1024; fd++) n += fcntl(fd, F_GETFD) != -1;
  return n;
}

/* libmicrohttpd closes the listening socket handed to it; restarting must not leak it. */
static void test_restart_leaks_nothing(void **state) {
  (void)state;
  int before = count_fds();
  for (int i = 0; i < 20; i++) {
    brume_http *h = brume_http_start("127.0.0.1:0", NULL, NULL);
    assert_non_null(h);
    brume_http_stop(h);
  }
  assert_int_equal(count_fds(), before);
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_routes),
      cmocka_unit_test(test_body_limit),
      cmocka_unit_test(test_bad_addresses),
      cmocka_unit_test(test_restart_leaks_nothing),
  };
  int rc = cmocka_run_group_tests_name("http", tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
