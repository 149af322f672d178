/* The table of sandboxes: a sorted array (a host runs tens of sandboxes, not thousands). */
#include "sandboxes.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "libvirt.h"
#include "sorted.h"

struct brume_sandboxes {
  pthread_mutex_t mu;
  brume_sbx **v;
  size_t n, cap;
};

brume_sandboxes *brume_sandboxes_new(void) {
  brume_sandboxes *t = brume_xcalloc(1, sizeof(*t));
  pthread_mutex_init(&t->mu, NULL);
  return t;
}

static void sbx_free(brume_sbx *s) {
  brume_guest_link_close(s->link);
  if (s->dom) virDomainFree(s->dom);
  if (s->spec) brume__sandbox_spec__free_unpacked(s->spec, NULL);
  pthread_mutex_destroy(&s->act);
  free(s->id);
  free(s->name);
  free(s->sock);
  free(s->console);
  if (s->scratch) unlink(s->scratch); /* never GONE (the daemon's exit): AUTODESTROY ends it */
  free(s->scratch);
  free(s);
}

void brume_sandboxes_free(brume_sandboxes *t) {
  if (t == NULL) return;
  for (size_t i = 0; i < t->n; i++)
    if (--t->v[i]->refs == 0) sbx_free(t->v[i]);
  free(t->v);
  pthread_mutex_destroy(&t->mu);
  free(t);
}

static const char *sbx_key(const void *item) {
  return ((const brume_sbx *)item)->id;
}

/* Index of id, or where it would go (*found false). Under mu. */
static size_t find(const brume_sandboxes *t, const char *id, bool *found) {
  return brume_sorted_find((void *const *)t->v, t->n, sbx_key, id, found);
}

static Brume__SandboxSpec *spec_copy(const Brume__SandboxSpec *spec) {
  size_t len = brume__sandbox_spec__get_packed_size(spec);
  uint8_t *buf = brume_xmalloc(len + 1);
  brume__sandbox_spec__pack(spec, buf);
  Brume__SandboxSpec *copy = brume__sandbox_spec__unpack(NULL, len, buf);
  free(buf);
  BRUME_ENSURE(copy != NULL);
  return copy;
}

brume_sbx *brume_sandboxes_add(brume_sandboxes *t, const char *id, const Brume__SandboxSpec *spec,
                               brume_err **err) {
  brume_sbx *s = brume_xcalloc(1, sizeof(*s));
  s->id = brume_xstrdup(id);
  s->spec = spec_copy(spec);
  brume_sandbox_fsm_init(&s->fsm);
  s->created_unix_ms = brume_wall_ms();
  s->refs = 2;
  pthread_mutex_init(&s->act, NULL);
  pthread_mutex_lock(&t->mu);
  bool found;
  size_t at = find(t, id, &found);
  if (found) {
    pthread_mutex_unlock(&t->mu);
    sbx_free(s);
    brume_err_set(err, BRUME_ALREADY_EXISTS, "sandbox %s already exists", id);
    return NULL;
  }
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 16;
    t->v = brume_xrealloc(t->v, t->cap * sizeof(*t->v));
  }
  memmove(&t->v[at + 1], &t->v[at], (t->n - at) * sizeof(*t->v));
  t->v[at] = s;
  t->n++;
  pthread_mutex_unlock(&t->mu);
  return s;
}

brume_sbx *brume_sandboxes_get(brume_sandboxes *t, const char *id, brume_err **err) {
  pthread_mutex_lock(&t->mu);
  bool found;
  size_t at = find(t, id, &found);
  brume_sbx *s = found ? t->v[at] : NULL;
  if (s) s->refs++;
  pthread_mutex_unlock(&t->mu);
  if (s == NULL) brume_err_set(err, BRUME_NOT_FOUND, "no sandbox %s on this worker", id);
  return s;
}

void brume_sandboxes_put(brume_sandboxes *t, brume_sbx *s) {
  if (s == NULL) return;
  pthread_mutex_lock(&t->mu);
  bool last = --s->refs == 0;
  pthread_mutex_unlock(&t->mu);
  if (last) sbx_free(s);
}

int brume_sandboxes_apply(brume_sandboxes *t, brume_sbx *s, brume_sandbox_event ev,
                          unsigned *actions, brume_sandbox_state *before, brume_err **err) {
  pthread_mutex_lock(&t->mu);
  if (before) *before = s->fsm.state;
  if (s->stale && (ev == BRUME_SANDBOX_EV_CREATED || ev == BRUME_SANDBOX_EV_INVOKE_START)) {
    pthread_mutex_unlock(&t->mu);
    if (actions) *actions = 0;
    return brume_err_set(err, BRUME_FAILED_PRECONDITION,
                         "sandbox %s is stale (this worker's registration lease expired and "
                         "placement dropped it): cannot %s",
                         s->id, brume_sandbox_event_name(ev));
  }
  int st = brume_sandbox_apply(&s->fsm, s->id, ev, actions, err);
  if (st == BRUME_SANDBOX_IDLE && ev != BRUME_SANDBOX_EV_FREEZE && ev != BRUME_SANDBOX_EV_THAW)
    s->idle_since_unix_ms = brume_wall_ms();
  if (st >= 0 && ev == BRUME_SANDBOX_EV_INVOKE_END) s->invocations++;
  bool gone = st == BRUME_SANDBOX_GONE;
  if (gone) {
    bool found;
    size_t at = find(t, s->id, &found);
    if (found && t->v[at] == s) {
      memmove(&t->v[at], &t->v[at + 1], (t->n - at - 1) * sizeof(*t->v));
      t->n--;
      s->refs--; /* the table's; the caller still holds one */
    }
  }
  pthread_mutex_unlock(&t->mu);
  /* GONE: the domain is destroyed, so its /tmp image can go before anyone is answered. */
  if (gone && s->scratch) unlink(s->scratch);
  return st;
}

int brume_sandboxes_sync_frozen(brume_sandboxes *t, brume_sbx *s, uint64_t *us, brume_err **err) {
  if (us) *us = 0;
  pthread_mutex_lock(&s->act);
  pthread_mutex_lock(&t->mu);
  bool want = s->fsm.frozen;
  pthread_mutex_unlock(&t->mu);
  int rc = 0;
  if (want != s->paused && s->dom != NULL) {
    int64_t t0 = brume_mono_us();
    rc = want ? brume_libvirt_suspend(s->dom, err) : brume_libvirt_resume(s->dom, err);
    if (rc == 0) s->paused = want;
    if (us) *us = (uint64_t)(brume_mono_us() - t0);
  }
  pthread_mutex_unlock(&s->act);
  return rc;
}

brume_sbx **brume_sandboxes_mark_stale(brume_sandboxes *t, size_t *n) {
  pthread_mutex_lock(&t->mu);
  brume_sbx **idle = brume_xcalloc(t->n + 1, sizeof(*idle));
  size_t k = 0;
  *n = 0;
  for (size_t i = 0; i < t->n; i++) {
    brume_sbx *s = t->v[i];
    brume_sandbox_state st = s->fsm.state;
    if (s->stale || (st != BRUME_SANDBOX_PROVISIONING && st != BRUME_SANDBOX_IDLE &&
                     st != BRUME_SANDBOX_INVOKING))
      continue;
    s->stale = true;
    (*n)++;
    if (st == BRUME_SANDBOX_IDLE) {
      s->refs++;
      idle[k++] = s;
    }
  }
  pthread_mutex_unlock(&t->mu);
  return idle;
}

bool brume_sandboxes_stale(brume_sandboxes *t, const brume_sbx *s) {
  pthread_mutex_lock(&t->mu);
  bool stale = s->stale;
  pthread_mutex_unlock(&t->mu);
  return stale;
}

void brume_sandboxes_each(brume_sandboxes *t, void (*fn)(const brume_sbx *s, void *user),
                          void *user) {
  pthread_mutex_lock(&t->mu);
  for (size_t i = 0; i < t->n; i++) fn(t->v[i], user);
  pthread_mutex_unlock(&t->mu);
}

char **brume_sandboxes_ids(brume_sandboxes *t, size_t *n) {
  pthread_mutex_lock(&t->mu);
  char **ids = brume_xcalloc(t->n + 1, sizeof(*ids));
  for (size_t i = 0; i < t->n; i++) ids[i] = brume_xstrdup(t->v[i]->id);
  *n = t->n;
  pthread_mutex_unlock(&t->mu);
  return ids;
}
