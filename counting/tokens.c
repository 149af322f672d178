#include "tokens.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "clock.h"

/* The hash table: open addressing with linear probing over a power-of-two array of slots, each
 * holding the id next to its token so that a probe reads no token it does not need. An id of 0
 * marks an empty slot, which is why no token has id 0. Ids are random already, but a
 * multiplicative (Fibonacci) hash spreads them anyway, in case the id source is weak.
 *
 * Deletion is by backward shift (Knuth's algorithm R): the entries after the freed slot, up to
 * the next empty one, move back into it when that does not put them before their home slot. The
 * table then looks as if the deleted key had never been inserted. Tombstones would be simpler,
 * but under the daemon's churn (every token is added once and removed once, 50,000 a second)
 * they would fill the table until every miss scans a long run, and need periodic rebuilds; a
 * backward shift costs about one probe run per delete and keeps lookups as short as at insert.
 *
 * The table doubles when an insert would pass 70 % full, and never shrinks: its size follows the
 * peak of concurrent tokens, which the concurrency limits bound, at 16 bytes a slot. */
#define TABLE_MIN_SLOTS 16
#define TABLE_LOAD_PCT 70

typedef struct slot {
  uint64_t id; /* 0 = empty */
  brume_token *tok;
} slot;

/* How many ids one getrandom() call fetches: 256 bytes, which getrandom() never splits. */
#define ID_BATCH 32

struct brume_tokens {
  char *daemon_id;
  size_t daemon_id_len;

  slot *slots;
  size_t nslots; /* a power of two */
  unsigned bits; /* log2(nslots) */
  size_t count;

  /* The deadline heap: heap[0] has the earliest (deadline_ms, seq); each token's heap_index says
   * where it is, so that a release removes it from the middle in O(log n). */
  brume_token **heap;
  size_t heap_cap;

  uint64_t next_seq;

  uint64_t ids[ID_BATCH]; /* random ids not yet used, ids[id_pos..] */
  size_t id_pos;
  uint64_t fallback; /* splitmix64 state, when getrandom() fails */
  uint64_t (*next_id)(void *arg);
  void *next_id_arg;
};

/* ---- ids ---- */

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static void refill_ids(brume_tokens *t) {
  if (getrandom(t->ids, sizeof(t->ids), GRND_NONBLOCK) != (ssize_t)sizeof(t->ids)) {
    /* No entropy yet (early boot) or no getrandom(): still distinct ids, from a generator seeded
     * from the time, the process and the table, just predictable ones. */
    if (t->fallback == 0)
      t->fallback = (uint64_t)brume_mono_us() ^ ((uint64_t)brume_wall_ms() << 20) ^
                    ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)t;
    for (size_t i = 0; i < ID_BATCH; i++) t->ids[i] = splitmix64(&t->fallback);
  }
  t->id_pos = 0;
}

static uint64_t random_id(brume_tokens *t) {
  if (t->next_id) return t->next_id(t->next_id_arg);
  if (t->id_pos == ID_BATCH) refill_ids(t);
  return t->ids[t->id_pos++];
}

/* ---- the hash table ---- */

static size_t home(const brume_tokens *t, uint64_t id) {
  return (size_t)((id * 0x9e3779b97f4a7c15u) >> (64 - t->bits));
}

/* The slot holding id, or the empty slot where it would go. */
static size_t probe(const brume_tokens *t, uint64_t id) {
  size_t mask = t->nslots - 1;
  size_t i = home(t, id);
  while (t->slots[i].id != 0 && t->slots[i].id != id) i = (i + 1) & mask;
  return i;
}

static void table_alloc(brume_tokens *t, unsigned bits) {
  t->bits = bits;
  t->nslots = (size_t)1 << bits;
  t->slots = brume_xcalloc(t->nslots, sizeof(slot));
}

static void table_grow(brume_tokens *t) {
  slot *old = t->slots;
  size_t n = t->nslots;
  table_alloc(t, t->bits + 1);
  for (size_t i = 0; i < n; i++)
    if (old[i].id != 0) t->slots[probe(t, old[i].id)] = old[i];
  free(old);
}

static brume_token *table_get(const brume_tokens *t, uint64_t id) {
  if (id == 0) return NULL;
  return t->slots[probe(t, id)].tok;
}

/* Inserts tok, whose id is not in the table. */
static void table_put(brume_tokens *t, brume_token *tok) {
  if ((t->count + 1) * 100 > t->nslots * TABLE_LOAD_PCT) table_grow(t);
  size_t i = probe(t, tok->id);
  BRUME_ENSURE(t->slots[i].id == 0);
  t->slots[i] = (slot){tok->id, tok};
  t->count++;
}

/* Removes the entry in slot i by backward shift. */
static void table_delete_at(brume_tokens *t, size_t i) {
  size_t mask = t->nslots - 1;
  for (size_t j = (i + 1) & mask; t->slots[j].id != 0; j = (j + 1) & mask) {
    /* The entry at j may move back to i if i lies on its probe path, from its home to j: its
     * distance from home is at least the distance from i. */
    size_t k = home(t, t->slots[j].id);
    if (((j - k) & mask) >= ((j - i) & mask)) {
      t->slots[i] = t->slots[j];
      i = j;
    }
  }
  t->slots[i] = (slot){0, NULL};
  t->count--;
}

/* ---- the deadline heap ---- */

static bool earlier(const brume_token *a, const brume_token *b) {
  return a->deadline_ms < b->deadline_ms || (a->deadline_ms == b->deadline_ms && a->seq < b->seq);
}

static void heap_set(brume_tokens *t, size_t i, brume_token *tok) {
  t->heap[i] = tok;
  tok->heap_index = i;
}

static void sift_up(brume_tokens *t, size_t i) {
  brume_token *tok = t->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!earlier(tok, t->heap[parent])) break;
    heap_set(t, i, t->heap[parent]);
    i = parent;
  }
  heap_set(t, i, tok);
}

/* n is the heap's size (the table's count, which the heap always matches). */
static void sift_down(brume_tokens *t, size_t i, size_t n) {
  brume_token *tok = t->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && earlier(t->heap[c + 1], t->heap[c])) c++;
    if (!earlier(t->heap[c], tok)) break;
    heap_set(t, i, t->heap[c]);
    i = c;
  }
  heap_set(t, i, tok);
}

/* Appends tok to a heap of n - 1 tokens. */
static void heap_push(brume_tokens *t, brume_token *tok, size_t n) {
  if (n > t->heap_cap) {
    t->heap_cap = t->heap_cap ? t->heap_cap * 2 : TABLE_MIN_SLOTS;
    t->heap = brume_xrealloc(t->heap, t->heap_cap * sizeof(*t->heap));
  }
  heap_set(t, n - 1, tok);
  sift_up(t, n - 1);
}

/* Takes tok out of a heap of n tokens: the last one fills its place and moves up or down. */
static void heap_remove(brume_tokens *t, brume_token *tok, size_t n) {
  size_t i = tok->heap_index;
  BRUME_ENSURE(i < n && t->heap[i] == tok);
  brume_token *last = t->heap[n - 1];
  if (last == tok) return;
  heap_set(t, i, last);
  if (i > 0 && earlier(last, t->heap[(i - 1) / 2]))
    sift_up(t, i);
  else
    sift_down(t, i, n - 1);
}

/* Takes tok (held) out of both structures; the caller now owns it. */
static void unlink_token(brume_tokens *t, brume_token *tok) {
  size_t n = t->count;
  heap_remove(t, tok, n);
  size_t i = probe(t, tok->id);
  BRUME_ENSURE(t->slots[i].tok == tok);
  table_delete_at(t, i);
}

/* ---- the table's API ---- */

void brume_token_free(brume_token *tok) {
  free(tok);
}

int brume_tokens_check_daemon_id(const char *daemon_id, brume_err **err) {
  size_t len = daemon_id ? strnlen(daemon_id, BRUME_TOKENS_DAEMON_ID_MAX + 1) : 0;
  if (len == 0 || len > BRUME_TOKENS_DAEMON_ID_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "counting daemon id of %zu%s bytes is out of range: 1 to %d bytes", len,
                         len > BRUME_TOKENS_DAEMON_ID_MAX ? " or more" : "",
                         BRUME_TOKENS_DAEMON_ID_MAX);
  for (size_t i = 0; i < len; i++)
    if (daemon_id[i] <= ' ' || daemon_id[i] > '~')
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           "counting daemon id \"%s\" is invalid: printable ASCII without spaces",
                           daemon_id);
  return 0;
}

brume_tokens *brume_tokens_new(const char *daemon_id, brume_err **err) {
  if (brume_tokens_check_daemon_id(daemon_id, err) < 0) return NULL;
  size_t len = strlen(daemon_id);
  brume_tokens *t = brume_xcalloc(1, sizeof(*t));
  t->daemon_id = brume_xstrdup(daemon_id);
  t->daemon_id_len = len;
  table_alloc(t, 4);
  BRUME_ENSURE(t->nslots == TABLE_MIN_SLOTS);
  t->id_pos = ID_BATCH;
  return t;
}

void brume_tokens_free(brume_tokens *t) {
  if (t == NULL) return;
  for (size_t i = 0; i < t->count; i++) free(t->heap[i]);
  free(t->heap);
  free(t->slots);
  free(t->daemon_id);
  free(t);
}

const brume_token *brume_tokens_add(brume_tokens *t, const brume_token_spec *spec, int64_t now_ms,
                                    brume_err **err) {
  if (spec->account_id == NULL || spec->account_id[0] == '\0') {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "a token needs an account id");
    return NULL;
  }
  if (spec->function_name == NULL || spec->function_name[0] == '\0') {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "a token needs a function name");
    return NULL;
  }
  if (spec->kind != BRUME_TOKEN_NEW_ENVIRONMENT && spec->kind != BRUME_TOKEN_WARM_ENVIRONMENT) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT,
                  "token kind %d is invalid: 1 (new environment) or 2 (warm environment)",
                  (int)spec->kind);
    return NULL;
  }

  const char *src[4] = {spec->account_id, spec->function_name,
                        spec->qualifier ? spec->qualifier : "",
                        spec->caller_id ? spec->caller_id : ""};
  size_t len[4], total = 0;
  for (int i = 0; i < 4; i++) total += (len[i] = strlen(src[i])) + 1;
  /* One allocation per token: the strings follow the struct. */
  brume_token *tok = brume_xmalloc(sizeof(*tok) + total);
  const char *dst[4];
  char *p = tok->strings;
  for (int i = 0; i < 4; i++) {
    memcpy(p, src[i], len[i] + 1);
    dst[i] = p;
    p += len[i] + 1;
  }

  uint64_t id;
  do id = random_id(t);
  while (id == 0 || table_get(t, id) != NULL);

  uint32_t hold = spec->hold_ms;
  if (hold == 0) hold = BRUME_TOKENS_HOLD_MS_DEFAULT;
  if (hold > BRUME_TOKENS_HOLD_MS_MAX) hold = BRUME_TOKENS_HOLD_MS_MAX;
  int64_t deadline;
  if (__builtin_add_overflow(now_ms, (int64_t)hold, &deadline)) deadline = INT64_MAX;

  *tok = (brume_token){
      .id = id,
      .account_id = dst[0],
      .function_name = dst[1],
      .qualifier = dst[2],
      .caller_id = dst[3],
      .kind = spec->kind,
      .provisioned = spec->provisioned,
      .owner = spec->owner,
      .owner_flags = spec->owner_flags,
      .deadline_ms = deadline,
      .seq = t->next_seq++,
  };
  table_put(t, tok);
  heap_push(t, tok, t->count);
  return tok;
}

char *brume_tokens_string(const brume_tokens *t, uint64_t id, char *buf) {
  snprintf(buf, BRUME_TOKEN_STRING_MAX, "%s.%016" PRIx64, t->daemon_id, id);
  return buf;
}

/* A token string as it may be quoted in a message: at most this many bytes of it. */
#define QUOTE_MAX 100

int brume_tokens_parse(const brume_tokens *t, const char *token, uint64_t *id, brume_err **err) {
  *id = 0;
  if (token == NULL || token[0] == '\0')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "token is empty");
  size_t len = strnlen(token, BRUME_TOKEN_STRING_MAX);
  for (size_t i = 0; i < len; i++)
    if (token[i] <= ' ' || token[i] > '~')
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           "token is malformed: byte %zu is not printable ASCII", i);
  if (len >= BRUME_TOKEN_STRING_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "token \"%.*s...\" is malformed: longer than %d bytes", QUOTE_MAX, token,
                         BRUME_TOKEN_STRING_MAX - 1);
  /* The daemon id may hold dots; the hex part cannot. */
  const char *dot = strrchr(token, '.');
  const char *hex = dot ? dot + 1 : NULL;
  bool ok = dot != NULL && dot != token && strlen(hex) == 16;
  uint64_t v = 0;
  for (int i = 0; ok && i < 16; i++) {
    char c = hex[i];
    if (c >= '0' && c <= '9')
      v = v << 4 | (uint64_t)(c - '0');
    else if (c >= 'a' && c <= 'f')
      v = v << 4 | (uint64_t)(c - 'a' + 10);
    else
      ok = false;
  }
  if (!ok)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "token \"%s\" is malformed: expected <daemon id>.<16 lowercase hex "
                         "digits>",
                         token);
  if (v == 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "token \"%s\" is malformed: its id is 0",
                         token);
  size_t prefix = (size_t)(dot - token);
  if (prefix != t->daemon_id_len || memcmp(token, t->daemon_id, prefix) != 0)
    return brume_err_set(err, BRUME_NOT_FOUND,
                         "token \"%s\" was granted by counting daemon \"%.*s\", not by this one "
                         "(\"%s\")",
                         token, (int)prefix, token, t->daemon_id);
  *id = v;
  return 0;
}

int brume_tokens_find(const brume_tokens *t, const char *token, const brume_token **found,
                      brume_err **err) {
  *found = NULL;
  uint64_t id;
  if (brume_tokens_parse(t, token, &id, err) < 0) return -1;
  *found = table_get(t, id);
  return *found != NULL;
}

int brume_tokens_upgrade(brume_tokens *t, const char *token, const brume_token **upgraded,
                         brume_err **err) {
  if (upgraded) *upgraded = NULL;
  uint64_t id;
  if (brume_tokens_parse(t, token, &id, err) < 0) return -1;
  brume_token *tok = table_get(t, id);
  if (tok == NULL)
    return brume_err_set(err, BRUME_NOT_FOUND,
                         "token \"%s\" is not held: released, taken back at its deadline, or "
                         "never granted",
                         token);
  if (tok->kind == BRUME_TOKEN_NEW_ENVIRONMENT)
    return brume_err_set(err, BRUME_FAILED_PRECONDITION,
                         "token \"%s\" is already for a new execution environment", token);
  tok->kind = BRUME_TOKEN_NEW_ENVIRONMENT;
  if (upgraded) *upgraded = tok;
  return 0;
}

int brume_tokens_release(brume_tokens *t, const char *token, brume_token **released,
                         brume_err **err) {
  if (released) *released = NULL;
  uint64_t id;
  if (brume_tokens_parse(t, token, &id, err) < 0) return -1;
  brume_token *tok = table_get(t, id);
  if (tok == NULL) return 0;
  unlink_token(t, tok);
  if (released)
    *released = tok;
  else
    free(tok);
  return 1;
}

size_t brume_tokens_expire(brume_tokens *t, int64_t now_ms, brume_token **out, size_t max) {
  size_t n = 0;
  while (n < max && t->count > 0 && t->heap[0]->deadline_ms <= now_ms) {
    brume_token *tok = t->heap[0];
    unlink_token(t, tok);
    out[n++] = tok;
  }
  return n;
}

bool brume_tokens_next_deadline(const brume_tokens *t, int64_t *deadline_ms) {
  if (t->count == 0) return false;
  *deadline_ms = t->heap[0]->deadline_ms;
  return true;
}

size_t brume_tokens_count(const brume_tokens *t) {
  return t->count;
}

void brume_tokens_set_id_source(brume_tokens *t, uint64_t (*next_id)(void *arg), void *arg) {
  t->next_id = next_id;
  t->next_id_arg = arg;
}
