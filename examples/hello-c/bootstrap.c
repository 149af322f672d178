/* hello-c: a Lambda custom runtime written in C, for Brume's RUNTIME_API handler mode.
 *
 * In that mode the function's zip holds an executable named bootstrap. brume-init starts it
 * once, when the sandbox is created, and it runs the loop every custom runtime runs against
 * the Lambda Runtime API (brume-init serves it at the address in AWS_LAMBDA_RUNTIME_API,
 * 127.0.0.1:9001 in a Brume sandbox):
 *
 *   1. GET  /2018-06-01/runtime/invocation/next           waits for the next event: the body is
 *                                                         the event, the header
 *                                                         Lambda-Runtime-Aws-Request-Id its id
 *   2. POST /2018-06-01/runtime/invocation/<id>/response  the answer, or
 *      POST /2018-06-01/runtime/invocation/<id>/error     a function error, as the document
 *                                                         {"errorMessage": ..., "errorType": ...}
 *   3. back to 1, in the same process.
 *
 * Between events the process stays alive (frozen with its microVM when idle), so whatever it
 * keeps in memory survives from one invocation to the next while the sandbox is warm. This one
 * counts its events to show it: {"name": "Brume"} is answered with
 * {"message": "Hello, Brume!", "invocation": 1}, then 2, 3, ... until a cold start begins again
 * at 1. An event that is not a JSON object, or whose "name" is not a string, gets a function
 * error of type HelloC.BadEvent. What it writes on stderr is the function's log.
 *
 * {"sleep_ms": N} (0-900000) makes it wait N ms before it answers, as a slow function would:
 * tests/cluster uses it to hold many invocations open at once for next to no CPU.
 *
 * It speaks plain HTTP/1.1 over one keep-alive TCP connection, with no library, and is linked
 * statically: the guest has no dynamic loader. Any trouble with the Runtime API itself ends the
 * process with status 1; brume-init then reports Runtime.ExitError. */
#define _GNU_SOURCE /* asprintf, memmem */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define API_PREFIX "/2018-06-01/runtime"

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("hello-c: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

/* ---- a minimal HTTP/1.1 client: one connection, Content-Length bodies ---- */

typedef struct api {
  int fd;
  char host[64];
  char buf[16384]; /* bytes read but not used yet: buf[start..end) */
  size_t start, end;
} api;

typedef struct response {
  int status;
  char request_id[128]; /* Lambda-Runtime-Aws-Request-Id, "" when absent */
  char *body;           /* NUL-terminated; the caller frees it */
  size_t body_len;
} response;

static void api_connect(api *a, const char *addr) {
  int port = 0;
  if (addr == NULL || sscanf(addr, "%63[^:]:%d", a->host, &port) != 2)
    die("AWS_LAMBDA_RUNTIME_API is not host:port");
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  if (inet_pton(AF_INET, a->host, &sin.sin_addr) != 1) die("%s is not an IPv4 address", a->host);
  a->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (a->fd < 0 || connect(a->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
    die("cannot connect to the Runtime API at %s", addr);
  int one = 1; /* small requests: send each at once */
  setsockopt(a->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  a->start = a->end = 0;
}

static void send_all(api *a, const char *p, size_t len) {
  while (len > 0) {
    ssize_t w = write(a->fd, p, len);
    if (w <= 0) die("the Runtime API connection failed while sending");
    p += w;
    len -= (size_t)w;
  }
}

/* Reads more bytes from the connection into a->buf. */
static void fill(api *a) {
  if (a->start > 0) { /* make room at the end */
    memmove(a->buf, a->buf + a->start, a->end - a->start);
    a->end -= a->start;
    a->start = 0;
  }
  if (a->end == sizeof(a->buf)) die("a Runtime API response head is too long");
  ssize_t r = read(a->fd, a->buf + a->end, sizeof(a->buf) - a->end);
  if (r <= 0) die("the Runtime API closed the connection");
  a->end += (size_t)r;
}

/* The value of header name in head (the header lines, NUL-terminated), copied into out. */
static bool header(const char *head, const char *name, char *out, size_t size) {
  size_t n = strlen(name);
  for (const char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
    if (strncasecmp(line + 2, name, n) != 0 || line[2 + n] != ':') continue;
    const char *v = line + 3 + n;
    while (*v == ' ') v++;
    snprintf(out, size, "%.*s", (int)strcspn(v, "\r"), v);
    return true;
  }
  return false;
}

/* Sends one request and reads its response. */
static void request(api *a, const char *method, const char *path, const char *extra_headers,
                    const char *body, size_t body_len, response *r) {
  char head[1024];
  int n =
      snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %zu\r\n%s\r\n",
               method, path, a->host, body_len, extra_headers ? extra_headers : "");
  send_all(a, head, (size_t)n);
  send_all(a, body, body_len);

  /* The head: up to the empty line. */
  char *eoh;
  while ((eoh = memmem(a->buf + a->start, a->end - a->start, "\r\n\r\n", 4)) == NULL) fill(a);
  *eoh = '\0';
  const char *h = a->buf + a->start;
  if (sscanf(h, "HTTP/1.%*d %d", &r->status) != 1) die("a malformed Runtime API response");
  char len_text[32] = "0";
  header(h, "Content-Length", len_text, sizeof(len_text));
  r->body_len = strtoul(len_text, NULL, 10);
  r->request_id[0] = '\0';
  header(h, "Lambda-Runtime-Aws-Request-Id", r->request_id, sizeof(r->request_id));
  a->start = (size_t)(eoh + 4 - a->buf);

  /* The body: Content-Length bytes, some of them perhaps read already. */
  r->body = malloc(r->body_len + 1);
  if (r->body == NULL) die("out of memory for a %zu-byte body", r->body_len);
  size_t got = a->end - a->start < r->body_len ? a->end - a->start : r->body_len;
  memcpy(r->body, a->buf + a->start, got);
  a->start += got;
  while (got < r->body_len) {
    ssize_t k = read(a->fd, r->body + got, r->body_len - got);
    if (k <= 0) die("the Runtime API closed the connection");
    got += (size_t)k;
  }
  r->body[r->body_len] = '\0';
}

/* ---- the function: find "name" in the event ---- */

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
  return p;
}

/* Skips the JSON string at p (its opening quote); returns what follows its closing quote, or
 * NULL when it is not a well-formed string (a raw control character, a bad escape). */
static const char *skip_string(const char *p, const char *end) {
  for (p++; p < end; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '"') return p + 1;
    if (c < 0x20) return NULL;
    if (c != '\\') continue;
    if (++p == end) return NULL;
    if (*p == 'u') {
      for (int i = 0; i < 4; i++)
        if (++p == end || !isxdigit((unsigned char)*p)) return NULL;
    } else if (*p == '\0' || !strchr("\"\\/bfnrt", *p)) {
      return NULL;
    }
  }
  return NULL;
}

/* Skips one JSON value (a string, an object or array with whatever is inside, or a number or
 * literal); returns what follows it, or NULL. It finds where a value ends; it does not check
 * everything inside. */
static const char *skip_value(const char *p, const char *end) {
  if (p < end && *p == '"') return skip_string(p, end);
  if (p < end && (*p == '{' || *p == '[')) {
    int depth = 0;
    while (p < end) {
      if (*p == '"') {
        if ((p = skip_string(p, end)) == NULL) return NULL;
        continue;
      }
      if (*p == '{' || *p == '[') depth++;
      if ((*p == '}' || *p == ']') && --depth == 0) return p + 1;
      p++;
    }
    return NULL;
  }
  const char *start = p;
  while (p < end && (isalnum((unsigned char)*p) || (*p && strchr("+-.", *p)))) p++;
  return p > start ? p : NULL;
}

/* Finds the top-level members "name" and "sleep_ms" of the event, a JSON object. *name points at
 * the string's contents inside event, still JSON-escaped (so it can be copied into the answer
 * as it is), or at "world" when the event has no name or an empty one. Returns NULL, or why
 * the event is refused. */
static const char *find_name(const char *event, size_t len, const char **name, size_t *name_len,
                             long *sleep_ms) {
  const char *p = skip_ws(event, event + len), *end = event + len;
  *name = "world";
  *name_len = 5;
  *sleep_ms = 0;
  if (p == end || *p != '{') return "The event is not a JSON object.";
  p = skip_ws(p + 1, end);
  while (p < end && *p != '}') {
    const char *key = p;
    if (*p != '"' || (p = skip_string(p, end)) == NULL) return "The event is not valid JSON.";
    bool is_name = p - key == 6 && memcmp(key, "\"name\"", 6) == 0;
    bool is_sleep = p - key == 10 && memcmp(key, "\"sleep_ms\"", 10) == 0;
    p = skip_ws(p, end);
    if (p == end || *p != ':') return "The event is not valid JSON.";
    const char *value = p = skip_ws(p + 1, end);
    if ((p = skip_value(p, end)) == NULL) return "The event is not valid JSON.";
    if (is_sleep) {
      char *num_end;
      *sleep_ms = strtol(value, &num_end, 10);
      if (num_end != p || *sleep_ms < 0 || *sleep_ms > 900000)
        return "The event's 'sleep_ms' is not a whole number from 0 to 900000.";
    }
    if (is_name) {
      if (*value != '"') return "The event's 'name' is not a string.";
      if (p - value > 2) {
        *name = value + 1;
        *name_len = (size_t)(p - value - 2);
      }
    }
    p = skip_ws(p, end);
    if (p < end && *p == ',')
      p = skip_ws(p + 1, end);
    else if (p == end || *p != '}')
      return "The event is not valid JSON.";
  }
  if (p == end || skip_ws(p + 1, end) != end) return "The event is not valid JSON.";
  return NULL;
}

int main(void) {
  static api a; /* its buffer is not for the stack */
  api_connect(&a, getenv("AWS_LAMBDA_RUNTIME_API"));
  const char *handler = getenv("_HANDLER");
  fprintf(stderr, "hello-c: runtime started (handler %s)\n", handler ? handler : "unset");

  for (unsigned long count = 1;; count++) {
    /* 1. The next event: this call waits until there is one. */
    response ev;
    request(&a, "GET", API_PREFIX "/invocation/next", NULL, "", 0, &ev);
    if (ev.status != 200 || ev.request_id[0] == '\0')
      die("GET /invocation/next answered %d", ev.status);
    fprintf(stderr, "hello-c: invocation %lu, request %s\n", count, ev.request_id);

    /* 2. The answer, or a function error. */
    const char *name;
    size_t name_len;
    long sleep_ms;
    const char *bad = find_name(ev.body, ev.body_len, &name, &name_len, &sleep_ms);
    if (bad == NULL && sleep_ms > 0) {
      struct timespec ts = {.tv_sec = sleep_ms / 1000, .tv_nsec = (sleep_ms % 1000) * 1000000L};
      while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
      }
    }
    char path[256];
    char *answer = NULL;
    int len;
    response done;
    if (bad == NULL) {
      snprintf(path, sizeof(path), API_PREFIX "/invocation/%s/response", ev.request_id);
      len = asprintf(&answer, "{\"message\": \"Hello, %.*s!\", \"invocation\": %lu}", (int)name_len,
                     name, count);
      if (len < 0) die("out of memory");
      request(&a, "POST", path, NULL, answer, (size_t)len, &done);
    } else {
      snprintf(path, sizeof(path), API_PREFIX "/invocation/%s/error", ev.request_id);
      len =
          asprintf(&answer, "{\"errorMessage\": \"%s\", \"errorType\": \"HelloC.BadEvent\"}", bad);
      if (len < 0) die("out of memory");
      request(&a, "POST", path, "Lambda-Runtime-Function-Error-Type: HelloC.BadEvent\r\n", answer,
              (size_t)len, &done);
    }
    /* 202 Accepted. Anything else (400: the request id is not the invocation in flight, 413:
     * the answer is over 6 MB) means this runtime is wrong: say so and carry on. */
    if (done.status != 202) fprintf(stderr, "hello-c: %s answered %d\n", path, done.status);
    free(done.body);
    free(answer);
    free(ev.body);
  }
}
