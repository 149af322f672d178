/*
 * guest-boot-probe: starts a QEMU command, connects to the host side of the guest's control
 * channel (a UNIX socket QEMU listens on), and waits for a marker line from the guest.
 *
 *   guest-boot-probe [-t SECONDS] [-m MARKER] [-r MS] SOCKET -- QEMU-ARGV...
 *
 * Prints "# boot N.N ms" (QEMU start to the marker) and the marker line on stdout. Then, by
 * default, waits for QEMU to exit by itself (the guest powers off) within another timeout and
 * fails if it does not or exits with a status other than 0. With -r MS it instead waits MS
 * milliseconds after the marker, prints the QEMU process's resident memory as "# rss N KiB (...)"
 * and stops QEMU (SIGTERM) itself: an idle booted guest.
 *
 * Exit status: 0 on success, 1 on a timeout or a QEMU failure, 2 on bad usage. QEMU is never
 * left running. Used by tests/guest_boot/guest_boot.sh and bench/guest.sh.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void usage(void) {
  fprintf(stderr,
          "usage: guest-boot-probe [-t SECONDS] [-m MARKER] [-r MS] SOCKET -- QEMU-ARGV...\n");
  exit(2);
}

/* Kills and reaps QEMU; returns its wait status. */
static int stop_qemu(pid_t pid, int sig) {
  int status = 0;
  kill(pid, sig);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  return status;
}

/* Waits up to deadline (now_ms() clock) for pid; returns 1 and fills *status if it exited. */
static int wait_until(pid_t pid, double deadline, int *status) {
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return 1;
    if (r < 0 && errno != EINTR) return 1;
    if (now_ms() >= deadline) return 0;
    usleep(2000);
  }
}

/* One "Name: N kB" field of /proc/PID/status, or -1. */
static long status_kib(pid_t pid, const char *field) {
  char path[64], line[256], name[64];
  long kib = -1, v;
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  while (kib < 0 && fgets(line, sizeof(line), f))
    if (sscanf(line, "%63[^:]: %ld kB", name, &v) == 2 && strcmp(name, field) == 0) kib = v;
  fclose(f);
  return kib;
}

int main(int argc, char **argv) {
  double timeout_s = 10;
  const char *marker = "BRUME-TEST-INIT READY";
  long rss_after_ms = -1;
  int opt;
  while ((opt = getopt(argc, argv, "+t:m:r:")) != -1) {
    switch (opt) {
      case 't':
        timeout_s = atof(optarg);
        break;
      case 'm':
        marker = optarg;
        break;
      case 'r':
        rss_after_ms = atol(optarg);
        break;
      default:
        usage();
    }
  }
  if (optind + 2 > argc || strcmp(argv[optind + 1], "--") != 0 || optind + 2 >= argc) usage();
  const char *sock_path = argv[optind];
  char **qemu_argv = &argv[optind + 2];

  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(sock_path) >= sizeof(sa.sun_path)) {
    fprintf(stderr, "guest-boot-probe: socket path too long: %s\n", sock_path);
    return 2;
  }
  strcpy(sa.sun_path, sock_path);
  /* A stale socket from an earlier run would let us connect to nothing. */
  unlink(sock_path);

  double t0 = now_ms();
  double deadline = t0 + timeout_s * 1e3;
  pid_t pid = fork();
  if (pid < 0) {
    perror("guest-boot-probe: fork");
    return 1;
  }
  if (pid == 0) {
    execvp(qemu_argv[0], qemu_argv);
    fprintf(stderr, "guest-boot-probe: cannot run %s: %s\n", qemu_argv[0], strerror(errno));
    _exit(127);
  }

  /* QEMU creates the listening socket before the guest starts; poll for it. */
  int fd = -1, status = 0;
  while (fd < 0) {
    if (wait_until(pid, now_ms(), &status)) {
      fprintf(stderr, "guest-boot-probe: QEMU exited before the channel opened (status %d)\n",
              status);
      return 1;
    }
    if (now_ms() >= deadline) {
      fprintf(stderr, "guest-boot-probe: QEMU's socket %s never accepted a connection\n",
              sock_path);
      stop_qemu(pid, SIGKILL);
      return 1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
      close(fd);
      fd = -1;
      usleep(1000);
    }
  }

  char buf[4096];
  size_t used = 0;
  char *line = NULL;
  while (!line) {
    int left = (int)(deadline - now_ms());
    if (left <= 0) break;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, left < 100 ? left : 100);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) {
      if (wait_until(pid, now_ms(), &status)) break;
      continue;
    }
    ssize_t n = read(fd, buf + used, sizeof(buf) - 1 - used);
    if (n <= 0) break;
    used += (size_t)n;
    buf[used] = '\0';
    char *m = strstr(buf, marker);
    if (m && strchr(m, '\n')) {
      *strchr(m, '\n') = '\0';
      line = m;
    } else if (used == sizeof(buf) - 1) {
      used = 0; /* Noise without a marker: drop it and keep reading. */
    }
  }
  double t1 = now_ms();
  close(fd);
  if (!line) {
    fprintf(stderr, "guest-boot-probe: no \"%s\" line from the guest within %.1f s\n", marker,
            timeout_s);
    stop_qemu(pid, SIGKILL);
    return 1;
  }
  printf("# boot %.1f ms\n%s\n", t1 - t0, line);
  fflush(stdout);

  if (rss_after_ms >= 0) {
    usleep((useconds_t)rss_after_ms * 1000);
    /* RssAnon is what each guest costs; RssFile is mostly QEMU's shared libraries. */
    printf("# rss %ld KiB (anon %ld KiB, file %ld KiB)\n", status_kib(pid, "VmRSS"),
           status_kib(pid, "RssAnon"), status_kib(pid, "RssFile"));
    stop_qemu(pid, SIGTERM);
    return 0;
  }
  if (!wait_until(pid, t1 + timeout_s * 1e3, &status)) {
    fprintf(stderr, "guest-boot-probe: QEMU still running %.1f s after the marker\n", timeout_s);
    stop_qemu(pid, SIGKILL);
    return 1;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "guest-boot-probe: QEMU ended with status 0x%x\n", status);
    return 1;
  }
  printf("# exit %.1f ms\n", now_ms() - t0);
  return 0;
}
