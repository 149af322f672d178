/* Binary search in an array of pointers kept sorted by a string key (strcmp order): the
 * directories of hosts, sandboxes and functions that the daemons keep in memory. */
#ifndef BRUME_SORTED_H
#define BRUME_SORTED_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* The index of key among the n items sorted by key_of(item), or (*found false) the index where
 * it would be inserted to keep the order. */
static inline size_t brume_sorted_find(void *const *items, size_t n,
                                       const char *(*key_of)(const void *item), const char *key,
                                       bool *found) {
  size_t lo = 0, hi = n;
  *found = false;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(key_of(items[mid]), key);
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

#endif
