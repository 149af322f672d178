/* The collector of ListHosts' figures (host_metrics.h). */
#include "host_metrics.h"

#include <stdlib.h>

#include "mem.h"
#include "proto_names.h"

#define MIB 1048576.0

enum {
  G_MEMORY,
  G_FREE,
  G_RESERVED,
  G_AVAILABLE,
  G_VCPUS,
  G_VCPU_COMMITTED,
  G_SANDBOXES,
  G_POOL_READY,
  G_DRAINING,
  G_INFO,
  G_COUNT
};

static const brume_gauge_spec gauge_specs[G_COUNT] = {
    [G_MEMORY] = {"brume_placement_host_memory_bytes",
                  "The worker host's memory, as its worker published it.",
                  {"host"}},
    [G_FREE] = {"brume_placement_host_free_memory_bytes",
                "Memory for sandboxes left on the host, as its worker last published it.",
                {"host"}},
    [G_RESERVED] = {"brume_placement_host_reserved_memory_bytes",
                    "Memory placement holds on the host for cold starts under way or not yet in "
                    "a registration of the worker's.",
                    {"host"}},
    [G_AVAILABLE] = {"brume_placement_host_available_memory_bytes",
                     "The host's MemAvailable as the kernel reports it, as its worker last "
                     "published it.",
                     {"host"}},
    [G_VCPUS] = {"brume_placement_host_vcpus", "Host CPUs for sandboxes.", {"host"}},
    [G_VCPU_COMMITTED] = {"brume_placement_host_vcpu_committed",
                          "Sum of the vCPU shares of the host's sandboxes, in CPUs.",
                          {"host"}},
    [G_SANDBOXES] = {"brume_placement_host_sandboxes",
                     "Sandboxes placement knows on the host, by state: idle or invoking (held by "
                     "a caller).",
                     {"host", "state"}},
    [G_POOL_READY] = {"brume_placement_host_pool_ready",
                      "Pre-booted microVMs ready in the worker's pool.",
                      {"host"}},
    [G_DRAINING] = {"brume_placement_host_draining",
                    "1 while the host takes no new sandboxes, 0 otherwise.",
                    {"host"}},
    [G_INFO] = {"brume_placement_host_info",
                "Always 1; accelerator says what the host's microVMs run on: kvm, tcg or "
                "unknown.",
                {"host", "accelerator"}},
};

struct brume_host_metrics {
  brume_metrics *reg;
  brume_host_metrics_list_fn list;
  brume_host_metrics_free_fn free_hosts;
  void *user;
  brume_gauge *g[G_COUNT];
};

static void set_host(brume_gauge *const *g, const Brume__HostInfo *h) {
  const char *id = h->host_id;
  brume_gauge_set(g[G_MEMORY], h->memory_mib * MIB, id);
  brume_gauge_set(g[G_FREE], h->free_memory_mib * MIB, id);
  brume_gauge_set(g[G_RESERVED], h->reserved_memory_mib * MIB, id);
  brume_gauge_set(g[G_AVAILABLE], h->host_memory_available_mib * MIB, id);
  brume_gauge_set(g[G_VCPUS], h->vcpus, id);
  brume_gauge_set(g[G_VCPU_COMMITTED], h->vcpu_milli_committed / 1000.0, id);
  for (size_t i = 0; i < h->n_sandboxes_by_state; i++)
    brume_gauge_set(g[G_SANDBOXES], h->sandboxes_by_state[i]->count, id,
                    brume_sandbox_state_name(h->sandboxes_by_state[i]->state));
  brume_gauge_set(g[G_POOL_READY], h->pool_ready, id);
  brume_gauge_set(g[G_DRAINING], h->draining ? 1 : 0, id);
  brume_gauge_set(g[G_INFO], 1, id, brume_accelerator_name(h->accelerator));
}

static void collect(void *user) {
  brume_host_metrics *m = user;
  size_t n = 0;
  Brume__HostInfo **hosts = m->list(m->user, &n);
  brume_gauges_clear(m->g, G_COUNT);
  for (size_t i = 0; i < n; i++) set_host(m->g, hosts[i]);
  m->free_hosts(hosts, n);
}

brume_host_metrics *brume_host_metrics_start(brume_metrics *reg, brume_host_metrics_list_fn list,
                                             brume_host_metrics_free_fn free_hosts, void *user) {
  brume_host_metrics *m = brume_xcalloc(1, sizeof(*m));
  *m = (brume_host_metrics){.reg = reg, .list = list, .free_hosts = free_hosts, .user = user};
  brume_metrics_gauges(reg, gauge_specs, G_COUNT, m->g);
  brume_metrics_add_collect(reg, collect, m);
  return m;
}

void brume_host_metrics_stop(brume_host_metrics *m) {
  if (m == NULL) return;
  brume_metrics_remove_collect(m->reg, collect, m);
  brume_gauges_clear(m->g, G_COUNT);
  free(m);
}
