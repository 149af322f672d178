#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int current_level = BRUME_LOG_INFO;
static char daemon_name[64] = "brume";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void brume_log_init(const char *daemon, brume_log_level level) {
  snprintf(daemon_name, sizeof(daemon_name), "%s", daemon ? daemon : "brume");
  current_level = level;
}

int brume_log_level_parse(const char *name, brume_log_level *out) {
  for (int i = 0; i < 4; i++) {
    if (strcmp(name, level_names[i]) == 0) {
      *out = (brume_log_level)i;
      return 0;
    }
  }
  return -1;
}

const char *brume_log_level_name(brume_log_level level) {
  return (level >= 0 && level <= BRUME_LOG_ERROR) ? level_names[level] : "unknown";
}

bool brume_log_enabled(brume_log_level level) { return (int)level >= current_level; }

const char *brume_log_quote(char *buf, size_t size, const char *s) {
  size_t o = 0;
  if (size < 3) {
    if (size) buf[0] = '\0';
    return buf;
  }
  buf[o++] = '"';
  for (; s && *s && o + 3 < size; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      buf[o++] = '\\';
      buf[o++] = (char)c;
    } else if (c < 0x20) {
      buf[o++] = ' ';
    } else {
      buf[o++] = (char)c;
    }
  }
  buf[o++] = '"';
  buf[o] = '\0';
  return buf;
}

void brume_log(brume_log_level level, const char *msg, const char *kvfmt, ...) {
  if (!brume_log_enabled(level)) return;
  char line[4096];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char qmsg[1024];
  int n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s daemon=%s msg=%s",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   ts.tv_nsec / 1000000, brume_log_level_name(level), daemon_name,
                   brume_log_quote(qmsg, sizeof(qmsg), msg));
  if (n < 0) return;
  size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
  if (kvfmt && *kvfmt && len + 2 < sizeof(line)) {
    line[len++] = ' ';
    va_list ap;
    va_start(ap, kvfmt);
    int m = vsnprintf(line + len, sizeof(line) - len, kvfmt, ap);
    va_end(ap);
    if (m > 0) len += (size_t)m < sizeof(line) - len ? (size_t)m : sizeof(line) - len - 1;
    else len--; /* no pairs after all: no trailing space */
  }
  if (len >= sizeof(line) - 1) len = sizeof(line) - 2;
  line[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
}
