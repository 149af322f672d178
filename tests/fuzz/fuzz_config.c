/* Feeds arbitrary bytes to the configuration loader (common/config.h): first as a config file
 * (brume_config_parse), then split on NUL bytes as a command line (brume_config_load). Either
 * must succeed or report errors, never crash, abort or leak. Seeds: corpus/config/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static struct {
  brume_common_config common;
  int64_t i, d, z;
  bool b;
  int e;
  char *s, *p, *secret;
} cfg;

static const char *const words[] = {"one", "two", "three", NULL};

static const brume_opt opts[] = {
    BRUME_OPT_INT("count", &cfg.i, -5, 100, "1", "an int"),
    BRUME_OPT_DURATION("ttl", &cfg.d, 0, BRUME_MINUTES(5), "10s", "a duration"),
    BRUME_OPT_SIZE("max_size", &cfg.z, BRUME_KIB, INT64_MAX, "1MiB", "a size"),
    BRUME_OPT_BOOL("flag", &cfg.b, "false", "a bool"),
    BRUME_OPT_ENUM("word", &cfg.e, words, "two", "an enum"),
    BRUME_OPT_STRING("name", &cfg.s, "x", "a string"),
    BRUME_OPT_PATH("dir", &cfg.p, NULL, "a path"),
    BRUME_OPT_STRING("secret", &cfg.secret, NULL, "a secret", .flags = BRUME_OPT_SECRET),
};

static const brume_config_spec spec = {
    .name = "fuzz",
    .common = &cfg.common,
    .default_listen = "127.0.0.1:1",
    .default_http_listen = "127.0.0.1:2",
    .opts = opts,
    .n_opts = BRUME_ARRAY_LEN(opts),
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  brume_err *err = NULL;
  brume_config_set_defaults(&spec);
  brume_config_parse(&spec, "fuzz.conf", (const char *)data, size, &err);
  brume_err_clear(&err);

  /* The same bytes as argv. Arguments that would read files or print (--config, --help,
   * --check-config) are left out: they are not the parser under test. */
  char *copy = malloc(size + 1);
  memcpy(copy, data, size);
  copy[size] = '\0';
  char *argv[64] = {"fuzz"};
  int argc = 1;
  for (char *p = copy; p < copy + size + 1 && argc < 63; p += strlen(p) + 1) {
    if (strstr(p, "config") || strcmp(p, "--help") == 0 || strcmp(p, "-h") == 0) continue;
    argv[argc++] = p;
  }
  brume_config_load(&spec, argc, argv, &err);
  brume_err_clear(&err);
  free(copy);
  brume_config_free(&spec);
  return 0;
}
