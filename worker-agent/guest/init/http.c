#include "http.h"

#include <string.h>
#include <strings.h>

/* RFC 9110 token characters, for methods and header names. */
static bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool str_ieq(init_http_str s, const char *lit) {
  size_t n = strlen(lit);
  return s.n == n && strncasecmp(s.p, lit, n) == 0;
}

static bool str_eq(init_http_str s, const char *lit) {
  size_t n = strlen(lit);
  return s.n == n && memcmp(s.p, lit, n) == 0;
}

static init_http_str trim(init_http_str s) {
  while (s.n > 0 && (s.p[0] == ' ' || s.p[0] == '\t')) s.p++, s.n--;
  while (s.n > 0 && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t')) s.n--;
  return s;
}

static init_http_status bad(init_http_request *req, int status, const char *reason) {
  req->bad_status = status;
  req->bad_reason = reason;
  return INIT_HTTP_BAD;
}

/* Finds the next line in buf[*pos..end): sets *line to it without its LF or CRLF, moves *pos past
 * it. False when no LF is left. */
static bool next_line(const char *buf, size_t end, size_t *pos, init_http_str *line) {
  const char *start = buf + *pos;
  const char *lf = memchr(start, '\n', end - *pos);
  if (lf == NULL) return false;
  size_t n = (size_t)(lf - start);
  *pos += n + 1;
  if (n > 0 && start[n - 1] == '\r') n--;
  *line = (init_http_str){start, n};
  return true;
}

/* Where the head ends: the offset just past its empty line, or 0 if it has not arrived. */
static size_t find_head_end(const char *buf, size_t len, size_t *first) {
  size_t pos = 0;
  init_http_str line;
  /* Empty lines before the request line are skipped (RFC 9112 2.2). */
  while (pos < len) {
    size_t at = pos;
    if (!next_line(buf, len, &pos, &line)) return 0;
    if (line.n > 0) {
      *first = at;
      break;
    }
  }
  while (pos < len) {
    if (!next_line(buf, len, &pos, &line)) return 0;
    if (line.n == 0) return pos;
  }
  return 0;
}

static init_http_status parse_request_line(init_http_str line, init_http_request *req) {
  const char *sp1 = memchr(line.p, ' ', line.n);
  if (sp1 == NULL) return bad(req, 400, "The request line is malformed.");
  req->method = (init_http_str){line.p, (size_t)(sp1 - line.p)};
  if (req->method.n == 0) return bad(req, 400, "The request has no method.");
  for (size_t i = 0; i < req->method.n; i++)
    if (!is_tchar((unsigned char)req->method.p[i]))
      return bad(req, 400, "The request method is malformed.");
  const char *rest = sp1 + 1;
  size_t rest_n = line.n - req->method.n - 1;
  const char *sp2 = memchr(rest, ' ', rest_n);
  if (sp2 == NULL) return bad(req, 400, "The request line is malformed.");
  req->target = (init_http_str){rest, (size_t)(sp2 - rest)};
  if (req->target.n == 0) return bad(req, 400, "The request has no target.");
  for (size_t i = 0; i < req->target.n; i++) {
    unsigned char c = (unsigned char)req->target.p[i];
    if (c <= 0x20 || c == 0x7f) return bad(req, 400, "The request target is malformed.");
  }
  init_http_str version = {sp2 + 1, rest_n - req->target.n - 1};
  if (version.n != 8 || memcmp(version.p, "HTTP/", 5) != 0 || version.p[6] != '.' ||
      version.p[5] < '0' || version.p[5] > '9' || version.p[7] < '0' || version.p[7] > '9')
    return bad(req, 400, "The HTTP version is malformed.");
  if (version.p[5] != '1') return bad(req, 505, "Only HTTP/1.x is supported.");
  req->version_minor = version.p[7] - '0';
  return INIT_HTTP_DONE;
}

/* Content-Length: 1*DIGIT. A repeated header must repeat the same value. */
static init_http_status parse_content_length(init_http_str v, bool *seen, init_http_request *req) {
  if (v.n == 0) return bad(req, 400, "Content-Length is empty.");
  uint64_t n = 0;
  for (size_t i = 0; i < v.n; i++) {
    if (v.p[i] < '0' || v.p[i] > '9') return bad(req, 400, "Content-Length is not a number.");
    if (n > (UINT64_MAX - 9) / 10) return bad(req, 413, "Content-Length is too large.");
    n = n * 10 + (uint64_t)(v.p[i] - '0');
  }
  if (*seen && n != req->content_length)
    return bad(req, 400, "Content-Length is given twice with different values.");
  *seen = true;
  req->content_length = n;
  return INIT_HTTP_DONE;
}

/* Connection: a comma-separated list of options; only close and keep-alive matter. */
static void parse_connection(init_http_str v, bool *close, bool *keep) {
  while (v.n > 0) {
    const char *comma = memchr(v.p, ',', v.n);
    size_t n = comma ? (size_t)(comma - v.p) : v.n;
    init_http_str opt = trim((init_http_str){v.p, n});
    if (str_ieq(opt, "close")) *close = true;
    if (str_ieq(opt, "keep-alive")) *keep = true;
    v.p += n;
    v.n -= n;
    if (comma) v.p++, v.n--;
  }
}

init_http_status init_http_parse_head(const char *buf, size_t len, uint64_t max_body,
                                      init_http_request *req) {
  *req = (init_http_request){0};
  size_t first = 0;
  size_t scan = len < INIT_HTTP_MAX_HEAD ? len : INIT_HTTP_MAX_HEAD;
  size_t end = find_head_end(buf, scan, &first);
  if (end == 0) {
    if (len >= INIT_HTTP_MAX_HEAD) return bad(req, 431, "The request head is over 64 KiB.");
    return INIT_HTTP_INCOMPLETE;
  }
  req->head_len = end;

  size_t pos = first;
  init_http_str line = {NULL, 0};
  next_line(buf, end, &pos, &line);
  if (parse_request_line(line, req) != INIT_HTTP_DONE) return INIT_HTTP_BAD;

  bool has_length = false, has_te = false, conn_close = false, conn_keep = false;
  while (next_line(buf, end, &pos, &line) && line.n > 0) {
    if (line.p[0] == ' ' || line.p[0] == '\t')
      return bad(req, 400, "Obsolete header line folding is not accepted.");
    const char *colon = memchr(line.p, ':', line.n);
    if (colon == NULL || colon == line.p) return bad(req, 400, "A header line is malformed.");
    init_http_str name = {line.p, (size_t)(colon - line.p)};
    for (size_t i = 0; i < name.n; i++)
      if (!is_tchar((unsigned char)name.p[i])) return bad(req, 400, "A header name is malformed.");
    init_http_str value = trim((init_http_str){colon + 1, line.n - name.n - 1});
    for (size_t i = 0; i < value.n; i++) {
      unsigned char c = (unsigned char)value.p[i];
      if ((c < 0x20 && c != '\t') || c == 0x7f)
        return bad(req, 400, "A header value holds a control character.");
    }
    if (str_ieq(name, "Content-Length")) {
      if (parse_content_length(value, &has_length, req) != INIT_HTTP_DONE) return INIT_HTTP_BAD;
    } else if (str_ieq(name, "Transfer-Encoding")) {
      if (has_te || !str_ieq(value, "chunked"))
        return bad(req, 501, "Only Transfer-Encoding: chunked is supported.");
      has_te = true;
    } else if (str_ieq(name, "Connection")) {
      parse_connection(value, &conn_close, &conn_keep);
    } else if (str_ieq(name, "Expect")) {
      if (str_ieq(value, "100-continue")) req->expect_continue = true;
    } else if (str_ieq(name, "Lambda-Runtime-Function-Error-Type")) {
      req->error_type = value;
    }
  }
  if (has_length && has_te)
    return bad(req, 400, "Content-Length and Transfer-Encoding cannot both be given.");
  req->chunked = has_te;
  req->keep_alive = req->version_minor >= 1 ? !conn_close : (conn_keep && !conn_close);
  if (has_length && req->content_length > max_body)
    return bad(req, 413, "The request body is over the limit.");
  return INIT_HTTP_DONE;
}

enum {
  CH_SIZE = 0, /* hex digits of a chunk size */
  CH_EXT,      /* a chunk extension, up to the line's end */
  CH_SIZE_LF,  /* CR seen after the size line, LF expected */
  CH_DATA,     /* remaining bytes of chunk data */
  CH_DATA_CR,  /* CRLF after the data */
  CH_DATA_LF,
  CH_TRAILER, /* the start of a trailer line, or the final empty line */
  CH_TRAILER_LINE,
  CH_TRAILER_LF, /* CR seen on the final empty line, LF expected */
  CH_DONE,
};

/* A size line or a chunk extension longer than this is an attack, not a runtime. */
#define CH_MAX_LINE 4096

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

init_http_status init_http_chunked_feed(init_http_chunked *c, const char *buf, size_t len,
                                        uint64_t max_body, init_buf *out, size_t *consumed,
                                        int *bad_status) {
  size_t i = 0;
  init_http_status st = INIT_HTTP_INCOMPLETE;
#define CH_BAD(code)    \
  do {                  \
    *bad_status = code; \
    st = INIT_HTTP_BAD; \
    goto done;          \
  } while (0)
  while (i < len && c->state != CH_DONE) {
    unsigned char ch = (unsigned char)buf[i];
    switch (c->state) {
      case CH_SIZE: {
        int h = hexval(ch);
        if (h >= 0) {
          if (++c->digits > 15) CH_BAD(413); /* over 2^60: no body is that large */
          c->remaining = c->remaining * 16 + (uint64_t)h;
          i++;
          break;
        }
        if (c->digits == 0) CH_BAD(400);
        if (ch == ';' || ch == ' ' || ch == '\t') {
          c->state = CH_EXT;
          c->line_len = 0;
        } else if (ch == '\r') {
          c->state = CH_SIZE_LF;
        } else if (ch == '\n') {
          c->state = CH_SIZE_LF;
          continue; /* handled as the LF below, without consuming twice */
        } else {
          CH_BAD(400);
        }
        i++;
        break;
      }
      case CH_EXT:
        if (ch == '\n') {
          c->state = CH_SIZE_LF;
          continue;
        }
        if (ch == '\r')
          c->state = CH_SIZE_LF;
        else if (++c->line_len > CH_MAX_LINE)
          CH_BAD(400);
        i++;
        break;
      case CH_SIZE_LF:
        if (ch != '\n') CH_BAD(400);
        i++;
        c->digits = 0;
        if (c->remaining == 0) {
          c->state = CH_TRAILER;
        } else {
          if (c->remaining > max_body - c->total) CH_BAD(413);
          c->state = CH_DATA;
        }
        break;
      case CH_DATA: {
        size_t n = len - i;
        if (n > c->remaining) n = (size_t)c->remaining;
        init_buf_append(out, buf + i, n);
        i += n;
        c->remaining -= n;
        c->total += n;
        if (c->remaining == 0) c->state = CH_DATA_CR;
        break;
      }
      case CH_DATA_CR:
        if (ch == '\n') {
          c->state = CH_SIZE;
          i++;
          break;
        }
        if (ch != '\r') CH_BAD(400);
        c->state = CH_DATA_LF;
        i++;
        break;
      case CH_DATA_LF:
        if (ch != '\n') CH_BAD(400);
        c->state = CH_SIZE;
        i++;
        break;
      case CH_TRAILER:
        if (ch == '\n') {
          c->state = CH_DONE;
        } else if (ch == '\r') {
          c->state = CH_TRAILER_LF;
        } else {
          c->state = CH_TRAILER_LINE;
          if (++c->trailer_len > INIT_HTTP_MAX_HEAD) CH_BAD(431);
        }
        i++;
        break;
      case CH_TRAILER_LINE:
        if (ch == '\n')
          c->state = CH_TRAILER;
        else if (++c->trailer_len > INIT_HTTP_MAX_HEAD)
          CH_BAD(431);
        i++;
        break;
      case CH_TRAILER_LF:
        if (ch != '\n') CH_BAD(400);
        c->state = CH_DONE;
        i++;
        break;
    }
  }
  if (c->state == CH_DONE) st = INIT_HTTP_DONE;
done:
#undef CH_BAD
  *consumed = i;
  return st;
}

#define RUNTIME_PREFIX "/2018-06-01/runtime/"
#define INVOCATION_PREFIX RUNTIME_PREFIX "invocation/"

init_http_route init_http_route_target(init_http_str target, init_http_str *request_id) {
  *request_id = (init_http_str){0};
  const char *q = memchr(target.p, '?', target.n);
  init_http_str path = {target.p, q ? (size_t)(q - target.p) : target.n};
  if (str_eq(path, RUNTIME_PREFIX "init/error")) return INIT_HTTP_ROUTE_INIT_ERROR;
  if (str_eq(path, INVOCATION_PREFIX "next")) return INIT_HTTP_ROUTE_NEXT;
  size_t plen = strlen(INVOCATION_PREFIX);
  if (path.n <= plen || strncmp(path.p, INVOCATION_PREFIX, plen) != 0)
    return INIT_HTTP_ROUTE_NOT_FOUND;
  init_http_str rest = {path.p + plen, path.n - plen};
  const char *slash = memchr(rest.p, '/', rest.n);
  if (slash == NULL || slash == rest.p) return INIT_HTTP_ROUTE_NOT_FOUND;
  init_http_str id = {rest.p, (size_t)(slash - rest.p)};
  init_http_str action = {slash + 1, rest.n - id.n - 1};
  init_http_route route = INIT_HTTP_ROUTE_NOT_FOUND;
  if (str_eq(action, "response")) route = INIT_HTTP_ROUTE_RESPONSE;
  if (str_eq(action, "error")) route = INIT_HTTP_ROUTE_ERROR;
  if (route != INIT_HTTP_ROUTE_NOT_FOUND) *request_id = id;
  return route;
}

const char *init_http_route_method(init_http_route route) {
  return route == INIT_HTTP_ROUTE_NEXT ? "GET" : "POST";
}

const char *init_http_reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 202:
      return "Accepted";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Payload Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Internal Server Error";
  }
}
