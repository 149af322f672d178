/* The scratch disk of a sandbox's /tmp (scratch.h). */
#include "scratch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mem.h"
#include "resources.h"

extern char **environ;

/* Runs argv (argv[0] from PATH) with stdin and stdout on /dev/null and stderr into a pipe;
 * returns its wait status, or -1 if it could not start. The first bytes of stderr go to msg. */
static int run(char *const argv[], char *msg, size_t msg_size) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    snprintf(msg, msg_size, "%s", strerror(rc));
    return -1;
  }
  size_t n = 0;
  ssize_t r;
  while ((r = read(fds[0], msg + n, msg_size - 1 - n)) > 0) {
    n += (size_t)r;
    if (n == msg_size - 1) break;
  }
  msg[n] = '\0';
  char sink[256];
  while (read(fds[0], sink, sizeof(sink)) > 0) {
  }
  close(fds[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return status;
}

int brume_scratch_create(const char *path, uint32_t mib, brume_err **err) {
  if (brume_resources_check_ephemeral(mib, err) < 0) return -1;
  unlink(path);
  brume_autoclose int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return brume_err_set(err, BRUME_INTERNAL, "create %s: %s", path, strerror(errno));
  if (ftruncate(fd, (off_t)mib << 20) < 0) {
    int e = errno;
    unlink(path);
    return brume_err_set(err, BRUME_INTERNAL, "size %s to %u MiB: %s", path, mib, strerror(e));
  }
  /* 4 KiB blocks; no reserved blocks (nobody but the function writes there); one inode per
   * 64 KiB, which keeps the inode tables that mke2fs writes small (8 MiB for 10 GiB). */
  /* Daemons often run without /sbin in PATH. */
  char *prog = access("/usr/sbin/mke2fs", X_OK) == 0 ? "/usr/sbin/mke2fs"
               : access("/sbin/mke2fs", X_OK) == 0   ? "/sbin/mke2fs"
                                                     : "mke2fs";
  char *argv[] = {prog,     "-q",  "-F", "-t", "ext2", "-b", "4096", "-m", "0", "-i", "65536",
                  "-E",     "root_owner=0:0", (char *)path, NULL};
  char msg[512];
  int st = run(argv, msg, sizeof(msg));
  if (st == 0) return 0;
  unlink(path);
  size_t len = strlen(msg);
  while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' ')) msg[--len] = '\0';
  if (st < 0)
    return brume_err_set(err, BRUME_INTERNAL, "mke2fs could not run (is e2fsprogs installed?): %s",
                         msg);
  return brume_err_set(err, BRUME_INTERNAL, "mke2fs %s failed (status %d): %s", path,
                       WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), msg);
}

int brume_scratch_remove_all(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  int n = 0;
  size_t suffix = strlen(BRUME_SCRATCH_SUFFIX);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len <= suffix || strcmp(e->d_name + len - suffix, BRUME_SCRATCH_SUFFIX) != 0) continue;
    if (unlinkat(dirfd(d), e->d_name, 0) == 0) n++;
  }
  closedir(d);
  return n;
}
