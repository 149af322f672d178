/* The idle freezer (freezer.h): a scan of the table per tick of a brume_ticker. */
#include "freezer.h"

#include <stdlib.h>

#include "clock.h"
#include "log.h"
#include "ticker.h"

struct brume_freezer {
  brume_sandboxes *table;
  int64_t freeze_after_ms;
  bool uninvoked_only;
  brume_counter *freezes;
  brume_ticker *ticker;
};

/* The tick between scans: a quarter of freeze_after, 20 ms to 1 s. */
static int64_t tick_ms(int64_t freeze_after_ms) {
  int64_t t = freeze_after_ms / 4;
  return t < 20 ? 20 : t > 1000 ? 1000 : t;
}

/* The ids of the sandboxes due for a freeze, collected under the table's mutex. */
typedef struct due {
  int64_t before_ms; /* idle since before this */
  bool uninvoked_only;
  char **ids;
  size_t n, cap;
} due;

static void collect(const brume_sbx *s, void *user) {
  due *d = user;
  if (s->fsm.state != BRUME_SANDBOX_IDLE || s->fsm.frozen || s->idle_since_unix_ms > d->before_ms ||
      (d->uninvoked_only && s->invocations > 0))
    return;
  if (d->n == d->cap) {
    d->cap = d->cap ? d->cap * 2 : 8;
    d->ids = brume_xrealloc(d->ids, d->cap * sizeof(*d->ids));
  }
  d->ids[d->n++] = brume_xstrdup(s->id);
}

static void freeze_one(brume_freezer *f, const char *id) {
  brume_sbx *s = brume_sandboxes_get(f->table, id, NULL);
  if (s == NULL) return; /* destroyed since the scan */
  brume_err *err = NULL;
  uint64_t us = 0;
  /* FREEZE fails when an Invoke or a Destroy took the sandbox since the scan: that is fine. */
  if (brume_sandboxes_apply(f->table, s, BRUME_SANDBOX_EV_FREEZE, NULL, NULL, NULL) >= 0) {
    if (brume_sandboxes_sync_frozen(f->table, s, &us, &err) < 0) {
      char q[512];
      brume_warn("Could not freeze an idle sandbox.", "sandbox_id=%s err=%s", id,
                 brume_log_quote(q, sizeof(q), err->msg));
      brume_err_free(err);
    } else if (us > 0) {
      if (f->freezes) brume_counter_inc(f->freezes, 1);
      brume_debug("Idle sandbox frozen.", "sandbox_id=%s duration_us=%llu", id,
                  (unsigned long long)us);
    }
  }
  brume_sandboxes_put(f->table, s);
}

static void scan(void *arg) {
  brume_freezer *f = arg;
  due d = {.before_ms = brume_wall_ms() - f->freeze_after_ms, .uninvoked_only = f->uninvoked_only};
  brume_sandboxes_each(f->table, collect, &d);
  for (size_t i = 0; i < d.n; i++) {
    freeze_one(f, d.ids[i]);
    free(d.ids[i]);
  }
  free(d.ids);
}

brume_freezer *brume_freezer_start(brume_sandboxes *table, int64_t freeze_after_ms,
                                   bool uninvoked_only, brume_metrics *metrics) {
  BRUME_ENSURE(freeze_after_ms > 0);
  brume_freezer *f = brume_xcalloc(1, sizeof(*f));
  f->table = table;
  f->freeze_after_ms = freeze_after_ms;
  f->uninvoked_only = uninvoked_only;
  int64_t tick = tick_ms(freeze_after_ms);
  if (metrics)
    f->freezes = brume_metrics_counter(metrics, "brume_worker_idle_freezes_total",
                                       "Sandboxes frozen by the idle freezer.", NULL);
  f->ticker = brume_ticker_start(tick, scan, f);
  brume_info("Idle freezer started.", "freeze_after_ms=%lld tick_ms=%lld uninvoked_only=%s",
             (long long)freeze_after_ms, (long long)tick, uninvoked_only ? "true" : "false");
  return f;
}

void brume_freezer_stop(brume_freezer *f) {
  if (f == NULL) return;
  brume_ticker_stop(f->ticker);
  free(f);
}
