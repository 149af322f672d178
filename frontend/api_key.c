#include "api_key.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

#define PREFIX "brume_"

static const char *const scope_names[] = {"invoke", "manage", "admin"};

static void to_hex(const uint8_t *b, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[b[i] >> 4];
    out[2 * i + 1] = digits[b[i] & 15];
  }
  out[2 * n] = '\0';
}

static bool is_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  return true;
}

/* SHA-256(salt || secret) in hex, both given as hex strings. */
static int hash_secret(const char *salt, const char *secret, char out[BRUME_API_KEY_HASH_HEX + 1]) {
  uint8_t digest[32];
  unsigned len = 0;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
           EVP_DigestUpdate(md, salt, strlen(salt)) == 1 &&
           EVP_DigestUpdate(md, secret, strlen(secret)) == 1 &&
           EVP_DigestFinal_ex(md, digest, &len) == 1 && len == sizeof(digest);
  EVP_MD_CTX_free(md);
  if (!ok) return -1;
  to_hex(digest, sizeof(digest), out);
  return 0;
}

static int check_account(const char *account_id, brume_err **err) {
  size_t n = account_id ? strlen(account_id) : 0;
  if (n == 0 || n > 255 || strchr(account_id, '/'))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "the account id must be 1-255 bytes with no '/'");
  return 0;
}

int brume_api_key_create(const char *account_id, unsigned scopes, int64_t now_unix_ms,
                         brume_api_key_record *rec, char key[BRUME_API_KEY_STRING_LEN + 1],
                         brume_err **err) {
  if (check_account(account_id, err) < 0) return -1;
  if ((scopes & (BRUME_SCOPE_INVOKE | BRUME_SCOPE_MANAGE | BRUME_SCOPE_ADMIN)) == 0 ||
      (scopes & ~(unsigned)(BRUME_SCOPE_INVOKE | BRUME_SCOPE_MANAGE | BRUME_SCOPE_ADMIN)))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "a key needs one scope or more, and known ones");
  uint8_t id[BRUME_API_KEY_ID_HEX / 2], secret[BRUME_API_KEY_SECRET_HEX / 2],
      salt[BRUME_API_KEY_SALT_HEX / 2];
  if (RAND_bytes(id, sizeof(id)) != 1 || RAND_bytes(secret, sizeof(secret)) != 1 ||
      RAND_bytes(salt, sizeof(salt)) != 1)
    return brume_err_set(err, BRUME_INTERNAL, "OpenSSL has no random bytes for a key");
  char secret_hex[BRUME_API_KEY_SECRET_HEX + 1];
  memset(rec, 0, sizeof(*rec));
  to_hex(id, sizeof(id), rec->key_id);
  to_hex(secret, sizeof(secret), secret_hex);
  to_hex(salt, sizeof(salt), rec->salt);
  snprintf(rec->account_id, sizeof(rec->account_id), "%s", account_id);
  rec->scopes = scopes;
  rec->created_unix_ms = now_unix_ms;
  int rc = hash_secret(rec->salt, secret_hex, rec->hash);
  if (rc == 0) snprintf(key, BRUME_API_KEY_STRING_LEN + 1, PREFIX "%s_%s", rec->key_id, secret_hex);
  OPENSSL_cleanse(secret, sizeof(secret));
  OPENSSL_cleanse(secret_hex, sizeof(secret_hex));
  if (rc < 0) return brume_err_set(err, BRUME_INTERNAL, "SHA-256 failed");
  return 0;
}

int brume_api_key_parse(const char *key, char key_id[BRUME_API_KEY_ID_HEX + 1],
                        char secret[BRUME_API_KEY_SECRET_HEX + 1], brume_err **err) {
  size_t p = strlen(PREFIX);
  if (key == NULL || strlen(key) != BRUME_API_KEY_STRING_LEN || strncmp(key, PREFIX, p) != 0 ||
      key[p + BRUME_API_KEY_ID_HEX] != '_' || !is_hex(key + p, BRUME_API_KEY_ID_HEX) ||
      !is_hex(key + p + BRUME_API_KEY_ID_HEX + 1, BRUME_API_KEY_SECRET_HEX))
    return brume_err_set(err, BRUME_UNAUTHENTICATED, "the API key is malformed");
  memcpy(key_id, key + p, BRUME_API_KEY_ID_HEX);
  key_id[BRUME_API_KEY_ID_HEX] = '\0';
  memcpy(secret, key + p + BRUME_API_KEY_ID_HEX + 1, BRUME_API_KEY_SECRET_HEX);
  secret[BRUME_API_KEY_SECRET_HEX] = '\0';
  return 0;
}

bool brume_api_key_verify(const brume_api_key_record *rec, const char *secret) {
  if (secret == NULL || strlen(secret) != BRUME_API_KEY_SECRET_HEX) return false;
  char hash[BRUME_API_KEY_HASH_HEX + 1];
  if (hash_secret(rec->salt, secret, hash) < 0) return false;
  return CRYPTO_memcmp(hash, rec->hash, BRUME_API_KEY_HASH_HEX) == 0;
}

bool brume_api_key_allows(unsigned scopes, unsigned needs) {
  return (scopes & BRUME_SCOPE_ADMIN) || (scopes & needs) == needs;
}

int brume_scopes_parse(const char *list, unsigned *scopes, brume_err **err) {
  *scopes = 0;
  const char *p = list ? list : "";
  do {
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    unsigned bit = 0;
    for (size_t i = 0; i < 3 && bit == 0; i++)
      if (n == strlen(scope_names[i]) && strncmp(p, scope_names[i], n) == 0) bit = 1u << i;
    if (bit == 0)
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           "unknown scope \"%.*s\": invoke, manage or admin", (int)n, p);
    *scopes |= bit;
    p = end ? end + 1 : NULL;
  } while (p);
  return 0;
}

const char *brume_scopes_format(unsigned scopes, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < 3; i++)
    if (scopes & (1u << i))
      used += (size_t)snprintf(buf + used, used < size ? size - used : 0, "%s%s", used ? "," : "",
                               scope_names[i]);
  return buf;
}

char *brume_api_key_record_json(const brume_api_key_record *rec) {
  json_t *scopes = json_array();
  for (size_t i = 0; i < 3; i++)
    if (rec->scopes & (1u << i)) json_array_append_new(scopes, json_string(scope_names[i]));
  json_t *o =
      json_pack("{s:s, s:o, s:s, s:s, s:I}", "account", rec->account_id, "scopes", scopes, "salt",
                rec->salt, "hash", rec->hash, "created_unix_ms", (json_int_t)rec->created_unix_ms);
  BRUME_ENSURE(o != NULL);
  if (rec->description[0]) json_object_set_new(o, "description", json_string(rec->description));
  char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  BRUME_ENSURE(s != NULL);
  return s;
}

int brume_api_key_record_parse(const char *key_id, const char *json, brume_api_key_record *rec,
                               brume_err **err) {
  memset(rec, 0, sizeof(*rec));
  if (strlen(key_id) != BRUME_API_KEY_ID_HEX || !is_hex(key_id, BRUME_API_KEY_ID_HEX))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "not a key id");
  json_error_t je;
  json_t *o = json_loads(json, 0, &je);
  if (o == NULL) return brume_err_set(err, BRUME_INVALID_ARGUMENT, "not JSON: %s", je.text);
  const char *account = NULL, *salt = NULL, *hash = NULL, *description = "";
  json_t *scopes = NULL;
  json_int_t created = 0;
  int rc = -1;
  if (json_unpack_ex(o, &je, 0, "{s:s, s:o, s:s, s:s, s?I, s?s}", "account", &account, "scopes",
                     &scopes, "salt", &salt, "hash", &hash, "created_unix_ms", &created,
                     "description", &description) < 0) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "not a key record: %s", je.text);
    goto out;
  }
  if (check_account(account, err) < 0 || !json_is_array(scopes) ||
      strlen(salt) != BRUME_API_KEY_SALT_HEX || !is_hex(salt, BRUME_API_KEY_SALT_HEX) ||
      strlen(hash) != BRUME_API_KEY_HASH_HEX || !is_hex(hash, BRUME_API_KEY_HASH_HEX)) {
    if (err && *err == NULL)
      brume_err_set(err, BRUME_INVALID_ARGUMENT,
                    "a key record's scopes, salt or hash is malformed");
    goto out;
  }
  size_t i;
  json_t *v;
  json_array_foreach(scopes, i, v) {
    unsigned bit = 0;
    if (!json_is_string(v) || brume_scopes_parse(json_string_value(v), &bit, err) < 0) {
      if (err && *err == NULL)
        brume_err_set(err, BRUME_INVALID_ARGUMENT, "a scope is not a string");
      goto out;
    }
    rec->scopes |= bit;
  }
  if (rec->scopes == 0) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "a key record has no scope");
    goto out;
  }
  memcpy(rec->key_id, key_id, BRUME_API_KEY_ID_HEX + 1);
  snprintf(rec->account_id, sizeof(rec->account_id), "%s", account);
  memcpy(rec->salt, salt, BRUME_API_KEY_SALT_HEX + 1);
  memcpy(rec->hash, hash, BRUME_API_KEY_HASH_HEX + 1);
  rec->created_unix_ms = created;
  snprintf(rec->description, sizeof(rec->description), "%s", description);
  rc = 0;
out:
  json_decref(o);
  if (rc < 0) memset(rec, 0, sizeof(*rec));
  return rc;
}
