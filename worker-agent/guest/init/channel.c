#include "channel.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

/* Read at least this much at a time, more when a large frame (the code) is on its way. */
#define READ_CHUNK 65536
/* Bytes read per wakeup before giving the other descriptors a turn. */
#define READ_BUDGET (4 * 1024 * 1024)
/* Buffers that grew past this for one large message are freed once empty. */
#define KEEP_CAP (1024 * 1024)

typedef enum channel_kind { CHANNEL_DEVICE, CHANNEL_UNIX } channel_kind;

struct init_channel {
  init_loop *loop;
  const init_channel_ops *ops;
  void *arg;
  channel_kind kind;
  char *path;
  init_loop_watch listen_w; /* UNIX: the listening socket */
  init_loop_watch conn_w;   /* the port, or the accepted connection; fd -1 when closed */
  init_loop_watch retry_w;  /* DEVICE: a timer to look for a host again */
  size_t need;              /* bytes still missing from the frame being read, 0 if unknown */
  bool connected;
  bool closing;        /* a GuestError is queued: drop the connection once it is written */
  unsigned generation; /* bumped when a connection ends, so a dispatch loop notices */
  init_buf in, out;
};

static void on_conn(init_loop_watch *w, uint32_t events);

int init_channel_frame_len(const uint8_t *buf, size_t len, uint32_t *frame_len) {
  if (len < 4) return 1;
  uint32_t n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
  if (n > INIT_CHANNEL_MAX_FRAME) return -1;
  *frame_len = n;
  return 0;
}

char *init_channel_find_port(const char *name, int timeout_ms, brume_err **err) {
  const char *base = "/sys/class/virtio-ports";
  /* The port's name arrives from the host after the device is probed: poll for it. */
  for (int waited = 0;; waited += INIT_CHANNEL_RETRY_MS) {
    DIR *d = opendir(base);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      char path[512], got[128] = "";
      snprintf(path, sizeof(path), "%s/%s/name", base, e->d_name);
      FILE *f = fopen(path, "re");
      if (f == NULL) continue;
      if (fgets(got, sizeof(got), f) == NULL) got[0] = '\0';
      fclose(f);
      got[strcspn(got, "\n")] = '\0';
      if (strcmp(got, name) == 0) {
        char *dev = brume_xasprintf("/dev/%s", e->d_name);
        closedir(d);
        return dev;
      }
    }
    if (d) closedir(d);
    if (waited >= timeout_ms) break;
    nanosleep(&(struct timespec){0, INIT_CHANNEL_RETRY_MS * 1000000L}, NULL);
  }
  brume_err_set(err, BRUME_NOT_FOUND, "no virtio port named %s under %s after %d ms", name, base,
                timeout_ms);
  return NULL;
}

static init_channel *channel_new(init_loop *loop, channel_kind kind, const char *path,
                                 const init_channel_ops *ops, void *arg) {
  init_channel *c = brume_xcalloc(1, sizeof(*c));
  c->loop = loop;
  c->ops = ops;
  c->arg = arg;
  c->kind = kind;
  c->path = brume_xstrdup(path);
  c->listen_w.fd = c->conn_w.fd = c->retry_w.fd = -1;
  c->conn_w.fn = on_conn;
  c->conn_w.arg = c;
  return c;
}

/* The connection ended (or is being dropped): forget its bytes. A virtio port stays open and is
 * polled for the next host; a socket is closed. */
static void conn_end(init_channel *c, bool reopen) {
  init_loop_del(c->loop, &c->conn_w);
  bool was = c->connected;
  c->connected = false;
  c->closing = false;
  c->generation++;
  c->need = 0;
  init_buf_free(&c->in);
  init_buf_free(&c->out);
  if (was) brume_info("The host disconnected.", "channel=%s", c->path);
  if (c->kind == CHANNEL_UNIX || reopen) {
    if (c->conn_w.fd >= 0) close(c->conn_w.fd);
    c->conn_w.fd = -1;
  }
  if (c->kind == CHANNEL_DEVICE) {
    if (c->conn_w.fd < 0) {
      c->conn_w.fd = open(c->path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
      if (c->conn_w.fd < 0)
        brume_error("Cannot reopen the control port.", "path=%s error=\"%s\"", c->path,
                    strerror(errno));
    }
    init_timer_arm(c->retry_w.fd, INIT_CHANNEL_RETRY_MS);
  }
}

static void conn_begin(init_channel *c) {
  c->connected = true;
  c->closing = false;
  init_loop_add(c->loop, &c->conn_w, EPOLLIN);
  brume_info("The host connected.", "channel=%s", c->path);
  c->ops->connected(c->arg);
}

/* DEVICE: is a host on the other end of the port? POLLHUP says no. */
static void on_retry(init_loop_watch *w, uint32_t events) {
  (void)events;
  init_channel *c = w->arg;
  init_timer_ack(w->fd);
  if (c->connected) return;
  if (c->conn_w.fd < 0) {
    conn_end(c, true); /* try to reopen */
    return;
  }
  struct pollfd p = {.fd = c->conn_w.fd, .events = POLLIN};
  if (poll(&p, 1, 0) < 0 || (p.revents & (POLLHUP | POLLERR | POLLNVAL))) {
    init_timer_arm(w->fd, INIT_CHANNEL_RETRY_MS);
    return;
  }
  conn_begin(c);
}

static void update_events(init_channel *c) {
  if (!c->connected) return;
  uint32_t ev = c->closing ? 0 : EPOLLIN;
  if (init_buf_pending(&c->out) > 0) ev |= EPOLLOUT;
  init_loop_mod(c->loop, &c->conn_w, ev);
}

static void flush(init_channel *c) {
  if (init_buf_flush(&c->out, c->conn_w.fd) < 0) {
    brume_warn("Writing to the host failed.", "channel=%s error=\"%s\"", c->path, strerror(errno));
    conn_end(c, false);
    return;
  }
  if (c->closing && init_buf_pending(&c->out) == 0) {
    conn_end(c, true);
    return;
  }
  init_buf_trim(&c->out, KEEP_CAP);
  update_events(c);
}

/* Decodes and dispatches every whole frame in the input buffer. */
static void dispatch(init_channel *c) {
  unsigned gen = c->generation;
  while (c->connected && !c->closing && c->generation == gen) {
    uint32_t n;
    int r = init_channel_frame_len(init_buf_head(&c->in), init_buf_pending(&c->in), &n);
    if (r == 1) return;
    if (r < 0) {
      init_channel_fail(c, "frame too long: over %u bytes", INIT_CHANNEL_MAX_FRAME);
      return;
    }
    if (init_buf_pending(&c->in) < 4 + (size_t)n) {
      /* Read the rest of the frame into room made once, and no further (the code can be tens of
       * MiB in a 128 MiB guest). */
      c->need = 4 + (size_t)n - init_buf_pending(&c->in);
      init_buf_reserve(&c->in, c->need);
      return;
    }
    c->need = 0;
    Brume__GuestMessage *msg = brume__guest_message__unpack(NULL, n, init_buf_head(&c->in) + 4);
    init_buf_consume(&c->in, 4 + (size_t)n);
    init_buf_trim(&c->in, KEEP_CAP);
    if (msg == NULL) {
      init_channel_fail(c, "undecodable GuestMessage (%u bytes)", n);
      return;
    }
    c->ops->message(c->arg, msg);
  }
}

static void on_conn(init_loop_watch *w, uint32_t events) {
  init_channel *c = w->arg;
  if (events & EPOLLOUT) {
    flush(c);
    if (!c->connected) return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    for (size_t total = 0; total < READ_BUDGET && c->connected && !c->closing;) {
      ssize_t n = init_buf_read(&c->in, w->fd, c->need > READ_CHUNK ? c->need : READ_CHUNK);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n <= 0) {
        /* 0: a virtio port without a host, or a socket whose host hung up. */
        conn_end(c, false);
        return;
      }
      total += (size_t)n;
      dispatch(c);
    }
  }
}

static void set_retry_timer(init_channel *c) {
  c->retry_w = (init_loop_watch){.fd = init_timer_new(), .fn = on_retry, .arg = c};
  init_loop_add(c->loop, &c->retry_w, EPOLLIN);
}

init_channel *init_channel_open_device(init_loop *loop, const char *path,
                                       const init_channel_ops *ops, void *arg, brume_err **err) {
  int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    brume_err_set(err, BRUME_UNAVAILABLE, "open %s: %s", path, strerror(errno));
    return NULL;
  }
  init_channel *c = channel_new(loop, CHANNEL_DEVICE, path, ops, arg);
  c->conn_w.fd = fd;
  set_retry_timer(c);
  return c;
}

static void on_accept(init_loop_watch *w, uint32_t events) {
  (void)events;
  init_channel *c = w->arg;
  int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) return;
  if (c->conn_w.fd >= 0) {
    brume_info("A new host connection replaces the old one.", "channel=%s", c->path);
    conn_end(c, true);
  }
  c->conn_w.fd = fd;
  conn_begin(c);
}

init_channel *init_channel_listen_unix(init_loop *loop, const char *path,
                                       const init_channel_ops *ops, void *arg, brume_err **err) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(addr.sun_path)) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "socket path %s is too long", path);
    return NULL;
  }
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    brume_err_set(err, BRUME_INTERNAL, "socket: %s", strerror(errno));
    return NULL;
  }
  unlink(path);
  if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 4) < 0) {
    brume_err_set(err, BRUME_UNAVAILABLE, "listen on %s: %s", path, strerror(errno));
    close(fd);
    return NULL;
  }
  init_channel *c = channel_new(loop, CHANNEL_UNIX, path, ops, arg);
  c->listen_w = (init_loop_watch){.fd = fd, .fn = on_accept, .arg = c};
  return c;
}

void init_channel_start(init_channel *c) {
  if (c->kind == CHANNEL_UNIX) {
    init_loop_add(c->loop, &c->listen_w, EPOLLIN);
  } else {
    init_timer_arm(c->retry_w.fd, 0);
  }
}

int init_channel_send(init_channel *c, const Brume__GuestMessage *msg) {
  if (!c->connected || c->closing) {
    brume_debug("No host is connected: a message is dropped.", "case=%d", (int)msg->body_case);
    return -1;
  }
  size_t n = brume__guest_message__get_packed_size(msg);
  BRUME_ENSURE(n <= INIT_CHANNEL_MAX_FRAME);
  uint8_t hdr[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
  init_buf_append(&c->out, hdr, 4);
  init_buf_reserve(&c->out, n);
  brume__guest_message__pack(msg, c->out.data + c->out.len);
  c->out.len += n;
  flush(c);
  return 0;
}

void init_channel_fail(init_channel *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  brume_autofree char *text = brume_xvasprintf(fmt, ap);
  va_end(ap);
  char q[512];
  brume_warn("The host sent something wrong for the protocol; dropping the connection.", "error=%s",
             brume_log_quote(q, sizeof(q), text));
  Brume__GuestError e = BRUME__GUEST_ERROR__INIT;
  e.message = text;
  Brume__GuestMessage m = BRUME__GUEST_MESSAGE__INIT;
  m.body_case = BRUME__GUEST_MESSAGE__BODY_ERROR;
  m.error = &e;
  if (init_channel_send(c, &m) < 0) return;
  if (!c->connected) return; /* the write failed and ended the connection already */
  c->closing = true;
  flush(c);
}

void init_channel_free(init_channel *c) {
  if (c == NULL) return;
  init_loop_del(c->loop, &c->conn_w);
  init_loop_del(c->loop, &c->listen_w);
  init_loop_del(c->loop, &c->retry_w);
  if (c->conn_w.fd >= 0) close(c->conn_w.fd);
  if (c->listen_w.fd >= 0) {
    close(c->listen_w.fd);
    unlink(c->path);
  }
  if (c->retry_w.fd >= 0) close(c->retry_w.fd);
  init_buf_free(&c->in);
  init_buf_free(&c->out);
  free(c->path);
  free(c);
}
