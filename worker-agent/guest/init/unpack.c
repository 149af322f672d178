#include "unpack.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runner.h"

/* How much of unzip's complaints makes it into the error. */
#define UNZIP_TAIL 512

static bool is_executable(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

char *init_unpack_find_unzip(const char *configured, brume_err **err) {
  if (configured) return brume_xstrdup(configured);
  const char *path = getenv("PATH");
  brume_autofree char *dirs = brume_xstrdup(path ? path : "/usr/bin:/bin");
  char *save = NULL;
  for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
    char *candidate = brume_xasprintf("%s/unzip", d);
    if (is_executable(candidate)) return candidate;
    free(candidate);
  }
  if (is_executable("/bin/busybox")) return brume_xstrdup("/bin/busybox");
  brume_err_set(err, BRUME_NOT_FOUND, "no unzip program: none in PATH and no /bin/busybox");
  return NULL;
}

static int write_file(const char *path, const uint8_t *data, size_t len, brume_err **err) {
  brume_autoclose int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return brume_err_set(err, BRUME_INTERNAL, "create %s: %s", path, strerror(errno));
  for (size_t off = 0; off < len;) {
    ssize_t n = write(fd, data + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return brume_err_set(err, BRUME_INTERNAL, "write %s: %s", path, strerror(errno));
    off += (size_t)n;
  }
  return 0;
}

/* Runs argv with stdout and stderr into a pipe; returns the shell's exit status and keeps the
 * end of the output in tail. Reading to EOF before waiting means a talkative unzip never
 * blocks on a full pipe. */
static int run_capture(char *const argv[], char *tail, size_t tail_size, brume_err **err) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0)
    return brume_err_set(err, BRUME_INTERNAL, "pipe: %s", strerror(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
  posix_spawnattr_t attr;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  pid_t pid;
  extern char **environ;
  int rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return brume_err_set(err, BRUME_INTERNAL, "run %s: %s", argv[0], strerror(rc));
  }
  size_t used = 0;
  char chunk[4096];
  for (;;) {
    ssize_t n = read(fds[0], chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    size_t cap = tail_size - 1, k = (size_t)n;
    const char *src = chunk;
    if (k > cap) src += k - cap, k = cap;
    if (used + k > cap) {
      memmove(tail, tail + (used + k - cap), cap - k);
      used = cap - k;
    }
    memcpy(tail + used, src, k);
    used += k;
  }
  tail[used] = '\0';
  close(fds[0]);
  int wstatus;
  while (waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR)
      return brume_err_set(err, BRUME_INTERNAL, "wait for %s: %s", argv[0], strerror(errno));
  }
  return init_proc_exit_status(wstatus);
}

/* unzip's output as one line. */
static void one_line(char *s) {
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ')) s[--n] = '\0';
  for (char *p = s; *p; p++)
    if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
}

int init_unpack_zip(const uint8_t *zip, size_t len, const char *dir, const char *unzip,
                    brume_err **err) {
  if (len == 0) return brume_err_set(err, BRUME_INVALID_ARGUMENT, "the code archive is empty");
  if (mkdir(dir, 0755) < 0 && errno != EEXIST)
    return brume_err_set(err, BRUME_INTERNAL, "mkdir %s: %s", dir, strerror(errno));
  brume_autofree char *zip_path = brume_xasprintf("%s.zip", dir);
  if (write_file(zip_path, zip, len, err) < 0) return -1;

  brume_autofree char *prog = brume_xstrdup(unzip);
  bool busybox = strcmp(basename(prog), "busybox") == 0;
  char *argv[9];
  int n = 0;
  argv[n++] = (char *)unzip;
  if (busybox) argv[n++] = "unzip";
  argv[n++] = "-o";
  argv[n++] = "-q";
  argv[n++] = zip_path;
  argv[n++] = "-d";
  argv[n++] = (char *)dir;
  argv[n] = NULL;
  char tail[UNZIP_TAIL];
  int status = run_capture(argv, tail, sizeof(tail), err);
  unlink(zip_path);
  if (status < 0) return -1;
  if (status != 0) {
    one_line(tail);
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "unzip failed with exit status %d: %s",
                         status, tail[0] ? tail : "(no output)");
  }
  return 0;
}

bool init_unpack_path_ok(const char *path) {
  if (path == NULL || path[0] == '\0' || path[0] == '/') return false;
  for (const char *p = path; *p;) {
    size_t n = strcspn(p, "/");
    if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) return false;
    p += n;
    if (*p == '/') p++;
    if (*p == '\0' && p[-1] == '/') return false; /* a trailing '/' */
  }
  return true;
}

/* Creates the missing directories on the way to path's last component (dirfd relative).
 * Components are opened without following symlinks, so nothing lands outside the task root
 * even if one exists there already (the host test's task root is a plain directory). */
static int make_parents(int dirfd, const char *path, brume_err **err) {
  brume_autofree char *copy = brume_xstrdup(path);
  char *slash = strrchr(copy, '/');
  if (slash == NULL) return 0;
  *slash = '\0';
  for (char *p = copy;;) {
    char *next = strchr(p, '/');
    if (next) *next = '\0';
    if (mkdirat(dirfd, copy, 0755) < 0 && errno != EEXIST)
      return brume_err_set(err, BRUME_INVALID_ARGUMENT, "mkdir %s: %s", copy, strerror(errno));
    struct stat st;
    if (fstatat(dirfd, copy, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
      return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s in the code is not a directory", copy);
    if (next == NULL) return 0;
    *next = '/';
    p = next + 1;
  }
}

static int write_entry(int dirfd, const Brume__GuestCodeFile *f, brume_err **err) {
  mode_t mode = f->mode & 0777;
  brume_autoclose int fd =
      openat(dirfd, f->path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0)
    return brume_err_set(err, errno == ELOOP || errno == EISDIR ? BRUME_INVALID_ARGUMENT
                                                                : BRUME_INTERNAL,
                         "create %s: %s", f->path, strerror(errno));
  for (size_t off = 0; off < f->data.len;) {
    ssize_t n = write(fd, f->data.data + off, f->data.len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return brume_err_set(err, BRUME_INTERNAL, "write %s: %s", f->path, strerror(errno));
    off += (size_t)n;
  }
  /* The mode given to open is cut by the umask, and a replaced file keeps its old one. */
  if (fchmod(fd, mode) < 0)
    return brume_err_set(err, BRUME_INTERNAL, "chmod %s: %s", f->path, strerror(errno));
  return 0;
}

int init_unpack_files(const Brume__GuestCode *code, const char *dir, brume_err **err) {
  if (code->n_files == 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "the code archive is empty");
  if (mkdir(dir, 0755) < 0 && errno != EEXIST)
    return brume_err_set(err, BRUME_INTERNAL, "mkdir %s: %s", dir, strerror(errno));
  brume_autoclose int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) return brume_err_set(err, BRUME_INTERNAL, "open %s: %s", dir, strerror(errno));
  for (size_t i = 0; i < code->n_files; i++) {
    const Brume__GuestCodeFile *f = code->files[i];
    if (!init_unpack_path_ok(f->path))
      return brume_err_set(err, BRUME_INVALID_ARGUMENT, "entry %zu has an unusable path", i);
    if (f->type != BRUME__GUEST_CODE_FILE__TYPE__REGULAR &&
        f->type != BRUME__GUEST_CODE_FILE__TYPE__DIRECTORY &&
        f->type != BRUME__GUEST_CODE_FILE__TYPE__SYMLINK)
      return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s has an unknown type", f->path);
    if (f->type == BRUME__GUEST_CODE_FILE__TYPE__SYMLINK) continue;
    if (make_parents(dirfd, f->path, err) < 0) return -1;
    if (f->type == BRUME__GUEST_CODE_FILE__TYPE__REGULAR) {
      if (write_entry(dirfd, f, err) < 0) return -1;
    } else if (mkdirat(dirfd, f->path, 0755) < 0 && errno != EEXIST) {
      return brume_err_set(err, BRUME_INVALID_ARGUMENT, "mkdir %s: %s", f->path, strerror(errno));
    }
  }
  /* Last, as unzip does: directories' own modes (one without write permission must not stop
   * what goes into it), then symlinks. */
  for (size_t i = 0; i < code->n_files; i++) {
    const Brume__GuestCodeFile *f = code->files[i];
    if (f->type != BRUME__GUEST_CODE_FILE__TYPE__DIRECTORY) continue;
    struct stat st;
    if (fstatat(dirfd, f->path, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
      return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s in the code is not a directory",
                           f->path);
    if (fchmodat(dirfd, f->path, f->mode & 0777, 0) < 0)
      return brume_err_set(err, BRUME_INTERNAL, "chmod %s: %s", f->path, strerror(errno));
  }
  for (size_t i = 0; i < code->n_files; i++) {
    const Brume__GuestCodeFile *f = code->files[i];
    if (f->type != BRUME__GUEST_CODE_FILE__TYPE__SYMLINK) continue;
    if (make_parents(dirfd, f->path, err) < 0) return -1;
    brume_autofree char *target = brume_xmalloc(f->data.len + 1);
    memcpy(target, f->data.data, f->data.len);
    target[f->data.len] = '\0';
    if (target[0] == '\0' || strlen(target) != f->data.len)
      return brume_err_set(err, BRUME_INVALID_ARGUMENT, "symlink %s has an unusable target",
                           f->path);
    if (symlinkat(target, dirfd, f->path) < 0)
      return brume_err_set(err, BRUME_INVALID_ARGUMENT, "symlink %s: %s", f->path,
                           strerror(errno));
  }
  return 0;
}
