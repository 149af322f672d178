/* Unit tests for counting/tokens, the table of granted tokens, on made-up times: add, find and
 * release, releasing twice, the token string and its parsing (another daemon's, malformed,
 * unknown), id collisions and 0, upgrade, the default and capped hold, expiry in deadline order
 * that never touches a released token, next_deadline, 100,000 tokens against a reference model,
 * and a timing of add+release pairs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "clock.h"
#include "tokens.h"

/* A start time that is not 0, as a monotonic clock's would be. */
#define T0 1000000

static brume_tokens *new_ok(const char *daemon_id) {
  brume_err *err = NULL;
  brume_tokens *t = brume_tokens_new(daemon_id, &err);
  assert_non_null(t);
  assert_null(err);
  return t;
}

static brume_token_spec spec_of(brume_token_kind kind, uint32_t hold_ms) {
  return (brume_token_spec){.account_id = "acct1",
                            .function_name = "fn1",
                            .qualifier = "prod",
                            .caller_id = "frontend/fe-1",
                            .kind = kind,
                            .hold_ms = hold_ms};
}

static const brume_token *add_ok(brume_tokens *t, brume_token_spec s, int64_t now_ms) {
  brume_err *err = NULL;
  const brume_token *tok = brume_tokens_add(t, &s, now_ms, &err);
  assert_non_null(tok);
  assert_null(err);
  return tok;
}

/* Asserts that err holds code and msg (when msg is non-NULL), and clears it. */
static void expect_err(brume_err **err, brume_status code, const char *msg) {
  assert_non_null(*err);
  assert_int_equal((*err)->code, code);
  if (msg) assert_string_equal((*err)->msg, msg);
  brume_err_clear(err);
}

/* An id source for tests: returns ids[] in turn. */
typedef struct fixed_ids {
  const uint64_t *ids;
  size_t n, next;
} fixed_ids;

static uint64_t next_fixed(void *arg) {
  fixed_ids *f = arg;
  assert_true(f->next < f->n);
  return f->ids[f->next++];
}

static void test_round_trip(void **state) {
  (void)state;
  brume_autoptr(brume_tokens) t = new_ok("cnt-1");
  assert_int_equal(brume_tokens_count(t), 0);
  /* The strings are copied: the caller's buffers may change afterwards. */
  char acct[] = "acct1", fn[] = "fn1", qual[] = "prod", caller[] = "frontend/fe-1";
  brume_token_spec s = {.account_id = acct,
                        .function_name = fn,
                        .qualifier = qual,
                        .caller_id = caller,
                        .kind = BRUME_TOKEN_NEW_ENVIRONMENT,
                        .provisioned = true,
                        .hold_ms = 30000};
  const brume_token *tok = add_ok(t, s, T0);
  memset(acct, 'x', 5);
  memset(fn, 'x', 3);
  memset(qual, 'x', 4);
  memset(caller, 'x', 8);
  assert_int_not_equal(tok->id, 0);
  assert_string_equal(tok->account_id, "acct1");
  assert_string_equal(tok->function_name, "fn1");
  assert_string_equal(tok->qualifier, "prod");
  assert_string_equal(tok->caller_id, "frontend/fe-1");
  assert_int_equal(tok->kind, BRUME_TOKEN_NEW_ENVIRONMENT);
  assert_true(tok->provisioned);
  assert_int_equal(tok->deadline_ms, T0 + 30000);
  assert_int_equal(brume_tokens_count(t), 1);

  /* A second one, with the optional strings left out. */
  brume_token_spec s2 = {.account_id = "acct2",
                         .function_name = "fn2",
                         .kind = BRUME_TOKEN_WARM_ENVIRONMENT,
                         .hold_ms = 1000};
  const brume_token *tok2 = add_ok(t, s2, T0);
  assert_string_equal(tok2->qualifier, "");
  assert_string_equal(tok2->caller_id, "");
  assert_false(tok2->provisioned);
  assert_int_not_equal(tok2->id, tok->id);
  assert_int_equal(brume_tokens_count(t), 2);

  char str[BRUME_TOKEN_STRING_MAX], str2[BRUME_TOKEN_STRING_MAX];
  brume_tokens_string(t, tok->id, str);
  brume_tokens_string(t, tok2->id, str2);
  const brume_token *found = NULL;
  brume_err *err = NULL;
  assert_int_equal(brume_tokens_find(t, str, &found, &err), 1);
  assert_ptr_equal(found, tok);
  assert_int_equal(brume_tokens_find(t, str2, &found, &err), 1);
  assert_ptr_equal(found, tok2);
  assert_null(err);

  /* Release hands the token over, with all that the daemon needs to decrement its counts. */
  uint64_t id = tok->id;
  brume_autoptr(brume_token) rel = NULL;
  assert_int_equal(brume_tokens_release(t, str, &rel, &err), 1);
  assert_non_null(rel);
  assert_int_equal(rel->id, id);
  assert_string_equal(rel->account_id, "acct1");
  assert_string_equal(rel->function_name, "fn1");
  assert_string_equal(rel->qualifier, "prod");
  assert_string_equal(rel->caller_id, "frontend/fe-1");
  assert_int_equal(rel->kind, BRUME_TOKEN_NEW_ENVIRONMENT);
  assert_true(rel->provisioned);
  assert_int_equal(brume_tokens_count(t), 1);
  assert_int_equal(brume_tokens_find(t, str, &found, &err), 0);
  assert_null(found);
  assert_null(err);
  /* The other token is untouched; its deadline is now the next one. */
  assert_int_equal(brume_tokens_find(t, str2, &found, &err), 1);
  assert_ptr_equal(found, tok2);
  int64_t next = 0;
  assert_true(brume_tokens_next_deadline(t, &next));
  assert_int_equal(next, T0 + 1000);
  /* Released with no out pointer: the table frees it. */
  assert_int_equal(brume_tokens_release(t, str2, NULL, &err), 1);
  assert_int_equal(brume_tokens_count(t), 0);
  assert_false(brume_tokens_next_deadline(t, &next));
}

static void test_release_twice(void **state) {
  (void)state;
  brume_autoptr(brume_tokens) t = new_ok("cnt-1");
  const brume_token *tok = add_ok(t, spec_of(BRUME_TOKEN_WARM_ENVIRONMENT, 0), T0);
  char str[BRUME_TOKEN_STRING_MAX];
  brume_tokens_string(t, tok->id, str);
  brume_err *err = NULL;
  brume_token *rel = NULL;
  assert_int_equal(brume_tokens_release(t, str, &rel, &err), 1);
  brume_token_free(rel);
  assert_int_equal(brume_tokens_release(t, str, &rel, &err), 0);
  assert_null(rel);
  assert_null(err);
  assert_int_equal(brume_tokens_release(t, str, NULL, &err), 0);
  assert_int_equal(brume_tokens_count(t), 0);
  /* Nothing left to expire. */
  brume_token *out[4];
  assert_int_equal(brume_tokens_expire(t, INT64_MAX, out, 4), 0);
}

static void test_token_string(void **state) {
  (void)state;
  brume_autoptr(brume_tokens) t = new_ok("cnt-1");
  const uint64_t ids[] = {0x00f3a9c2b17d4e55u, 0xffffffffffffffffu, 1};
  fixed_ids f = {ids, 3, 0};
  brume_tokens_set_id_source(t, next_fixed, &f);
  const brume_token *a = add_ok(t, spec_of(BRUME_TOKEN_WARM_ENVIRONMENT, 0), T0);
  const brume_token *b = add_ok(t, spec_of(BRUME_TOKEN_WARM_ENVIRONMENT, 0), T0);
  const brume_token *c = add_ok(t, spec_of(BRUME_TOKEN_WARM_ENVIRONMENT, 0), T0);
  char str[BRUME_TOKEN_STRING_MAX];
  assert_string_equal(brume_tokens_string(t, a->id, str), "cnt-1.00f3a9c2b17d4e55");
  assert_string_equal(brume_tokens_string(t, b->id, str), "cnt-1.ffffffffffffffff");
  assert_string_equal(brume_tokens_string(t, c->id, str), "cnt-1.0000000000000001");

  brume_err *err = NULL;
  uint64_t id = 0;
  assert_int_equal(brume_tokens_parse(t, "cnt-1.00f3a9c2b17d4e55", &id, &err), 0);
  assert_int_equal(id, 0x00f3a9c2b17d4e55u);
  assert_null(err);
  const brume_token *found = NULL;
  assert_int_equal(brume_tokens_find(t, "cnt-1.0000000000000001", &found, &err), 1);
  assert_ptr_equal(found, c);

  /* Another daemon's: NOT_FOUND, naming it; a prefix of this daemon's id or one longer is
   * another daemon too. */
  assert_int_equal(brume_tokens_parse(t, "cnt-2.00f3a9c2b17d4e55", &id, &err), -1);
  expect_err(&err, BRUME_NOT_FOUND,
             "token \"cnt-2.00f3a9c2b17d4e55\" was granted by counting daemon \"cnt-2\", not by "
             "this one (\"cnt-1\")");
  assert_int_equal(id, 0);
  const char *others[] = {"cnt-10.00f3a9c2b17d4e55", "cnt-.00f3a9c2b17d4e55",
                          "CNT-1.00f3a9c2b17d4e55", "x.cnt-1.00f3a9c2b17d4e55"};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(others); i++) {
    assert_int_equal(brume_tokens_find(t, others[i], &found, &err), -1);
    assert_null(found);
    expect_err(&err, BRUME_NOT_FOUND, NULL);
  }

  /* Malformed: INVALID_ARGUMENT. */
  assert_int_equal(brume_tokens_parse(t, "cnt-1.00F3A9C2B17D4E55", &id, &err), -1);
  expect_err(&err, BRUME_INVALID_ARGUMENT,
             "token \"cnt-1.00F3A9C2B17D4E55\" is malformed: expected <daemon id>.<16 lowercase "
             "hex digits>");
  const char *malformed[] = {
      "",
      "cnt-1",
      "cnt-1.",
      ".00f3a9c2b17d4e55",
      "00f3a9c2b17d4e55",
      "cnt-1.f3a9c2b17d4e55",
      "cnt-1.000f3a9c2b17d4e55",
      "cnt-1.00f3a9c2b17d4e5g",
      "cnt-1.00f3a9c2b17d4e5 ",
      "cnt-1.-0f3a9c2b17d4e55",
      "cnt-1.0x f3a9c2b17d4e5",
      "cnt-1.00f3a9c2b17d4e55.",
      "cnt 1.00f3a9c2b17d4e55",
      "cnt-1.00f3a9c2b17d4e55\n",
      "cnt-1\x01.00f3a9c2b17d4e55",
      "cnt-1.0000000000000000",
  };
  for (size_t i = 0; i < BRUME_ARRAY_LEN(malformed); i++) {
    assert_int_equal(brume_tokens_parse(t, malformed[i], &id, &err), -1);
    expect_err(&err, BRUME_INVALID_ARGUMENT, NULL);
    assert_int_equal(brume_tokens_release(t, malformed[i], NULL, &err), -1);
    expect_err(&err, BRUME_INVALID_ARGUMENT, NULL);
  }
  assert_int_equal(brume_tokens_parse(t, NULL, &id, &err), -1);
  expect_err(&err, BRUME_INVALID_ARGUMENT, "token is empty");
  assert_int_equal(brume_tokens_parse(t, "cnt-1.0000000000000000", &id, &err), -1);
  expect_err(&err, BRUME_INVALID_ARGUMENT,
             "token \"cnt-1.0000000000000000\" is malformed: its id is 0");
  /* Far too long: refused before it is quoted whole. */
  char longer[300];
  memset(longer, 'a', sizeof(longer) - 1);
  longer[sizeof(longer) - 1] = '\0';
  memcpy(longer + sizeof(longer) - 18, ".00f3a9c2b17d4e55", 17);
  assert_int_equal(brume_tokens_parse(t, longer, &id, &err), -1);
  expect_err(&err, BRUME_INVALID_ARGUMENT, NULL);

  /* Well formed and this daemon's, but not held: an answer, not an error. */
  assert_int_equal(brume_tokens_find(t, "cnt-1.0000000000000002", &found, &err), 0);
  assert_null(found);
  assert_null(err);
  assert_int_equal(brume_tokens_release(t, "cnt-1.0000000000000002", NULL, &err), 0);
  assert_null(err);
  assert_int_equal(brume_tokens_count(t), 3);

  /* A daemon id may hold dots (the id is split off at the last one), up to 64 bytes. */
  brume_autoptr(brume_tokens) u = new_ok("counting.zone-a.3");
  assert_string_equal(brume_tokens_string(u, 0xabcu, str), "counting.zone-a.3.0000000000000abc");
  assert_int_equal(brume_tokens_parse(u, str, &id, &err), 0);
  assert_int_equal(id, 0xabc);
  char id64[BRUME_TOKENS_DAEMON_ID_MAX + 1];
  memset(id64, 'd', BRUME_TOKENS_DAEMON_ID_MAX);
  id64[BRUME_TOKENS_DAEMON_ID_MAX] = '\0';
  brume_autoptr(brume_tokens) v = new_ok(id64);
  const brume_token *vt = add_ok(v, spec_of(BRUME_TOKEN_WARM_ENVIRONMENT, 0), T0);
  brume_tokens_string(v, vt->id, str);
  assert_int_equal(strlen(str), BRUME_TOKEN_STRING_MAX - 1);
  assert_int_equal(brume_tokens_find(v, str, &found, &err), 1);
  assert_ptr_equal(found, vt);
}

static void test_invalid_arguments(void **state) {
  (void)state;
  brume_err *err = NULL;
  assert_null(brume_tokens_new("", &err));
  expect_err(&err, BRUME_INVALID_ARGUMENT,
             "counting daemon id of 0 bytes is out of range: 1 to 64 bytes");
  assert_null(brume_tokens_new(NULL, &err));
  expect_err(&err, BRUME_INVALID_ARGUMENT, NULL);
  char id65[BRUME_TOKENS_DAEMON_ID_MAX + 2];
  memset(id65, 'd', sizeof(id65) - 1);
  id65[sizeof(id65) - 1] = '\0';
  assert_null(brume_tokens_new(id65, &err));
  expect_err(&err, BRUME_INVALID_ARGUMENT,
             "counting daemon id of 65 or more bytes is out of range: 1 to 64 bytes");
  assert_null(brume_tokens_new("cnt 1", &err));
  expect_err(&err, BRUME_INVALID_ARGUMENT,
             "counting daemon id \"cnt 1\" is invalid: printable ASCII without spaces");
  assert_null(brume_tokens_new("cnt-\xc3\xa9", NULL));

  brume_autoptr(brume_tokens) t = new_ok("cnt-1");
  brume_token_spec s = spec_of(0, 0);
  assert_null(brume_tokens_add(t, &s, T0, &err));
  expect_err(&err, BRUME_INVALID_ARGUMENT,
             "token kind 0 is invalid: 1 (new environment) or 2 (warm environment)");
  s = spec_of(BRUME_TOKEN_WARM_ENVIRONMENT, 0);
  s.account_id = "";
  assert_null(brume_tokens_add(t, &s, T0, &err));
  expect_err(&err, BRUME_INVALID_ARGUMENT, "a token needs an account id");
  s = spec_of(BRUME_TOKEN_WARM_ENVIRONMENT, 0);
  s.function_name = NULL;
  assert_null(brume_tokens_add(t, &s, T0, &err));
  expect_err(&err, BRUME_INVALID_ARGUMENT, "a token needs a function name");
  assert_int_equal(brume_tokens_count(t), 0);
}

/* An id of 0 is never used, and an id already held is drawn again. */
static void test_id_collisions(void **state) {
  (void)state;
  brume_autoptr(brume_tokens) t = new_ok("cnt-1");
  const uint64_t ids[] = {0, 7, 0, 7, 7, 9, 7, 9, 0, 11};
  fixed_ids f = {ids, BRUME_ARRAY_LEN(ids), 0};
  brume_tokens_set_id_source(t, next_fixed, &f);
  assert_int_equal(add_ok(t, spec_of(BRUME_TOKEN_WARM_ENVIRONMENT, 0), T0)->id, 7);
  assert_int_equal(add_ok(t, spec_of(BRUME_TOKEN_WARM_ENVIRONMENT, 0), T0)->id, 9);
  assert_int_equal(add_ok(t, spec_of(BRUME_TOKEN_WARM_ENVIRONMENT, 0), T0)->id, 11);
  assert_int_equal(f.next, f.n);
  /* Once 7 is released it may be drawn again. */
  const uint64_t again[] = {7};
  f = (fixed_ids){again, 1, 0};
  assert_int_equal(brume_tokens_release(t, "cnt-1.0000000000000007", NULL, NULL), 1);
  assert_int_equal(add_ok(t, spec_of(BRUME_TOKEN_WARM_ENVIRONMENT, 0), T0)->id, 7);

  /* The real source: many distinct ids, none 0. */
  brume_tokens_set_id_source(t, NULL, NULL);
  for (int i = 0; i < 1000; i++) assert_int_not_equal(add_ok(t, spec_of(1, 0), T0)->id, 0);
  assert_int_equal(brume_tokens_count(t), 1003);
}

static void test_upgrade(void **state) {
  (void)state;
  brume_autoptr(brume_tokens) t = new_ok("cnt-1");
  const brume_token *tok = add_ok(t, spec_of(BRUME_TOKEN_WARM_ENVIRONMENT, 5000), T0);
  uint64_t id = tok->id;
  char str[BRUME_TOKEN_STRING_MAX];
  brume_tokens_string(t, id, str);
  brume_err *err = NULL;
  const brume_token *up = NULL;
  assert_int_equal(brume_tokens_upgrade(t, str, &up, &err), 0);
  assert_null(err);
  /* The same token: id, deadline and the rest unchanged, only the kind. */
  assert_ptr_equal(up, tok);
  assert_int_equal(up->id, id);
  assert_int_equal(up->deadline_ms, T0 + 5000);
  assert_int_equal(up->kind, BRUME_TOKEN_NEW_ENVIRONMENT);
  assert_string_equal(up->account_id, "acct1");
  assert_string_equal(up->caller_id, "frontend/fe-1");
  assert_int_equal(brume_tokens_count(t), 1);

  /* Already new: refused, nothing changes. */
  assert_int_equal(brume_tokens_upgrade(t, str, &up, &err), -1);
  assert_null(up);
  expect_err(&err, BRUME_FAILED_PRECONDITION, NULL);
  const brume_token *tok2 = add_ok(t, spec_of(BRUME_TOKEN_NEW_ENVIRONMENT, 0), T0);
  char str2[BRUME_TOKEN_STRING_MAX];
  brume_tokens_string(t, tok2->id, str2);
  assert_int_equal(brume_tokens_upgrade(t, str2, NULL, &err), -1);
  expect_err(&err, BRUME_FAILED_PRECONDITION, NULL);
  assert_int_equal(tok2->kind, BRUME_TOKEN_NEW_ENVIRONMENT);

  /* The release reports the upgraded kind. */
  brume_autoptr(brume_token) rel = NULL;
  assert_int_equal(brume_tokens_release(t, str, &rel, &err), 1);
  assert_int_equal(rel->kind, BRUME_TOKEN_NEW_ENVIRONMENT);
  /* Not held any more: NOT_FOUND; another daemon's: NOT_FOUND; malformed: INVALID_ARGUMENT. */
  assert_int_equal(brume_tokens_upgrade(t, str, &up, &err), -1);
  expect_err(&err, BRUME_NOT_FOUND, NULL);
  assert_int_equal(brume_tokens_upgrade(t, "cnt-9.0000000000000001", &up, &err), -1);
  expect_err(&err, BRUME_NOT_FOUND, NULL);
  assert_int_equal(brume_tokens_upgrade(t, "cnt-1.1", &up, &err), -1);
  expect_err(&err, BRUME_INVALID_ARGUMENT, NULL);

  /* An upgraded token expires at its original deadline, as a new-environment token. */
  const brume_token *w = add_ok(t, spec_of(BRUME_TOKEN_WARM_ENVIRONMENT, 2000), T0);
  brume_tokens_string(t, w->id, str);
  assert_int_equal(brume_tokens_upgrade(t, str, NULL, &err), 0);
  brume_token *out[2];
  assert_int_equal(brume_tokens_expire(t, T0 + 2000, out, 2), 1);
  assert_int_equal(out[0]->kind, BRUME_TOKEN_NEW_ENVIRONMENT);
  brume_token_free(out[0]);
}

static void test_deadline_default_and_cap(void **state) {
  (void)state;
  brume_autoptr(brume_tokens) t = new_ok("cnt-1");
  assert_int_equal(BRUME_TOKENS_HOLD_MS_DEFAULT, 960000);
  assert_int_equal(BRUME_TOKENS_HOLD_MS_MAX, 960000);
  assert_int_equal(add_ok(t, spec_of(1, 0), T0)->deadline_ms, T0 + 960000);
  assert_int_equal(add_ok(t, spec_of(1, 1), T0)->deadline_ms, T0 + 1);
  assert_int_equal(add_ok(t, spec_of(1, 900000), T0)->deadline_ms, T0 + 900000);
  assert_int_equal(add_ok(t, spec_of(1, 960000), T0)->deadline_ms, T0 + 960000);
  assert_int_equal(add_ok(t, spec_of(1, 960001), T0)->deadline_ms, T0 + 960000);
  assert_int_equal(add_ok(t, spec_of(1, UINT32_MAX), T0)->deadline_ms, T0 + 960000);
  /* Counted from now_ms, whatever it is; saturating instead of overflowing. */
  assert_int_equal(add_ok(t, spec_of(1, 10), -50)->deadline_ms, -40);
  assert_int_equal(add_ok(t, spec_of(1, 0), INT64_MAX - 5)->deadline_ms, INT64_MAX);
  int64_t next = 0;
  assert_true(brume_tokens_next_deadline(t, &next));
  assert_int_equal(next, -40);
}

/* Adds a token held hold_ms from now_ms and returns its id. */
static uint64_t add_id(brume_tokens *t, uint32_t hold_ms, int64_t now_ms) {
  return add_ok(t, spec_of(BRUME_TOKEN_WARM_ENVIRONMENT, hold_ms), now_ms)->id;
}

static void release_id(brume_tokens *t, uint64_t id) {
  char str[BRUME_TOKEN_STRING_MAX];
  assert_int_equal(brume_tokens_release(t, brume_tokens_string(t, id, str), NULL, NULL), 1);
}

static void test_expire(void **state) {
  (void)state;
  brume_autoptr(brume_tokens) t = new_ok("cnt-1");
  int64_t next = 0;
  assert_false(brume_tokens_next_deadline(t, &next));
  brume_token *out[16];
  assert_int_equal(brume_tokens_expire(t, INT64_MAX, out, 16), 0);

  /* Added out of deadline order; deadlines T0+100 (twice), +200, +300, +400, +500. */
  uint64_t d300 = add_id(t, 300, T0);
  uint64_t d100a = add_id(t, 100, T0);
  uint64_t d500 = add_id(t, 500, T0);
  uint64_t d200 = add_id(t, 150, T0 + 50);
  uint64_t d100b = add_id(t, 50, T0 + 50);
  uint64_t d400 = add_id(t, 400, T0);
  assert_true(brume_tokens_next_deadline(t, &next));
  assert_int_equal(next, T0 + 100);

  /* Before any deadline: nothing. */
  assert_int_equal(brume_tokens_expire(t, T0 + 99, out, 16), 0);
  assert_int_equal(brume_tokens_count(t), 6);
  /* At a deadline: due (deadline <= now), equal deadlines in the order granted. */
  assert_int_equal(brume_tokens_expire(t, T0 + 100, out, 16), 2);
  assert_int_equal(out[0]->id, d100a);
  assert_int_equal(out[1]->id, d100b);
  assert_int_equal(out[0]->deadline_ms, T0 + 100);
  assert_string_equal(out[1]->account_id, "acct1");
  brume_token_free(out[0]);
  brume_token_free(out[1]);
  assert_true(brume_tokens_next_deadline(t, &next));
  assert_int_equal(next, T0 + 200);
  /* An expired token is no longer held. */
  char str[BRUME_TOKEN_STRING_MAX];
  assert_int_equal(brume_tokens_release(t, brume_tokens_string(t, d100a, str), NULL, NULL), 0);

  /* A released token is never expired, and the next deadline skips it. */
  release_id(t, d200);
  assert_true(brume_tokens_next_deadline(t, &next));
  assert_int_equal(next, T0 + 300);
  /* max limits each call; the rest waits for the next. */
  assert_int_equal(brume_tokens_expire(t, T0 + 450, out, 1), 1);
  assert_int_equal(out[0]->id, d300);
  brume_token_free(out[0]);
  assert_int_equal(brume_tokens_expire(t, T0 + 450, out, 0), 0);
  assert_int_equal(brume_tokens_expire(t, T0 + 450, out, 16), 1);
  assert_int_equal(out[0]->id, d400);
  brume_token_free(out[0]);
  assert_int_equal(brume_tokens_count(t), 1);
  assert_true(brume_tokens_next_deadline(t, &next));
  assert_int_equal(next, T0 + 500);
  /* A clock that went backwards expires nothing. */
  assert_int_equal(brume_tokens_expire(t, T0, out, 16), 0);
  assert_int_equal(brume_tokens_expire(t, T0 + 1000, out, 16), 1);
  assert_int_equal(out[0]->id, d500);
  brume_token_free(out[0]);
  assert_int_equal(brume_tokens_count(t), 0);
  assert_false(brume_tokens_next_deadline(t, &next));

  /* An earlier token added later becomes the next deadline. */
  add_id(t, 1000, T0);
  assert_true(brume_tokens_next_deadline(t, &next));
  assert_int_equal(next, T0 + 1000);
  add_id(t, 10, T0 + 500);
  assert_true(brume_tokens_next_deadline(t, &next));
  assert_int_equal(next, T0 + 510);
}

/* ---- against a reference model ---- */

static uint64_t rng_state;

static uint64_t rng(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

enum { HELD, RELEASED, EXPIRED };

/* The model: every token ever added, by the order of adds (which is also the order of equal
 * deadlines), and the list of those held. */
typedef struct model {
  uint64_t *id;
  int64_t *deadline;
  int *state;
  size_t *pos;  /* where a held token is in held[] */
  size_t *held; /* indexes of the held tokens, in no order */
  size_t nheld, n;
} model;

static void model_unhold(model *m, size_t i, int state) {
  assert_int_equal(m->state[i], HELD);
  m->state[i] = state;
  size_t last = m->held[--m->nheld];
  m->held[m->pos[i]] = last;
  m->pos[last] = m->pos[i];
}

static const model *sort_model;

static int by_deadline(const void *a, const void *b) {
  size_t i = *(const size_t *)a, j = *(const size_t *)b;
  int64_t di = sort_model->deadline[i], dj = sort_model->deadline[j];
  if (di != dj) return di < dj ? -1 : 1;
  return i < j ? -1 : i > j;
}

/* Expires at now_ms in batches of a random size and checks the tokens against the model's: the
 * held ones with deadline <= now_ms, in (deadline, order of add) order. */
static void check_expire(brume_tokens *t, model *m, int64_t now_ms, size_t *due,
                         brume_token **out) {
  size_t ndue = 0;
  for (size_t k = 0; k < m->nheld; k++)
    if (m->deadline[m->held[k]] <= now_ms) due[ndue++] = m->held[k];
  sort_model = m;
  qsort(due, ndue, sizeof(*due), by_deadline);
  size_t got = 0;
  for (;;) {
    size_t max = 1 + rng() % 64;
    size_t n = brume_tokens_expire(t, now_ms, out, max);
    for (size_t k = 0; k < n; k++) {
      assert_true(got < ndue);
      size_t i = due[got++];
      assert_int_equal(out[k]->id, m->id[i]);
      assert_int_equal(out[k]->deadline_ms, m->deadline[i]);
      brume_token_free(out[k]);
      model_unhold(m, i, EXPIRED);
    }
    if (n < max) break;
  }
  assert_int_equal(got, ndue);
  assert_int_equal(brume_tokens_count(t), m->nheld);
  int64_t next = 0;
  if (m->nheld == 0) {
    assert_false(brume_tokens_next_deadline(t, &next));
  } else {
    int64_t want = INT64_MAX;
    for (size_t k = 0; k < m->nheld; k++)
      if (m->deadline[m->held[k]] < want) want = m->deadline[m->held[k]];
    assert_true(brume_tokens_next_deadline(t, &next));
    assert_int_equal(next, want);
  }
}

static void test_against_model(void **state) {
  (void)state;
  enum { N = 100000 };
  rng_state = 20240611;
  model m = {
      .id = calloc(N, sizeof(uint64_t)),
      .deadline = calloc(N, sizeof(int64_t)),
      .state = calloc(N, sizeof(int)),
      .pos = calloc(N, sizeof(size_t)),
      .held = calloc(N, sizeof(size_t)),
  };
  size_t *due = calloc(N, sizeof(size_t));
  brume_token **out = calloc(64, sizeof(*out));
  brume_tokens *t = new_ok("cnt-7");
  char str[BRUME_TOKEN_STRING_MAX];
  brume_err *err = NULL;
  int64_t now = T0;
  size_t expiries = 0, not_held = 0;

  /* Adds and releases in a random mix (adds twice as likely until all N are in), time moving on
   * 0-20 ms a step, so that some tokens run out; every 500 steps, expire and compare. */
  for (size_t step = 0; m.n < N || m.nheld > 0; step++) {
    uint64_t r = rng();
    if (m.n < N && (m.nheld == 0 || r % 3 != 0)) {
      /* Holds from 1 ms to past the cap, or 0 (the default). */
      uint32_t hold = (r >> 8) % 17 == 0 ? 0 : (uint32_t)((r >> 16) % 1100000);
      brume_token_spec s =
          spec_of(r >> 62 ? BRUME_TOKEN_WARM_ENVIRONMENT : BRUME_TOKEN_NEW_ENVIRONMENT, hold);
      const brume_token *tok = add_ok(t, s, now);
      size_t i = m.n++;
      m.id[i] = tok->id;
      m.deadline[i] = now + (hold == 0 || hold > 960000 ? 960000 : hold);
      assert_int_equal(tok->deadline_ms, m.deadline[i]);
      m.state[i] = HELD;
      m.pos[i] = m.nheld;
      m.held[m.nheld++] = i;
    } else if (m.nheld > 0 && (r >> 8) % 10 != 0) {
      size_t i = m.held[(r >> 16) % m.nheld];
      brume_token *rel = NULL;
      assert_int_equal(brume_tokens_release(t, brume_tokens_string(t, m.id[i], str), &rel, &err),
                       1);
      assert_int_equal(rel->id, m.id[i]);
      assert_int_equal(rel->deadline_ms, m.deadline[i]);
      brume_token_free(rel);
      model_unhold(&m, i, RELEASED);
    } else if (m.n > 0) {
      /* A token added some time ago: held or not, as the model says. */
      size_t i = (r >> 16) % m.n;
      const brume_token *found = NULL;
      int held = brume_tokens_find(t, brume_tokens_string(t, m.id[i], str), &found, &err);
      assert_int_equal(held, m.state[i] == HELD);
      if (held) {
        assert_int_equal(found->id, m.id[i]);
      } else {
        assert_int_equal(brume_tokens_release(t, str, NULL, &err), 0);
        not_held++;
      }
    }
    assert_null(err);
    now += (int64_t)(rng() % 21);
    if (step % 500 == 0) {
      check_expire(t, &m, now, due, out);
      expiries++;
    }
    assert_int_equal(brume_tokens_count(t), m.nheld);
  }
  check_expire(t, &m, now, due, out);
  assert_int_equal(brume_tokens_count(t), 0);
  size_t released = 0, expired = 0;
  for (size_t i = 0; i < N; i++) {
    released += m.state[i] == RELEASED;
    expired += m.state[i] == EXPIRED;
  }
  assert_int_equal(released + expired, N);
  /* The mix really exercised both ways out. */
  assert_true(expired > 1000);
  assert_true(released > 1000);
  print_message(
      "# model: %d tokens, %zu released, %zu expired, %zu expiry checks, %zu releases "
      "of tokens not held\n",
      N, released, expired, expiries, not_held);
  brume_tokens_free(t);
  free(out);
  free(due);
  free(m.id);
  free(m.deadline);
  free(m.state);
  free(m.pos);
  free(m.held);
}

/* What the daemon does per invocation: add, format the token; later parse it and release. With
 * about 1,000 tokens held throughout (released first-in, first-out). No assertion on speed. */
static void test_timing(void **state) {
  (void)state;
  enum { PAIRS = 500000, HELD_N = 1024 };
  brume_autoptr(brume_tokens) t = new_ok("cnt-1");
  static char ring[HELD_N][BRUME_TOKEN_STRING_MAX];
  brume_token_spec s = spec_of(BRUME_TOKEN_WARM_ENVIRONMENT, 60000);
  int64_t t0 = brume_mono_us();
  for (int i = 0; i < PAIRS + HELD_N; i++) {
    char *slot = ring[i % HELD_N];
    if (i >= HELD_N) assert_int_equal(brume_tokens_release(t, slot, NULL, NULL), 1);
    if (i < PAIRS) brume_tokens_string(t, brume_tokens_add(t, &s, T0 + i / 100, NULL)->id, slot);
  }
  double sec = (double)(brume_mono_us() - t0) / 1e6;
  assert_int_equal(brume_tokens_count(t), 0);
  print_message("# timing: %d add+release pairs (about %d held) in %.3f s: %.0f pairs/s\n", PAIRS,
                HELD_N, sec, PAIRS / sec);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_release_twice),
      cmocka_unit_test(test_token_string),
      cmocka_unit_test(test_invalid_arguments),
      cmocka_unit_test(test_id_collisions),
      cmocka_unit_test(test_upgrade),
      cmocka_unit_test(test_deadline_default_and_cap),
      cmocka_unit_test(test_expire),
      cmocka_unit_test(test_against_model),
      cmocka_unit_test(test_timing),
  };
  return cmocka_run_group_tests_name("counting_tokens", tests, NULL, NULL);
}
