/* frontend/names: the identifier checks, function-name-or-ARN parsing and ARN formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "names.h"

/* Asserts that err is an INVALID_ARGUMENT led by InvalidParameterValueException naming field. */
static void assert_invalid(brume_err *err, const char *field) {
  assert_non_null(err);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  if (strncmp(err->msg, "InvalidParameterValueException: ", 32) != 0 ||
      strstr(err->msg, field) == NULL)
    fail_msg("unexpected message: %s", err->msg);
  brume_err_free(err);
}

static void test_identifiers(void **state) {
  (void)state;
  brume_err *err = NULL;
  assert_int_equal(brume_check_account_id("acct-1_A", "account_id", &err), 0);
  assert_int_equal(brume_check_function_name("a", "function_name", &err), 0);
  char max[66];
  memset(max, 'f', 64);
  max[64] = '\0';
  assert_int_equal(brume_check_function_name(max, "function_name", &err), 0);
  max[64] = 'f';
  max[65] = '\0';
  assert_int_equal(brume_check_function_name(max, "function_name", &err), -1);
  assert_invalid(err, "function_name");
  err = NULL;
  const char *bad[] = {"", "a b", "a/b", "a:b", "é"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(brume_check_function_name(bad[i], "function_name", &err), -1);
    assert_invalid(err, "function_name");
    err = NULL;
    assert_int_equal(brume_check_account_id(bad[i], "account_id", &err), -1);
    assert_invalid(err, "account_id");
    err = NULL;
  }
  /* A short printable value is quoted; one with a quote is not repeated. */
  assert_int_equal(brume_check_function_name("a b", "function_name", &err), -1);
  assert_non_null(strstr(err->msg, "\"a b\""));
  brume_err_clear(&err);
  assert_int_equal(brume_check_function_name("a\"b", "function_name", &err), -1);
  assert_null(strstr(err->msg, "a\"b"));
  brume_err_clear(&err);
}

static void test_versions_aliases_qualifiers(void **state) {
  (void)state;
  brume_err *err = NULL;
  assert_true(brume_is_version("$LATEST"));
  assert_true(brume_is_version("1"));
  assert_true(brume_is_version("999999999"));
  assert_false(brume_is_version("0"));
  assert_false(brume_is_version("01"));
  assert_false(brume_is_version("1000000000"));
  assert_false(brume_is_version(""));
  assert_false(brume_is_version("live"));
  assert_false(brume_is_version("$latest"));
  assert_int_equal(brume_check_alias("live", "name", &err), 0);
  assert_int_equal(brume_check_alias("v1", "name", &err), 0);
  assert_int_equal(brume_check_alias("123", "name", &err), -1);
  assert_invalid(err, "name");
  err = NULL;
  assert_int_equal(brume_check_alias("$LATEST", "name", &err), -1);
  assert_invalid(err, "name");
  err = NULL;
  char long_alias[130];
  memset(long_alias, 'a', 129);
  long_alias[129] = '\0';
  assert_int_equal(brume_check_alias(long_alias, "name", &err), -1);
  assert_invalid(err, "name");
  err = NULL;
  long_alias[128] = '\0';
  assert_int_equal(brume_check_alias(long_alias, "name", &err), 0);
  assert_int_equal(brume_check_qualifier("", "qualifier", &err), 0);
  assert_int_equal(brume_check_qualifier("$LATEST", "qualifier", &err), 0);
  assert_int_equal(brume_check_qualifier("12", "qualifier", &err), 0);
  assert_int_equal(brume_check_qualifier("live", "qualifier", &err), 0);
  assert_int_equal(brume_check_qualifier("012", "qualifier", &err), -1);
  assert_invalid(err, "qualifier");
  err = NULL;
  assert_int_equal(brume_check_qualifier("a.b", "qualifier", &err), -1);
  assert_invalid(err, "qualifier");
}

static void test_parse_plain_and_arn(void **state) {
  (void)state;
  brume_err *err = NULL;
  brume_function_name fn;
  assert_int_equal(brume_function_name_parse("hello", "local", "function_name", &fn, &err), 0);
  assert_string_equal(fn.name, "hello");
  assert_string_equal(fn.account_id, "");
  assert_string_equal(fn.qualifier, "");
  assert_int_equal(brume_function_name_parse("arn:brume:lambda:local:acct1:function:hello", "local",
                                             "function_name", &fn, &err),
                   0);
  assert_string_equal(fn.account_id, "acct1");
  assert_string_equal(fn.name, "hello");
  assert_string_equal(fn.qualifier, "");
  assert_int_equal(brume_function_name_parse("arn:brume:lambda:local:acct1:function:hello:live",
                                             "local", "function_name", &fn, &err),
                   0);
  assert_string_equal(fn.qualifier, "live");
  assert_int_equal(brume_function_name_parse("arn:brume:lambda:local:acct1:function:hello:7",
                                             "local", "function_name", &fn, &err),
                   0);
  assert_string_equal(fn.qualifier, "7");
  const char *bad[] = {
      "",
      "hello:live", /* the qualifier has its own field */
      "arn:brume:lambda:other:acct1:function:hello",
      "arn:brume:lambda:local:acct1:function:",
      "arn:brume:lambda:local::function:hello",
      "arn:brume:lambda:local:acct1:fn:hello",
      "arn:brume:lambda:local:acct1:function:hello:",
      "arn:brume:lambda:local:acct1:function:hello:007",
      "arn:brume:lambda:local:acct1:function:hello:live:x",
      "arn:brume:lambda:local",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (brume_function_name_parse(bad[i], "local", "function_name", &fn, &err) == 0)
      fail_msg("parsed: %s", bad[i]);
    assert_invalid(err, "function_name");
    err = NULL;
    assert_string_equal(fn.name, "");
  }
}

static void test_arn_format(void **state) {
  (void)state;
  char *a = brume_function_arn("local", "acct1", "hello", NULL);
  assert_string_equal(a, "arn:brume:lambda:local:acct1:function:hello");
  free(a);
  a = brume_function_arn("local", "acct1", "hello", "");
  assert_string_equal(a, "arn:brume:lambda:local:acct1:function:hello");
  free(a);
  a = brume_function_arn("eu", "acct1", "hello", "$LATEST");
  assert_string_equal(a, "arn:brume:lambda:eu:acct1:function:hello:$LATEST");
  /* What is formatted parses back. */
  brume_function_name fn;
  assert_int_equal(brume_function_name_parse(a, "eu", "function_name", &fn, NULL), 0);
  assert_string_equal(fn.qualifier, "$LATEST");
  free(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_identifiers),
      cmocka_unit_test(test_versions_aliases_qualifiers),
      cmocka_unit_test(test_parse_plain_and_arn),
      cmocka_unit_test(test_arn_format),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
