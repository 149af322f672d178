#include "code_cache.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "digest_dir.h"
#include "log.h"

BRUME_DEFINE_AUTOPTR(CURL, curl_easy_cleanup)
BRUME_DEFINE_AUTOPTR(EVP_MD_CTX, EVP_MD_CTX_free)

#define ZIP_EXT ".zip"
#define FILES_EXT ".code" /* the unpacked form, brume_code_cache_load */

/* One fetch in progress, shared by every request for its digest. */
typedef struct flight {
  struct flight *next;
  char sha[65];
  bool done;
  brume_status code; /* BRUME_OK when the archive is in the cache */
  char *msg;
  int waiters;
} flight;

struct brume_code_cache {
  char *dir;
  brume_digest_dir *files;
  int64_t max_zip, max_unzipped, max_files;
  int timeout_ms;
  char *ca_path;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  flight *flights;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) {
  curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

brume_code_cache *brume_code_cache_new(const brume_code_cache_opts *opts, brume_err **err) {
  pthread_once(&curl_once, curl_init);
  if (curl_init_rc != CURLE_OK) {
    brume_err_set(err, BRUME_INTERNAL, "code cache: curl_global_init: %s",
                  curl_easy_strerror(curl_init_rc));
    return NULL;
  }
  brume_digest_dir *files = brume_digest_dir_open(opts->dir, err);
  if (files == NULL) {
    brume_err_wrap(err, "code cache");
    return NULL;
  }
  brume_code_cache *c = brume_xcalloc(1, sizeof(*c));
  c->dir = brume_xstrdup(opts->dir);
  c->files = files;
  c->max_zip = opts->max_zip_bytes > 0 ? opts->max_zip_bytes : (int64_t)BRUME_CODE_ZIP_MAX;
  c->max_unzipped =
      opts->max_unzipped_bytes > 0 ? opts->max_unzipped_bytes : (int64_t)BRUME_CODE_UNPACKED_MAX;
  c->max_files = opts->max_files_bytes > 0 ? opts->max_files_bytes : BRUME_CODE_MAX_FILES_BYTES;
  c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : BRUME_CODE_FETCH_TIMEOUT_MS;
  c->ca_path = opts->ca_path ? brume_xstrdup(opts->ca_path) : NULL;
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  return c;
}

void brume_code_cache_free(brume_code_cache *c) {
  if (!c) return;
  BRUME_ENSURE(c->flights == NULL);
  brume_digest_dir_free(c->files);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  free(c->dir);
  free(c->ca_path);
  free(c);
}

/* ---- fetch ---- */

typedef struct sink {
  int fd;
  EVP_MD_CTX *md;
  int64_t bytes, max;
  bool too_big;
  int write_errno;
} sink;

static size_t on_data(char *p, size_t size, size_t n, void *user) {
  sink *s = user;
  size_t len = size * n;
  if (s->bytes + (int64_t)len > s->max) {
    s->too_big = true;
    return 0; /* aborts the transfer */
  }
  EVP_DigestUpdate(s->md, p, len);
  for (size_t off = 0; off < len;) {
    ssize_t w = write(s->fd, p + off, len - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      s->write_errno = errno;
      return 0;
    }
    off += (size_t)w;
  }
  s->bytes += (int64_t)len;
  return len;
}

static bool http_url(const char *url) {
  return url && (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0);
}

/* Fetches url into <dir>/<sha>.zip. 0 or -1 with *err; leaves no file behind on failure. */
static int fetch(brume_code_cache *c, const char *sha, const char *url, uint64_t size_bytes,
                 brume_err **err) {
  if (!http_url(url))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "code %s: URL '%.200s' is not http(s)", sha,
                         url ? url : "");
  brume_digest_dir_tmp tmp;
  if (brume_digest_dir_tmp_open(c->files, sha, &tmp, err) < 0)
    return brume_err_wrap(err, "code cache");
  int rc = -1;
  void *map = MAP_FAILED;
  brume_autoptr(EVP_MD_CTX) md = EVP_MD_CTX_new();
  brume_autoptr(CURL) h = curl_easy_init();
  BRUME_ENSURE(md && h);
  EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  sink s = {.fd = tmp.fd, .md = md, .max = c->max_zip};
  char curl_msg[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* timeouts without SIGALRM: we are threaded */
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 3L);
  curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
  curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_zip);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_msg);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
  if (c->ca_path) curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_path);
  int64_t t0 = brume_mono_ms();
  CURLcode cr = curl_easy_perform(h);
  if (s.too_big || cr == CURLE_FILESIZE_EXCEEDED) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT,
                  "code %s from %s is over the %lld-byte limit for a zip archive", sha, url,
                  (long long)c->max_zip);
    goto out;
  }
  if (s.write_errno) {
    brume_err_set(err, BRUME_INTERNAL, "code cache: write %s/%s: %s", c->dir, tmp.name,
                  strerror(s.write_errno));
    goto out;
  }
  if (cr != CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (cr == CURLE_HTTP_RETURNED_ERROR)
      brume_err_set(err, BRUME_UNAVAILABLE, "fetch code %s from %s: HTTP %ld", sha, url, status);
    else
      brume_err_set(err, BRUME_UNAVAILABLE, "fetch code %s from %s: %s", sha, url,
                    curl_msg[0] ? curl_msg : curl_easy_strerror(cr));
    goto out;
  }
  if (size_bytes && (uint64_t)s.bytes != size_bytes) {
    brume_err_set(err, BRUME_DATA_LOSS,
                  "code %s from %s is %lld bytes, not the %llu announced; nothing stored", sha, url,
                  (long long)s.bytes, (unsigned long long)size_bytes);
    goto out;
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned dlen = 0;
  EVP_DigestFinal_ex(md, digest, &dlen);
  BRUME_ENSURE(dlen == 32);
  char hex[65];
  brume_digest_dir_hex(digest, hex);
  if (strcmp(hex, sha) != 0) {
    brume_err_set(err, BRUME_DATA_LOSS,
                  "code from %s does not match its digest: expected sha256 %s, got %s "
                  "(%lld bytes); nothing stored",
                  url, sha, hex, (long long)s.bytes);
    goto out;
  }
  if (s.bytes > 0) map = mmap(NULL, (size_t)s.bytes, PROT_READ, MAP_PRIVATE, tmp.fd, 0);
  if (s.bytes > 0 && map == MAP_FAILED) {
    brume_err_set(err, BRUME_INTERNAL, "code cache: mmap %s/%s: %s", c->dir, tmp.name,
                  strerror(errno));
    goto out;
  }
  uint64_t unzipped = 0;
  if (brume_code_zip_unzipped_size(s.bytes > 0 ? map : (const void *)"", (size_t)s.bytes, &unzipped,
                                   err) < 0) {
    brume_err_wrap(err, "code %s", sha);
    goto out;
  }
  if (unzipped > (uint64_t)c->max_unzipped) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT,
                  "code %s unpacks to %llu bytes, over the %lld-byte limit", sha,
                  (unsigned long long)unzipped, (long long)c->max_unzipped);
    goto out;
  }
  /* Durable before visible (digest_dir.h): hits are never hashed again. */
  if (brume_digest_dir_tmp_commit(c->files, &tmp, sha, ZIP_EXT, err) < 0) {
    brume_err_wrap(err, "code cache");
    goto out;
  }
  rc = 0;
  brume_info("Fetched function code.", "sha256=%s bytes=%lld unzipped_bytes=%llu ms=%lld", sha,
             (long long)s.bytes, (unsigned long long)unzipped, (long long)(brume_mono_ms() - t0));
out:
  if (map != MAP_FAILED) munmap(map, (size_t)s.bytes);
  brume_digest_dir_tmp_discard(c->files, &tmp);
  return rc;
}

char *brume_code_cache_get(brume_code_cache *c, const char *sha256, const char *url,
                           uint64_t size_bytes, bool *cached, brume_err **err) {
  if (cached) *cached = false;
  char sha[65];
  if (!brume_digest_dir_lower(sha256, sha)) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "code digest '%.80s' is not 64 hex digits",
                  sha256 ? sha256 : "");
    return NULL;
  }
  if (size_bytes > (uint64_t)c->max_zip) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT,
                  "code %s is %llu bytes, over the %lld-byte limit for a zip archive", sha,
                  (unsigned long long)size_bytes, (long long)c->max_zip);
    return NULL;
  }
  char *path = brume_digest_dir_path(c->files, sha, ZIP_EXT);

  pthread_mutex_lock(&c->mu);
  for (;;) {
    if (brume_digest_dir_has(c->files, sha, ZIP_EXT, NULL)) {
      pthread_mutex_unlock(&c->mu);
      if (cached) *cached = true;
      return path;
    }
    flight *f = c->flights;
    while (f && strcmp(f->sha, sha) != 0) f = f->next;
    if (!f) break;
    /* Someone is fetching it: take their outcome. */
    f->waiters++;
    while (!f->done) pthread_cond_wait(&c->cv, &c->mu);
    brume_status code = f->code;
    brume_autofree char *msg = f->msg ? brume_xstrdup(f->msg) : NULL;
    if (--f->waiters == 0) {
      free(f->msg);
      free(f);
    }
    if (code != BRUME_OK) {
      pthread_mutex_unlock(&c->mu);
      brume_err_set(err, code, "%s", msg ? msg : "fetch failed");
      free(path);
      return NULL;
    }
    /* Fetched: the next round finds the file (unless it was removed meanwhile: fetch again). */
  }
  flight *f = brume_xcalloc(1, sizeof(*f));
  memcpy(f->sha, sha, sizeof(f->sha));
  f->next = c->flights;
  c->flights = f;
  pthread_mutex_unlock(&c->mu);

  brume_err *ferr = NULL;
  int rc = fetch(c, sha, url, size_bytes, &ferr);

  pthread_mutex_lock(&c->mu);
  for (flight **pp = &c->flights; *pp; pp = &(*pp)->next)
    if (*pp == f) {
      *pp = f->next;
      break;
    }
  f->done = true;
  f->code = rc == 0 ? BRUME_OK : (ferr ? ferr->code : BRUME_INTERNAL);
  f->msg = ferr ? brume_xstrdup(ferr->msg) : NULL;
  if (f->waiters == 0) {
    free(f->msg);
    free(f);
  } else {
    pthread_cond_broadcast(&c->cv);
  }
  pthread_mutex_unlock(&c->mu);
  if (rc < 0) {
    if (err && !*err)
      *err = ferr;
    else
      brume_err_free(ferr);
    free(path);
    return NULL;
  }
  return path;
}

void *brume_code_cache_read(const char *path, size_t *len, brume_err **err) {
  brume_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    brume_err_set(err, BRUME_INTERNAL, "code cache: open %s: %s", path, strerror(errno));
    return NULL;
  }
  size_t size = (size_t)st.st_size;
  unsigned char *buf = brume_xmalloc(size ? size : 1);
  for (size_t got = 0; got < size;) {
    ssize_t r = read(fd, buf + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      brume_err_set(err, BRUME_INTERNAL, "code cache: read %s: %s", path,
                    r < 0 ? strerror(errno) : "file shrank");
      free(buf);
      return NULL;
    }
    got += (size_t)r;
  }
  *len = size;
  return buf;
}

/* ---- the unpacked form ---- */

void brume_code_free(brume_code *code) {
  if (code == NULL) return;
  if (code->files) brume__guest_code__free_unpacked(code->files, NULL);
  free(code->zip);
  free(code);
}

/* Stores files as the unpacked form of sha's archive. Best effort: a failure is logged and the
 * next load unpacks the archive again. */
static void store_files(brume_code_cache *c, const char *sha, const Brume__GuestCode *files) {
  size_t len = brume__guest_code__get_packed_size(files);
  brume_autofree uint8_t *buf = brume_xmalloc(len ? len : 1);
  brume__guest_code__pack(files, buf);
  brume_autoptr(brume_err) err = NULL;
  if (brume_digest_dir_store(c->files, sha, FILES_EXT, buf, len, &err) < 0) {
    char q[512];
    brume_warn("Cannot store the unpacked function code.", "sha256=%s error=%s", sha,
               brume_log_quote(q, sizeof(q), err->msg));
  }
}

brume_code *brume_code_cache_load(brume_code_cache *c, const char *zip_path, brume_err **err) {
  /* zip_path is <dir>/<sha256>.zip, as brume_code_cache_get made it. */
  const char *base = strrchr(zip_path, '/');
  base = base ? base + 1 : zip_path;
  char sha[65];
  snprintf(sha, sizeof(sha), "%.64s", base);
  BRUME_ENSURE(brume_digest_dir_valid(sha) && strcmp(base + 64, ZIP_EXT) == 0);

  brume_code *code = brume_xcalloc(1, sizeof(*code));
  /* A stored form with no files says the archive goes as it is (it was tried before). */
  bool tried = false;
  size_t len = 0;
  brume_autofree uint8_t *packed = brume_digest_dir_read(c->files, sha, FILES_EXT, &len, NULL);
  if (packed) {
    code->files = brume__guest_code__unpack(NULL, len, packed);
    if (code->files && code->files->n_files > 0) return code;
    tried = code->files != NULL;
    if (code->files) brume__guest_code__free_unpacked(code->files, NULL);
    code->files = NULL;
  }
  code->zip = brume_code_cache_read(zip_path, &code->zip_len, err);
  if (code->zip == NULL) {
    brume_code_free(code);
    return NULL;
  }
  if (tried) return code;
  const char *why = NULL;
  code->files = brume_code_zip_unpack(code->zip, code->zip_len, (uint64_t)c->max_files, &why);
  if (code->files == NULL) {
    brume_info("The function code goes to the guest as its zip archive.", "file=%s reason=\"%s\"",
               zip_path, why);
    Brume__GuestCode none = BRUME__GUEST_CODE__INIT;
    store_files(c, sha, &none);
    return code;
  }
  free(code->zip);
  code->zip = NULL;
  code->zip_len = 0;
  store_files(c, sha, code->files);
  return code;
}
