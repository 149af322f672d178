/* Feeds arbitrary bytes to every parser of etcd's gateway JSON (common/etcd_json.h). Each must
 * either succeed or fail with an error, never crash, abort or leak; results are freed here so
 * that LeakSanitizer sees any leak. Seeds: corpus/etcd_json/, answers captured from etcd 3.4. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *body = (const char *)data;
  brume_err *err = NULL;

  brume_status code;
  char *msg = NULL;
  if (brume_etcd_json_parse_error(body, size, &code, &msg)) free(msg);

  brume_etcd_range_free(brume_etcd_json_parse_range(body, size, &err));
  brume_err_clear(&err);

  int64_t a, b;
  brume_etcd_json_parse_put(body, size, &a, &err);
  brume_err_clear(&err);
  brume_etcd_json_parse_delete(body, size, &a, &b, &err);
  brume_err_clear(&err);
  brume_etcd_json_parse_lease_grant(body, size, &a, &b, &err);
  brume_err_clear(&err);
  brume_etcd_json_parse_lease_keepalive(body, size, &a, &err);
  brume_err_clear(&err);

  brume_etcd_txn_result_free(brume_etcd_json_parse_txn(body, size, &err));
  brume_err_clear(&err);

  brume_etcd_watch_chunk chunk;
  brume_etcd_json_parse_watch_chunk(body, size, &chunk, &err);
  brume_etcd_json_watch_chunk_clear(&chunk);
  brume_err_clear(&err);

  char *out = NULL;
  size_t out_len;
  if (brume_etcd_json_b64_decode(body, size, &out, &out_len) == 0) {
    /* What decodes must encode back to the same bytes, padding aside. */
    char *again = brume_etcd_json_b64_encode(out, out_len);
    char *back = NULL;
    size_t back_len;
    if (brume_etcd_json_b64_decode(again, strlen(again), &back, &back_len) != 0 ||
        back_len != out_len || memcmp(back, out, out_len) != 0)
      abort();
    free(back);
    free(again);
    free(out);
  }
  return 0;
}
