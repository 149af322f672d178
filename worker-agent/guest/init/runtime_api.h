/* The AWS Lambda Runtime API server on 127.0.0.1:9001 (HTTP/1.1, keep-alive, Content-Length or
 * chunked request bodies), for RUNTIME_API mode.
 *
 *   GET  /2018-06-01/runtime/invocation/next            waits for an event (200 + headers)
 *   POST /2018-06-01/runtime/invocation/{id}/response   202; 400 InvalidRequestID
 *   POST /2018-06-01/runtime/invocation/{id}/error      202; 400 InvalidRequestID
 *   POST /2018-06-01/runtime/init/error                 202; 403 InvalidStateTransition
 *
 * The server knows HTTP, not the sandbox's state: it parks /next calls until init_rtapi_deliver()
 * hands it an event, and asks its owner (ops) what to answer to each post. Bodies over
 * INIT_RTAPI_MAX_BODY are refused with 413 (and ops->too_large for a response). */
#ifndef BRUME_INIT_RUNTIME_API_H
#define BRUME_INIT_RUNTIME_API_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "loop.h"

/* Lambda's limit on a synchronous response, in bytes. */
#define INIT_RTAPI_MAX_BODY 6291556u

typedef struct init_rtapi init_rtapi;

typedef enum init_rtapi_verdict {
  INIT_RTAPI_ACCEPTED,      /* 202 */
  INIT_RTAPI_INVALID_ID,    /* 400 InvalidRequestID: not the invocation in flight */
  INIT_RTAPI_INVALID_STATE, /* 403 InvalidStateTransition: not now */
} init_rtapi_verdict;

typedef struct init_rtapi_ops {
  /* A runtime asked for the next event (the first call ends the runtime's init). */
  void (*next)(void *arg);
  /* The runtime posted the response, or an error (error_type from the
   * Lambda-Runtime-Function-Error-Type header, "" when absent; body as posted). Strings and body
   * are valid during the call only. */
  init_rtapi_verdict (*response)(void *arg, const char *request_id, const uint8_t *body,
                                 size_t len);
  init_rtapi_verdict (*error)(void *arg, const char *request_id, const char *error_type,
                              const uint8_t *body, size_t len);
  init_rtapi_verdict (*init_error)(void *arg, const char *error_type, const uint8_t *body,
                                   size_t len);
  /* A response for request_id was refused with 413. */
  void (*too_large)(void *arg, const char *request_id);
} init_rtapi_ops;

/* One event, as /next returns it. Empty strings leave their header out. */
typedef struct init_rtapi_event {
  const char *request_id;
  const uint8_t *payload;
  size_t payload_len;
  int64_t deadline_unix_ms;
  const char *function_arn;
  const char *trace_id;
  const char *client_context;
  const char *cognito_identity;
} init_rtapi_event;

/* Listens on addr ("127.0.0.1:9001"). UNAVAILABLE when the address cannot be bound. */
init_rtapi *init_rtapi_listen(init_loop *loop, const char *addr, const init_rtapi_ops *ops,
                              void *arg, brume_err **err);

/* Answers the oldest waiting /next with ev (copied now), or the next /next to arrive. */
void init_rtapi_deliver(init_rtapi *api, const init_rtapi_event *ev);
/* Forgets an event that no /next has fetched yet (the invocation ended without the runtime). */
void init_rtapi_cancel(init_rtapi *api);

void init_rtapi_free(init_rtapi *api);

/* From an error document ({"errorType": ..., "errorMessage": ...}), the two strings (malloc'ed,
 * or NULL when absent, not strings, or the body is not a JSON object). */
void init_rtapi_parse_error_doc(const uint8_t *body, size_t len, char **type, char **message);

#endif
