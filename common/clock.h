/* Time as Brume's code reads it: monotonic for durations and deadlines, wall clock for what goes
 * into messages and etcd, and absolute timespecs for pthread_cond_timedwait. Header-only, so
 * the static guest agent uses it without linking libbrume. */
#ifndef BRUME_CLOCK_H
#define BRUME_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in microseconds / milliseconds. */
static inline int64_t brume_mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t brume_mono_ms(void) {
  return brume_mono_us() / 1000;
}

/* CLOCK_REALTIME in milliseconds since the epoch. */
static inline int64_t brume_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* clock's time ms milliseconds from now (ms >= 0), normalised: a deadline for
 * pthread_cond_timedwait on a condition variable of that clock. */
static inline struct timespec brume_timespec_in(clockid_t clock, int64_t ms) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  int64_t ns = ts.tv_nsec + (ms % 1000) * 1000000;
  ts.tv_sec += (time_t)(ms / 1000 + ns / 1000000000);
  ts.tv_nsec = (long)(ns % 1000000000);
  return ts;
}

/* Initialises cond on CLOCK_MONOTONIC, so that its timed waits (deadlines from
 * brume_timespec_in(CLOCK_MONOTONIC, ...)) do not move when the wall clock is set. */
static inline void brume_cond_init_monotonic(pthread_cond_t *cond) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(cond, &ca);
  pthread_condattr_destroy(&ca);
}

#endif
