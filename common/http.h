/* HTTP listener for operators: GET /healthz, GET /metrics, and routes a daemon adds (the
 * frontend's dashboard). Built on libmicrohttpd.
 *
 * Threading: libmicrohttpd's internal polling thread mode (epoll) with a pool of
 * BRUME_HTTP_THREADS threads, not a thread per connection. This listener takes a few requests a
 * second (scrapes, probes) whose handlers are quick, so a thread per connection buys nothing and
 * would let anyone who reaches the port make the daemon start threads up to the connection
 * limit. The pool has more than one thread so that one slow handler (a dashboard page that asks
 * etcd) cannot hold a health probe behind it. Handlers run on those threads: they must be
 * thread-safe and should not block for long.
 *
 * Limits (bad input never aborts): at most BRUME_HTTP_MAX_CONNECTIONS connections, idle ones
 * closed after BRUME_HTTP_IDLE_TIMEOUT_S seconds, request bodies up to BRUME_HTTP_MAX_BODY
 * bytes (413 beyond). Unknown path: 404; known path, wrong method: 405 with Allow. */
#ifndef BRUME_HTTP_H
#define BRUME_HTTP_H

#include <stddef.h>

#include "err.h"
#include "metrics.h"

#define BRUME_HTTP_THREADS 2
#define BRUME_HTTP_MAX_CONNECTIONS 128
#define BRUME_HTTP_IDLE_TIMEOUT_S 10
#define BRUME_HTTP_MAX_BODY (1024 * 1024)
#define BRUME_HTTP_MAX_ROUTES 32

typedef struct brume_http brume_http;

/* What a handler sees. Valid only during the call. */
typedef struct brume_http_request {
  const char *method; /* "GET", "POST", ...; HEAD requests are routed as GET (no body is sent) */
  const char *path;   /* decoded path without the query string: "/dashboard/functions" */
  const char *body;   /* request body, NUL-terminated ("" when none) */
  size_t body_len;
  void *conn_; /* private: the libmicrohttpd connection */
} brume_http_request;

/* The handler's answer, filled with brume_http_reply*(). */
typedef struct brume_http_response brume_http_response;

typedef void (*brume_http_handler)(const brume_http_request *req, brume_http_response *resp,
                                   void *user);

/* Returns 0 when the daemon is healthy; -1 with *err set to say why it is not (the message is
 * the 503 body). Called on a listener thread for every GET /healthz. */
typedef int (*brume_http_health_fn)(void *user, brume_err **err);

/* Starts listening on addr: "127.0.0.1:9090", ":9090" (all IPv4 interfaces) or "[::1]:9090";
 * port 0 lets the kernel pick (see brume_http_port()). reg, if non-NULL, is served at
 * GET /metrics and must outlive the listener; NULL means no /metrics. Returns NULL with *err
 * set (INVALID_ARGUMENT for a bad address, UNAVAILABLE when the address cannot be bound). */
brume_http *brume_http_start(const char *addr, brume_metrics *reg, brume_err **err);

/* Stops the listener: waits for running handlers, closes the socket, frees h. NULL is fine. */
void brume_http_stop(brume_http *h);

/* The port actually bound (the chosen one when addr said port 0). */
int brume_http_port(const brume_http *h);

/* Sets the GET /healthz callback (NULL: always "ok"). May be called at any time. */
void brume_http_set_health(brume_http *h, brume_http_health_fn fn, void *user);

/* Adds a route: requests whose method is method (NULL: any) and whose path is path_prefix or
 * lies below it ("/dash" matches "/dash" and "/dash/x", not "/dashboard"; a prefix ending in '/'
 * matches everything under it) go to handler. The longest matching prefix wins. method and
 * path_prefix are copied. May be called after start; aborts beyond BRUME_HTTP_MAX_ROUTES. */
void brume_http_route(brume_http *h, const char *method, const char *path_prefix,
                      brume_http_handler handler, void *user);

/* The decoded value of query parameter key ("?name=x"), or NULL. Valid during the handler. */
const char *brume_http_query(const brume_http_request *req, const char *key);
/* A request header (case-insensitive name), or NULL. Valid during the handler. */
const char *brume_http_request_header(const brume_http_request *req, const char *name);

/* Sets the response: status, Content-Type and a copy of body. A handler that never replies
 * answers 500. Replying again replaces the earlier reply. */
void brume_http_reply(brume_http_response *resp, int status, const char *content_type,
                      const void *body, size_t len);
/* Same, with a printf-formatted body. */
void brume_http_replyf(brume_http_response *resp, int status, const char *content_type,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Adds a response header (up to 8 per response; name and value are copied). */
void brume_http_reply_header(brume_http_response *resp, const char *name, const char *value);

#endif
