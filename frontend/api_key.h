/* API keys: how a caller proves which account it acts for, and what it may do.
 *
 * A key is shown to its owner once, as "brume_<key_id>_<secret>": key_id is 16 lowercase hex
 * digits (it names the key's record, and may appear in logs and the audit log); secret is 64
 * lowercase hex digits (256 bits from OpenSSL's RAND_bytes) and never appears anywhere after it
 * was shown. What is stored (in etcd, issue #6) is the record: the account, the scopes, a random
 * salt and SHA-256(salt || secret). A salted fast hash is enough for a secret of 256 random bits
 * (no dictionary to guess from), and keeps verification cheap on every call.
 *
 * Scopes: invoke (Invoke), manage (function management), admin (everything, keys included).
 *
 * Pure functions apart from the random bytes; thread-safe. */
#ifndef BRUME_FRONTEND_API_KEY_H
#define BRUME_FRONTEND_API_KEY_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

#define BRUME_API_KEY_ID_HEX 16
#define BRUME_API_KEY_SECRET_HEX 64
#define BRUME_API_KEY_SALT_HEX 32
#define BRUME_API_KEY_HASH_HEX 64
/* "brume_" + id + "_" + secret */
#define BRUME_API_KEY_STRING_LEN (6 + BRUME_API_KEY_ID_HEX + 1 + BRUME_API_KEY_SECRET_HEX)

typedef enum brume_scope {
  BRUME_SCOPE_INVOKE = 1u << 0,
  BRUME_SCOPE_MANAGE = 1u << 1,
  BRUME_SCOPE_ADMIN = 1u << 2,
} brume_scope;

/* Who a call comes from, once its key is verified: what the frontend's modules are handed. */
typedef struct brume_principal {
  char key_id[BRUME_API_KEY_ID_HEX + 1];
  char account_id[256];
  unsigned scopes; /* brume_scope bits */
} brume_principal;

/* What is stored about a key. */
typedef struct brume_api_key_record {
  char key_id[BRUME_API_KEY_ID_HEX + 1];
  char account_id[256];
  unsigned scopes; /* brume_scope bits */
  char salt[BRUME_API_KEY_SALT_HEX + 1];
  char hash[BRUME_API_KEY_HASH_HEX + 1];
  int64_t created_unix_ms;
  char description[257]; /* free text given at creation; "" when none */
} brume_api_key_record;

/* A new key for account_id (1-255 bytes, no '/') with scopes (at least one bit): fills rec and
 * writes the key string (BRUME_API_KEY_STRING_LEN + 1 bytes) into key. INVALID_ARGUMENT for a bad
 * account or no scope; INTERNAL when OpenSSL has no randomness. */
int brume_api_key_create(const char *account_id, unsigned scopes, int64_t now_unix_ms,
                         brume_api_key_record *rec, char key[BRUME_API_KEY_STRING_LEN + 1],
                         brume_err **err);

/* Splits a key string into its id and secret. UNAUTHENTICATED ("the API key is malformed") when
 * it is not one; the message never repeats the key. */
int brume_api_key_parse(const char *key, char key_id[BRUME_API_KEY_ID_HEX + 1],
                        char secret[BRUME_API_KEY_SECRET_HEX + 1], brume_err **err);

/* Whether secret is the record's (constant time in the secret). */
bool brume_api_key_verify(const brume_api_key_record *rec, const char *secret);

/* Whether scopes allow what needs (admin allows everything). */
bool brume_api_key_allows(unsigned scopes, unsigned needs);

/* "invoke,manage" <-> bits. Parsing refuses an unknown or empty name (INVALID_ARGUMENT); the
 * format writes the names in the order above into buf. */
int brume_scopes_parse(const char *list, unsigned *scopes, brume_err **err);
const char *brume_scopes_format(unsigned scopes, char *buf, size_t size);

/* The record as stored (JSON; caller frees) and back (INVALID_ARGUMENT when json is not one; the
 * key id comes from the etcd key, given here). */
char *brume_api_key_record_json(const brume_api_key_record *rec);
int brume_api_key_record_parse(const char *key_id, const char *json, brume_api_key_record *rec,
                               brume_err **err);

#endif
