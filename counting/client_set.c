/* Acquire and Release over every registered counting daemon, with failover (client_set.h). */
#include "client_set.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "etcd_follow.h"
#include "log.h"
#include "mem.h"
#include "registration.h"
#include "strbuf.h"

#define DEFAULT_SUSPECT_MS 2000

/* One registered daemon and its client. id, addr, serial, rank, preferred and client never
 * change; the rest is guarded by the set's mu. */
typedef struct member {
  char *id, *addr;
  uint64_t serial; /* unique in the set: what a request remembers having tried */
  uint64_t rank;   /* rendezvous hash of (caller_id, id): the higher is tried first */
  bool preferred;
  brume_counting_client *client;
  unsigned calls;   /* threads inside the client's _acquire or _release */
  unsigned pending; /* requests handed to the client and not answered yet */
  int64_t suspect_until_ms;
  bool failed; /* failed, and has not answered since: for the log */
  bool gone;   /* left the set; freed once calls and pending are 0 */
  struct member *next_retired;
} member;

struct brume_counting_set {
  char *dir; /* <prefix>/svc/counting/ */
  char *preferred, *caller_id;
  brume_counting_client_opts client_opts;
  int64_t suspect_ms;
  brume_counter *failovers_metric;
  brume_gauge *daemons_metric;
  brume_etcd_follow *follow;
  /* Only the follower's callbacks change members (one at a time): they read it without mu. */
  pthread_mutex_t mu;
  pthread_cond_t idle; /* some member's calls fell to 0 while closing */
  member **members;    /* sorted by id */
  size_t n;
  member *retired; /* gone while requests were under way on them */
  uint64_t next_serial;
  uint64_t failovers;
  bool closing;
};

/* ---- choosing a daemon ---- */

/* FNV-1a, then splitmix64's finaliser so that ids differing in one byte rank far apart. */
static uint64_t rank_of(const char *caller_id, const char *id) {
  uint64_t h = 14695981039346656037ull;
  for (const char *p = caller_id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
  h = (h ^ 0xff) * 1099511628211ull;
  for (const char *p = id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

/* Whether x goes before y: not suspect, then the preferred one, then by rank. */
static bool better(const member *x, const member *y, int64_t now) {
  bool xs = x->suspect_until_ms > now, ys = y->suspect_until_ms > now;
  if (xs != ys) return !xs;
  if (x->preferred != y->preferred) return x->preferred;
  return x->rank > y->rank;
}

/* With mu held: the first daemon not in tried, or NULL. */
static member *pick(brume_counting_set *s, const uint64_t *tried, size_t n_tried, int64_t now) {
  member *best = NULL;
  for (size_t i = 0; i < s->n; i++) {
    member *m = s->members[i];
    bool seen = false;
    for (size_t k = 0; k < n_tried && !seen; k++) seen = tried[k] == m->serial;
    if (!seen && (best == NULL || better(m, best, now))) best = m;
  }
  return best;
}

/* With mu held: the member with this id, or NULL. */
static member *find(brume_counting_set *s, const char *id, size_t len) {
  for (size_t i = 0; i < s->n; i++)
    if (strlen(s->members[i]->id) == len && memcmp(s->members[i]->id, id, len) == 0)
      return s->members[i];
  return NULL;
}

/* A call into m's client ended. */
static void call_done(brume_counting_set *s, member *m) {
  pthread_mutex_lock(&s->mu);
  if (--m->calls == 0 && s->closing) pthread_cond_broadcast(&s->idle);
  pthread_mutex_unlock(&s->mu);
}

/* Whether a request that failed with err on m goes on to another daemon. UNAVAILABLE covers a
 * dead or unreachable daemon and one whose lease is not alive. DEADLINE_EXCEEDED counts only for
 * the batch call itself, whose error the rpc client words "<target> <path>: ...": a request's
 * own DEADLINE_EXCEEDED is the daemon's etcd timing out, and another daemon waits for the same
 * etcd. A daemon that granted after its caller gave up takes the grant back by itself
 * (docs/counting.md, "Batches"), so asking another one grants nothing twice. */
static bool fails_over(const member *m, const brume_err *err) {
  if (err->code == BRUME_UNAVAILABLE) return true;
  if (err->code != BRUME_DEADLINE_EXCEEDED) return false;
  size_t n = strlen(m->addr);
  return strncmp(err->msg, m->addr, n) == 0 && strncmp(err->msg + n, " /", 2) == 0;
}

/* m answered a request: failed (it goes suspect), or answered by the daemon itself (answered:
 * it is no longer suspect). Ends the request's hold on m: m may go any time after this. */
static void note_answer(brume_counting_set *s, member *m, const brume_err *failed, bool answered) {
  pthread_mutex_lock(&s->mu);
  if (failed) {
    m->suspect_until_ms = brume_mono_ms() + s->suspect_ms;
    if (!m->failed) {
      char q[512];
      brume_warn("A counting daemon failed; requests go to the others first for a while.",
                 "daemon_id=%s addr=%s suspect_ms=%lld err=%s", m->id, m->addr,
                 (long long)s->suspect_ms, brume_log_quote(q, sizeof(q), failed->msg));
    }
    m->failed = true;
  } else if (answered && m->failed) {
    m->failed = false;
    m->suspect_until_ms = 0;
    brume_info("A counting daemon answers again.", "daemon_id=%s addr=%s", m->id, m->addr);
  }
  m->pending--;
  pthread_mutex_unlock(&s->mu);
}

/* ---- Acquire with failover ---- */

typedef struct attempt {
  brume_counting_set *set;
  Brume__AcquireRequest *req; /* a copy, for each daemon asked */
  brume_counting_acquire_done done;
  void *user;
  member *m; /* the daemon asked now */
  uint64_t *tried;
  size_t n_tried;
  brume_strbuf failures; /* "<id> (<addr>): <message>; ..." */
  brume_status last_code;
} attempt;

static void attempt_free(attempt *a) {
  brume__acquire_request__free_unpacked(a->req, NULL);
  free(a->tried);
  brume_strbuf_clear(&a->failures);
  free(a);
}

/* A deep copy of req (every field, those added later included). */
static Brume__AcquireRequest *copy_request(const Brume__AcquireRequest *req) {
  size_t len = protobuf_c_message_get_packed_size(&req->base);
  brume_autofree uint8_t *buf = brume_xmalloc(len ? len : 1);
  protobuf_c_message_pack(&req->base, buf);
  Brume__AcquireRequest *cp = brume__acquire_request__unpack(NULL, len, buf);
  BRUME_ENSURE(cp != NULL);
  return cp;
}

static void try_next(attempt *a);

static void acquired(void *user, const Brume__AcquireResponse *resp, const brume_err *err) {
  attempt *a = user;
  brume_counting_set *s = a->set;
  member *m = a->m;
  if (err && fails_over(m, err)) {
    brume_strbuf_printf(&a->failures, "%s%s (%s): %s", a->failures.len ? "; " : "", m->id, m->addr,
                        err->msg);
    a->last_code = err->code;
    note_answer(s, m, err, false);
    try_next(a);
    return;
  }
  note_answer(s, m, NULL, err == NULL);
  a->done(a->user, resp, err);
  attempt_free(a);
}

/* Sends a's request to the next daemon, or answers it when none is left. */
static void try_next(attempt *a) {
  brume_counting_set *s = a->set;
  pthread_mutex_lock(&s->mu);
  bool closing = s->closing;
  member *m = closing ? NULL : pick(s, a->tried, a->n_tried, brume_mono_ms());
  bool again = m && a->n_tried > 0;
  if (m) {
    m->calls++;
    m->pending++;
    if (again) s->failovers++;
  }
  pthread_mutex_unlock(&s->mu);
  if (m == NULL) {
    brume_autoptr(brume_err) err = NULL;
    if (a->n_tried > 0)
      brume_err_set(&err, a->last_code, "no counting daemon could answer (tried %zu): %s",
                    a->n_tried, a->failures.s);
    else if (closing)
      brume_err_set(&err, BRUME_CANCELLED, "the counting client is closing");
    else
      brume_err_set(&err, BRUME_UNAVAILABLE,
                    "no counting daemon is registered in etcd under %s: start one", s->dir);
    a->done(a->user, NULL, err);
    attempt_free(a);
    return;
  }
  if (again && s->failovers_metric) brume_counter_inc(s->failovers_metric, 1);
  a->tried = brume_xrealloc(a->tried, (a->n_tried + 1) * sizeof(*a->tried));
  a->tried[a->n_tried++] = m->serial;
  a->m = m;
  /* a may be answered and freed before this returns; m stays while calls holds it. */
  brume_counting_client_acquire(m->client, a->req, acquired, a);
  call_done(s, m);
}

/* ---- requests that go to the daemon of a token ---- */

typedef struct routed {
  brume_counting_set *set;
  member *m;
  brume_counting_acquire_done acquire_done;
  brume_counting_release_done release_done;
  void *user;
} routed;

/* The length of the daemon id that starts token ("<daemon id>.<hex>"), or 0 when it is
 * malformed. The id may hold dots; the hex part after the last one cannot (counting/tokens.c). */
static size_t token_daemon_len(const char *token) {
  const char *dot = token ? strrchr(token, '.') : NULL;
  return dot ? (size_t)(dot - token) : 0;
}

bool brume_counting_set_token_trusted(brume_counting_set *s, const char *token) {
  size_t len = token_daemon_len(token);
  if (len == 0) return false;
  pthread_mutex_lock(&s->mu);
  member *m = find(s, token, len);
  bool trusted = m != NULL && !m->failed;
  pthread_mutex_unlock(&s->mu);
  return trusted;
}

/* The member that issued token, held for one request (calls and pending), or NULL with err:
 * UNAVAILABLE when it left the set. */
static member *route(brume_counting_set *s, const char *token, brume_err **err) {
  int len = (int)token_daemon_len(token);
  if (len == 0) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT,
                  "token \"%.80s\" is malformed: expected <daemon id>.<16 hex digits>",
                  token ? token : "");
    return NULL;
  }
  pthread_mutex_lock(&s->mu);
  member *m = s->closing ? NULL : find(s, token, (size_t)len);
  if (m) {
    m->calls++;
    m->pending++;
  } else if (s->closing) {
    brume_err_set(err, BRUME_CANCELLED, "the counting client is closing");
  } else {
    brume_err_set(err, BRUME_UNAVAILABLE,
                  "counting daemon %.*s is gone; its tokens return with its etcd lease",
                  len > 128 ? 128 : len, token);
  }
  pthread_mutex_unlock(&s->mu);
  return m;
}

/* A request that goes to one daemon only: a failure makes it suspect, but is the answer. */
static void routed_answered(routed *r, const brume_err *err) {
  note_answer(r->set, r->m, err && fails_over(r->m, err) ? err : NULL, err == NULL);
}

static void routed_acquired(void *user, const Brume__AcquireResponse *resp, const brume_err *err) {
  routed *r = user;
  routed_answered(r, err);
  r->acquire_done(r->user, resp, err);
  free(r);
}

static void routed_released(void *user, const Brume__ReleaseResponse *resp, const brume_err *err) {
  routed *r = user;
  routed_answered(r, err);
  r->release_done(r->user, resp, err);
  free(r);
}

void brume_counting_set_acquire(brume_counting_set *s, const Brume__AcquireRequest *req,
                                brume_counting_acquire_done done, void *user) {
  if (req->upgrade_token && req->upgrade_token[0]) {
    /* Only the daemon that granted the token holds it. */
    brume_autoptr(brume_err) err = NULL;
    member *m = route(s, req->upgrade_token, &err);
    if (m == NULL) {
      done(user, NULL, err);
      return;
    }
    routed *r = brume_xcalloc(1, sizeof(*r));
    *r = (routed){.set = s, .m = m, .acquire_done = done, .user = user};
    brume_counting_client_acquire(m->client, req, routed_acquired, r);
    call_done(s, m);
    return;
  }
  attempt *a = brume_xcalloc(1, sizeof(*a));
  a->set = s;
  a->req = copy_request(req);
  a->done = done;
  a->user = user;
  try_next(a);
}

void brume_counting_set_release(brume_counting_set *s, const Brume__ReleaseRequest *req,
                                brume_counting_release_done done, void *user) {
  brume_autoptr(brume_err) err = NULL;
  member *m = route(s, req->token, &err);
  if (m == NULL) {
    done(user, NULL, err);
    return;
  }
  routed *r = brume_xcalloc(1, sizeof(*r));
  *r = (routed){.set = s, .m = m, .release_done = done, .user = user};
  brume_counting_client_release(m->client, req, routed_released, r);
  call_done(s, m);
}

/* ---- the daemons registered ---- */

static member *member_new(brume_counting_set *s, const char *id, const char *addr) {
  brume_autoptr(brume_err) err = NULL;
  brume_counting_client *c = brume_counting_client_new(addr, &s->client_opts, &err);
  if (c == NULL) {
    char q[512];
    brume_warn("A registered counting daemon is left out: no client could be made for it.",
               "daemon_id=%s addr=%s err=%s", id, addr, brume_log_quote(q, sizeof(q), err->msg));
    return NULL;
  }
  member *m = brume_xcalloc(1, sizeof(*m));
  m->id = brume_xstrdup(id);
  m->addr = brume_xstrdup(addr);
  m->serial = ++s->next_serial;
  m->rank = rank_of(s->caller_id, id);
  m->preferred = s->preferred && strcmp(addr, s->preferred) == 0;
  m->client = c;
  return m;
}

static void member_free(member *m) {
  brume_counting_client_free(m->client);
  free(m->id);
  free(m->addr);
  free(m);
}

/* Frees the retired members nothing holds any more. On the follower's thread or in _free,
 * never in a callback (client.h: a client is not freed from its own callback). */
static void sweep(brume_counting_set *s) {
  member *done = NULL;
  pthread_mutex_lock(&s->mu);
  for (member **p = &s->retired; *p;) {
    member *m = *p;
    if (m->calls == 0 && m->pending == 0) {
      *p = m->next_retired;
      m->next_retired = done;
      done = m;
    } else {
      p = &m->next_retired;
    }
  }
  pthread_mutex_unlock(&s->mu);
  while (done) {
    member *next = done->next_retired;
    member_free(done);
    done = next;
  }
}

/* Makes next (n members, sorted by id, taken over) the set: the members not in it leave. */
static void set_members(brume_counting_set *s, member **next, size_t n) {
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->n; i++) {
    member *m = s->members[i];
    bool kept = false;
    for (size_t k = 0; k < n && !kept; k++) kept = next[k] == m;
    if (kept) continue;
    m->gone = true;
    m->next_retired = s->retired;
    s->retired = m;
    brume_info("A counting daemon left the set; its tokens return with its etcd lease.",
               "daemon_id=%s addr=%s", m->id, m->addr);
  }
  for (size_t k = 0; k < n; k++) {
    bool known = false;
    for (size_t i = 0; i < s->n && !known; i++) known = s->members[i] == next[k];
    if (!known)
      brume_info("A counting daemon joined the set.", "daemon_id=%s addr=%s preferred=%s",
                 next[k]->id, next[k]->addr, next[k]->preferred ? "true" : "false");
  }
  free(s->members);
  s->members = next;
  s->n = n;
  pthread_mutex_unlock(&s->mu);
  if (s->daemons_metric) brume_gauge_set(s->daemons_metric, (double)n);
  sweep(s);
}

/* The daemon id of a registration key, or NULL when the key is not one. */
static const char *id_of(const brume_counting_set *s, const char *key) {
  size_t n = strlen(s->dir);
  if (strncmp(key, s->dir, n) != 0) return NULL;
  const char *id = key + n;
  return *id && strchr(id, '/') == NULL ? id : NULL;
}

/* The member for a registration: the current one when its address is unchanged, else a new
 * one (NULL when the value has no address or no client can be made). */
static member *member_for(brume_counting_set *s, const char *id, const char *value,
                          size_t value_len) {
  json_t *v = json_loadb(value, value_len, 0, NULL);
  const char *addr = json_string_value(json_object_get(v, "addr"));
  member *m = NULL;
  if (addr == NULL || *addr == '\0') {
    brume_warn("A counting daemon's registration has no address; it is left out.", "daemon_id=%s",
               id);
  } else {
    /* The follower's thread is the only one that changes members. */
    member *old = find(s, id, strlen(id));
    m = old && strcmp(old->addr, addr) == 0 ? old : member_new(s, id, addr);
  }
  json_decref(v);
  return m;
}

static void load_all(void *user, const brume_etcd_kv *kvs, size_t n, bool again) {
  (void)again;
  brume_counting_set *s = user;
  member **next = brume_xcalloc(n ? n : 1, sizeof(*next));
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const char *id = id_of(s, kvs[i].key);
    member *m = id ? member_for(s, id, kvs[i].value, kvs[i].value_len) : NULL;
    if (m) next[k++] = m;
  }
  set_members(s, next, k);
}

static void apply_event(void *user, const brume_etcd_event *ev) {
  brume_counting_set *s = user;
  const char *id = id_of(s, ev->kv.key);
  if (id == NULL) return;
  member *m =
      ev->type == BRUME_ETCD_EVENT_PUT ? member_for(s, id, ev->kv.value, ev->kv.value_len) : NULL;
  member **next = brume_xcalloc(s->n + 1, sizeof(*next));
  size_t k = 0;
  bool placed = false;
  for (size_t i = 0; i < s->n; i++) {
    int c = strcmp(s->members[i]->id, id);
    if (c > 0 && m && !placed) {
      next[k++] = m;
      placed = true;
    }
    if (c != 0) next[k++] = s->members[i];
  }
  if (m && !placed) next[k++] = m;
  set_members(s, next, k);
}

brume_counting_set *brume_counting_set_new(const brume_counting_set_opts *opts, brume_err **err) {
  brume_counting_set *s = brume_xcalloc(1, sizeof(*s));
  s->dir = brume_registration_key(opts->prefix, "counting", "");
  s->preferred = opts->preferred && *opts->preferred ? brume_xstrdup(opts->preferred) : NULL;
  s->caller_id = brume_xstrdup(opts->caller_id ? opts->caller_id : "");
  s->client_opts = opts->client;
  s->suspect_ms = opts->suspect_ms > 0 ? opts->suspect_ms : DEFAULT_SUSPECT_MS;
  if (opts->metrics) {
    const char *p = opts->metrics_prefix ? opts->metrics_prefix : "brume";
    brume_autofree char *failovers = brume_xasprintf("%s_counting_failovers_total", p);
    brume_autofree char *daemons = brume_xasprintf("%s_counting_daemons", p);
    s->failovers_metric = brume_metrics_counter(
        opts->metrics, failovers,
        "Counting requests sent on to another counting daemon after one failed (UNAVAILABLE, "
        "or no answer in time).",
        NULL);
    s->daemons_metric =
        brume_metrics_gauge(opts->metrics, daemons,
                            "Counting daemons registered in etcd, which requests may use.", NULL);
  }
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->idle, NULL);
  static const brume_etcd_follow_ops ops = {
      .what = "the counting daemons", .load = load_all, .apply = apply_event};
  s->follow = brume_etcd_follow_start(opts->etcd, s->dir, &ops, s, err);
  if (s->follow == NULL) {
    brume_counting_set_free(s);
    return NULL;
  }
  pthread_mutex_lock(&s->mu);
  size_t n = s->n;
  bool preferred_known = false;
  for (size_t i = 0; i < s->n; i++) preferred_known |= s->members[i]->preferred;
  pthread_mutex_unlock(&s->mu);
  if (s->preferred && !preferred_known)
    brume_warn(
        "No counting daemon is registered at the preferred address; the others are used "
        "until one registers there.",
        "preferred=%s daemons=%zu", s->preferred, n);
  brume_info("Following the counting daemons.", "daemons=%zu preferred=%s", n,
             s->preferred ? s->preferred : "-");
  return s;
}

void brume_counting_set_stats_get(brume_counting_set *s, brume_counting_set_stats *out) {
  int64_t now = brume_mono_ms();
  pthread_mutex_lock(&s->mu);
  out->failovers = s->failovers;
  out->daemons = s->n;
  out->suspect = 0;
  for (size_t i = 0; i < s->n; i++) out->suspect += s->members[i]->suspect_until_ms > now;
  pthread_mutex_unlock(&s->mu);
}

char *brume_counting_set_current(brume_counting_set *s) {
  pthread_mutex_lock(&s->mu);
  member *m = pick(s, NULL, 0, brume_mono_ms());
  char *addr = m ? brume_xstrdup(m->addr) : NULL;
  pthread_mutex_unlock(&s->mu);
  return addr;
}

void brume_counting_set_free(brume_counting_set *s) {
  if (s == NULL) return;
  brume_etcd_follow_stop(s->follow);
  /* No request starts on a client once closing is set; those that started (a callback sending
   * a request on to the next daemon) finish their call first. */
  pthread_mutex_lock(&s->mu);
  s->closing = true;
  for (;;) {
    bool busy = false;
    for (size_t i = 0; i < s->n; i++) busy |= s->members[i]->calls > 0;
    for (member *m = s->retired; m; m = m->next_retired) busy |= m->calls > 0;
    if (!busy) break;
    pthread_cond_wait(&s->idle, &s->mu);
  }
  member **members = s->members;
  size_t n = s->n;
  member *retired = s->retired;
  s->members = NULL;
  s->n = 0;
  s->retired = NULL;
  pthread_mutex_unlock(&s->mu);
  /* Each client answers what it still holds with CANCELLED; those callbacks take mu. */
  for (size_t i = 0; i < n; i++) member_free(members[i]);
  free(members);
  while (retired) {
    member *next = retired->next_retired;
    member_free(retired);
    retired = next;
  }
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->idle);
  free(s->dir);
  free(s->preferred);
  free(s->caller_id);
  free(s);
}
