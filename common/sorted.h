/* Binary search in a collection kept sorted by a string key (strcmp order): the directories of
 * hosts, sandboxes and functions that the daemons keep in memory, a function's aliases. */
#ifndef BRUME_SORTED_H
#define BRUME_SORTED_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* The index of key among the n items of a collection sorted by key (key_at(ctx, i) is item i's),
 * or (*found false) the index where it would be inserted to keep the order. */
static inline size_t brume_sorted_search(size_t n, const char *(*key_at)(const void *ctx, size_t i),
                                         const void *ctx, const char *key, bool *found) {
  size_t lo = 0, hi = n;
  *found = false;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(key_at(ctx, mid), key);
    if (c == 0) {
      *found = true;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

typedef struct brume_sorted_ptrs_ {
  void *const *items;
  const char *(*key_of)(const void *item);
} brume_sorted_ptrs_;

static inline const char *brume_sorted_ptr_key_(const void *ctx, size_t i) {
  const brume_sorted_ptrs_ *p = ctx;
  return p->key_of(p->items[i]);
}

/* brume_sorted_search in an array of pointers, each item's key being key_of(item). */
static inline size_t brume_sorted_find(void *const *items, size_t n,
                                       const char *(*key_of)(const void *item), const char *key,
                                       bool *found) {
  brume_sorted_ptrs_ p = {items, key_of};
  return brume_sorted_search(n, brume_sorted_ptr_key_, &p, key, found);
}

#endif
