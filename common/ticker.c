/* The periodic thread (ticker.h): a condition variable on CLOCK_MONOTONIC, so a wall-clock step
 * neither stalls nor hurries it. */
#include "ticker.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "clock.h"
#include "mem.h"

struct brume_ticker {
  int64_t period_ms;
  void (*fn)(void *arg);
  void *arg;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stopping;
  pthread_t thread;
};

static void *ticker_main(void *p) {
  brume_ticker *t = p;
  pthread_mutex_lock(&t->mu);
  for (;;) {
    struct timespec until = brume_timespec_in(CLOCK_MONOTONIC, t->period_ms);
    while (!t->stopping && pthread_cond_timedwait(&t->cv, &t->mu, &until) != ETIMEDOUT) {
    }
    if (t->stopping) break;
    pthread_mutex_unlock(&t->mu);
    t->fn(t->arg);
    pthread_mutex_lock(&t->mu);
  }
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

brume_ticker *brume_ticker_start(int64_t period_ms, void (*fn)(void *arg), void *arg) {
  BRUME_ENSURE(period_ms > 0 && fn != NULL);
  brume_ticker *t = brume_xcalloc(1, sizeof(*t));
  t->period_ms = period_ms;
  t->fn = fn;
  t->arg = arg;
  pthread_mutex_init(&t->mu, NULL);
  brume_cond_init_monotonic(&t->cv);
  BRUME_ENSURE(pthread_create(&t->thread, NULL, ticker_main, t) == 0);
  return t;
}

void brume_ticker_stop(brume_ticker *t) {
  if (t == NULL) return;
  pthread_mutex_lock(&t->mu);
  t->stopping = true;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
  pthread_join(t->thread, NULL);
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
  free(t);
}
