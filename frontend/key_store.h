/* The API keys the frontend accepts: records in etcd at <prefix>/keys/<key_id> (api_key.h's
 * JSON: the account, scopes, salt and salted SHA-256 of the secret; never the secret), and a
 * copy in memory kept by a watch, so that authenticating a call never waits for etcd. A key
 * revoked through any frontend is refused by every frontend as soon as its watch delivers the
 * deletion (milliseconds); one created here is usable here as soon as create returns.
 *
 * Thread safety: every function may be called from any thread. */
#ifndef BRUME_FRONTEND_KEY_STORE_H
#define BRUME_FRONTEND_KEY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api_key.h"
#include "err.h"
#include "etcd.h"

typedef struct brume_key_store brume_key_store;

/* Reads every key record under <prefix>/keys/ and follows them. A malformed record is skipped
 * with a warning naming its key id (a hand-edited record never stops the frontend). NULL + err
 * when etcd cannot be read. */
brume_key_store *brume_key_store_new(brume_etcd *etcd, const char *prefix, brume_err **err);
void brume_key_store_free(brume_key_store *ks);

/* Who presents key (the x-brume-api-key value; NULL when the call had none). UNAUTHENTICATED,
 * "UnrecognizedClientException: ...", when it is missing, malformed, unknown or its secret is
 * wrong; the message says which of "missing" or "invalid" (unknown and wrong secret read alike,
 * so that a caller cannot probe for key ids) and never repeats the key. */
int brume_key_store_authenticate(brume_key_store *ks, const char *key, brume_principal *out,
                                 brume_err **err);

/* Makes a key for account_id with scopes and description (at most 256 bytes), stores its record
 * (never overwriting another's) and waits until this store's copy has it. The key string (shown
 * once) goes to key, the record to rec (may be NULL). */
int brume_key_store_create(brume_key_store *ks, const char *account_id, unsigned scopes,
                           const char *description, char key[BRUME_API_KEY_STRING_LEN + 1],
                           brume_api_key_record *rec, brume_err **err);

/* Revokes key_id: its record is deleted and this store refuses it when this returns. NOT_FOUND
 * when there is no such key. */
int brume_key_store_delete(brume_key_store *ks, const char *key_id, brume_err **err);

/* Whether key_id is a key this store knows now (the dashboard ends the sessions of deleted keys).
 */
bool brume_key_store_has(brume_key_store *ks, const char *key_id);

/* Copies of the records of account_id (NULL or "": every account), ordered by account then key
 * id; *n gets their count. Caller frees the array. */
brume_api_key_record *brume_key_store_list(brume_key_store *ks, const char *account_id, size_t *n);

#endif
