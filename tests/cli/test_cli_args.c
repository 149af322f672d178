/* Unit tests for cli/args (the command line against a command table) and cli/values (flag
 * values): flags before and after the command, --name=value, repeated flags, help forms, and the
 * usage errors' messages; durations, sizes, NAME=VALUE, VERSION=WEIGHT, scopes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "args.h"
#include "settings.h"
#include "values.h"

static int run_nothing(struct brume_cli_ctx *ctx) {
  (void)ctx;
  return 0;
}

static const brume_cli_flag create_flags[] = {
    {"zip", "FILE", false, "code"},
    {"env", "NAME=VALUE", true, "variable"},
    {"publish", NULL, false, "publish"},
    {"version", "V", false, "a flag named like the builtin --version"},
    {NULL, NULL, false, NULL},
};

static const brume_cli_command function_cmds[] = {
    {"function", "create", "NAME --zip FILE", 1, 1, create_flags, "Create.", run_nothing},
    {"function", "list", "", 0, 0, NULL, "List.", run_nothing},
};
static const brume_cli_command invoke_cmds[] = {
    {"invoke", NULL, "NAME", 1, 1, NULL, "Invoke.", run_nothing},
};
static const brume_cli_group groups[] = {
    {"function", "Functions.", function_cmds, 2},
    {"invoke", "Invoke.", invoke_cmds, 1},
};

/* Parses the words given (argv[0] added); returns the parser's result, *err set on failure. */
#define PARSE(a, err, ...) parse_words(a, err, (const char *[]){"brume", __VA_ARGS__, NULL})

static int parse_words(brume_cli_args *a, brume_err **err, const char **words) {
  int argc = 0;
  while (words[argc]) argc++;
  return brume_cli_args_parse(a, argc, (char **)words, brume_cli_global_flags, groups, 2, err);
}

static void expect_error(brume_cli_args *a, brume_err **err, int rc, const char *needle) {
  assert_int_equal(rc, -1);
  assert_non_null(*err);
  assert_int_equal((*err)->code, BRUME_INVALID_ARGUMENT);
  if (strstr((*err)->msg, needle) == NULL) fail_msg("'%s' lacks '%s'", (*err)->msg, needle);
  brume_err_clear(err);
  brume_cli_args_free(a);
}

static void test_flags_before_and_after(void **state) {
  (void)state;
  brume_cli_args a;
  brume_err *err = NULL;
  assert_int_equal(PARSE(&a, &err, "--endpoint", "h:1", "function", "create", "hello", "--zip",
                         "f.zip", "--json", "--request-id=r-1"),
                   0);
  assert_ptr_equal(a.group, &groups[0]);
  assert_ptr_equal(a.cmd, &function_cmds[0]);
  assert_int_equal(a.n_pos, 1);
  assert_string_equal(a.pos[0], "hello");
  assert_string_equal(brume_cli_args_get(&a, "endpoint"), "h:1");
  assert_string_equal(brume_cli_args_get(&a, "zip"), "f.zip");
  assert_string_equal(brume_cli_args_get(&a, "request-id"), "r-1");
  assert_true(brume_cli_args_has(&a, "json"));
  assert_null(brume_cli_args_get(&a, "json")); /* a switch has no value */
  assert_false(brume_cli_args_has(&a, "publish"));
  assert_false(a.help);
  brume_cli_args_free(&a);

  /* A one-word command, positional between flags, global flag last. */
  assert_int_equal(PARSE(&a, &err, "invoke", "--json", "hello", "--endpoint=x:2"), 0);
  assert_ptr_equal(a.cmd, &invoke_cmds[0]);
  assert_int_equal(a.n_pos, 1);
  assert_string_equal(a.pos[0], "hello");
  assert_string_equal(brume_cli_args_get(&a, "endpoint"), "x:2");
  brume_cli_args_free(&a);
}

static void test_repeated_env(void **state) {
  (void)state;
  brume_cli_args a;
  brume_err *err = NULL;
  assert_int_equal(PARSE(&a, &err, "function", "create", "f", "--env", "A=1", "--env=B=x=y",
                         "--zip", "z", "--env", "C="),
                   0);
  assert_string_equal(brume_cli_args_nth(&a, "env", 0), "A=1");
  assert_string_equal(brume_cli_args_nth(&a, "env", 1), "B=x=y");
  assert_string_equal(brume_cli_args_nth(&a, "env", 2), "C=");
  assert_null(brume_cli_args_nth(&a, "env", 3));
  brume_cli_args_free(&a);

  expect_error(&a, &err, PARSE(&a, &err, "function", "create", "f", "--zip", "a", "--zip", "b"),
               "brume function create: --zip is given twice");
  expect_error(&a, &err, PARSE(&a, &err, "--json", "function", "list", "--json"),
               "--json is given twice");
}

static void test_bad_flags(void **state) {
  (void)state;
  brume_cli_args a;
  brume_err *err = NULL;
  expect_error(&a, &err, PARSE(&a, &err, "function", "create", "f", "--bogus"),
               "brume function create: unknown option '--bogus'");
  expect_error(&a, &err, PARSE(&a, &err, "function", "--zip", "z", "create", "f"),
               "a command's options come after its name");
  expect_error(&a, &err, PARSE(&a, &err, "--zip", "z", "function", "create", "f"),
               "brume: unknown option '--zip'");
  expect_error(&a, &err, PARSE(&a, &err, "function", "create", "f", "--zip"),
               "--zip needs a value (FILE)");
  expect_error(&a, &err, PARSE(&a, &err, "function", "create", "f", "--zip=z", "--publish=yes"),
               "--publish takes no value");
  expect_error(&a, &err, PARSE(&a, &err, "function", "create", "f", "-x"), "unknown option '-x'");
}

static void test_bad_words(void **state) {
  (void)state;
  brume_cli_args a;
  brume_err *err = NULL;
  expect_error(&a, &err, PARSE(&a, &err, "bogus"), "brume: unknown command 'bogus'");
  expect_error(&a, &err, PARSE(&a, &err, "function", "bogus"),
               "brume function: unknown command 'bogus' (one of: create, list)");
  expect_error(&a, &err, PARSE(&a, &err, "function"), "brume function: needs a command: create");
  expect_error(&a, &err, PARSE(&a, &err, "--json"), "no command given");
  expect_error(&a, &err, PARSE(&a, &err, "function", "create", "--zip", "z"),
               "missing arguments (usage: brume function create NAME --zip FILE)");
  expect_error(&a, &err, PARSE(&a, &err, "function", "create", "a", "b", "--zip", "z"),
               "unexpected argument 'b'");
  expect_error(&a, &err, PARSE(&a, &err, "invoke"), "brume invoke: missing arguments");
}

static void test_help_and_version(void **state) {
  (void)state;
  brume_cli_args a;
  brume_err *err = NULL;
  assert_int_equal(PARSE(&a, &err, "--help"), 0);
  assert_true(a.help);
  assert_null(a.group);
  brume_cli_args_free(&a);
  assert_int_equal(PARSE(&a, &err, "help", "function", "create"), 0);
  assert_true(a.help);
  assert_ptr_equal(a.cmd, &function_cmds[0]);
  brume_cli_args_free(&a);
  /* Help needs no positionals. */
  assert_int_equal(PARSE(&a, &err, "function", "create", "-h"), 0);
  assert_true(a.help);
  assert_ptr_equal(a.cmd, &function_cmds[0]);
  brume_cli_args_free(&a);
  assert_int_equal(PARSE(&a, &err, "function", "--help"), 0);
  assert_true(a.help);
  assert_ptr_equal(a.group, &groups[0]);
  assert_null(a.cmd);
  brume_cli_args_free(&a);
  assert_int_equal(PARSE(&a, &err, "--version"), 0);
  assert_true(a.version);
  brume_cli_args_free(&a);
  /* A command's own --version is its flag, not the builtin. */
  assert_int_equal(PARSE(&a, &err, "function", "create", "f", "--zip", "z", "--version", "3"), 0);
  assert_false(a.version);
  assert_string_equal(brume_cli_args_get(&a, "version"), "3");
  brume_cli_args_free(&a);
  assert_int_equal(PARSE(&a, &err, "function", "list", "--version"), 0);
  assert_true(a.version);
  brume_cli_args_free(&a);
}

static void test_double_dash(void **state) {
  (void)state;
  brume_cli_args a;
  brume_err *err = NULL;
  assert_int_equal(PARSE(&a, &err, "invoke", "--json", "--", "--odd-name"), 0);
  assert_int_equal(a.n_pos, 1);
  assert_string_equal(a.pos[0], "--odd-name");
  assert_true(brume_cli_args_has(&a, "json"));
  brume_cli_args_free(&a);
}

static void expect_value_error(int rc, brume_err **err, const char *needle) {
  assert_int_equal(rc, -1);
  assert_non_null(*err);
  assert_int_equal((*err)->code, BRUME_INVALID_ARGUMENT);
  if (strstr((*err)->msg, needle) == NULL) fail_msg("'%s' lacks '%s'", (*err)->msg, needle);
  brume_err_clear(err);
}

static void test_durations(void **state) {
  (void)state;
  static const struct {
    const char *text;
    uint32_t ms;
  } good[] = {{"3s", 3000},    {"900000ms", 900000}, {"1m30s", 90000}, {"15m", 900000},
              {"1h", 3600000}, {"1ms", 1},           {"2s500ms", 2500}};
  brume_err *err = NULL;
  for (size_t i = 0; i < BRUME_ARRAY_LEN(good); i++) {
    uint32_t ms = 0;
    assert_int_equal(brume_cli_parse_duration_ms("--timeout", good[i].text, &ms, &err), 0);
    assert_int_equal(ms, good[i].ms);
  }
  uint32_t ms;
  expect_value_error(brume_cli_parse_duration_ms("--timeout", "30", &ms, &err), &err,
                     "--timeout: '30' needs a unit: 30s or 30ms");
  expect_value_error(brume_cli_parse_duration_ms("--timeout", "3x", &ms, &err), &err,
                     "is not a duration");
  expect_value_error(brume_cli_parse_duration_ms("--timeout", "", &ms, &err), &err,
                     "is not a duration");
  expect_value_error(brume_cli_parse_duration_ms("--timeout", "s", &ms, &err), &err,
                     "is not a duration");
  expect_value_error(brume_cli_parse_duration_ms("--timeout", "0s", &ms, &err), &err,
                     "out of range");
  expect_value_error(brume_cli_parse_duration_ms("--timeout", "5000000s", &ms, &err), &err,
                     "out of range");
  expect_value_error(
      brume_cli_parse_duration_ms("--timeout", "99999999999999999999999s", &ms, &err), &err,
      "is not a duration");
}

static void test_sizes_and_numbers(void **state) {
  (void)state;
  brume_err *err = NULL;
  uint32_t mib = 0;
  assert_int_equal(brume_cli_parse_mib("--memory", "512", &mib, &err), 0);
  assert_int_equal(mib, 512);
  assert_int_equal(brume_cli_parse_mib("--memory", "256MiB", &mib, &err), 0);
  assert_int_equal(mib, 256);
  assert_int_equal(brume_cli_parse_mib("--memory", "2GiB", &mib, &err), 0);
  assert_int_equal(mib, 2048);
  expect_value_error(brume_cli_parse_mib("--memory", "12KB", &mib, &err), &err,
                     "--memory: '12KB' is not a size in MiB");
  expect_value_error(brume_cli_parse_mib("--memory", "0", &mib, &err), &err, "out of range");
  expect_value_error(brume_cli_parse_mib("--memory", "-5", &mib, &err), &err, "not a size");

  uint64_t n = 0;
  assert_int_equal(brume_cli_parse_uint("N", "0", 0, 10, &n, &err), 0);
  assert_int_equal(n, 0);
  expect_value_error(brume_cli_parse_uint("N", "11", 0, 10, &n, &err), &err,
                     "N: 11 is out of range (0 to 10)");
  expect_value_error(brume_cli_parse_uint("N", "1e3", 0, 10, &n, &err), &err,
                     "'1e3' is not a whole number");
  expect_value_error(brume_cli_parse_uint("N", "", 0, 10, &n, &err), &err, "not a whole number");
}

static void test_pairs_and_routing(void **state) {
  (void)state;
  brume_err *err = NULL;
  char *k, *v;
  assert_int_equal(brume_cli_parse_pair("--env", "A=b=c", &k, &v, &err), 0);
  assert_string_equal(k, "A");
  assert_string_equal(v, "b=c");
  free(k);
  free(v);
  assert_int_equal(brume_cli_parse_pair("--env", "EMPTY=", &k, &v, &err), 0);
  assert_string_equal(v, "");
  free(k);
  free(v);
  expect_value_error(brume_cli_parse_pair("--env", "=x", &k, &v, &err), &err,
                     "--env: '=x' is not NAME=VALUE");
  expect_value_error(brume_cli_parse_pair("--env", "NOVALUE", &k, &v, &err), &err,
                     "is not NAME=VALUE");

  char *version;
  double w;
  assert_int_equal(brume_cli_parse_routing("--routing", "2=0.25", &version, &w, &err), 0);
  assert_string_equal(version, "2");
  assert_true(w == 0.25);
  free(version);
  assert_int_equal(brume_cli_parse_routing("--routing", "7=1", &version, &w, &err), 0);
  assert_true(w == 1.0);
  free(version);
  expect_value_error(brume_cli_parse_routing("--routing", "2", &version, &w, &err), &err,
                     "'2' is not VERSION=WEIGHT");
  expect_value_error(brume_cli_parse_routing("--routing", "=0.5", &version, &w, &err), &err,
                     "is not VERSION=WEIGHT");
  expect_value_error(brume_cli_parse_routing("--routing", "2=", &version, &w, &err), &err,
                     "is not VERSION=WEIGHT");
  expect_value_error(brume_cli_parse_routing("--routing", "2=1.5", &version, &w, &err), &err,
                     "weight '1.5' is not a number from 0 to 1");
  expect_value_error(brume_cli_parse_routing("--routing", "2=abc", &version, &w, &err), &err,
                     "is not a number from 0 to 1");
  expect_value_error(brume_cli_parse_routing("--routing", "2=nan", &version, &w, &err), &err,
                     "is not a number from 0 to 1");
}

static void test_modes_and_scopes(void **state) {
  (void)state;
  brume_err *err = NULL;
  int mode = 0;
  assert_int_equal(brume_cli_parse_handler_mode("--handler-mode", "exec", &mode, &err), 0);
  assert_int_equal(mode, 2);
  assert_string_equal(brume_cli_handler_mode_name(mode), "exec");
  assert_int_equal(brume_cli_parse_handler_mode("--handler-mode", "runtime-api", &mode, &err), 0);
  assert_int_equal(mode, 1);
  expect_value_error(brume_cli_parse_handler_mode("--handler-mode", "EXEC", &mode, &err), &err,
                     "'EXEC' is neither runtime-api nor exec");

  char **scopes;
  size_t n;
  assert_int_equal(brume_cli_parse_scopes("--scopes", "invoke,admin", &scopes, &n, &err), 0);
  assert_int_equal(n, 2);
  assert_string_equal(scopes[0], "invoke");
  assert_string_equal(scopes[1], "admin");
  brume_cli_strv_free(scopes, n);
  expect_value_error(brume_cli_parse_scopes("--scopes", "invoke,invoke", &scopes, &n, &err), &err,
                     "invoke is listed twice");
  expect_value_error(brume_cli_parse_scopes("--scopes", "invoke,root", &scopes, &n, &err), &err,
                     "'root' is not a scope");
  expect_value_error(brume_cli_parse_scopes("--scopes", "", &scopes, &n, &err), &err,
                     "'' is not a scope");
  expect_value_error(brume_cli_parse_scopes("--scopes", "invoke,", &scopes, &n, &err), &err,
                     "'' is not a scope");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flags_before_and_after),
      cmocka_unit_test(test_repeated_env),
      cmocka_unit_test(test_bad_flags),
      cmocka_unit_test(test_bad_words),
      cmocka_unit_test(test_help_and_version),
      cmocka_unit_test(test_double_dash),
      cmocka_unit_test(test_durations),
      cmocka_unit_test(test_sizes_and_numbers),
      cmocka_unit_test(test_pairs_and_routing),
      cmocka_unit_test(test_modes_and_scopes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
