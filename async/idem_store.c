/* Idempotency keys' outcomes: see idem_store.h. */
#include "idem_store.h"

#include <stdlib.h>
#include <string.h>

#include "event_queue_impl.h"
#include "mem.h"

#define BUCKET "brume_idempotency"

int brume_eq_ensure_idem_bucket(brume_event_queue *q, brume_err **err) {
  return brume_eq_put_bucket(q, BUCKET,
                             "the outcome of each idempotency key, for the idempotency window",
                             q->o.idempotency_window_ms, &q->idem, err);
}

static bool key_ok(const char *key) {
  size_t n = strlen(key);
  if (n == 0 || n > 256) return false;
  for (size_t i = 0; i < n; i++) {
    char c = key[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_' || c == '.' || c == '='))
      return false;
  }
  return key[0] != '.' && key[n - 1] != '.';
}

static int bad_key(brume_err **err) {
  return brume_err_set(err, BRUME_INVALID_ARGUMENT, "a malformed idempotency store key");
}

int brume_idem_get(brume_event_queue *q, const char *key, void **data, size_t *len,
                   brume_err **err) {
  *data = NULL;
  *len = 0;
  if (!key_ok(key)) return bad_key(err);
  kvEntry *e = NULL;
  natsStatus s = kvStore_Get(&e, q->idem, key);
  if (s == NATS_NOT_FOUND)
    return brume_err_set(err, BRUME_NOT_FOUND, "no outcome for the idempotency key");
  if (s != NATS_OK)
    return brume_err_set(err, BRUME_UNAVAILABLE,
                         "ServiceUnavailableException: the idempotency store (NATS): %s",
                         brume_eq_nats_why(s));
  int n = kvEntry_ValueLen(e);
  *len = n > 0 ? (size_t)n : 0;
  *data = brume_xmalloc(*len + 1);
  if (*len) memcpy(*data, kvEntry_Value(e), *len);
  kvEntry_Destroy(e);
  return 0;
}

int brume_idem_claim(brume_event_queue *q, const char *key, const void *data, size_t len,
                     bool *claimed, brume_err **err) {
  *claimed = false;
  if (!key_ok(key)) return bad_key(err);
  natsStatus s = kvStore_Create(NULL, q->idem, key, data, (int)len);
  if (s == NATS_OK) {
    *claimed = true;
    return 0;
  }
  /* The create fails both when the key exists and when NATS failed: which one, a read says. */
  void *old = NULL;
  size_t old_len = 0;
  brume_err *gerr = NULL;
  int rc = brume_idem_get(q, key, &old, &old_len, &gerr);
  free(old);
  if (rc == 0) return 0; /* claimed by another */
  brume_err_free(gerr);
  return brume_err_set(err, BRUME_UNAVAILABLE,
                       "ServiceUnavailableException: the idempotency store (NATS): %s",
                       brume_eq_nats_why(s));
}

int brume_idem_put(brume_event_queue *q, const char *key, const void *data, size_t len,
                   brume_err **err) {
  if (!key_ok(key)) return bad_key(err);
  natsStatus s = kvStore_Put(NULL, q->idem, key, data, (int)len);
  if (s == NATS_OK) return 0;
  return brume_err_set(err, BRUME_UNAVAILABLE,
                       "ServiceUnavailableException: the idempotency store (NATS): %s",
                       brume_eq_nats_why(s));
}

int brume_idem_release(brume_event_queue *q, const char *key, brume_err **err) {
  if (!key_ok(key)) return bad_key(err);
  natsStatus s = kvStore_Delete(q->idem, key);
  if (s == NATS_OK || s == NATS_NOT_FOUND) return 0;
  return brume_err_set(err, BRUME_UNAVAILABLE,
                       "ServiceUnavailableException: the idempotency store (NATS): %s",
                       brume_eq_nats_why(s));
}
