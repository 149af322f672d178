#include "etcd_follow.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"

enum { RETRY_MIN_MS = 100, RETRY_MAX_MS = 5000, STOP_CHECK_MS = 50 };

struct brume_etcd_follow {
  brume_etcd *etcd;
  char *prefix;
  brume_etcd_follow_ops ops;
  void *user;
  pthread_mutex_t mu; /* one callback at a time: the watch's batches and resyncs */
  atomic_bool stopping;
  brume_etcd_watch *watch;
};

/* Reads everything under the prefix and loads it; *revision (may be NULL) gets the read's. */
static int read_all(brume_etcd_follow *f, bool again, int64_t *revision, brume_err **err) {
  brume_autoptr(brume_etcd_range) r = brume_etcd_get_prefix(f->etcd, f->prefix, err);
  if (r == NULL) return brume_err_wrap(err, "read %s under %s", f->ops.what, f->prefix);
  f->ops.load(f->user, r->kvs, r->n, again);
  if (f->ops.synced) f->ops.synced(f->user, r->revision);
  if (revision) *revision = r->revision;
  return 0;
}

/* Sleeps ms in short slices; false as soon as the follower is stopping. */
static bool pause_unless_stopping(brume_etcd_follow *f, int ms) {
  for (int slept = 0; slept < ms; slept += STOP_CHECK_MS) {
    if (atomic_load(&f->stopping)) return false;
    usleep(STOP_CHECK_MS * 1000);
  }
  return !atomic_load(&f->stopping);
}

/* Reads everything again, until it works or the follower stops. Under mu. */
static void read_again(brume_etcd_follow *f) {
  int delay_ms = RETRY_MIN_MS;
  for (int attempt = 0;; attempt++) {
    brume_autoptr(brume_err) err = NULL;
    if (read_all(f, true, NULL, &err) == 0) {
      if (attempt > 0)
        brume_info("Read everything followed again.", "what=\"%s\" prefix=%s attempts=%d",
                   f->ops.what, f->prefix, attempt + 1);
      return;
    }
    if (attempt == 0) {
      char q[512];
      brume_warn("Could not read everything followed again; retrying until etcd answers.",
                 "what=\"%s\" err=%s", f->ops.what, brume_log_quote(q, sizeof(q), err->msg));
    }
    if (!pause_unless_stopping(f, delay_ms)) return;
    delay_ms = delay_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : delay_ms * 2;
  }
}

static void on_events(const brume_etcd_event *events, size_t n, void *user) {
  brume_etcd_follow *f = user;
  pthread_mutex_lock(&f->mu);
  if (n == 0) {
    brume_warn("The watch missed compacted revisions; reading everything followed again.",
               "what=\"%s\" prefix=%s", f->ops.what, f->prefix);
    read_again(f);
  } else {
    for (size_t i = 0; i < n; i++) f->ops.apply(f->user, &events[i]);
    if (f->ops.synced) f->ops.synced(f->user, events[n - 1].kv.mod_revision);
  }
  pthread_mutex_unlock(&f->mu);
}

brume_etcd_follow *brume_etcd_follow_start(brume_etcd *e, const char *prefix,
                                           const brume_etcd_follow_ops *ops, void *user,
                                           brume_err **err) {
  brume_etcd_follow *f = brume_xcalloc(1, sizeof(*f));
  f->etcd = e;
  f->prefix = brume_xstrdup(prefix);
  f->ops = *ops;
  f->user = user;
  pthread_mutex_init(&f->mu, NULL);
  int64_t revision = 0;
  pthread_mutex_lock(&f->mu);
  int rc = read_all(f, false, &revision, err);
  pthread_mutex_unlock(&f->mu);
  if (rc == 0) {
    f->watch = brume_etcd_watch_prefix(e, prefix, revision + 1, on_events, f, err);
    if (f->watch == NULL) brume_err_wrap(err, "watch %s under %s", ops->what, prefix);
  }
  if (f->watch == NULL) {
    brume_etcd_follow_stop(f);
    return NULL;
  }
  return f;
}

void brume_etcd_follow_resync(brume_etcd_follow *f) {
  pthread_mutex_lock(&f->mu);
  read_again(f);
  pthread_mutex_unlock(&f->mu);
}

void brume_etcd_follow_stop(brume_etcd_follow *f) {
  if (f == NULL) return;
  atomic_store(&f->stopping, true);
  brume_etcd_watch_stop(f->watch);
  pthread_mutex_destroy(&f->mu);
  free(f->prefix);
  free(f);
}
