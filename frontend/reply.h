/* How the frontend fails a call: the code, and a message led by its reason name (common.proto's
 * "Errors"), logged with the request id. INTERNAL details are logged and replaced by a plain
 * "ServiceException" sentence, since clients must not see Brume's insides; refusals the client
 * caused (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, ABORTED, throttles)
 * are logged at debug level only, so a misbehaving client cannot flood the log. */
#ifndef BRUME_FRONTEND_REPLY_H
#define BRUME_FRONTEND_REPLY_H

#include "err.h"
#include "rpc.h"

/* Fails call with err's code and message (the reason name added when the message has none). */
void brume_frontend_fail(brume_rpc_call *call, const brume_err *err);
/* Same, from a code and a printf message (which may start with a reason name). */
void brume_frontend_failf(brume_rpc_call *call, brume_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Whether msg starts with a reason name ("SomethingException: " or a throttle reason such as
 * "ReservedFunctionConcurrentInvocationLimitExceeded: "). */
bool brume_has_reason(const char *msg);

#endif
