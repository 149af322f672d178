/* Unit tests for worker-agent/accel: the KVM-or-TCG decision driven by a fake boot function
 * (never from /dev/kvm's presence alone), and the default ready check on a socket pair. The
 * probe through libvirt with real domains is in test_libvirt.c. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "accel.h"
#include "brume/guest.pb-c.h"
#include "log.h"
#include "proc.h"

typedef struct fake {
  int calls[3];        /* by brume_accel */
  int timeouts[3];     /* the timeout each accelerator was given */
  const char *fail[3]; /* non-NULL: that boot fails with this message */
  brume_status code[3];
} fake;

static int fake_boot(brume_accel accel, int timeout_ms, void *user, brume_err **err) {
  fake *f = user;
  f->calls[accel]++;
  f->timeouts[accel] = timeout_ms;
  if (f->fail[accel])
    return brume_err_set(err, f->code[accel] ? f->code[accel] : BRUME_INTERNAL, "%s",
                         f->fail[accel]);
  return 0;
}

static void test_no_boot_fn(void **state) {
  (void)state;
  brume_accel_probe_opts o = {.kvm_device = "/dev/null"};
  brume_accel_result r;
  brume_err *err = NULL;
  assert_int_equal(brume_accel_probe(&o, &r, &err), -1);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_free(err);
  brume_accel_result_clear(&r);
}

static void test_no_device(void **state) {
  (void)state;
  fake f = {0};
  brume_accel_probe_opts o = {.kvm_device = "/nonexistent/kvm", .boot = fake_boot, .boot_user = &f};
  brume_accel_result r;
  assert_int_equal(brume_accel_probe(&o, &r, NULL), 0);
  assert_int_equal(r.accel, BRUME_ACCEL_TCG);
  assert_string_equal(r.reason, "/nonexistent/kvm is absent; using TCG");
  assert_int_equal(r.kvm_boot_ms, -1);
  assert_int_equal(f.calls[BRUME_ACCEL_KVM], 0);
  brume_accel_result_clear(&r);
}

static void test_device_unopenable(void **state) {
  (void)state;
  fake f = {0};
  char *dir = brume_test_tmpdir("accel");
  /* A directory exists but does not open read-write: like a /dev/kvm without permission. */
  brume_accel_probe_opts o = {.kvm_device = dir, .boot = fake_boot, .boot_user = &f};
  brume_accel_result r;
  assert_int_equal(brume_accel_probe(&o, &r, NULL), 0);
  assert_int_equal(r.accel, BRUME_ACCEL_TCG);
  assert_non_null(strstr(r.reason, "KVM is present but did not boot a guest: cannot open"));
  assert_int_equal(f.calls[BRUME_ACCEL_KVM], 0);
  brume_accel_result_clear(&r);
  brume_test_rmtree(dir);
  free(dir);
}

static void test_kvm_boots(void **state) {
  (void)state;
  fake f = {0};
  brume_accel_probe_opts o = {.kvm_device = "/dev/null", .boot = fake_boot, .boot_user = &f};
  brume_accel_result r;
  assert_int_equal(brume_accel_probe(&o, &r, NULL), 0);
  assert_int_equal(r.accel, BRUME_ACCEL_KVM);
  assert_true(r.kvm_boot_ms >= 0);
  assert_non_null(strstr(r.reason, "KVM booted the guest to its agent in "));
  assert_int_equal(f.calls[BRUME_ACCEL_KVM], 1);
  assert_int_equal(f.calls[BRUME_ACCEL_TCG], 0);
  assert_int_equal(f.timeouts[BRUME_ACCEL_KVM], BRUME_ACCEL_PROBE_TIMEOUT_MS);
  brume_accel_result_clear(&r);
}

/* The development machines: /dev/kvm opens, but the guest never gets to its agent. */
static void test_kvm_present_but_broken(void **state) {
  (void)state;
  fake f = {.fail = {[BRUME_ACCEL_KVM] = "KVM internal error. Suberror: 1"}};
  brume_accel_probe_opts o = {
      .kvm_device = "/dev/null", .timeout_ms = 1234, .boot = fake_boot, .boot_user = &f};
  brume_accel_result r;
  brume_err *err = NULL;
  assert_int_equal(brume_accel_probe(&o, &r, &err), 0);
  assert_null(err);
  assert_int_equal(r.accel, BRUME_ACCEL_TCG);
  assert_string_equal(r.reason,
                      "KVM is present but did not boot a guest: KVM internal error. "
                      "Suberror: 1; using TCG");
  assert_int_equal(f.timeouts[BRUME_ACCEL_KVM], 1234);
  assert_int_equal(f.calls[BRUME_ACCEL_TCG], 0); /* check_tcg is off */
  brume_accel_result_clear(&r);
}

static void test_check_tcg(void **state) {
  (void)state;
  fake f = {.fail = {[BRUME_ACCEL_KVM] = "timed out"}};
  brume_accel_probe_opts o = {
      .kvm_device = "/dev/null", .check_tcg = true, .boot = fake_boot, .boot_user = &f};
  brume_accel_result r;
  brume_err *err = NULL;
  assert_int_equal(brume_accel_probe(&o, &r, &err), 0);
  assert_int_equal(r.accel, BRUME_ACCEL_TCG);
  assert_int_equal(f.calls[BRUME_ACCEL_TCG], 1);
  brume_accel_result_clear(&r);

  /* Neither boots: the guest image is at fault, not KVM, and the probe says so. */
  fake g = {.fail = {[BRUME_ACCEL_KVM] = "timed out", [BRUME_ACCEL_TCG] = "kernel panic"},
            .code = {[BRUME_ACCEL_TCG] = BRUME_DEADLINE_EXCEEDED}};
  o.boot_user = &g;
  assert_int_equal(brume_accel_probe(&o, &r, &err), -1);
  assert_int_equal(err->code, BRUME_DEADLINE_EXCEEDED);
  assert_string_equal(err->msg, "the guest does not boot under TCG either: kernel panic");
  brume_err_free(err);
  brume_accel_result_clear(&r);
}

static void test_names(void **state) {
  (void)state;
  assert_string_equal(brume_accel_name(BRUME_ACCEL_KVM), "kvm");
  assert_string_equal(brume_accel_name(BRUME_ACCEL_TCG), "tcg");
  assert_string_equal(brume_accel_name(BRUME_ACCEL_UNSPECIFIED), "unspecified");
  assert_string_equal(brume_accel_domain_type(BRUME_ACCEL_KVM), "kvm");
  assert_string_equal(brume_accel_domain_type(BRUME_ACCEL_TCG), "qemu");
  assert_null(brume_accel_domain_type(BRUME_ACCEL_UNSPECIFIED));
}

/* ---- the default ready check ---- */

static void send_frame(int fd, const void *buf, uint32_t len) {
  unsigned char hdr[4] = {len >> 24, len >> 16, len >> 8, len};
  assert_int_equal(write(fd, hdr, 4), 4);
  if (len) assert_int_equal(write(fd, buf, len), (ssize_t)len);
}

static void send_message(int fd, Brume__GuestMessage *m) {
  size_t n = brume__guest_message__get_packed_size(m);
  unsigned char *buf = brume_xmalloc(n ? n : 1);
  brume__guest_message__pack(m, buf);
  send_frame(fd, buf, (uint32_t)n);
  free(buf);
}

static void test_ready_guest(void **state) {
  (void)state;
  int sv[2];
  brume_err *err = NULL;

  /* A Ready, written in two pieces to check partial reads. */
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  Brume__GuestReady ready = BRUME__GUEST_READY__INIT;
  ready.protocol_version = 1;
  ready.uptime_us = 800000;
  Brume__GuestMessage m = BRUME__GUEST_MESSAGE__INIT;
  m.body_case = BRUME__GUEST_MESSAGE__BODY_READY;
  m.ready = &ready;
  send_message(sv[1], &m);
  assert_int_equal(brume_accel_ready_guest(sv[0], 1000, NULL, &err), 0);
  assert_null(err);

  /* A frame that is not whole when the time runs out stays in the socket for the next call:
   * the libvirt boot calls in slices. */
  size_t n = brume__guest_message__get_packed_size(&m);
  unsigned char frame[64];
  frame[0] = 0, frame[1] = 0, frame[2] = 0, frame[3] = (unsigned char)n;
  brume__guest_message__pack(&m, frame + 4);
  assert_int_equal(write(sv[1], frame, 6), 6);
  assert_int_equal(brume_accel_ready_guest(sv[0], 50, NULL, &err), -1);
  assert_int_equal(err->code, BRUME_DEADLINE_EXCEEDED);
  brume_err_clear(&err);
  assert_int_equal(write(sv[1], frame + 6, 4 + n - 6), (ssize_t)(4 + n - 6));
  assert_int_equal(brume_accel_ready_guest(sv[0], 1000, NULL, &err), 0);

  /* Something else first: not an agent that is ready. */
  Brume__GuestPong pong = BRUME__GUEST_PONG__INIT;
  m.body_case = BRUME__GUEST_MESSAGE__BODY_PONG;
  m.pong = &pong;
  send_message(sv[1], &m);
  assert_int_equal(brume_accel_ready_guest(sv[0], 1000, NULL, &err), -1);
  assert_int_equal(err->code, BRUME_INTERNAL);
  assert_string_equal(err->msg, "the guest sent message 3 before Ready");
  brume_err_clear(&err);

  /* Garbage and oversized frames. */
  send_frame(sv[1], "\xff\xff\xff", 3);
  assert_int_equal(brume_accel_ready_guest(sv[0], 1000, NULL, &err), -1);
  assert_string_equal(err->msg, "the channel sent an undecodable message");
  brume_err_clear(&err);
  unsigned char big[4] = {0x10, 0, 0, 0};
  assert_int_equal(write(sv[1], big, 4), 4);
  assert_int_equal(brume_accel_ready_guest(sv[0], 1000, NULL, &err), -1);
  assert_string_equal(err->msg, "the channel sent a 268435456-byte frame, not a guest Ready");
  brume_err_clear(&err);
  /* (Such a header is left where it is: the channel is beyond use, and the probe gives up.) */
  close(sv[0]);
  close(sv[1]);
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);

  /* Silence: a deadline, promptly. */
  long long t0 = brume_test_now_ms();
  assert_int_equal(brume_accel_ready_guest(sv[0], 150, NULL, &err), -1);
  long long took = brume_test_now_ms() - t0;
  assert_int_equal(err->code, BRUME_DEADLINE_EXCEEDED);
  assert_true(took >= 140 && took < 2000);
  brume_err_clear(&err);

  /* The other side goes away in the middle of a frame. */
  assert_int_equal(write(sv[1], "\0\0", 2), 2);
  close(sv[1]);
  assert_int_equal(brume_accel_ready_guest(sv[0], 1000, NULL, &err), -1);
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  assert_string_equal(err->msg, "the channel closed");
  brume_err_clear(&err);
  close(sv[0]);
}

int main(void) {
  brume_log_init("test-accel", BRUME_LOG_WARN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_boot_fn),
      cmocka_unit_test(test_no_device),
      cmocka_unit_test(test_device_unopenable),
      cmocka_unit_test(test_kvm_boots),
      cmocka_unit_test(test_kvm_present_but_broken),
      cmocka_unit_test(test_check_tcg),
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_ready_guest),
  };
  return cmocka_run_group_tests_name("worker_accel", tests, NULL, NULL);
}
