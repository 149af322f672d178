/* The scratch disk (scratch.h): a sparse image with an empty ext2 file system of the size asked,
 * checked with e2fsprogs' own dumpe2fs; bad sizes refused; leftovers removed by suffix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "scratch.h"

static char dir[] = "/tmp/brume-test-scratch-XXXXXX";

/* The value of a "Name:   value" line of dumpe2fs -h for path, or -1. */
static long long dumpe2fs_field(const char *path, const char *name) {
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "PATH=$PATH:/sbin:/usr/sbin dumpe2fs -h %s 2>/dev/null", path);
  FILE *f = popen(cmd, "r");
  assert_non_null(f);
  char line[512];
  long long v = -1;
  size_t n = strlen(name);
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, name, n) == 0 && line[n] == ':') v = atoll(line + n + 1);
  pclose(f);
  return v;
}

static void test_create(void **state) {
  (void)state;
  char path[256];
  snprintf(path, sizeof(path), "%s/sb-1" BRUME_SCRATCH_SUFFIX, dir);
  brume_err *err = NULL;
  assert_int_equal(brume_scratch_create(path, 512, &err), 0);
  assert_null(err);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_size, 512LL << 20);
  assert_int_equal(st.st_mode & 0777, 0600);
  /* Sparse: far less allocated than its size. */
  assert_true((long long)st.st_blocks * 512 < (16LL << 20));
  assert_int_equal(dumpe2fs_field(path, "Block size"), 4096);
  assert_int_equal(dumpe2fs_field(path, "Block count"), (512LL << 20) / 4096);
  assert_int_equal(dumpe2fs_field(path, "Reserved block count"), 0);
  /* Made again over an old one. */
  assert_int_equal(brume_scratch_create(path, 1024, &err), 0);
  assert_int_equal(dumpe2fs_field(path, "Block count"), (1024LL << 20) / 4096);
}

static void test_bad_size(void **state) {
  (void)state;
  char path[256];
  snprintf(path, sizeof(path), "%s/sb-2" BRUME_SCRATCH_SUFFIX, dir);
  brume_err *err = NULL;
  assert_int_equal(brume_scratch_create(path, 100, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_clear(&err);
  assert_int_equal(brume_scratch_create(path, 20000, &err), -1);
  brume_err_clear(&err);
  assert_int_not_equal(access(path, F_OK), 0);
  /* A directory that does not exist. */
  assert_int_equal(brume_scratch_create("/nonexistent/brume/x.tmp.img", 512, &err), -1);
  assert_int_equal(err->code, BRUME_INTERNAL);
  brume_err_clear(&err);
}

static void test_remove_all(void **state) {
  (void)state;
  char path[300];
  const char *names[] = {"a.tmp.img", "b.tmp.img", "c.console", "tmp.img.keep"};
  for (size_t i = 0; i < 4; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
  }
  int before = brume_scratch_remove_all(dir); /* sb-1's image from test_create too */
  assert_true(before >= 2);
  snprintf(path, sizeof(path), "%s/a.tmp.img", dir);
  assert_int_not_equal(access(path, F_OK), 0);
  snprintf(path, sizeof(path), "%s/c.console", dir);
  assert_int_equal(access(path, F_OK), 0);
  snprintf(path, sizeof(path), "%s/tmp.img.keep", dir);
  assert_int_equal(access(path, F_OK), 0);
  assert_int_equal(brume_scratch_remove_all(dir), 0);
  assert_int_equal(brume_scratch_remove_all("/nonexistent/brume"), 0);
}

int main(void) {
  if (mkdtemp(dir) == NULL) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create),
      cmocka_unit_test(test_bad_size),
      cmocka_unit_test(test_remove_all),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0) rc = rc ? rc : 1;
  return rc;
}
