/* The event loop: one epoll set, one thread.
 *
 * Every descriptor brume-init waits on (the channel, the Runtime API's listener and connections,
 * process pipes, the SIGCHLD signalfd, timers) is a watch: a descriptor and the function to call
 * when it is ready. Dispatch is level-triggered and in epoll's order, so the loop stays simple
 * and deterministic. A watch may be removed from inside any callback, including its own. */
#ifndef BRUME_INIT_LOOP_H
#define BRUME_INIT_LOOP_H

#include <stdint.h>
#include <sys/epoll.h>

typedef struct init_loop init_loop;
typedef struct init_loop_watch init_loop_watch;

/* Called with the epoll events (EPOLLIN, EPOLLOUT, EPOLLHUP, EPOLLERR) that are ready. */
typedef void (*init_loop_fn)(init_loop_watch *w, uint32_t events);

struct init_loop_watch {
  int fd;
  init_loop_fn fn;
  void *arg; /* the owner's context, for fn */
  int registered;
};

/* Aborts if epoll is unavailable: brume-init cannot work without it. */
init_loop *init_loop_new(void);
void init_loop_free(init_loop *l);

/* Registers w (which the caller owns and keeps alive while registered) for events. */
void init_loop_add(init_loop *l, init_loop_watch *w, uint32_t events);
void init_loop_mod(init_loop *l, init_loop_watch *w, uint32_t events);
/* Unregisters w if it is registered; pending events for it in this round are dropped. */
void init_loop_del(init_loop *l, init_loop_watch *w);

/* Waits up to timeout_ms (-1: forever) and runs the callbacks of the ready watches. */
void init_loop_run_once(init_loop *l, int timeout_ms);

/* A monotonic, non-blocking timerfd. Aborts if timerfd is unavailable. */
int init_timer_new(void);
/* Arms the timer to fire once after ms milliseconds (0: at once); ms < 0 disarms it. */
void init_timer_arm(int fd, int64_t ms);
/* Reads the expiration count, so that a level-triggered watch stops firing. */
void init_timer_ack(int fd);

#endif
