/* Feeds arbitrary bytes to the parsers of the values placement reads from etcd: a worker's
 * registration (placement/hosts.h, brume_hosts_update) and a sandbox record
 * (placement/sandbox_store.h). Each must accept or refuse with INVALID_ARGUMENT, never crash,
 * abort or leak; a registration accepted must leave a host whose figures the choice can use, and a
 * record accepted must survive its own JSON round trip. Seeds: corpus/placement_values/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hosts.h"
#include "sandbox_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (text == NULL) return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  brume_err *err = NULL;

  brume_hosts *h = brume_hosts_new(4);
  if (brume_hosts_update(h, "w1", text, &err) == 0) {
    if (brume_hosts_count(h) != 1) abort();
    (void)brume_hosts_free_mib(h, "w1");
    (void)brume_hosts_free_vcpu_milli(h, "w1");
    (void)brume_hosts_choose(h, 128, 72, NULL, NULL, &err);
    brume_err_clear(&err);
  } else if (err == NULL || err->code != BRUME_INVALID_ARGUMENT) {
    abort();
  }
  brume_err_clear(&err);
  brume_hosts_free(h);

  brume_sandbox_record r = {0};
  if (brume_sandbox_record_parse(text, &r, &err) == 0) {
    r.id = strdup("sb");
    char *json = brume_sandbox_record_json(&r);
    brume_sandbox_record back = {0};
    if (brume_sandbox_record_parse(json, &back, &err) != 0 || strcmp(back.owner, r.owner) != 0 ||
        back.memory_mib != r.memory_mib || back.created_unix_ms != r.created_unix_ms)
      abort();
    free(json);
    free(back.owner);
    free(back.host_id);
    free(back.function);
    free(r.id);
    free(r.owner);
    free(r.host_id);
    free(r.function);
  } else if (err == NULL || err->code != BRUME_INVALID_ARGUMENT) {
    abort();
  }
  brume_err_clear(&err);
  free(text);
  return 0;
}
