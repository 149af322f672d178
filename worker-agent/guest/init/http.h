/* The HTTP/1.1 that the Lambda Runtime API speaks: a request parser, a chunked-body decoder and
 * the router, all pure functions over buffers (so they can be unit-tested and fuzzed).
 *
 * The server (runtime_api.c) owns sockets and buffers; this module only looks at bytes. The
 * parser is strict where leniency would hide a broken runtime (conflicting lengths, a body with
 * both Content-Length and chunked, obsolete line folding) and lenient where real clients differ
 * (bare LF line ends, empty lines before a request). */
#ifndef BRUME_INIT_HTTP_H
#define BRUME_INIT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* The request line and headers of one request may not be larger (431 otherwise). */
#define INIT_HTTP_MAX_HEAD (64 * 1024)

typedef struct init_http_str {
  const char *p; /* not NUL-terminated; points into the parsed buffer */
  size_t n;
} init_http_str;

typedef enum init_http_status {
  INIT_HTTP_INCOMPLETE = 0, /* more bytes are needed */
  INIT_HTTP_DONE = 1,       /* a whole head (or body) was parsed */
  INIT_HTTP_BAD = -1,       /* malformed or over a limit: answer bad_status and close */
} init_http_status;

typedef struct init_http_request {
  init_http_str method;
  init_http_str target;
  int version_minor;    /* HTTP/1.<minor>, 0 or 1 */
  bool keep_alive;      /* the connection stays open after the response */
  bool chunked;         /* Transfer-Encoding: chunked */
  bool expect_continue; /* Expect: 100-continue */
  uint64_t content_length;
  init_http_str error_type; /* Lambda-Runtime-Function-Error-Type, n == 0 when absent */
  size_t head_len;          /* bytes from the buffer's start to the body's first byte */
  /* When INIT_HTTP_BAD: the status to answer (400, 413, 431, 501, 505) and why, a sentence. */
  int bad_status;
  const char *bad_reason;
} init_http_request;

/* Parses the head of the request at the start of buf[0..len). DONE fills *req, with head_len
 * telling where the body starts; INCOMPLETE means the head has not fully arrived (and is under
 * INIT_HTTP_MAX_HEAD so far); BAD fills bad_status and bad_reason. A Content-Length over max_body
 * is BAD with 413, after method and target have been filled (the server may name the request it
 * refuses). */
init_http_status init_http_parse_head(const char *buf, size_t len, uint64_t max_body,
                                      init_http_request *req);

/* An incremental decoder of a chunked body: zero it, then feed it bytes as they arrive. */
typedef struct init_http_chunked {
  int state;
  uint64_t remaining; /* bytes left in the current chunk */
  uint64_t total;     /* decoded bytes so far */
  size_t line_len;    /* bytes of the current size or trailer line, bounded */
  size_t trailer_len; /* bytes of trailers, bounded by INIT_HTTP_MAX_HEAD */
  int digits;
} init_http_chunked;

/* Decodes buf[0..len), appending the body's bytes to out, and sets *consumed to the bytes used.
 * DONE: the last chunk and the trailers were read (bytes after *consumed belong to the next
 * request). INCOMPLETE: all of buf was used and more is needed. BAD: *bad_status is 400 (a
 * malformed chunk), 413 (the body would exceed max_body) or 431 (trailers too long). */
init_http_status init_http_chunked_feed(init_http_chunked *c, const char *buf, size_t len,
                                        uint64_t max_body, init_buf *out, size_t *consumed,
                                        int *bad_status);

typedef enum init_http_route {
  INIT_HTTP_ROUTE_NOT_FOUND = 0,
  INIT_HTTP_ROUTE_NEXT,       /* /2018-06-01/runtime/invocation/next */
  INIT_HTTP_ROUTE_RESPONSE,   /* /2018-06-01/runtime/invocation/{id}/response */
  INIT_HTTP_ROUTE_ERROR,      /* /2018-06-01/runtime/invocation/{id}/error */
  INIT_HTTP_ROUTE_INIT_ERROR, /* /2018-06-01/runtime/init/error */
} init_http_route;

/* Maps a request target (a query string is ignored) to its Runtime API route, and for RESPONSE
 * and ERROR sets *request_id to the {id} segment (non-empty, inside target). */
init_http_route init_http_route_target(init_http_str target, init_http_str *request_id);

/* The method that a route takes: "GET" for NEXT, "POST" for the others. */
const char *init_http_route_method(init_http_route route);

/* The reason phrase of a status code ("Accepted"). */
const char *init_http_reason(int status);

#endif
