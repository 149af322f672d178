/* The pool of booted, not-yet-specialised microVMs: domains created without a CPU quota whose
 * guest link is connected and whose GuestReady came, but that got no Init yet. CreateSandbox
 * takes one (brume_pool_take) instead of booting, sends it Init and applies the quota.
 *
 * `size` VMs for each memory size in the configuration; a request for another size boots. The
 * refill thread boots for the size with the fewest ready VMs first.
 *
 * Each pooled VM already carries the id of the sandbox it will become ("sb-" and 16 random hex
 * digits), so its domain is "<prefix>-<host>-<sandbox id>" like a booted sandbox's: nothing is
 * renamed when it is taken, and the restart cleanup by name prefix finds pooled VMs too.
 *
 * A background thread boots VMs until `size` are ready: at start and after each take. A taken
 * VM leaves the pool at once (under the pool's mutex), so it never serves two sandboxes.
 *
 * Thread safety: take and ready may be called from any thread; stop from one thread, after the
 * last take. */
#ifndef BRUME_WORKER_POOL_H
#define BRUME_WORKER_POOL_H

#include <libvirt/libvirt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "domain.h"
#include "guest_link.h"
#include "metrics.h"

typedef struct brume_pool brume_pool;

/* A VM taken from the pool: the caller owns everything in it. */
typedef struct brume_pool_vm {
  char *id;             /* the sandbox id it was booted for */
  char *name;           /* the libvirt domain's name */
  char *sock, *console; /* control socket and console log paths */
  char *scratch;        /* the /tmp image (scratch.h) */
  uint32_t memory_mib, vcpu_milli, ephemeral_mib;
  virDomainPtr dom;
  brume_guest_link *link; /* connected, Ready received, no Init */
} brume_pool_vm;

typedef struct brume_pool_opts {
  size_t size;                /* VMs kept ready per memory size; 0: no pool (no thread either) */
  const uint32_t *memory_mib; /* the sizes pooled (128-10,240 each, distinct) */
  size_t n_sizes;
  virConnectPtr conn;
  /* What every VM's domain has in common (name prefix, host id, accelerator, guest image, TSC,
   * TCG cache); the per-VM fields are ignored. */
  brume_domain_spec tmpl;
  /* The SMP kernel for VMs of more than one vCPU (tmpl.kernel is uniprocessor); NULL: none,
   * they boot tmpl.kernel and use one vCPU (logged once). */
  const char *kernel_smp;
  const char *run_dir; /* control sockets and console logs */
  int boot_timeout_ms; /* create to GuestReady */
  /* Boots under way at once, the pool's and cold starts' together; more wait their turn. 0: no
   * bound. A boot takes a core for about a second under TCG: past the host's cores, parallel
   * boots only slow each other down, until they pass the first boot wait (a quarter of
   * boot_timeout_ms), are booted again and slow the rest further. */
  unsigned max_boots;
  /* Whether the host has room for one more VM of memory_mib (NULL: always); a refill that does
   * not fit waits and asks again. */
  bool (*fits)(void *user, uint32_t memory_mib);
  void *fits_user;
  brume_metrics *metrics; /* NULL: no brume_worker_pool_vms gauge */
} brume_pool_opts;

/* Starts the pool (the strings in opts must outlive it) and its refill thread. Never fails:
 * a boot that fails is logged and tried again after a pause. */
brume_pool *brume_pool_start(const brume_pool_opts *opts);

/* The /tmp size of pooled VMs: Lambda's default ephemeral storage. */
#define BRUME_POOL_EPHEMERAL_MIB 512

/* A ready VM of memory_mib MiB, vcpus vCPUs and ephemeral_mib of /tmp, removed from the pool
 * (a refill follows once the caller calls brume_pool_taken_done, or after
 * BRUME_POOL_REFILL_DEFER_MS), or NULL when none is ready (the caller boots one). NULL pool is
 * fine (NULL). */
brume_pool_vm *brume_pool_take(brume_pool *p, uint32_t memory_mib, uint32_t vcpus,
                               uint32_t ephemeral_mib);

/* The VM a take returned is being specialised (Init: the code, the runtime's start) and then runs
 * its first invocation: the refill waits until the caller says it is done
 * (brume_pool_taken_done), at most BRUME_POOL_REFILL_DEFER_MS, so that a boot does not take the
 * host's CPU from the cold start the caller waits for. On 2 cores under TCG a refill boot beside
 * it made a pool hit's Init 54-74 ms instead of 34-37 ms. */
#define BRUME_POOL_REFILL_DEFER_MS 300
void brume_pool_taken_done(brume_pool *p);

/* Boots a VM of memory_mib MiB, vcpu_milli thousandths of a vCPU and a /tmp disk of
 * ephemeral_mib for the caller, outside the pool (a miss: CreateSandbox boots its own), to its
 * GuestReady; without a CPU quota. NULL with the reason in *err (the domain, if any, is
 * destroyed and the disk removed). */
brume_pool_vm *brume_pool_boot(brume_pool *p, uint32_t memory_mib, uint32_t vcpu_milli,
                               uint32_t ephemeral_mib, brume_err **err);

/* How many VMs are ready now, all sizes together. */
size_t brume_pool_ready(brume_pool *p);

/* The memory of the VMs in the pool now, and of the one booting for it (MiB). NULL: 0. */
uint64_t brume_pool_memory_mib(brume_pool *p);

/* Closes the link and frees the handles and strings; the domain and the disk image are left as
 * they are (a taken VM's belong to its sandbox). NULL is fine. */
void brume_pool_vm_free(brume_pool_vm *vm);

/* Stops the refill thread (waiting for a boot under way), destroys every pooled VM's domain and
 * frees the pool. NULL is fine. */
void brume_pool_stop(brume_pool *p);

#endif
