/* Feeds arbitrary bytes to brume-init's Runtime API parsing (worker-agent/guest/init/http.h and
 * the error-document reader): a request head, then its chunked body, the route of its target,
 * and the body as a posted error document. None may crash, read out of bounds or leak; what a
 * parse claims must hold (head_len inside the input, a route's id inside the target). Seeds:
 * corpus/runtime_api_http/, requests as runtimes send them. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "runtime_api.h"

#define MAX_BODY 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  init_http_request req;
  init_http_status st = init_http_parse_head(text, size, MAX_BODY, &req);
  if (st == INIT_HTTP_BAD && (req.bad_status < 400 || req.bad_reason == NULL)) abort();
  if (st != INIT_HTTP_DONE) return 0;
  if (req.head_len > size || req.method.n == 0 || req.target.n == 0) abort();

  init_http_str id;
  init_http_route route = init_http_route_target(req.target, &id);
  if (id.n > 0 && (route != INIT_HTTP_ROUTE_RESPONSE && route != INIT_HTTP_ROUTE_ERROR)) abort();
  if (id.n > 0 && (id.p < req.target.p || id.p + id.n > req.target.p + req.target.n)) abort();

  const uint8_t *body = data + req.head_len;
  size_t body_len = size - req.head_len;
  init_buf decoded = {0};
  if (req.chunked) {
    /* Fed in two pieces, as bytes arrive: the split must not matter. */
    init_http_chunked c = {0};
    size_t half = body_len / 2, used1 = 0, used2 = 0;
    int bad = 0;
    st = init_http_chunked_feed(&c, (const char *)body, half, MAX_BODY, &decoded, &used1, &bad);
    if (used1 > half) abort();
    if (st == INIT_HTTP_INCOMPLETE) {
      if (used1 != half) abort();
      st = init_http_chunked_feed(&c, (const char *)body + half, body_len - half, MAX_BODY,
                                  &decoded, &used2, &bad);
      if (used2 > body_len - half) abort();
    }
    if (init_buf_pending(&decoded) > MAX_BODY) abort();
    if (st == INIT_HTTP_BAD && bad < 400) abort();
    body = init_buf_head(&decoded);
    body_len = init_buf_pending(&decoded);
  } else if (req.content_length < body_len) {
    body_len = (size_t)req.content_length;
  }

  char *type = NULL, *message = NULL;
  init_rtapi_parse_error_doc(body, body_len, &type, &message);
  free(type);
  free(message);
  init_buf_free(&decoded);
  return 0;
}
