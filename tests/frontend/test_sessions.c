/* Unit tests for frontend/sessions: tokens name their principal until they expire, ended or
 * evicted sessions are refused, malformed tokens never match, and the cookie parser takes only
 * a well-formed brume_session value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "sessions.h"

static brume_principal principal(const char *account, const char *key_id) {
  brume_principal p = {.scopes = BRUME_SCOPE_ADMIN};
  strcpy(p.account_id, account);
  strcpy(p.key_id, key_id);
  return p;
}

static void test_find_and_expire(void **state) {
  (void)state;
  brume_sessions *s = brume_sessions_new(4, 1000);
  brume_principal who = principal("acme", "00112233aabbccdd"), got;
  char token[BRUME_SESSION_TOKEN_HEX + 1], other[BRUME_SESSION_TOKEN_HEX + 1];
  int64_t expires = 0, got_expires = 0;
  brume_sessions_create(s, &who, 5000, token, &expires);
  assert_int_equal(strlen(token), BRUME_SESSION_TOKEN_HEX);
  assert_int_equal(expires, 6000);
  assert_true(brume_sessions_find(s, token, 5999, &got, &got_expires));
  assert_string_equal(got.account_id, "acme");
  assert_string_equal(got.key_id, "00112233aabbccdd");
  assert_int_equal(got_expires, 6000);
  /* Two sessions never share a token. */
  brume_sessions_create(s, &who, 5000, other, &expires);
  assert_string_not_equal(token, other);
  /* A token one digit off, an uppercase copy, a short one: none matches. */
  char wrong[BRUME_SESSION_TOKEN_HEX + 1];
  strcpy(wrong, token);
  wrong[10] = wrong[10] == '0' ? '1' : '0';
  assert_false(brume_sessions_find(s, wrong, 5500, &got, &got_expires));
  assert_false(brume_sessions_find(s, "abc", 5500, &got, &got_expires));
  assert_false(brume_sessions_find(s, NULL, 5500, &got, &got_expires));
  /* Expired at its end, and gone after. */
  assert_false(brume_sessions_find(s, token, 6000, &got, &got_expires));
  assert_false(brume_sessions_find(s, token, 5001, &got, &got_expires));
  /* Ended. */
  assert_true(brume_sessions_find(s, other, 5500, &got, &got_expires));
  brume_sessions_end(s, other);
  assert_false(brume_sessions_find(s, other, 5500, &got, &got_expires));
  brume_sessions_free(s);
}

static void test_eviction(void **state) {
  (void)state;
  brume_sessions *s = brume_sessions_new(2, 1000);
  brume_principal who = principal("acme", "00112233aabbccdd"), got;
  char a[BRUME_SESSION_TOKEN_HEX + 1], b[BRUME_SESSION_TOKEN_HEX + 1],
      c[BRUME_SESSION_TOKEN_HEX + 1];
  int64_t e;
  brume_sessions_create(s, &who, 100, a, &e);
  brume_sessions_create(s, &who, 200, b, &e);
  brume_sessions_create(s, &who, 300, c, &e); /* the table is full: a, the first to expire, goes */
  assert_false(brume_sessions_find(s, a, 400, &got, &e));
  assert_true(brume_sessions_find(s, b, 400, &got, &e));
  assert_true(brume_sessions_find(s, c, 400, &got, &e));
  brume_sessions_free(s);
}

static void test_cookie(void **state) {
  (void)state;
  char token[BRUME_SESSION_TOKEN_HEX + 1];
  const char *hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  char header[256];
  snprintf(header, sizeof(header), "theme=dark; brume_session=%s; x=1", hex);
  assert_true(brume_sessions_cookie_token(header, token));
  assert_string_equal(token, hex);
  snprintf(header, sizeof(header), "brume_session=%s", hex);
  assert_true(brume_sessions_cookie_token(header, token));
  assert_false(brume_sessions_cookie_token(NULL, token));
  assert_false(brume_sessions_cookie_token("", token));
  assert_false(brume_sessions_cookie_token("brume_session=", token));
  assert_false(brume_sessions_cookie_token("brume_session=abc; other=1", token));
  assert_false(brume_sessions_cookie_token("xbrume_session=0123", token));
  snprintf(header, sizeof(header), "brume_session=%.63sZ", hex);
  assert_false(brume_sessions_cookie_token(header, token));
  snprintf(header, sizeof(header), "brume_session=%sff", hex);
  assert_false(brume_sessions_cookie_token(header, token));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_find_and_expire),
      cmocka_unit_test(test_eviction),
      cmocka_unit_test(test_cookie),
  };
  return cmocka_run_group_tests_name("sessions", tests, NULL, NULL);
}
