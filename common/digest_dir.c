#include "digest_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMP_PREFIX ".tmp-"
/* "<sha256><ext>": a longer ext is a caller's bug. */
#define NAME_MAX_LEN 96

struct brume_digest_dir {
  char *path;
  int fd;
  atomic_ulong seq; /* names temporary files */
};

static int mkdir_p(const char *path, brume_err **err) {
  brume_autofree char *p = brume_xstrdup(path);
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != '\0') continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, 0700) < 0 && errno != EEXIST)
      return brume_err_set(err, BRUME_INTERNAL, "mkdir %s: %s", p, strerror(errno));
    if (c == '\0') return 0;
    *s = c;
  }
}

brume_digest_dir *brume_digest_dir_open(const char *path, brume_err **err) {
  if (path == NULL || path[0] == '\0') {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "no directory");
    return NULL;
  }
  if (mkdir_p(path, err) < 0) return NULL;
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    brume_err_set(err, BRUME_INTERNAL, "open %s: %s", path, strerror(errno));
    return NULL;
  }
  /* readdir needs a DIR of its own: closedir closes the fd it was opened on. */
  int scan = dup(fd);
  DIR *dir = scan >= 0 ? fdopendir(scan) : NULL;
  if (dir) {
    struct dirent *e;
    while ((e = readdir(dir)))
      if (strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0) unlinkat(fd, e->d_name, 0);
    closedir(dir);
  } else if (scan >= 0) {
    close(scan);
  }
  brume_digest_dir *d = brume_xcalloc(1, sizeof(*d));
  d->path = brume_xstrdup(path);
  d->fd = fd;
  atomic_init(&d->seq, 0);
  return d;
}

void brume_digest_dir_free(brume_digest_dir *d) {
  if (d == NULL) return;
  close(d->fd);
  free(d->path);
  free(d);
}

/* ---- Digests ---- */

static bool is_hex(char c, bool upper_too) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (upper_too && c >= 'A' && c <= 'F');
}

bool brume_digest_dir_valid(const char *s) {
  if (s == NULL) return false;
  size_t i = 0;
  while (i < 64 && is_hex(s[i], false)) i++;
  return i == 64 && s[64] == '\0';
}

bool brume_digest_dir_lower(const char *s, char out[65]) {
  if (s == NULL) return false;
  char low[65];
  size_t i = 0;
  for (; i < 64 && is_hex(s[i], true); i++) low[i] = s[i] >= 'A' && s[i] <= 'F' ? s[i] + 32 : s[i];
  if (i != 64 || s[64] != '\0') return false;
  low[64] = '\0';
  memcpy(out, low, sizeof(low));
  return true;
}

void brume_digest_dir_hex(const unsigned char md[32], char out[65]) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = digits[md[i] >> 4];
    out[2 * i + 1] = digits[md[i] & 0xf];
  }
  out[64] = '\0';
}

void brume_digest_dir_sha256(const void *p, size_t len, char out[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  BRUME_ENSURE(EVP_Digest(p, len, md, &n, EVP_sha256(), NULL) == 1 && n == 32);
  brume_digest_dir_hex(md, out);
}

/* ---- Files ---- */

/* name = "<sha256><ext>"; false (name "") when sha256 is not a valid digest. */
static bool file_name(const char *sha256, const char *ext, char name[NAME_MAX_LEN]) {
  name[0] = '\0';
  if (!brume_digest_dir_valid(sha256)) return false;
  BRUME_ENSURE(strlen(ext) < NAME_MAX_LEN - 64);
  snprintf(name, NAME_MAX_LEN, "%s%s", sha256, ext);
  return true;
}

char *brume_digest_dir_path(const brume_digest_dir *d, const char *sha256, const char *ext) {
  BRUME_ENSURE(brume_digest_dir_valid(sha256));
  return brume_xasprintf("%s/%s%s", d->path, sha256, ext);
}

bool brume_digest_dir_has(brume_digest_dir *d, const char *sha256, const char *ext,
                          uint64_t *size) {
  char name[NAME_MAX_LEN];
  struct stat st;
  if (!file_name(sha256, ext, name) || fstatat(d->fd, name, &st, 0) < 0 || !S_ISREG(st.st_mode))
    return false;
  if (size) *size = (uint64_t)st.st_size;
  return true;
}

void *brume_digest_dir_read(brume_digest_dir *d, const char *sha256, const char *ext, size_t *len,
                            brume_err **err) {
  char name[NAME_MAX_LEN];
  if (!file_name(sha256, ext, name)) {
    brume_err_set(err, BRUME_NOT_FOUND, "'%.80s' is not a digest", sha256 ? sha256 : "");
    return NULL;
  }
  brume_autoclose int fd = openat(d->fd, name, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    brume_err_set(err, errno == ENOENT ? BRUME_NOT_FOUND : BRUME_INTERNAL, "open %s/%s: %s",
                  d->path, name, strerror(errno));
    return NULL;
  }
  size_t size = (size_t)st.st_size;
  brume_autofree unsigned char *buf = brume_xmalloc(size ? size : 1);
  for (size_t got = 0; got < size;) {
    ssize_t r = read(fd, buf + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      brume_err_set(err, BRUME_INTERNAL, "read %s/%s: %s", d->path, name,
                    r < 0 ? strerror(errno) : "file shrank");
      return NULL;
    }
    got += (size_t)r;
  }
  *len = size;
  return brume_steal(&buf);
}

int brume_digest_dir_tmp_open(brume_digest_dir *d, const char *sha256, brume_digest_dir_tmp *t,
                              brume_err **err) {
  snprintf(t->name, sizeof(t->name), TMP_PREFIX "%.64s-%d-%lu", sha256, (int)getpid(),
           atomic_fetch_add(&d->seq, 1));
  t->fd = openat(d->fd, t->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (t->fd < 0)
    return brume_err_set(err, BRUME_INTERNAL, "create %s/%s: %s", d->path, t->name,
                         strerror(errno));
  return 0;
}

void brume_digest_dir_tmp_discard(brume_digest_dir *d, brume_digest_dir_tmp *t) {
  if (t->fd < 0) return;
  unlinkat(d->fd, t->name, 0);
  close(t->fd);
  t->fd = -1;
}

int brume_digest_dir_tmp_commit(brume_digest_dir *d, brume_digest_dir_tmp *t, const char *sha256,
                                const char *ext, brume_err **err) {
  BRUME_ENSURE(t->fd >= 0);
  char name[NAME_MAX_LEN];
  if (!file_name(sha256, ext, name)) {
    brume_digest_dir_tmp_discard(d, t);
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "'%.80s' is not a digest", sha256);
  }
  /* Durable before visible: a crash after the rename must not leave a short file under the
   * digest, which readers trust without hashing it again. */
  if (fsync(t->fd) < 0 || renameat(d->fd, t->name, d->fd, name) < 0) {
    int e = errno;
    brume_digest_dir_tmp_discard(d, t);
    return brume_err_set(err, BRUME_INTERNAL, "store %s/%s: %s", d->path, name, strerror(e));
  }
  close(t->fd);
  t->fd = -1;
  if (fsync(d->fd) < 0)
    return brume_err_set(err, BRUME_INTERNAL, "fsync %s: %s", d->path, strerror(errno));
  return 0;
}

int brume_digest_dir_store(brume_digest_dir *d, const char *sha256, const char *ext, const void *p,
                           size_t len, brume_err **err) {
  char name[NAME_MAX_LEN];
  if (!file_name(sha256, ext, name))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "'%.80s' is not a digest",
                         sha256 ? sha256 : "");
  /* Content-addressed: a file under this name holds these bytes already (it was renamed into
   * place whole). */
  if (faccessat(d->fd, name, F_OK, 0) == 0) return 0;
  brume_digest_dir_tmp t;
  if (brume_digest_dir_tmp_open(d, sha256, &t, err) < 0) return -1;
  const unsigned char *b = p;
  for (size_t off = 0; off < len;) {
    ssize_t w = write(t.fd, b + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      int e = errno;
      brume_digest_dir_tmp_discard(d, &t);
      return brume_err_set(err, BRUME_INTERNAL, "store %s/%s: %s", d->path, name, strerror(e));
    }
    off += (size_t)w;
  }
  return brume_digest_dir_tmp_commit(d, &t, sha256, ext, err) < 0 ? -1 : 1;
}
