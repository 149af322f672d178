/* Unit tests for common/err, common/log and common/mem: the error convention (first error kept,
 * context prefixed, codes named), the log line format, and the cleanup helpers. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "err.h"
#include "log.h"
#include "mem.h"

static int fails_with(brume_status code, const char *what, brume_err **err) {
  return brume_err_set(err, code, "%s is missing", what);
}

static void test_err_set_wrap_and_first_wins(void **state) {
  (void)state;
  brume_err *err = NULL;
  assert_int_equal(fails_with(BRUME_NOT_FOUND, "function f1", &err), -1);
  /* A second error does not replace the first: the point of failure is what is reported. */
  assert_int_equal(fails_with(BRUME_INTERNAL, "something else", &err), -1);
  assert_int_equal(brume_err_wrap(&err, "invoke %s", "f1"), -1);
  assert_int_equal(err->code, BRUME_NOT_FOUND);
  assert_string_equal(err->msg, "invoke f1: function f1 is missing");
  brume_err_clear(&err);
  assert_null(err);
  /* NULL means "the caller does not care". */
  assert_int_equal(fails_with(BRUME_INTERNAL, "x", NULL), -1);
  assert_int_equal(brume_err_wrap(NULL, "ctx"), -1);
}

static void test_status_names(void **state) {
  (void)state;
  assert_string_equal(brume_status_name(BRUME_OK), "OK");
  assert_string_equal(brume_status_name(BRUME_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
  assert_string_equal(brume_status_name(BRUME_UNAUTHENTICATED), "UNAUTHENTICATED");
  assert_string_equal(brume_status_name(99), "UNKNOWN");
  assert_string_equal(brume_status_name(-1), "UNKNOWN");
}

/* Runs fn with stderr captured and returns what it wrote. */
static char *capture_stderr(void (*fn)(void)) {
  char path[] = "/tmp/brume-log-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  int saved = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  fn();
  dup2(saved, STDERR_FILENO);
  close(saved);
  char *out = brume_xcalloc(8192, 1);
  ssize_t n = pread(fd, out, 8191, 0);
  assert_true(n >= 0);
  close(fd);
  unlink(path);
  return out;
}

static void log_some(void) {
  brume_log_init("counting", BRUME_LOG_INFO);
  char q[64];
  brume_debug("Not shown at info.", "n=%d", 1);
  brume_info("RPC server is listening.", "addr=%s port=%d", "127.0.0.1:7010", 7010);
  brume_warn("A \"quoted\" sentence.", "why=%s", brume_log_quote(q, sizeof(q), "two words\n"));
  brume_error("No pairs.", "%s", "");
}

/* The default reason names follow common.proto's ErrorReason. */
static void test_status_reasons(void **state) {
  (void)state;
  assert_string_equal(brume_status_reason(BRUME_INVALID_ARGUMENT), "InvalidParameterValueException");
  assert_string_equal(brume_status_reason(BRUME_NOT_FOUND), "ResourceNotFoundException");
  assert_string_equal(brume_status_reason(BRUME_ALREADY_EXISTS), "ResourceConflictException");
  assert_string_equal(brume_status_reason(BRUME_FAILED_PRECONDITION), "ResourceConflictException");
  assert_string_equal(brume_status_reason(BRUME_ABORTED), "PreconditionFailedException");
  assert_string_equal(brume_status_reason(BRUME_UNAUTHENTICATED), "UnrecognizedClientException");
  assert_string_equal(brume_status_reason(BRUME_PERMISSION_DENIED), "AccessDeniedException");
  assert_string_equal(brume_status_reason(BRUME_UNAVAILABLE), "ServiceUnavailableException");
  assert_string_equal(brume_status_reason(BRUME_INTERNAL), "ServiceException");
  assert_string_equal(brume_status_reason(999), "ServiceException");
}

static void test_log_lines(void **state) {
  (void)state;
  brume_autofree char *out = capture_stderr(log_some);
  assert_null(strstr(out, "Not shown"));
  char *l1 = out, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
  assert_non_null(strchr(l3, '\n'));
  assert_int_equal(strncmp(l1, "ts=", 3), 0);
  assert_non_null(strstr(l1, "Z level=info daemon=counting msg=\"RPC server is listening.\" "
                             "addr=127.0.0.1:7010 port=7010\n"));
  assert_non_null(strstr(l2, "level=warn daemon=counting msg=\"A \\\"quoted\\\" sentence.\" "
                             "why=\"two words \"\n"));
  assert_non_null(strstr(l3, "level=error daemon=counting msg=\"No pairs.\"\n"));
  brume_log_level lvl;
  assert_int_equal(brume_log_level_parse("warn", &lvl), 0);
  assert_int_equal(lvl, BRUME_LOG_WARN);
  assert_int_equal(brume_log_level_parse("loud", &lvl), -1);
}

static void test_log_quote_truncates(void **state) {
  (void)state;
  char small[8];
  assert_string_equal(brume_log_quote(small, sizeof(small), "abcdefghij"), "\"abcd\"");
  char tiny[2];
  assert_string_equal(brume_log_quote(tiny, sizeof(tiny), "abc"), "");
}

static int closed_fd = -1;
static void open_and_leave(void) {
  brume_autoclose int fd = open("/dev/null", O_RDONLY);
  closed_fd = fd;
}

static void test_cleanup_helpers(void **state) {
  (void)state;
  open_and_leave();
  assert_true(closed_fd >= 0);
  assert_int_equal(fcntl(closed_fd, F_GETFD), -1); /* closed at scope exit */

  brume_autofree char *s = brume_xasprintf("%s-%d", "sandbox", 7);
  assert_string_equal(s, "sandbox-7");
  char *owned = brume_xstrdup("moved");
  {
    brume_autofree char *tmp = owned;
    owned = brume_steal(&tmp); /* tmp is NULL now: nothing freed at the brace */
    assert_null(tmp);
  }
  assert_string_equal(owned, "moved");
  free(owned);
  brume_autoptr(brume_err) err = NULL;
  brume_err_set(&err, BRUME_INTERNAL, "freed by its auto-pointer");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_err_set_wrap_and_first_wins),
      cmocka_unit_test(test_status_names),
      cmocka_unit_test(test_status_reasons),
      cmocka_unit_test(test_log_lines),
      cmocka_unit_test(test_log_quote_truncates),
      cmocka_unit_test(test_cleanup_helpers),
  };
  return cmocka_run_group_tests_name("err_log_mem", tests, NULL, NULL);
}
