#include "guest_link.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "random.h"

/* Read this much at a time at least; a large frame is read straight into room made for it. */
#define READ_CHUNK 65536

struct brume_guest_link {
  int fd;
  char *path;
  uint8_t *in; /* bytes read and not yet decoded: in[0..in_len) */
  size_t in_len, in_cap;
  Brume__GuestReady *ready;
  bool runtime_exited;
  int exit_status;
  /* Set by an error that leaves the stream unusable; later calls fail with it. */
  brume_status broken_code;
  char *broken_msg;
};

/* A deadline on the monotonic clock; -1 for none. */
static int64_t deadline_in(int timeout_ms) {
  return timeout_ms < 0 ? -1 : brume_mono_ms() + timeout_ms;
}

/* Milliseconds left for poll(): -1 for no deadline, 0 once it passed. */
static int left_ms(int64_t deadline) {
  if (deadline < 0) return -1;
  int64_t left = deadline - brume_mono_ms();
  return left < 0 ? 0 : (int)(left > INT32_MAX ? INT32_MAX : left);
}

/* A non-zero nonce that differs from connection to connection (and between workers). */
static uint64_t fresh_nonce(void) {
  uint64_t n = brume_random_u64();
  return n ? n : 1;
}

/* Marks the link unusable with this error and sets *err to it. Returns -1. */
static int link_break(brume_guest_link *l, brume_err **err, brume_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int link_break(brume_guest_link *l, brume_err **err, brume_status code, const char *fmt,
                      ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = brume_xvasprintf(fmt, ap);
  va_end(ap);
  if (l->broken_msg == NULL) {
    l->broken_code = code;
    l->broken_msg = brume_xstrdup(msg);
  }
  brume_err_set(err, code, "%s", msg);
  free(msg);
  return -1;
}

static int check_usable(brume_guest_link *l, brume_err **err) {
  if (l->broken_msg == NULL) return 0;
  return brume_err_set(err, l->broken_code, "the guest link is unusable after an earlier error: %s",
                       l->broken_msg);
}

/* Writes msg as one frame before the deadline. A timeout with part of the frame written leaves
 * the guest in the middle of a frame: the link is broken then. */
static int send_msg(brume_guest_link *l, const Brume__GuestMessage *msg, int64_t deadline,
                    brume_err **err) {
  size_t n = brume__guest_message__get_packed_size(msg);
  if (n > BRUME_GUEST_LINK_MAX_FRAME)
    return brume_err_set(err, BRUME_RESOURCE_EXHAUSTED,
                         "the message to the guest is %zu bytes: over the %u-byte frame limit", n,
                         BRUME_GUEST_LINK_MAX_FRAME);
  brume_autofree uint8_t *buf = brume_xmalloc(n + 4);
  buf[0] = (uint8_t)(n >> 24);
  buf[1] = (uint8_t)(n >> 16);
  buf[2] = (uint8_t)(n >> 8);
  buf[3] = (uint8_t)n;
  brume__guest_message__pack(msg, buf + 4);
  size_t off = 0;
  while (off < n + 4) {
    ssize_t w = send(l->fd, buf + off, n + 4 - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      off += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd p = {.fd = l->fd, .events = POLLOUT};
      int r = poll(&p, 1, left_ms(deadline));
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) {
        if (off == 0)
          return brume_err_set(err, BRUME_DEADLINE_EXCEEDED,
                               "the guest did not take the message in time");
        return link_break(l, err, BRUME_DEADLINE_EXCEEDED,
                          "the guest did not take the whole message in time (%zu of %zu bytes "
                          "written)",
                          off, n + 4);
      }
      continue;
    }
    if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
      return link_break(l, err, BRUME_UNAVAILABLE, "the guest's channel closed");
    return link_break(l, err, BRUME_UNAVAILABLE, "writing to the guest's channel: %s",
                      strerror(errno));
  }
  return 0;
}

/* Reads more bytes into l->in, waiting until the deadline. 0 when some arrived; -1 with
 * DEADLINE_EXCEEDED (the link stays usable) or UNAVAILABLE (closed; the link is broken). want is
 * how many bytes the frame being read still needs (0: unknown). */
static int fill(brume_guest_link *l, size_t want, int64_t deadline, const char *waiting_for,
                brume_err **err) {
  size_t room = want > READ_CHUNK ? want : READ_CHUNK;
  if (l->in_cap - l->in_len < room) {
    l->in_cap = l->in_len + room;
    l->in = brume_xrealloc(l->in, l->in_cap);
  }
  for (;;) {
    ssize_t r = recv(l->fd, l->in + l->in_len, l->in_cap - l->in_len, MSG_DONTWAIT);
    if (r > 0) {
      l->in_len += (size_t)r;
      return 0;
    }
    if (r == 0) return link_break(l, err, BRUME_UNAVAILABLE, "the guest's channel closed");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return link_break(l, err, BRUME_UNAVAILABLE, "reading the guest's channel: %s",
                        strerror(errno));
    struct pollfd p = {.fd = l->fd, .events = POLLIN};
    int pr = poll(&p, 1, left_ms(deadline));
    if (pr < 0 && errno == EINTR) continue;
    if (pr == 0)
      return brume_err_set(err, BRUME_DEADLINE_EXCEEDED, "no %s from the guest in time",
                           waiting_for);
  }
}

/* The next whole message, waiting until the deadline. */
static Brume__GuestMessage *recv_msg(brume_guest_link *l, int64_t deadline, const char *waiting_for,
                                     brume_err **err) {
  for (;;) {
    if (l->in_len >= 4) {
      uint32_t n =
          (uint32_t)l->in[0] << 24 | (uint32_t)l->in[1] << 16 | (uint32_t)l->in[2] << 8 | l->in[3];
      if (n > BRUME_GUEST_LINK_MAX_FRAME) {
        link_break(l, err, BRUME_INTERNAL,
                   "the guest sent a frame of %u bytes: over the %u-byte limit", n,
                   BRUME_GUEST_LINK_MAX_FRAME);
        return NULL;
      }
      if (l->in_len >= 4 + (size_t)n) {
        Brume__GuestMessage *m = brume__guest_message__unpack(NULL, n, l->in + 4);
        memmove(l->in, l->in + 4 + n, l->in_len - 4 - n);
        l->in_len -= 4 + (size_t)n;
        if (l->in_cap > 4 * READ_CHUNK && l->in_len < READ_CHUNK) {
          /* Give back the room a large message needed. */
          l->in_cap = READ_CHUNK;
          l->in = brume_xrealloc(l->in, l->in_cap);
        }
        if (m == NULL) {
          link_break(l, err, BRUME_INTERNAL, "the guest sent an undecodable message (%u bytes)", n);
          return NULL;
        }
        return m;
      }
      if (fill(l, 4 + (size_t)n - l->in_len, deadline, waiting_for, err) < 0) return NULL;
    } else if (fill(l, 0, deadline, waiting_for, err) < 0) {
      return NULL;
    }
  }
}

/* Looks at a message that is not the awaited answer: records RuntimeExited; a GuestError breaks
 * the link. Returns -1 only for the GuestError. The caller frees m. */
static int note_other(brume_guest_link *l, const Brume__GuestMessage *m, brume_err **err) {
  if (m->body_case == BRUME__GUEST_MESSAGE__BODY_RUNTIME_EXITED) {
    l->runtime_exited = true;
    l->exit_status = m->runtime_exited->status;
    return 0;
  }
  if (m->body_case == BRUME__GUEST_MESSAGE__BODY_ERROR)
    return link_break(l, err, BRUME_INTERNAL, "guest error: %s",
                      m->error->message ? m->error->message : "");
  return 0;
}

/* Waits for a message of body case want (matching by match(m, arg) when given), skipping the
 * rest. Returns it (caller frees) or NULL. */
static Brume__GuestMessage *await(brume_guest_link *l, Brume__GuestMessage__BodyCase want,
                                  bool (*match)(const Brume__GuestMessage *, const void *),
                                  const void *arg, int64_t deadline, const char *what,
                                  brume_err **err) {
  for (;;) {
    Brume__GuestMessage *m = recv_msg(l, deadline, what, err);
    if (m == NULL) return NULL;
    if (m->body_case == want && (match == NULL || match(m, arg))) return m;
    int r = note_other(l, m, err);
    brume__guest_message__free_unpacked(m, NULL);
    if (r < 0) return NULL;
  }
}

static bool ready_matches(const Brume__GuestMessage *m, const void *arg) {
  return m->ready->hello_nonce == *(const uint64_t *)arg;
}

static bool pong_matches(const Brume__GuestMessage *m, const void *arg) {
  return m->pong->nonce == *(const uint64_t *)arg;
}

static bool invoke_done_matches(const Brume__GuestMessage *m, const void *arg) {
  const char *id = m->invoke_done->request_id;
  return id != NULL && strcmp(id, (const char *)arg) == 0;
}

static int connect_socket(const char *path, int64_t deadline, brume_err **err) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(addr.sun_path))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "the socket path %s is over %zu bytes", path,
                         sizeof(addr.sun_path) - 1);
  memcpy(addr.sun_path, path, strlen(path) + 1);
  int last = 0;
  for (;;) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return brume_err_set(err, BRUME_INTERNAL, "socket(AF_UNIX): %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) return fd;
    last = errno;
    close(fd);
    if (last != ENOENT && last != ECONNREFUSED && last != EAGAIN && last != EINTR)
      return brume_err_set(err, BRUME_UNAVAILABLE, "connect to %s: %s", path, strerror(last));
    int left = left_ms(deadline);
    if (left == 0)
      return brume_err_set(err, BRUME_DEADLINE_EXCEEDED, "connect to %s: %s (gave up in time)",
                           path, strerror(last));
    int nap = left < 0 || left > BRUME_GUEST_LINK_RETRY_MS ? BRUME_GUEST_LINK_RETRY_MS : left;
    nanosleep(&(struct timespec){0, nap * 1000000L}, NULL);
  }
}

brume_guest_link *brume_guest_link_connect(const char *socket_path, int timeout_ms,
                                           brume_err **err) {
  int64_t deadline = deadline_in(timeout_ms);
  int fd = connect_socket(socket_path, deadline, err);
  if (fd < 0) {
    brume_err_wrap(err, "guest link");
    return NULL;
  }
  brume_autoptr(brume_guest_link) l = brume_xcalloc(1, sizeof(*l));
  l->fd = fd;
  l->path = brume_xstrdup(socket_path);

  uint64_t nonce = fresh_nonce();
  Brume__GuestHello hello = BRUME__GUEST_HELLO__INIT;
  hello.nonce = nonce;
  Brume__GuestMessage m = BRUME__GUEST_MESSAGE__INIT;
  m.body_case = BRUME__GUEST_MESSAGE__BODY_HELLO;
  m.hello = &hello;
  if (send_msg(l, &m, deadline, err) < 0) {
    brume_err_wrap(err, "guest link %s: Hello", socket_path);
    return NULL;
  }
  /* Everything before our Ready is skipped, a GuestError too: it may be what an earlier
   * connection left in the port. A RuntimeExited is still worth recording. */
  for (;;) {
    Brume__GuestMessage *r = recv_msg(l, deadline, "Ready", err);
    if (r == NULL) {
      brume_err_wrap(err, "guest link %s: Hello", socket_path);
      return NULL;
    }
    if (r->body_case == BRUME__GUEST_MESSAGE__BODY_READY && ready_matches(r, &nonce)) {
      l->ready = r->ready;
      r->body_case = BRUME__GUEST_MESSAGE__BODY__NOT_SET; /* keep ready out of the free */
      brume__guest_message__free_unpacked(r, NULL);
      return brume_steal(&l);
    }
    if (r->body_case == BRUME__GUEST_MESSAGE__BODY_RUNTIME_EXITED) note_other(l, r, NULL);
    brume__guest_message__free_unpacked(r, NULL);
  }
}

const Brume__GuestReady *brume_guest_link_ready(const brume_guest_link *link) {
  return link->ready;
}

bool brume_guest_link_runtime_exited(const brume_guest_link *link, int *status) {
  if (status && link->runtime_exited) *status = link->exit_status;
  return link->runtime_exited;
}

int brume_guest_link_init(brume_guest_link *link, const Brume__GuestInit *init,
                          Brume__GuestInitDone **done, int timeout_ms, brume_err **err) {
  *done = NULL;
  if (check_usable(link, err) < 0) return -1;
  int64_t deadline = deadline_in(timeout_ms);
  Brume__GuestInit copy = *init;
  if (copy.host_time_unix_ms == 0) copy.host_time_unix_ms = brume_wall_ms();
  Brume__GuestMessage m = BRUME__GUEST_MESSAGE__INIT;
  m.body_case = BRUME__GUEST_MESSAGE__BODY_INIT;
  m.init = &copy;
  if (send_msg(link, &m, deadline, err) < 0) return brume_err_wrap(err, "guest Init");
  Brume__GuestMessage *r =
      await(link, BRUME__GUEST_MESSAGE__BODY_INIT_DONE, NULL, NULL, deadline, "InitDone", err);
  if (r == NULL) return brume_err_wrap(err, "guest Init");
  *done = r->init_done;
  r->body_case = BRUME__GUEST_MESSAGE__BODY__NOT_SET;
  brume__guest_message__free_unpacked(r, NULL);
  return 0;
}

int brume_guest_link_invoke(brume_guest_link *link, const Brume__GuestInvoke *inv,
                            Brume__GuestInvokeDone **done, int timeout_ms, brume_err **err) {
  *done = NULL;
  if (check_usable(link, err) < 0) return -1;
  if (inv->request_id == NULL || inv->request_id[0] == '\0')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "guest Invoke: no request id");
  int64_t deadline = deadline_in(timeout_ms);
  Brume__GuestInvoke copy = *inv;
  if (copy.host_time_unix_ms == 0) copy.host_time_unix_ms = brume_wall_ms();
  Brume__GuestMessage m = BRUME__GUEST_MESSAGE__INIT;
  m.body_case = BRUME__GUEST_MESSAGE__BODY_INVOKE;
  m.invoke = &copy;
  if (send_msg(link, &m, deadline, err) < 0)
    return brume_err_wrap(err, "guest Invoke %s", inv->request_id);
  Brume__GuestMessage *r = await(link, BRUME__GUEST_MESSAGE__BODY_INVOKE_DONE, invoke_done_matches,
                                 inv->request_id, deadline, "InvokeDone", err);
  if (r == NULL) return brume_err_wrap(err, "guest Invoke %s", inv->request_id);
  *done = r->invoke_done;
  r->body_case = BRUME__GUEST_MESSAGE__BODY__NOT_SET;
  brume__guest_message__free_unpacked(r, NULL);
  return 0;
}

int brume_guest_link_ping(brume_guest_link *link, int timeout_ms, brume_err **err) {
  if (check_usable(link, err) < 0) return -1;
  int64_t deadline = deadline_in(timeout_ms);
  uint64_t nonce = fresh_nonce();
  Brume__GuestPing ping = BRUME__GUEST_PING__INIT;
  ping.nonce = nonce;
  Brume__GuestMessage m = BRUME__GUEST_MESSAGE__INIT;
  m.body_case = BRUME__GUEST_MESSAGE__BODY_PING;
  m.ping = &ping;
  if (send_msg(link, &m, deadline, err) < 0) return brume_err_wrap(err, "guest Ping");
  Brume__GuestMessage *r =
      await(link, BRUME__GUEST_MESSAGE__BODY_PONG, pong_matches, &nonce, deadline, "Pong", err);
  if (r == NULL) return brume_err_wrap(err, "guest Ping");
  brume__guest_message__free_unpacked(r, NULL);
  return 0;
}

int brume_guest_link_shutdown(brume_guest_link *link, uint32_t grace_ms, bool *clean,
                              int timeout_ms, brume_err **err) {
  if (check_usable(link, err) < 0) return -1;
  int64_t deadline = deadline_in(timeout_ms);
  Brume__GuestShutdown sd = BRUME__GUEST_SHUTDOWN__INIT;
  sd.grace_ms = grace_ms;
  Brume__GuestMessage m = BRUME__GUEST_MESSAGE__INIT;
  m.body_case = BRUME__GUEST_MESSAGE__BODY_SHUTDOWN;
  m.shutdown = &sd;
  if (send_msg(link, &m, deadline, err) < 0) return brume_err_wrap(err, "guest Shutdown");
  Brume__GuestMessage *r = await(link, BRUME__GUEST_MESSAGE__BODY_SHUTDOWN_DONE, NULL, NULL,
                                 deadline, "ShutdownDone", err);
  if (r == NULL) return brume_err_wrap(err, "guest Shutdown");
  if (clean) *clean = r->shutdown_done->clean;
  brume__guest_message__free_unpacked(r, NULL);
  return 0;
}

void brume_guest_link_close(brume_guest_link *link) {
  if (link == NULL) return;
  if (link->fd >= 0) close(link->fd);
  if (link->ready) brume__guest_ready__free_unpacked(link->ready, NULL);
  free(link->in);
  free(link->path);
  free(link->broken_msg);
  free(link);
}
