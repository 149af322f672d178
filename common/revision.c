#include "revision.h"

#include "clock.h"

void brume_revision_init(brume_revision *r, int64_t applied) {
  pthread_mutex_init(&r->mu, NULL);
  brume_cond_init_monotonic(&r->cond);
  r->applied = applied;
}

void brume_revision_destroy(brume_revision *r) {
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cond);
}

void brume_revision_advance(brume_revision *r, int64_t rev) {
  pthread_mutex_lock(&r->mu);
  if (rev > r->applied) {
    r->applied = rev;
    pthread_cond_broadcast(&r->cond);
  }
  pthread_mutex_unlock(&r->mu);
}

int64_t brume_revision_applied(brume_revision *r) {
  pthread_mutex_lock(&r->mu);
  int64_t v = r->applied;
  pthread_mutex_unlock(&r->mu);
  return v;
}

bool brume_revision_wait(brume_revision *r, int64_t rev, int timeout_ms) {
  struct timespec until = brume_timespec_in(CLOCK_MONOTONIC, timeout_ms);
  pthread_mutex_lock(&r->mu);
  int rc = 0;
  while (r->applied < rev && rc == 0) rc = pthread_cond_timedwait(&r->cond, &r->mu, &until);
  bool ok = r->applied >= rev;
  pthread_mutex_unlock(&r->mu);
  return ok;
}
