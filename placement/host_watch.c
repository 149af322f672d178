#include "host_watch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_follow.h"
#include "log.h"
#include "mem.h"
#include "registration.h"

struct brume_host_watch {
  char *dir; /* "<prefix>/svc/worker/" */
  pthread_mutex_t mu;
  brume_hosts *hosts;
  brume_host_gone_fn on_gone;
  void *arg;
  brume_etcd_follow *follow;
};

/* Host ids gathered under the lock, for on_gone after it. */
typedef struct {
  char **v;
  size_t n, cap;
} gone_list;

static void gone_add(gone_list *g, const char *id) {
  if (g->n == g->cap) {
    g->cap = g->cap ? g->cap * 2 : 4;
    g->v = brume_xrealloc(g->v, g->cap * sizeof(*g->v));
  }
  g->v[g->n++] = brume_xstrdup(id);
}

static void gone_report(brume_host_watch *w, gone_list *g) {
  for (size_t i = 0; i < g->n; i++) {
    brume_info("A worker host is gone; nothing more goes there.", "host_id=%s", g->v[i]);
    if (w->on_gone) w->on_gone(w->arg, g->v[i]);
    free(g->v[i]);
  }
  free(g->v);
}

/* The host id of a key under dir, or NULL for a key that is not one host's. */
static const char *host_of(const brume_host_watch *w, const char *key) {
  size_t n = strlen(w->dir);
  if (strncmp(key, w->dir, n) != 0 || key[n] == '\0' || strchr(key + n, '/')) return NULL;
  return key + n;
}

/* A registration's value into the table. Under mu. */
static void apply_put(brume_host_watch *w, const char *host_id, const char *value) {
  bool known = brume_hosts_get(w->hosts, host_id) != NULL;
  brume_err *err = NULL;
  if (brume_hosts_update(w->hosts, host_id, value, &err) < 0) {
    char q[512];
    brume_warn("A worker's registration cannot be read; the host is left as it was.",
               "host_id=%s err=%s", host_id, brume_log_quote(q, sizeof(q), err->msg));
    brume_err_free(err);
    return;
  }
  const brume_host *h = brume_hosts_get(w->hosts, host_id);
  if (!known)
    brume_info("A worker host registered.",
               "host_id=%s addr=%s vcpus=%u memory_mib=%u free_memory_mib=%u accelerator=%s",
               host_id, h->addr, h->vcpus, h->memory_mib, h->free_memory_mib,
               h->kvm ? "KVM" : "TCG");
  else
    brume_debug("A worker host's registration changed.",
                "host_id=%s free_memory_mib=%u free_after_reservations_mib=%u draining=%s", host_id,
                h->free_memory_mib, brume_hosts_free_mib(w->hosts, host_id),
                h->draining ? "true" : "false");
}

/* etcd_follow's load: the table holds exactly the hosts registered (at start, and again after a
 * watch gap, when the hosts that left meanwhile are reported gone). */
static void load_all(void *user, const brume_etcd_kv *kvs, size_t n, bool again) {
  (void)again;
  brume_host_watch *w = user;
  gone_list gone = {0};
  pthread_mutex_lock(&w->mu);
  /* etcd returns keys in order, so the hosts' ids come sorted, as the table keeps them. */
  const char **present = brume_xcalloc(n + 1, sizeof(*present));
  size_t n_present = 0;
  for (size_t i = 0; i < n; i++) {
    const char *id = host_of(w, kvs[i].key);
    if (id == NULL) continue;
    apply_put(w, id, kvs[i].value);
    present[n_present++] = id;
  }
  /* Hosts in the table but not in etcd any more: a merge of the two sorted lists. */
  size_t k = 0;
  for (size_t i = 0; i < brume_hosts_count(w->hosts);) {
    const char *id = brume_hosts_at(w->hosts, i)->id;
    while (k < n_present && strcmp(present[k], id) < 0) k++;
    if (k < n_present && strcmp(present[k], id) == 0) {
      i++;
      continue;
    }
    gone_add(&gone, id);
    brume_hosts_remove(w->hosts, id);
  }
  free(present);
  pthread_mutex_unlock(&w->mu);
  gone_report(w, &gone);
}

static void apply_event(void *user, const brume_etcd_event *ev) {
  brume_host_watch *w = user;
  const char *id = host_of(w, ev->kv.key);
  if (id == NULL) return;
  gone_list gone = {0};
  pthread_mutex_lock(&w->mu);
  if (ev->type == BRUME_ETCD_EVENT_PUT) {
    apply_put(w, id, ev->kv.value);
  } else if (brume_hosts_get(w->hosts, id)) {
    gone_add(&gone, id);
    brume_hosts_remove(w->hosts, id);
  }
  pthread_mutex_unlock(&w->mu);
  gone_report(w, &gone);
}

brume_host_watch *brume_host_watch_start(brume_etcd *etcd, const char *prefix,
                                         uint32_t cpu_overcommit, brume_host_gone_fn on_gone,
                                         void *arg, brume_err **err) {
  brume_host_watch *w = brume_xcalloc(1, sizeof(*w));
  w->dir = brume_registration_key(prefix, "worker", "");
  pthread_mutex_init(&w->mu, NULL);
  w->hosts = brume_hosts_new(cpu_overcommit);
  w->on_gone = on_gone;
  w->arg = arg;
  static const brume_etcd_follow_ops ops = {
      .what = "the worker hosts", .load = load_all, .apply = apply_event};
  w->follow = brume_etcd_follow_start(etcd, w->dir, &ops, w, err);
  if (w->follow == NULL) {
    brume_host_watch_stop(w);
    return NULL;
  }
  pthread_mutex_lock(&w->mu);
  size_t n = brume_hosts_count(w->hosts);
  pthread_mutex_unlock(&w->mu);
  brume_info("Following the worker hosts.", "hosts=%zu", n);
  return w;
}

void brume_host_watch_stop(brume_host_watch *w) {
  if (w == NULL) return;
  brume_etcd_follow_stop(w->follow);
  brume_hosts_free(w->hosts);
  pthread_mutex_destroy(&w->mu);
  free(w->dir);
  free(w);
}

brume_hosts *brume_host_watch_lock(brume_host_watch *w) {
  pthread_mutex_lock(&w->mu);
  return w->hosts;
}

void brume_host_watch_unlock(brume_host_watch *w) {
  pthread_mutex_unlock(&w->mu);
}
