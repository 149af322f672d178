/* The cluster's worker hosts as placement sees them, and the choice of a host for a new sandbox.
 *
 * Hosts come from the workers' registrations in etcd (`<prefix>/svc/worker/<host_id>`, a JSON
 * object: "addr", "vcpus", "memory_mib", "free_memory_mib", "accelerator", and, when present,
 * "vcpu_milli_committed", "host_memory_available_mib", "pool_ready" and "draining"). A host whose
 * key goes away (its lease expired: the worker died or was cut off) is removed at once and is not
 * chosen again until it registers anew.
 *
 * A worker publishes its free memory about once a second, so between two publications placement
 * counts what it sent there itself: a cold start holds its memory and vCPU share as a reservation
 * from before its CreateSandbox until the first registration that arrives after the call ended
 * (the worker counts a boot from its start, so that figure includes the sandbox, or its absence
 * if the start failed). Two cold starts at once can therefore never both take a host's last room,
 * and a figure published during a call counts the sandbox twice for a moment: never too little.
 *
 * brume_hosts_choose(): among the hosts that are not draining, whose free memory (published, less
 * the reservations) holds the sandbox's memory and whose vCPU share left (vcpus x 1,000 x
 * cpu_overcommit, less what is committed and reserved) holds its share, the one with the fewest
 * sandboxes of the same function plus cold starts under way (so that a function's sandboxes
 * spread over the hosts, and a burst of cold starts does not queue on the one host that had the
 * fewest sandboxes when it began), then the most free memory, then the smallest id (the same
 * inputs give the same choice).
 *
 * Not thread-safe: the caller serialises. */
#ifndef BRUME_PLACEMENT_HOSTS_H
#define BRUME_PLACEMENT_HOSTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct brume_hosts brume_hosts;

/* One host, as its worker last registered it. Valid until the next call that changes the table. */
typedef struct brume_host {
  char *id;
  char *addr;                    /* the worker's gRPC address, "host:port" */
  bool kvm;                      /* the worker's microVMs run on KVM (else TCG) */
  uint32_t vcpus;                /* host CPUs for sandboxes */
  uint32_t memory_mib;           /* memory for sandboxes in all */
  uint32_t free_memory_mib;      /* as published */
  uint32_t vcpu_milli_committed; /* as published (0 when the worker does not say) */
  /* The kernel's MemAvailable, in steps (docs/worker.md), and the pre-booted VMs ready in the
   * worker's pool: reported, not used to place (0 when the worker does not say). */
  uint32_t host_memory_available_mib;
  uint32_t pool_ready;
  bool draining;           /* takes no new sandboxes */
  uint64_t updates;        /* registrations seen since the host appeared */
  int64_t updated_unix_ms; /* when the last one was read (wall clock) */
} brume_host;

/* cpu_overcommit: how many vCPU shares of sandboxes a host CPU carries (>= 1). */
brume_hosts *brume_hosts_new(uint32_t cpu_overcommit);
void brume_hosts_free(brume_hosts *h);

/* A registration's value for host_id (new or changed). INVALID_ARGUMENT when it is not such a
 * JSON object (the table keeps what it had). Drops the host's reservations that had ended. */
int brume_hosts_update(brume_hosts *h, const char *host_id, const char *json, brume_err **err);
/* The host's registration is gone: forget it and its reservations. */
void brume_hosts_remove(brume_hosts *h, const char *host_id);

const brume_host *brume_hosts_get(const brume_hosts *h, const char *host_id);
size_t brume_hosts_count(const brume_hosts *h);
/* The i-th host in id order (i < brume_hosts_count). */
const brume_host *brume_hosts_at(const brume_hosts *h, size_t i);

/* Memory held by a host's reservations (0 for an unknown host). */
uint32_t brume_hosts_reserved_mib(const brume_hosts *h, const char *host_id);
/* Free memory and vCPU share left on a host for new sandboxes, reservations taken off (0 when
 * they are used up, or the host is unknown). */
uint32_t brume_hosts_free_mib(const brume_hosts *h, const char *host_id);
uint32_t brume_hosts_free_vcpu_milli(const brume_hosts *h, const char *host_id);

/* How many sandboxes of the function being placed a host has (the caller's sandbox table). */
typedef size_t (*brume_hosts_count_fn)(void *arg, const char *host_id);

/* The host for a new sandbox of memory_mib and vcpu_milli (see the top). NULL and UNAVAILABLE
 * ("InsufficientCapacityException: ...", saying how many hosts there are and why none fits) when
 * no host can take it. count may be NULL (no spreading). */
const brume_host *brume_hosts_choose(const brume_hosts *h, uint32_t memory_mib, uint32_t vcpu_milli,
                                     brume_hosts_count_fn count, void *arg, brume_err **err);

/* Holds memory_mib and vcpu_milli on host_id for a cold start about to be sent there. Returns the
 * reservation's id (never 0), or 0 and NOT_FOUND if the host is unknown. */
uint64_t brume_hosts_reserve(brume_hosts *h, const char *host_id, uint32_t memory_mib,
                             uint32_t vcpu_milli, brume_err **err);
/* The cold start's CreateSandbox call ended. created: a sandbox was made, and the reservation
 * lasts until the host's next registration (the worker publishes one after every creation: its
 * sandboxes_created changes); otherwise nothing was made and the reservation goes at once (no
 * registration need follow). Nothing happens if the host, and its reservations with it, went
 * meanwhile. */
void brume_hosts_end_reservation(brume_hosts *h, const char *host_id, uint64_t reservation,
                                 bool created, int64_t now_ms);
/* Drops the reservations whose call ended at least after_ms before now_ms (same clock as
 * end_reservation's) with no registration since. The worker publishes within a second of a
 * creation, but a registration it sent between the sandbox becoming ready and placement hearing
 * the answer already counts the sandbox without dropping its reservation (still under way then):
 * without this, that double count would last until the host's next change. */
void brume_hosts_expire(brume_hosts *h, int64_t now_ms, int64_t after_ms);

#endif
