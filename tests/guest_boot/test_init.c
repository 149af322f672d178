/*
 * A stand-in PID 1 for the guest boot test (tests/guest_boot), used until brume-init exists and
 * kept afterwards because it checks the image alone: kernel, initramfs, console, virtio-serial.
 *
 * It mounts devtmpfs, proc and sysfs, finds the virtio-serial port named "brume.control" through
 * /sys/class/virtio-ports/<vportNpM>/name, writes one line
 *
 *     BRUME-TEST-INIT READY <seconds since boot>
 *
 * to that port and to /dev/console, and powers the machine off. With `brume_test.idle` on the
 * kernel command line it stays up instead (a guest to measure idle host memory and CPU against).
 *
 * It must be linked statically: the initramfs has no dynamic loader.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PORT_NAME "brume.control"
#define MARKER "BRUME-TEST-INIT READY"
/* The host announces port names after the port appears, so the name may lag the device. */
#define PORT_WAIT_MS 10000

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Messages go to /dev/console, which the kernel opened as fds 0-2 from the initramfs node. */
static void say(const char *fmt, ...) {
  char line[256];
  va_list ap;

  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof(line)) n = sizeof(line) - 1;
  if (write(STDOUT_FILENO, line, (size_t)n) < 0) {
    /* Nowhere left to report to. */
  }
}

static void mount_or_say(const char *src, const char *dst, const char *type) {
  mkdir(dst, 0755);
  if (mount(src, dst, type, MS_NOSUID, NULL) < 0 && errno != EBUSY)
    say("test-init: cannot mount %s on %s: %s\n", type, dst, strerror(errno));
}

static int cmdline_has(const char *word) {
  char buf[4096];
  int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  size_t len = strlen(word);
  for (char *p = strstr(buf, word); p; p = strstr(p + 1, word)) {
    int starts = p == buf || p[-1] == ' ';
    int ends = p[len] == '\0' || p[len] == ' ' || p[len] == '\n' || p[len] == '=';
    if (starts && ends) return 1;
  }
  return 0;
}

/* Looks for the port once; fills path ("/dev/vportNpM") and returns 0 when it is there. */
static int find_port(char *path, size_t size) {
  DIR *d = opendir("/sys/class/virtio-ports");
  if (!d) return -1;
  int found = -1;
  struct dirent *e;
  while (found < 0 && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char name_file[320], name[64] = "";
    snprintf(name_file, sizeof(name_file), "/sys/class/virtio-ports/%s/name", e->d_name);
    int fd = open(name_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = read(fd, name, sizeof(name) - 1);
    close(fd);
    if (n <= 0) continue;
    name[n] = '\0';
    name[strcspn(name, "\n")] = '\0';
    if (strcmp(name, PORT_NAME) == 0) {
      snprintf(path, size, "/dev/%s", e->d_name);
      found = 0;
    }
  }
  closedir(d);
  return found;
}

static double seconds_since_boot(void) {
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      say("test-init: write to the port failed: %s\n", n < 0 ? strerror(errno) : "0 bytes");
      return;
    }
    buf += n;
    len -= (size_t)n;
  }
}

int main(void) {
  mount_or_say("devtmpfs", "/dev", "devtmpfs");
  mount_or_say("proc", "/proc", "proc");
  mount_or_say("sysfs", "/sys", "sysfs");

  char port[300];
  int waited_ms = 0;
  while (find_port(port, sizeof(port)) < 0 && waited_ms < PORT_WAIT_MS) {
    usleep(2000);
    waited_ms += 2;
  }

  char line[128];
  int len = snprintf(line, sizeof(line), MARKER " %.3f\n", seconds_since_boot());
  say("%s", line);
  if (waited_ms >= PORT_WAIT_MS) {
    say("test-init: no virtio-serial port named " PORT_NAME "\n");
  } else {
    /* A write blocks until a host client is connected to the port's socket. */
    int fd = open(port, O_RDWR | O_CLOEXEC);
    if (fd < 0)
      say("test-init: cannot open %s: %s\n", port, strerror(errno));
    else {
      write_all(fd, line, (size_t)len);
      close(fd);
    }
  }

  if (cmdline_has("brume_test.idle")) {
    for (;;) pause();
  }
  sync();
  /* A reboot ends QEMU (-no-reboot); the guest has no ACPI to power off with. */
  reboot(RB_AUTOBOOT);
  say("test-init: reboot failed: %s\n", strerror(errno));
  for (;;) pause();
}
