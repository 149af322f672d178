#include "quorum_guard.h"

#include <stdatomic.h>
#include <stdint.h>

#include "clock.h"
#include "log.h"
#include "mem.h"
#include "ticker.h"

/* What a status probe asks of each endpoint: a member without quorum answers at once. */
#define PROBE_TIMEOUT_MS 300

struct brume_quorum_guard {
  brume_quorum_guard_opts o;
  brume_ticker *ticker;
  brume_gauge *gauge;
  atomic_bool holding;
  /* Only the ticker's thread touches these. */
  long long leader_seen_ms; /* while holding: when an endpoint first named a leader again; 0 */
};

static void set_holding(brume_quorum_guard *g, bool on) {
  atomic_store(&g->holding, on);
  if (g->gauge) brume_gauge_set(g->gauge, on ? 1.0 : 0.0);
}

static void probe(void *arg) {
  brume_quorum_guard *g = arg;
  int64_t age = brume_registration_age_ms(g->o.reg);
  bool holding = atomic_load(&g->holding);
  if (age < g->o.ttl_ms / 3 + 1000) {
    /* Renewed on time: nothing to guard. */
    if (holding) {
      brume_info("The etcd lease is renewed again: etcd has its quorum back.", "age_ms=%lld",
                 (long long)age);
      set_holding(g, false);
    }
    return;
  }
  brume_etcd_leader_view v;
  brume_etcd_probe_leader(g->o.etcd, PROBE_TIMEOUT_MS, &v);
  long long now = brume_mono_ms();
  if (!holding) {
    if (age < g->o.ttl_ms && v.reachable > 0 && v.with_leader == 0) {
      brume_warn(
          "etcd has lost its quorum while this daemon's lease was alive: granting from "
          "the blocks held (static stability); cold starts and growing blocks wait for "
          "etcd.",
          "endpoints=%zu reachable=%zu lease_age_ms=%lld", v.endpoints, v.reachable,
          (long long)age);
      g->leader_seen_ms = 0;
      set_holding(g, true);
    }
    return;
  }
  if (v.reachable == 0) {
    brume_warn(
        "No etcd endpoint answers: this daemon may be the one cut off, and its lease may "
        "expire; granting nothing.",
        "endpoints=%zu", v.endpoints);
    set_holding(g, false);
    return;
  }
  if (v.with_leader == 0) {
    g->leader_seen_ms = 0;
    return;
  }
  /* A leader again: it extended the lease by a whole TTL when it was elected, so the blocks
   * stay ours for a while yet; renew now, and stop holding if that has not worked in half a
   * TTL. */
  if (g->leader_seen_ms == 0) {
    g->leader_seen_ms = now;
    brume_registration_renew_now(g->o.reg);
  } else if (now - g->leader_seen_ms >= g->o.ttl_ms / 2) {
    brume_warn("etcd has a leader again but the lease was not renewed: granting nothing.",
               "lease_age_ms=%lld", (long long)age);
    set_holding(g, false);
  }
}

brume_quorum_guard *brume_quorum_guard_start(const brume_quorum_guard_opts *opts) {
  brume_quorum_guard *g = brume_xcalloc(1, sizeof(*g));
  g->o = *opts;
  if (g->o.probe_ms <= 0) g->o.probe_ms = 250;
  atomic_init(&g->holding, false);
  if (g->o.metrics)
    g->gauge = brume_metrics_gauge(g->o.metrics, "brume_counting_etcd_quorum_lost",
                                   "1 while etcd has lost its quorum and this daemon grants from "
                                   "the blocks it holds (static stability), else 0.",
                                   NULL);
  set_holding(g, false);
  g->ticker = brume_ticker_start(g->o.probe_ms, probe, g);
  return g;
}

bool brume_quorum_guard_holding(brume_quorum_guard *g) {
  return g && atomic_load(&g->holding);
}

void brume_quorum_guard_stop(brume_quorum_guard *g) {
  if (g == NULL) return;
  brume_ticker_stop(g->ticker);
  free(g);
}
