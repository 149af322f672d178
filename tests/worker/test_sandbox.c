/* Unit tests for worker-agent/sandbox: every (state, frozen) x event cell of the state machine,
 * checked against a table written here independently of the one in sandbox.c, plus the error
 * messages and the names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "sandbox.h"

#define P BRUME_SANDBOX_PROVISIONING
#define I BRUME_SANDBOX_IDLE
#define V BRUME_SANDBOX_INVOKING
#define T BRUME_SANDBOX_TERMINATING
#define G BRUME_SANDBOX_GONE
#define RES BRUME_SANDBOX_ACT_RESUME
#define SUS BRUME_SANDBOX_ACT_SUSPEND
#define SHUT BRUME_SANDBOX_ACT_SHUTDOWN
#define KILL BRUME_SANDBOX_ACT_KILL

typedef struct expect {
  bool ok;
  brume_sandbox_state state;
  bool frozen;
  unsigned actions;
} expect;

#define X \
  { false, 0, false, 0 } /* refused: FAILED_PRECONDITION */
#define E(s, f, a) \
  { true, (s), (f), (a) } /* accepted: new state, frozen, actions */

/* The six starting points: IDLE running and IDLE frozen are separate rows. */
static const brume_sandbox_fsm from[6] = {
    {P, false}, {I, false}, {I, true}, {V, false}, {T, false}, {G, false},
};

/* clang-format off */
static const expect table[6][BRUME_SANDBOX_EV_COUNT] = {
  /*              CREATED          INIT_FAILED      INVOKE_START     INVOKE_END       FREEZE           THAW             DESTROY                   BROKEN              DESTROYED */
  /* PROV    */ {E(I, 0, 0),      E(G, 0, 0),      X,               X,               X,               X,               X,                        X,                  X},
  /* IDLE    */ {X,               X,               E(V, 0, 0),      X,               E(I, 1, SUS),    E(I, 0, 0),      E(T, 0, SHUT),            E(T, 0, KILL),      X},
  /* IDLE(f) */ {X,               X,               E(V, 0, RES),    X,               E(I, 1, 0),      E(I, 0, RES),    E(T, 0, RES | SHUT),      E(T, 0, KILL),      X},
  /* INVOKING*/ {X,               X,               X,               E(I, 0, 0),      X,               X,               E(T, 0, SHUT),            E(T, 0, KILL),      X},
  /* TERM    */ {X,               X,               X,               X,               X,               X,               E(T, 0, 0),               E(T, 0, KILL),      E(G, 0, 0)},
  /* GONE    */ {X,               X,               X,               X,               X,               X,               E(G, 0, 0),               X,                  X},
};
/* clang-format on */

static void test_every_cell(void **state) {
  (void)state;
  int accepted = 0, refused = 0;
  for (int r = 0; r < 6; r++) {
    for (int ev = 0; ev < BRUME_SANDBOX_EV_COUNT; ev++) {
      brume_sandbox_fsm f = from[r];
      const expect *x = &table[r][ev];
      unsigned actions = 0xdead;
      brume_err *err = NULL;
      int rc = brume_sandbox_apply(&f, "sb-1", (brume_sandbox_event)ev, &actions, &err);
      char where[128];
      snprintf(where, sizeof(where), "row %d (%s%s) event %s", r,
               brume_sandbox_state_name(from[r].state), from[r].frozen ? ", frozen" : "",
               brume_sandbox_event_name((brume_sandbox_event)ev));
      if (x->ok) {
        if (rc != (int)x->state || err || f.state != x->state || f.frozen != x->frozen ||
            actions != x->actions)
          fail_msg(
              "%s: got rc=%d state=%s frozen=%d actions=%#x err=%s; want %s frozen=%d "
              "actions=%#x",
              where, rc, brume_sandbox_state_name(f.state), f.frozen, actions, err ? err->msg : "-",
              brume_sandbox_state_name(x->state), x->frozen, x->actions);
        accepted++;
      } else {
        if (rc != -1 || !err || err->code != BRUME_FAILED_PRECONDITION)
          fail_msg("%s: got rc=%d err=%s; want FAILED_PRECONDITION", where, rc,
                   err ? err->msg : "none");
        /* A refused event changes nothing. */
        assert_int_equal(f.state, from[r].state);
        assert_int_equal(f.frozen, from[r].frozen);
        assert_int_equal(actions, 0);
        /* The message names the sandbox, its state and the request. */
        char want[128];
        snprintf(want, sizeof(want), "sandbox sb-1 is %s%s: cannot %s",
                 brume_sandbox_state_name(from[r].state), from[r].frozen ? " (frozen)" : "",
                 brume_sandbox_event_name((brume_sandbox_event)ev));
        assert_string_equal(err->msg, want);
        refused++;
      }
      brume_err_free(err);
    }
  }
  assert_int_equal(accepted + refused, 6 * BRUME_SANDBOX_EV_COUNT);
  assert_int_equal(accepted, 19);
}

static void test_messages(void **state) {
  (void)state;
  brume_sandbox_fsm f;
  brume_sandbox_fsm_init(&f);
  assert_int_equal(f.state, BRUME_SANDBOX_PROVISIONING);
  assert_false(f.frozen);
  assert_int_equal(brume_sandbox_apply(&f, "sb-1", BRUME_SANDBOX_EV_CREATED, NULL, NULL), I);
  assert_int_equal(brume_sandbox_apply(&f, "sb-1", BRUME_SANDBOX_EV_INVOKE_START, NULL, NULL), V);
  brume_err *err = NULL;
  assert_int_equal(brume_sandbox_apply(&f, "sb-1", BRUME_SANDBOX_EV_FREEZE, NULL, &err), -1);
  assert_string_equal(err->msg, "sandbox sb-1 is INVOKING: cannot Freeze");
  brume_err_clear(&err);
  assert_int_equal(brume_sandbox_apply(&f, "sb-1", BRUME_SANDBOX_EV_INVOKE_START, NULL, &err), -1);
  assert_string_equal(err->msg, "sandbox sb-1 is INVOKING: cannot Invoke");
  brume_err_clear(&err);
  assert_int_equal(brume_sandbox_apply(&f, "sb-1", BRUME_SANDBOX_EV_INVOKE_END, NULL, NULL), I);
  assert_int_equal(brume_sandbox_apply(&f, "sb-1", BRUME_SANDBOX_EV_FREEZE, NULL, NULL), I);
  assert_true(f.frozen);
  assert_int_equal(brume_sandbox_apply(&f, "sb-1", BRUME_SANDBOX_EV_INVOKE_END, NULL, &err), -1);
  assert_string_equal(err->msg, "sandbox sb-1 is IDLE (frozen): cannot end an invocation");
  brume_err_clear(&err);
}

/* A whole life, with the actions the worker must carry out at each step. */
static void test_lifecycle(void **state) {
  (void)state;
  brume_sandbox_fsm f;
  brume_sandbox_fsm_init(&f);
  unsigned a;
  struct step {
    brume_sandbox_event ev;
    brume_sandbox_state state;
    bool frozen;
    unsigned actions;
  } steps[] = {
      {BRUME_SANDBOX_EV_CREATED, I, false, 0},
      {BRUME_SANDBOX_EV_FREEZE, I, true, SUS},        /* the idle timer fires */
      {BRUME_SANDBOX_EV_FREEZE, I, true, 0},          /* Freeze is idempotent */
      {BRUME_SANDBOX_EV_INVOKE_START, V, false, RES}, /* Invoke thaws first */
      {BRUME_SANDBOX_EV_INVOKE_END, I, false, 0},
      {BRUME_SANDBOX_EV_THAW, I, false, 0},         /* Thaw is idempotent */
      {BRUME_SANDBOX_EV_INVOKE_START, V, false, 0}, /* warm: no thaw on the hot path */
      {BRUME_SANDBOX_EV_BROKEN, T, false, KILL},    /* e.g. the invocation timed out */
      {BRUME_SANDBOX_EV_DESTROY, T, false, 0},      /* Destroy is idempotent */
      {BRUME_SANDBOX_EV_DESTROYED, G, false, 0},
      {BRUME_SANDBOX_EV_DESTROY, G, false, 0},
  };
  for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
    assert_int_equal(brume_sandbox_apply(&f, "sb-2", steps[i].ev, &a, NULL), steps[i].state);
    assert_int_equal(f.frozen, steps[i].frozen);
    assert_int_equal(a, steps[i].actions);
  }
}

static void test_names(void **state) {
  (void)state;
  assert_string_equal(brume_sandbox_state_name(P), "PROVISIONING");
  assert_string_equal(brume_sandbox_state_name(I), "IDLE");
  assert_string_equal(brume_sandbox_state_name(V), "INVOKING");
  assert_string_equal(brume_sandbox_state_name(T), "TERMINATING");
  assert_string_equal(brume_sandbox_state_name(G), "GONE");
  assert_string_equal(brume_sandbox_state_name((brume_sandbox_state)0), "UNKNOWN");
  assert_string_equal(brume_sandbox_event_name(BRUME_SANDBOX_EV_THAW), "Thaw");
  assert_string_equal(brume_sandbox_event_name((brume_sandbox_event)99), "UNKNOWN");
  /* Every event has a name of its own. */
  for (int a = 0; a < BRUME_SANDBOX_EV_COUNT; a++)
    for (int b = a + 1; b < BRUME_SANDBOX_EV_COUNT; b++)
      assert_string_not_equal(brume_sandbox_event_name((brume_sandbox_event)a),
                              brume_sandbox_event_name((brume_sandbox_event)b));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_cell),
      cmocka_unit_test(test_messages),
      cmocka_unit_test(test_lifecycle),
      cmocka_unit_test(test_names),
  };
  return cmocka_run_group_tests_name("worker_sandbox", tests, NULL, NULL);
}
