/* Sealing environments with AES-256-GCM (env_crypt.h). */
#include "env_crypt.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mem.h"

#define NONCE_LEN 12
#define TAG_LEN 16
#define FORM_PREFIX "v1:"
/* A key file is 64 hex digits; anything much larger is not one. */
#define KEY_FILE_MAX 4096

BRUME_DEFINE_AUTOPTR(EVP_CIPHER_CTX, EVP_CIPHER_CTX_free)

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int brume_env_key_load(const char *path, brume_env_key *key, brume_err **err) {
  brume_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "env key file %s cannot be read: %s", path,
                         strerror(errno));
  char buf[KEY_FILE_MAX + 1];
  size_t len = 0;
  for (;;) {
    ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      return brume_err_set(err, BRUME_INVALID_ARGUMENT, "env key file %s cannot be read: %s", path,
                           strerror(errno));
    if (r == 0 || len + (size_t)r >= sizeof(buf) - 1) {
      len += (size_t)r;
      break;
    }
    len += (size_t)r;
  }
  buf[len] = '\0';
  const char *s = buf;
  while (isspace((unsigned char)*s)) s++;
  size_t n = 0;
  while (s[n] && !isspace((unsigned char)s[n])) n++;
  const char *rest = s + n;
  while (isspace((unsigned char)*rest)) rest++;
  brume_env_key k;
  bool ok = n == 2 * sizeof(k.bytes) && *rest == '\0';
  for (size_t i = 0; ok && i < sizeof(k.bytes); i++) {
    int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
    if (hi < 0 || lo < 0)
      ok = false;
    else
      k.bytes[i] = (uint8_t)(hi << 4 | lo);
  }
  OPENSSL_cleanse(buf, sizeof(buf));
  if (!ok) {
    OPENSSL_cleanse(&k, sizeof(k));
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "env key file %s does not hold a key: it must hold 64 hex digits", path);
  }
  *key = k;
  OPENSSL_cleanse(&k, sizeof(k));
  return 0;
}

int brume_env_key_generate(const char *path, brume_err **err) {
  uint8_t b[32];
  if (RAND_bytes(b, sizeof(b)) != 1)
    return brume_err_set(err, BRUME_INTERNAL, "no randomness from OpenSSL for an env key");
  char hex[2 * sizeof(b) + 2];
  for (size_t i = 0; i < sizeof(b); i++) snprintf(hex + 2 * i, 3, "%02x", b[i]);
  hex[2 * sizeof(b)] = '\n';
  hex[2 * sizeof(b) + 1] = '\0';
  OPENSSL_cleanse(b, sizeof(b));
  brume_autoclose int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int rc = 0;
  if (fd < 0 || fchmod(fd, 0600) < 0 || write(fd, hex, strlen(hex)) != (ssize_t)strlen(hex) ||
      fsync(fd) < 0)
    rc = brume_err_set(err, BRUME_INVALID_ARGUMENT, "env key file %s cannot be written: %s", path,
                       strerror(errno));
  OPENSSL_cleanse(hex, sizeof(hex));
  return rc;
}

char *brume_env_seal(const brume_env_key *key, const void *plain, size_t len) {
  size_t raw_len = NONCE_LEN + len + TAG_LEN;
  brume_autofree uint8_t *raw = brume_xmalloc(raw_len);
  /* A nonce must never repeat under one key: 96 random bits make a repeat negligible for any
   * number of seals a key will see. */
  BRUME_ENSURE(RAND_bytes(raw, NONCE_LEN) == 1);
  brume_autoptr(EVP_CIPHER_CTX) ctx = EVP_CIPHER_CTX_new();
  int out_len = 0, fin_len = 0;
  BRUME_ENSURE(ctx != NULL);
  BRUME_ENSURE(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1);
  BRUME_ENSURE(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1);
  BRUME_ENSURE(EVP_EncryptInit_ex(ctx, NULL, NULL, key->bytes, raw) == 1);
  BRUME_ENSURE(EVP_EncryptUpdate(ctx, raw + NONCE_LEN, &out_len, plain, (int)len) == 1);
  BRUME_ENSURE(EVP_EncryptFinal_ex(ctx, raw + NONCE_LEN + out_len, &fin_len) == 1);
  BRUME_ENSURE((size_t)(out_len + fin_len) == len);
  BRUME_ENSURE(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, raw + NONCE_LEN + len) == 1);
  size_t b64_len = 4 * ((raw_len + 2) / 3);
  char *out = brume_xmalloc(strlen(FORM_PREFIX) + b64_len + 1);
  memcpy(out, FORM_PREFIX, strlen(FORM_PREFIX));
  int n = EVP_EncodeBlock((unsigned char *)out + strlen(FORM_PREFIX), raw, (int)raw_len);
  BRUME_ENSURE(n == (int)b64_len);
  out[strlen(FORM_PREFIX) + b64_len] = '\0';
  return out;
}

char *brume_env_open(const brume_env_key *key, const char *sealed, size_t *len, brume_err **err) {
  size_t plen = strlen(FORM_PREFIX);
  size_t slen = sealed ? strlen(sealed) : 0;
  if (slen < plen || strncmp(sealed, FORM_PREFIX, plen) != 0 || (slen - plen) % 4 != 0 ||
      slen - plen == 0) {
    brume_err_set(err, BRUME_DATA_LOSS, "sealed environment is malformed (not a v1: form)");
    return NULL;
  }
  size_t b64_len = slen - plen;
  brume_autofree uint8_t *raw = brume_xmalloc(b64_len / 4 * 3 + 1);
  int n = EVP_DecodeBlock(raw, (const unsigned char *)sealed + plen, (int)b64_len);
  if (n < 0) {
    brume_err_set(err, BRUME_DATA_LOSS, "sealed environment is malformed (bad base64)");
    return NULL;
  }
  /* EVP_DecodeBlock counts the padding's zero bytes too. */
  if (sealed[slen - 1] == '=') n--;
  if (sealed[slen - 2] == '=') n--;
  if (n < NONCE_LEN + TAG_LEN) {
    brume_err_set(err, BRUME_DATA_LOSS, "sealed environment is malformed (too short)");
    return NULL;
  }
  size_t clen = (size_t)n - NONCE_LEN - TAG_LEN;
  char *plain = brume_xmalloc(clen + 1);
  brume_autoptr(EVP_CIPHER_CTX) ctx = EVP_CIPHER_CTX_new();
  int out_len = 0, fin_len = 0;
  BRUME_ENSURE(ctx != NULL);
  int ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
           EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
           EVP_DecryptInit_ex(ctx, NULL, NULL, key->bytes, raw) == 1 &&
           EVP_DecryptUpdate(ctx, (uint8_t *)plain, &out_len, raw + NONCE_LEN, (int)clen) == 1 &&
           EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, raw + NONCE_LEN + clen) == 1 &&
           EVP_DecryptFinal_ex(ctx, (uint8_t *)plain + out_len, &fin_len) == 1;
  if (!ok) {
    OPENSSL_cleanse(plain, clen + 1);
    free(plain);
    brume_err_set(err, BRUME_DATA_LOSS,
                  "sealed environment does not open: another key sealed it, or it was altered");
    return NULL;
  }
  plain[clen] = '\0';
  if (len) *len = clen;
  return plain;
}
