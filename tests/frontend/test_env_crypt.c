/* frontend/env_crypt: AES-256-GCM sealing of environments: round trip, a fresh nonce each seal,
 * another key or an altered form refused with DATA_LOSS, key files loaded, generated and refused
 * (without their content in the message). */
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

#include "env_crypt.h"

static char dir[] = "/tmp/brume-env-crypt-XXXXXX";

static char *path_of(const char *name) {
  static char buf[256];
  snprintf(buf, sizeof(buf), "%s/%s", dir, name);
  return buf;
}

static void write_file(const char *name, const char *content) {
  FILE *f = fopen(path_of(name), "w");
  assert_non_null(f);
  fputs(content, f);
  fclose(f);
}

static brume_env_key key_of(uint8_t fill) {
  brume_env_key k;
  memset(k.bytes, fill, sizeof(k.bytes));
  return k;
}

static void test_round_trip(void **state) {
  (void)state;
  brume_env_key k = key_of(7);
  const char *plain = "{\"DB\":\"postgres://x\",\"MODE\":\"fast\"}";
  char *s = brume_env_seal(&k, plain, strlen(plain));
  assert_memory_equal(s, "v1:", 3);
  assert_null(strstr(s, "postgres")); /* nothing readable */
  size_t len = 0;
  brume_err *err = NULL;
  char *back = brume_env_open(&k, s, &len, &err);
  assert_non_null(back);
  assert_int_equal(len, strlen(plain));
  assert_string_equal(back, plain);
  free(back);
  /* A fresh nonce each time: the same plaintext seals differently. */
  char *s2 = brume_env_seal(&k, plain, strlen(plain));
  assert_string_not_equal(s, s2);
  assert_memory_not_equal(s + 3, s2 + 3, 16);
  free(s2);
  /* Empty plaintext too. */
  char *e = brume_env_seal(&k, "", 0);
  back = brume_env_open(&k, e, &len, &err);
  assert_non_null(back);
  assert_int_equal(len, 0);
  free(back);
  free(e);
  free(s);
}

static void test_wrong_key_and_tampering(void **state) {
  (void)state;
  brume_env_key k = key_of(7), other = key_of(8);
  const char *plain = "{\"A\":\"b\"}";
  char *s = brume_env_seal(&k, plain, strlen(plain));
  brume_err *err = NULL;
  assert_null(brume_env_open(&other, s, NULL, &err));
  assert_int_equal(err->code, BRUME_DATA_LOSS);
  brume_err_clear(&err);
  /* One character of the ciphertext changed. */
  size_t mid = 3 + (strlen(s) - 3) / 2;
  s[mid] = s[mid] == 'A' ? 'B' : 'A';
  assert_null(brume_env_open(&k, s, NULL, &err));
  assert_int_equal(err->code, BRUME_DATA_LOSS);
  brume_err_clear(&err);
  free(s);
  const char *bad[] = {"", "v1:", "v2:AAAA", "plain", "v1:!!!!", "v1:AAAA", "v1:AAA"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_null(brume_env_open(&k, bad[i], NULL, &err));
    assert_int_equal(err->code, BRUME_DATA_LOSS);
    brume_err_clear(&err);
  }
}

static void test_key_files(void **state) {
  (void)state;
  brume_err *err = NULL;
  assert_int_equal(brume_env_key_generate(path_of("gen.key"), &err), 0);
  struct stat st;
  assert_int_equal(stat(path_of("gen.key"), &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  brume_env_key k1, k2;
  assert_int_equal(brume_env_key_load(path_of("gen.key"), &k1, &err), 0);
  assert_int_equal(brume_env_key_generate(path_of("gen2.key"), &err), 0);
  assert_int_equal(brume_env_key_load(path_of("gen2.key"), &k2, &err), 0);
  assert_memory_not_equal(k1.bytes, k2.bytes, sizeof(k1.bytes));
  /* Hex in either case, surrounded by white space. */
  write_file("ok.key", "  \n00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\n\n");
  assert_int_equal(brume_env_key_load(path_of("ok.key"), &k1, &err), 0);
  assert_int_equal(k1.bytes[0], 0x00);
  assert_int_equal(k1.bytes[1], 0x11);
  assert_int_equal(k1.bytes[15], 0xff);
  assert_int_equal(k1.bytes[31], 0xff);
  const char *bad[] = {
      "00112233445566778899aabbccddeeff00112233445566778899aabbccddee",     /* 62 digits */
      "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00", /* 66 */
      "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
      "00112233445566778899aabbccddeeff 00112233445566778899aabbccddeeff",
      "",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    write_file("bad.key", bad[i]);
    assert_int_equal(brume_env_key_load(path_of("bad.key"), &k1, &err), -1);
    assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
    assert_non_null(strstr(err->msg, "bad.key"));
    assert_null(strstr(err->msg, "0011223344")); /* the content is never quoted */
    brume_err_clear(&err);
  }
  assert_int_equal(brume_env_key_load(path_of("missing.key"), &k1, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_clear(&err);
}

int main(void) {
  if (mkdtemp(dir) == NULL) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_wrong_key_and_tampering),
      cmocka_unit_test(test_key_files),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0) rc = rc ? rc : 1;
  return rc;
}
