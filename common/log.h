/* Logging: one line per event, key=value, on stderr.
 *
 *   ts=2026-11-27T11:30:00.123Z level=info daemon=counting msg="Listening for gRPC." addr=127.0.0.1:7010
 *
 * msg is a whole, greppable sentence; the key=value pairs after it come from a printf format the
 * caller writes ("addr=%s n=%d"). Quote free-text values with brume_log_quote(). Secrets (API keys,
 * environment variables, private keys) are never passed to these functions. Thread-safe: each line
 * is written with a single write(2). */
#ifndef BRUME_LOG_H
#define BRUME_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum brume_log_level {
  BRUME_LOG_DEBUG = 0,
  BRUME_LOG_INFO = 1,
  BRUME_LOG_WARN = 2,
  BRUME_LOG_ERROR = 3,
} brume_log_level;

/* daemon: the name logged as daemon=...; may be called again (tests). */
void brume_log_init(const char *daemon, brume_log_level level);
/* "debug", "info", "warn", "error" -> 0 on success, -1 if unknown. */
int brume_log_level_parse(const char *name, brume_log_level *out);
const char *brume_log_level_name(brume_log_level level);
bool brume_log_enabled(brume_log_level level);

void brume_log(brume_log_level level, const char *msg, const char *kvfmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes s as a quoted value ("a \"b\"") into buf (always NUL-terminated, truncated to fit)
 * and returns buf, for use as a %s argument. */
const char *brume_log_quote(char *buf, size_t size, const char *s);

#define brume_debug(msg, ...) \
  do { if (brume_log_enabled(BRUME_LOG_DEBUG)) brume_log(BRUME_LOG_DEBUG, msg, __VA_ARGS__); } while (0)
#define brume_info(msg, ...) brume_log(BRUME_LOG_INFO, msg, __VA_ARGS__)
#define brume_warn(msg, ...) brume_log(BRUME_LOG_WARN, msg, __VA_ARGS__)
#define brume_error(msg, ...) brume_log(BRUME_LOG_ERROR, msg, __VA_ARGS__)

#endif
