/* Unit tests for cli/settings: each setting from flags, else the environment, else the config
 * file, else the default; API key files; the errors of a bad combination or file. The
 * environment is a table here (the getenv hook), the config file a real file in a temp dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "args.h"
#include "proc.h"
#include "settings.h"
#include "testutil.h"

static int run_nothing(struct brume_cli_ctx *ctx) {
  (void)ctx;
  return 0;
}

static const brume_cli_command cmds[] = {
    {"noop", NULL, "", 0, 0, NULL, "Nothing.", run_nothing},
};
static const brume_cli_group groups[] = {{"noop", "Nothing.", cmds, 1}};

/* The fake environment: NAME=VALUE strings. */
static const char *fake_env[16];

static const char *env_lookup(const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; fake_env[i]; i++)
    if (strncmp(fake_env[i], name, n) == 0 && fake_env[i][n] == '=') return fake_env[i] + n + 1;
  return NULL;
}

static char *dir;

static char *write_file(const char *name, const char *text) {
  char *path = brume_xasprintf("%s/%s", dir, name);
  char *slash = strrchr(path, '/');
  *slash = '\0';
  brume_test_run("mkdir -p '%s'", path);
  *slash = '/';
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

static int setup(void **state) {
  (void)state;
  dir = brume_test_tmpdir("cli-settings");
  memset(fake_env, 0, sizeof(fake_env));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  brume_test_rmtree(dir);
  free(dir);
  return 0;
}

/* Parses `brume noop <flags>` and loads the settings; returns the loader's result. */
#define LOAD(s, err, ...) load(s, err, (const char *[]){"brume", "noop", __VA_ARGS__, NULL})

static int load(brume_cli_settings *s, brume_err **err, const char **words) {
  int argc = 0;
  while (words[argc]) argc++;
  brume_cli_args a;
  assert_int_equal(
      brume_cli_args_parse(&a, argc, (char **)words, brume_cli_global_flags, groups, 1, NULL), 0);
  int rc = brume_cli_settings_load(s, &a, env_lookup, err);
  brume_cli_args_free(&a);
  return rc;
}

static void expect_error(brume_cli_settings *s, brume_err **err, int rc, brume_status code,
                         const char *needle) {
  assert_int_equal(rc, -1);
  assert_non_null(*err);
  assert_int_equal((*err)->code, code);
  if (strstr((*err)->msg, needle) == NULL) fail_msg("'%s' lacks '%s'", (*err)->msg, needle);
  brume_err_clear(err);
  brume_cli_settings_free(s);
}

static void test_defaults(void **state) {
  (void)state;
  brume_autofree char *home = brume_xasprintf("HOME=%s", dir); /* no config file there */
  fake_env[0] = home;
  brume_cli_settings s;
  brume_err *err = NULL;
  assert_int_equal(LOAD(&s, &err, "--json"), 0);
  assert_string_equal(s.endpoint, "127.0.0.1:7040");
  assert_null(s.api_key);
  assert_null(s.tls_ca);
  assert_null(s.request_id);
  assert_null(s.config_file);
  assert_int_equal(s.timeout_ms, 0);
  assert_true(s.json);
  brume_cli_settings_free(&s);
}

static void test_file_then_env_then_flags(void **state) {
  (void)state;
  brume_autofree char *file_key = write_file("file.key", "brume_file_key\n");
  brume_autofree char *env_key = write_file("env.key", "brume_envfile_key");
  brume_autofree char *flag_key = write_file("flag.key", "brume_flag_key\r\n");
  brume_autofree char *text = brume_xasprintf(
      "# brume's settings\nendpoint = file-host:1\napi_key_file = %s\ntls_ca = /file/ca.pem\n"
      "timeout_ms = 1234\n",
      file_key);
  brume_autofree char *conf = write_file("brume.conf", text);
  brume_autofree char *conf_env = brume_xasprintf("BRUME_CONFIG=%s", conf);
  fake_env[0] = conf_env;

  /* The file alone. */
  brume_cli_settings s;
  brume_err *err = NULL;
  assert_int_equal(LOAD(&s, &err, "--json"), 0);
  assert_string_equal(s.config_file, conf);
  assert_string_equal(s.endpoint, "file-host:1");
  assert_string_equal(s.api_key, "brume_file_key");
  assert_string_equal(s.tls_ca, "/file/ca.pem");
  assert_int_equal(s.timeout_ms, 1234);
  brume_cli_settings_free(&s);

  /* The environment over the file: the key file, then the key itself over the key file. */
  brume_autofree char *env_key_file = brume_xasprintf("BRUME_API_KEY_FILE=%s", env_key);
  fake_env[1] = "BRUME_ENDPOINT=env-host:2";
  fake_env[2] = "BRUME_TLS_CA=/env/ca.pem";
  fake_env[3] = env_key_file;
  assert_int_equal(LOAD(&s, &err, "--json"), 0);
  assert_string_equal(s.endpoint, "env-host:2");
  assert_string_equal(s.tls_ca, "/env/ca.pem");
  assert_string_equal(s.api_key, "brume_envfile_key");
  assert_string_equal(s.key_from, "BRUME_API_KEY_FILE");
  assert_int_equal(s.timeout_ms, 1234);
  brume_cli_settings_free(&s);
  fake_env[4] = "BRUME_API_KEY=brume_env_key";
  assert_int_equal(LOAD(&s, &err, "--json"), 0);
  assert_string_equal(s.api_key, "brume_env_key");
  assert_string_equal(s.key_from, "BRUME_API_KEY");
  brume_cli_settings_free(&s);

  /* Flags over both. */
  assert_int_equal(
      LOAD(&s, &err, "--endpoint", "flag-host:3", "--api-key-file", flag_key, "--tls-ca",
           "/flag/ca.pem", "--timeout-ms", "99", "--request-id", "r.1_x-2"),
      0);
  assert_string_equal(s.endpoint, "flag-host:3");
  assert_string_equal(s.api_key, "brume_flag_key");
  assert_string_equal(s.key_from, "--api-key-file");
  assert_string_equal(s.tls_ca, "/flag/ca.pem");
  assert_int_equal(s.timeout_ms, 99);
  assert_string_equal(s.request_id, "r.1_x-2");
  brume_cli_settings_free(&s);
  assert_int_equal(LOAD(&s, &err, "--api-key", "brume_flag_literal"), 0);
  assert_string_equal(s.api_key, "brume_flag_literal");
  assert_string_equal(s.key_from, "--api-key");
  brume_cli_settings_free(&s);

  /* An empty variable counts as unset. */
  fake_env[1] = "BRUME_ENDPOINT=";
  assert_int_equal(LOAD(&s, &err, "--json"), 0);
  assert_string_equal(s.endpoint, "file-host:1");
  brume_cli_settings_free(&s);
}

static void test_default_config_paths(void **state) {
  (void)state;
  brume_autofree char *home = brume_xasprintf("HOME=%s", dir);
  brume_autofree char *key = write_file("home.key", "brume_home_key\n");
  assert_non_null(key);
  brume_autofree char *conf =
      write_file(".config/brume/config", "endpoint = home-host:4\napi_key_file = ~/home.key\n");
  fake_env[0] = home;
  brume_cli_settings s;
  brume_err *err = NULL;
  assert_int_equal(LOAD(&s, &err, "--json"), 0);
  assert_string_equal(s.config_file, conf);
  assert_string_equal(s.endpoint, "home-host:4");
  assert_string_equal(s.api_key, "brume_home_key"); /* ~/ expanded */
  brume_cli_settings_free(&s);

  brume_autofree char *xdg_conf = write_file("xdg/brume/config", "endpoint = xdg-host:5\n");
  assert_non_null(xdg_conf);
  brume_autofree char *xdg = brume_xasprintf("XDG_CONFIG_HOME=%s/xdg", dir);
  fake_env[1] = xdg;
  assert_int_equal(LOAD(&s, &err, "--json"), 0);
  assert_string_equal(s.endpoint, "xdg-host:5");
  brume_cli_settings_free(&s);
}

static void test_errors(void **state) {
  (void)state;
  brume_autofree char *home = brume_xasprintf("HOME=%s", dir);
  fake_env[0] = home;
  brume_cli_settings s;
  brume_err *err = NULL;
  expect_error(&s, &err, LOAD(&s, &err, "--api-key", "a", "--api-key-file", "/x"),
               BRUME_INVALID_ARGUMENT, "give --api-key or --api-key-file, not both");
  expect_error(&s, &err, LOAD(&s, &err, "--api-key-file", "/nonexistent/key"), BRUME_NOT_FOUND,
               "API key file (--api-key-file): cannot read /nonexistent/key");
  brume_autofree char *empty = write_file("empty.key", "\n");
  expect_error(&s, &err, LOAD(&s, &err, "--api-key-file", empty), BRUME_INVALID_ARGUMENT,
               "does not hold one API key on one line");
  brume_autofree char *two = write_file("two.key", "brume_a\nbrume_b\n");
  expect_error(&s, &err, LOAD(&s, &err, "--api-key-file", two), BRUME_INVALID_ARGUMENT,
               "does not hold one API key on one line");
  expect_error(&s, &err, LOAD(&s, &err, "--api-key", "with space"), BRUME_INVALID_ARGUMENT,
               "the API key from --api-key holds characters no API key has");
  expect_error(&s, &err, LOAD(&s, &err, "--tls-cert", "c.pem", "--tls-ca", "ca.pem"),
               BRUME_INVALID_ARGUMENT, "--tls-cert and --tls-key go together");
  expect_error(&s, &err, LOAD(&s, &err, "--tls-cert", "c.pem", "--tls-key", "k.pem"),
               BRUME_INVALID_ARGUMENT, "--tls-cert needs --tls-ca");
  expect_error(&s, &err, LOAD(&s, &err, "--timeout-ms", "0"), BRUME_INVALID_ARGUMENT,
               "--timeout-ms: 0 is out of range");
  expect_error(&s, &err, LOAD(&s, &err, "--request-id", "bad id!"), BRUME_INVALID_ARGUMENT,
               "--request-id: 'bad id!' is not 1-64 characters");

  /* $BRUME_CONFIG must exist; the default file need not (test_defaults). */
  fake_env[1] = "BRUME_CONFIG=/nonexistent/brume.conf";
  expect_error(&s, &err, LOAD(&s, &err, "--json"), BRUME_NOT_FOUND,
               "config file: cannot read /nonexistent/brume.conf");
  brume_autofree char *bad = write_file("bad.conf", "endpoint = a:1\nendpiont = b:2\n");
  brume_autofree char *bad_env = brume_xasprintf("BRUME_CONFIG=%s", bad);
  fake_env[1] = bad_env;
  expect_error(&s, &err, LOAD(&s, &err, "--json"), BRUME_INVALID_ARGUMENT,
               "bad.conf:2: unknown option 'endpiont'");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_file_then_env_then_flags, setup, teardown),
      cmocka_unit_test_setup_teardown(test_default_config_paths, setup, teardown),
      cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
