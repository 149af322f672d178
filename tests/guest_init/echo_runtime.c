/* A Lambda custom runtime written in C against the Runtime API, as test_guest_init's function.
 * It talks raw HTTP/1.1 over one keep-alive connection, as small runtimes do: buffered reads
 * and a request's head and body in one writev, as libcurl or an HTTP library would (a runtime
 * reading its responses a byte per read() would spend more time in syscalls than the whole
 * platform does on a warm invocation, which bench/worker measures). It behaves by payload:
 *   "fail"        posts /error with a Lambda-Runtime-Function-Error-Type header
 *   "fail-body"   posts /error with the type only in the JSON document
 *   "exit"        exits with status 3
 *   "sleep"       sleeps past any deadline
 *   "env"         answers with some of its environment
 *   "headers"     answers with the /next headers it got
 *   "probe"       makes bad calls on a second connection, answers with their status codes
 *   "chunked:X"   answers "X" in a chunked body
 *   "big:N"       answers N bytes (with Expect: 100-continue when over 64 KiB)
 *   anything else answers "<payload> #<count>", count kept in memory across invocations.
 * At start, ECHO_RUNTIME_INIT=error posts /init/error, =exit exits 2, =hang never calls /next;
 * ECHO_RUNTIME_IGNORE_TERM=1 ignores SIGTERM. Output: "echo runtime starting" at start and
 * "got <payload>" per event on stderr. Any Runtime API failure ends the process (status 1). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static char host[64];
static int port;

/* One keep-alive connection to the Runtime API and what was read from it but not used yet (a
 * response is parsed out of buf; whatever follows it stays for the next one). */
typedef struct api_conn {
  int fd;
  size_t start, end; /* unread bytes: buf[start..end) */
  char buf[16384];
} api_conn;

static void connect_api(api_conn *c) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  inet_pton(AF_INET, host, &sin.sin_addr);
  if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
    perror("echo_runtime: connect");
    exit(1);
  }
  /* A chunked request goes out in several writes: without this, Nagle holds each one until the
   * previous one's delayed ACK, 40 ms later. libcurl-based runtimes set it too. */
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  c->fd = fd;
  c->start = c->end = 0;
}

/* Writes the n buffers of iov whole. */
static void write_all(api_conn *c, struct iovec *iov, int n) {
  while (n > 0) {
    ssize_t w = writev(c->fd, iov, n);
    if (w <= 0) {
      perror("echo_runtime: write");
      exit(1);
    }
    for (; n > 0 && (size_t)w >= iov->iov_len; iov++, n--) w -= (ssize_t)iov->iov_len;
    if (n > 0) {
      iov->iov_base = (char *)iov->iov_base + w;
      iov->iov_len -= (size_t)w;
    }
  }
}

static void write_str(api_conn *c, const char *s, size_t n) {
  struct iovec iov = {.iov_base = (void *)s, .iov_len = n};
  write_all(c, &iov, 1);
}

/* Reads more into c->buf (moving the unread bytes to its start when it is full). */
static void fill(api_conn *c) {
  if (c->end == sizeof(c->buf)) {
    memmove(c->buf, c->buf + c->start, c->end - c->start);
    c->end -= c->start;
    c->start = 0;
  }
  ssize_t k = c->end < sizeof(c->buf) ? read(c->fd, c->buf + c->end, sizeof(c->buf) - c->end) : 0;
  if (k <= 0) {
    fprintf(stderr, "echo_runtime: the Runtime API hung up\n");
    exit(1);
  }
  c->end += (size_t)k;
}

typedef struct response {
  int status;
  char head[8192];
  char *body;
  size_t body_len;
} response;

/* Reads one response: the head up to its empty line, then Content-Length bytes. */
static void read_response(api_conn *c, response *r) {
  const char *eoh;
  while ((eoh = memmem(c->buf + c->start, c->end - c->start, "\r\n\r\n", 4)) == NULL) {
    if (c->end - c->start >= sizeof(r->head) - 1) {
      fprintf(stderr, "echo_runtime: a response head over %zu bytes\n", sizeof(r->head) - 1);
      exit(1);
    }
    fill(c);
  }
  size_t n = (size_t)(eoh + 4 - (c->buf + c->start));
  if (n >= sizeof(r->head)) exit(1);
  memcpy(r->head, c->buf + c->start, n);
  r->head[n] = '\0';
  c->start += n;
  r->status = atoi(r->head + 9);
  const char *cl = strcasestr(r->head, "\r\nContent-Length:");
  r->body_len = cl ? strtoul(cl + 17, NULL, 10) : 0;
  r->body = malloc(r->body_len + 1);
  size_t got = c->end - c->start < r->body_len ? c->end - c->start : r->body_len;
  memcpy(r->body, c->buf + c->start, got);
  c->start += got;
  for (; got < r->body_len;) {
    ssize_t k = read(c->fd, r->body + got, r->body_len - got);
    if (k <= 0) exit(1);
    got += (size_t)k;
  }
  r->body[r->body_len] = '\0';
  if (c->start == c->end) c->start = c->end = 0;
}

/* A header's value from a response head, or "". */
static void header(const response *r, const char *name, char *out, size_t size) {
  char key[128];
  snprintf(key, sizeof(key), "\r\n%s:", name);
  const char *p = strcasestr(r->head, key);
  out[0] = '\0';
  if (p == NULL) return;
  p += strlen(key);
  while (*p == ' ') p++;
  size_t n = strcspn(p, "\r");
  if (n >= size) n = size - 1;
  memcpy(out, p, n);
  out[n] = '\0';
}

/* POSTs body to path; returns the status. extra: more header lines, each ending in \r\n. */
static int post(api_conn *c, const char *path, const char *extra, const char *body, size_t len) {
  char head[1024];
  int expect = len > 65536;
  int n = snprintf(head, sizeof(head),
                   "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %zu\r\n%s%s\r\n", path, host,
                   len, expect ? "Expect: 100-continue\r\n" : "", extra ? extra : "");
  response r;
  if (expect) {
    write_str(c, head, (size_t)n);
    read_response(c, &r);
    free(r.body);
    if (r.status != 100) return r.status;
    write_str(c, body, len);
  } else {
    struct iovec iov[2] = {{.iov_base = head, .iov_len = (size_t)n},
                           {.iov_base = (void *)body, .iov_len = len}};
    write_all(c, iov, 2);
  }
  read_response(c, &r);
  free(r.body);
  return r.status;
}

static int post_chunked(api_conn *c, const char *path, const char *body) {
  char buf[4096];
  int n =
      snprintf(buf, sizeof(buf),
               "POST %s HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n", path, host);
  write_str(c, buf, (size_t)n);
  /* One chunk per byte pair, with an extension on the first, to exercise the decoder. */
  size_t len = strlen(body);
  for (size_t i = 0; i < len; i += 2) {
    size_t k = len - i < 2 ? len - i : 2;
    n = snprintf(buf, sizeof(buf), "%zx%s\r\n%.*s\r\n", k, i == 0 ? ";ext=1" : "", (int)k,
                 body + i);
    write_str(c, buf, (size_t)n);
  }
  write_str(c, "0\r\nX-Trailer: 1\r\n\r\n", 19);
  response r;
  read_response(c, &r);
  free(r.body);
  return r.status;
}

static int get_status(api_conn *c, const char *path) {
  char buf[512];
  int n = snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
  write_str(c, buf, (size_t)n);
  response r;
  read_response(c, &r);
  free(r.body);
  return r.status;
}

int main(void) {
  const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
  if (api == NULL || sscanf(api, "%63[^:]:%d", host, &port) != 2) {
    fprintf(stderr, "echo_runtime: AWS_LAMBDA_RUNTIME_API is not set\n");
    return 1;
  }
  setvbuf(stdout, NULL, _IONBF, 0);
  fprintf(stderr, "echo runtime starting\n");
  const char *ignore = getenv("ECHO_RUNTIME_IGNORE_TERM");
  if (ignore && strcmp(ignore, "1") == 0) signal(SIGTERM, SIG_IGN);
  static api_conn conn, conn2; /* 16 KiB buffers: not on the stack */
  api_conn *c = &conn;
  connect_api(c);
  const char *init = getenv("ECHO_RUNTIME_INIT");
  if (init && strcmp(init, "error") == 0) {
    const char *doc = "{\"errorMessage\":\"init failed on purpose\",\"errorType\":\"Echo.Init\"}";
    post(c, "/2018-06-01/runtime/init/error",
         "Lambda-Runtime-Function-Error-Type: Echo.InitFailed\r\n", doc, strlen(doc));
    pause();
  }
  if (init && strcmp(init, "exit") == 0) {
    fprintf(stderr, "giving up during init\n");
    return 2;
  }
  if (init && strcmp(init, "hang") == 0) pause();

  char path[512], id[128], out[8192];
  for (long count = 1;; count++) {
    response ev;
    int n = snprintf(out, sizeof(out),
                     "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: %s\r\n\r\n", host);
    write_str(c, out, (size_t)n);
    read_response(c, &ev);
    if (ev.status != 200) return 1;
    header(&ev, "Lambda-Runtime-Aws-Request-Id", id, sizeof(id));
    fprintf(stderr, "got %.40s\n", ev.body);
    snprintf(path, sizeof(path), "/2018-06-01/runtime/invocation/%s/response", id);
    const char *p = ev.body;
    if (strcmp(p, "fail") == 0) {
      const char *doc = "{\"errorMessage\":\"failed on purpose\",\"errorType\":\"Ignored\"}";
      snprintf(path, sizeof(path), "/2018-06-01/runtime/invocation/%s/error", id);
      post(c, path, "Lambda-Runtime-Function-Error-Type: Echo.Failed\r\n", doc, strlen(doc));
    } else if (strcmp(p, "fail-body") == 0) {
      const char *doc =
          "{\"errorType\":\"Echo.BodyType\",\"errorMessage\":\"from the body\\nline 2\"}";
      snprintf(path, sizeof(path), "/2018-06-01/runtime/invocation/%s/error", id);
      post(c, path, NULL, doc, strlen(doc));
    } else if (strcmp(p, "exit") == 0) {
      fprintf(stderr, "exiting with 3\n");
      free(ev.body); /* or LeakSanitizer turns the status into 1 in sanitizer builds */
      return 3;
    } else if (strcmp(p, "sleep") == 0) {
      sleep(60);
    } else if (strcmp(p, "env") == 0) {
      static const char *const names[] = {"AWS_LAMBDA_RUNTIME_API",
                                          "_HANDLER",
                                          "LAMBDA_TASK_ROOT",
                                          "AWS_LAMBDA_FUNCTION_NAME",
                                          "AWS_LAMBDA_FUNCTION_VERSION",
                                          "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                                          "TZ",
                                          "MY_VAR",
                                          "AWS_REGION",
                                          "LANG"};
      size_t o = 0;
      for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = getenv(names[i]);
        o += (size_t)snprintf(out + o, sizeof(out) - o, "%s=%s;", names[i], v ? v : "(unset)");
      }
      char cwd[256];
      o += (size_t)snprintf(out + o, sizeof(out) - o, "cwd=%s",
                            getcwd(cwd, sizeof(cwd)) ? cwd : "?");
      post(c, path, NULL, out, o);
    } else if (strcmp(p, "headers") == 0) {
      char deadline[64], arn[256], trace[256], cc[256], ci[256];
      header(&ev, "Lambda-Runtime-Deadline-Ms", deadline, sizeof(deadline));
      header(&ev, "Lambda-Runtime-Invoked-Function-Arn", arn, sizeof(arn));
      header(&ev, "Lambda-Runtime-Trace-Id", trace, sizeof(trace));
      header(&ev, "Lambda-Runtime-Client-Context", cc, sizeof(cc));
      header(&ev, "Lambda-Runtime-Cognito-Identity", ci, sizeof(ci));
      n = snprintf(out, sizeof(out), "id=%s;deadline=%s;arn=%s;trace=%s;cc=%s;ci=%s", id, deadline,
                   arn, trace, cc, ci);
      post(c, path, NULL, out, (size_t)n);
    } else if (strcmp(p, "probe") == 0) {
      api_conn *c2 = &conn2;
      connect_api(c2);
      int wrong = post(c2, "/2018-06-01/runtime/invocation/not-the-id/response", NULL, "x", 1);
      int unknown = get_status(c2, "/2018-06-01/nope");
      int method = get_status(c2, "/2018-06-01/runtime/init/error");
      int late_init = post(c2, "/2018-06-01/runtime/init/error", NULL, "{}", 2);
      close(c2->fd);
      n = snprintf(out, sizeof(out), "probe:%d,%d,%d,%d", wrong, unknown, method, late_init);
      post(c, path, NULL, out, (size_t)n);
    } else if (strncmp(p, "chunked:", 8) == 0) {
      post_chunked(c, path, p + 8);
    } else if (strncmp(p, "big:", 4) == 0) {
      size_t len = strtoul(p + 4, NULL, 10);
      char *big = malloc(len);
      for (size_t i = 0; i < len; i++) big[i] = (char)('a' + i % 26);
      int st = post(c, path, NULL, big, len);
      free(big);
      if (st == 413) {
        fprintf(stderr, "response refused with 413\n");
        close(c->fd); /* the server closes after a 413 */
        connect_api(c);
      }
    } else {
      printf("stdout of invocation %ld\n", count);
      size_t cap = ev.body_len + 32;
      char *echo = malloc(cap);
      n = snprintf(echo, cap, "%s #%ld", p, count);
      post(c, path, NULL, echo, (size_t)n);
      free(echo);
    }
    free(ev.body);
  }
}
