#include "code_store.h"

#include <string.h>

#include "code_zip.h"
#include "digest_dir.h"
#include "log.h"

#define ROUTE "/code/"
#define EXT ".zip"

struct brume_code_store {
  brume_digest_dir *dir;
};

brume_code_store *brume_code_store_new(const char *dir, brume_err **err) {
  brume_digest_dir *d = brume_digest_dir_open(dir, err);
  if (d == NULL) {
    brume_err_wrap(err, "code store");
    return NULL;
  }
  brume_code_store *s = brume_xcalloc(1, sizeof(*s));
  s->dir = d;
  return s;
}

void brume_code_store_free(brume_code_store *s) {
  if (s == NULL) return;
  brume_digest_dir_free(s->dir);
  free(s);
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
  brume_digest_dir_sha256(zip, len, sha);
  /* The same upload is stored once and never rewritten (rc 0). A short archive under its digest
   * would be fetched and refused by workers forever: the store is durable before visible. */
  int rc = brume_digest_dir_store(s->dir, sha, EXT, zip, len, err);
  if (rc < 0) return brume_err_wrap(err, "code store");
  memcpy(sha256, sha, sizeof(sha));
  if (rc == 1) brume_info("Stored function code.", "sha256=%s bytes=%zu", sha, len);
  return 0;
}

bool brume_code_store_has(brume_code_store *s, const char *sha256, uint64_t *size) {
  return brume_digest_dir_has(s->dir, sha256, EXT, size);
}

/* GET /code/<sha256>: the archive, whole. Nothing but a 64-hex name is ever opened, so no path
 * under /code/ can reach another file. */
static void serve_code(const brume_http_request *req, brume_http_response *resp, void *user) {
  brume_code_store *s = user;
  brume_autoptr(brume_err) err = NULL;
  size_t size = 0;
  brume_autofree void *buf =
      brume_digest_dir_read(s->dir, req->path + strlen(ROUTE), EXT, &size, &err);
  if (buf) {
    brume_http_reply(resp, 200, "application/zip", buf, size);
  } else if (err->code == BRUME_NOT_FOUND) {
    brume_http_replyf(resp, 404, "text/plain", "No such code.\n");
  } else {
    char q[512];
    brume_http_replyf(resp, 500, "text/plain", "The code cannot be read.\n");
    brume_error("Cannot read stored function code.", "error=%s",
                brume_log_quote(q, sizeof(q), err->msg));
  }
}

void brume_code_store_serve(brume_code_store *s, brume_http *http) {
  brume_http_route(http, "GET", ROUTE, serve_code, s);
}
