/* Errors: report once, where it happens.
 *
 * A function that can fail takes `brume_err **err` as its last argument and returns -1 (or NULL)
 * after filling it with brume_err_set(); callers that add context use brume_err_wrap() and pass
 * the same error on, instead of logging it again. err may be NULL when the caller does not care.
 * Codes are gRPC status codes (grpc/status.h numbering), so an error can travel to a client as is.
 * See docs/conventions.md. */
#ifndef BRUME_ERR_H
#define BRUME_ERR_H

#include "mem.h"

typedef enum brume_status {
  BRUME_OK = 0,
  BRUME_CANCELLED = 1,
  BRUME_UNKNOWN = 2,
  BRUME_INVALID_ARGUMENT = 3,
  BRUME_DEADLINE_EXCEEDED = 4,
  BRUME_NOT_FOUND = 5,
  BRUME_ALREADY_EXISTS = 6,
  BRUME_PERMISSION_DENIED = 7,
  BRUME_RESOURCE_EXHAUSTED = 8,
  BRUME_FAILED_PRECONDITION = 9,
  BRUME_ABORTED = 10,
  BRUME_OUT_OF_RANGE = 11,
  BRUME_UNIMPLEMENTED = 12,
  BRUME_INTERNAL = 13,
  BRUME_UNAVAILABLE = 14,
  BRUME_DATA_LOSS = 15,
  BRUME_UNAUTHENTICATED = 16,
} brume_status;

typedef struct brume_err {
  brume_status code;
  char *msg; /* a whole sentence, context first: "etcd put /a: connection refused" */
} brume_err;

/* Sets *err (if err is non-NULL and *err is NULL) and returns -1. */
int brume_err_set(brume_err **err, brume_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes context to an existing error ("ctx: old message"); returns -1. */
int brume_err_wrap(brume_err **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void brume_err_free(brume_err *err);
/* Frees *err and sets it to NULL. */
void brume_err_clear(brume_err **err);
/* "NOT_FOUND" etc.; "UNKNOWN" for out-of-range codes. */
const char *brume_status_name(int code);
/* The reason name that starts a failed call's message for code when nothing more precise
 * applies (proto/brume/common.proto, ErrorReason): "InvalidParameterValueException" for
 * INVALID_ARGUMENT, "ResourceNotFoundException" for NOT_FOUND, "ResourceConflictException" for
 * ALREADY_EXISTS and FAILED_PRECONDITION, "PreconditionFailedException" for ABORTED,
 * "UnrecognizedClientException" for UNAUTHENTICATED, "AccessDeniedException" for
 * PERMISSION_DENIED, "ServiceUnavailableException" for UNAVAILABLE, "ServiceException" otherwise.
 * A service names a more precise reason itself where it has one (a worker's
 * "InvalidSandboxStateException", a throttle's reason). */
const char *brume_status_reason(int code);

BRUME_DEFINE_AUTOPTR(brume_err, brume_err_free)

#endif
