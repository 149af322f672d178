#include "system.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "log.h"

typedef struct mount_spec {
  const char *source, *target, *type;
  unsigned long flags;
  const char *data;
} mount_spec;

/* In order: /dev first, for the console. /tmp starts small and is resized on GuestInit, when
 * the function's ephemeral storage size is known. */
static const mount_spec boot_mounts[] = {
    {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"},
    {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
    {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
    {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666"},
    {"tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
    {"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=16m"},
};

/* devtmpfs has no /dev/fd and friends; shells and runtimes expect them. */
static const char *const dev_links[][2] = {
    {"/proc/self/fd", "/dev/fd"},
    {"/proc/self/fd/0", "/dev/stdin"},
    {"/proc/self/fd/1", "/dev/stdout"},
    {"/proc/self/fd/2", "/dev/stderr"},
};

static int do_mount(const mount_spec *m, brume_err **err) {
  if (mkdir(m->target, 0755) < 0 && errno != EEXIST)
    return brume_err_set(err, BRUME_INTERNAL, "mkdir %s: %s", m->target, strerror(errno));
  if (mount(m->source, m->target, m->type, m->flags, m->data) < 0) {
    /* The kernel may have mounted devtmpfs itself (CONFIG_DEVTMPFS_MOUNT). */
    if (errno == EBUSY) return 0;
    return brume_err_set(err, BRUME_INTERNAL, "mount %s on %s: %s", m->type, m->target,
                         strerror(errno));
  }
  return 0;
}

/* Without an initramfs /dev/console the kernel starts init with no descriptors at all; the
 * first open() would then become fd 0 and confuse everything after it. */
static void open_console(void) {
  if (fcntl(STDERR_FILENO, F_GETFD) >= 0) return;
  int fd = open("/dev/console", O_RDWR | O_NOCTTY);
  if (fd < 0) fd = open("/dev/null", O_RDWR);
  if (fd < 0) return;
  for (int i = 0; i <= 2; i++)
    if (fcntl(i, F_GETFD) < 0 && fd != i) dup2(fd, i);
  if (fd > 2) close(fd);
}

static int loopback_up(brume_err **err) {
  brume_autoclose int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return brume_err_set(err, BRUME_INTERNAL, "socket: %s", strerror(errno));
  struct ifreq ifr = {0};
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
    return brume_err_set(err, BRUME_INTERNAL, "lo: get flags: %s", strerror(errno));
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
    return brume_err_set(err, BRUME_INTERNAL, "lo: set flags: %s", strerror(errno));
  /* The kernel gives lo 127.0.0.1/8 when it comes up; set it only if that did not happen. */
  memset(&ifr.ifr_addr, 0, sizeof(ifr.ifr_addr));
  if (ioctl(s, SIOCGIFADDR, &ifr) == 0) return 0;
  struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (ioctl(s, SIOCSIFADDR, &ifr) < 0)
    return brume_err_set(err, BRUME_INTERNAL, "lo: set address: %s", strerror(errno));
  return 0;
}

/* Free page reporting (the balloon) hands freed memory back to the host in free blocks of
 * 2^order pages, and only while the zone has 32 such blocks free above its low watermark. Linux
 * 6.1 sets the order to pageblock_order when the balloon registers: 10 (4 MiB) in a kernel
 * without huge pages, so 128 MiB would have to be free, which a 128 MiB guest never is. 5 (128 KiB
 * blocks, 4 MiB free) lets it work, and also catches what boot frees in pieces smaller than
 * 1 MiB (the kernel image's gaps, the initrd: 1.5 MiB less resident per sandbox than with 8);
 * the parameter is read at every reporting pass. Best effort: a kernel without the balloon has
 * no such file. */
static void page_reporting_setup(void) {
  int fd = open("/sys/module/page_reporting/parameters/page_reporting_order", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  if (write(fd, "5", 1) != 1)
    brume_warn("Could not set page_reporting_order.", "error=\"%s\"", strerror(errno));
  close(fd);
}

/* The scratch disk the worker attaches for /tmp (worker-agent/scratch.h): ext2, empty. */
#define TMP_DISK "/dev/vda"

static bool tmp_on_disk;

static bool has_tmp_disk(void) {
  struct stat st;
  return stat(TMP_DISK, &st) == 0 && S_ISBLK(st.st_mode);
}

/* The disk replaces the boot's small tmpfs (nothing has written there yet). */
static int mount_tmp_disk(brume_err **err) {
  if (umount2("/tmp", MNT_DETACH) < 0 && errno != EINVAL)
    return brume_err_set(err, BRUME_INTERNAL, "unmount the boot's /tmp: %s", strerror(errno));
  if (mount(TMP_DISK, "/tmp", "ext2", MS_NOSUID | MS_NODEV | MS_NOATIME, NULL) < 0)
    return brume_err_set(err, BRUME_INTERNAL, "mount %s (ext2) on /tmp: %s", TMP_DISK,
                         strerror(errno));
  if (chmod("/tmp", 01777) < 0)
    return brume_err_set(err, BRUME_INTERNAL, "chmod /tmp: %s", strerror(errno));
  tmp_on_disk = true;
  return 0;
}

int init_system_boot(brume_err **err) {
  if (do_mount(&boot_mounts[0], err) < 0) return -1;
  open_console();
  for (size_t i = 1; i < BRUME_ARRAY_LEN(boot_mounts); i++)
    if (do_mount(&boot_mounts[i], err) < 0) return -1;
  for (size_t i = 0; i < BRUME_ARRAY_LEN(dev_links); i++)
    if (symlink(dev_links[i][0], dev_links[i][1]) < 0 && errno != EEXIST)
      return brume_err_set(err, BRUME_INTERNAL, "symlink %s: %s", dev_links[i][1], strerror(errno));
  /* The kernel starts init without PATH; brume-init looks up unzip in it. */
  setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
  page_reporting_setup();
  /* The scratch disk is mounted now, while a pooled VM waits, rather than on Init: under TCG
   * the first ext2 mount took 12-22 ms of Init. It holds nothing of a function. If it fails
   * here, Init tries again and reports it. */
  if (has_tmp_disk()) {
    brume_autoptr(brume_err) tmp_err = NULL;
    if (mount_tmp_disk(&tmp_err) < 0)
      brume_warn("Cannot mount the scratch disk on /tmp at boot.", "error=\"%s\"", tmp_err->msg);
  }
  return loopback_up(err);
}

int init_system_set_tmp_size(uint32_t mib, brume_err **err) {
  if (tmp_on_disk) return 0;
  if (has_tmp_disk()) return mount_tmp_disk(err);
  char data[64];
  snprintf(data, sizeof(data), "mode=1777,size=%um", mib);
  if (mount("tmpfs", "/tmp", "tmpfs", MS_REMOUNT | MS_NOSUID | MS_NODEV, data) < 0)
    return brume_err_set(err, BRUME_INTERNAL, "resize /tmp to %u MiB: %s", mib, strerror(errno));
  return 0;
}

int init_system_mount_task_root(const char *dir, uint32_t max_mib, brume_err **err) {
  char data[64];
  snprintf(data, sizeof(data), "mode=0755,size=%um", max_mib);
  if (mkdir("/var", 0755) < 0 && errno != EEXIST)
    return brume_err_set(err, BRUME_INTERNAL, "mkdir /var: %s", strerror(errno));
  mount_spec m = {"tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, data};
  return do_mount(&m, err);
}

int init_system_seal_task_root(const char *dir, brume_err **err) {
  if (mount("tmpfs", dir, "tmpfs", MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
    return brume_err_set(err, BRUME_INTERNAL, "remount %s read-only: %s", dir, strerror(errno));
  return 0;
}

int init_system_set_clock(int64_t unix_ms, brume_err **err) {
  struct timeval tv = {.tv_sec = unix_ms / 1000, .tv_usec = (unix_ms % 1000) * 1000};
  if (settimeofday(&tv, NULL) < 0)
    return brume_err_set(err, BRUME_INTERNAL, "set the clock: %s", strerror(errno));
  return 0;
}

int init_system_parse_meminfo(const char *text, uint64_t *total, uint64_t *used) {
  unsigned long long total_kb = 0, avail_kb = 0;
  int found = 0;
  for (const char *line = text; line != NULL;) {
    if (sscanf(line, "MemTotal: %llu kB", &total_kb) == 1) found |= 1;
    if (sscanf(line, "MemAvailable: %llu kB", &avail_kb) == 1) found |= 2;
    line = strchr(line, '\n');
    if (line) line++;
  }
  if (found != 3 || avail_kb > total_kb) return -1;
  *total = total_kb * 1024;
  *used = (total_kb - avail_kb) * 1024;
  return 0;
}

int init_system_mem_used(uint64_t *total, uint64_t *used, brume_err **err) {
  /* Sampled at the end of every invocation: kept open, so a sample is one pread (syscalls are
   * dear under TCG). */
  static int fd = -1;
  if (fd < 0) fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return brume_err_set(err, BRUME_INTERNAL, "open /proc/meminfo: %s", strerror(errno));
  char text[4096];
  ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
  if (n < 0) return brume_err_set(err, BRUME_INTERNAL, "read /proc/meminfo: %s", strerror(errno));
  text[n] = '\0';
  if (init_system_parse_meminfo(text, total, used) < 0)
    return brume_err_set(err, BRUME_INTERNAL, "/proc/meminfo has no MemTotal or MemAvailable");
  return 0;
}

_Noreturn void init_system_fatal(bool pid1, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  brume_autofree char *msg = brume_xvasprintf(fmt, ap);
  va_end(ap);
  brume_error("brume-init cannot go on.", "error=\"%s\"", msg);
  if (!pid1) exit(1);
  sync();
  /* A reboot, not a power-off: the guest has no ACPI to power off with, and reboot=t makes it a
   * triple fault, which ends the domain (on_reboot is destroy). */
  reboot(RB_AUTOBOOT);
  /* Reboot failed: PID 1 exiting makes the kernel panic, which stops the VM too. */
  _exit(1);
}

void init_system_start_warm_up(const char *self) {
  /* The same attributes and descriptors as a runtime's start (runner.c). */
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t fa;
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  char *argv[] = {(char *)self, "--warm-up", NULL};
  char *envp[] = {NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, self, &fa, &attr, argv, envp);
  if (rc != 0) brume_warn("Cannot start the warm-up.", "error=\"%s\"", strerror(rc));
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
}

int init_system_warm_up(void) {
  int p[2];
  char buf[256];
  if (pipe2(p, O_CLOEXEC) < 0 || write(p[1], "warm-up\n", 8) != 8 || read(p[0], buf, 8) != 8)
    return 1;
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t slen = sizeof(sin);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (lfd < 0 || cfd < 0 || ep < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
      listen(lfd, 1) < 0 || getsockname(lfd, (struct sockaddr *)&sin, &slen) < 0 ||
      connect(cfd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
    return 1;
  int sfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  int one = 1;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP};
  if (sfd < 0 || setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
      setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
      epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) < 0)
    return 1;
  static const char req[] = "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n";
  static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
  if (write(cfd, req, sizeof(req) - 1) < 0 || epoll_wait(ep, &ev, 1, 1000) != 1 ||
      read(sfd, buf, sizeof(buf)) <= 0 || write(sfd, resp, sizeof(resp) - 1) < 0 ||
      read(cfd, buf, sizeof(buf)) <= 0)
    return 1;
  return 0;
}
