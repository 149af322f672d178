#include "system.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
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
  return loopback_up(err);
}

/* The scratch disk the worker attaches for /tmp (worker-agent/scratch.h): ext2, empty. */
#define TMP_DISK "/dev/vda"

int init_system_set_tmp_size(uint32_t mib, brume_err **err) {
  struct stat st;
  if (stat(TMP_DISK, &st) == 0 && S_ISBLK(st.st_mode)) {
    /* The disk replaces the boot's small tmpfs (nothing has written there yet). */
    if (umount2("/tmp", MNT_DETACH) < 0 && errno != EINVAL)
      return brume_err_set(err, BRUME_INTERNAL, "unmount the boot's /tmp: %s", strerror(errno));
    if (mount(TMP_DISK, "/tmp", "ext2", MS_NOSUID | MS_NODEV | MS_NOATIME, NULL) < 0)
      return brume_err_set(err, BRUME_INTERNAL, "mount %s (ext2) on /tmp: %s", TMP_DISK,
                           strerror(errno));
    if (chmod("/tmp", 01777) < 0)
      return brume_err_set(err, BRUME_INTERNAL, "chmod /tmp: %s", strerror(errno));
    return 0;
  }
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
  reboot(RB_POWER_OFF);
  /* Power-off failed: PID 1 exiting makes the kernel panic, which stops the VM too. */
  _exit(1);
}
