#include "runtime_api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "http.h"
#include "log.h"
#include "mem.h"

#define READ_CHUNK 65536
#define READ_BUDGET (1024 * 1024)
#define KEEP_CAP (1024 * 1024)

typedef struct rtapi_conn rtapi_conn;

struct init_rtapi {
  init_loop *loop;
  const init_rtapi_ops *ops;
  void *arg;
  init_loop_watch listen_w;
  rtapi_conn *conns;
  uint64_t park_seq;
  init_buf event; /* a formatted /next answer that no /next has taken yet */
  bool has_event;
};

/* One request at a time per connection; pipelined requests wait in `in`. */
struct rtapi_conn {
  init_loop_watch w;
  init_rtapi *api;
  init_buf in;
  size_t scanned; /* bytes of `in` already searched for the end of a head */
  bool have_head; /* the fields below describe the request being read */
  init_http_route route;
  bool method_ok;
  char *request_id;
  char *error_type;
  bool keep_alive;
  bool chunked;
  bool expect_continue;
  uint64_t content_length;
  init_http_chunked dechunk;
  init_buf body; /* a chunked body, decoded */
  bool continue_sent;
  init_buf out;
  bool parked;        /* a /next waiting for an event */
  uint64_t parked_at; /* parking order: the oldest gets the event */
  bool close_after;   /* close once `out` is written */
  bool processing;    /* conn_process is on the stack */
  rtapi_conn *next;
};

static void conn_process(rtapi_conn *c);

static void conn_reset_request(rtapi_conn *c) {
  c->have_head = false;
  free(c->request_id);
  free(c->error_type);
  c->request_id = c->error_type = NULL;
  c->dechunk = (init_http_chunked){0};
  init_buf_clear(&c->body);
  c->continue_sent = false;
  c->scanned = 0;
}

static void conn_free(rtapi_conn *c) {
  init_rtapi *api = c->api;
  for (rtapi_conn **pp = &api->conns; *pp; pp = &(*pp)->next) {
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  }
  init_loop_del(api->loop, &c->w);
  close(c->w.fd);
  conn_reset_request(c);
  init_buf_free(&c->in);
  init_buf_free(&c->body);
  init_buf_free(&c->out);
  free(c);
}

/* Writes what it can; returns false if the connection was closed. */
static bool conn_flush(rtapi_conn *c) {
  if (init_buf_flush(&c->out, c->w.fd) < 0 || (c->close_after && init_buf_pending(&c->out) == 0)) {
    conn_free(c);
    return false;
  }
  init_buf_trim(&c->out, KEEP_CAP);
  /* While parked, only a hang-up matters: reading on would let a runtime pile up requests. */
  uint32_t ev = c->parked ? EPOLLRDHUP : EPOLLIN | EPOLLRDHUP;
  if (init_buf_pending(&c->out) > 0) ev |= EPOLLOUT;
  init_loop_mod(c->api->loop, &c->w, ev);
  return true;
}

/* Queues a response. The connection closes after it when the client asked for that, or when the
 * caller set close_after (a request the stream cannot be trusted after: malformed, too large). */
static void respond(rtapi_conn *c, int status, const char *body) {
  size_t len = strlen(body);
  if (!c->keep_alive) c->close_after = true;
  init_buf_printf(
      &c->out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n",
      status, init_http_reason(status), len, c->close_after ? "Connection: close\r\n" : "");
  init_buf_append(&c->out, body, len);
}

static void respond_error(rtapi_conn *c, int status, const char *type, const char *message) {
  json_t *doc = json_pack("{s:s, s:s}", "errorMessage", message, "errorType", type);
  char *text = json_dumps(doc, JSON_COMPACT);
  respond(c, status, text);
  free(text);
  json_decref(doc);
}

static void respond_verdict(rtapi_conn *c, init_rtapi_verdict v) {
  switch (v) {
    case INIT_RTAPI_ACCEPTED:
      respond(c, 202, "{\"status\":\"OK\"}");
      break;
    case INIT_RTAPI_INVALID_ID:
      respond_error(c, 400, "InvalidRequestID", "Invalid request ID");
      break;
    case INIT_RTAPI_INVALID_STATE:
      respond_error(c, 403, "InvalidStateTransition", "The call is not allowed in this state.");
      break;
  }
}

static void respond_too_large(rtapi_conn *c) {
  c->close_after = true;
  respond_error(c, 413, "RequestEntityTooLarge",
                "Exceeded maximum allowed payload size (6291556 bytes).");
}

/* Gives a waiting event to the oldest parked /next. */
static void hand_over(init_rtapi *api) {
  if (!api->has_event) return;
  rtapi_conn *oldest = NULL;
  for (rtapi_conn *c = api->conns; c; c = c->next)
    if (c->parked && (oldest == NULL || c->parked_at < oldest->parked_at)) oldest = c;
  if (oldest == NULL) return;
  api->has_event = false;
  oldest->parked = false;
  init_buf_append(&oldest->out, init_buf_head(&api->event), init_buf_pending(&api->event));
  init_buf_clear(&api->event);
  init_buf_trim(&api->event, KEEP_CAP);
  if (!oldest->keep_alive) oldest->close_after = true;
  conn_process(oldest);
}

static char *dup_str(init_http_str s) {
  return s.n ? brume_xstrndup(s.p, s.n) : brume_xstrdup("");
}

static void handle_request(rtapi_conn *c, const uint8_t *body, size_t len) {
  init_rtapi *api = c->api;
  if (c->route == INIT_HTTP_ROUTE_NOT_FOUND) {
    respond_error(c, 404, "NotFound", "No such Runtime API path.");
    return;
  }
  if (!c->method_ok) {
    respond_error(c, 405, "MethodNotAllowed", "The path does not take this method.");
    return;
  }
  switch (c->route) {
    case INIT_HTTP_ROUTE_NEXT:
      c->parked = true;
      c->parked_at = ++api->park_seq;
      api->ops->next(api->arg);
      hand_over(api);
      break;
    case INIT_HTTP_ROUTE_RESPONSE:
      respond_verdict(c, api->ops->response(api->arg, c->request_id, body, len));
      break;
    case INIT_HTTP_ROUTE_ERROR:
      respond_verdict(c, api->ops->error(api->arg, c->request_id, c->error_type, body, len));
      break;
    case INIT_HTTP_ROUTE_INIT_ERROR:
      respond_verdict(c, api->ops->init_error(api->arg, c->error_type, body, len));
      break;
    case INIT_HTTP_ROUTE_NOT_FOUND:
      break;
  }
}

/* Has the head arrived (or grown too large, which the parser then refuses)? Only new bytes are
 * searched, so a runtime that trickles its head costs linear time. */
static bool head_ready(rtapi_conn *c) {
  size_t n = init_buf_pending(&c->in);
  if (n >= INIT_HTTP_MAX_HEAD) return true;
  size_t from = c->scanned >= 2 ? c->scanned - 2 : 0;
  const uint8_t *p = init_buf_head(&c->in);
  for (size_t i = from; i + 1 < n; i++) {
    if (p[i] != '\n') continue;
    if (p[i + 1] == '\n' || (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n')) return true;
  }
  c->scanned = n;
  return false;
}

/* Parses the head at the start of `in`; false when the connection must stop (answered, or
 * waiting for more). */
static bool read_head(rtapi_conn *c) {
  if (!head_ready(c)) return false;
  init_http_request req;
  init_http_status st = init_http_parse_head((const char *)init_buf_head(&c->in),
                                             init_buf_pending(&c->in), INIT_RTAPI_MAX_BODY, &req);
  if (st == INIT_HTTP_INCOMPLETE) {
    c->scanned = init_buf_pending(&c->in);
    return false;
  }
  if (st == INIT_HTTP_BAD) {
    init_http_str id;
    if (req.bad_status == 413 && req.target.n > 0 &&
        init_http_route_target(req.target, &id) == INIT_HTTP_ROUTE_RESPONSE) {
      brume_autofree char *rid = dup_str(id);
      c->api->ops->too_large(c->api->arg, rid);
    }
    c->close_after = true;
    if (req.bad_status == 413)
      respond_too_large(c);
    else
      respond_error(c, req.bad_status, "InvalidRequest", req.bad_reason);
    return false;
  }
  init_http_str id;
  c->have_head = true;
  c->route = init_http_route_target(req.target, &id);
  c->method_ok = req.method.n == strlen(init_http_route_method(c->route)) &&
                 memcmp(req.method.p, init_http_route_method(c->route), req.method.n) == 0;
  c->request_id = dup_str(id);
  c->error_type = dup_str(req.error_type);
  c->keep_alive = req.keep_alive;
  c->chunked = req.chunked;
  c->expect_continue = req.expect_continue;
  c->content_length = req.content_length;
  init_buf_consume(&c->in, req.head_len);
  return true;
}

/* A client that sent Expect: 100-continue waits for this before sending its body. */
static void send_continue(rtapi_conn *c) {
  if (!c->expect_continue || c->continue_sent) return;
  c->continue_sent = true;
  init_buf_printf(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
}

/* Handles every complete request in `in`, one at a time, until the connection parks, waits
 * for bytes, or closes; then writes what is queued. */
static void conn_process(rtapi_conn *c) {
  if (c->processing) return;
  c->processing = true;
  while (!c->parked && !c->close_after) {
    if (!c->have_head && !read_head(c)) break;
    if (c->chunked) {
      size_t used;
      int bad_status = 0;
      init_http_status st = init_http_chunked_feed(&c->dechunk, (const char *)init_buf_head(&c->in),
                                                   init_buf_pending(&c->in), INIT_RTAPI_MAX_BODY,
                                                   &c->body, &used, &bad_status);
      init_buf_consume(&c->in, used);
      if (st == INIT_HTTP_INCOMPLETE) {
        send_continue(c);
        break;
      }
      if (st == INIT_HTTP_BAD) {
        if (bad_status == 413) {
          if (c->route == INIT_HTTP_ROUTE_RESPONSE)
            c->api->ops->too_large(c->api->arg, c->request_id);
          respond_too_large(c);
        } else {
          c->close_after = true;
          respond_error(c, bad_status, "InvalidRequest",
                        bad_status == 431 ? "The chunked body's trailers are over 64 KiB."
                                          : "The chunked body is malformed.");
        }
        break;
      }
      handle_request(c, init_buf_head(&c->body), init_buf_pending(&c->body));
    } else {
      if (init_buf_pending(&c->in) < c->content_length) {
        send_continue(c);
        break;
      }
      handle_request(c, init_buf_head(&c->in), (size_t)c->content_length);
      init_buf_consume(&c->in, (size_t)c->content_length);
    }
    conn_reset_request(c);
    init_buf_trim(&c->body, KEEP_CAP);
  }
  c->processing = false;
  conn_flush(c);
}

static void on_conn(init_loop_watch *w, uint32_t events) {
  rtapi_conn *c = w->arg;
  if (events & EPOLLOUT) {
    if (!conn_flush(c)) return;
  }
  if (c->parked) {
    /* Only EPOLLRDHUP/EPOLLHUP/EPOLLERR reach a parked connection: the runtime hung up. */
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) conn_free(c);
    return;
  }
  if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
  for (size_t total = 0; total < READ_BUDGET;) {
    ssize_t n = init_buf_read(&c->in, w->fd, READ_CHUNK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      conn_free(c);
      return;
    }
    total += (size_t)n;
  }
  conn_process(c);
}

static void on_accept(init_loop_watch *w, uint32_t events) {
  (void)events;
  init_rtapi *api = w->arg;
  for (;;) {
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    rtapi_conn *c = brume_xcalloc(1, sizeof(*c));
    c->api = api;
    c->keep_alive = true;
    c->w = (init_loop_watch){.fd = fd, .fn = on_conn, .arg = c};
    c->next = api->conns;
    api->conns = c;
    init_loop_add(api->loop, &c->w, EPOLLIN | EPOLLRDHUP);
  }
}

init_rtapi *init_rtapi_listen(init_loop *loop, const char *addr, const init_rtapi_ops *ops,
                              void *arg, brume_err **err) {
  const char *colon = strrchr(addr, ':');
  struct sockaddr_in sin = {.sin_family = AF_INET};
  char host[64];
  char *end = NULL;
  long port = colon ? strtol(colon + 1, &end, 10) : -1;
  if (colon == NULL || (size_t)(colon - addr) >= sizeof(host) || end == colon + 1 || *end ||
      port <= 0 || port > 65535) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "Runtime API address %s is not IPv4:port", addr);
    return NULL;
  }
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = '\0';
  if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "Runtime API address %s is not IPv4:port", addr);
    return NULL;
  }
  sin.sin_port = htons((uint16_t)port);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    brume_err_set(err, BRUME_INTERNAL, "socket: %s", strerror(errno));
    return NULL;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 16) < 0) {
    brume_err_set(err, BRUME_UNAVAILABLE, "listen on %s: %s", addr, strerror(errno));
    close(fd);
    return NULL;
  }
  init_rtapi *api = brume_xcalloc(1, sizeof(*api));
  api->loop = loop;
  api->ops = ops;
  api->arg = arg;
  api->listen_w = (init_loop_watch){.fd = fd, .fn = on_accept, .arg = api};
  init_loop_add(loop, &api->listen_w, EPOLLIN);
  return api;
}

void init_rtapi_deliver(init_rtapi *api, const init_rtapi_event *ev) {
  init_buf *b = &api->event;
  init_buf_clear(b);
  init_buf_printf(b,
                  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  "Lambda-Runtime-Aws-Request-Id: %s\r\nLambda-Runtime-Deadline-Ms: %lld\r\n"
                  "Lambda-Runtime-Invoked-Function-Arn: %s\r\n",
                  ev->request_id, (long long)ev->deadline_unix_ms, ev->function_arn);
  if (ev->trace_id[0]) init_buf_printf(b, "Lambda-Runtime-Trace-Id: %s\r\n", ev->trace_id);
  if (ev->client_context[0])
    init_buf_printf(b, "Lambda-Runtime-Client-Context: %s\r\n", ev->client_context);
  if (ev->cognito_identity[0])
    init_buf_printf(b, "Lambda-Runtime-Cognito-Identity: %s\r\n", ev->cognito_identity);
  init_buf_printf(b, "Content-Length: %zu\r\n\r\n", ev->payload_len);
  init_buf_append(b, ev->payload, ev->payload_len);
  api->has_event = true;
  hand_over(api);
}

void init_rtapi_cancel(init_rtapi *api) {
  api->has_event = false;
  init_buf_clear(&api->event);
  init_buf_trim(&api->event, KEEP_CAP);
}

void init_rtapi_free(init_rtapi *api) {
  if (api == NULL) return;
  while (api->conns) conn_free(api->conns);
  init_loop_del(api->loop, &api->listen_w);
  close(api->listen_w.fd);
  init_buf_free(&api->event);
  free(api);
}

void init_rtapi_parse_error_doc(const uint8_t *body, size_t len, char **type, char **message) {
  *type = *message = NULL;
  json_t *doc = json_loadb((const char *)body, len, 0, NULL);
  if (doc == NULL) return;
  const char *t = json_string_value(json_object_get(doc, "errorType"));
  const char *m = json_string_value(json_object_get(doc, "errorMessage"));
  if (t) *type = brume_xstrdup(t);
  if (m) *message = brume_xstrdup(m);
  json_decref(doc);
}
