#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

enum { MAX_HEADERS = 8 };

typedef struct route {
  char *method; /* NULL: any */
  char *prefix;
  size_t prefix_len;
  brume_http_handler handler;
  void *user;
} route;

struct brume_http {
  struct MHD_Daemon *mhd;
  int port;
  brume_metrics *reg;
  /* Routes are appended, never removed: a slot is filled, then n_routes is published with
   * release order, so request threads read the table without a lock. */
  route routes[BRUME_HTTP_MAX_ROUTES];
  _Atomic size_t n_routes;
  pthread_mutex_t mu; /* writers of routes; health */
  brume_http_health_fn health;
  void *health_user;
};

struct brume_http_response {
  int status; /* 0 until a reply */
  char *content_type;
  char *body;
  size_t len;
  size_t n_headers;
  char *headers[MAX_HEADERS][2];
};

/* Per-request state across libmicrohttpd's calls of the access handler. */
typedef struct request_ctx {
  char *body;
  size_t len, cap;
  bool too_large;
} request_ctx;

static void response_clear(brume_http_response *r) {
  free(r->content_type);
  free(r->body);
  for (size_t i = 0; i < r->n_headers; i++) {
    free(r->headers[i][0]);
    free(r->headers[i][1]);
  }
  memset(r, 0, sizeof(*r));
}

void brume_http_reply(brume_http_response *resp, int status, const char *content_type,
                      const void *body, size_t len) {
  free(resp->content_type);
  free(resp->body);
  resp->status = status;
  resp->content_type = brume_xstrdup(content_type ? content_type : "text/plain; charset=utf-8");
  resp->body = brume_xmalloc(len + 1);
  if (len) memcpy(resp->body, body, len);
  resp->body[len] = '\0';
  resp->len = len;
}

void brume_http_replyf(brume_http_response *resp, int status, const char *content_type,
                       const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *body = brume_xvasprintf(fmt, ap);
  va_end(ap);
  brume_http_reply(resp, status, content_type, body, strlen(body));
  free(body);
}

void brume_http_reply_header(brume_http_response *resp, const char *name, const char *value) {
  BRUME_ENSURE(resp->n_headers < MAX_HEADERS);
  resp->headers[resp->n_headers][0] = brume_xstrdup(name);
  resp->headers[resp->n_headers][1] = brume_xstrdup(value);
  resp->n_headers++;
}

const char *brume_http_query(const brume_http_request *req, const char *key) {
  return MHD_lookup_connection_value(req->conn_, MHD_GET_ARGUMENT_KIND, key);
}

const char *brume_http_request_header(const brume_http_request *req, const char *name) {
  return MHD_lookup_connection_value(req->conn_, MHD_HEADER_KIND, name);
}

/* ---- built-in routes ---- */

static void serve_health(const brume_http_request *req, brume_http_response *resp, void *user) {
  (void)req;
  brume_http *h = user;
  pthread_mutex_lock(&h->mu);
  brume_http_health_fn fn = h->health;
  void *fn_user = h->health_user;
  pthread_mutex_unlock(&h->mu);
  brume_autoptr(brume_err) err = NULL;
  if (fn && fn(fn_user, &err) < 0) {
    brume_http_replyf(resp, 503, NULL, "%s\n", err ? err->msg : "unhealthy");
    return;
  }
  brume_http_reply(resp, 200, NULL, "ok\n", 3);
}

static void serve_metrics(const brume_http_request *req, brume_http_response *resp, void *user) {
  (void)req;
  brume_http *h = user;
  size_t len;
  char *text = brume_metrics_render(h->reg, &len);
  brume_http_reply(resp, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
  free(text);
}

/* ---- routing ---- */

static bool prefix_matches(const route *r, const char *path) {
  if (strncmp(path, r->prefix, r->prefix_len) != 0) return false;
  if (r->prefix[r->prefix_len - 1] == '/') return true;
  return path[r->prefix_len] == '\0' || path[r->prefix_len] == '/';
}

/* Appends word to a ", "-separated list unless it is there already. */
static void list_add(char *list, size_t size, const char *word) {
  if (strstr(list, word)) return;
  size_t n = strlen(list);
  snprintf(list + n, size - n, "%s%s", n ? ", " : "", word);
}

static void dispatch(brume_http *h, const brume_http_request *req, brume_http_response *resp) {
  const char *method = strcmp(req->method, "HEAD") == 0 ? "GET" : req->method;
  size_t n = atomic_load_explicit(&h->n_routes, memory_order_acquire);
  const route *best = NULL;
  bool path_known = false;
  char allow[128] = "";
  for (size_t i = 0; i < n; i++) {
    const route *r = &h->routes[i];
    if (!prefix_matches(r, req->path)) continue;
    path_known = true;
    if (r->method && strcmp(r->method, method) != 0) {
      list_add(allow, sizeof(allow), r->method);
      continue;
    }
    if (!best || r->prefix_len > best->prefix_len) best = r;
  }
  if (best) {
    best->handler(req, resp, best->user);
    if (resp->status == 0) {
      brume_error("An HTTP handler returned without a response.", "path=%s", best->prefix);
      brume_http_reply(resp, 500, NULL, "internal error: no response\n", 28);
    }
    return;
  }
  if (path_known) {
    if (strstr(allow, "GET")) list_add(allow, sizeof(allow), "HEAD");
    brume_http_replyf(resp, 405, NULL, "method %s not allowed\n", req->method);
    brume_http_reply_header(resp, "Allow", allow);
    return;
  }
  brume_http_reply(resp, 404, NULL, "not found\n", 10);
}

static enum MHD_Result send_response(struct MHD_Connection *conn, brume_http_response *resp) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(resp->len, resp->body, MHD_RESPMEM_MUST_FREE);
  if (!r) return MHD_NO;
  resp->body = NULL; /* libmicrohttpd frees it */
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
  for (size_t i = 0; i < resp->n_headers; i++)
    MHD_add_response_header(r, resp->headers[i][0], resp->headers[i][1]);
  enum MHD_Result ret = MHD_queue_response(conn, (unsigned)resp->status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  (void)version;
  brume_http *h = cls;
  request_ctx *ctx = *con_cls;
  if (!ctx) {
    *con_cls = brume_xcalloc(1, sizeof(request_ctx));
    return MHD_YES;
  }
  if (*upload_data_size) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    /* Keep reading past the limit and drop it, so the 413 goes out on a clean connection. */
    if (ctx->too_large || ctx->len + n > BRUME_HTTP_MAX_BODY) {
      ctx->too_large = true;
      return MHD_YES;
    }
    if (ctx->len + n + 1 > ctx->cap) {
      ctx->cap = ctx->len + n + 1 > 2 * ctx->cap ? ctx->len + n + 1 : 2 * ctx->cap;
      ctx->body = brume_xrealloc(ctx->body, ctx->cap);
    }
    memcpy(ctx->body + ctx->len, upload_data, n);
    ctx->len += n;
    ctx->body[ctx->len] = '\0';
    return MHD_YES;
  }

  brume_http_response resp = {0};
  if (ctx->too_large) {
    brume_http_replyf(&resp, 413, NULL, "request body larger than %d bytes\n", BRUME_HTTP_MAX_BODY);
  } else {
    brume_http_request req = {
        .method = method,
        .path = url,
        .body = ctx->body ? ctx->body : "",
        .body_len = ctx->len,
        .conn_ = conn,
    };
    dispatch(h, &req, &resp);
  }
  enum MHD_Result ret = send_response(conn, &resp);
  response_clear(&resp);
  return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)conn;
  (void)toe;
  request_ctx *ctx = *con_cls;
  if (!ctx) return;
  free(ctx->body);
  free(ctx);
  *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char detail[512], q[600];
  vsnprintf(detail, sizeof(detail), fmt, ap);
  size_t n = strlen(detail);
  while (n && (detail[n - 1] == '\n' || detail[n - 1] == '\r')) detail[--n] = '\0';
  brume_warn("The HTTP listener reported a problem.", "detail=%s",
             brume_log_quote(q, sizeof(q), detail));
}

/* ---- lifecycle ---- */

/* Binds and listens on addr ourselves, so errors name the address and port 0 can be read back;
 * libmicrohttpd then serves the socket. */
static int open_listener(const char *addr, int *port, brume_err **err) {
  brume_autofree char *host = NULL;
  int p;
  if (brume_config_split_addr(addr, &host, &p, err) < 0) return -1;
  char portstr[8];
  snprintf(portstr, sizeof(portstr), "%d", p);
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  int rc = getaddrinfo(*host ? host : "0.0.0.0", portstr, &hints, &res);
  if (rc != 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "HTTP listen address %s: %s", addr,
                         gai_strerror(rc));
  int fd = -1, saved = 0;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      saved = errno;
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0) break;
    saved = errno;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0)
    return brume_err_set(err, BRUME_UNAVAILABLE, "HTTP listen on %s: %s", addr, strerror(saved));
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
    saved = errno;
    close(fd);
    return brume_err_set(err, BRUME_INTERNAL, "getsockname: %s", strerror(saved));
  }
  char hbuf[NI_MAXHOST], sbuf[NI_MAXSERV];
  if (getnameinfo((struct sockaddr *)&ss, sl, hbuf, sizeof(hbuf), sbuf, sizeof(sbuf),
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    close(fd);
    return brume_err_set(err, BRUME_INTERNAL, "getnameinfo failed on %s", addr);
  }
  *port = atoi(sbuf);
  return fd;
}

static void add_route(brume_http *h, const char *method, const char *prefix,
                      brume_http_handler handler, void *user) {
  BRUME_ENSURE(prefix && prefix[0] == '/' && handler);
  pthread_mutex_lock(&h->mu);
  size_t n = atomic_load_explicit(&h->n_routes, memory_order_relaxed);
  if (n == BRUME_HTTP_MAX_ROUTES) brume_fatal("more than %d HTTP routes", BRUME_HTTP_MAX_ROUTES);
  route *r = &h->routes[n];
  r->method = method ? brume_xstrdup(method) : NULL;
  r->prefix = brume_xstrdup(prefix);
  r->prefix_len = strlen(prefix);
  r->handler = handler;
  r->user = user;
  atomic_store_explicit(&h->n_routes, n + 1, memory_order_release);
  pthread_mutex_unlock(&h->mu);
}

void brume_http_route(brume_http *h, const char *method, const char *path_prefix,
                      brume_http_handler handler, void *user) {
  add_route(h, method, path_prefix, handler, user);
}

void brume_http_set_health(brume_http *h, brume_http_health_fn fn, void *user) {
  pthread_mutex_lock(&h->mu);
  h->health = fn;
  h->health_user = user;
  pthread_mutex_unlock(&h->mu);
}

int brume_http_port(const brume_http *h) {
  return h->port;
}

static void free_routes(brume_http *h) {
  size_t n = atomic_load(&h->n_routes);
  for (size_t i = 0; i < n; i++) {
    free(h->routes[i].method);
    free(h->routes[i].prefix);
  }
}

brume_http *brume_http_start(const char *addr, brume_metrics *reg, brume_err **err) {
  int port;
  int fd = open_listener(addr, &port, err);
  if (fd < 0) return NULL;
  brume_http *h = brume_xcalloc(1, sizeof(*h));
  pthread_mutex_init(&h->mu, NULL);
  atomic_init(&h->n_routes, 0);
  h->port = port;
  h->reg = reg;
  add_route(h, "GET", "/healthz", serve_health, h);
  if (reg) add_route(h, "GET", "/metrics", serve_metrics, h);
  h->mhd = MHD_start_daemon(MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
                            NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                            MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_THREAD_POOL_SIZE,
                            (unsigned)BRUME_HTTP_THREADS, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)BRUME_HTTP_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)BRUME_HTTP_IDLE_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED,
                            on_completed, NULL, MHD_OPTION_END);
  if (!h->mhd) {
    close(fd);
    free_routes(h);
    pthread_mutex_destroy(&h->mu);
    free(h);
    brume_err_set(err, BRUME_INTERNAL, "HTTP listen on %s: libmicrohttpd did not start", addr);
    return NULL;
  }
  return h;
}

void brume_http_stop(brume_http *h) {
  if (!h) return;
  /* Joins the pool threads and closes the listening socket it was given. */
  MHD_stop_daemon(h->mhd);
  free_routes(h);
  pthread_mutex_destroy(&h->mu);
  free(h);
}
