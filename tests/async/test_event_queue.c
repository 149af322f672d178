/* async/event_queue against a real nats-server with JetStream (tests/harness/nats_server), shared
 * by the cases, which run in order and each leave the queue empty:
 *   a. an event put comes back from a fetch whole (id, account, data, first delivery, when it was
 *      queued), and is gone once done;
 *   b. the same id twice within the duplicate window is queued once;
 *   c. an event handed back with a delay is not fetched before it, and is after, as delivery 2;
 *   d. an event fetched and never settled (its fetcher died) comes back after the ack wait, and
 *      one whose fetcher says it is still working does not;
 *   e. an account with max_queued_per_account events queued is refused RESOURCE_EXHAUSTED, the
 *      others are not, and it is accepted again once one is done;
 *   f. NATS killed: a put answers UNAVAILABLE within its timeout and leaves nothing to arrive
 *      later; NATS back: the events queued before are still there (file storage), and puts work
 *      again without reopening;
 *   g. bad input: an account or id that is no subject token, bad options, no server.
 *   i. 2,000 asynchronous puts in flight at once over 400 accounts: every one answered once and
 *      queued; the same ids again, every one a duplicate; one over an account's limit refused
 *      through its answer; the figures printed (puts acknowledged a second).
 *   j. an event's state written, replaced, read, and none for an unknown id; named queues:
 *      records put (one twice under its id, stored once), listed per account, read in pages by
 *      sequence, drained up to a sequence, a malformed name refused;
 *   h. a second opener (another frontend, given its servers as a comma-separated list) with the
 *      same configuration, and one with another. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "event_queue.h"
#include "mem.h"
#include "named_queue.h"
#include "nats_server.h"
#include "proc.h"
#include "testutil.h"

#define MAX_QUEUED 5
#define ACK_WAIT_MS 1000

static brume_test_nats *server;
static brume_event_queue *queue;

static brume_event_queue_opts opts_for(const char *url) {
  return (brume_event_queue_opts){.urls = url,
                                  .replicas = 1,
                                  .max_queued_per_account = MAX_QUEUED,
                                  .duplicate_window_ms = 60000,
                                  .max_age_ms = 3600000,
                                  .ack_wait_ms = ACK_WAIT_MS,
                                  .timeout_ms = 2000};
}

static int group_setup(void **state) {
  (void)state;
  server = brume_test_nats_start();
  if (server == NULL) return -1;
  brume_event_queue_opts o = opts_for(server->url);
  brume_err *err = NULL;
  queue = brume_event_queue_open(&o, &err);
  if (queue == NULL) {
    fprintf(stderr, "open: %s\n", err->msg);
    brume_err_free(err);
    return -1;
  }
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  brume_event_queue_close(queue);
  brume_test_nats_free(server);
  return 0;
}

static void put_ok(const char *account, const char *id, const char *data, bool *duplicate) {
  brume_err *err = NULL;
  if (brume_event_queue_put(queue, account, id, data, strlen(data), duplicate, &err) < 0)
    fail_msg("put %s/%s: %s", account, id, err->msg);
}

static uint64_t depth(void) {
  uint64_t d = 0;
  brume_err *err = NULL;
  if (brume_event_queue_depth(queue, &d, &err) < 0) fail_msg("depth: %s", err->msg);
  return d;
}

/* Fetches one event, waiting up to wait_ms; NULL when none came. */
static brume_event *fetch_one(int64_t wait_ms) {
  brume_event *e = NULL;
  brume_err *err = NULL;
  int n = brume_event_queue_fetch(queue, &e, 1, wait_ms, &err);
  if (n < 0) fail_msg("fetch: %s", err->msg);
  return n == 1 ? e : NULL;
}

static void done_ok(brume_event *e) {
  brume_err *err = NULL;
  if (brume_event_done(e, &err) < 0) fail_msg("done: %s", err->msg);
  brume_event_free(e);
}

static void test_a_put_fetch_done(void **state) {
  (void)state;
  int64_t before = brume_test_wall_ms();
  bool dup = true;
  put_ok("acct-a", "evt-a1", "{\"n\": 1}", &dup);
  assert_false(dup);
  assert_int_equal(depth(), 1);
  brume_event *e = fetch_one(2000);
  assert_non_null(e);
  assert_string_equal(e->id, "evt-a1");
  assert_string_equal(e->account, "acct-a");
  assert_int_equal(e->len, strlen("{\"n\": 1}"));
  assert_memory_equal(e->data, "{\"n\": 1}", e->len);
  assert_int_equal(e->delivery, 1);
  /* JetStream's timestamp, on the same machine's clock. */
  assert_true(e->queued_ms >= before - 1000 && e->queued_ms <= brume_test_wall_ms() + 1000);
  done_ok(e);
  assert_int_equal(depth(), 0);
  assert_null(fetch_one(200));
}

static void test_b_duplicate_id(void **state) {
  (void)state;
  bool dup = true;
  put_ok("acct-b", "evt-b1", "first", &dup);
  assert_false(dup);
  put_ok("acct-b", "evt-b1", "second", &dup);
  assert_true(dup);
  assert_int_equal(depth(), 1);
  brume_event *e = fetch_one(2000);
  assert_non_null(e);
  assert_memory_equal(e->data, "first", 5);
  done_ok(e);
  assert_null(fetch_one(300));
}

static void test_c_retry_after_delay(void **state) {
  (void)state;
  put_ok("acct-c", "evt-c1", "x", NULL);
  brume_event *e = fetch_one(2000);
  assert_non_null(e);
  brume_err *err = NULL;
  double t0 = brume_test_mono_ms();
  assert_int_equal(brume_event_retry_in(e, 700, &err), 0);
  brume_event_free(e);
  assert_null(fetch_one(300)); /* not before its time */
  e = fetch_one(3000);
  double waited = brume_test_mono_ms() - t0;
  assert_non_null(e);
  fprintf(stderr, "  c: handed back for 700 ms, fetched again after %.0f ms\n", waited);
  assert_true(waited >= 650);
  assert_string_equal(e->id, "evt-c1");
  assert_int_equal(e->delivery, 2);
  assert_int_equal(depth(), 1); /* still queued while it waits and runs */
  done_ok(e);
  assert_int_equal(depth(), 0);
}

static void test_d_ack_wait(void **state) {
  (void)state;
  /* A fetcher that dies: the event comes back once the ack wait has passed. */
  put_ok("acct-d", "evt-d1", "x", NULL);
  brume_event *e = fetch_one(2000);
  assert_non_null(e);
  double t0 = brume_test_mono_ms();
  brume_event_free(e); /* never settled */
  e = fetch_one(ACK_WAIT_MS * 4);
  assert_non_null(e);
  double waited = brume_test_mono_ms() - t0;
  fprintf(stderr, "  d: an unsettled event came back after %.0f ms (ack wait %d ms)\n", waited,
          ACK_WAIT_MS);
  assert_true(waited >= ACK_WAIT_MS * 0.9);
  assert_int_equal(e->delivery, 2);

  /* A fetcher that says it is working, every half ack wait, keeps it. */
  brume_err *err = NULL;
  for (int i = 0; i < 4; i++) {
    usleep(ACK_WAIT_MS / 2 * 1000);
    assert_int_equal(brume_event_working(e, &err), 0);
  }
  assert_null(fetch_one(ACK_WAIT_MS / 2));
  done_ok(e);
  assert_int_equal(depth(), 0);
}

static void test_e_queued_limit(void **state) {
  (void)state;
  char id[32];
  for (int i = 0; i < MAX_QUEUED; i++) {
    snprintf(id, sizeof(id), "evt-e%d", i);
    put_ok("acct-e", id, "x", NULL);
  }
  brume_err *err = NULL;
  assert_int_equal(brume_event_queue_put(queue, "acct-e", "evt-e-over", "x", 1, NULL, &err), -1);
  assert_int_equal(err->code, BRUME_RESOURCE_EXHAUSTED);
  fprintf(stderr, "  e: %s\n", err->msg);
  assert_non_null(strstr(err->msg, "TooManyQueuedEventsException"));
  assert_non_null(strstr(err->msg, "acct-e"));
  brume_err_clear(&err);
  /* Another account is not held up by this one's queue. */
  put_ok("acct-e2", "evt-e2-0", "x", NULL);
  assert_int_equal(depth(), MAX_QUEUED + 1);

  /* One done: room for one more. */
  int settled = 0;
  brume_event *e;
  while ((e = fetch_one(1000)) != NULL) {
    if (strcmp(e->account, "acct-e") == 0 && settled == 0) {
      done_ok(e);
      settled++;
      put_ok("acct-e", "evt-e-over", "x", NULL);
      continue;
    }
    done_ok(e);
  }
  assert_int_equal(settled, 1);
  /* The one put after the room was made is fetched in the loop too. */
  assert_int_equal(depth(), 0);
}

/* ---- i. asynchronous puts ---- */

#define I_ACCOUNTS 400
#define I_EVENTS (I_ACCOUNTS * MAX_QUEUED)

static struct { atomic_int answered, ok, duplicates, exhausted, other; } ia;

static void put_answer(void *arg, bool duplicate, const brume_err *err) {
  (void)arg;
  if (err == NULL)
    atomic_fetch_add(duplicate ? &ia.duplicates : &ia.ok, 1);
  else if (err->code == BRUME_RESOURCE_EXHAUSTED && strstr(err->msg, "TooManyQueuedEvents"))
    atomic_fetch_add(&ia.exhausted, 1);
  else
    atomic_fetch_add(&ia.other, 1);
  atomic_fetch_add(&ia.answered, 1);
}

static void test_f_nats_down_and_back(void **state) {
  (void)state;
  put_ok("acct-f", "evt-f1", "before the crash", NULL);
  assert_int_equal(brume_test_nats_kill(server), 0);
  brume_err *err = NULL;
  double t0 = brume_test_mono_ms();
  assert_int_equal(brume_event_queue_put(queue, "acct-f", "evt-f2", "x", 1, NULL, &err), -1);
  double took = brume_test_mono_ms() - t0;
  fprintf(stderr, "  f: with NATS down, after %.0f ms: %s\n", took, err->msg);
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  assert_non_null(strstr(err->msg, "ServiceUnavailableException"));
  assert_true(took < 2000 + 1000);
  brume_err_clear(&err);
  /* Asynchronous: refused at once too, and no answer follows. */
  memset(&ia, 0, sizeof(ia));
  assert_int_equal(
      brume_event_queue_put_async(queue, "acct-f", "evt-f3", "x", 1, put_answer, NULL, &err), -1);
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  brume_err_clear(&err);
  usleep(100000);
  assert_int_equal(atomic_load(&ia.answered), 0);

  assert_int_equal(brume_test_nats_restart(server), 0);
  /* The client reconnects by itself (every 250 ms): the same queue works again. */
  int rc = -1;
  for (int i = 0; i < 40 && rc < 0; i++) {
    rc = brume_event_queue_put(queue, "acct-f", "evt-f2", "after", 5, NULL, &err);
    if (rc < 0) {
      brume_err_clear(&err);
      usleep(250000);
    }
  }
  assert_int_equal(rc, 0);
  assert_int_equal(depth(), 2);
  brume_event *e = fetch_one(3000);
  assert_non_null(e);
  assert_string_equal(e->id, "evt-f1"); /* kept through the crash, and first */
  assert_memory_equal(e->data, "before the crash", e->len);
  done_ok(e);
  e = fetch_one(3000);
  assert_non_null(e);
  assert_string_equal(e->id, "evt-f2");
  assert_memory_equal(e->data, "after", e->len); /* the refused put left nothing behind */
  done_ok(e);
}

static void expect_open_fails(brume_event_queue_opts o, brume_status code, const char *part) {
  brume_err *err = NULL;
  brume_event_queue *q = brume_event_queue_open(&o, &err);
  assert_null(q);
  assert_non_null(err);
  if (err->code != code || strstr(err->msg, part) == NULL)
    fail_msg("open: %s %s, expected %s and \"%s\"", brume_status_name(err->code), err->msg,
             brume_status_name(code), part);
  brume_err_free(err);
}

static void test_g_bad_input(void **state) {
  (void)state;
  const char *bad[][2] = {{"acct.g", "evt-1"}, {"acct-g", "evt.1"}, {"", "evt-1"},
                          {"acct-g", ""},      {"acct g", "e"},     {"acct-g", "evt>"}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    brume_err *err = NULL;
    assert_int_equal(brume_event_queue_put(queue, bad[i][0], bad[i][1], "x", 1, NULL, &err), -1);
    assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
    brume_err_free(err);
  }
  assert_int_equal(depth(), 0);

  brume_event_queue_opts o = opts_for(server->url);
  o.replicas = 2;
  expect_open_fails(o, BRUME_INVALID_ARGUMENT, "replicas is 2");
  o = opts_for(server->url);
  o.ack_wait_ms = 10;
  expect_open_fails(o, BRUME_INVALID_ARGUMENT, "ack_wait_ms");
  o = opts_for(server->url);
  o.tls_cert = "/nonexistent.pem";
  expect_open_fails(o, BRUME_INVALID_ARGUMENT, "needs its key");
  char url[64];
  snprintf(url, sizeof(url), "nats://127.0.0.1:%d", brume_test_free_port());
  o = opts_for(url);
  expect_open_fails(o, BRUME_UNAVAILABLE, "cannot connect to NATS");
}

static void put_all_async(const char *what) {
  memset(&ia, 0, sizeof(ia));
  double t0 = brume_test_mono_ms();
  for (int i = 0; i < I_EVENTS; i++) {
    char account[32], id[32];
    snprintf(account, sizeof(account), "acct-i%d", i % I_ACCOUNTS);
    snprintf(id, sizeof(id), "evt-i%d", i);
    brume_err *err = NULL;
    if (brume_event_queue_put_async(queue, account, id, "{}", 2, put_answer, NULL, &err) < 0)
      fail_msg("put_async %d: %s", i, err->msg);
  }
  double sent = brume_test_mono_ms() - t0;
  while (atomic_load(&ia.answered) < I_EVENTS && brume_test_mono_ms() - t0 < 20000) usleep(1000);
  double took = brume_test_mono_ms() - t0;
  fprintf(stderr,
          "  i: %s: %d answered (%d queued, %d duplicates, %d refused, %d other) in %.0f ms "
          "(sent in %.0f ms): %.0f a second\n",
          what, atomic_load(&ia.answered), atomic_load(&ia.ok), atomic_load(&ia.duplicates),
          atomic_load(&ia.exhausted), atomic_load(&ia.other), took, sent, I_EVENTS / (took / 1000));
  assert_int_equal(atomic_load(&ia.answered), I_EVENTS);
}

static void test_i_async_puts(void **state) {
  (void)state;
  put_all_async("first");
  assert_int_equal(atomic_load(&ia.ok), I_EVENTS);
  assert_int_equal(depth(), I_EVENTS);
  usleep(100000);
  assert_int_equal(atomic_load(&ia.answered), I_EVENTS); /* never a second answer */

  put_all_async("the same ids again");
  assert_int_equal(atomic_load(&ia.duplicates), I_EVENTS);
  assert_int_equal(depth(), I_EVENTS);

  memset(&ia, 0, sizeof(ia));
  brume_err *err = NULL;
  assert_int_equal(
      brume_event_queue_put_async(queue, "acct-i0", "evt-i-over", "{}", 2, put_answer, NULL, &err),
      0);
  for (int i = 0; i < 5000 && atomic_load(&ia.answered) == 0; i++) usleep(1000);
  assert_int_equal(atomic_load(&ia.answered), 1);
  assert_int_equal(atomic_load(&ia.exhausted), 1);

  /* Drained, a hundred at a time. */
  brume_event *batch[100];
  int got = 0, n;
  while ((n = brume_event_queue_fetch(queue, batch, 100, 1000, &err)) > 0) {
    for (int i = 0; i < n; i++) done_ok(batch[i]);
    got += n;
  }
  assert_int_equal(n, 0);
  assert_int_equal(got, I_EVENTS);
  assert_int_equal(depth(), 0);
}

static void test_j_states_and_named_queues(void **state) {
  (void)state;
  brume_err *err = NULL;
  /* An event's state: none, then what was written, then replaced. */
  void *data = NULL;
  size_t len = 0;
  assert_int_equal(brume_event_state_get(queue, "evt-none", &data, &len, &err), -1);
  assert_int_equal(err->code, BRUME_NOT_FOUND);
  brume_err_clear(&err);
  assert_int_equal(brume_event_state_put(queue, "evt-s1", "first", 5, &err), 0);
  assert_int_equal(brume_event_state_put(queue, "evt-s1", "second!", 7, &err), 0);
  assert_int_equal(brume_event_state_get(queue, "evt-s1", &data, &len, &err), 0);
  assert_int_equal(len, 7);
  assert_memory_equal(data, "second!", 7);
  free(data);
  assert_int_equal(brume_event_state_get(queue, "no.such", &data, &len, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_clear(&err);

  /* Named queues: three records in a/q1 (one sent twice under its id), one in a/q2, one in b/q1. */
  const char *ids[] = {"r1", "r2", "r3", "r2"};
  for (int i = 0; i < 4; i++) {
    char body[16];
    snprintf(body, sizeof(body), "record %s", ids[i]);
    assert_int_equal(brume_named_queue_put(queue, "a", "q1", ids[i], body, strlen(body), &err), 0);
  }
  assert_int_equal(brume_named_queue_put(queue, "a", "q2", "x", "x", 1, &err), 0);
  assert_int_equal(brume_named_queue_put(queue, "b", "q1", "y", "y", 1, &err), 0);
  brume_named_queue_info *list = NULL;
  size_t n = 0;
  assert_int_equal(brume_named_queue_list(queue, "a", &list, &n, &err), 0);
  assert_int_equal(n, 2);
  assert_string_equal(list[0].name, "q1");
  assert_int_equal(list[0].messages, 3); /* r2 once */
  assert_string_equal(list[1].name, "q2");
  free(list);
  /* Read two, then on from the second's sequence: the third, then none. */
  brume_queue_message *m = NULL;
  assert_int_equal(brume_named_queue_read(queue, "a", "q1", 1, 2, &m, &n, &err), 0);
  assert_int_equal(n, 2);
  assert_string_equal(m[0].data, "record r1");
  assert_string_equal(m[1].data, "record r2");
  uint64_t second = m[1].seq;
  brume_queue_messages_free(m, n);
  assert_int_equal(brume_named_queue_read(queue, "a", "q1", second + 1, 10, &m, &n, &err), 0);
  assert_int_equal(n, 1);
  assert_string_equal(m[0].data, "record r3");
  brume_queue_messages_free(m, n);
  /* Drained up to the second: one left in a/q1, b/q1 untouched. */
  assert_int_equal(brume_named_queue_remove(queue, "a", "q1", second, &err), 0);
  assert_int_equal(brume_named_queue_read(queue, "a", "q1", 1, 10, &m, &n, &err), 0);
  assert_int_equal(n, 1);
  assert_string_equal(m[0].data, "record r3");
  brume_queue_messages_free(m, n);
  assert_int_equal(brume_named_queue_read(queue, "b", "q1", 1, 10, &m, &n, &err), 0);
  assert_int_equal(n, 1);
  brume_queue_messages_free(m, n);
  /* A malformed name. */
  assert_int_equal(brume_named_queue_put(queue, "a", "bad.name", "z", "z", 1, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_clear(&err);
}

static void test_h_second_opener(void **state) {
  (void)state;
  brume_err *err = NULL;
  /* Named as a cluster is: several URLs, comma-separated (here the one server twice). */
  brume_autofree char *urls = brume_xasprintf("%s, %s", server->url, server->url);
  brume_event_queue_opts o = opts_for(urls);
  brume_event_queue *q2 = brume_event_queue_open(&o, &err);
  if (q2 == NULL) fail_msg("a second open: %s", err->msg);
  /* Both share the consumer: what one puts, the other fetches. */
  assert_int_equal(brume_event_queue_put(q2, "acct-h", "evt-h1", "x", 1, NULL, &err), 0);
  brume_event *e = fetch_one(2000);
  assert_non_null(e);
  assert_string_equal(e->id, "evt-h1");
  done_ok(e);
  brume_event_queue_close(q2);

  /* Another limit: the stream is updated, and the first queue sees the new one. */
  o.max_queued_per_account = 1;
  q2 = brume_event_queue_open(&o, &err);
  if (q2 == NULL) fail_msg("an open with another limit: %s", err->msg);
  put_ok("acct-h", "evt-h2", "x", NULL);
  assert_int_equal(brume_event_queue_put(queue, "acct-h", "evt-h3", "x", 1, NULL, &err), -1);
  assert_int_equal(err->code, BRUME_RESOURCE_EXHAUSTED);
  brume_err_clear(&err);
  e = fetch_one(2000);
  assert_non_null(e);
  done_ok(e);
  brume_event_queue_close(q2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_put_fetch_done),
      cmocka_unit_test(test_b_duplicate_id),
      cmocka_unit_test(test_c_retry_after_delay),
      cmocka_unit_test(test_d_ack_wait),
      cmocka_unit_test(test_e_queued_limit),
      cmocka_unit_test(test_f_nats_down_and_back),
      cmocka_unit_test(test_g_bad_input),
      cmocka_unit_test(test_i_async_puts),
      cmocka_unit_test(test_j_states_and_named_queues),
      cmocka_unit_test(test_h_second_opener),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
