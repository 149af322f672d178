#include "loop.h"

#include <errno.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "mem.h"

#define LOOP_BATCH 32

struct init_loop {
  int epfd;
  /* The batch being dispatched: init_loop_del() clears entries so that a watch freed by an
   * earlier callback of the same round is never called. */
  struct epoll_event batch[LOOP_BATCH];
  int batch_len;
};

init_loop *init_loop_new(void) {
  init_loop *l = brume_xcalloc(1, sizeof(*l));
  l->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (l->epfd < 0) brume_fatal("epoll_create1: %s", strerror(errno));
  return l;
}

void init_loop_free(init_loop *l) {
  if (l == NULL) return;
  close(l->epfd);
  free(l);
}

static void ctl(init_loop *l, int op, init_loop_watch *w, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = w};
  if (epoll_ctl(l->epfd, op, w->fd, &ev) < 0)
    brume_fatal("epoll_ctl(%d, fd %d): %s", op, w->fd, strerror(errno));
}

void init_loop_add(init_loop *l, init_loop_watch *w, uint32_t events) {
  BRUME_ENSURE(!w->registered && w->fd >= 0 && w->fn != NULL);
  ctl(l, EPOLL_CTL_ADD, w, events);
  w->registered = 1;
}

void init_loop_mod(init_loop *l, init_loop_watch *w, uint32_t events) {
  BRUME_ENSURE(w->registered);
  ctl(l, EPOLL_CTL_MOD, w, events);
}

void init_loop_del(init_loop *l, init_loop_watch *w) {
  if (!w->registered) return;
  ctl(l, EPOLL_CTL_DEL, w, 0);
  w->registered = 0;
  for (int i = 0; i < l->batch_len; i++)
    if (l->batch[i].data.ptr == w) l->batch[i].data.ptr = NULL;
}

void init_loop_run_once(init_loop *l, int timeout_ms) {
  int n = epoll_wait(l->epfd, l->batch, LOOP_BATCH, timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return;
    brume_fatal("epoll_wait: %s", strerror(errno));
  }
  l->batch_len = n;
  for (int i = 0; i < n; i++) {
    init_loop_watch *w = l->batch[i].data.ptr;
    if (w != NULL) w->fn(w, l->batch[i].events);
  }
  l->batch_len = 0;
}

int init_timer_new(void) {
  int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd < 0) brume_fatal("timerfd_create: %s", strerror(errno));
  return fd;
}

void init_timer_arm(int fd, int64_t ms) {
  struct itimerspec its = {0};
  if (ms >= 0) {
    /* An all-zero it_value would disarm: "at once" is one nanosecond. */
    its.it_value.tv_sec = ms / 1000;
    its.it_value.tv_nsec = (ms % 1000) * 1000000L;
    if (ms == 0) its.it_value.tv_nsec = 1;
  }
  if (timerfd_settime(fd, 0, &its, NULL) < 0) brume_fatal("timerfd_settime: %s", strerror(errno));
}

void init_timer_ack(int fd) {
  uint64_t n;
  ssize_t r = read(fd, &n, sizeof(n));
  (void)r; /* EAGAIN when it was already read or disarmed: nothing to do */
}
