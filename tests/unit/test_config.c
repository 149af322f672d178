/* Unit tests for common/config: value syntax, bounds, the file format, flags, the common
 * options and cross-field checks. The golden files in tests/config cover --help and
 * --check-config output end to end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "config.h"
#include "proc.h"

static struct {
  brume_common_config common;
  int64_t workers;
  int64_t lease_ttl_ms;
  int64_t max_message_size;
  bool verbose_rpc;
  int mode;
  char *name;
  char *data_dir;
  char *api_key;
} cfg;

static const char *const modes[] = {"fast", "safe", "paranoid", NULL};

static int validate_calls;
static int validate_result;

static int validate(brume_err **err) {
  validate_calls++;
  if (validate_result < 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "workers must be even in paranoid mode");
  return 0;
}

static const brume_opt opts[] = {
    BRUME_OPT_INT("workers", &cfg.workers, 1, 64, "4", "worker threads"),
    BRUME_OPT_DURATION("lease_ttl", &cfg.lease_ttl_ms, BRUME_SECONDS(1), BRUME_MINUTES(5), "10s",
                       "etcd lease TTL"),
    BRUME_OPT_SIZE("max_message_size", &cfg.max_message_size, BRUME_KIB, 64 * BRUME_MIB, "4MiB",
                   "largest gRPC message"),
    BRUME_OPT_BOOL("verbose_rpc", &cfg.verbose_rpc, "false", "log every RPC"),
    BRUME_OPT_ENUM("mode", &cfg.mode, modes, "safe", "how careful to be"),
    BRUME_OPT_STRING("name", &cfg.name, "demo", "instance name"),
    BRUME_OPT_PATH("data_dir", &cfg.data_dir, NULL, "state directory"),
    BRUME_OPT_STRING("api_key", &cfg.api_key, NULL, "admin key", .flags = BRUME_OPT_SECRET),
};

static const brume_config_spec spec = {
    .name = "brume-test",
    .summary = "Exercises the configuration loader.",
    .default_config = "/nonexistent/brume-test.conf",
    .common = &cfg.common,
    .default_listen = "127.0.0.1:7000",
    .default_http_listen = "127.0.0.1:9000",
    .opts = opts,
    .n_opts = BRUME_ARRAY_LEN(opts),
    .validate = validate,
};

static char *tmpdir;

static int setup(void **state) {
  (void)state;
  tmpdir = brume_test_tmpdir("test_config");
  validate_calls = 0;
  validate_result = 0;
  brume_config_set_defaults(&spec);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  brume_config_free(&spec);
  brume_test_rmtree(tmpdir);
  free(tmpdir);
  return 0;
}

/* Writes text to <tmpdir>/name and returns the path (caller frees). */
static char *write_file(const char *name, const char *text) {
  char *path = brume_xasprintf("%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

/* Parses text as the file "t.conf"; returns the error message (caller frees) or NULL. */
static char *parse(const char *text) {
  brume_err *err = NULL;
  int rc = brume_config_parse(&spec, "t.conf", text, strlen(text), &err);
  if (rc == 0) {
    assert_null(err);
    return NULL;
  }
  assert_int_equal(rc, -1);
  assert_non_null(err);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  char *msg = brume_steal(&err->msg);
  brume_err_free(err);
  return msg;
}

static void expect_error(const char *text, const char *want) {
  char *msg = parse(text);
  if (!msg) fail_msg("expected an error for: %s", text);
  assert_string_equal(msg, want);
  free(msg);
}

/* Runs brume_config_load on a NULL-terminated argument list; stdout goes to a file whose
 * contents are returned in *out (caller frees) when out is non-NULL. */
static int load(brume_err **err, char **out, ...) {
  char *argv[32] = {"brume-test"};
  int argc = 1;
  va_list ap;
  va_start(ap, out);
  for (char *a; (a = va_arg(ap, char *)) != NULL;) argv[argc++] = a;
  va_end(ap);

  brume_autofree char *path = brume_xasprintf("%s/stdout", tmpdir);
  fflush(stdout);
  int saved = dup(STDOUT_FILENO);
  FILE *f = fopen(path, "w+");
  assert_non_null(f);
  dup2(fileno(f), STDOUT_FILENO);
  int rc = brume_config_load(&spec, argc, argv, err);
  fflush(stdout);
  dup2(saved, STDOUT_FILENO);
  close(saved);
  if (out) {
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    *out = brume_xcalloc(1, (size_t)n + 1);
    assert_int_equal(fread(*out, 1, (size_t)n, f), (size_t)n);
  }
  fclose(f);
  return rc;
}

static void test_defaults(void **state) {
  (void)state;
  brume_err *err = NULL;
  assert_int_equal(load(&err, NULL, NULL), 0);
  assert_null(err);
  assert_int_equal(cfg.workers, 4);
  assert_int_equal(cfg.lease_ttl_ms, 10000);
  assert_int_equal(cfg.max_message_size, 4 * 1024 * 1024);
  assert_false(cfg.verbose_rpc);
  assert_int_equal(cfg.mode, 1);
  assert_string_equal(cfg.name, "demo");
  assert_null(cfg.data_dir);
  assert_int_equal(cfg.common.log_level, BRUME_LOG_INFO);
  assert_string_equal(cfg.common.listen, "127.0.0.1:7000");
  assert_string_equal(cfg.common.http_listen, "127.0.0.1:9000");
  assert_string_equal(cfg.common.etcd_endpoints, "http://127.0.0.1:2379");
  assert_null(cfg.common.tls_cert);
  assert_false(cfg.common.tls_client_auth);
  assert_int_equal(validate_calls, 1);
}

static void test_types(void **state) {
  (void)state;
  char *msg = parse(
      "# a comment\n"
      "\n"
      "   workers = 16   # trailing comment\n"
      "lease_ttl=1m30s\n"
      "max_message_size = 64KiB\r\n"
      "verbose_rpc = yes\n"
      "mode = paranoid\n"
      "name = \"a # b \\\"quoted\\\" \\\\ \"  # comment after quotes\n"
      "data_dir = /var/lib/brume\n"
      "log_level = debug\n"
      "\tlisten = :7010\n"
      "http_listen = [::1]:0\n"
      "tls_client_auth = off\n");
  assert_null(msg);
  assert_int_equal(cfg.workers, 16);
  assert_int_equal(cfg.lease_ttl_ms, 90000);
  assert_int_equal(cfg.max_message_size, 65536);
  assert_true(cfg.verbose_rpc);
  assert_int_equal(cfg.mode, 2);
  assert_string_equal(cfg.name, "a # b \"quoted\" \\ ");
  assert_string_equal(cfg.data_dir, "/var/lib/brume");
  assert_int_equal(cfg.common.log_level, BRUME_LOG_DEBUG);
  assert_string_equal(cfg.common.listen, ":7010");
  assert_string_equal(cfg.common.http_listen, "[::1]:0");
  assert_false(cfg.common.tls_client_auth);
}

static void test_durations(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int64_t ms;
  } ok[] = {{"1000ms", 1000}, {"10s", 10000},         {"2m", 120000}, {"0h2m", 120000},
            {"1m30s", 90000}, {"4m59s999ms", 299999}, {"5m", 300000}};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(ok); i++) {
    brume_autofree char *text = brume_xasprintf("lease_ttl = %s\n", ok[i].text);
    char *msg = parse(text);
    assert_null(msg);
    assert_int_equal(cfg.lease_ttl_ms, ok[i].ms);
  }
  static const char *const bad[] = {"10", "10 s", "1.5s", "s", "-1s", "10sec", "1us", ""};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(bad); i++) {
    brume_autofree char *text = brume_xasprintf("lease_ttl = %s\n", bad[i]);
    brume_autofree char *want = brume_xasprintf(
        "t.conf:1: 'lease_ttl' must be a duration such as 500ms, 10s, 2m or 1h, got '%s'", bad[i]);
    expect_error(text, want);
  }
  expect_error("lease_ttl = 999ms\n", "t.conf:1: 'lease_ttl' must be between 1s and 5m, got 999ms");
  expect_error("lease_ttl = 99999999999999999999h\n",
               "t.conf:1: 'lease_ttl' must be a duration such as 500ms, 10s, 2m or 1h, got "
               "'99999999999999999999h'");
  char buf[32];
  assert_string_equal(brume_config_format_duration(0, buf, sizeof(buf)), "0");
  assert_string_equal(brume_config_format_duration(1500, buf, sizeof(buf)), "1500ms");
  assert_string_equal(brume_config_format_duration(90000, buf, sizeof(buf)), "90s");
  assert_string_equal(brume_config_format_duration(7200000, buf, sizeof(buf)), "2h");
}

static void test_sizes(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int64_t bytes;
  } ok[] = {
      {"1024", 1024}, {"2048B", 2048}, {"1KiB", 1024}, {"6MiB", 6 << 20}, {"64MiB", 64 << 20}};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(ok); i++) {
    brume_autofree char *text = brume_xasprintf("max_message_size = %s\n", ok[i].text);
    char *msg = parse(text);
    assert_null(msg);
    assert_int_equal(cfg.max_message_size, ok[i].bytes);
  }
  expect_error("max_message_size = 0\n",
               "t.conf:1: 'max_message_size' must be between 1KiB and 64MiB, got 0");
  expect_error("max_message_size = 1GiB\n",
               "t.conf:1: 'max_message_size' must be between 1KiB and 64MiB, got 1GiB");
  expect_error("max_message_size = 6MB\n",
               "t.conf:1: 'max_message_size' must be a size such as 512B, 64KiB, 6MiB or 1GiB, "
               "got '6MB'");
  char buf[32];
  assert_string_equal(brume_config_format_size(65536, buf, sizeof(buf)), "64KiB");
  assert_string_equal(brume_config_format_size(1000, buf, sizeof(buf)), "1000B");
  assert_string_equal(brume_config_format_size(3 * BRUME_GIB, buf, sizeof(buf)), "3GiB");
}

static void test_ints_bools_enums(void **state) {
  (void)state;
  expect_error("workers = 0\n", "t.conf:1: 'workers' must be between 1 and 64, got 0");
  expect_error("workers = 65\n", "t.conf:1: 'workers' must be between 1 and 64, got 65");
  expect_error("workers = four\n", "t.conf:1: 'workers' must be an integer, got 'four'");
  expect_error("workers = 4x\n", "t.conf:1: 'workers' must be an integer, got '4x'");
  expect_error("workers = 99999999999999999999\n",
               "t.conf:1: 'workers' must be an integer, got '99999999999999999999'");
  assert_null(parse("workers = +64\n"));
  assert_int_equal(cfg.workers, 64);

  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  for (size_t i = 0; i < 4; i++) {
    brume_autofree char *t = brume_xasprintf("verbose_rpc = %s\n", yes[i]);
    assert_null(parse(t));
    assert_true(cfg.verbose_rpc);
    brume_autofree char *f = brume_xasprintf("verbose_rpc = %s\n", no[i]);
    assert_null(parse(f));
    assert_false(cfg.verbose_rpc);
  }
  expect_error("verbose_rpc = maybe\n",
               "t.conf:1: 'verbose_rpc' must be true or false, got 'maybe'");

  expect_error("mode = saf\n",
               "t.conf:1: 'mode' must be one of fast, safe, paranoid, got 'saf' (did you mean "
               "'safe'?)");
  expect_error("mode = turbo\n",
               "t.conf:1: 'mode' must be one of fast, safe, paranoid, got 'turbo'");
  expect_error("log_level = verbose\n",
               "t.conf:1: 'log_level' must be one of debug, info, warn, error, got 'verbose'");
}

static void test_file_syntax(void **state) {
  (void)state;
  expect_error("lisen = :7010\n", "t.conf:1: unknown option 'lisen' (did you mean 'listen'?)");
  expect_error("\n\nbogus_option = 1\n", "t.conf:3: unknown option 'bogus_option'");
  expect_error("name = \"unterminated\n", "t.conf:1: missing closing quote in value of 'name'");
  expect_error("name = \"a\" b\n", "t.conf:1: unexpected 'b' after the closing quote of 'name'");
  expect_error("name = a\"b\n",
               "t.conf:1: stray '\"' in value of 'name' (quote the whole value: name = \"...\")");
  expect_error("name = \"a\\tb\"\n",
               "t.conf:1: unknown escape in quoted value of 'name' (only \\\" and \\\\ are "
               "allowed)");
  expect_error("workers 4\n", "t.conf:1: expected 'name = value', got 'workers 4'");
  expect_error("workers\n", "t.conf:1: expected 'name = value', got 'workers' (missing '=')");
  expect_error("= 4\n", "t.conf:1: expected 'name = value', got '= 4'");
  expect_error("workers = 4\nworkers = 5\n", "t.conf:2: 'workers' is already set on line 1");
  expect_error(
      "name = a\x01"
      "b\n",
      "t.conf:1: control character in value of 'name'");

  /* Every error of the file, in order, one per line. */
  expect_error("workers = 0\nlisen = x\nmode = fast\nlease_ttl = 10\n",
               "t.conf:1: 'workers' must be between 1 and 64, got 0\n"
               "t.conf:2: unknown option 'lisen' (did you mean 'listen'?)\n"
               "t.conf:4: 'lease_ttl' must be a duration such as 500ms, 10s, 2m or 1h, got '10'");

  /* An empty value unsets a string; quotes keep surrounding spaces. */
  assert_null(parse("name =\n"));
  assert_null(cfg.name);
  assert_null(parse("name = \"  x  \"\n"));
  assert_string_equal(cfg.name, "  x  ");
  /* No trailing newline, and a lone '#' line. */
  assert_null(parse("#\nworkers = 7"));
  assert_int_equal(cfg.workers, 7);
}

static void test_addr(void **state) {
  (void)state;
  expect_error("listen = localhost\n",
               "t.conf:1: 'listen': address 'localhost' must be host:port or :port");
  expect_error("listen = 127.0.0.1:99999\n",
               "t.conf:1: 'listen': address '127.0.0.1:99999' needs a port between 0 and 65535");
  expect_error("listen = ::1:80\n",
               "t.conf:1: 'listen': address '::1:80': write IPv6 hosts in brackets, [::1]:port");
  char *host = NULL;
  int port = -1;
  assert_int_equal(brume_config_split_addr(":9090", &host, &port, NULL), 0);
  assert_string_equal(host, "");
  assert_int_equal(port, 9090);
  free(host);
  assert_int_equal(brume_config_split_addr("[::1]:0", &host, &port, NULL), 0);
  assert_string_equal(host, "::1");
  assert_int_equal(port, 0);
  free(host);
}

static void test_flags_override_file(void **state) {
  (void)state;
  brume_autofree char *path = write_file("a.conf",
                                         "workers = 8\n"
                                         "listen = 127.0.0.1:7100\n"
                                         "verbose_rpc = true\n"
                                         "mode = fast\n");
  brume_err *err = NULL;
  int rc = load(&err, NULL, "--config", path, "--workers=12", "--no-verbose-rpc", "--mode",
                "paranoid", "--http-listen", ":9999", NULL);
  assert_null(err);
  assert_int_equal(rc, 0);
  assert_int_equal(cfg.workers, 12);
  assert_string_equal(cfg.common.listen, "127.0.0.1:7100");
  assert_string_equal(cfg.common.http_listen, ":9999");
  assert_false(cfg.verbose_rpc);
  assert_int_equal(cfg.mode, 2);

  rc = load(&err, NULL,
            "--config="
            "/dev/null",
            "--verbose_rpc", "--tls-client-auth=false", NULL);
  assert_int_equal(rc, 0);
  assert_true(cfg.verbose_rpc);
  assert_int_equal(cfg.workers, 4); /* reloading starts from the defaults again */
}

static void test_flag_errors(void **state) {
  (void)state;
  brume_err *err = NULL;
  int rc = load(&err, NULL, "--wokers=3", "--mode", "x", "--bogus", "stray", "--no-workers",
                "--name", NULL);
  assert_int_equal(rc, -1);
  assert_non_null(err);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  assert_string_equal(err->msg,
                      "command line: unknown flag '--wokers' (did you mean '--workers'?)\n"
                      "command line: unknown flag '--bogus'\n"
                      "command line: unexpected argument 'stray'\n"
                      "command line: '--no-workers' only works for a boolean option without a "
                      "value\n"
                      "command line: '--name' needs a value\n"
                      "command line: 'mode' must be one of fast, safe, paranoid, got 'x'");
  brume_err_clear(&err);
  assert_int_equal(validate_calls, 0);
}

static void test_missing_files(void **state) {
  (void)state;
  brume_err *err = NULL;
  /* The default file (/nonexistent/...) is absent: fine. An explicit one is not. */
  assert_int_equal(load(&err, NULL, "--config", "/nonexistent/x.conf", NULL), -1);
  assert_int_equal(err->code, BRUME_NOT_FOUND);
  assert_string_equal(err->msg,
                      "cannot read config file '/nonexistent/x.conf': No such file or directory");
  brume_err_clear(&err);
  assert_int_equal(load(&err, NULL, "--config", NULL), -1);
  assert_string_equal(err->msg, "command line: --config needs a file name");
  brume_err_clear(&err);
}

static void test_cross_field(void **state) {
  (void)state;
  brume_autofree char *path = write_file("tls.conf",
                                         "# TLS, half configured\n"
                                         "tls_cert = /etc/brume/cert.pem\n"
                                         "tls_client_auth = true\n");
  brume_err *err = NULL;
  assert_int_equal(load(&err, NULL, "--config", path, NULL), -1);
  brume_autofree char *want = brume_xasprintf(
      "%s:2: tls_cert is set but tls_key is not: TLS needs both\n"
      "%s:3: tls_client_auth needs tls_ca to verify client certificates",
      path, path);
  assert_string_equal(err->msg, want);
  brume_err_clear(&err);
  assert_int_equal(validate_calls, 0); /* the daemon's hook runs only on an otherwise good config */

  assert_int_equal(
      load(&err, NULL, "--config", path, "--tls-key=/k.pem", "--tls-ca", "/ca.pem", NULL), 0);
  assert_null(err);
  assert_int_equal(validate_calls, 1);

  validate_result = -1;
  assert_int_equal(load(&err, NULL, NULL), -1);
  assert_string_equal(err->msg, "workers must be even in paranoid mode");
  brume_err_clear(&err);

  validate_result = 0;
  assert_int_equal(load(&err, NULL, "--etcd-endpoints=http://a:2379,etcd:2379", NULL), -1);
  assert_string_equal(
      err->msg, "command line: etcd_endpoints: 'etcd:2379' is not an http:// or https:// URL");
  brume_err_clear(&err);
}

static void test_help_and_check(void **state) {
  (void)state;
  brume_err *err = NULL;
  char *out = NULL;
  assert_int_equal(load(&err, &out, "--bogus", "--help", NULL), 1);
  assert_null(err);
  assert_non_null(strstr(out, "Usage: brume-test [--config FILE]"));
  assert_non_null(strstr(out, "Exercises the configuration loader."));
  assert_non_null(strstr(out, "(between 1KiB and 64MiB)"));
  assert_non_null(strstr(out, "(fast, safe, paranoid)"));
  free(out);

  assert_int_equal(load(&err, &out, "--check-config", "--api-key=hunter2", "--workers", "6", NULL),
                   1);
  assert_null(err);
  assert_non_null(strstr(out, "configuration OK\n"));
  assert_non_null(strstr(out, "workers          = 6 "));
  assert_non_null(strstr(out, "# command line\n"));
  assert_non_null(strstr(out, "api_key          = (set)"));
  assert_null(strstr(out, "hunter2"));
  assert_non_null(strstr(out, "lease_ttl        = 10s "));
  free(out);

  assert_int_equal(load(&err, &out, "--check-config", "--workers=0", NULL), -1);
  assert_string_equal(err->msg, "command line: 'workers' must be between 1 and 64, got 0");
  assert_string_equal(out, "");
  brume_err_clear(&err);
  free(out);
}

static char *required_value;
static const brume_opt required_opts[] = {
    BRUME_OPT_STRING("token", &required_value, NULL, "needed", .flags = BRUME_OPT_REQUIRED),
};
static const brume_config_spec required_spec = {
    .name = "brume-req", .opts = required_opts, .n_opts = 1};

static void test_required_and_no_common(void **state) {
  (void)state;
  char *argv[] = {"brume-req", NULL};
  brume_err *err = NULL;
  assert_int_equal(brume_config_load(&required_spec, 1, argv, &err), -1);
  assert_string_equal(err->msg, "'token' is required: set it in the config file or with --token");
  brume_err_clear(&err);
  char *argv2[] = {"brume-req", "--token=abc", "--listen=:1", NULL};
  assert_int_equal(brume_config_load(&required_spec, 3, argv2, &err), -1);
  assert_string_equal(err->msg, "command line: unknown flag '--listen'");
  brume_err_clear(&err);
  assert_int_equal(brume_config_load(&required_spec, 2, argv2, &err), 0);
  assert_string_equal(required_value, "abc");
  brume_config_free(&required_spec);
  assert_null(required_value);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_types, setup, teardown),
      cmocka_unit_test_setup_teardown(test_durations, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sizes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ints_bools_enums, setup, teardown),
      cmocka_unit_test_setup_teardown(test_file_syntax, setup, teardown),
      cmocka_unit_test_setup_teardown(test_addr, setup, teardown),
      cmocka_unit_test_setup_teardown(test_flags_override_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_flag_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_missing_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cross_field, setup, teardown),
      cmocka_unit_test_setup_teardown(test_help_and_check, setup, teardown),
      cmocka_unit_test_setup_teardown(test_required_and_no_common, setup, teardown),
  };
  return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
