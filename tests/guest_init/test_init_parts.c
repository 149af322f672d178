/* brume-init's small pure parts: the environment, the log ring, /proc/meminfo, frame lengths,
 * error documents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "channel.h"
#include "env.h"
#include "logring.h"
#include "runtime_api.h"
#include "system.h"
#include "unpack.h"

/* The value of name in a NULL-terminated "NAME=value" array, or NULL. */
static const char *env_get(char *const *env, const char *name) {
  size_t nlen = strlen(name);
  for (; env && *env; env++)
    if (strncmp(*env, name, nlen) == 0 && (*env)[nlen] == '=') return *env + nlen + 1;
  return NULL;
}

static void test_env(void **state) {
  (void)state;
  Brume__GuestInit in = BRUME__GUEST_INIT__INIT;
  Brume__GuestInit__EnvironmentEntry e[3], *p[3];
  const char *kv[][2] = {{"PATH", "/custom"}, {"_HANDLER", "mine"}, {"X", "1"}};
  for (int i = 0; i < 3; i++) {
    brume__guest_init__environment_entry__init(&e[i]);
    e[i].key = (char *)kv[i][0];
    e[i].value = (char *)kv[i][1];
    p[i] = &e[i];
  }
  in.n_environment = 3;
  in.environment = p;
  in.handler = "index.handler";
  in.function_name = "fn";
  in.function_version = "$LATEST";
  in.memory_mib = 256;
  in.function_arn = "arn:brume:lambda:eu-1:acct:function:fn";
  assert_int_equal(init_env_validate(&in, NULL), 0);
  char **env = init_env_build(&in, "127.0.0.1:9001", "/var/task");
  /* The function may override PATH, but not the reserved names. */
  assert_string_equal(env_get(env, "PATH"), "/custom");
  assert_string_equal(env_get(env, "_HANDLER"), "index.handler");
  assert_string_equal(env_get(env, "X"), "1");
  assert_string_equal(env_get(env, "AWS_LAMBDA_RUNTIME_API"), "127.0.0.1:9001");
  assert_string_equal(env_get(env, "LAMBDA_TASK_ROOT"), "/var/task");
  assert_string_equal(env_get(env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), "256");
  assert_string_equal(env_get(env, "AWS_LAMBDA_FUNCTION_VERSION"), "$LATEST");
  assert_string_equal(env_get(env, "AWS_REGION"), "eu-1");
  assert_string_equal(env_get(env, "TZ"), ":UTC");
  assert_string_equal(env_get(env, "LD_LIBRARY_PATH"), "/var/task/lib:/opt/lib");
  assert_null(env_get(env, "HOME"));
  init_env_free(env);

  e[2].key = "A=B";
  brume_err *err = NULL;
  assert_int_equal(init_env_validate(&in, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_free(err);
}

static void test_logring(void **state) {
  (void)state;
  init_logring r = {0};
  size_t len;
  assert_null(init_logring_dup(&r, &len));
  init_logring_append(&r, "hello ", 6);
  init_logring_append(&r, "world", 5);
  uint8_t *out = init_logring_dup(&r, &len);
  assert_int_equal(len, 11);
  assert_memory_equal(out, "hello world", 11);
  free(out);
  /* Past 4 KiB only the newest bytes stay, whatever the sizes of the appends. */
  char buf[INIT_LOGRING_SIZE * 3];
  for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (char)('a' + i % 23);
  for (size_t step = 1; step < sizeof(buf); step = step * 3 + 1) {
    init_logring_reset(&r);
    for (size_t off = 0; off < sizeof(buf); off += step)
      init_logring_append(&r, buf + off, off + step <= sizeof(buf) ? step : sizeof(buf) - off);
    out = init_logring_dup(&r, &len);
    assert_int_equal(len, INIT_LOGRING_SIZE);
    assert_memory_equal(out, buf + sizeof(buf) - INIT_LOGRING_SIZE, INIT_LOGRING_SIZE);
    free(out);
  }
}

static void test_meminfo(void **state) {
  (void)state;
  uint64_t total, used;
  assert_int_equal(
      init_system_parse_meminfo("MemTotal:  1000 kB\nMemFree: 10 kB\nMemAvailable:   400 kB\n",
                                &total, &used),
      0);
  assert_int_equal(total, 1000 * 1024);
  assert_int_equal(used, 600 * 1024);
  assert_int_equal(init_system_parse_meminfo("MemTotal: 1000 kB\n", &total, &used), -1);
  assert_int_equal(init_system_parse_meminfo("", &total, &used), -1);
  assert_int_equal(init_system_mem_used(&total, &used, NULL), 0);
  assert_true(total > 0 && used > 0 && used < total);
}

static void test_frame_len(void **state) {
  (void)state;
  uint32_t n;
  const uint8_t ok[] = {0, 0, 1, 2};
  assert_int_equal(init_channel_frame_len(ok, 3, &n), 1);
  assert_int_equal(init_channel_frame_len(ok, 4, &n), 0);
  assert_int_equal(n, 258);
  const uint8_t max[] = {4, 0, 0, 0};
  assert_int_equal(init_channel_frame_len(max, 4, &n), 0);
  assert_int_equal(n, INIT_CHANNEL_MAX_FRAME);
  const uint8_t over[] = {4, 0, 0, 1};
  assert_int_equal(init_channel_frame_len(over, 4, &n), -1);
}

static void test_error_doc(void **state) {
  (void)state;
  char *type, *msg;
  const char *doc =
      "{\"errorMessage\":\"bad \\\"thing\\\"\",\"errorType\":\"T.X\",\"stackTrace\":[]}";
  init_rtapi_parse_error_doc((const uint8_t *)doc, strlen(doc), &type, &msg);
  assert_string_equal(type, "T.X");
  assert_string_equal(msg, "bad \"thing\"");
  free(type);
  free(msg);
  init_rtapi_parse_error_doc((const uint8_t *)"[1]", 3, &type, &msg);
  assert_null(type);
  assert_null(msg);
  init_rtapi_parse_error_doc((const uint8_t *)"{\"errorType\":3}", 15, &type, &msg);
  assert_null(type);
  init_rtapi_parse_error_doc((const uint8_t *)"not json", 8, &type, &msg);
  assert_null(type);
}

static void test_unpack_path(void **state) {
  (void)state;
  assert_true(init_unpack_path_ok("bootstrap"));
  assert_true(init_unpack_path_ok("lib/a.so"));
  assert_true(init_unpack_path_ok("..a/b..c/.d"));
  const char *bad[] = {"", "/etc/passwd", "a//b", "a/", "./a", "a/./b", "..", "../a", "a/../b",
                       "a/.."};
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) assert_false(init_unpack_path_ok(bad[i]));
}

static Brume__GuestCodeFile *code_file(const char *path, Brume__GuestCodeFile__Type type,
                                       uint32_t mode, const char *data) {
  Brume__GuestCodeFile *f = calloc(1, sizeof(*f));
  brume__guest_code_file__init(f);
  f->path = (char *)path;
  f->type = type;
  f->mode = mode;
  f->data.data = (uint8_t *)data;
  f->data.len = data ? strlen(data) : 0;
  return f;
}

static int unpack(const char *dir, Brume__GuestCodeFile **files, size_t n, brume_err **err) {
  Brume__GuestCode code = BRUME__GUEST_CODE__INIT;
  code.files = files;
  code.n_files = n;
  int rc = init_unpack_files(&code, dir, err);
  for (size_t i = 0; i < n; i++) free(files[i]);
  return rc;
}

static void test_unpack_files(void **state) {
  (void)state;
  char tmpl[] = "/tmp/brume-unpack-XXXXXX";
  assert_non_null(mkdtemp(tmpl));
  char dir[64], path[128], got[64];
  snprintf(dir, sizeof(dir), "%s/task", tmpl);
  const Brume__GuestCodeFile__Type REG = BRUME__GUEST_CODE_FILE__TYPE__REGULAR,
                                   DIR = BRUME__GUEST_CODE_FILE__TYPE__DIRECTORY,
                                   LNK = BRUME__GUEST_CODE_FILE__TYPE__SYMLINK;
  mode_t old = umask(022);
  Brume__GuestCodeFile *ok[] = {
      code_file("link", LNK, 0777, "lib/deep/x.txt"), /* before its target: made last */
      code_file("bootstrap", REG, 0755, "#!/bin/sh\n"),
      code_file("lib/deep/x.txt", REG, 0666, "x"),    /* parents made 0755 */
      code_file("ro", DIR, 0555, NULL),                /* mode set after what goes in it */
      code_file("ro/f", REG, 0600, "f"),
      code_file("bootstrap", REG, 0700, "#!/bin/sh\nexit 0\n"), /* replaced, as unzip -o */
  };
  brume_err *err = NULL;
  assert_int_equal(unpack(dir, ok, 6, &err), 0);
  struct stat st;
  snprintf(path, sizeof(path), "%s/bootstrap", dir);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0700);
  assert_int_equal(st.st_size, 17);
  snprintf(path, sizeof(path), "%s/lib/deep/x.txt", dir);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0666); /* not cut by the umask */
  snprintf(path, sizeof(path), "%s/lib/deep", dir);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0755);
  snprintf(path, sizeof(path), "%s/ro", dir);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0555);
  snprintf(path, sizeof(path), "%s/link", dir);
  ssize_t n = readlink(path, got, sizeof(got) - 1);
  assert_int_equal(n, 14);
  got[n] = '\0';
  assert_string_equal(got, "lib/deep/x.txt");

  /* Refusals: INVALID_ARGUMENT, which the agent reports as InvalidZipFileException. */
  Brume__GuestCodeFile *through[] = {code_file("bootstrap/x", REG, 0644, "x")};
  assert_int_equal(unpack(dir, through, 1, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_free(err), err = NULL;
  Brume__GuestCodeFile *via_link[] = {code_file("link2", LNK, 0777, "/etc"),
                                      code_file("link2/passwd", LNK, 0777, "x")};
  assert_int_equal(unpack(dir, via_link, 2, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_free(err), err = NULL;
  Brume__GuestCodeFile *escape[] = {code_file("../escape", REG, 0644, "x")};
  assert_int_equal(unpack(dir, escape, 1, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_free(err), err = NULL;
  snprintf(path, sizeof(path), "%s/escape", tmpl);
  assert_int_not_equal(access(path, F_OK), 0);
  assert_int_equal(unpack(dir, NULL, 0, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_free(err);
  umask(old);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "chmod -R u+w %s && rm -rf %s", tmpl, tmpl);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_env),       cmocka_unit_test(test_logring),
      cmocka_unit_test(test_meminfo),   cmocka_unit_test(test_frame_len),
      cmocka_unit_test(test_error_doc),  cmocka_unit_test(test_unpack_path),
      cmocka_unit_test(test_unpack_files),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
