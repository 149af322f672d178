/* Tests for worker-agent/code_cache against a local HTTP server (common/http.h on 127.0.0.1,
 * port 0) that serves byte buffers: fetch, verify, store, hit without fetching, every refusal
 * leaving nothing behind, one fetch for concurrent requests, and the zip size reader. */
#include <ctype.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "code_cache.h"
#include "http.h"
#include "log.h"
#include "proc.h"
#include "testutil.h"

/* ---- a zip writer, enough for tests (stored entries) ---- */

typedef struct buf {
  unsigned char *p;
  size_t len;
} buf;

static void put(buf *b, const void *p, size_t n) {
  if (!n) return;
  b->p = brume_xrealloc(b->p, b->len + n + 1);
  memcpy(b->p + b->len, p, n);
  b->len += n;
}
static void put16(buf *b, uint32_t v) {
  put(b, (unsigned char[]){v, v >> 8}, 2);
}
static void put32(buf *b, uint32_t v) {
  put(b, (unsigned char[]){v, v >> 8, v >> 16, v >> 24}, 4);
}
static void put64(buf *b, uint64_t v) {
  put32(b, (uint32_t)v);
  put32(b, (uint32_t)(v >> 32));
}

static uint32_t crc32(const unsigned char *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
  }
  return ~c;
}

typedef struct entry {
  const char *name;
  const char *data;
  uint64_t claimed_size; /* 0: the data's; else what the central directory claims */
  bool zip64;            /* put the uncompressed size in a zip64 extra field */
} entry;

/* A zip of entries; zip64_eocd also writes a zip64 end record (with 0xffff in the classic one). */
static buf make_zip(const entry *e, size_t n, bool zip64_eocd, const char *comment) {
  buf z = {0}, cd = {0};
  for (size_t i = 0; i < n; i++) {
    size_t dlen = strlen(e[i].data), nlen = strlen(e[i].name);
    uint32_t crc = crc32((const unsigned char *)e[i].data, dlen);
    uint32_t off = (uint32_t)z.len;
    put32(&z, 0x04034b50);
    put16(&z, 20), put16(&z, 0), put16(&z, 0), put16(&z, 0), put16(&z, 0);
    put32(&z, crc), put32(&z, (uint32_t)dlen), put32(&z, (uint32_t)dlen);
    put16(&z, (uint32_t)nlen), put16(&z, 0);
    put(&z, e[i].name, nlen);
    put(&z, e[i].data, dlen);
    uint64_t usize = e[i].claimed_size ? e[i].claimed_size : dlen;
    put32(&cd, 0x02014b50);
    put16(&cd, 0x031e), put16(&cd, 20), put16(&cd, 0), put16(&cd, 0), put16(&cd, 0), put16(&cd, 0);
    put32(&cd, crc), put32(&cd, (uint32_t)dlen);
    put32(&cd, e[i].zip64 ? 0xffffffffu : (uint32_t)usize);
    put16(&cd, (uint32_t)nlen), put16(&cd, e[i].zip64 ? 12 : 0), put16(&cd, 0);
    put16(&cd, 0), put16(&cd, 0), put32(&cd, 0100755u << 16), put32(&cd, off);
    put(&cd, e[i].name, nlen);
    if (e[i].zip64) {
      put16(&cd, 0x0001), put16(&cd, 8);
      put64(&cd, usize);
    }
  }
  uint32_t cd_off = (uint32_t)z.len;
  put(&z, cd.p, cd.len);
  if (zip64_eocd) {
    uint64_t z64 = z.len;
    put32(&z, 0x06064b50), put64(&z, 44), put16(&z, 45), put16(&z, 45), put32(&z, 0), put32(&z, 0);
    put64(&z, n), put64(&z, n), put64(&z, cd.len), put64(&z, cd_off);
    put32(&z, 0x07064b50), put32(&z, 0), put64(&z, z64), put32(&z, 1);
  }
  size_t clen = comment ? strlen(comment) : 0;
  put32(&z, 0x06054b50);
  put16(&z, 0), put16(&z, 0);
  put16(&z, zip64_eocd ? 0xffff : (uint32_t)n), put16(&z, zip64_eocd ? 0xffff : (uint32_t)n);
  put32(&z, (uint32_t)cd.len), put32(&z, zip64_eocd ? 0xffffffffu : cd_off);
  put16(&z, (uint32_t)clen);
  if (clen) put(&z, comment, clen);
  free(cd.p);
  return z;
}

static void sha256_hex(const void *p, size_t n, char out[65]) {
  unsigned char d[32];
  unsigned dl = 0;
  EVP_Digest(p, n, d, &dl, EVP_sha256(), NULL);
  for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* ---- the server ---- */

typedef struct blob {
  const char *path;
  buf data;
  int delay_ms;
  atomic_int hits;
} blob;

#define MAX_BLOBS 8
static blob blobs[MAX_BLOBS];
static size_t n_blobs;

static blob *add_blob(const char *path, buf data, int delay_ms) {
  blob *b = &blobs[n_blobs++];
  b->path = path;
  b->data = data;
  b->delay_ms = delay_ms;
  atomic_store(&b->hits, 0);
  return b;
}

static void serve(const brume_http_request *req, brume_http_response *resp, void *user) {
  (void)user;
  for (size_t i = 0; i < n_blobs; i++) {
    if (strcmp(req->path, blobs[i].path) != 0) continue;
    atomic_fetch_add(&blobs[i].hits, 1);
    if (blobs[i].delay_ms) usleep((useconds_t)blobs[i].delay_ms * 1000);
    brume_http_reply(resp, 200, "application/zip", blobs[i].data.p, blobs[i].data.len);
    return;
  }
  brume_http_replyf(resp, 404, "text/plain", "no such code\n");
}

typedef struct fixture {
  brume_http *http;
  char *dir;
  char base[64];
  brume_code_cache *cache;
} fixture;

static fixture fx;

static char *url(const char *path) {
  return brume_xasprintf("%s%s", fx.base, path);
}

static int setup(void **state) {
  (void)state;
  brume_err *err = NULL;
  fx.http = brume_http_start("127.0.0.1:0", NULL, &err);
  assert_non_null(fx.http);
  brume_http_route(fx.http, "GET", "/code/", serve, NULL);
  snprintf(fx.base, sizeof(fx.base), "http://127.0.0.1:%d", brume_http_port(fx.http));
  fx.dir = brume_test_tmpdir("code-cache");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  brume_http_stop(fx.http);
  brume_test_rmtree(fx.dir);
  free(fx.dir);
  for (size_t i = 0; i < n_blobs; i++) free(blobs[i].data.p);
  n_blobs = 0;
  return 0;
}

/* A fresh cache in a fresh subdirectory (limits in bytes, 0 = defaults). */
static brume_code_cache *new_cache(const char *sub, int64_t max_zip, int64_t max_unzipped) {
  char *d = brume_xasprintf("%s/%s", fx.dir, sub);
  brume_code_cache_opts o = {
      .dir = d, .max_zip_bytes = max_zip, .max_unzipped_bytes = max_unzipped, .timeout_ms = 5000};
  brume_err *err = NULL;
  brume_code_cache *c = brume_code_cache_new(&o, &err);
  if (!c) fail_msg("new cache: %s", err->msg);
  free(d);
  return c;
}

/* Files in dir/sub, hidden ones (temporaries) included. */
static int count_files(const char *sub) {
  char *d = brume_xasprintf("%s/%s", fx.dir, sub);
  int n = brume_test_count_files(d);
  free(d);
  return n;
}

static void test_fetch_store_hit(void **state) {
  (void)state;
  entry es[] = {{"bootstrap", "#!/bin/sh\necho hi\n", 0, false}, {"lib/a.txt", "aaaa", 0, false}};
  buf z = make_zip(es, 2, false, NULL);
  char sha[65];
  sha256_hex(z.p, z.len, sha);
  blob *b = add_blob("/code/good", z, 0);
  brume_code_cache *c = new_cache("hit", 0, 0);
  char *u = url("/code/good");

  bool cached = true;
  brume_err *err = NULL;
  char *path = brume_code_cache_get(c, sha, u, z.len, &cached, &err);
  if (!path) fail_msg("%s", err->msg);
  assert_false(cached);
  char *want = brume_xasprintf("%s/hit/%s.zip", fx.dir, sha);
  assert_string_equal(path, want);
  size_t len = 0;
  void *data = brume_code_cache_read(path, &len, &err);
  assert_non_null(data);
  assert_int_equal(len, z.len);
  assert_memory_equal(data, z.p, z.len);
  free(data);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  free(path);
  assert_int_equal(atomic_load(&b->hits), 1);

  /* The second request is served from disk: no fetch, even with a URL that would fail, and an
   * upper-case digest names the same file. */
  char upper[65];
  for (int i = 0; i < 65; i++) upper[i] = (char)toupper((unsigned char)sha[i]);
  path = brume_code_cache_get(c, upper, "http://127.0.0.1:1/nothing", 0, &cached, &err);
  assert_non_null(path);
  assert_true(cached);
  assert_string_equal(path, want);
  assert_int_equal(atomic_load(&b->hits), 1);
  assert_int_equal(count_files("hit"), 1);
  free(path);
  free(want);
  free(u);
  brume_code_cache_free(c);
}

static void expect_error(brume_code_cache *c, const char *sha, const char *u, uint64_t size,
                         brume_status code, const char *needle) {
  brume_err *err = NULL;
  bool cached = true;
  char *path = brume_code_cache_get(c, sha, u, size, &cached, &err);
  if (path) fail_msg("got %s, want %s", path, brume_status_name(code));
  assert_false(cached);
  if (err->code != code || !strstr(err->msg, needle))
    fail_msg("got %s \"%s\", want %s with \"%s\"", brume_status_name(err->code), err->msg,
             brume_status_name(code), needle);
  brume_err_free(err);
}

static void test_refusals(void **state) {
  (void)state;
  entry es[] = {{"bootstrap", "#!/bin/sh\n", 0, false}};
  buf z = make_zip(es, 1, false, NULL);
  char sha[65], other[65];
  sha256_hex(z.p, z.len, sha);
  sha256_hex("x", 1, other);
  blob *b = add_blob("/code/ok", z, 0);
  brume_code_cache *c = new_cache("refuse", 1024, 4096);
  char *u = url("/code/ok");

  /* The digest does not match what came: DATA_LOSS, and nothing stored. */
  expect_error(c, other, u, 0, BRUME_DATA_LOSS, "does not match its digest: expected sha256");
  assert_int_equal(count_files("refuse"), 0);
  /* Nor does the announced size. */
  expect_error(c, sha, u, z.len + 1, BRUME_DATA_LOSS, "not the");
  assert_int_equal(count_files("refuse"), 0);
  /* Malformed requests. */
  expect_error(c, "abc", u, 0, BRUME_INVALID_ARGUMENT, "is not 64 hex digits");
  expect_error(c, NULL, u, 0, BRUME_INVALID_ARGUMENT, "is not 64 hex digits");
  char bad[65];
  memcpy(bad, sha, 65);
  bad[10] = 'g';
  expect_error(c, bad, u, 0, BRUME_INVALID_ARGUMENT, "is not 64 hex digits");
  expect_error(c, sha, "file:///etc/passwd", 0, BRUME_INVALID_ARGUMENT, "is not http(s)");
  expect_error(c, sha, NULL, 0, BRUME_INVALID_ARGUMENT, "is not http(s)");
  /* Announced over the limit: refused before any fetch. */
  int hits = atomic_load(&b->hits);
  expect_error(c, sha, u, 2048, BRUME_INVALID_ARGUMENT, "over the 1024-byte limit");
  assert_int_equal(atomic_load(&b->hits), hits);
  /* Cannot be fetched. */
  char *missing = url("/code/missing");
  expect_error(c, sha, missing, 0, BRUME_UNAVAILABLE, "HTTP 404");
  free(missing);
  int port = brume_test_free_port();
  char *refused = brume_xasprintf("http://127.0.0.1:%d/code/ok", port);
  expect_error(c, sha, refused, 0, BRUME_UNAVAILABLE, "fetch code");
  free(refused);
  assert_int_equal(count_files("refuse"), 0);

  /* Bigger than the zip limit when it comes (nothing announced). */
  char big_data[3000];
  memset(big_data, 'b', sizeof(big_data) - 1);
  big_data[sizeof(big_data) - 1] = '\0';
  entry big[] = {{"big", big_data, 0, false}};
  buf zb = make_zip(big, 1, false, NULL);
  char sha_big[65];
  sha256_hex(zb.p, zb.len, sha_big);
  add_blob("/code/big", zb, 0);
  char *ub = url("/code/big");
  expect_error(c, sha_big, ub, 0, BRUME_INVALID_ARGUMENT, "over the 1024-byte limit");
  free(ub);

  /* Small, but it unpacks to more than the limit (the central directory says 1 MiB). */
  entry bomb[] = {{"bomb", "tiny", 1 << 20, false}};
  buf zz = make_zip(bomb, 1, false, NULL);
  char sha_bomb[65];
  sha256_hex(zz.p, zz.len, sha_bomb);
  add_blob("/code/bomb", zz, 0);
  char *uz = url("/code/bomb");
  expect_error(c, sha_bomb, uz, 0, BRUME_INVALID_ARGUMENT,
               "unpacks to 1048576 bytes, over the 4096-byte limit");
  free(uz);

  /* Not a zip at all, though the digest matches. */
  buf junk = {0};
  put(&junk, "this is not a zip archive, just text", 36);
  char sha_junk[65];
  sha256_hex(junk.p, junk.len, sha_junk);
  add_blob("/code/junk", junk, 0);
  char *uj = url("/code/junk");
  expect_error(c, sha_junk, uj, 0, BRUME_INVALID_ARGUMENT, "not a valid zip");
  free(uj);
  assert_int_equal(count_files("refuse"), 0);

  free(u);
  brume_code_cache_free(c);
}

typedef struct racer {
  brume_code_cache *c;
  const char *sha, *url;
  pthread_barrier_t *start;
  char *path;
  bool cached;
  brume_err *err;
} racer;

static void *race(void *p) {
  racer *r = p;
  pthread_barrier_wait(r->start);
  r->path = brume_code_cache_get(r->c, r->sha, r->url, 0, &r->cached, &r->err);
  return NULL;
}

static void run_racers(brume_code_cache *c, const char *sha, const char *u, racer *rs, int n) {
  pthread_t t[16];
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)n);
  for (int i = 0; i < n; i++) {
    rs[i] = (racer){.c = c, .sha = sha, .url = u, .start = &start};
    pthread_create(&t[i], NULL, race, &rs[i]);
  }
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&start);
}

static void test_concurrent_requests_fetch_once(void **state) {
  (void)state;
  entry es[] = {{"bootstrap", "#!/bin/sh\necho slow\n", 0, false}};
  buf z = make_zip(es, 1, false, NULL);
  char sha[65];
  sha256_hex(z.p, z.len, sha);
  blob *b = add_blob("/code/slow", z, 300);
  brume_code_cache *c = new_cache("race", 0, 0);
  char *u = url("/code/slow");
  enum { N = 8 };
  racer rs[N];
  run_racers(c, sha, u, rs, N);
  assert_int_equal(atomic_load(&b->hits), 1);
  int fetched = 0;
  for (int i = 0; i < N; i++) {
    if (!rs[i].path) fail_msg("racer %d: %s", i, rs[i].err->msg);
    if (!rs[i].cached) fetched++;
    free(rs[i].path);
  }
  assert_int_equal(fetched, 1);
  assert_int_equal(count_files("race"), 1);

  /* A failing fetch is shared too: every waiter gets its error, and it was tried once. */
  char wrong[65];
  sha256_hex("nope", 4, wrong);
  run_racers(c, wrong, u, rs, N);
  assert_int_equal(atomic_load(&b->hits), 2);
  for (int i = 0; i < N; i++) {
    assert_null(rs[i].path);
    assert_int_equal(rs[i].err->code, BRUME_DATA_LOSS);
    brume_err_free(rs[i].err);
  }
  assert_int_equal(count_files("race"), 1);
  free(u);
  brume_code_cache_free(c);
}

static void test_leftover_temporaries(void **state) {
  (void)state;
  char *d = brume_xasprintf("%s/left", fx.dir);
  assert_int_equal(mkdir(d, 0700), 0);
  char *tmp = brume_xasprintf("%s/.tmp-deadbeef-1-1", d);
  char *keep = brume_xasprintf("%s/%064d.zip", d, 0);
  FILE *f = fopen(tmp, "w");
  fclose(f);
  f = fopen(keep, "w");
  fclose(f);
  brume_code_cache *c = new_cache("left", 0, 0);
  assert_int_equal(access(tmp, F_OK), -1);
  assert_int_equal(access(keep, F_OK), 0);
  brume_code_cache_free(c);
  free(tmp);
  free(keep);
  free(d);

  brume_err *err = NULL;
  brume_code_cache_opts o = {0};
  assert_null(brume_code_cache_new(&o, &err));
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_free(err);
}

static void expect_size(buf z, int rc, uint64_t want) {
  uint64_t total = 12345;
  brume_err *err = NULL;
  int got = brume_code_zip_unzipped_size(z.p ? z.p : (unsigned char *)"", z.len, &total, &err);
  if (got != rc) fail_msg("rc %d, want %d (%s)", got, rc, err ? err->msg : "no error");
  if (rc == 0)
    assert_int_equal(total, want);
  else
    assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_free(err);
}

static void test_zip_sizes(void **state) {
  (void)state;
  buf z = make_zip(NULL, 0, false, NULL); /* an empty archive is an archive */
  expect_size(z, 0, 0);
  free(z.p);
  entry es[] = {
      {"a", "12345", 0, false}, {"dir/b", "", 0, false}, {"c", "xyz", 5000000000ull, true}};
  z = make_zip(es, 2, false, "a comment");
  expect_size(z, 0, 5);
  free(z.p);
  z = make_zip(es, 3, false, NULL);
  expect_size(z, 0, 5000000005ull);
  z.len -= 10; /* cut into the end record */
  expect_size(z, -1, 0);
  free(z.p);
  z = make_zip(es, 3, true, NULL); /* zip64 end of central directory */
  expect_size(z, 0, 5000000005ull);
  /* Every truncation of a valid archive is refused or, if the end record is still whole,
   * read without going out of bounds (ASan would say). */
  for (size_t cut = 0; cut < z.len; cut++) {
    uint64_t t;
    unsigned char *copy = brume_xmalloc(cut ? cut : 1);
    memcpy(copy, z.p, cut);
    brume_code_zip_unzipped_size(copy, cut, &t, NULL);
    free(copy);
  }
  /* And every single-byte corruption. */
  for (size_t i = 0; i < z.len; i++) {
    uint64_t t;
    unsigned char saved = z.p[i];
    z.p[i] ^= 0xff;
    brume_code_zip_unzipped_size(z.p, z.len, &t, NULL);
    z.p[i] = saved;
  }
  free(z.p);
  buf junk = {0};
  put(&junk, "PK\x05\x06", 4);
  expect_size(junk, -1, 0);
  free(junk.p);
}

static const Brume__GuestCodeFile *find_file(const Brume__GuestCode *code, const char *path) {
  for (size_t i = 0; i < code->n_files; i++)
    if (strcmp(code->files[i]->path, path) == 0) return code->files[i];
  return NULL;
}

/* A zip made by the zip CLI (deflated entries, a directory, a symlink, modes), unpacked on the
 * host; then damaged, over the limit, empty. */
static void test_unpack_zip(void **state) {
  (void)state;
  char *cmd = brume_xasprintf(
      "set -e; cd %s && rm -rf src && mkdir -p src/lib/ro && cd src && "
      "yes hello | head -c 100000 > lib/big.txt && printf '#!/bin/sh\\n' > bootstrap && "
      "chmod 0750 bootstrap && chmod 0640 lib/big.txt && chmod 0555 lib/ro && "
      "ln -s lib/big.txt link && zip -q -r -y ../cli.zip bootstrap lib link",
      fx.dir);
  assert_int_equal(system(cmd), 0);
  free(cmd);
  char *zpath = brume_xasprintf("%s/cli.zip", fx.dir);
  size_t len = 0;
  unsigned char *z = brume_code_cache_read(zpath, &len, NULL);
  assert_non_null(z);
  const char *why = NULL;
  Brume__GuestCode *code = brume_code_zip_unpack(z, len, 1 << 20, &why);
  if (!code) fail_msg("%s", why);
  const Brume__GuestCodeFile *f = find_file(code, "bootstrap");
  assert_non_null(f);
  assert_int_equal(f->type, BRUME__GUEST_CODE_FILE__TYPE__REGULAR);
  assert_int_equal(f->mode, 0750);
  assert_int_equal(f->data.len, 10);
  assert_memory_equal(f->data.data, "#!/bin/sh\n", 10);
  f = find_file(code, "lib/big.txt");
  assert_non_null(f);
  assert_int_equal(f->mode, 0640);
  assert_int_equal(f->data.len, 100000);
  assert_memory_equal(f->data.data, "hello\nhello\n", 12);
  f = find_file(code, "lib/ro");
  assert_non_null(f);
  assert_int_equal(f->type, BRUME__GUEST_CODE_FILE__TYPE__DIRECTORY);
  assert_int_equal(f->mode, 0555);
  f = find_file(code, "link");
  assert_non_null(f);
  assert_int_equal(f->type, BRUME__GUEST_CODE_FILE__TYPE__SYMLINK);
  assert_int_equal(f->data.len, strlen("lib/big.txt"));
  assert_memory_equal(f->data.data, "lib/big.txt", f->data.len);
  brume__guest_code__free_unpacked(code, NULL);

  /* Over the limit, or damaged (a flipped byte in the deflated data fails its CRC). */
  assert_null(brume_code_zip_unpack(z, len, 50000, &why));
  assert_non_null(strstr(why, "size limit"));
  unsigned char *bad = brume_xmalloc(len);
  memcpy(bad, z, len);
  for (size_t i = 0; i + 4 < len; i++) /* the big file's data: after its local header */
    if (memcmp(bad + i, "lib/big.txt", 11) == 0) {
      bad[i + 11 + 200] ^= 0x55;
      break;
    }
  assert_null(brume_code_zip_unpack(bad, len, 1 << 20, &why));
  assert_null(brume_code_zip_unpack("not a zip", 9, 1 << 20, &why));
  buf empty = make_zip(NULL, 0, false, NULL);
  assert_null(brume_code_zip_unpack(empty.p, empty.len, 1 << 20, &why));
  entry dotdot[] = {{"../evil", "x", 0, false}};
  buf dz = make_zip(dotdot, 1, false, NULL);
  assert_null(brume_code_zip_unpack(dz.p, dz.len, 1 << 20, &why));
  free(dz.p);
  free(empty.p);
  free(bad);
  free(z);
  free(zpath);
}

/* brume_code_cache_load: unpacked once per digest and stored as <sha>.code; the archive itself
 * when the files are over the limit (remembered). */
static void test_load(void **state) {
  (void)state;
  entry es[] = {{"bootstrap", "#!/bin/sh\necho hi\n", 0, false}, {"lib/a.txt", "aaaa", 0, false}};
  buf z = make_zip(es, 2, false, NULL);
  char sha[65];
  sha256_hex(z.p, z.len, sha);
  add_blob("/code/load", z, 0);
  char *u = url("/code/load");
  brume_err *err = NULL;
  for (int small = 0; small < 2; small++) {
    char *d = brume_xasprintf("%s/load%d", fx.dir, small);
    brume_code_cache_opts o = {.dir = d, .timeout_ms = 5000, .max_files_bytes = small ? 10 : 0};
    brume_code_cache *c = brume_code_cache_new(&o, &err);
    assert_non_null(c);
    char *path = brume_code_cache_get(c, sha, u, z.len, NULL, &err);
    assert_non_null(path);
    for (int round = 0; round < 2; round++) {
      brume_code *code = brume_code_cache_load(c, path, &err);
      assert_non_null(code);
      if (small) {
        assert_null(code->files);
        assert_int_equal(code->zip_len, z.len);
        assert_memory_equal(code->zip, z.p, z.len);
      } else {
        assert_null(code->zip);
        assert_non_null(code->files);
        assert_int_equal(code->files->n_files, 2);
        assert_string_equal(code->files->files[0]->path, "bootstrap");
        assert_int_equal(code->files->files[0]->mode, 0755);
        assert_int_equal(code->files->files[1]->data.len, 4);
      }
      brume_code_free(code);
      char *stored = brume_xasprintf("%s/%s.code", d, sha);
      struct stat st;
      assert_int_equal(stat(stored, &st), 0);
      assert_int_equal(st.st_mode & 0777, 0600);
      assert_true(small ? st.st_size == 0 : st.st_size > 0);
      free(stored);
    }
    if (!small) {
      /* The stored form is what a later load reads: not the archive again. */
      assert_int_equal(truncate(path, 0), 0);
      brume_code *code = brume_code_cache_load(c, path, &err);
      assert_non_null(code);
      assert_non_null(code->files);
      brume_code_free(code);
    }
    free(path);
    brume_code_cache_free(c);
    free(d);
  }
  free(u);
}

int main(void) {
  brume_log_init("test-code-cache", BRUME_LOG_WARN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fetch_store_hit),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_concurrent_requests_fetch_once),
      cmocka_unit_test(test_leftover_temporaries),
      cmocka_unit_test(test_zip_sizes),
      cmocka_unit_test(test_unpack_zip),
      cmocka_unit_test(test_load),
  };
  return cmocka_run_group_tests_name("worker_code_cache", tests, setup, teardown);
}
