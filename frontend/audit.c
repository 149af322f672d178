/* The audit log (audit.h). */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mem.h"

struct brume_audit {
  int fd; /* -1: the daemon's log only */
};

brume_audit *brume_audit_open(const char *path, brume_err **err) {
  brume_audit *a = brume_xcalloc(1, sizeof(*a));
  a->fd = -1;
  if (path && path[0]) {
    a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (a->fd < 0) {
      brume_err_set(err, BRUME_INVALID_ARGUMENT, "audit log %s: %s", path, strerror(errno));
      free(a);
      return NULL;
    }
  }
  return a;
}

void brume_audit_close(brume_audit *a) {
  if (a == NULL) return;
  if (a->fd >= 0) close(a->fd);
  free(a);
}

void brume_audit_record(brume_audit *a, const char *request_id, const brume_principal *who,
                        const char *method, const char *resource, brume_status code,
                        const char *detail) {
  bool refused = code == BRUME_UNAUTHENTICATED || code == BRUME_PERMISSION_DENIED;
  char q[512], rq[160];
  brume_log(refused ? BRUME_LOG_WARN : BRUME_LOG_INFO,
            refused ? "A call was refused." : "A change was requested.",
            "request_id=%s key_id=%s account_id=%s method=%s resource=%s code=%s detail=%s",
            request_id ? request_id : "-", who ? who->key_id : "-", who ? who->account_id : "-",
            method, brume_log_quote(rq, sizeof(rq), resource ? resource : "-"),
            brume_status_name(code), brume_log_quote(q, sizeof(q), detail ? detail : "-"));
  if (a == NULL || a->fd < 0) return;
  json_t *o = json_object();
  json_object_set_new(o, "ts_unix_ms", json_integer(brume_wall_ms()));
  if (request_id) json_object_set_new(o, "request_id", json_string(request_id));
  if (who) {
    json_object_set_new(o, "key_id", json_string(who->key_id));
    json_object_set_new(o, "account_id", json_string(who->account_id));
  }
  json_object_set_new(o, "method", json_string(method));
  /* jansson refuses invalid UTF-8 (a client's garbage): then the field is left out. */
  if (resource) {
    json_t *r = json_string(resource);
    if (r) json_object_set_new(o, "resource", r);
  }
  json_object_set_new(o, "code", json_string(brume_status_name(code)));
  if (detail) {
    json_t *d = json_string(detail);
    if (d) json_object_set_new(o, "detail", d);
  }
  char *line = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  BRUME_ENSURE(line != NULL);
  size_t n = strlen(line);
  line = brume_xrealloc(line, n + 2);
  line[n++] = '\n';
  if (write(a->fd, line, n) != (ssize_t)n)
    brume_error("Writing the audit log failed.", "err=%s", strerror(errno));
  free(line);
}
