/* The Worker gRPC service (proto/brume/worker.proto): CreateSandbox, Invoke, Freeze, Thaw,
 * Destroy, List, Stats.
 *
 * Handlers never block: each parks its call and queues a job on the worker's job pool (workq.h),
 * and the job answers with brume_rpc_call_reply/fail. List and Stats only read the table and
 * answer at once. Every log line about a call carries request_id (the x-request-id metadata, or
 * Invoke's request_id). */
#ifndef BRUME_WORKER_SERVICE_H
#define BRUME_WORKER_SERVICE_H

#include <libvirt/libvirt.h>
#include <stdatomic.h>
#include <stdint.h>

#include "accel.h"
#include "code_cache.h"
#include "metrics.h"
#include "pool.h"
#include "rpc.h"
#include "sandboxes.h"
#include "workq.h"

/* Lambda's limit for a synchronous invocation's event. */
#define BRUME_WORKER_MAX_PAYLOAD (6 * 1024 * 1024)
/* The domain names' prefix: "brume-<host>-<sandbox>". */
#define BRUME_WORKER_NAME_PREFIX "brume"

typedef struct brume_worker_service {
  /* Set by main before serving; read-only afterwards. */
  const char *host_id;
  const char *address; /* the gRPC address published in HostInfo */
  brume_accel accel;
  uint32_t
      cpu_scale; /* the CPU cap is the vCPU share times this (brume_resources_host_vcpu_milli) */
  int64_t freeze_after_ms; /* 0: freeze at once after each invocation */
  int64_t init_timeout_ms; /* when the request says 0 */
  int64_t grace_ms;        /* Destroy's default grace period */
  uint32_t reserved_mib;   /* host memory the sandboxes may not have */
  brume_code_cache *cache;
  brume_sandboxes *table;
  brume_workq *wq;
  brume_pool *pool; /* takes and boots the VMs (pool size 0: every CreateSandbox boots) */

  atomic_uint_fast64_t created, pool_hits, invocations;
  atomic_bool draining;                 /* Drain: no new sandboxes */
  atomic_uint_fast64_t booting_mib;     /* memory of the boots under way (service.c) */
  struct brume_worker_metrics *metrics; /* brume_worker_metrics_start's */
  /* brume_worker_sandboxes_destroyed_total{reason}, set by brume_worker_metrics_start (the
   * registry owns it); NULL: not counted. */
  brume_counter *destroyed;
} brume_worker_service;

/* The handlers in worker.proto's method order (checked against the descriptor: aborts if the
 * order differs), for brume_rpc_server_add_service with the service as user. */
const brume_rpc_handler *brume_worker_service_handlers(void);

/* Shuts down and destroys every sandbox (the daemon's exit). Call after the job pool stopped. */
void brume_worker_service_destroy_all(brume_worker_service *svc);

/* The worker's registration lease was lost (lost_lease: registration.h, on_lost): placement has
 * dropped this host and every sandbox on it, and will never hand them out again. Marks them all
 * stale (sandboxes.h): the IDLE ones (frozen or not) are destroyed at once on the job pool, an
 * INVOKING one as soon as its invocation has been answered, a PROVISIONING one's creation fails
 * UNAVAILABLE. Pooled VMs are no sandboxes and stay. Quick: for the registration's thread. */
void brume_worker_service_drop_stale(brume_worker_service *svc, int64_t lost_lease);

/* Host figures for the registration and Stats. */
uint32_t brume_worker_host_vcpus(void);
uint32_t brume_worker_host_memory_mib(void);
/* MemAvailable from /proc/meminfo, in MiB (0 if unknown). */
uint32_t brume_worker_host_available_mib(void);
/* Host memory minus the reserve and what the sandboxes, the pool and the boots under way hold:
 * what CreateSandbox may still boot (Stats). */
uint32_t brume_worker_free_memory_mib(brume_worker_service *svc);
/* The same, not counting the creations under way (their boots, and their sandboxes until they
 * are ready): what the registration publishes. Whoever asked for those creations counts them
 * itself (placement holds a reservation from before its CreateSandbox until the first
 * registration after it ended), so that a figure published during a creation neither counts it
 * twice nor misses it. */
uint32_t brume_worker_free_memory_published_mib(brume_worker_service *svc);
/* The sum of the sandboxes' vCPU shares (1,000 = one vCPU; registration and Stats). */
uint32_t brume_worker_vcpu_milli_committed(brume_worker_service *svc);
/* Whether memory_mib more fits in that (svc: the service), for the pool's refill. */
bool brume_worker_fits(void *svc, uint32_t memory_mib);

/* Stats' figures as gauges on /metrics (docs/worker.md, "Metrics"), set by a collector on reg
 * just before each scrape:
 *   brume_worker_sandboxes{state}        provisioning, idle, invoking, terminating
 *   brume_worker_memory_bytes            the host's memory (reserved_memory included)
 *   brume_worker_memory_free_bytes       what CreateSandbox may still boot (Stats' free_memory_mib)
 *   brume_worker_memory_available_bytes  the kernel's MemAvailable
 *   brume_worker_vcpus, brume_worker_vcpu_committed (the sandboxes' vCPU shares, in CPUs)
 *   brume_worker_draining                1 while draining
 *   brume_worker_accelerator_info{accelerator}  1; kvm or tcg
 * Start it once the service is set up (pool and table included); stop it (which waits for a
 * scrape under way and empties the gauges) before they go. */
void brume_worker_metrics_start(brume_worker_service *svc, brume_metrics *reg);
void brume_worker_metrics_stop(brume_worker_service *svc);

#endif
