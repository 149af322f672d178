/* Environment variables encrypted at rest: AES-256-GCM (OpenSSL EVP) under a key the operator
 * gives the frontend (the env_key_file option: 64 hex digits). Each value is sealed with a fresh
 * 96-bit nonce; the stored form is "v1:<base64(nonce || ciphertext || tag)>", so a key rotation
 * can add "v2:" later. Plain environment variables exist only in memory (the catalog's sandbox
 * specs) and never reach a log.
 *
 * Thread safety: a key is read-only once loaded; every function may be called from any thread. */
#ifndef BRUME_FRONTEND_ENV_CRYPT_H
#define BRUME_FRONTEND_ENV_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct brume_env_key {
  uint8_t bytes[32];
} brume_env_key;

/* Loads a key file: 64 hex digits, surrounding white space allowed. INVALID_ARGUMENT naming the
 * file when it is not one; the message never quotes the file's content. */
int brume_env_key_load(const char *path, brume_env_key *key, brume_err **err);
/* Writes a new random key file (mode 0600) for the quickstart and tests. */
int brume_env_key_generate(const char *path, brume_err **err);

/* Seals plaintext; returns the stored form (caller frees). */
char *brume_env_seal(const brume_env_key *key, const void *plain, size_t len);
/* Opens a stored form; returns the plaintext, NUL-terminated, its length in *len (caller frees).
 * DATA_LOSS when the form is malformed or the tag does not verify (another key). */
char *brume_env_open(const brume_env_key *key, const char *sealed, size_t *len, brume_err **err);

#endif
