/* Configuration: one table per daemon drives the config file, the flags, --help and
 * --check-config (Redis's static_configs[], OpenBSD's vmd -n).
 *
 * A daemon declares its options as a static table of rows built with the BRUME_OPT_* macros
 * below; each row names the variable it sets, so the macros check the variable's C type at
 * compile time. Every daemon also gets the common options (brume_common_config) when its spec
 * points at one. brume_config_load() then:
 *
 *   1. sets every variable to its default;
 *   2. reads the config file (--config FILE, else spec->default_config if that file exists);
 *   3. applies the flags, which override the file;
 *   4. checks bounds, then the common cross-field rules, then spec->validate;
 *   5. answers --help and --check-config itself (on stdout) and tells the caller to exit.
 *
 * File format (docs/config.md): `name = value` lines, `#` comments, blank lines, optional double
 * quotes around a value (needed for a value holding '#' or leading/trailing spaces). Each name
 * may appear once per file. Errors name the file and line, and every error in the file is
 * reported, not just the first.
 *
 * Value types and the C variable each one sets:
 *   string, path, addr  char *    heap copy, NULL when unset or empty; freed by brume_config_free()
 *   int                 int64_t   decimal, within [min, max]
 *   duration            int64_t   milliseconds; written "500ms", "10s", "2m", "1h", "1m30s", "0"
 *   size                int64_t   bytes; written "512B", "64KiB", "6MiB", "1GiB" or plain bytes
 *   bool                bool      true/false, yes/no, on/off, 1/0
 *   enum                int       index of the word in the row's NULL-terminated choices list
 * addr is "host:port", ":port" (all interfaces) or "[v6]:port"; port 0 lets the kernel pick.
 * Bounds: min == max == 0 means unbounded; INT64_MIN / INT64_MAX leave one side open. */
#ifndef BRUME_CONFIG_H
#define BRUME_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "log.h"

typedef enum brume_opt_type {
  BRUME_OPT_TYPE_STRING,
  BRUME_OPT_TYPE_PATH,
  BRUME_OPT_TYPE_ADDR,
  BRUME_OPT_TYPE_INT,
  BRUME_OPT_TYPE_DURATION,
  BRUME_OPT_TYPE_SIZE,
  BRUME_OPT_TYPE_BOOL,
  BRUME_OPT_TYPE_ENUM,
} brume_opt_type;

/* Row flags (the optional trailing `.flags = ...` of a BRUME_OPT_* macro). */
enum {
  /* --check-config prints "(set)" instead of the value (API keys, passwords). */
  BRUME_OPT_SECRET = 1u << 0,
  /* The option must end up non-empty (strings) after the file and flags are applied. */
  BRUME_OPT_REQUIRED = 1u << 1,
};

typedef struct brume_opt {
  const char *name; /* [a-z0-9_]; the flag is --name (--with-dashes also accepted) */
  brume_opt_type type;
  union {
    char **s;   /* string, path, addr */
    int64_t *i; /* int, duration (ms), size (bytes) */
    bool *b;
    int *e; /* enum: index into choices */
  } var;
  int64_t min, max;           /* int, duration, size; inclusive; 0, 0 = unbounded */
  const char *def;            /* default, written as in the file; NULL = unset / 0 / false */
  const char *help;           /* one line, no trailing period needed */
  const char *const *choices; /* enum only: NULL-terminated */
  unsigned flags;             /* BRUME_OPT_SECRET | BRUME_OPT_REQUIRED */
} brume_opt;

/* Row constructors. The trailing ... takes extra designated initializers, e.g.
 *   BRUME_OPT_STRING("api_key", &cfg.api_key, NULL, "admin API key", .flags = BRUME_OPT_SECRET)
 * Passing a variable of the wrong C type is a compile error (incompatible pointer). */
/* clang-format off */
#define BRUME_OPT_STRING(nm, v, df, hl, ...)                                                \
  {.name = (nm), .type = BRUME_OPT_TYPE_STRING, .var.s = (v), .def = (df),                  \
   .help = (hl), __VA_ARGS__}
#define BRUME_OPT_PATH(nm, v, df, hl, ...)                                                  \
  {.name = (nm), .type = BRUME_OPT_TYPE_PATH, .var.s = (v), .def = (df),                    \
   .help = (hl), __VA_ARGS__}
#define BRUME_OPT_ADDR(nm, v, df, hl, ...)                                                  \
  {.name = (nm), .type = BRUME_OPT_TYPE_ADDR, .var.s = (v), .def = (df),                    \
   .help = (hl), __VA_ARGS__}
#define BRUME_OPT_INT(nm, v, lo, hi, df, hl, ...)                                           \
  {.name = (nm), .type = BRUME_OPT_TYPE_INT, .var.i = (v), .min = (lo), .max = (hi),        \
   .def = (df), .help = (hl), __VA_ARGS__}
#define BRUME_OPT_DURATION(nm, v, lo, hi, df, hl, ...)                                      \
  {.name = (nm), .type = BRUME_OPT_TYPE_DURATION, .var.i = (v), .min = (lo), .max = (hi),   \
   .def = (df), .help = (hl), __VA_ARGS__}
#define BRUME_OPT_SIZE(nm, v, lo, hi, df, hl, ...)                                          \
  {.name = (nm), .type = BRUME_OPT_TYPE_SIZE, .var.i = (v), .min = (lo), .max = (hi),       \
   .def = (df), .help = (hl), __VA_ARGS__}
#define BRUME_OPT_BOOL(nm, v, df, hl, ...)                                                  \
  {.name = (nm), .type = BRUME_OPT_TYPE_BOOL, .var.b = (v), .def = (df),                    \
   .help = (hl), __VA_ARGS__}
#define BRUME_OPT_ENUM(nm, v, ch, df, hl, ...)                                              \
  {.name = (nm), .type = BRUME_OPT_TYPE_ENUM, .var.e = (v), .choices = (ch), .def = (df),   \
   .help = (hl), __VA_ARGS__}
/* clang-format on */

/* Unit helpers for bounds, so a table reads like its help text. */
#define BRUME_KIB ((int64_t)1024)
#define BRUME_MIB ((int64_t)1024 * 1024)
#define BRUME_GIB ((int64_t)1024 * 1024 * 1024)
#define BRUME_SECONDS(n) ((int64_t)(n)*1000)
#define BRUME_MINUTES(n) ((int64_t)(n)*60 * 1000)

/* The options every daemon has. log_level holds a brume_log_level (the enum's choices are in
 * the same order). listen is the gRPC address, http_listen serves /healthz and /metrics.
 * tls_client_auth means mutual TLS: require a client certificate signed by tls_ca.
 * etcd_endpoints is a comma-separated list of URLs. */
typedef struct brume_common_config {
  int log_level;
  char *listen;
  char *http_listen;
  char *tls_ca;
  char *tls_cert;
  char *tls_key;
  bool tls_client_auth;
  char *etcd_endpoints;
} brume_common_config;

typedef struct brume_config_spec {
  const char *name;           /* "brume-counting": the usage line and --help */
  const char *summary;        /* one sentence for --help */
  const char *default_config; /* read when --config is absent and the file exists; may be NULL */
  /* Common options; NULL for a program that has none. The listen defaults differ per daemon. */
  brume_common_config *common;
  const char *default_listen;      /* e.g. "127.0.0.1:7010" */
  const char *default_http_listen; /* e.g. "127.0.0.1:9010" */
  const brume_opt *opts;           /* the daemon's own rows */
  size_t n_opts;
  /* Cross-field checks, run after every value parsed and is within bounds (and after the common
   * rules: tls_cert needs tls_key and the reverse, tls_client_auth needs tls_ca and tls_cert).
   * Returns 0, or -1 with *err set; the message should name the options involved. */
  int (*validate)(brume_err **err);
} brume_config_spec;

/* Loads the configuration described by spec from the config file and argv (argv[0] is skipped).
 *
 * Returns 0 when the daemon should run; 1 when it should exit with status 0 because --help or
 * a passing --check-config has been answered on stdout; -1 with *err set (INVALID_ARGUMENT, or
 * NOT_FOUND for a missing --config file) when the configuration is wrong. err->msg then holds
 * every error found, one per line ("brume-counting.conf:7: unknown option 'lisen' (did you mean
 * 'listen'?)"), ready to print to stderr; exit non-zero.
 *
 * On every return the variables hold what was loaded (defaults where nothing else applied), and
 * strings the loader allocated must be released with brume_config_free(spec). A malformed table
 * (bad name, duplicate name, a default that does not parse) is a programming error and aborts. */
int brume_config_load(const brume_config_spec *spec, int argc, char **argv, brume_err **err);

/* Frees the strings the loader stored in the spec's variables and sets them to NULL. Safe to call
 * more than once, and before any load (the variables must then be NULL or static zero). */
void brume_config_free(const brume_config_spec *spec);

/* Applies `name = value` text (the file format) over the current values, as if it were the file
 * named origin (used in messages). Lower level than brume_config_load: it does no defaults, no
 * required/cross-field checks and no printing, and exists for tests and the fuzz target. Returns
 * 0, or -1 with every error of the text in *err. */
int brume_config_parse(const brume_config_spec *spec, const char *origin, const char *text,
                       size_t len, brume_err **err);

/* Sets every variable of spec to its default (freeing strings held before). */
void brume_config_set_defaults(const brume_config_spec *spec);

/* Splits "host:port", ":port" or "[v6]:port". *host is a heap copy, "" for all interfaces.
 * Returns 0, or -1 with INVALID_ARGUMENT. Shared by the addr option type and the listeners. */
int brume_config_split_addr(const char *addr, char **host, int *port, brume_err **err);

/* The address other daemons reach a listener at, for its etcd registration: listen with its port
 * replaced by the bound one (listen may say 0) and an empty host (all interfaces) by the hostname.
 * Caller frees; NULL with INVALID_ARGUMENT when listen is malformed. */
char *brume_config_advertised_addr(const char *listen, int port, brume_err **err);

/* 0 when prefix (the etcd_prefix option) starts with '/', does not end with one and is at least 2
 * bytes long ("/brume"); otherwise -1 with INVALID_ARGUMENT. */
int brume_config_check_etcd_prefix(const char *prefix, brume_err **err);

/* The value syntax, for other parsers of the same values (the brume CLI's flags). Each returns
 * 0, or -1 when s is not one. brume_config_parse_digits parses the decimal prefix of s and
 * returns how many digits it read (0: none; -1: over UINT64_MAX). A duration is "0" or
 * <digits><unit> repeated, units ms, s, m and h ("1m30s"), at most INT64_MAX ms. */
int brume_config_parse_digits(const char *s, uint64_t *out);
int brume_config_parse_duration(const char *s, int64_t *ms);

/* Formats ms or bytes the way the file writes them ("10s", "64KiB") into buf. */
const char *brume_config_format_duration(int64_t ms, char *buf, size_t size);
const char *brume_config_format_size(int64_t bytes, char *buf, size_t size);

#endif
