/* A Lambda custom runtime written in C against the Runtime API, as test_guest_init's function.
 * It talks raw HTTP/1.1 over one keep-alive connection, as small runtimes do, and behaves by
 * payload:
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
#include <unistd.h>

static char host[64];
static int port;

static int connect_api(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  inet_pton(AF_INET, host, &sin.sin_addr);
  if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
    perror("echo_runtime: connect");
    exit(1);
  }
  /* A request goes out in two writes (head, body): without this, Nagle holds the body until
   * the head's delayed ACK, 40 ms later. libcurl-based runtimes set it too. */
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

static void write_all(int fd, const void *p, size_t n) {
  const char *s = p;
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w <= 0) {
      perror("echo_runtime: write");
      exit(1);
    }
    s += w;
    n -= (size_t)w;
  }
}

typedef struct response {
  int status;
  char head[8192];
  char *body;
  size_t body_len;
} response;

/* Reads one response: the head up to its empty line, then Content-Length bytes. */
static void read_response(int fd, response *r) {
  size_t n = 0;
  while (n < sizeof(r->head) - 1) {
    ssize_t k = read(fd, r->head + n, 1);
    if (k <= 0) {
      fprintf(stderr, "echo_runtime: the Runtime API hung up\n");
      exit(1);
    }
    n++;
    if (n >= 4 && memcmp(r->head + n - 4, "\r\n\r\n", 4) == 0) break;
  }
  r->head[n] = '\0';
  r->status = atoi(r->head + 9);
  const char *cl = strcasestr(r->head, "\r\nContent-Length:");
  r->body_len = cl ? strtoul(cl + 17, NULL, 10) : 0;
  r->body = malloc(r->body_len + 1);
  for (size_t got = 0; got < r->body_len;) {
    ssize_t k = read(fd, r->body + got, r->body_len - got);
    if (k <= 0) exit(1);
    got += (size_t)k;
  }
  r->body[r->body_len] = '\0';
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
static int post(int fd, const char *path, const char *extra, const char *body, size_t len) {
  char head[1024];
  int expect = len > 65536;
  int n = snprintf(head, sizeof(head),
                   "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %zu\r\n%s%s\r\n", path, host,
                   len, expect ? "Expect: 100-continue\r\n" : "", extra ? extra : "");
  write_all(fd, head, (size_t)n);
  response r;
  if (expect) {
    read_response(fd, &r);
    free(r.body);
    if (r.status != 100) return r.status;
  }
  write_all(fd, body, len);
  read_response(fd, &r);
  free(r.body);
  return r.status;
}

static int post_chunked(int fd, const char *path, const char *body) {
  char buf[4096];
  int n =
      snprintf(buf, sizeof(buf),
               "POST %s HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n", path, host);
  write_all(fd, buf, (size_t)n);
  /* One chunk per byte pair, with an extension on the first, to exercise the decoder. */
  size_t len = strlen(body);
  for (size_t i = 0; i < len; i += 2) {
    size_t k = len - i < 2 ? len - i : 2;
    n = snprintf(buf, sizeof(buf), "%zx%s\r\n%.*s\r\n", k, i == 0 ? ";ext=1" : "", (int)k,
                 body + i);
    write_all(fd, buf, (size_t)n);
  }
  write_all(fd, "0\r\nX-Trailer: 1\r\n\r\n", 19);
  response r;
  read_response(fd, &r);
  free(r.body);
  return r.status;
}

static int get_status(int fd, const char *path) {
  char buf[512];
  int n = snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
  write_all(fd, buf, (size_t)n);
  response r;
  read_response(fd, &r);
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
  int fd = connect_api();
  const char *init = getenv("ECHO_RUNTIME_INIT");
  if (init && strcmp(init, "error") == 0) {
    const char *doc = "{\"errorMessage\":\"init failed on purpose\",\"errorType\":\"Echo.Init\"}";
    post(fd, "/2018-06-01/runtime/init/error",
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
    write_all(fd, out, (size_t)n);
    read_response(fd, &ev);
    if (ev.status != 200) return 1;
    header(&ev, "Lambda-Runtime-Aws-Request-Id", id, sizeof(id));
    fprintf(stderr, "got %.40s\n", ev.body);
    snprintf(path, sizeof(path), "/2018-06-01/runtime/invocation/%s/response", id);
    const char *p = ev.body;
    if (strcmp(p, "fail") == 0) {
      const char *doc = "{\"errorMessage\":\"failed on purpose\",\"errorType\":\"Ignored\"}";
      snprintf(path, sizeof(path), "/2018-06-01/runtime/invocation/%s/error", id);
      post(fd, path, "Lambda-Runtime-Function-Error-Type: Echo.Failed\r\n", doc, strlen(doc));
    } else if (strcmp(p, "fail-body") == 0) {
      const char *doc =
          "{\"errorType\":\"Echo.BodyType\",\"errorMessage\":\"from the body\\nline 2\"}";
      snprintf(path, sizeof(path), "/2018-06-01/runtime/invocation/%s/error", id);
      post(fd, path, NULL, doc, strlen(doc));
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
      post(fd, path, NULL, out, o);
    } else if (strcmp(p, "headers") == 0) {
      char deadline[64], arn[256], trace[256], cc[256], ci[256];
      header(&ev, "Lambda-Runtime-Deadline-Ms", deadline, sizeof(deadline));
      header(&ev, "Lambda-Runtime-Invoked-Function-Arn", arn, sizeof(arn));
      header(&ev, "Lambda-Runtime-Trace-Id", trace, sizeof(trace));
      header(&ev, "Lambda-Runtime-Client-Context", cc, sizeof(cc));
      header(&ev, "Lambda-Runtime-Cognito-Identity", ci, sizeof(ci));
      n = snprintf(out, sizeof(out), "id=%s;deadline=%s;arn=%s;trace=%s;cc=%s;ci=%s", id, deadline,
                   arn, trace, cc, ci);
      post(fd, path, NULL, out, (size_t)n);
    } else if (strcmp(p, "probe") == 0) {
      int fd2 = connect_api();
      int wrong = post(fd2, "/2018-06-01/runtime/invocation/not-the-id/response", NULL, "x", 1);
      int unknown = get_status(fd2, "/2018-06-01/nope");
      int method = get_status(fd2, "/2018-06-01/runtime/init/error");
      int late_init = post(fd2, "/2018-06-01/runtime/init/error", NULL, "{}", 2);
      close(fd2);
      n = snprintf(out, sizeof(out), "probe:%d,%d,%d,%d", wrong, unknown, method, late_init);
      post(fd, path, NULL, out, (size_t)n);
    } else if (strncmp(p, "chunked:", 8) == 0) {
      post_chunked(fd, path, p + 8);
    } else if (strncmp(p, "big:", 4) == 0) {
      size_t len = strtoul(p + 4, NULL, 10);
      char *big = malloc(len);
      for (size_t i = 0; i < len; i++) big[i] = (char)('a' + i % 26);
      int st = post(fd, path, NULL, big, len);
      free(big);
      if (st == 413) {
        fprintf(stderr, "response refused with 413\n");
        close(fd); /* the server closes after a 413 */
        fd = connect_api();
      }
    } else {
      printf("stdout of invocation %ld\n", count);
      size_t cap = ev.body_len + 32;
      char *echo = malloc(cap);
      n = snprintf(echo, cap, "%s #%ld", p, count);
      post(fd, path, NULL, echo, (size_t)n);
      free(echo);
    }
    free(ev.body);
  }
}
