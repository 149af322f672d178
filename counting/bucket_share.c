#include "bucket_share.h"

#include <stdlib.h>
#include <string.h>

#include "holdings.h"
#include "log.h"
#include "mem.h"

static bool same_params(const brume_bucket_params *a, const brume_bucket_params *b) {
  return a->capacity == b->capacity && a->refill_tokens == b->refill_tokens &&
         a->refill_interval_ms == b->refill_interval_ms && a->time_scale == b->time_scale;
}

/* The bucket in kv (NULL: its key is absent) into *b, with the parameters p applied at now_ms:
 * an absent or malformed value (warned about, naming key) is a full bucket from now_ms. *changed
 * (may be NULL) says whether p differed from the stored parameters. -1 only for an invalid p. */
static int decode(const char *key, const brume_etcd_kv *kv, const brume_bucket_params *p,
                  int64_t now_ms, brume_bucket *b, bool *changed, brume_err **err) {
  brume_err *bad = NULL;
  if (kv && brume_bucket_from_json(b, kv->value, kv->value_len, &bad) < 0) {
    char q[256];
    brume_warn("A scaling bucket in etcd is malformed; starting it full.", "key=%s err=%s", key,
               brume_log_quote(q, sizeof(q), bad->msg));
    brume_err_free(bad);
    kv = NULL;
  }
  if (kv == NULL && brume_bucket_init(b, p, now_ms, err) < 0) return -1;
  bool differs = !same_params(&b->p, p);
  if (changed) *changed = differs;
  if (differs && brume_bucket_set_params(b, p, now_ms, err) < 0) return -1;
  return 0;
}

/* Reads the bucket at key into *b, as decode() makes it; *mod is the key's mod revision (0:
 * absent). */
static int load(brume_etcd *e, const char *key, const brume_bucket_params *p, int64_t now_ms,
                brume_bucket *b, int64_t *mod, bool *changed, brume_err **err) {
  brume_etcd_kv *kv = NULL;
  if (brume_etcd_get(e, key, &kv, NULL, err) < 0)
    return brume_err_wrap(err, "read scaling bucket %s", key);
  *mod = kv ? kv->mod_revision : 0;
  int rc = decode(key, kv, p, now_ms, b, changed, err);
  brume_etcd_kv_free(kv);
  return rc;
}

/* Writes b to key if its mod revision is still mod (0: if it is still absent): 1 written, 0 lost
 * the compare, -1 error. */
static int store(brume_etcd *e, const char *key, const brume_bucket *b, int64_t mod,
                 brume_err **err) {
  brume_autofree char *text = brume_bucket_to_json(b);
  brume_etcd_cmp guard = {
      .key = key, .target = BRUME_ETCD_MOD, .result = BRUME_ETCD_EQUAL, .number = mod};
  brume_etcd_op put = {
      .type = BRUME_ETCD_OP_PUT, .key = key, .value = text, .value_len = strlen(text)};
  brume_etcd_txn_result *t = brume_etcd_txn(
      e, &(brume_etcd_txn_req){.compare = &guard, .n_compare = 1, .success = &put, .n_success = 1},
      err);
  if (t == NULL) return brume_err_wrap(err, "write scaling bucket %s", key);
  int won = t->succeeded;
  brume_etcd_txn_result_free(t);
  return won;
}

/* One read-modify-write of the bucket at key: change() gets the bucket as read (refilled and
 * with p applied) and says whether there is anything to write; the write is a CAS on the key's mod
 * revision, and a lost compare starts again from a fresh read. */
typedef bool (*change_fn)(brume_bucket *b, bool must_write, int64_t now_ms, void *arg);

static int update(brume_etcd *e, const char *key, const brume_bucket_params *p, int64_t now_ms,
                  change_fn change, void *arg, const char *what, brume_err **err) {
  for (int attempt = 1;; attempt++) {
    brume_bucket b;
    int64_t mod;
    bool changed;
    if (load(e, key, p, now_ms, &b, &mod, &changed, err) < 0) return -1;
    /* A bucket that is not in etcd yet, or whose parameters changed, is written whatever else. */
    if (!change(&b, mod == 0 || changed, now_ms, arg)) return 0;
    int won = store(e, key, &b, mod, err);
    if (won != 0) return won < 0 ? -1 : 0;
    if (attempt >= BRUME_HOLDINGS_GROW_ATTEMPTS)
      return brume_err_set(err, BRUME_ABORTED,
                           "etcd: scaling bucket %s kept changing: %s in %d "
                           "attempts",
                           key, what, attempt);
    brume_holdings_backoff(attempt);
  }
}

typedef struct take_arg {
  uint32_t want, got;
  int64_t retry;
} take_arg;

static bool take_tokens(brume_bucket *b, bool must_write, int64_t now_ms, void *arg) {
  take_arg *t = arg;
  t->got = 0;
  while (t->got < t->want && brume_bucket_take(b, now_ms, &t->retry)) t->got++;
  /* Nothing taken and nothing to create: no write at all, which keeps an empty bucket under a
   * flood of cold starts from costing etcd a txn per refused request. */
  return t->got > 0 || must_write;
}

int brume_bucket_share_take(brume_etcd *e, const char *key, const brume_bucket_params *p,
                            int64_t now_ms, uint32_t want, uint32_t *got, int64_t *retry_after_ms,
                            brume_err **err) {
  take_arg t = {.want = want};
  if (update(e, key, p, now_ms, take_tokens, &t, "no take", err) < 0) return -1;
  *got = t.got;
  if (t.got < want && retry_after_ms) *retry_after_ms = t.retry;
  return 0;
}

static bool give_tokens(brume_bucket *b, bool must_write, int64_t now_ms, void *arg) {
  (void)must_write;
  uint32_t n = *(uint32_t *)arg;
  for (uint32_t i = 0; i < n && brume_bucket_give_back(b, now_ms); i++) {
  }
  return true;
}

int brume_bucket_share_give_back(brume_etcd *e, const char *key, const brume_bucket_params *p,
                                 int64_t now_ms, uint32_t n, brume_err **err) {
  return update(e, key, p, now_ms, give_tokens, &n, "tokens not given back", err);
}

int brume_bucket_share_state(brume_etcd *e, const char *key, const brume_bucket_params *p,
                             int64_t now_ms, brume_bucket_state *out, brume_err **err) {
  brume_bucket b;
  int64_t mod;
  if (load(e, key, p, now_ms, &b, &mod, NULL, err) < 0) return -1;
  brume_bucket_get_state(&b, now_ms, out);
  return 0;
}

int brume_bucket_share_state_of(const char *key, const brume_etcd_kv *kv,
                                const brume_bucket_params *p, int64_t now_ms,
                                brume_bucket_state *out, brume_err **err) {
  brume_bucket b;
  if (decode(key, kv, p, now_ms, &b, NULL, err) < 0) return -1;
  brume_bucket_get_state(&b, now_ms, out);
  return 0;
}
