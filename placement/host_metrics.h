/* Host metrics: what Placement.ListHosts answers about each worker host (proto HostInfo), as
 * Prometheus gauges on the daemon's /metrics, so that Prometheus and Grafana see the figures the
 * operator dashboard shows (docs/placement.md, "Metrics"):
 *
 *   brume_placement_host_memory_bytes{host}            the host's memory
 *   brume_placement_host_free_memory_bytes{host}       what is left of it, as the worker published
 *   brume_placement_host_reserved_memory_bytes{host}   what placement holds there for cold starts
 *   brume_placement_host_available_memory_bytes{host}  the kernel's MemAvailable, as published
 *   brume_placement_host_vcpus{host}                   host CPUs for sandboxes
 *   brume_placement_host_vcpu_committed{host}          the sandboxes' vCPU shares, in CPUs
 *   brume_placement_host_sandboxes{host,state}         placement's sandboxes there, idle or
 * invoking brume_placement_host_pool_ready{host}              pre-booted VMs ready in the worker's
 * pool brume_placement_host_draining{host}                1 while the host takes no new sandboxes
 *   brume_placement_host_info{host,accelerator}        1; accelerator "kvm", "tcg" or "unknown"
 *
 * A collector (common/metrics.h) sets them before each scrape from a list of hosts in ListHosts'
 * form, so that the two cannot differ; a host that left the list (its registration went) leaves
 * /metrics at the next scrape. The set of hosts is the cluster's: bounded. */
#ifndef BRUME_PLACEMENT_HOST_METRICS_H
#define BRUME_PLACEMENT_HOST_METRICS_H

#include <stddef.h>

#include "brume/common.pb-c.h"
#include "metrics.h"

typedef struct brume_host_metrics brume_host_metrics;

/* The hosts now, in ListHosts' form (placement: brume_placer_hosts), and how to free them. */
typedef Brume__HostInfo **(*brume_host_metrics_list_fn)(void *user, size_t *n);
typedef void (*brume_host_metrics_free_fn)(Brume__HostInfo **hosts, size_t n);

/* Registers the gauges on reg and a collector that calls list (then free_hosts) on the rendering
 * thread before each scrape. What user points to must outlive the result: stop it first. */
brume_host_metrics *brume_host_metrics_start(brume_metrics *reg, brume_host_metrics_list_fn list,
                                             brume_host_metrics_free_fn free_hosts, void *user);

/* Removes the collector (waiting for a scrape under way), empties the gauges and frees m. NULL is
 * fine. */
void brume_host_metrics_stop(brume_host_metrics *m);

#endif
