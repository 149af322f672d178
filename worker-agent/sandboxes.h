/* The sandboxes of this host: sandbox id -> {state machine, domain, guest link, spec, stats}.
 *
 * One mutex guards the table, every entry's state machine and its counters: those operations
 * are quick. The slow work (libvirt, the guest link) happens outside it, by the one thread that
 * the state machine gives the sandbox to: the creator while PROVISIONING, the invoker while
 * INVOKING, the destroyer while TERMINATING. Suspend and resume follow the state machine's
 * frozen flag through brume_sandboxes_sync_frozen(), under a per-sandbox lock, so a Freeze and an
 * Invoke that race leave the domain as the state machine says.
 *
 * Entries are reference counted: the table holds one reference until the sandbox is GONE, and
 * each caller of _add/_get one more until _put.
 *
 * A sandbox is stale once the worker's registration lease was lost (brume_sandboxes_mark_stale):
 * placement has dropped it and will never hand it out again, so it must go. A stale sandbox
 * cannot be created (CREATED) nor invoked (INVOKE_START) any more; the one thread that holds it
 * destroys it when it is done with it, and List reports it TERMINATING. */
#ifndef BRUME_WORKER_SANDBOXES_H
#define BRUME_WORKER_SANDBOXES_H

#include <libvirt/libvirt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "brume/common.pb-c.h"
#include "err.h"
#include "guest_link.h"
#include "sandbox.h"

typedef struct brume_sbx {
  char *id;
  char *name;               /* the libvirt domain's name */
  char *sock, *console;     /* control socket and console log paths */
  char *scratch;            /* the /tmp image, removed at GONE or with the entry (scratch.h) */
  Brume__SandboxSpec *spec; /* own copy */
  uint32_t memory_mib, vcpu_milli;

  /* Owned by the thread the state machine gave the sandbox to (see above). */
  virDomainPtr dom;
  brume_guest_link *link;

  /* Under the table's mutex. */
  brume_sandbox_fsm fsm;
  int64_t created_unix_ms, idle_since_unix_ms;
  uint64_t invocations, init_duration_us;
  unsigned refs;
  bool stale; /* see above; never cleared */

  /* Under act: whether the domain is suspended now. */
  pthread_mutex_t act;
  bool paused;

  /* Taken from the pool and not yet invoked: the pool's refill boot waits for its first
   * invocation (service.c release_pool_hold). */
  atomic_bool holds_pool_refill;
} brume_sbx;

typedef struct brume_sandboxes brume_sandboxes;

brume_sandboxes *brume_sandboxes_new(void);
/* Frees the table and drops its references (the caller destroyed the domains). NULL is fine. */
void brume_sandboxes_free(brume_sandboxes *t);

/* A new PROVISIONING entry for id (a copy of spec is kept), in the table. Returns it with a
 * reference for the caller; ALREADY_EXISTS if the id is taken. */
brume_sbx *brume_sandboxes_add(brume_sandboxes *t, const char *id, const Brume__SandboxSpec *spec,
                               brume_err **err);

/* The entry for id with a reference for the caller, or NULL with NOT_FOUND. */
brume_sbx *brume_sandboxes_get(brume_sandboxes *t, const char *id, brume_err **err);

/* Drops a reference; the last one closes the link, frees the domain handle and removes the /tmp
 * image. NULL is fine. */
void brume_sandboxes_put(brume_sandboxes *t, brume_sbx *s);

/* Applies ev to s's state machine (sandbox.h). *actions and *before (either may be NULL) get
 * the actions to carry out and the state before. Counters follow: INVOKE_END counts an
 * invocation, and IDLE records idle_since. A sandbox that becomes GONE leaves the table. Returns
 * the new state, or -1 with FAILED_PRECONDITION (also for CREATED and INVOKE_START on a stale
 * sandbox). */
int brume_sandboxes_apply(brume_sandboxes *t, brume_sbx *s, brume_sandbox_event ev,
                          unsigned *actions, brume_sandbox_state *before, brume_err **err);

/* Suspends or resumes s's domain so that it matches the state machine's frozen flag. *us (may
 * be NULL) gets how long libvirt took, 0 when nothing had to change. */
int brume_sandboxes_sync_frozen(brume_sandboxes *t, brume_sbx *s, uint64_t *us, brume_err **err);

/* Marks every sandbox that is PROVISIONING, IDLE or INVOKING stale, at once for all (one hold of
 * the mutex). Returns the ones that were IDLE, each with a reference for the caller
 * (NULL-terminated; free the array): nobody holds those, so the caller destroys them. The others'
 * creator or invoker destroys them when it is done. *n gets how many were marked in all. */
brume_sbx **brume_sandboxes_mark_stale(brume_sandboxes *t, size_t *n);

/* Whether s is stale (see above). */
bool brume_sandboxes_stale(brume_sandboxes *t, const brume_sbx *s);

/* Calls fn on every entry, ordered by id, under the table's mutex (fn must not block or call
 * back into the table). */
void brume_sandboxes_each(brume_sandboxes *t, void (*fn)(const brume_sbx *s, void *user),
                          void *user);

/* The ids of every entry, ordered (NULL-terminated, free each and the array); *n their count. */
char **brume_sandboxes_ids(brume_sandboxes *t, size_t *n);

#endif
