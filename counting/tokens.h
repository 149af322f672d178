/* Tokens: the counting daemon's table of granted, not yet released tokens (proto Counting.Acquire
 * and Release, DESIGN.md "Counting without making etcd the bottleneck").
 *
 * Every grant is one token: one unit of a function's concurrency that its caller holds until it
 * releases the token, or until the token's deadline (the grant's time plus hold_ms), when
 * counting takes it back by itself so that a caller that died does not leak concurrency. The
 * daemon keeps its per-account and per-function counts; this table only remembers, per token,
 * what to decrement when it comes back.
 *
 * The daemon's goal is 50,000 Acquire+Release pairs a second, so add, find and release are O(1)
 * on average (a hash table keyed by the token's id) and the deadlines are a binary min-heap, so
 * that each token's expiry or early release costs O(log n) and finding the next deadline O(1).
 *
 * The token string a client sees is "<daemon id>.<id as 16 lowercase hex digits>"
 * ("cnt-1.00f3a9c2b17d4e55"): a Release that reaches another counting daemon is recognised as
 * such instead of being answered "not held". Ids are 64-bit random numbers (getrandom()), never
 * 0, never one that is held; the daemon id keeps those of two daemons apart, and randomness keeps
 * a restarted daemon from taking a stale token of its previous life for a new one.
 *
 * Token strings from the network are checked where they are parsed, with distinct answers:
 *   INVALID_ARGUMENT  malformed: not "<daemon id>.<16 lowercase hex digits>", or the id is 0;
 *   NOT_FOUND         well formed, but granted by another daemon (the message names it);
 *   not held          well formed and this daemon's, but not in the table (released, taken back
 *                     at its deadline, or from a previous life): not an error, an answer (find
 *                     and release return 0); upgrade, which needs the token, fails with NOT_FOUND.
 *
 * The clock is injected: every call that needs time takes now_ms, a monotonic time in
 * milliseconds chosen by the caller. Pure state: no I/O, no locking (the daemon serialises
 * calls). */
#ifndef BRUME_COUNTING_TOKENS_H
#define BRUME_COUNTING_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* hold_ms 0 means this, and no token is held longer: Lambda's longest timeout (15 min) plus a
 * minute of margin. */
#define BRUME_TOKENS_HOLD_MS_DEFAULT 960000
#define BRUME_TOKENS_HOLD_MS_MAX 960000
/* The longest daemon id: 1 to 64 bytes of printable ASCII without spaces. */
#define BRUME_TOKENS_DAEMON_ID_MAX 64
/* Room for any token string of any daemon, with its NUL. */
#define BRUME_TOKEN_STRING_MAX (BRUME_TOKENS_DAEMON_ID_MAX + 1 + 16 + 1)

/* What a token was granted for. The values are proto AcquireKind's numbers, so a cast converts
 * one into the other. */
typedef enum brume_token_kind {
  /* A cold start: it took a scaling-bucket token, unless provisioned.
   * ACQUIRE_KIND_NEW_ENVIRONMENT. */
  BRUME_TOKEN_NEW_ENVIRONMENT = 1,
  /* An invocation in an idle environment: concurrency only. ACQUIRE_KIND_WARM_ENVIRONMENT. */
  BRUME_TOKEN_WARM_ENVIRONMENT = 2,
} brume_token_kind;

/* One granted token. The table owns the tokens it holds (find returns them read-only, valid
 * until the token is released or expired, or the table freed); release and expire hand
 * them over to the caller, who frees them with brume_token_free(). The strings live in the same
 * allocation. */
typedef struct brume_token {
  uint64_t id; /* never 0 */
  /* The function as invoked (proto FunctionRef); qualifier "" = $LATEST. */
  const char *account_id;
  const char *function_name;
  const char *qualifier;
  const char *caller_id; /* who acquired it ("frontend/fe-1") */
  brume_token_kind kind; /* changed only by brume_tokens_upgrade() */
  bool provisioned;      /* it counted against the qualifier's provisioned concurrency */
  /* The daemon's own note of what the token counts against (its records); stored, never read. */
  void *owner;
  unsigned owner_flags;
  int64_t deadline_ms;   /* when counting takes it back: the grant's now_ms + hold_ms */

  /* Private to tokens.c. */
  uint64_t seq;      /* the order of adds: equal deadlines expire first-granted first */
  size_t heap_index; /* where it is in the deadline heap */
  char strings[];    /* account, function, qualifier and caller, each with its NUL */
} brume_token;

/* What add grants a token for. The strings are copied. */
typedef struct brume_token_spec {
  const char *account_id;    /* non-empty */
  const char *function_name; /* non-empty */
  const char *qualifier;     /* NULL = "" */
  const char *caller_id;     /* NULL = "" */
  brume_token_kind kind;     /* one of the two kinds */
  bool provisioned;
  void *owner; /* copied into the token as they are */
  unsigned owner_flags;
  uint32_t hold_ms; /* 0 = BRUME_TOKENS_HOLD_MS_DEFAULT; capped at BRUME_TOKENS_HOLD_MS_MAX */
} brume_token_spec;

/* The table. Private to tokens.c. */
typedef struct brume_tokens brume_tokens;

/* Frees a token handed over by release or expire (NULL is fine). */
void brume_token_free(brume_token *tok);

/* 0 if daemon_id can name a daemon in token strings (1 to BRUME_TOKENS_DAEMON_ID_MAX bytes of
 * printable ASCII without spaces); -1 with INVALID_ARGUMENT saying why otherwise. */
int brume_tokens_check_daemon_id(const char *daemon_id, brume_err **err);

/* A new, empty table for the daemon daemon_id (1 to BRUME_TOKENS_DAEMON_ID_MAX bytes of
 * printable ASCII without spaces; copied), or NULL with INVALID_ARGUMENT. */
brume_tokens *brume_tokens_new(const char *daemon_id, brume_err **err);

/* Frees t and every token it still holds (NULL is fine). */
void brume_tokens_free(brume_tokens *t);

/* Grants a token as spec says at now_ms, with a fresh id and a deadline of now_ms + hold_ms
 * (saturating at INT64_MAX). Returns it (owned by t), or NULL with INVALID_ARGUMENT when spec has
 * no account or function or an unknown kind. O(1) on average, plus O(log n) for the deadline. */
const brume_token *brume_tokens_add(brume_tokens *t, const brume_token_spec *spec, int64_t now_ms,
                                    brume_err **err);

/* Writes the token string of id, as clients see it, into buf (at least BRUME_TOKEN_STRING_MAX
 * bytes) and returns buf. */
char *brume_tokens_string(const brume_tokens *t, uint64_t id, char *buf);

/* Parses a token string into its id, checking that it is this daemon's: 0, or -1 with
 * INVALID_ARGUMENT (malformed) or NOT_FOUND (another daemon's). Says nothing of whether the token
 * is held. */
int brume_tokens_parse(const brume_tokens *t, const char *token, uint64_t *id, brume_err **err);

/* Looks a token string up: 1 and *found set to the token (owned by t) if held; 0 and *found set
 * to NULL if not held; -1 (and *found NULL) when brume_tokens_parse() fails. */
int brume_tokens_find(const brume_tokens *t, const char *token, const brume_token **found,
                      brume_err **err);

/* Turns a held warm-environment token into a new-environment one (Acquire with upgrade_token):
 * the same token, id and deadline. 0 on success, with *upgraded (if non-NULL) set to it; -1 with
 * the errors of brume_tokens_parse(), NOT_FOUND if the token is not held, or FAILED_PRECONDITION
 * if it is already a new-environment token (then nothing changes). Whether the caller may upgrade
 * it (its caller_id) and the scaling-bucket token are the daemon's to check first. */
int brume_tokens_upgrade(brume_tokens *t, const char *token, const brume_token **upgraded,
                         brume_err **err);

/* Releases a token string: 1 if it was held, and it is no longer: *released (if non-NULL) gets
 * the token, which the caller now owns and frees with brume_token_free(); with released NULL it
 * is freed here. 0 if it was not held (released twice, or already taken back at its deadline):
 * nothing changes, *released is NULL. -1 (and *released NULL) when brume_tokens_parse() fails.
 * O(1) on average, plus O(log n) to take it out of the deadline heap. */
int brume_tokens_release(brume_tokens *t, const char *token, brume_token **released,
                         brume_err **err);

/* Takes back tokens whose deadline is at or before now_ms, earliest deadline first (and, for
 * equal deadlines, in the order they were granted), at most max of them: each is removed from t
 * and stored in out[], exactly as brume_tokens_release() hands a token over (the caller owns and
 * frees them). Returns how many; when that is max, more may be due: call again. O(log n) each. */
size_t brume_tokens_expire(brume_tokens *t, int64_t now_ms, brume_token **out, size_t max);

/* The earliest deadline of a held token, so the daemon knows when to wake: true and
 * *deadline_ms set, or false when no token is held. O(1). */
bool brume_tokens_next_deadline(const brume_tokens *t, int64_t *deadline_ms);

/* How many tokens t holds. */
size_t brume_tokens_count(const brume_tokens *t);

/* For tests: makes next_id(arg) the source of new ids instead of getrandom() (NULL restores
 * it). Add still skips 0 and held ids, calling it again. */
void brume_tokens_set_id_source(brume_tokens *t, uint64_t (*next_id)(void *arg), void *arg);

BRUME_DEFINE_AUTOPTR(brume_tokens, brume_tokens_free)
BRUME_DEFINE_AUTOPTR(brume_token, brume_token_free)

#endif
