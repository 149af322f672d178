#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"

/* The enum's words are the brume_log_level values, in order. */
static const char *const log_level_words[] = {"debug", "info", "warn", "error", NULL};
_Static_assert(BRUME_LOG_DEBUG == 0 && BRUME_LOG_INFO == 1 && BRUME_LOG_WARN == 2 &&
                   BRUME_LOG_ERROR == 3,
               "log_level_words must follow brume_log_level");

enum { COMMON_ROWS = 8, MAX_ERRORS = 50, MAX_FILE_SIZE = 1024 * 1024, ECHO_MAX = 64 };

/* Where a row's current value came from, for --check-config. */
typedef struct origin {
  const char *file; /* NULL: default or command line */
  int line;         /* 0 with file == NULL: default; -1: command line */
} origin;

typedef struct loader {
  const brume_config_spec *spec;
  brume_opt *rows; /* common rows first, then spec->opts */
  size_t n_rows;
  size_t n_common;
  origin *origins;
  int *seen_line; /* per row: the line that set it in the file being parsed, 0 if none */
  char *errors;   /* one error per line, joined with '\n' */
  size_t n_errors;
  brume_status code;
} loader;

/* ---- small helpers ---- */

static void add_error(loader *l, brume_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_error(loader *l, brume_status code, const char *fmt, ...) {
  l->n_errors++;
  if (l->n_errors == 1) l->code = code;
  if (l->n_errors > MAX_ERRORS) return;
  va_list ap;
  va_start(ap, fmt);
  brume_autofree char *msg = brume_xvasprintf(fmt, ap);
  va_end(ap);
  char *joined;
  if (l->n_errors == MAX_ERRORS)
    joined = brume_xasprintf("%s\n%s", l->errors, "too many errors, stopping here");
  else if (l->errors)
    joined = brume_xasprintf("%s\n%s", l->errors, msg);
  else
    joined = brume_xstrdup(msg);
  free(l->errors);
  l->errors = joined;
}

/* Moves the collected errors into *err; returns -1 if there were any, else 0. */
static int take_errors(loader *l, brume_err **err) {
  if (l->n_errors == 0) return 0;
  brume_err_set(err, l->code, "%s", l->errors);
  free(l->errors);
  l->errors = NULL;
  l->n_errors = 0;
  return -1;
}

/* Copies user text for an error message: at most ECHO_MAX bytes, control bytes as '?'. */
static char *echo(const char *s, size_t len) {
  size_t n = len > ECHO_MAX ? ECHO_MAX : len;
  char *out = brume_xmalloc(n + 4);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  if (len > n) {
    memcpy(out + n, "...", 3);
    n += 3;
  }
  out[n] = '\0';
  return out;
}

static size_t min3(size_t a, size_t b, size_t c) {
  size_t m = a < b ? a : b;
  return m < c ? m : c;
}

/* Levenshtein distance, for "did you mean". Names are short; longer inputs are not compared. */
static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return SIZE_MAX;
  size_t prev[65], cur[65];
  for (size_t j = 0; j <= lb; j++) prev[j] = j;
  for (size_t i = 1; i <= la; i++) {
    cur[0] = i;
    for (size_t j = 1; j <= lb; j++)
      cur[j] = min3(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]));
    memcpy(prev, cur, sizeof(size_t) * (lb + 1));
  }
  return prev[lb];
}

/* The closest of words to s, or NULL if none is close enough to be a likely typo. */
static const char *suggest(const char *s, const char *const *words, size_t n) {
  const char *best = NULL;
  size_t best_d = SIZE_MAX;
  size_t limit = strlen(s) < 6 ? 1 : 2;
  for (size_t i = 0; i < n; i++) {
    size_t d = edit_distance(s, words[i]);
    if (d < best_d) {
      best_d = d;
      best = words[i];
    }
  }
  return best_d <= limit ? best : NULL;
}

static const char *type_name(brume_opt_type t) {
  switch (t) {
    case BRUME_OPT_TYPE_STRING:
      return "string";
    case BRUME_OPT_TYPE_PATH:
      return "path";
    case BRUME_OPT_TYPE_ADDR:
      return "addr";
    case BRUME_OPT_TYPE_INT:
      return "int";
    case BRUME_OPT_TYPE_DURATION:
      return "duration";
    case BRUME_OPT_TYPE_SIZE:
      return "size";
    case BRUME_OPT_TYPE_BOOL:
      return "bool";
    case BRUME_OPT_TYPE_ENUM:
      return "enum";
  }
  return "?";
}

static bool is_string_type(brume_opt_type t) {
  return t == BRUME_OPT_TYPE_STRING || t == BRUME_OPT_TYPE_PATH || t == BRUME_OPT_TYPE_ADDR;
}

static bool is_number_type(brume_opt_type t) {
  return t == BRUME_OPT_TYPE_INT || t == BRUME_OPT_TYPE_DURATION || t == BRUME_OPT_TYPE_SIZE;
}

/* ---- value syntax ---- */

int brume_config_parse_digits(const char *s, uint64_t *out) {
  uint64_t v = 0;
  int n = 0;
  for (; s[n] >= '0' && s[n] <= '9'; n++) {
    uint64_t d = (uint64_t)(s[n] - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return n;
}

static int parse_int(const char *s, int64_t *out) {
  bool neg = false;
  if (*s == '-' || *s == '+') neg = *s++ == '-';
  uint64_t v;
  int n = brume_config_parse_digits(s, &v);
  if (n <= 0 || s[n] != '\0') return -1;
  if (neg) {
    if (v > (uint64_t)INT64_MAX + 1) return -1;
    *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
  } else {
    if (v > (uint64_t)INT64_MAX) return -1;
    *out = (int64_t)v;
  }
  return 0;
}

int brume_config_parse_duration(const char *s, int64_t *out) {
  static const struct {
    const char *unit;
    int64_t ms;
  } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
  if (strcmp(s, "0") == 0) {
    *out = 0;
    return 0;
  }
  if (*s == '\0') return -1;
  int64_t total = 0;
  while (*s) {
    uint64_t v;
    int n = brume_config_parse_digits(s, &v);
    if (n <= 0) return -1;
    s += n;
    int64_t mult = 0;
    size_t ulen = 0;
    for (size_t i = 0; i < BRUME_ARRAY_LEN(units); i++) {
      size_t l = strlen(units[i].unit);
      /* "ms" before "m": the longer unit must win when both match. */
      if (strncmp(s, units[i].unit, l) == 0 && l > ulen) {
        mult = units[i].ms;
        ulen = l;
      }
    }
    if (mult == 0) return -1;
    s += ulen;
    if (v > (uint64_t)(INT64_MAX / mult)) return -1;
    int64_t part = (int64_t)v * mult;
    if (total > INT64_MAX - part) return -1;
    total += part;
  }
  *out = total;
  return 0;
}

static int parse_size(const char *s, int64_t *out) {
  static const struct {
    const char *unit;
    int64_t bytes;
  } units[] = {{"", 1},
               {"B", 1},
               {"KiB", BRUME_KIB},
               {"MiB", BRUME_MIB},
               {"GiB", BRUME_GIB},
               {"TiB", BRUME_GIB * 1024}};
  uint64_t v;
  int n = brume_config_parse_digits(s, &v);
  if (n <= 0) return -1;
  for (size_t i = 0; i < BRUME_ARRAY_LEN(units); i++) {
    if (strcmp(s + n, units[i].unit) != 0) continue;
    if (v > (uint64_t)(INT64_MAX / units[i].bytes)) return -1;
    *out = (int64_t)v * units[i].bytes;
    return 0;
  }
  return -1;
}

static int parse_bool(const char *s, bool *out) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(yes); i++) {
    if (strcmp(s, yes[i]) == 0) return *out = true, 0;
    if (strcmp(s, no[i]) == 0) return *out = false, 0;
  }
  return -1;
}

int brume_config_split_addr(const char *addr, char **host, int *port, brume_err **err) {
  const char *colon;
  const char *h = addr;
  size_t hlen;
  if (addr[0] == '[') {
    const char *close = strchr(addr, ']');
    if (!close || close[1] != ':')
      return brume_err_set(err, BRUME_INVALID_ARGUMENT, "address '%s' must be [IPv6]:port", addr);
    h = addr + 1;
    hlen = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = strrchr(addr, ':');
    if (!colon)
      return brume_err_set(err, BRUME_INVALID_ARGUMENT, "address '%s' must be host:port or :port",
                           addr);
    hlen = (size_t)(colon - addr);
    if (memchr(addr, ':', hlen))
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           "address '%s': write IPv6 hosts in brackets, [::1]:port", addr);
  }
  uint64_t p;
  int n = brume_config_parse_digits(colon + 1, &p);
  if (n <= 0 || colon[1 + n] != '\0' || p > 65535)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "address '%s' needs a port between 0 and 65535", addr);
  for (size_t i = 0; i < hlen; i++) {
    unsigned char c = (unsigned char)h[i];
    if (c <= ' ' || c == '/' || c == '[' || c == ']' || c == 0x7f)
      return brume_err_set(err, BRUME_INVALID_ARGUMENT, "address '%s' has a bad host", addr);
  }
  if (host) *host = brume_xstrndup(h, hlen);
  if (port) *port = (int)p;
  return 0;
}

const char *brume_config_format_duration(int64_t ms, char *buf, size_t size) {
  if (ms == 0)
    snprintf(buf, size, "0");
  else if (ms % 3600000 == 0)
    snprintf(buf, size, "%" PRId64 "h", ms / 3600000);
  else if (ms % 60000 == 0)
    snprintf(buf, size, "%" PRId64 "m", ms / 60000);
  else if (ms % 1000 == 0)
    snprintf(buf, size, "%" PRId64 "s", ms / 1000);
  else
    snprintf(buf, size, "%" PRId64 "ms", ms);
  return buf;
}

const char *brume_config_format_size(int64_t bytes, char *buf, size_t size) {
  static const char *const units[] = {"TiB", "GiB", "MiB", "KiB"};
  static const int64_t mult[] = {BRUME_GIB * 1024, BRUME_GIB, BRUME_MIB, BRUME_KIB};
  if (bytes == 0) {
    snprintf(buf, size, "0");
    return buf;
  }
  for (size_t i = 0; i < BRUME_ARRAY_LEN(units); i++) {
    if (bytes % mult[i] == 0) {
      snprintf(buf, size, "%" PRId64 "%s", bytes / mult[i], units[i]);
      return buf;
    }
  }
  snprintf(buf, size, "%" PRId64 "B", bytes);
  return buf;
}

static const char *format_number(const brume_opt *o, int64_t v, char *buf, size_t size) {
  if (o->type == BRUME_OPT_TYPE_DURATION) return brume_config_format_duration(v, buf, size);
  if (o->type == BRUME_OPT_TYPE_SIZE) return brume_config_format_size(v, buf, size);
  snprintf(buf, size, "%" PRId64, v);
  return buf;
}

static bool bounded(const brume_opt *o) {
  return o->min != 0 || o->max != 0;
}

/* "between 1KiB and 64MiB", "at least 1", "at most 10s" */
static char *describe_bounds(const brume_opt *o) {
  char lo[32], hi[32];
  format_number(o, o->min, lo, sizeof(lo));
  format_number(o, o->max, hi, sizeof(hi));
  if (o->max == INT64_MAX) return brume_xasprintf("at least %s", lo);
  if (o->min == INT64_MIN) return brume_xasprintf("at most %s", hi);
  return brume_xasprintf("between %s and %s", lo, hi);
}

static char *join_choices(const char *const *choices, const char *sep) {
  char *out = brume_xstrdup("");
  for (size_t i = 0; choices[i]; i++) {
    char *next = brume_xasprintf("%s%s%s", out, i ? sep : "", choices[i]);
    free(out);
    out = next;
  }
  return out;
}

static size_t n_choices(const brume_opt *o) {
  size_t n = 0;
  while (o->choices[n]) n++;
  return n;
}

/* Parses text for row o and stores it. On failure returns -1 with a message (without location)
 * in *why, and leaves the variable as it was. */
static int set_value(const brume_opt *o, const char *text, char **why) {
  brume_autofree char *shown = echo(text, strlen(text));
  switch (o->type) {
    case BRUME_OPT_TYPE_STRING:
    case BRUME_OPT_TYPE_PATH:
    case BRUME_OPT_TYPE_ADDR: {
      if (o->type == BRUME_OPT_TYPE_ADDR && *text) {
        brume_autoptr(brume_err) e = NULL;
        if (brume_config_split_addr(text, NULL, NULL, &e) < 0) {
          *why = brume_xasprintf("'%s': %s", o->name, e->msg);
          return -1;
        }
      }
      free(*o->var.s);
      *o->var.s = *text ? brume_xstrdup(text) : NULL;
      return 0;
    }
    case BRUME_OPT_TYPE_INT:
    case BRUME_OPT_TYPE_DURATION:
    case BRUME_OPT_TYPE_SIZE: {
      int64_t v;
      int rc = o->type == BRUME_OPT_TYPE_INT        ? parse_int(text, &v)
               : o->type == BRUME_OPT_TYPE_DURATION ? brume_config_parse_duration(text, &v)
                                                    : parse_size(text, &v);
      if (rc < 0) {
        if (o->type == BRUME_OPT_TYPE_INT)
          *why = brume_xasprintf("'%s' must be an integer, got '%s'", o->name, shown);
        else if (o->type == BRUME_OPT_TYPE_DURATION)
          *why = brume_xasprintf("'%s' must be a duration such as 500ms, 10s, 2m or 1h, got '%s'",
                                 o->name, shown);
        else
          *why = brume_xasprintf("'%s' must be a size such as 512B, 64KiB, 6MiB or 1GiB, got '%s'",
                                 o->name, shown);
        return -1;
      }
      if (bounded(o) && (v < o->min || v > o->max)) {
        brume_autofree char *b = describe_bounds(o);
        *why = brume_xasprintf("'%s' must be %s, got %s", o->name, b, shown);
        return -1;
      }
      *o->var.i = v;
      return 0;
    }
    case BRUME_OPT_TYPE_BOOL:
      if (parse_bool(text, o->var.b) < 0) {
        *why = brume_xasprintf("'%s' must be true or false, got '%s'", o->name, shown);
        return -1;
      }
      return 0;
    case BRUME_OPT_TYPE_ENUM: {
      size_t n = n_choices(o);
      for (size_t i = 0; i < n; i++) {
        if (strcmp(text, o->choices[i]) == 0) {
          *o->var.e = (int)i;
          return 0;
        }
      }
      brume_autofree char *list = join_choices(o->choices, ", ");
      const char *hint = suggest(text, o->choices, n);
      *why = hint ? brume_xasprintf("'%s' must be one of %s, got '%s' (did you mean '%s'?)",
                                    o->name, list, shown, hint)
                  : brume_xasprintf("'%s' must be one of %s, got '%s'", o->name, list, shown);
      return -1;
    }
  }
  brume_fatal("config: option '%s' has an unknown type", o->name);
}

/* ---- the table ---- */

static size_t build_common(const brume_config_spec *spec, brume_opt *out) {
  brume_common_config *c = spec->common;
  if (!c) return 0;
  const brume_opt rows[COMMON_ROWS] = {
      BRUME_OPT_ENUM("log_level", &c->log_level, log_level_words, "info",
                     "least severe level that is logged"),
      BRUME_OPT_ADDR("listen", &c->listen, spec->default_listen,
                     "gRPC address to serve on (host:port; :port for all interfaces)"),
      BRUME_OPT_ADDR("http_listen", &c->http_listen, spec->default_http_listen,
                     "HTTP address for /healthz and /metrics"),
      BRUME_OPT_PATH("tls_ca", &c->tls_ca, NULL,
                     "PEM bundle of the CAs that peer certificates must chain to"),
      BRUME_OPT_PATH("tls_cert", &c->tls_cert, NULL,
                     "PEM certificate this daemon presents; setting it turns TLS on"),
      BRUME_OPT_PATH("tls_key", &c->tls_key, NULL, "PEM private key of tls_cert"),
      BRUME_OPT_BOOL("tls_client_auth", &c->tls_client_auth, "false",
                     "require and verify client certificates (mutual TLS)"),
      BRUME_OPT_STRING("etcd_endpoints", &c->etcd_endpoints, "http://127.0.0.1:2379",
                       "comma-separated etcd URLs"),
  };
  memcpy(out, rows, sizeof(rows));
  return COMMON_ROWS;
}

static bool valid_name(const char *name) {
  if (!name || !*name) return false;
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) return false;
  return true;
}

/* Builds the rows and checks the table itself; a broken table is the programmer's bug. */
static void loader_init(loader *l, const brume_config_spec *spec) {
  memset(l, 0, sizeof(*l));
  l->spec = spec;
  BRUME_ENSURE(spec->n_opts == 0 || spec->opts != NULL);
  l->rows = brume_xcalloc(COMMON_ROWS + spec->n_opts + 1, sizeof(brume_opt));
  l->n_common = build_common(spec, l->rows);
  if (spec->n_opts) memcpy(l->rows + l->n_common, spec->opts, spec->n_opts * sizeof(brume_opt));
  l->n_rows = l->n_common + spec->n_opts;
  l->origins = brume_xcalloc(l->n_rows + 1, sizeof(origin));
  l->seen_line = brume_xcalloc(l->n_rows + 1, sizeof(int));
  for (size_t i = 0; i < l->n_rows; i++) {
    const brume_opt *o = &l->rows[i];
    if (!valid_name(o->name)) brume_fatal("config table: bad option name '%s'", o->name);
    if (!o->var.s) brume_fatal("config table: option '%s' has no variable", o->name);
    if (o->type == BRUME_OPT_TYPE_ENUM && (!o->choices || !o->choices[0]))
      brume_fatal("config table: enum '%s' has no choices", o->name);
    if (bounded(o) && o->min > o->max) brume_fatal("config table: '%s' has min > max", o->name);
    for (size_t j = 0; j < i; j++)
      if (strcmp(o->name, l->rows[j].name) == 0)
        brume_fatal("config table: option '%s' is declared twice", o->name);
  }
}

static void loader_fini(loader *l) {
  free(l->rows);
  free(l->origins);
  free(l->seen_line);
  free(l->errors);
}

static ssize_t find_row(const loader *l, const char *name) {
  for (size_t i = 0; i < l->n_rows; i++)
    if (strcmp(l->rows[i].name, name) == 0) return (ssize_t)i;
  return -1;
}

static const char *suggest_row(const loader *l, const char *name) {
  const char **names = brume_xcalloc(l->n_rows + 1, sizeof(char *));
  for (size_t i = 0; i < l->n_rows; i++) names[i] = l->rows[i].name;
  const char *s = suggest(name, names, l->n_rows);
  free(names);
  return s;
}

static void defaults(loader *l) {
  for (size_t i = 0; i < l->n_rows; i++) {
    const brume_opt *o = &l->rows[i];
    l->origins[i] = (origin){NULL, 0};
    if (!o->def) {
      switch (o->type) {
        case BRUME_OPT_TYPE_STRING:
        case BRUME_OPT_TYPE_PATH:
        case BRUME_OPT_TYPE_ADDR:
          free(*o->var.s);
          *o->var.s = NULL;
          break;
        case BRUME_OPT_TYPE_INT:
        case BRUME_OPT_TYPE_DURATION:
        case BRUME_OPT_TYPE_SIZE:
          *o->var.i = 0;
          break;
        case BRUME_OPT_TYPE_BOOL:
          *o->var.b = false;
          break;
        case BRUME_OPT_TYPE_ENUM:
          *o->var.e = 0;
          break;
      }
      continue;
    }
    brume_autofree char *why = NULL;
    if (set_value(o, o->def, &why) < 0) brume_fatal("config table: bad default: %s", why);
  }
}

void brume_config_set_defaults(const brume_config_spec *spec) {
  loader l;
  loader_init(&l, spec);
  defaults(&l);
  loader_fini(&l);
}

void brume_config_free(const brume_config_spec *spec) {
  loader l;
  loader_init(&l, spec);
  for (size_t i = 0; i < l.n_rows; i++) {
    if (is_string_type(l.rows[i].type)) {
      free(*l.rows[i].var.s);
      *l.rows[i].var.s = NULL;
    }
  }
  loader_fini(&l);
}

/* ---- the file format ---- */

static bool is_space(char c) {
  return c == ' ' || c == '\t';
}

static bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

/* Parses one line (without its '\n'). Errors are added with "origin:lineno: " in front. */
static void parse_line(loader *l, const char *origin_name, int lineno, const char *s, size_t len) {
#define LINE_ERROR(...)                                                         \
  do {                                                                          \
    brume_autofree char *m_ = brume_xasprintf(__VA_ARGS__);                     \
    add_error(l, BRUME_INVALID_ARGUMENT, "%s:%d: %s", origin_name, lineno, m_); \
    return;                                                                     \
  } while (0)

  if (len && s[len - 1] == '\r') len--;
  if (memchr(s, '\0', len)) LINE_ERROR("NUL byte in line");
  size_t i = 0;
  while (i < len && is_space(s[i])) i++;
  if (i == len || s[i] == '#') return;

  size_t name_start = i;
  while (i < len && is_name_char(s[i])) i++;
  size_t name_len = i - name_start;
  brume_autofree char *name = brume_xstrndup(s + name_start, name_len);
  while (i < len && is_space(s[i])) i++;
  if (name_len == 0 || i == len || s[i] != '=') {
    brume_autofree char *shown = echo(s + name_start, len - name_start);
    if (name_len > 0 && (i == len || s[i] == '#'))
      LINE_ERROR("expected 'name = value', got '%s' (missing '=')", shown);
    LINE_ERROR("expected 'name = value', got '%s'", shown);
  }
  i++; /* '=' */
  while (i < len && is_space(s[i])) i++;

  brume_autofree char *value = NULL;
  if (i < len && s[i] == '"') {
    i++;
    value = brume_xmalloc(len - i + 1);
    size_t o = 0;
    bool closed = false;
    while (i < len) {
      char c = s[i++];
      if (c == '"') {
        closed = true;
        break;
      }
      if (c == '\\') {
        if (i < len && (s[i] == '"' || s[i] == '\\')) {
          value[o++] = s[i++];
          continue;
        }
        LINE_ERROR("unknown escape in quoted value of '%s' (only \\\" and \\\\ are allowed)", name);
      }
      value[o++] = c;
    }
    value[o] = '\0';
    if (!closed) LINE_ERROR("missing closing quote in value of '%s'", name);
    while (i < len && is_space(s[i])) i++;
    if (i < len && s[i] != '#') {
      brume_autofree char *shown = echo(s + i, len - i);
      LINE_ERROR("unexpected '%s' after the closing quote of '%s'", shown, name);
    }
  } else {
    size_t start = i;
    while (i < len && s[i] != '#') i++;
    size_t end = i;
    while (end > start && is_space(s[end - 1])) end--;
    value = brume_xstrndup(s + start, end - start);
    if (strchr(value, '"'))
      LINE_ERROR("stray '\"' in value of '%s' (quote the whole value: name = \"...\")", name);
  }
  for (const char *p = value; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if ((c < 0x20 && c != '\t') || c == 0x7f)
      LINE_ERROR("control character in value of '%s'", name);
  }

  ssize_t r = find_row(l, name);
  if (r < 0) {
    brume_autofree char *shown = echo(name, name_len);
    const char *hint = suggest_row(l, name);
    if (hint) LINE_ERROR("unknown option '%s' (did you mean '%s'?)", shown, hint);
    LINE_ERROR("unknown option '%s'", shown);
  }
  if (l->seen_line[r]) LINE_ERROR("'%s' is already set on line %d", name, l->seen_line[r]);
  l->seen_line[r] = lineno;
  brume_autofree char *why = NULL;
  if (set_value(&l->rows[r], value, &why) < 0) LINE_ERROR("%s", why);
  l->origins[r] = (origin){origin_name, lineno};
#undef LINE_ERROR
}

static void parse_text(loader *l, const char *origin_name, const char *text, size_t len) {
  memset(l->seen_line, 0, sizeof(int) * l->n_rows);
  int lineno = 0;
  size_t pos = 0;
  while (pos < len) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - text) : len;
    if (lineno == INT_MAX) break;
    parse_line(l, origin_name, ++lineno, text + pos, end - pos);
    pos = end + 1;
  }
}

int brume_config_parse(const brume_config_spec *spec, const char *origin_name, const char *text,
                       size_t len, brume_err **err) {
  loader l;
  loader_init(&l, spec);
  parse_text(&l, origin_name, text, len);
  int rc = take_errors(&l, err);
  loader_fini(&l);
  return rc;
}

/* Reads path into memory. Returns 0; -1 with an error added; 1 if the file is absent and that
 * is fine (the default path). */
static int read_file(loader *l, const char *path, bool must_exist, char **text, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (errno == ENOENT && !must_exist) return 1;
    add_error(l, errno == ENOENT ? BRUME_NOT_FOUND : BRUME_INVALID_ARGUMENT,
              "cannot read config file '%s': %s", path, strerror(errno));
    return -1;
  }
  size_t cap = 4096, n = 0;
  char *buf = brume_xmalloc(cap);
  for (;;) {
    if (n == cap) {
      if (cap >= MAX_FILE_SIZE) {
        add_error(l, BRUME_INVALID_ARGUMENT, "config file '%s' is larger than %d bytes", path,
                  MAX_FILE_SIZE);
        free(buf);
        fclose(f);
        return -1;
      }
      cap *= 2;
      buf = brume_xrealloc(buf, cap);
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    add_error(l, BRUME_INVALID_ARGUMENT, "cannot read config file '%s': %s", path, strerror(errno));
    free(buf);
    fclose(f);
    return -1;
  }
  fclose(f);
  *text = buf;
  *len = n;
  return 0;
}

/* ---- flags ---- */

typedef struct flag_value {
  size_t row;
  const char *value; /* points into argv or at a literal */
} flag_value;

typedef struct cmdline {
  bool help, check;
  const char *config;
  flag_value *values;
  size_t n_values;
} cmdline;

static char *normalize_flag(const char *s, size_t len) {
  char *n = brume_xstrndup(s, len);
  for (char *p = n; *p; p++)
    if (*p == '-') *p = '_';
  return n;
}

static void parse_argv(loader *l, int argc, char **argv, cmdline *cl) {
  cl->values = brume_xcalloc((size_t)(argc > 0 ? argc : 1), sizeof(flag_value));
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      cl->help = true;
      continue;
    }
    if (strcmp(a, "--check-config") == 0) {
      cl->check = true;
      continue;
    }
    if (strcmp(a, "--") == 0) {
      for (i++; i < argc; i++) {
        brume_autofree char *shown = echo(argv[i], strlen(argv[i]));
        add_error(l, BRUME_INVALID_ARGUMENT, "command line: unexpected argument '%s'", shown);
      }
      break;
    }
    if (strncmp(a, "--", 2) != 0) {
      brume_autofree char *shown = echo(a, strlen(a));
      add_error(l, BRUME_INVALID_ARGUMENT, "command line: unexpected argument '%s'", shown);
      continue;
    }
    const char *body = a + 2;
    const char *eq = strchr(body, '=');
    size_t name_len = eq ? (size_t)(eq - body) : strlen(body);
    brume_autofree char *name = normalize_flag(body, name_len);
    brume_autofree char *shown = echo(body, name_len);
    if (strcmp(name, "config") == 0) {
      if (eq) {
        cl->config = eq + 1;
      } else if (i + 1 < argc) {
        cl->config = argv[++i];
      } else {
        add_error(l, BRUME_INVALID_ARGUMENT, "command line: --config needs a file name");
      }
      continue;
    }
    ssize_t r = find_row(l, name);
    bool negated = false;
    if (r < 0 && strncmp(name, "no_", 3) == 0) {
      r = find_row(l, name + 3);
      negated = r >= 0;
    }
    if (r < 0) {
      const char *hint = suggest_row(l, name);
      if (hint)
        add_error(l, BRUME_INVALID_ARGUMENT,
                  "command line: unknown flag '--%s' (did you mean '--%s'?)", shown, hint);
      else
        add_error(l, BRUME_INVALID_ARGUMENT, "command line: unknown flag '--%s'", shown);
      continue;
    }
    const brume_opt *o = &l->rows[r];
    flag_value *fv = &cl->values[cl->n_values];
    fv->row = (size_t)r;
    if (negated) {
      if (o->type != BRUME_OPT_TYPE_BOOL || eq) {
        add_error(l, BRUME_INVALID_ARGUMENT,
                  "command line: '--%s' only works for a boolean option without a value", shown);
        continue;
      }
      fv->value = "false";
    } else if (eq) {
      fv->value = eq + 1;
    } else if (o->type == BRUME_OPT_TYPE_BOOL) {
      fv->value = "true";
    } else if (i + 1 < argc) {
      fv->value = argv[++i];
    } else {
      add_error(l, BRUME_INVALID_ARGUMENT, "command line: '--%s' needs a value", shown);
      continue;
    }
    cl->n_values++;
  }
}

/* ---- output ---- */

static char *display_value(const brume_opt *o, bool for_check) {
  char buf[64];
  switch (o->type) {
    case BRUME_OPT_TYPE_STRING:
    case BRUME_OPT_TYPE_PATH:
    case BRUME_OPT_TYPE_ADDR: {
      const char *s = *o->var.s;
      if (for_check && (o->flags & BRUME_OPT_SECRET)) return brume_xstrdup(s ? "(set)" : "\"\"");
      if (!for_check) return brume_xstrdup(s ? s : "-");
      /* Quoted the way the file reads it back. */
      size_t n = s ? strlen(s) : 0;
      char *out = brume_xmalloc(2 * n + 3), *p = out;
      *p++ = '"';
      for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') *p++ = '\\';
        *p++ = s[i];
      }
      *p++ = '"';
      *p = '\0';
      return out;
    }
    case BRUME_OPT_TYPE_INT:
    case BRUME_OPT_TYPE_DURATION:
    case BRUME_OPT_TYPE_SIZE:
      if (for_check && (o->flags & BRUME_OPT_SECRET)) return brume_xstrdup("(set)");
      return brume_xstrdup(format_number(o, *o->var.i, buf, sizeof(buf)));
    case BRUME_OPT_TYPE_BOOL:
      return brume_xstrdup(*o->var.b ? "true" : "false");
    case BRUME_OPT_TYPE_ENUM: {
      int e = *o->var.e;
      BRUME_ENSURE(e >= 0 && (size_t)e < n_choices(o));
      return brume_xstrdup(o->choices[e]);
    }
  }
  return brume_xstrdup("?");
}

static size_t max_name_len(const loader *l) {
  size_t w = 0;
  for (size_t i = 0; i < l->n_rows; i++)
    if (strlen(l->rows[i].name) > w) w = strlen(l->rows[i].name);
  return w;
}

static void print_check(const loader *l, FILE *out) {
  fprintf(out, "configuration OK\n");
  int w = (int)max_name_len(l);
  char **vals = brume_xcalloc(l->n_rows + 1, sizeof(char *));
  int vw = 0;
  for (size_t i = 0; i < l->n_rows; i++) {
    vals[i] = display_value(&l->rows[i], true);
    if ((int)strlen(vals[i]) > vw) vw = (int)strlen(vals[i]);
  }
  if (vw > 40) vw = 40;
  for (size_t i = 0; i < l->n_rows; i++) {
    const origin *o = &l->origins[i];
    char where[300];
    if (o->file)
      snprintf(where, sizeof(where), "%s:%d", o->file, o->line);
    else
      snprintf(where, sizeof(where), "%s", o->line < 0 ? "command line" : "default");
    fprintf(out, "%-*s = %-*s  # %s\n", w, l->rows[i].name, vw, vals[i], where);
    free(vals[i]);
  }
  free(vals);
}

static char *help_text(const brume_opt *o) {
  brume_autofree char *extra = NULL;
  if (o->type == BRUME_OPT_TYPE_ENUM)
    extra = join_choices(o->choices, ", ");
  else if (is_number_type(o->type) && bounded(o))
    extra = describe_bounds(o);
  const char *req = (o->flags & BRUME_OPT_REQUIRED) ? ", required" : "";
  if (extra) return brume_xasprintf("%s (%s%s)", o->help ? o->help : "", extra, req);
  if (*req) return brume_xasprintf("%s (required)", o->help ? o->help : "");
  return brume_xstrdup(o->help ? o->help : "");
}

static void print_rows(const loader *l, size_t from, size_t to, int nw, int dw, FILE *out) {
  for (size_t i = from; i < to; i++) {
    const brume_opt *o = &l->rows[i];
    brume_autofree char *def = NULL;
    if (o->def && *o->def)
      def = brume_xstrdup(o->def);
    else if (o->type == BRUME_OPT_TYPE_BOOL)
      def = brume_xstrdup("false");
    else if (is_number_type(o->type))
      def = brume_xstrdup("0");
    else if (o->type == BRUME_OPT_TYPE_ENUM)
      def = brume_xstrdup(o->choices[0]);
    else
      def = brume_xstrdup("-");
    brume_autofree char *help = help_text(o);
    fprintf(out, "  --%-*s %-8s  %-*s  %s\n", nw, o->name, type_name(o->type), dw, def, help);
  }
}

static void print_help(const loader *l, FILE *out) {
  const brume_config_spec *spec = l->spec;
  fprintf(out, "Usage: %s [--config FILE] [--check-config] [--help] [--OPTION=VALUE ...]\n\n",
          spec->name);
  if (spec->summary) fprintf(out, "%s\n\n", spec->summary);
  fprintf(
      out,
      "Each option below is a `name = value` line in the config file and a flag:\n"
      "--name=value or --name value (booleans: --name, --no-name). Flags override the file.\n\n");
  if (spec->default_config)
    fprintf(out, "  --config FILE     read this file (default: %s, skipped if absent)\n",
            spec->default_config);
  else
    fprintf(out, "  --config FILE     read this file\n");
  fprintf(out,
          "  --check-config    validate the configuration, print the effective values, exit\n"
          "  --help            print this help, exit\n\n");
  int nw = (int)max_name_len(l);
  int dw = 7;
  for (size_t i = 0; i < l->n_rows; i++) {
    const char *d = l->rows[i].def;
    if (d && (int)strlen(d) > dw) dw = (int)strlen(d);
  }
  if (dw > 24) dw = 24;
  if (l->n_common) {
    fprintf(out, "Common options:\n");
    print_rows(l, 0, l->n_common, nw, dw, out);
  }
  if (l->n_rows > l->n_common) {
    fprintf(out, "%s%s options:\n", l->n_common ? "\n" : "", spec->name);
    print_rows(l, l->n_common, l->n_rows, nw, dw, out);
  }
}

/* ---- checks after loading ---- */

static const char *where(const loader *l, const char *name, char *buf, size_t size) {
  ssize_t r = find_row(l, name);
  if (r < 0) return "";
  const origin *o = &l->origins[r];
  if (o->file)
    snprintf(buf, size, "%s:%d: ", o->file, o->line);
  else if (o->line < 0)
    snprintf(buf, size, "command line: ");
  else
    buf[0] = '\0';
  return buf;
}

static void check_common(loader *l) {
  const brume_common_config *c = l->spec->common;
  if (!c) return;
  char w[300];
  if (c->tls_cert && !c->tls_key)
    add_error(l, BRUME_INVALID_ARGUMENT, "%stls_cert is set but tls_key is not: TLS needs both",
              where(l, "tls_cert", w, sizeof(w)));
  if (c->tls_key && !c->tls_cert)
    add_error(l, BRUME_INVALID_ARGUMENT, "%stls_key is set but tls_cert is not: TLS needs both",
              where(l, "tls_key", w, sizeof(w)));
  if (c->tls_client_auth && !c->tls_cert)
    add_error(l, BRUME_INVALID_ARGUMENT,
              "%stls_client_auth needs tls_cert and tls_key: client certificates are only asked "
              "for over TLS",
              where(l, "tls_client_auth", w, sizeof(w)));
  if (c->tls_client_auth && !c->tls_ca)
    add_error(l, BRUME_INVALID_ARGUMENT,
              "%stls_client_auth needs tls_ca to verify client certificates",
              where(l, "tls_client_auth", w, sizeof(w)));
  if (c->etcd_endpoints) {
    const char *p = c->etcd_endpoints;
    while (*p) {
      size_t n = strcspn(p, ",");
      brume_autofree char *item = brume_xstrndup(p, n);
      if (!(strncmp(item, "http://", 7) == 0 && item[7]) &&
          !(strncmp(item, "https://", 8) == 0 && item[8])) {
        brume_autofree char *shown = echo(item, n);
        add_error(l, BRUME_INVALID_ARGUMENT,
                  "%setcd_endpoints: '%s' is not an http:// or https:// URL",
                  where(l, "etcd_endpoints", w, sizeof(w)), shown);
      }
      p += n;
      if (*p == ',') p++;
    }
  }
}

static void check_required(loader *l) {
  for (size_t i = 0; i < l->n_rows; i++) {
    const brume_opt *o = &l->rows[i];
    if ((o->flags & BRUME_OPT_REQUIRED) && is_string_type(o->type) && !*o->var.s)
      add_error(l, BRUME_INVALID_ARGUMENT,
                "'%s' is required: set it in the config file or with --%s", o->name, o->name);
  }
}

int brume_config_load(const brume_config_spec *spec, int argc, char **argv, brume_err **err) {
  loader l;
  loader_init(&l, spec);
  cmdline cl = {0};
  defaults(&l);
  parse_argv(&l, argc, argv, &cl);
  int rc = -1;
  if (cl.help) {
    print_help(&l, stdout);
    fflush(stdout);
    free(l.errors);
    l.errors = NULL;
    l.n_errors = 0;
    rc = 1;
    goto out;
  }

  const char *path = cl.config ? cl.config : spec->default_config;
  if (path) {
    char *text = NULL;
    size_t len = 0;
    if (read_file(&l, path, cl.config != NULL, &text, &len) == 0) {
      parse_text(&l, path, text, len);
      free(text);
    }
  }
  for (size_t i = 0; i < cl.n_values; i++) {
    const flag_value *fv = &cl.values[i];
    brume_autofree char *why = NULL;
    if (set_value(&l.rows[fv->row], fv->value, &why) < 0) {
      add_error(&l, BRUME_INVALID_ARGUMENT, "command line: %s", why);
      continue;
    }
    l.origins[fv->row] = (origin){NULL, -1};
  }
  /* Cross-field rules only make sense once every value parsed. */
  if (l.n_errors == 0) {
    check_required(&l);
    check_common(&l);
  }
  if (l.n_errors == 0 && spec->validate) {
    brume_autoptr(brume_err) verr = NULL;
    if (spec->validate(&verr) < 0)
      add_error(&l, verr ? verr->code : BRUME_INVALID_ARGUMENT, "%s",
                verr ? verr->msg : "configuration rejected");
  }
  if (take_errors(&l, err) < 0) goto out;
  if (cl.check) {
    print_check(&l, stdout);
    fflush(stdout);
    rc = 1;
    goto out;
  }
  rc = 0;
out:
  free(cl.values);
  loader_fini(&l);
  return rc;
}

char *brume_config_advertised_addr(const char *listen, int port, brume_err **err) {
  char *host = NULL;
  int want = 0;
  if (brume_config_split_addr(listen, &host, &want, err) < 0) return NULL;
  if (host[0] == '\0') {
    char name[256] = {0};
    if (gethostname(name, sizeof(name) - 1) < 0) snprintf(name, sizeof(name), "localhost");
    free(host);
    host = brume_xstrdup(name);
  }
  char *addr = strchr(host, ':') ? brume_xasprintf("[%s]:%d", host, port)
                                 : brume_xasprintf("%s:%d", host, port);
  free(host);
  return addr;
}

int brume_config_check_etcd_prefix(const char *prefix, brume_err **err) {
  size_t len = prefix ? strlen(prefix) : 0;
  if (len < 2 || prefix[0] != '/' || prefix[len - 1] == '/')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "etcd_prefix \"%s\" must start with '/' and not end with one (\"/brume\")",
                         prefix ? prefix : "");
  return 0;
}
