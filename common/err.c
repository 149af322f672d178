#include "err.h"

#include <stdio.h>

int brume_err_set(brume_err **err, brume_status code, const char *fmt, ...) {
  if (err == NULL || *err != NULL) return -1;
  va_list ap;
  va_start(ap, fmt);
  brume_err *e = brume_xmalloc(sizeof(*e));
  e->code = code;
  e->msg = brume_xvasprintf(fmt, ap);
  va_end(ap);
  *err = e;
  return -1;
}

int brume_err_wrap(brume_err **err, const char *fmt, ...) {
  if (err == NULL || *err == NULL) return -1;
  va_list ap;
  va_start(ap, fmt);
  brume_autofree char *ctx = brume_xvasprintf(fmt, ap);
  va_end(ap);
  char *msg = brume_xasprintf("%s: %s", ctx, (*err)->msg);
  free((*err)->msg);
  (*err)->msg = msg;
  return -1;
}

void brume_err_free(brume_err *err) {
  if (err == NULL) return;
  free(err->msg);
  free(err);
}

void brume_err_clear(brume_err **err) {
  brume_err_free(*err);
  *err = NULL;
}

const char *brume_status_name(int code) {
  static const char *const names[] = {
      "OK",        "CANCELLED",          "UNKNOWN",           "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS",     "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",       "UNIMPLEMENTED",    "INTERNAL",
      "UNAVAILABLE", "DATA_LOSS",        "UNAUTHENTICATED",
  };
  if (code < 0 || (size_t)code >= BRUME_ARRAY_LEN(names)) return "UNKNOWN";
  return names[code];
}

const char *brume_status_reason(int code) {
  switch (code) {
    case BRUME_INVALID_ARGUMENT:
      return "InvalidParameterValueException";
    case BRUME_NOT_FOUND:
      return "ResourceNotFoundException";
    case BRUME_ALREADY_EXISTS:
    case BRUME_FAILED_PRECONDITION:
      return "ResourceConflictException";
    case BRUME_ABORTED:
      return "PreconditionFailedException";
    case BRUME_UNAUTHENTICATED:
      return "UnrecognizedClientException";
    case BRUME_PERMISSION_DENIED:
      return "AccessDeniedException";
    case BRUME_UNAVAILABLE:
      return "ServiceUnavailableException";
    default:
      return "ServiceException";
  }
}
