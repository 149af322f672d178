/* API keys in etcd, followed in memory (key_store.h). */
#include "key_store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "etcd_follow.h"
#include "log.h"
#include "mem.h"
#include "revision.h"
#include "sorted.h"

struct brume_key_store {
  brume_etcd *etcd;
  char *dir;                   /* "<prefix>/keys/" */
  pthread_rwlock_t lock;       /* guards recs and n */
  brume_api_key_record **recs; /* sorted by key_id */
  size_t n, cap;
  brume_revision applied; /* writers wait on it for their own write to show */
  brume_etcd_follow *follow;
};

static const char *rec_key(const void *item) {
  return ((const brume_api_key_record *)item)->key_id;
}

/* Under the write lock: puts rec (taking it) in place of any record of the same id. */
static void upsert(brume_key_store *ks, brume_api_key_record *rec) {
  bool found;
  size_t i = brume_sorted_find((void *const *)ks->recs, ks->n, rec_key, rec->key_id, &found);
  if (found) {
    free(ks->recs[i]);
    ks->recs[i] = rec;
    return;
  }
  if (ks->n == ks->cap) {
    ks->cap = ks->cap ? ks->cap * 2 : 16;
    ks->recs = brume_xrealloc(ks->recs, ks->cap * sizeof(*ks->recs));
  }
  memmove(ks->recs + i + 1, ks->recs + i, (ks->n - i) * sizeof(*ks->recs));
  ks->recs[i] = rec;
  ks->n++;
}

static void remove_id(brume_key_store *ks, const char *key_id) {
  bool found;
  size_t i = brume_sorted_find((void *const *)ks->recs, ks->n, rec_key, key_id, &found);
  if (!found) return;
  free(ks->recs[i]);
  memmove(ks->recs + i, ks->recs + i + 1, (ks->n - i - 1) * sizeof(*ks->recs));
  ks->n--;
}

static void clear_all(brume_key_store *ks) {
  for (size_t i = 0; i < ks->n; i++) free(ks->recs[i]);
  ks->n = 0;
}

/* The record of an etcd kv under dir, or NULL (with a warning) when it is not one. */
static brume_api_key_record *parse_kv(brume_key_store *ks, const brume_etcd_kv *kv) {
  size_t dl = strlen(ks->dir);
  brume_autofree char *id = brume_xstrndup(kv->key + dl, kv->key_len - dl);
  brume_autofree char *json = brume_xstrndup(kv->value, kv->value_len);
  brume_api_key_record *rec = brume_xmalloc(sizeof(*rec));
  brume_autoptr(brume_err) err = NULL;
  if (brume_api_key_record_parse(id, json, rec, &err) < 0) {
    char q[256];
    brume_warn("An API key record in etcd is malformed; the key is refused.", "key_id=%s err=%s",
               brume_log_quote(q, sizeof(q), id), err->msg);
    free(rec);
    return NULL;
  }
  return rec;
}

/* etcd_follow's load: every record, at start and after a watch gap. */
static void load_all(void *user, const brume_etcd_kv *kvs, size_t n, bool again) {
  (void)again;
  brume_key_store *ks = user;
  pthread_rwlock_wrlock(&ks->lock);
  clear_all(ks);
  for (size_t i = 0; i < n; i++) {
    brume_api_key_record *rec = parse_kv(ks, &kvs[i]);
    if (rec) upsert(ks, rec);
  }
  pthread_rwlock_unlock(&ks->lock);
}

static void apply_event(void *user, const brume_etcd_event *ev) {
  brume_key_store *ks = user;
  size_t dl = strlen(ks->dir);
  pthread_rwlock_wrlock(&ks->lock);
  if (ev->type == BRUME_ETCD_EVENT_DELETE) {
    brume_autofree char *id = brume_xstrndup(ev->kv.key + dl, ev->kv.key_len - dl);
    remove_id(ks, id);
  } else {
    brume_api_key_record *rec = parse_kv(ks, &ev->kv);
    if (rec) upsert(ks, rec);
  }
  pthread_rwlock_unlock(&ks->lock);
}

static void synced(void *user, int64_t revision) {
  brume_key_store *ks = user;
  brume_revision_advance(&ks->applied, revision);
}

brume_key_store *brume_key_store_new(brume_etcd *etcd, const char *prefix, brume_err **err) {
  brume_key_store *ks = brume_xcalloc(1, sizeof(*ks));
  ks->etcd = etcd;
  ks->dir = brume_xasprintf("%s/keys/", prefix);
  pthread_rwlock_init(&ks->lock, NULL);
  brume_revision_init(&ks->applied, 0);
  static const brume_etcd_follow_ops ops = {
      .what = "the API keys", .load = load_all, .apply = apply_event, .synced = synced};
  ks->follow = brume_etcd_follow_start(etcd, ks->dir, &ops, ks, err);
  if (ks->follow == NULL) {
    brume_key_store_free(ks);
    return NULL;
  }
  return ks;
}

void brume_key_store_free(brume_key_store *ks) {
  if (ks == NULL) return;
  brume_etcd_follow_stop(ks->follow);
  clear_all(ks);
  free(ks->recs);
  free(ks->dir);
  pthread_rwlock_destroy(&ks->lock);
  brume_revision_destroy(&ks->applied);
  free(ks);
}

int brume_key_store_authenticate(brume_key_store *ks, const char *key, brume_principal *out,
                                 brume_err **err) {
  if (key == NULL || key[0] == '\0')
    return brume_err_set(err, BRUME_UNAUTHENTICATED,
                         "UnrecognizedClientException: the call carries no API key "
                         "(x-brume-api-key)");
  char id[BRUME_API_KEY_ID_HEX + 1], secret[BRUME_API_KEY_SECRET_HEX + 1];
  if (brume_api_key_parse(key, id, secret, NULL) < 0)
    return brume_err_set(err, BRUME_UNAUTHENTICATED,
                         "UnrecognizedClientException: the API key is malformed");
  int rc = -1;
  pthread_rwlock_rdlock(&ks->lock);
  bool found;
  size_t i = brume_sorted_find((void *const *)ks->recs, ks->n, rec_key, id, &found);
  if (found && brume_api_key_verify(ks->recs[i], secret)) {
    memcpy(out->key_id, id, sizeof(out->key_id));
    snprintf(out->account_id, sizeof(out->account_id), "%s", ks->recs[i]->account_id);
    out->scopes = ks->recs[i]->scopes;
    rc = 0;
  }
  pthread_rwlock_unlock(&ks->lock);
  explicit_bzero(secret, sizeof(secret));
  if (rc < 0)
    brume_err_set(err, BRUME_UNAUTHENTICATED,
                  "UnrecognizedClientException: the API key is invalid (unknown or revoked)");
  return rc;
}

/* Waits until the copy has applied revision rev (the watch delivers within milliseconds). */
static int wait_revision(brume_key_store *ks, int64_t rev, brume_err **err) {
  if (!brume_revision_wait(&ks->applied, rev, 5000))
    return brume_err_set(err, BRUME_UNAVAILABLE,
                         "ServiceUnavailableException: the change is stored but this frontend "
                         "has not seen it within 5 s (etcd watch lagging)");
  return 0;
}

int brume_key_store_create(brume_key_store *ks, const char *account_id, unsigned scopes,
                           const char *description, char key[BRUME_API_KEY_STRING_LEN + 1],
                           brume_api_key_record *rec_out, brume_err **err) {
  brume_api_key_record rec;
  if (strlen(description ? description : "") >= sizeof(rec.description))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "description is over 256 bytes");
  if (brume_api_key_create(account_id, scopes, brume_wall_ms(), &rec, key, err) < 0) return -1;
  snprintf(rec.description, sizeof(rec.description), "%s", description ? description : "");
  brume_autofree char *k = brume_xasprintf("%s%s", ks->dir, rec.key_id);
  brume_autofree char *json = brume_api_key_record_json(&rec);
  /* Create only: 64 random bits make a clash all but impossible, but never overwrite one. */
  brume_etcd_cmp cmp = {
      .key = k, .target = BRUME_ETCD_CREATE, .result = BRUME_ETCD_EQUAL, .number = 0};
  brume_etcd_op put = {
      .type = BRUME_ETCD_OP_PUT, .key = k, .value = json, .value_len = strlen(json)};
  brume_etcd_txn_req req = {.compare = &cmp, .n_compare = 1, .success = &put, .n_success = 1};
  brume_autoptr(brume_etcd_txn_result) res = brume_etcd_txn(ks->etcd, &req, err);
  if (res == NULL) return brume_err_wrap(err, "store API key %s", rec.key_id);
  if (!res->succeeded)
    return brume_err_set(err, BRUME_ABORTED, "key id %s is taken; try again", rec.key_id);
  if (wait_revision(ks, res->revision, err) < 0) return -1;
  if (rec_out) *rec_out = rec;
  return 0;
}

int brume_key_store_delete(brume_key_store *ks, const char *key_id, brume_err **err) {
  brume_autofree char *k = brume_xasprintf("%s%s", ks->dir, key_id);
  brume_etcd_cmp cmp = {
      .key = k, .target = BRUME_ETCD_CREATE, .result = BRUME_ETCD_GREATER, .number = 0};
  brume_etcd_op del = {.type = BRUME_ETCD_OP_DELETE, .key = k};
  brume_etcd_txn_req req = {.compare = &cmp, .n_compare = 1, .success = &del, .n_success = 1};
  brume_autoptr(brume_etcd_txn_result) res = brume_etcd_txn(ks->etcd, &req, err);
  if (res == NULL) return brume_err_wrap(err, "delete API key %s", key_id);
  if (!res->succeeded)
    return brume_err_set(err, BRUME_NOT_FOUND, "ResourceNotFoundException: API key %s not found",
                         key_id);
  return wait_revision(ks, res->revision, err);
}

static int by_account_then_id(const void *a, const void *b) {
  const brume_api_key_record *x = a, *y = b;
  int c = strcmp(x->account_id, y->account_id);
  return c ? c : strcmp(x->key_id, y->key_id);
}

brume_api_key_record *brume_key_store_list(brume_key_store *ks, const char *account_id, size_t *n) {
  pthread_rwlock_rdlock(&ks->lock);
  brume_api_key_record *out = brume_xcalloc(ks->n ? ks->n : 1, sizeof(*out));
  size_t k = 0;
  for (size_t i = 0; i < ks->n; i++)
    if (account_id == NULL || account_id[0] == '\0' ||
        strcmp(ks->recs[i]->account_id, account_id) == 0)
      out[k++] = *ks->recs[i];
  pthread_rwlock_unlock(&ks->lock);
  qsort(out, k, sizeof(*out), by_account_then_id);
  *n = k;
  return out;
}

bool brume_key_store_has(brume_key_store *ks, const char *key_id) {
  pthread_rwlock_rdlock(&ks->lock);
  bool found;
  brume_sorted_find((void *const *)ks->recs, ks->n, rec_key, key_id, &found);
  pthread_rwlock_unlock(&ks->lock);
  return found;
}
