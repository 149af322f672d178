#include "code_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "code_zip.h"
#include "log.h"

#define TMP_PREFIX ".tmp-"
#define ROUTE "/code/"

struct brume_code_store {
  char *dir;
  int dirfd;
  atomic_ulong seq; /* names temporary files */
};

static int mkdir_p(const char *path, brume_err **err) {
  brume_autofree char *p = brume_xstrdup(path);
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != '\0') continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, 0700) < 0 && errno != EEXIST)
      return brume_err_set(err, BRUME_INTERNAL, "code store: mkdir %s: %s", p, strerror(errno));
    if (c == '\0') return 0;
    *s = c;
  }
}

brume_code_store *brume_code_store_new(const char *dir, brume_err **err) {
  if (dir == NULL || dir[0] == '\0') {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "code store: no directory");
    return NULL;
  }
  if (mkdir_p(dir, err) < 0) return NULL;
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    brume_err_set(err, BRUME_INTERNAL, "code store: open %s: %s", dir, strerror(errno));
    return NULL;
  }
  /* Temporary files of an earlier process: uploads it never finished storing. */
  int scan = dup(dfd);
  DIR *d = scan >= 0 ? fdopendir(scan) : NULL;
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)))
      if (strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0) unlinkat(dfd, e->d_name, 0);
    closedir(d);
  } else if (scan >= 0) {
    close(scan);
  }
  brume_code_store *s = brume_xcalloc(1, sizeof(*s));
  s->dir = brume_xstrdup(dir);
  s->dirfd = dfd;
  atomic_init(&s->seq, 0);
  return s;
}

void brume_code_store_free(brume_code_store *s) {
  if (s == NULL) return;
  close(s->dirfd);
  free(s->dir);
  free(s);
}

static void sha256_hex(const void *p, size_t len, char out[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  BRUME_ENSURE(EVP_Digest(p, len, md, &n, EVP_sha256(), NULL) == 1 && n == 32);
  for (unsigned i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Whether s is exactly 64 lowercase hex digits: the only names the store opens. */
static bool digest_ok(const char *s, size_t n) {
  if (n != 64) return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  return true;
}

static int write_all(int fd, const unsigned char *p, size_t len) {
  for (size_t off = 0; off < len;) {
    ssize_t w = write(fd, p + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    off += (size_t)w;
  }
  return 0;
}

int brume_code_store_put(brume_code_store *s, const void *zip, size_t len, char sha256[65],
                         brume_err **err) {
  sha256[0] = '\0';
  if (len == 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "InvalidParameterValueException: the code archive is empty");
  if (len > BRUME_CODE_ZIP_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "InvalidParameterValueException: the code archive is %zu bytes, over "
                         "the %u-byte (50 MiB) limit",
                         len, BRUME_CODE_ZIP_MAX);
  if (brume_code_zip_check(zip, len, BRUME_CODE_UNPACKED_MAX, err) < 0)
    return brume_err_wrap(err, "InvalidZipFileException");

  char sha[65];
  sha256_hex(zip, len, sha);
  char final[70];
  snprintf(final, sizeof(final), "%s.zip", sha);
  /* Content-addressed: a file under this name already holds these bytes (it was renamed into
   * place whole), so the same upload is stored once and never rewritten. */
  if (faccessat(s->dirfd, final, F_OK, 0) == 0) {
    memcpy(sha256, sha, sizeof(sha));
    return 0;
  }
  char tmp[128];
  snprintf(tmp, sizeof(tmp), TMP_PREFIX "%s-%d-%lu", sha, (int)getpid(),
           atomic_fetch_add(&s->seq, 1));
  brume_autoclose int fd = openat(s->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return brume_err_set(err, BRUME_INTERNAL, "code store: create %s/%s: %s", s->dir, tmp,
                         strerror(errno));
  /* Durable before visible: a crash after the rename must not leave a short archive under its
   * digest, which workers would fetch and refuse forever. */
  if (write_all(fd, zip, len) < 0 || fsync(fd) < 0 ||
      renameat(s->dirfd, tmp, s->dirfd, final) < 0) {
    int e = errno;
    unlinkat(s->dirfd, tmp, 0);
    return brume_err_set(err, BRUME_INTERNAL, "code store: store %s/%s: %s", s->dir, final,
                         strerror(e));
  }
  if (fsync(s->dirfd) < 0)
    return brume_err_set(err, BRUME_INTERNAL, "code store: fsync %s: %s", s->dir, strerror(errno));
  memcpy(sha256, sha, sizeof(sha));
  brume_info("Stored function code.", "sha256=%s bytes=%zu", sha, len);
  return 0;
}

bool brume_code_store_has(brume_code_store *s, const char *sha256, uint64_t *size) {
  if (sha256 == NULL || !digest_ok(sha256, strlen(sha256))) return false;
  char name[70];
  snprintf(name, sizeof(name), "%s.zip", sha256);
  struct stat st;
  if (fstatat(s->dirfd, name, &st, 0) < 0 || !S_ISREG(st.st_mode)) return false;
  if (size) *size = (uint64_t)st.st_size;
  return true;
}

/* GET /code/<sha256>: the archive, whole. Nothing but a 64-hex name is ever opened, so no path
 * under /code/ can reach another file. */
static void serve_code(const brume_http_request *req, brume_http_response *resp, void *user) {
  brume_code_store *s = user;
  const char *digest = req->path + strlen(ROUTE);
  if (!digest_ok(digest, strlen(digest))) {
    brume_http_replyf(resp, 404, "text/plain", "No such code.\n");
    return;
  }
  char name[70];
  snprintf(name, sizeof(name), "%s.zip", digest);
  brume_autoclose int fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 && errno == ENOENT) {
    brume_http_replyf(resp, 404, "text/plain", "No such code.\n");
    return;
  }
  if (fd < 0 || fstat(fd, &st) < 0) {
    brume_http_replyf(resp, 500, "text/plain", "The code cannot be read.\n");
    brume_error("Cannot open stored function code.", "dir=%s file=%s error=\"%s\"", s->dir, name,
                strerror(errno));
    return;
  }
  size_t size = (size_t)st.st_size;
  brume_autofree unsigned char *buf = brume_xmalloc(size ? size : 1);
  for (size_t got = 0; got < size;) {
    ssize_t r = read(fd, buf + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      brume_http_replyf(resp, 500, "text/plain", "The code cannot be read.\n");
      brume_error("Cannot read stored function code.", "dir=%s file=%s error=\"%s\"", s->dir, name,
                  r < 0 ? strerror(errno) : "file shrank");
      return;
    }
    got += (size_t)r;
  }
  brume_http_reply(resp, 200, "application/zip", buf, size);
}

void brume_code_store_serve(brume_code_store *s, brume_http *http) {
  brume_http_route(http, "GET", ROUTE, serve_code, s);
}
