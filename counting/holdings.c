#include "holdings.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "random.h"

static int check_prefix(const char *prefix, brume_err **err) {
  size_t n = prefix ? strlen(prefix) : 0;
  if (n == 0 || prefix[n - 1] != '/')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "holdings prefix \"%s\" must be non-empty and end with '/'",
                         prefix ? prefix : "(null)");
  return 0;
}

static int check_key(const char *prefix, const char *daemon_id, brume_err **err) {
  if (check_prefix(prefix, err) < 0) return -1;
  if (daemon_id == NULL || daemon_id[0] == '\0' || strchr(daemon_id, '/'))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "holdings daemon id \"%s\" must be non-empty and hold no '/'",
                         daemon_id ? daemon_id : "(null)");
  return 0;
}

/* No sign, space or empty string, which strtoul would let through. */
bool brume_holdings_parse_block(const char *s, size_t len, uint32_t *out) {
  if (len == 0 || len > 10) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (v > UINT32_MAX) return false;
  *out = (uint32_t)v;
  return true;
}

/* Sums the blocks of r, splitting off the one whose key is own (NULL: none). */
static int sum_blocks(const brume_etcd_range *r, const char *own, uint64_t *others,
                      uint32_t *own_block, brume_err **err) {
  *others = 0;
  *own_block = 0;
  for (size_t i = 0; i < r->n; i++) {
    const brume_etcd_kv *kv = &r->kvs[i];
    uint32_t v;
    if (!brume_holdings_parse_block(kv->value, kv->value_len, &v))
      return brume_err_set(err, BRUME_INTERNAL,
                           "holdings key %s has the value \"%.*s\", which is not a block size",
                           kv->key, kv->value_len > 32 ? 32 : (int)kv->value_len, kv->value);
    if (own && strcmp(kv->key, own) == 0)
      *own_block = v;
    else
      *others += v;
  }
  return 0;
}

void brume_holdings_backoff(int attempt) {
  int64_t max_us = (int64_t)1000 << (attempt < 4 ? attempt : 4);
  int64_t us = 1000 + (int64_t)(brume_random_u64() % (uint64_t)(max_us - 999));
  nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = (long)us * 1000}, NULL);
}

int brume_holdings_grow(brume_etcd *e, const char *prefix, const char *daemon_id, int64_t lease,
                        uint32_t limit, uint32_t want, uint32_t *held, uint64_t *cluster_held,
                        brume_err **err) {
  if (check_key(prefix, daemon_id, err) < 0) return -1;
  brume_autofree char *key = brume_xasprintf("%s%s", prefix, daemon_id);
  for (int attempt = 1;; attempt++) {
    brume_autoptr(brume_etcd_range) r = brume_etcd_get_prefix(e, prefix, err);
    if (r == NULL) return brume_err_wrap(err, "grow holdings %s", key);
    uint64_t others;
    uint32_t own;
    if (sum_blocks(r, key, &others, &own, err) < 0) return -1;
    uint64_t room = others < limit ? limit - others : 0;
    uint32_t target = want < room ? want : (uint32_t)room;
    if (target <= own) {
      if (held) *held = own;
      if (cluster_held) *cluster_held = others + own;
      return 0;
    }

    char value[16];
    int len = snprintf(value, sizeof(value), "%u", target);
    brume_etcd_cmp guard = {.key = prefix,
                            .prefix = true,
                            .target = BRUME_ETCD_MOD,
                            .result = BRUME_ETCD_LESS,
                            .number = r->revision + 1};
    brume_etcd_op put = {.type = BRUME_ETCD_OP_PUT,
                         .key = key,
                         .value = value,
                         .value_len = (size_t)len,
                         .lease = lease};
    brume_autoptr(brume_etcd_txn_result) t = brume_etcd_txn(
        e,
        &(brume_etcd_txn_req){.compare = &guard, .n_compare = 1, .success = &put, .n_success = 1},
        err);
    if (t == NULL) return brume_err_wrap(err, "grow holdings %s to %u", key, target);
    if (t->succeeded) {
      if (held) *held = target;
      if (cluster_held) *cluster_held = others + target;
      return 0;
    }
    if (attempt >= BRUME_HOLDINGS_GROW_ATTEMPTS)
      return brume_err_set(err, BRUME_ABORTED,
                           "etcd: the holdings under %s kept changing: %s could not grow to %u in "
                           "%d attempts",
                           prefix, key, target, attempt);
    brume_holdings_backoff(attempt);
  }
}

int brume_holdings_shrink(brume_etcd *e, const char *prefix, const char *daemon_id, int64_t lease,
                          uint32_t keep, brume_err **err) {
  if (check_key(prefix, daemon_id, err) < 0) return -1;
  brume_autofree char *key = brume_xasprintf("%s%s", prefix, daemon_id);
  if (keep == 0) {
    if (brume_etcd_delete(e, key, false, NULL, err) < 0)
      return brume_err_wrap(err, "give up holdings %s", key);
    return 0;
  }
  char value[16];
  int len = snprintf(value, sizeof(value), "%u", keep);
  if (brume_etcd_put(e, key, value, (size_t)len, lease, NULL, err) < 0)
    return brume_err_wrap(err, "shrink holdings %s to %u", key, keep);
  return 0;
}

int brume_holdings_sum(brume_etcd *e, const char *prefix, uint64_t *sum, int64_t *revision,
                       brume_err **err) {
  if (check_prefix(prefix, err) < 0) return -1;
  brume_autoptr(brume_etcd_range) r = brume_etcd_get_prefix(e, prefix, err);
  if (r == NULL) return brume_err_wrap(err, "sum holdings under %s", prefix);
  uint64_t total;
  uint32_t none;
  if (sum_blocks(r, NULL, &total, &none, err) < 0) return -1;
  *sum = total;
  if (revision) *revision = r->revision;
  return 0;
}
