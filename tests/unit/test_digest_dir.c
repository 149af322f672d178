/* common/digest_dir: a store writes <sha256><ext> whole and once, a second store of the same
 * digest leaves the file alone, opening removes an earlier process's temporary files (and only
 * those), a temporary file is committed or discarded, and a bad digest reaches no file. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "digest_dir.h"
#include "proc.h"
#include "testutil.h"

/* The SHA-256 of "hello\n" and of "". */
#define HELLO_SHA "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static int setup(void **state) {
  *state = brume_test_tmpdir("digest-dir");
  return *state ? 0 : -1;
}

static int teardown(void **state) {
  brume_test_rmtree(*state);
  free(*state);
  return 0;
}

static void test_digests(void **state) {
  (void)state;
  char sha[65];
  brume_digest_dir_sha256("hello\n", 6, sha);
  assert_string_equal(sha, HELLO_SHA);
  brume_digest_dir_sha256("", 0, sha);
  assert_string_equal(sha, EMPTY_SHA);

  assert_true(brume_digest_dir_valid(HELLO_SHA));
  assert_false(brume_digest_dir_valid(NULL));
  assert_false(brume_digest_dir_valid(""));
  assert_false(brume_digest_dir_valid(HELLO_SHA "0"));    /* 65 digits */
  assert_false(brume_digest_dir_valid(&HELLO_SHA[1]));    /* 63 */
  assert_false(brume_digest_dir_valid(EMPTY_SHA ".zip")); /* a name, not a digest */
  assert_false(brume_digest_dir_valid("../" HELLO_SHA));
  char upper[65];
  for (int i = 0; i < 65; i++)
    upper[i] = (char)(HELLO_SHA[i] >= 'a' ? HELLO_SHA[i] - 32 : HELLO_SHA[i]);
  assert_false(brume_digest_dir_valid(upper));

  char low[65] = "unchanged";
  assert_true(brume_digest_dir_lower(upper, low));
  assert_string_equal(low, HELLO_SHA);
  strcpy(low, "unchanged");
  upper[10] = 'g';
  assert_false(brume_digest_dir_lower(upper, low));
  assert_false(brume_digest_dir_lower(NULL, low));
  assert_string_equal(low, "unchanged");
}

static void test_store_read_and_dedupe(void **state) {
  brume_autofree char *path = brume_xasprintf("%s/store/a/b", (char *)*state);
  brume_err *err = NULL;
  brume_digest_dir *d = brume_digest_dir_open(path, &err); /* creates the parents too */
  assert_non_null(d);
  assert_null(err);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0700);

  assert_false(brume_digest_dir_has(d, HELLO_SHA, ".zip", NULL));
  assert_int_equal(brume_digest_dir_store(d, HELLO_SHA, ".zip", "hello\n", 6, &err), 1);
  assert_null(err);
  brume_autofree char *file = brume_digest_dir_path(d, HELLO_SHA, ".zip");
  brume_autofree char *want = brume_xasprintf("%s/%s.zip", path, HELLO_SHA);
  assert_string_equal(file, want);
  size_t len = 0;
  brume_autofree uint8_t *on_disk = brume_test_read_file(file, &len);
  assert_non_null(on_disk);
  assert_int_equal(len, 6);
  assert_memory_equal(on_disk, "hello\n", 6);
  assert_int_equal(stat(file, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  uint64_t size = 0;
  assert_true(brume_digest_dir_has(d, HELLO_SHA, ".zip", &size));
  assert_int_equal(size, 6);
  assert_false(brume_digest_dir_has(d, HELLO_SHA, ".code", NULL)); /* ext is part of the name */
  brume_autofree char *got = brume_digest_dir_read(d, HELLO_SHA, ".zip", &len, &err);
  assert_non_null(got);
  assert_int_equal(len, 6);
  assert_memory_equal(got, "hello\n", 6);

  /* The same digest again: 0, and the file is not rewritten (same inode, same bytes, even when
   * the caller's bytes differ: the name vouches for them). */
  struct stat before, after;
  assert_int_equal(stat(file, &before), 0);
  assert_int_equal(brume_digest_dir_store(d, HELLO_SHA, ".zip", "other\n", 6, &err), 0);
  assert_null(err);
  assert_int_equal(stat(file, &after), 0);
  assert_int_equal(before.st_ino, after.st_ino);
  free(on_disk);
  on_disk = brume_test_read_file(file, &len);
  assert_memory_equal(on_disk, "hello\n", 6);
  assert_int_equal(brume_test_count_files(path), 1);

  /* An empty file is a file. */
  assert_int_equal(brume_digest_dir_store(d, EMPTY_SHA, ".zip", "", 0, &err), 1);
  assert_true(brume_digest_dir_has(d, EMPTY_SHA, ".zip", &size));
  assert_int_equal(size, 0);
  assert_int_equal(brume_test_count_files(path), 2);

  /* Missing: NOT_FOUND. */
  brume_autofree char *none = brume_digest_dir_read(d, HELLO_SHA, ".code", &len, &err);
  assert_null(none);
  assert_non_null(err);
  assert_int_equal(err->code, BRUME_NOT_FOUND);
  brume_err_clear(&err);
  brume_digest_dir_free(d);
}

static void test_temporary_files(void **state) {
  brume_autofree char *path = brume_xasprintf("%s/tmp", (char *)*state);
  brume_err *err = NULL;
  brume_digest_dir *d = brume_digest_dir_open(path, &err);
  assert_non_null(d);

  /* Committed: the bytes written to the fd, under the digest's name, and no temporary left. */
  brume_digest_dir_tmp t;
  assert_int_equal(brume_digest_dir_tmp_open(d, HELLO_SHA, &t, &err), 0);
  assert_true(t.fd >= 0);
  assert_int_equal(strncmp(t.name, ".tmp-", 5), 0);
  assert_int_equal(write(t.fd, "hello\n", 6), 6);
  assert_int_equal(brume_test_count_files(path), 1);
  assert_false(brume_digest_dir_has(d, HELLO_SHA, ".zip", NULL)); /* not visible before */
  assert_int_equal(brume_digest_dir_tmp_commit(d, &t, HELLO_SHA, ".zip", &err), 0);
  assert_int_equal(t.fd, -1);
  brume_digest_dir_tmp_discard(d, &t); /* a no-op once committed */
  assert_true(brume_digest_dir_has(d, HELLO_SHA, ".zip", NULL));
  assert_int_equal(brume_test_count_files(path), 1);

  /* Discarded: nothing left. */
  assert_int_equal(brume_digest_dir_tmp_open(d, EMPTY_SHA, &t, &err), 0);
  assert_int_equal(brume_test_count_files(path), 2);
  brume_digest_dir_tmp_discard(d, &t);
  assert_int_equal(t.fd, -1);
  assert_int_equal(brume_test_count_files(path), 1);

  /* A crash leaves temporary files: the next open removes them, and only them. */
  brume_digest_dir_tmp left;
  assert_int_equal(brume_digest_dir_tmp_open(d, EMPTY_SHA, &left, &err), 0);
  close(left.fd);
  brume_digest_dir_free(d);
  assert_int_equal(
      brume_test_run("touch %s/.tmp-left-over %s/keep.txt %s/tmp-not-ours", path, path, path), 0);
  assert_int_equal(brume_test_count_files(path), 5);
  d = brume_digest_dir_open(path, &err);
  assert_non_null(d);
  assert_int_equal(brume_test_count_files(path), 3);
  assert_true(brume_digest_dir_has(d, HELLO_SHA, ".zip", NULL));
  brume_autofree char *keep = brume_xasprintf("%s/keep.txt", path);
  assert_int_equal(access(keep, F_OK), 0);
  brume_digest_dir_free(d);
}

static void test_bad_digests(void **state) {
  brume_autofree char *path = brume_xasprintf("%s/bad", (char *)*state);
  brume_err *err = NULL;
  brume_digest_dir *d = brume_digest_dir_open(path, &err);
  assert_non_null(d);
  /* A file that a path-like "digest" would reach if it were ever used as a name. */
  assert_int_equal(brume_test_run("echo secret > %s/../secret.zip", path), 0);

  char upper[65];
  for (int i = 0; i < 65; i++)
    upper[i] = (char)(HELLO_SHA[i] >= 'a' ? HELLO_SHA[i] - 32 : HELLO_SHA[i]);
  const char *bad[] = {"", "../secret", "..", upper, HELLO_SHA "0", "not a digest"};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(bad); i++) {
    assert_int_equal(brume_digest_dir_store(d, bad[i], ".zip", "x", 1, &err), -1);
    assert_non_null(err);
    assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
    brume_err_clear(&err);
    assert_false(brume_digest_dir_has(d, bad[i], ".zip", NULL));
    size_t len = 0;
    assert_null(brume_digest_dir_read(d, bad[i], ".zip", &len, &err));
    assert_non_null(err);
    assert_int_equal(err->code, BRUME_NOT_FOUND);
    brume_err_clear(&err);
  }
  assert_false(brume_digest_dir_has(d, NULL, ".zip", NULL));
  assert_int_equal(brume_digest_dir_store(d, NULL, ".zip", "x", 1, &err), -1);
  brume_err_clear(&err);

  /* A commit under a bad digest removes its temporary file. */
  brume_digest_dir_tmp t;
  assert_int_equal(brume_digest_dir_tmp_open(d, HELLO_SHA, &t, &err), 0);
  assert_int_equal(brume_digest_dir_tmp_commit(d, &t, upper, ".zip", &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_clear(&err);
  assert_int_equal(t.fd, -1);
  assert_int_equal(brume_test_count_files(path), 0);
  brume_digest_dir_free(d);

  /* No directory, or one that cannot be made. */
  assert_null(brume_digest_dir_open("", &err));
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_clear(&err);
  brume_autofree char *file = brume_xasprintf("%s/../secret.zip/sub", path);
  assert_null(brume_digest_dir_open(file, &err));
  assert_int_equal(err->code, BRUME_INTERNAL);
  brume_err_clear(&err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_digests),
      cmocka_unit_test(test_store_read_and_dedupe),
      cmocka_unit_test(test_temporary_files),
      cmocka_unit_test(test_bad_digests),
  };
  return cmocka_run_group_tests_name("digest_dir", tests, setup, teardown);
}
