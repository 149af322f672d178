/* The frontend's audit log: one JSON object per line, appended to a file the operator names
 * (audit_log option), for every refused call (UNAUTHENTICATED, PERMISSION_DENIED) and every call
 * that changes something (function management, API keys), whatever its outcome:
 *
 *   {"ts_unix_ms":..., "request_id":"...", "key_id":"...", "account_id":"...",
 *    "method":"CreateFunction", "resource":"hello", "code":"OK", "detail":"..."}
 *
 * key_id and account_id are absent when the call had no valid key. Secrets (the API key's
 * secret, environment variables) never reach it. Each line is one write(2) to a file opened with
 * O_APPEND, so lines from several threads (or processes) never interleave. The same event also
 * goes to the daemon's log at info level (refusals at warn).
 *
 * Thread safety: every function may be called from any thread. */
#ifndef BRUME_FRONTEND_AUDIT_H
#define BRUME_FRONTEND_AUDIT_H

#include "api_key.h"
#include "err.h"

typedef struct brume_audit brume_audit;

/* Opens (creating, mode 0600) path for appending; NULL path: the daemon's log only. NULL + err
 * when the file cannot be opened. */
brume_audit *brume_audit_open(const char *path, brume_err **err);
void brume_audit_close(brume_audit *a);

/* Records one call. who may be NULL (no valid key); resource (the function or key the call names)
 * and detail (the refusal's message) may be NULL. */
void brume_audit_record(brume_audit *a, const char *request_id, const brume_principal *who,
                        const char *method, const char *resource, brume_status code,
                        const char *detail);

#endif
