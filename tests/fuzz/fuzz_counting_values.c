/* Feeds arbitrary bytes to the parsers of the values counting reads from etcd, which operators
 * may write by hand: the three kinds of limits (counting/limits_store.h) and the scaling bucket
 * kept in etcd (counting/bucket.h). Each must accept or refuse with an error, never crash, abort
 * or leak; a bucket it accepts must keep its invariants through a take and a refill. Seeds:
 * corpus/counting_values/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "bucket.h"
#include "limits_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  brume_err *err = NULL;
  const brume_limits_kind kinds[] = {BRUME_LIMITS_CLUSTER, BRUME_LIMITS_ACCOUNT,
                                     BRUME_LIMITS_FUNCTION};
  for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
    if (brume_limits_check_value(kinds[i], text, size, &err) < 0 &&
        (err == NULL || err->code != BRUME_INVALID_ARGUMENT))
      abort();
    brume_err_clear(&err);
  }

  brume_bucket b;
  if (brume_bucket_from_json(&b, text, size, &err) == 0) {
    int64_t retry = 0;
    int64_t t = b.latest_ms;
    (void)brume_bucket_take(&b, t, &retry);
    if (brume_bucket_level(&b, t + 3600 * 1000) > b.p.capacity) abort();
    char *again = brume_bucket_to_json(&b);
    free(again);
  } else if (err == NULL || err->code != BRUME_INVALID_ARGUMENT) {
    abort();
  }
  brume_err_clear(&err);
  return 0;
}
