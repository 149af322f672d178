/* Placement's table of sandboxes: each sandbox placement knows (its host, its function version,
 * its size, whether it is idle or held by a caller) and, per function version, the idle ones in
 * the order of their last use, most recent first.
 *
 * AcquireSandbox takes the most recently used idle sandbox of the version (brume_table_take), so
 * that under a steady load the same few stay busy and the others age out for the keep-warm
 * reaper (brume_table_idle_over). ReleaseSandbox gives it back (brume_table_give_back): to the
 * front of its list if it can serve again, out of the table if not. A held sandbox carries its
 * caller and a deadline after which placement takes it back by itself (brume_table_overdue), in
 * case the caller died. When a host's registration goes, its sandboxes go with it
 * (brume_table_drop_host).
 *
 * Lookups by id and by function version are binary searches; taking and giving back are O(log n);
 * adding a sandbox is O(n) (a cold start, far rarer than a warm one). Not thread-safe: the caller
 * serialises. */
#ifndef BRUME_PLACEMENT_TABLE_H
#define BRUME_PLACEMENT_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct brume_table brume_table;

typedef struct brume_placed {
  char *id;
  char *host_id;
  char *function; /* the function version's key, "account/function/version" */
  uint32_t memory_mib;
  uint32_t vcpu_milli;
  bool provisioned;                 /* kept for provisioned concurrency: never reaped */
  int64_t added_ms;                 /* when it entered the table */
  bool held;                        /* given to a caller, not yet given back */
  char *caller;                     /* while held */
  int64_t held_until_ms;            /* while held: when placement takes it back by itself */
  int64_t idle_since_ms;            /* while idle */
  uint64_t invocations;             /* times it was taken */
  struct brume_placed *prev, *next; /* in its function's idle list, while idle */
} brume_placed;

brume_table *brume_table_new(void);
void brume_table_free(brume_table *t);

/* A sandbox entering the table. */
typedef struct brume_table_entry {
  const char *id, *host_id, *function;
  uint32_t memory_mib, vcpu_milli;
  bool provisioned;
  /* NULL: idle since now (a provisioned one, or one found on a worker); otherwise held for
   * caller until held_until_ms (a cold start made for that caller). */
  const char *caller;
  int64_t held_until_ms;
} brume_table_entry;

/* Adds e at now_ms (copied). ALREADY_EXISTS if the id is taken. */
int brume_table_add(brume_table *t, const brume_table_entry *e, int64_t now_ms, brume_err **err);

const brume_placed *brume_table_get(const brume_table *t, const char *id);
size_t brume_table_count(const brume_table *t);
/* The i-th sandbox in id order (i < brume_table_count). */
const brume_placed *brume_table_at(const brume_table *t, size_t i);

/* The most recently used idle provisioned sandbox of function, else its most recently used idle
 * on-demand one, now held for caller until held_until_ms; NULL when none is idle. */
const brume_placed *brume_table_take(brume_table *t, const char *function, const char *caller,
                                     int64_t held_until_ms);

/* The caller is done with sandbox id. reusable: it is idle again, first in its function's list;
 * otherwise it leaves the table. NOT_FOUND if the table has no such sandbox, FAILED_PRECONDITION
 * if it is not held, or held for another caller. */
int brume_table_give_back(brume_table *t, const char *id, const char *caller, bool reusable,
                          int64_t now_ms, brume_err **err);

/* Takes sandbox id out of the table (destroyed, or found gone); false if it was not there. */
bool brume_table_remove(brume_table *t, const char *id);

/* Sandboxes of function on host_id, idle or held (to spread a function over the hosts). */
size_t brume_table_count_on_host(const brume_table *t, const char *function, const char *host_id);
/* Idle sandboxes of function. */
size_t brume_table_idle_count(const brume_table *t, const char *function);
/* Provisioned sandboxes of function, idle or held. */
size_t brume_table_provisioned_count(const brume_table *t, const char *function);

/* Ids (malloc'ed, NULL-terminated; the caller frees each and the array) of: the idle sandboxes
 * idle for at least keep_warm_ms at now_ms, least recently used first; the held ones whose
 * deadline has passed; every sandbox on host_id, which also leave the table. Provisioned sandboxes
 * are never idle over. */
char **brume_table_idle_over(const brume_table *t, int64_t now_ms, int64_t keep_warm_ms);
char **brume_table_overdue(const brume_table *t, int64_t now_ms);
char **brume_table_drop_host(brume_table *t, const char *host_id);

/* Frees an id array of the three above. */
void brume_table_ids_free(char **ids);

#endif
