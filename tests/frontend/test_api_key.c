/* Unit tests for frontend/api_key: a created key parses back to its record's id and verifies,
 * while a changed secret, another record's salt or a malformed string does not; two keys never
 * share an id, a secret or a salt; the key string never appears in the stored record; scopes parse,
 * format and check (admin allows everything); the record's JSON round trip, and its refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "api_key.h"

static void test_create_parse_verify(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_api_key_record a, b;
  char ka[BRUME_API_KEY_STRING_LEN + 1], kb[BRUME_API_KEY_STRING_LEN + 1];
  assert_int_equal(
      brume_api_key_create("acct1", BRUME_SCOPE_INVOKE | BRUME_SCOPE_MANAGE, 1000, &a, ka, &err),
      0);
  assert_int_equal(brume_api_key_create("acct1", BRUME_SCOPE_INVOKE, 1000, &b, kb, &err), 0);
  assert_int_equal(strlen(ka), BRUME_API_KEY_STRING_LEN);
  assert_memory_equal(ka, "brume_", 6);
  assert_string_not_equal(a.key_id, b.key_id);
  assert_string_not_equal(a.salt, b.salt);
  assert_string_not_equal(ka, kb);
  assert_string_equal(a.account_id, "acct1");
  assert_int_equal(a.created_unix_ms, 1000);

  char id[BRUME_API_KEY_ID_HEX + 1], secret[BRUME_API_KEY_SECRET_HEX + 1];
  assert_int_equal(brume_api_key_parse(ka, id, secret, &err), 0);
  assert_string_equal(id, a.key_id);
  assert_true(brume_api_key_verify(&a, secret));
  assert_false(brume_api_key_verify(&b, secret)); /* another key's record */
  /* The stored record holds neither the secret nor the key string. */
  char *json = brume_api_key_record_json(&a);
  assert_null(strstr(json, secret));
  assert_null(strstr(json, ka));
  free(json);
  /* One changed digit is refused. */
  secret[10] = secret[10] == 'a' ? 'b' : 'a';
  assert_false(brume_api_key_verify(&a, secret));
  assert_false(brume_api_key_verify(&a, "short"));
  assert_false(brume_api_key_verify(&a, NULL));

  /* Bad accounts and scopes. */
  assert_int_equal(brume_api_key_create("", BRUME_SCOPE_INVOKE, 0, &b, kb, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_clear(&err);
  assert_int_equal(brume_api_key_create("a/b", BRUME_SCOPE_INVOKE, 0, &b, kb, &err), -1);
  brume_err_clear(&err);
  assert_int_equal(brume_api_key_create("acct1", 0, 0, &b, kb, &err), -1);
  brume_err_clear(&err);
  assert_int_equal(brume_api_key_create("acct1", 1u << 7, 0, &b, kb, &err), -1);
  brume_err_clear(&err);
}

static void test_malformed_keys(void **state) {
  (void)state;
  brume_api_key_record a;
  char key[BRUME_API_KEY_STRING_LEN + 1];
  brume_err *err = NULL;
  assert_int_equal(brume_api_key_create("acct1", BRUME_SCOPE_ADMIN, 0, &a, key, &err), 0);
  char bad[5][BRUME_API_KEY_STRING_LEN + 8];
  snprintf(bad[0], sizeof(bad[0]), "%s", "");
  snprintf(bad[1], sizeof(bad[1]), "%sx", key); /* too long */
  snprintf(bad[2], sizeof(bad[2]), "%s", key);
  bad[2][0] = 'B'; /* wrong prefix */
  snprintf(bad[3], sizeof(bad[3]), "%s", key);
  bad[3][6 + BRUME_API_KEY_ID_HEX] = '-'; /* wrong separator */
  snprintf(bad[4], sizeof(bad[4]), "%s", key);
  bad[4][BRUME_API_KEY_STRING_LEN - 1] = 'G'; /* not hex */
  char id[BRUME_API_KEY_ID_HEX + 1], secret[BRUME_API_KEY_SECRET_HEX + 1];
  for (size_t i = 0; i < 5; i++) {
    assert_int_equal(brume_api_key_parse(bad[i], id, secret, &err), -1);
    assert_int_equal(err->code, BRUME_UNAUTHENTICATED);
    assert_null(strstr(err->msg, key + 20)); /* the message never repeats the key */
    brume_err_clear(&err);
  }
  assert_int_equal(brume_api_key_parse(NULL, id, secret, &err), -1);
  brume_err_clear(&err);
}

static void test_scopes(void **state) {
  (void)state;
  unsigned s = 0;
  brume_err *err = NULL;
  assert_int_equal(brume_scopes_parse("manage,invoke", &s, &err), 0);
  assert_int_equal(s, BRUME_SCOPE_INVOKE | BRUME_SCOPE_MANAGE);
  char buf[64];
  assert_string_equal(brume_scopes_format(s, buf, sizeof(buf)), "invoke,manage");
  assert_int_equal(brume_scopes_parse("invoke,root", &s, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  assert_non_null(strstr(err->msg, "root"));
  brume_err_clear(&err);
  assert_int_equal(brume_scopes_parse("", &s, &err), -1);
  brume_err_clear(&err);
  assert_int_equal(brume_scopes_parse("invoke,", &s, &err), -1);
  brume_err_clear(&err);
  assert_true(brume_api_key_allows(BRUME_SCOPE_INVOKE, BRUME_SCOPE_INVOKE));
  assert_false(brume_api_key_allows(BRUME_SCOPE_INVOKE, BRUME_SCOPE_MANAGE));
  assert_false(brume_api_key_allows(BRUME_SCOPE_INVOKE, BRUME_SCOPE_INVOKE | BRUME_SCOPE_MANAGE));
  assert_true(brume_api_key_allows(BRUME_SCOPE_ADMIN, BRUME_SCOPE_MANAGE | BRUME_SCOPE_INVOKE));
}

static void test_record_json(void **state) {
  (void)state;
  brume_api_key_record a, back;
  char key[BRUME_API_KEY_STRING_LEN + 1];
  brume_err *err = NULL;
  assert_int_equal(brume_api_key_create("acct9", BRUME_SCOPE_MANAGE, 1764290000123, &a, key, &err),
                   0);
  snprintf(a.description, sizeof(a.description), "deploys from \"CI\"");
  char *json = brume_api_key_record_json(&a);
  assert_int_equal(brume_api_key_record_parse(a.key_id, json, &back, &err), 0);
  assert_memory_equal(&a, &back, sizeof(a));
  assert_string_equal(back.description, "deploys from \"CI\"");
  char id[BRUME_API_KEY_ID_HEX + 1], secret[BRUME_API_KEY_SECRET_HEX + 1];
  assert_int_equal(brume_api_key_parse(key, id, secret, &err), 0);
  assert_true(brume_api_key_verify(&back, secret));
  free(json);
  const char *bad[] = {
      "nope",
      "{}",
      "{\"account\":\"a\",\"scopes\":[],\"salt\":\"00\",\"hash\":\"00\"}",
      "{\"account\":\"a\",\"scopes\":[\"root\"],\"salt\":\"0123456789abcdef0123456789abcdef\","
      "\"hash\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"}",
      "{\"account\":\"a\",\"scopes\":[],\"salt\":\"0123456789abcdef0123456789abcdef\","
      "\"hash\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"}",
      "{\"account\":\"a/b\",\"scopes\":[\"invoke\"],\"salt\":\"0123456789abcdef0123456789abcdef\","
      "\"hash\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (brume_api_key_record_parse(a.key_id, bad[i], &back, &err) == 0)
      fail_msg("parsed: %s", bad[i]);
    assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
    brume_err_clear(&err);
  }
  json = brume_api_key_record_json(&a);
  assert_int_equal(brume_api_key_record_parse("not-an-id", json, &back, &err), -1);
  brume_err_clear(&err);
  free(json);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_parse_verify),
      cmocka_unit_test(test_malformed_keys),
      cmocka_unit_test(test_scopes),
      cmocka_unit_test(test_record_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
