/* Tests for frontend/code_store and the upload check it uses (common/code_zip): a zip made by
 * the zip CLI is stored under the digest sha256sum gives, once however often it is put; every
 * refusal has its exact status and message and leaves nothing behind; brume_code_zip_check
 * against its limit (the central directory's sizes, and the bytes really inflated); and the
 * archives served over a real brume_http listener on 127.0.0.1, fetched with libcurl, with 404
 * for every other path under /code/. */
#include <curl/curl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "code_store.h"
#include "log.h"
#include "proc.h"
#include "testutil.h"

static char *tmp; /* this run's scratch directory */

/* Makes <tmp>/<name>.zip with the zip CLI from a shell snippet run in a fresh directory, and
 * returns its bytes (*len its size; caller frees). */
static uint8_t *make_zip(const char *name, const char *files_sh, size_t *len) {
  assert_int_equal(brume_test_run("set -e; rm -rf %s/%s %s/%s.zip; mkdir %s/%s; cd %s/%s; %s", tmp,
                                  name, tmp, name, tmp, name, tmp, name, files_sh),
                   0);
  char path[1024];
  snprintf(path, sizeof(path), "%s/%s.zip", tmp, name);
  uint8_t *z = brume_test_read_file(path, len);
  assert_non_null(z);
  return z;
}

static brume_code_store *new_store(const char *name, char **dir) {
  *dir = brume_xasprintf("%s/store-%s", tmp, name);
  brume_err *err = NULL;
  brume_code_store *s = brume_code_store_new(*dir, &err);
  if (s == NULL) fail_msg("brume_code_store_new: %s", err->msg);
  return s;
}

static void test_put_cli_zip(void **state) {
  (void)state;
  size_t len = 0;
  uint8_t *z = make_zip("cli",
                        "printf '#!/bin/sh\\necho hi\\n' > bootstrap; chmod 755 bootstrap; "
                        "mkdir lib; yes hello | head -c 100000 > lib/a.txt; "
                        "ln -s lib/a.txt link; zip -q -r -y ../cli.zip bootstrap lib link",
                        &len);
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "sha256sum %s/cli.zip | cut -c1-64", tmp);
  char *want = brume_test_last_line(cmd);
  assert_non_null(want);

  char *dir;
  brume_code_store *s = new_store("put", &dir);
  char sha[65];
  brume_err *err = NULL;
  if (brume_code_store_put(s, z, len, sha, &err) < 0) fail_msg("put: %s", err->msg);
  assert_string_equal(sha, want);

  char *path = brume_xasprintf("%s/%s.zip", dir, sha);
  size_t stored_len = 0;
  uint8_t *stored = brume_test_read_file(path, &stored_len);
  assert_non_null(stored);
  assert_int_equal(stored_len, len);
  assert_memory_equal(stored, z, len);
  uint64_t size = 0;
  assert_true(brume_code_store_has(s, sha, &size));
  assert_int_equal(size, len);
  assert_true(brume_code_store_has(s, sha, NULL));
  assert_false(brume_code_store_has(
      s, "0000000000000000000000000000000000000000000000000000000000000000", NULL));
  char upper[65];
  for (int i = 0; i < 65; i++) upper[i] = (char)(sha[i] >= 'a' ? sha[i] - 32 : sha[i]);
  assert_false(brume_code_store_has(s, upper, NULL));
  assert_false(brume_code_store_has(s, "../put", NULL));

  /* Put again: the same digest, still one file, and the file is not rewritten (same inode: a
   * second write would have renamed a new file into place). */
  struct stat before, after;
  assert_int_equal(stat(path, &before), 0);
  char sha2[65];
  assert_int_equal(brume_code_store_put(s, z, len, sha2, &err), 0);
  assert_string_equal(sha2, sha);
  assert_int_equal(stat(path, &after), 0);
  assert_int_equal(before.st_ino, after.st_ino);
  assert_int_equal(brume_test_count_files(dir), 1);

  /* Another store on the same directory finds it, and clears a temporary file left by a crash. */
  brume_code_store_free(s);
  assert_int_equal(brume_test_run("touch %s/.tmp-left-over", dir), 0);
  s = brume_code_store_new(dir, &err);
  assert_non_null(s);
  assert_true(brume_code_store_has(s, sha, NULL));
  assert_int_equal(brume_test_count_files(dir), 1);

  brume_code_store_free(s);
  free(stored);
  free(path);
  free(dir);
  free(want);
  free(z);
}

/* Puts bytes and expects INVALID_ARGUMENT with exactly msg, and nothing stored. */
static void expect_refused(brume_code_store *s, const char *dir, const void *zip, size_t len,
                           const char *msg) {
  brume_err *err = NULL;
  char sha[65] = "unchanged";
  assert_int_equal(brume_code_store_put(s, zip, len, sha, &err), -1);
  assert_non_null(err);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  assert_string_equal(err->msg, msg);
  assert_string_equal(sha, "");
  assert_int_equal(brume_test_count_files(dir), 0);
  brume_err_free(err);
}

static void test_refusals(void **state) {
  (void)state;
  char *dir;
  brume_code_store *s = new_store("refusals", &dir);

  expect_refused(s, dir, "", 0, "InvalidParameterValueException: the code archive is empty");
  /* Over 50 MiB: refused on its size alone (the bytes are never read). */
  expect_refused(s, dir, "x", (size_t)BRUME_CODE_ZIP_MAX + 1,
                 "InvalidParameterValueException: the code archive is 52428801 bytes, over the "
                 "52428800-byte (50 MiB) limit");

  const char text[] = "this is a text file and not a zip archive at all";
  expect_refused(s, dir, text, sizeof(text) - 1,
                 "InvalidZipFileException: the code archive is not a valid zip: no end of "
                 "central directory");
  expect_refused(s, dir, "PK", 2,
                 "InvalidZipFileException: the code archive is not a valid zip: too short");

  size_t len = 0;
  uint8_t *z = make_zip("trunc", "head -c 5000 /dev/urandom > a; zip -q ../trunc.zip a", &len);
  expect_refused(s, dir, z, len / 2,
                 "InvalidZipFileException: the code archive is not a valid zip: no end of "
                 "central directory");
  /* The central directory whole but the data before it cut out: the directory points outside. */
  expect_refused(s, dir, z + len / 2, len - len / 2,
                 "InvalidZipFileException: the code archive is not a valid zip: the central "
                 "directory is outside the file");
  free(z);

  /* An entry named ../x: the zip CLI will not write one, so the name of an entry zzzx is
   * changed in its local header and in the central directory (names are not under the CRC). */
  z = make_zip("dotdot", "echo evil > zzzx; zip -q -X ../dotdot.zip zzzx", &len);
  int patched = 0;
  for (size_t i = 0; i + 4 <= len; i++)
    if (memcmp(z + i, "zzzx", 4) == 0) {
      memcpy(z + i, "../x", 4);
      patched++;
    }
  assert_int_equal(patched, 2);
  expect_refused(s, dir, z, len,
                 "InvalidZipFileException: an entry's path is absolute, empty or has a . or .. "
                 "component: \"../x\"");
  /* The same archive with its name left alone is fine: the patch alone made it bad. */
  for (size_t i = 0; i + 4 <= len; i++)
    if (memcmp(z + i, "../x", 4) == 0) memcpy(z + i, "zzzx", 4);
  char sha[65];
  brume_err *err = NULL;
  if (brume_code_store_put(s, z, len, sha, &err) < 0) fail_msg("put: %s", err->msg);
  free(z);

  brume_code_store_free(s);
  brume_test_rmtree(dir);
  free(dir);
}

/* A damaged entry: its deflated data changed after the zip CLI wrote it (the CRC fails). */
static void test_damaged_entry(void **state) {
  (void)state;
  char *dir;
  brume_code_store *s = new_store("damaged", &dir);
  size_t len = 0;
  uint8_t *z =
      make_zip("damaged", "yes hello | head -c 100000 > big; zip -q ../damaged.zip big", &len);
  /* Into the data: after the local header (30 bytes), its name and its extra field. */
  size_t data = 30 + (size_t)(z[26] | z[27] << 8) + (size_t)(z[28] | z[29] << 8);
  z[data + 100] ^= 0x55;
  expect_refused(s, dir, z, len, "InvalidZipFileException: an entry cannot be read: \"big\"");
  free(z);
  brume_code_store_free(s);
  free(dir);
}

/* Over 250 MiB unpacked: refused from the central directory, before inflating. */
static void test_unpacked_limit(void **state) {
  (void)state;
  char *dir;
  brume_code_store *s = new_store("bomb", &dir);
  size_t len = 0;
  uint8_t *z = make_zip("bomb",
                        "head -c 262144001 /dev/zero > zeros; zip -q ../bomb.zip zeros; "
                        "rm zeros",
                        &len);
  assert_true(len < 1024 * 1024);
  expect_refused(s, dir, z, len,
                 "InvalidZipFileException: the archive unpacks to 262144001 bytes, over the "
                 "262144000-byte limit");
  free(z);
  brume_code_store_free(s);
  free(dir);
}

/* brume_code_zip_check against its limit directly (small limits, small archives). */
static void test_check_limit(void **state) {
  (void)state;
  size_t len = 0;
  uint8_t *z = make_zip("limit",
                        "head -c 1000 /dev/zero > a; head -c 500 /dev/zero > b; "
                        "zip -q ../limit.zip a b",
                        &len);
  brume_err *err = NULL;
  assert_int_equal(brume_code_zip_check(z, len, 1500, &err), 0);
  assert_null(err);
  assert_int_equal(brume_code_zip_check(z, len, 1499, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  assert_string_equal(err->msg, "the archive unpacks to 1500 bytes, over the 1499-byte limit");
  brume_err_clear(&err);

  /* A central directory that understates a size (b's, 500 = 0x1f4, said to be 1): its local
   * header disagrees, and libarchive says so. */
  size_t cd = 0, local = 0;
  for (size_t i = len - 22; i-- > 0;)
    if (memcmp(z + i, "PK\x01\x02", 4) == 0 && z[i + 46] == 'b') {
      cd = i;
      break;
    }
  for (size_t i = 0; i + 30 < len; i++)
    if (memcmp(z + i, "PK\x03\x04", 4) == 0 && z[i + 30] == 'b') {
      local = i;
      break;
    }
  assert_true(cd > 0 && local > 0);
  assert_int_equal(z[cd + 24] | z[cd + 25] << 8, 500);
  assert_int_equal(z[local + 22] | z[local + 23] << 8, 500);
  z[cd + 24] = 1;
  z[cd + 25] = 0;
  assert_int_equal(brume_code_zip_check(z, len, 1001, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  assert_string_equal(err->msg, "an entry header cannot be read: \"b\"");
  brume_err_clear(&err);
  /* Both headers understating it: the data inflates to more than they say, and libarchive
   * refuses it. */
  z[local + 22] = 1;
  z[local + 23] = 0;
  assert_int_equal(brume_code_zip_check(z, len, 1001, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  assert_string_equal(err->msg, "an entry cannot be read: \"b\"");
  brume_err_clear(&err);
  free(z);

  /* No entries at all: a well-formed archive, but nothing to run. */
  static const unsigned char empty[22] = {'P', 'K', 5, 6};
  assert_int_equal(brume_code_zip_check(empty, sizeof(empty), 1500, &err), -1);
  assert_string_equal(err->msg, "the archive has no entries");
  brume_err_clear(&err);
}

/* ---- serving ---- */

typedef struct body {
  unsigned char *p;
  size_t len;
} body;

static size_t on_body(char *p, size_t size, size_t n, void *user) {
  body *b = user;
  b->p = brume_xrealloc(b->p, b->len + size * n + 1);
  memcpy(b->p + b->len, p, size * n);
  b->len += size * n;
  return size * n;
}

/* GETs path from 127.0.0.1:port exactly as written (no squashing of "/../"); returns the HTTP
 * status, the body in *out (caller frees out->p) and the Content-Type in ctype. */
static long get(int port, const char *path, body *out, char *ctype, size_t ctype_size) {
  CURL *h = curl_easy_init();
  assert_non_null(h);
  char url[512];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
  *out = (body){0};
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
  CURLcode rc = curl_easy_perform(h);
  if (rc != CURLE_OK) fail_msg("GET %s: %s", url, curl_easy_strerror(rc));
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  char *ct = NULL;
  curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
  if (ctype) snprintf(ctype, ctype_size, "%s", ct ? ct : "");
  curl_easy_cleanup(h);
  return status;
}

static void test_serve(void **state) {
  (void)state;
  size_t len = 0;
  uint8_t *z =
      make_zip("serve", "yes served | head -c 300000 > data; zip -q ../serve.zip data", &len);
  char *dir;
  brume_code_store *s = new_store("serve", &dir);
  char sha[65];
  brume_err *err = NULL;
  assert_int_equal(brume_code_store_put(s, z, len, sha, &err), 0);
  /* A file beside the store that a path escaping /code/ would reach. */
  assert_int_equal(
      brume_test_run("echo secret > %s/x && cp %s/serve.zip %s/serve-copy.zip", tmp, tmp, dir), 0);

  brume_http *http = brume_http_start("127.0.0.1:0", NULL, &err);
  if (http == NULL) fail_msg("brume_http_start: %s", err->msg);
  brume_code_store_serve(s, http);
  int port = brume_http_port(http);

  char path[128], ctype[128];
  body b;
  snprintf(path, sizeof(path), "/code/%s", sha);
  assert_int_equal(get(port, path, &b, ctype, sizeof(ctype)), 200);
  assert_string_equal(ctype, "application/zip");
  assert_int_equal(b.len, len);
  assert_memory_equal(b.p, z, len);
  free(b.p);

  static const char *const not_found[] = {
      "/code/0000000000000000000000000000000000000000000000000000000000000000",
      "/code/../x",
      "/code/%2e%2e/x",
      "/code/..%2fx",
      "/code/abc",
      "/code/",
      "/code/serve-copy",
      "/code/serve-copy.zip",
  };
  for (size_t i = 0; i < BRUME_ARRAY_LEN(not_found); i++) {
    long st = get(port, not_found[i], &b, NULL, 0);
    if (st != 404) fail_msg("GET %s: %ld, want 404", not_found[i], st);
    free(b.p);
  }
  /* The digest in capitals, or with its .zip suffix: only the exact name is served. */
  char upper[128];
  snprintf(upper, sizeof(upper), "/code/%s", sha);
  for (char *p = upper + 6; *p; p++)
    if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 32);
  assert_int_equal(get(port, upper, &b, NULL, 0), 404);
  free(b.p);
  snprintf(path, sizeof(path), "/code/%s.zip", sha);
  assert_int_equal(get(port, path, &b, NULL, 0), 404);
  free(b.p);

  brume_http_stop(http);
  brume_code_store_free(s);
  free(dir);
  free(z);
}

static int setup(void **state) {
  (void)state;
  tmp = brume_test_tmpdir("code-store");
  return tmp ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  brume_test_rmtree(tmp);
  free(tmp);
  return 0;
}

int main(void) {
  brume_log_init("test-code-store", BRUME_LOG_WARN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_put_cli_zip),   cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_damaged_entry), cmocka_unit_test(test_unpacked_limit),
      cmocka_unit_test(test_check_limit),   cmocka_unit_test(test_serve),
  };
  int rc = cmocka_run_group_tests(tests, setup, teardown);
  curl_global_cleanup();
  return rc;
}
