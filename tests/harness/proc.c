#include "proc.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

long long brume_test_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* True when every thread of pid shows state T (stopped) in /proc. */
static bool all_threads_stopped(pid_t pid) {
  char path[300];
  snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
  DIR *d = opendir(path);
  if (d == NULL) return false;
  bool stopped = true;
  for (struct dirent *e; stopped && (e = readdir(d)) != NULL;) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", (int)pid, e->d_name);
    /* /proc files show size 0: read, do not size. */
    char stat[512] = "";
    FILE *f = fopen(path, "re");
    if (f == NULL) continue; /* a thread that just ended */
    size_t n = fread(stat, 1, sizeof(stat) - 1, f);
    fclose(f);
    stat[n] = '\0';
    const char *p = strrchr(stat, ')');
    stopped = p && p[1] == ' ' && p[2] == 'T';
  }
  closedir(d);
  return stopped;
}

int brume_test_sigstop(pid_t pid, int timeout_ms) {
  if (kill(pid, SIGSTOP) < 0) return -1;
  for (long long end = brume_test_now_ms() + timeout_ms; brume_test_now_ms() < end; usleep(1000))
    if (all_threads_stopped(pid)) return 0;
  return -1;
}

/* The lowest port the kernel hands out to outgoing connections: a port picked above it can be
 * taken by some daemon's connect() between the test picking it and the server binding it. */
static int ephemeral_low(void) {
  int low = 32768, high = 0;
  FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  if (f) {
    if (fscanf(f, "%d %d", &low, &high) != 2) low = 32768;
    fclose(f);
  }
  return low;
}

static bool port_bindable(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                          .sin_port = htons((uint16_t)port)};
  bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
  close(fd);
  return ok;
}

int brume_test_free_port(void) {
  /* Random ports below the ephemeral range, never the same one twice in one test process (the
   * servers given earlier ports may not have bound them yet). */
  enum { FIRST = 10000, MAX_GIVEN = 256 };
  static int given[MAX_GIVEN];
  static int n_given;
  static unsigned seed;
  int span = ephemeral_low() - FIRST;
  if (span < 1000) return -1;
  if (!seed) seed = (unsigned)getpid() ^ (unsigned)brume_test_now_ms();
  for (int attempt = 0; attempt < 1000; attempt++) {
    int port = FIRST + (int)(rand_r(&seed) % (unsigned)span);
    bool seen = false;
    for (int i = 0; i < n_given && !seen; i++) seen = given[i] == port;
    if (seen || !port_bindable(port)) continue;
    if (n_given < MAX_GIVEN) given[n_given++] = port;
    return port;
  }
  return -1;
}

pid_t brume_test_spawn_init_host(const char *init_bin, const char *dir, char *sock, char *log) {
  snprintf(sock, 108, "%s/control.sock", dir);
  snprintf(log, 512, "%s/init.log", dir);
  char task[512], listen[64];
  snprintf(task, sizeof(task), "%s/task", dir);
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", brume_test_free_port());
  char *argv[] = {(char *)init_bin, "--channel-socket", sock, "--task-root", task, "--listen",
                  listen,           "--no-system",      NULL};
  return brume_test_spawn(argv, log);
}

pid_t brume_test_spawn(char *const argv[], const char *log_path) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);
  if (log_path) {
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      close(fd);
    }
  }
  execvp(argv[0], argv);
  fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
  _exit(127);
}

int brume_test_stop(pid_t pid, int sig, int timeout_ms) {
  int status = 0;
  if (pid <= 0) return -1;
  kill(pid, sig);
  long long end = brume_test_now_ms() + timeout_ms;
  while (brume_test_now_ms() < end) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return -1;
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return status;
}

int brume_test_wait_port(int port, int timeout_ms) {
  long long end = brume_test_now_ms() + timeout_ms;
  while (brume_test_now_ms() < end) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    if (ok) return 0;
    usleep(20000);
  }
  return -1;
}

char *brume_test_tmpdir(const char *name) {
  const char *base = getenv("TMPDIR");
  char *path = NULL;
  if (asprintf(&path, "%s/brume-%s-XXXXXX", base && *base ? base : "/tmp", name) < 0) abort();
  if (mkdtemp(path) == NULL) abort();
  return path;
}

void brume_test_rmtree(const char *path) {
  pid_t pid = fork();
  if (pid == 0) {
    execlp("rm", "rm", "-rf", "--", path, (char *)NULL);
    _exit(127);
  }
  int st;
  waitpid(pid, &st, 0);
}

int brume_test_http_get(int port, const char *path, char *resp, size_t cap) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || cap == 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  struct timeval tv = {.tv_sec = 1};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int len = -1;
  char req[512];
  int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
  if (n > 0 && (size_t)n < sizeof(req) && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      write(fd, req, (size_t)n) == n) {
    size_t got = 0;
    ssize_t r;
    while (got < cap - 1 && (r = read(fd, resp + got, cap - 1 - got)) > 0) got += (size_t)r;
    resp[got] = '\0';
    len = (int)got;
  }
  close(fd);
  return len;
}
