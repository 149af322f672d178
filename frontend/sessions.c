#include "sessions.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "mem.h"

typedef struct session {
  unsigned char hash[32]; /* SHA-256 of the token's hex text */
  brume_principal who;
  int64_t expires_unix_ms;
  bool used;
} session;

struct brume_sessions {
  pthread_mutex_t mu;
  session *slots;
  size_t max;
  int64_t ttl_ms;
};

brume_sessions *brume_sessions_new(size_t max, int64_t ttl_ms) {
  BRUME_ENSURE(max >= 1 && ttl_ms > 0);
  brume_sessions *s = brume_xcalloc(1, sizeof(*s));
  pthread_mutex_init(&s->mu, NULL);
  s->slots = brume_xcalloc(max, sizeof(session));
  s->max = max;
  s->ttl_ms = ttl_ms;
  return s;
}

void brume_sessions_free(brume_sessions *s) {
  if (s == NULL) return;
  OPENSSL_cleanse(s->slots, s->max * sizeof(session));
  free(s->slots);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

static void token_hash(const char *token, unsigned char out[32]) {
  unsigned int len = 0;
  if (EVP_Digest(token, strlen(token), out, &len, EVP_sha256(), NULL) != 1 || len != 32)
    brume_fatal("SHA-256 failed");
}

static bool well_formed(const char *token) {
  size_t n = 0;
  for (; token[n]; n++)
    if (!isxdigit((unsigned char)token[n]) || isupper((unsigned char)token[n])) return false;
  return n == BRUME_SESSION_TOKEN_HEX;
}

void brume_sessions_create(brume_sessions *s, const brume_principal *who, int64_t now_ms,
                           char token[BRUME_SESSION_TOKEN_HEX + 1], int64_t *expires_unix_ms) {
  unsigned char raw[BRUME_SESSION_TOKEN_HEX / 2];
  if (RAND_bytes(raw, sizeof(raw)) != 1) brume_fatal("RAND_bytes failed");
  for (size_t i = 0; i < sizeof(raw); i++) snprintf(token + 2 * i, 3, "%02x", raw[i]);
  OPENSSL_cleanse(raw, sizeof(raw));
  session fresh = {.who = *who, .expires_unix_ms = now_ms + s->ttl_ms, .used = true};
  token_hash(token, fresh.hash);
  pthread_mutex_lock(&s->mu);
  /* A free or expired slot, else the one that expires first. */
  size_t pick = 0;
  for (size_t i = 0; i < s->max; i++) {
    if (!s->slots[i].used || s->slots[i].expires_unix_ms <= now_ms) {
      pick = i;
      break;
    }
    if (s->slots[i].expires_unix_ms < s->slots[pick].expires_unix_ms) pick = i;
  }
  s->slots[pick] = fresh;
  pthread_mutex_unlock(&s->mu);
  *expires_unix_ms = fresh.expires_unix_ms;
}

/* Under mu: the slot of token's hash, or NULL. */
static session *find_locked(brume_sessions *s, const unsigned char hash[32]) {
  for (size_t i = 0; i < s->max; i++)
    if (s->slots[i].used && memcmp(s->slots[i].hash, hash, 32) == 0) return &s->slots[i];
  return NULL;
}

bool brume_sessions_find(brume_sessions *s, const char *token, int64_t now_ms, brume_principal *who,
                         int64_t *expires_unix_ms) {
  if (token == NULL || !well_formed(token)) return false;
  unsigned char hash[32];
  token_hash(token, hash);
  pthread_mutex_lock(&s->mu);
  session *se = find_locked(s, hash);
  bool ok = se && se->expires_unix_ms > now_ms;
  if (se && !ok) se->used = false;
  if (ok) {
    *who = se->who;
    *expires_unix_ms = se->expires_unix_ms;
  }
  pthread_mutex_unlock(&s->mu);
  return ok;
}

void brume_sessions_end(brume_sessions *s, const char *token) {
  if (token == NULL || !well_formed(token)) return;
  unsigned char hash[32];
  token_hash(token, hash);
  pthread_mutex_lock(&s->mu);
  session *se = find_locked(s, hash);
  if (se) se->used = false;
  pthread_mutex_unlock(&s->mu);
}

bool brume_sessions_cookie_token(const char *cookie_header,
                                 char token[BRUME_SESSION_TOKEN_HEX + 1]) {
  static const char name[] = BRUME_SESSION_COOKIE "=";
  const char *p = cookie_header;
  while (p && *p) {
    while (*p == ' ' || *p == ';') p++;
    size_t len = strcspn(p, ";");
    if (strncmp(p, name, sizeof(name) - 1) == 0) {
      const char *v = p + sizeof(name) - 1;
      size_t vlen = len - (sizeof(name) - 1);
      if (vlen != BRUME_SESSION_TOKEN_HEX) return false;
      memcpy(token, v, vlen);
      token[vlen] = '\0';
      return well_formed(token);
    }
    p += len;
  }
  return false;
}
