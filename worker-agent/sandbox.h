/* The life of a sandbox: one enum of states, one of events, one transition function. Every
 * change of a sandbox's state in brume-worker goes through brume_sandbox_apply(); nothing else
 * writes the state. Pure: no locking, no I/O (the caller holds the sandbox's lock and carries
 * out the actions the transition asks for).
 *
 *   PROVISIONING --CREATED--> IDLE <--INVOKE_START / INVOKE_END--> INVOKING
 *   PROVISIONING --INIT_FAILED--> GONE
 *   IDLE, INVOKING --DESTROY / BROKEN--> TERMINATING --DESTROYED--> GONE
 *
 * Frozen (libvirt suspend: vCPUs stopped, memory kept) is a flag of IDLE, not a state of its
 * own, as in proto/brume/common.proto: FREEZE and THAW happen only in IDLE, and INVOKE_START on
 * a frozen sandbox thaws it first (the action says so). FREEZE of a frozen sandbox and THAW of
 * a running one are no-ops (the RPCs are idempotent). DESTROY of a TERMINATING or GONE sandbox
 * is a no-op too. Every other event that does not fit the state fails with FAILED_PRECONDITION
 * and a message naming the sandbox, its state and the request:
 *   "sandbox sb-1 is INVOKING: cannot Freeze"
 * The full table is in docs/worker.md and tests/worker/test_sandbox.c checks every cell. */
#ifndef BRUME_WORKER_SANDBOX_H
#define BRUME_WORKER_SANDBOX_H

#include <stdbool.h>

#include "err.h"

/* Values are proto/brume/common.proto's SandboxState, so a state goes into a message as is. */
typedef enum brume_sandbox_state {
  BRUME_SANDBOX_PROVISIONING = 1,
  BRUME_SANDBOX_IDLE = 2,
  BRUME_SANDBOX_INVOKING = 3,
  BRUME_SANDBOX_TERMINATING = 4,
  BRUME_SANDBOX_GONE = 5,
} brume_sandbox_state;

typedef enum brume_sandbox_event {
  /* The cold start finished: the runtime is ready for an event. */
  BRUME_SANDBOX_EV_CREATED = 0,
  /* The cold start failed (boot, code, or the runtime's init). Fired after the creator has
   * destroyed the microVM itself: the sandbox never served and is GONE at once. */
  BRUME_SANDBOX_EV_INIT_FAILED,
  /* An invocation takes the sandbox (Invoke). */
  BRUME_SANDBOX_EV_INVOKE_START,
  /* The invocation finished, successfully or with a function error that leaves the runtime
   * usable. */
  BRUME_SANDBOX_EV_INVOKE_END,
  /* Suspend the microVM (Freeze, or the idle timer). */
  BRUME_SANDBOX_EV_FREEZE,
  /* Resume it (Thaw). */
  BRUME_SANDBOX_EV_THAW,
  /* Shut it down gracefully (Destroy): shutdown signal, grace period, destroy. */
  BRUME_SANDBOX_EV_DESTROY,
  /* It cannot serve again: the VM died, the runtime exited, an invocation timed out. Destroy at
   * once, without a grace period. */
  BRUME_SANDBOX_EV_BROKEN,
  /* The microVM is destroyed (libvirt says so): its memory is back to the host. */
  BRUME_SANDBOX_EV_DESTROYED,
} brume_sandbox_event;
#define BRUME_SANDBOX_EV_COUNT 9

/* What the caller must do, in this order, to carry a transition out (a bit set). */
enum {
  BRUME_SANDBOX_ACT_RESUME = 1u << 0,   /* virDomainResume (thaw) */
  BRUME_SANDBOX_ACT_SUSPEND = 1u << 1,  /* virDomainSuspend (freeze) */
  BRUME_SANDBOX_ACT_SHUTDOWN = 1u << 2, /* send Shutdown to the guest, wait the grace, destroy */
  BRUME_SANDBOX_ACT_KILL = 1u << 3,     /* destroy the microVM now, no grace */
};

typedef struct brume_sandbox_fsm {
  brume_sandbox_state state;
  bool frozen; /* only ever true in IDLE */
} brume_sandbox_fsm;

/* A new sandbox: PROVISIONING, not frozen. */
void brume_sandbox_fsm_init(brume_sandbox_fsm *fsm);

/* Applies ev to *fsm. On success updates *fsm, stores the BRUME_SANDBOX_ACT_* bits to carry out
 * in *actions (if non-NULL; 0 for none) and returns the new state. When ev is wrong for the
 * state, leaves *fsm unchanged and returns -1 with FAILED_PRECONDITION, the message naming
 * sandbox_id (used only for the message). An out-of-range ev or a corrupt *fsm aborts. */
int brume_sandbox_apply(brume_sandbox_fsm *fsm, const char *sandbox_id, brume_sandbox_event ev,
                        unsigned *actions, brume_err **err);

/* "PROVISIONING", "IDLE", ...; "UNKNOWN" out of range. */
const char *brume_sandbox_state_name(brume_sandbox_state state);
/* The event as the request it stands for, for messages: "Invoke", "Freeze", "Destroy",
 * "finish provisioning", ...; "UNKNOWN" out of range. */
const char *brume_sandbox_event_name(brume_sandbox_event ev);

#endif
