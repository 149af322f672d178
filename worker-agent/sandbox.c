#include "sandbox.h"

#include <stddef.h>

/* IDLE splits into two rows, so that the frozen flag's rules read from the table. */
enum row { R_PROVISIONING, R_IDLE_RUNNING, R_IDLE_FROZEN, R_INVOKING, R_TERMINATING, R_GONE, R_N };

typedef struct cell {
  bool ok;
  enum row next;
  unsigned actions;
} cell;

#define NO \
  { false, 0, 0 }
#define TO(r, a) \
  { true, (r), (a) }
#define RESUME BRUME_SANDBOX_ACT_RESUME
#define SUSPEND BRUME_SANDBOX_ACT_SUSPEND
#define SHUTDOWN BRUME_SANDBOX_ACT_SHUTDOWN
#define KILL BRUME_SANDBOX_ACT_KILL

/* clang-format off */
/* Rows: where the sandbox is; columns: the event; NO: FAILED_PRECONDITION. */
static const cell table[R_N][BRUME_SANDBOX_EV_COUNT] = {
  /*                   CREATED                INIT_FAILED    INVOKE_START            INVOKE_END             FREEZE                      THAW                        DESTROY                               BROKEN                   DESTROYED */
  [R_PROVISIONING]  = {TO(R_IDLE_RUNNING, 0), TO(R_GONE, 0), NO,                     NO,                    NO,                         NO,                         NO,                                   NO,                      NO},
  [R_IDLE_RUNNING]  = {NO,                    NO,            TO(R_INVOKING, 0),      NO,                    TO(R_IDLE_FROZEN, SUSPEND), TO(R_IDLE_RUNNING, 0),      TO(R_TERMINATING, SHUTDOWN),          TO(R_TERMINATING, KILL), NO},
  [R_IDLE_FROZEN]   = {NO,                    NO,            TO(R_INVOKING, RESUME), NO,                    TO(R_IDLE_FROZEN, 0),       TO(R_IDLE_RUNNING, RESUME), TO(R_TERMINATING, RESUME | SHUTDOWN), TO(R_TERMINATING, KILL), NO},
  [R_INVOKING]      = {NO,                    NO,            NO,                     TO(R_IDLE_RUNNING, 0), NO,                         NO,                         TO(R_TERMINATING, SHUTDOWN),          TO(R_TERMINATING, KILL), NO},
  [R_TERMINATING]   = {NO,                    NO,            NO,                     NO,                    NO,                         NO,                         TO(R_TERMINATING, 0),                 TO(R_TERMINATING, KILL), TO(R_GONE, 0)},
  [R_GONE]          = {NO,                    NO,            NO,                     NO,                    NO,                         NO,                         TO(R_GONE, 0),                        NO,                      NO},
};
/* clang-format on */

static const brume_sandbox_state row_state[R_N] = {
    [R_PROVISIONING] = BRUME_SANDBOX_PROVISIONING, [R_IDLE_RUNNING] = BRUME_SANDBOX_IDLE,
    [R_IDLE_FROZEN] = BRUME_SANDBOX_IDLE,          [R_INVOKING] = BRUME_SANDBOX_INVOKING,
    [R_TERMINATING] = BRUME_SANDBOX_TERMINATING,   [R_GONE] = BRUME_SANDBOX_GONE,
};

static enum row row_of(const brume_sandbox_fsm *fsm) {
  switch (fsm->state) {
    case BRUME_SANDBOX_PROVISIONING:
      BRUME_ENSURE(!fsm->frozen);
      return R_PROVISIONING;
    case BRUME_SANDBOX_IDLE:
      return fsm->frozen ? R_IDLE_FROZEN : R_IDLE_RUNNING;
    case BRUME_SANDBOX_INVOKING:
      BRUME_ENSURE(!fsm->frozen);
      return R_INVOKING;
    case BRUME_SANDBOX_TERMINATING:
      BRUME_ENSURE(!fsm->frozen);
      return R_TERMINATING;
    case BRUME_SANDBOX_GONE:
      BRUME_ENSURE(!fsm->frozen);
      return R_GONE;
  }
  brume_fatal("sandbox state %d is not a state", (int)fsm->state);
}

void brume_sandbox_fsm_init(brume_sandbox_fsm *fsm) {
  fsm->state = BRUME_SANDBOX_PROVISIONING;
  fsm->frozen = false;
}

int brume_sandbox_apply(brume_sandbox_fsm *fsm, const char *sandbox_id, brume_sandbox_event ev,
                        unsigned *actions, brume_err **err) {
  BRUME_ENSURE((unsigned)ev < BRUME_SANDBOX_EV_COUNT);
  enum row from = row_of(fsm);
  const cell *c = &table[from][ev];
  if (actions) *actions = 0;
  if (!c->ok)
    return brume_err_set(err, BRUME_FAILED_PRECONDITION, "sandbox %s is %s%s: cannot %s",
                         sandbox_id ? sandbox_id : "?", brume_sandbox_state_name(fsm->state),
                         fsm->frozen ? " (frozen)" : "", brume_sandbox_event_name(ev));
  fsm->state = row_state[c->next];
  fsm->frozen = c->next == R_IDLE_FROZEN;
  if (actions) *actions = c->actions;
  return (int)fsm->state;
}

const char *brume_sandbox_state_name(brume_sandbox_state state) {
  switch (state) {
    case BRUME_SANDBOX_PROVISIONING:
      return "PROVISIONING";
    case BRUME_SANDBOX_IDLE:
      return "IDLE";
    case BRUME_SANDBOX_INVOKING:
      return "INVOKING";
    case BRUME_SANDBOX_TERMINATING:
      return "TERMINATING";
    case BRUME_SANDBOX_GONE:
      return "GONE";
  }
  return "UNKNOWN";
}

const char *brume_sandbox_event_name(brume_sandbox_event ev) {
  switch (ev) {
    case BRUME_SANDBOX_EV_CREATED:
      return "finish provisioning";
    case BRUME_SANDBOX_EV_INIT_FAILED:
      return "fail provisioning";
    case BRUME_SANDBOX_EV_INVOKE_START:
      return "Invoke";
    case BRUME_SANDBOX_EV_INVOKE_END:
      return "end an invocation";
    case BRUME_SANDBOX_EV_FREEZE:
      return "Freeze";
    case BRUME_SANDBOX_EV_THAW:
      return "Thaw";
    case BRUME_SANDBOX_EV_DESTROY:
      return "Destroy";
    case BRUME_SANDBOX_EV_BROKEN:
      return "mark it broken";
    case BRUME_SANDBOX_EV_DESTROYED:
      return "mark it destroyed";
  }
  return "UNKNOWN";
}
