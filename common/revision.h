/* The etcd revision a live copy of some keys has applied, and waiting for it: what a module that
 * follows a prefix with a watch (common/etcd_follow.h's synced: the frontend's key store and
 * catalog, counting's limits store) gives the writers that must see their own write applied
 * before they answer. Thread-safe. */
#ifndef BRUME_REVISION_H
#define BRUME_REVISION_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct brume_revision {
  pthread_mutex_t mu;
  pthread_cond_t cond; /* on CLOCK_MONOTONIC */
  int64_t applied;
} brume_revision;

void brume_revision_init(brume_revision *r, int64_t applied);
void brume_revision_destroy(brume_revision *r);
/* Records that revision rev is applied; never moves back (a reread replays older events). */
void brume_revision_advance(brume_revision *r, int64_t rev);
int64_t brume_revision_applied(brume_revision *r);
/* Waits until rev is applied, at most timeout_ms; true if it is. */
bool brume_revision_wait(brume_revision *r, int64_t rev, int timeout_ms);

#endif
