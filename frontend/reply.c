/* Failing the frontend's calls (reply.h). */
#include "reply.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "mem.h"

bool brume_has_reason(const char *msg) {
  /* A reason name is one CamelCase word of letters and dots before ": ". */
  size_t n = 0;
  while (isalnum((unsigned char)msg[n]) || msg[n] == '.') n++;
  return n >= 4 && isupper((unsigned char)msg[0]) && msg[n] == ':' && msg[n + 1] == ' ';
}

static bool client_caused(brume_status code) {
  switch (code) {
    case BRUME_INVALID_ARGUMENT:
    case BRUME_NOT_FOUND:
    case BRUME_ALREADY_EXISTS:
    case BRUME_FAILED_PRECONDITION:
    case BRUME_ABORTED:
    case BRUME_RESOURCE_EXHAUSTED:
    case BRUME_UNAUTHENTICATED:
    case BRUME_PERMISSION_DENIED:
    case BRUME_CANCELLED:
      return true;
    default:
      return false;
  }
}

void brume_frontend_fail(brume_rpc_call *call, const brume_err *err) {
  const char *rid = brume_rpc_call_metadata(call, BRUME_MD_REQUEST_ID);
  char q[768];
  brume_log(client_caused(err->code) ? BRUME_LOG_DEBUG : BRUME_LOG_WARN, "A frontend call failed.",
            "request_id=%s method=%s code=%s err=%s", rid ? rid : "-", brume_rpc_call_method(call),
            brume_status_name(err->code), brume_log_quote(q, sizeof(q), err->msg));
  if (err->code == BRUME_INTERNAL || err->code == BRUME_UNKNOWN) {
    brume_rpc_call_fail(call, BRUME_INTERNAL,
                        "ServiceException: the frontend failed unexpectedly (request %s); the "
                        "operator's log has the details",
                        rid ? rid : "-");
    return;
  }
  if (brume_has_reason(err->msg))
    brume_rpc_call_fail(call, err->code, "%s", err->msg);
  else
    brume_rpc_call_fail(call, err->code, "%s: %s", brume_status_reason(err->code), err->msg);
}

void brume_frontend_failf(brume_rpc_call *call, brume_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  brume_autofree char *msg = brume_xvasprintf(fmt, ap);
  va_end(ap);
  brume_err e = {.code = code, .msg = msg};
  brume_frontend_fail(call, &e);
}
