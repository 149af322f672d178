#include "table.h"

#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "sorted.h"

/* Idle sandboxes, most recently used first. */
typedef struct idle_list {
  brume_placed *head, *tail;
} idle_list;

/* A function version's idle sandboxes: the provisioned ones apart, since they go out first. */
typedef struct fn_list {
  char *function;
  idle_list provisioned, on_demand;
  size_t idle;
} fn_list;

struct brume_table {
  brume_placed **v; /* by id */
  size_t n, cap;
  fn_list **fns; /* by function; kept when empty (as many as functions seen) */
  size_t n_fns, cap_fns;
};

brume_table *brume_table_new(void) {
  return brume_xcalloc(1, sizeof(brume_table));
}

static void placed_free(brume_placed *p) {
  free(p->id);
  free(p->host_id);
  free(p->function);
  free(p->caller);
  free(p);
}

void brume_table_free(brume_table *t) {
  if (t == NULL) return;
  for (size_t i = 0; i < t->n; i++) placed_free(t->v[i]);
  for (size_t i = 0; i < t->n_fns; i++) {
    free(t->fns[i]->function);
    free(t->fns[i]);
  }
  free(t->v);
  free(t->fns);
  free(t);
}

static const char *placed_key(const void *item) {
  return ((const brume_placed *)item)->id;
}
static const char *fn_key(const void *item) {
  return ((const fn_list *)item)->function;
}

static brume_placed *find(const brume_table *t, const char *id) {
  bool found;
  size_t i = brume_sorted_find((void *const *)t->v, t->n, placed_key, id, &found);
  return found ? t->v[i] : NULL;
}

static fn_list *fn_find(const brume_table *t, const char *function) {
  bool found;
  size_t i = brume_sorted_find((void *const *)t->fns, t->n_fns, fn_key, function, &found);
  return found ? t->fns[i] : NULL;
}

static fn_list *fn_get(brume_table *t, const char *function) {
  bool found;
  size_t i = brume_sorted_find((void *const *)t->fns, t->n_fns, fn_key, function, &found);
  if (found) return t->fns[i];
  if (t->n_fns == t->cap_fns) {
    t->cap_fns = t->cap_fns ? t->cap_fns * 2 : 16;
    t->fns = brume_xrealloc(t->fns, t->cap_fns * sizeof(*t->fns));
  }
  memmove(&t->fns[i + 1], &t->fns[i], (t->n_fns - i) * sizeof(*t->fns));
  fn_list *f = brume_xcalloc(1, sizeof(*f));
  f->function = brume_xstrdup(function);
  t->fns[i] = f;
  t->n_fns++;
  return f;
}

static idle_list *list_of(fn_list *f, const brume_placed *p) {
  return p->provisioned ? &f->provisioned : &f->on_demand;
}

static void push_front(fn_list *f, brume_placed *p) {
  idle_list *l = list_of(f, p);
  p->prev = NULL;
  p->next = l->head;
  if (l->head) l->head->prev = p;
  l->head = p;
  if (l->tail == NULL) l->tail = p;
  f->idle++;
}

static void unlink_idle(fn_list *f, brume_placed *p) {
  idle_list *l = list_of(f, p);
  if (p->prev)
    p->prev->next = p->next;
  else
    l->head = p->next;
  if (p->next)
    p->next->prev = p->prev;
  else
    l->tail = p->prev;
  p->prev = p->next = NULL;
  f->idle--;
}

int brume_table_add(brume_table *t, const brume_table_entry *e, int64_t now_ms, brume_err **err) {
  bool found;
  size_t i = brume_sorted_find((void *const *)t->v, t->n, placed_key, e->id, &found);
  if (found) return brume_err_set(err, BRUME_ALREADY_EXISTS, "sandbox %s is placed already", e->id);
  brume_placed *p = brume_xcalloc(1, sizeof(*p));
  p->id = brume_xstrdup(e->id);
  p->host_id = brume_xstrdup(e->host_id);
  p->function = brume_xstrdup(e->function);
  p->memory_mib = e->memory_mib;
  p->vcpu_milli = e->vcpu_milli;
  p->provisioned = e->provisioned;
  p->added_ms = now_ms;
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 64;
    t->v = brume_xrealloc(t->v, t->cap * sizeof(*t->v));
  }
  memmove(&t->v[i + 1], &t->v[i], (t->n - i) * sizeof(*t->v));
  t->v[i] = p;
  t->n++;
  fn_list *f = fn_get(t, e->function);
  if (e->caller) {
    p->held = true;
    p->caller = brume_xstrdup(e->caller);
    p->held_until_ms = e->held_until_ms;
    p->invocations = 1;
  } else {
    p->idle_since_ms = now_ms;
    push_front(f, p);
  }
  return 0;
}

const brume_placed *brume_table_get(const brume_table *t, const char *id) {
  return find(t, id);
}

size_t brume_table_count(const brume_table *t) {
  return t->n;
}

const brume_placed *brume_table_at(const brume_table *t, size_t i) {
  return t->v[i];
}

const brume_placed *brume_table_take(brume_table *t, const char *function, const char *caller,
                                     int64_t held_until_ms) {
  fn_list *f = fn_find(t, function);
  if (f == NULL || f->idle == 0) return NULL;
  brume_placed *p = f->provisioned.head ? f->provisioned.head : f->on_demand.head;
  unlink_idle(f, p);
  p->held = true;
  free(p->caller);
  p->caller = brume_xstrdup(caller);
  p->held_until_ms = held_until_ms;
  p->invocations++;
  return p;
}

bool brume_table_remove(brume_table *t, const char *id) {
  bool found;
  size_t i = brume_sorted_find((void *const *)t->v, t->n, placed_key, id, &found);
  if (!found) return false;
  brume_placed *p = t->v[i];
  if (!p->held) unlink_idle(fn_find(t, p->function), p);
  memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(*t->v));
  t->n--;
  placed_free(p);
  return true;
}

int brume_table_give_back(brume_table *t, const char *id, const char *caller, bool reusable,
                          int64_t now_ms, brume_err **err) {
  brume_placed *p = find(t, id);
  if (p == NULL)
    return brume_err_set(err, BRUME_NOT_FOUND,
                         "ResourceNotFoundException: sandbox %s is not placed", id);
  if (!p->held)
    return brume_err_set(err, BRUME_FAILED_PRECONDITION,
                         "InvalidSandboxStateException: sandbox %s is idle, not held", id);
  if (caller == NULL || strcmp(p->caller, caller) != 0)
    return brume_err_set(err, BRUME_FAILED_PRECONDITION,
                         "InvalidSandboxStateException: sandbox %s is held by another caller", id);
  if (!reusable) {
    brume_table_remove(t, id);
    return 0;
  }
  p->held = false;
  free(p->caller);
  p->caller = NULL;
  p->held_until_ms = 0;
  p->idle_since_ms = now_ms;
  push_front(fn_find(t, p->function), p);
  return 0;
}

size_t brume_table_count_on_host(const brume_table *t, const char *function, const char *host_id) {
  size_t n = 0;
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->v[i]->host_id, host_id) == 0 && strcmp(t->v[i]->function, function) == 0) n++;
  return n;
}

size_t brume_table_idle_count(const brume_table *t, const char *function) {
  fn_list *f = fn_find(t, function);
  return f ? f->idle : 0;
}

size_t brume_table_provisioned_count(const brume_table *t, const char *function) {
  size_t n = 0;
  for (size_t i = 0; i < t->n; i++)
    n += t->v[i]->provisioned && strcmp(t->v[i]->function, function) == 0;
  return n;
}

/* A growing NULL-terminated array of ids. */
typedef struct {
  char **v;
  size_t n, cap;
} id_list;

static void ids_add(id_list *l, const char *id) {
  if (l->n + 1 >= l->cap) {
    l->cap = l->cap ? l->cap * 2 : 8;
    l->v = brume_xrealloc(l->v, l->cap * sizeof(*l->v));
  }
  l->v[l->n++] = brume_xstrdup(id);
  l->v[l->n] = NULL;
}

static char **ids_steal(id_list *l) {
  if (l->v == NULL) return brume_xcalloc(1, sizeof(char *));
  return l->v;
}

static int by_idle_since(const void *a, const void *b) {
  const brume_placed *x = *(const brume_placed *const *)a, *y = *(const brume_placed *const *)b;
  if (x->idle_since_ms != y->idle_since_ms) return x->idle_since_ms < y->idle_since_ms ? -1 : 1;
  return strcmp(x->id, y->id);
}

char **brume_table_idle_over(const brume_table *t, int64_t now_ms, int64_t keep_warm_ms) {
  size_t n = 0, cap = 0;
  brume_placed **old = NULL;
  for (size_t i = 0; i < t->n_fns; i++)
    /* The whole list: sandboxes added idle (found on a worker at start) may be older than
     * others in front of them. Provisioned sandboxes are never reaped. */
    for (brume_placed *p = t->fns[i]->on_demand.tail; p; p = p->prev) {
      if (now_ms - p->idle_since_ms < keep_warm_ms) continue;
      if (n == cap) {
        cap = cap ? cap * 2 : 8;
        old = brume_xrealloc(old, cap * sizeof(*old));
      }
      old[n++] = p;
    }
  if (n > 1) qsort(old, n, sizeof(*old), by_idle_since);
  id_list l = {0};
  for (size_t i = 0; i < n; i++) ids_add(&l, old[i]->id);
  free(old);
  return ids_steal(&l);
}

char **brume_table_overdue(const brume_table *t, int64_t now_ms) {
  id_list l = {0};
  for (size_t i = 0; i < t->n; i++)
    if (t->v[i]->held && t->v[i]->held_until_ms <= now_ms) ids_add(&l, t->v[i]->id);
  return ids_steal(&l);
}

char **brume_table_drop_host(brume_table *t, const char *host_id) {
  id_list l = {0};
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->v[i]->host_id, host_id) == 0) ids_add(&l, t->v[i]->id);
  for (size_t i = 0; i < l.n; i++) brume_table_remove(t, l.v[i]);
  return ids_steal(&l);
}

void brume_table_ids_free(char **ids) {
  if (ids == NULL) return;
  for (char **p = ids; *p; p++) free(*p);
  free(ids);
}
