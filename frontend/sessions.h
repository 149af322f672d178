/* Dashboard sessions: what an operator's admin key is traded for at login (docs/dashboard.md),
 * so that the browser holds a cookie that expires instead of the key itself.
 *
 * A session is a random 256-bit token (64 hex digits) that names a principal until it expires.
 * The table keeps only each token's SHA-256, so a memory dump does not hand out live sessions,
 * and finds a token by its hash (no early-exit comparison of the secret). At most max sessions
 * live at once; a new one beyond that ends the one that expires first. Sessions are in memory
 * only: a restarted frontend has none.
 *
 * Thread safety: every function may be called from any thread. */
#ifndef BRUME_FRONTEND_SESSIONS_H
#define BRUME_FRONTEND_SESSIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api_key.h"

#define BRUME_SESSION_TOKEN_HEX 64
#define BRUME_SESSION_COOKIE "brume_session"

typedef struct brume_sessions brume_sessions;

/* max >= 1 sessions, each living ttl_ms > 0. */
brume_sessions *brume_sessions_new(size_t max, int64_t ttl_ms);
void brume_sessions_free(brume_sessions *s);

/* Starts a session for who at now_ms: its token goes to token, its end to *expires_unix_ms. */
void brume_sessions_create(brume_sessions *s, const brume_principal *who, int64_t now_ms,
                           char token[BRUME_SESSION_TOKEN_HEX + 1], int64_t *expires_unix_ms);

/* The session of token at now_ms: true with its principal and end; false when token is unknown,
 * malformed or expired (an expired session is removed). */
bool brume_sessions_find(brume_sessions *s, const char *token, int64_t now_ms, brume_principal *who,
                         int64_t *expires_unix_ms);

/* Ends the session of token (nothing happens for an unknown one). */
void brume_sessions_end(brume_sessions *s, const char *token);

/* The value of cookie BRUME_SESSION_COOKIE in a Cookie header ("a=1; brume_session=<hex>"),
 * copied into token: true when present and well formed (64 lowercase hex digits). */
bool brume_sessions_cookie_token(const char *cookie_header,
                                 char token[BRUME_SESSION_TOKEN_HEX + 1]);

#endif
