/* Integration tests for worker-agent/libvirt and the accelerator probe's libvirt boot, against
 * the real libvirtd that deploy/host-setup.sh starts (qemu:///system). The guest is a stand-in
 * kernel (pvh_test_kernel.S, path in $BRUME_TEST_PVH_KERNEL) that prints a line and halts, so
 * every domain here is a real QEMU microvm built from brume_domain_xml().
 *
 * With $BRUME_TEST_GUEST_KERNEL and $BRUME_TEST_GUEST_INITRD set to the real guest image, the
 * probe also boots it to brume-init under KVM and TCG (test_probe_real_guest).
 *
 * Every domain is named brumetest-t<pid>-..., created with auto-destroy, and swept by prefix at
 * the start and the end, so a failed run leaves no QEMU behind. Exit 77 (skip) when not root
 * or libvirtd does not answer. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "accel.h"
#include "domain.h"
#include "libvirt.h"
#include "log.h"
#include "proc.h"

#define PREFIX "brumetest"

static virConnectPtr conn;
static char host_id[32];
static char *name_prefix; /* brumetest-t<pid>- */
static char *dir;
static const char *kernel;

static brume_domain_spec spec_for(const char *sandbox_id, brume_accel accel) {
  static char sock[256], console[256];
  snprintf(sock, sizeof(sock), "%s/%s.sock", dir, sandbox_id);
  snprintf(console, sizeof(console), "%s/%s.console", dir, sandbox_id);
  return (brume_domain_spec){
      .name_prefix = PREFIX,
      .host_id = host_id,
      .sandbox_id = sandbox_id,
      .accel = accel,
      .kernel = kernel,
      .tsc_khz = brume_domain_host_tsc_khz(),
      .memory_mib = 128,
      .channel_path = sock,
      .console_log = console,
  };
}

static virDomainPtr create(const char *sandbox_id, brume_accel accel, unsigned flags) {
  brume_domain_spec s = spec_for(sandbox_id, accel);
  brume_err *err = NULL;
  char *xml = brume_domain_xml(&s, &err);
  if (!xml) fail_msg("domain xml: %s", err->msg);
  virDomainPtr d = brume_libvirt_create(conn, xml, flags, &err);
  if (!d) fail_msg("create %s: %s", sandbox_id, err->msg);
  free(xml);
  return d;
}

/* Whether file contains needle within timeout_ms. */
static bool wait_file_contains(const char *path, const char *needle, int timeout_ms) {
  long long end = brume_test_now_ms() + timeout_ms;
  do {
    FILE *f = fopen(path, "r");
    if (f) {
      char buf[4096];
      size_t n = fread(buf, 1, sizeof(buf) - 1, f);
      fclose(f);
      buf[n] = '\0';
      if (strstr(buf, needle)) return true;
    }
    usleep(20 * 1000);
  } while (brume_test_now_ms() < end);
  return false;
}

/* Whether a QEMU process runs for domain name (libvirt passes "-name guest=<name>,..."). */
static bool qemu_running(const char *name) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  char want[256];
  snprintf(want, sizeof(want), "guest=%s,", name);
  bool found = false;
  while (d && (e = readdir(d)) && !found) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char path[300], buf[8192];
    snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
    int fd = open(path, O_RDONLY);
    if (fd < 0) continue;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) continue;
    for (ssize_t i = 0; i < n; i++)
      if (!buf[i]) buf[i] = ' ';
    buf[n] = '\0';
    if (strstr(buf, want)) found = true;
  }
  if (d) closedir(d);
  return found;
}

static void expect_state(virDomainPtr d, int want) {
  int st = -1;
  brume_err *err = NULL;
  if (brume_libvirt_state(d, &st, NULL, &err) < 0) fail_msg("state: %s", err->msg);
  if (st != want)
    fail_msg("domain is %s, want %s", brume_libvirt_state_name(st), brume_libvirt_state_name(want));
}

static void test_connect_error(void **state) {
  (void)state;
  brume_err *err = NULL;
  assert_null(brume_libvirt_connect("qemu:///system?socket=/nonexistent/libvirt-sock", &err));
  assert_int_equal(err->code, BRUME_UNAVAILABLE);
  assert_non_null(
      strstr(err->msg, "libvirt connect qemu:///system?socket=/nonexistent/libvirt-sock: "));
  assert_non_null(strstr(err->msg, "is libvirtd running?"));
  brume_err_free(err);
}

static void test_lifecycle(void **state) {
  (void)state;
  brume_err *err = NULL;
  long long t0 = brume_test_now_ms();
  virDomainPtr d = create("life", BRUME_ACCEL_TCG, BRUME_LIBVIRT_AUTODESTROY);
  long long created = brume_test_now_ms();
  brume_domain_spec s = spec_for("life", BRUME_ACCEL_TCG);
  /* The serial console goes to the file: the guest's line is there. */
  assert_true(wait_file_contains(s.console_log, "brume test kernel: up", 10000));
  print_message("create %lld ms, console line after %lld ms\n", created - t0,
                brume_test_now_ms() - t0);
  expect_state(d, VIR_DOMAIN_RUNNING);
  /* The channel socket exists and takes a connection (QEMU listens on it). */
  assert_int_equal(access(s.channel_path, F_OK), 0);

  char *name = brume_domain_name(PREFIX, host_id, "life", NULL);
  assert_true(qemu_running(name));
  size_t n = 0;
  char **names = brume_libvirt_list_by_prefix(conn, name_prefix, &n, &err);
  assert_non_null(names);
  assert_int_equal(n, 1);
  assert_string_equal(names[0], name);
  assert_null(names[1]);
  brume_libvirt_names_free(names);
  virDomainPtr again = brume_libvirt_lookup(conn, name, &err);
  assert_non_null(again);
  virDomainFree(again);

  /* Freeze and thaw. */
  long long t1 = brume_test_now_ms();
  assert_int_equal(brume_libvirt_suspend(d, &err), 0);
  long long t2 = brume_test_now_ms();
  expect_state(d, VIR_DOMAIN_PAUSED);
  assert_int_equal(brume_libvirt_resume(d, &err), 0);
  print_message("suspend %lld ms, resume %lld ms\n", t2 - t1, brume_test_now_ms() - t2);
  expect_state(d, VIR_DOMAIN_RUNNING);
  /* Resuming a running domain is refused by libvirt as an invalid operation. */
  assert_int_equal(brume_libvirt_resume(d, &err), -1);
  assert_int_equal(err->code, BRUME_FAILED_PRECONDITION);
  assert_non_null(strstr(err->msg, "libvirt resume brumetest-"));
  brume_err_clear(&err);

  /* The CPU cap changes live (a pool VM being specialised). */
  assert_int_equal(brume_libvirt_set_vcpu_quota(d, 100000, 50000, &err), 0);
  virTypedParameterPtr params = NULL;
  int nparams = 0;
  char *type = virDomainGetSchedulerType(d, &nparams);
  assert_non_null(type);
  free(type);
  params = calloc((size_t)nparams, sizeof(*params));
  assert_int_equal(
      virDomainGetSchedulerParametersFlags(d, params, &nparams, VIR_DOMAIN_AFFECT_LIVE), 0);
  long long quota = 0;
  assert_int_equal(virTypedParamsGetLLong(params, nparams, VIR_DOMAIN_SCHEDULER_VCPU_QUOTA, &quota),
                   1);
  assert_int_equal(quota, 50000);
  virTypedParamsFree(params, nparams);

  long long t3 = brume_test_now_ms();
  assert_int_equal(brume_libvirt_destroy(d, &err), 0);
  print_message("destroy %lld ms\n", brume_test_now_ms() - t3);
  assert_false(qemu_running(name));
  assert_null(brume_libvirt_lookup(conn, name, &err));
  assert_int_equal(err->code, BRUME_NOT_FOUND);
  brume_err_clear(&err);
  /* Destroying what is gone is not an error; suspending it is. */
  assert_int_equal(brume_libvirt_destroy(d, &err), 0);
  assert_int_equal(brume_libvirt_suspend(d, &err), -1);
  assert_true(err->code == BRUME_NOT_FOUND || err->code == BRUME_FAILED_PRECONDITION);
  brume_err_clear(&err);
  virDomainFree(d);
  free(name);
}

static void test_destroy_by_prefix(void **state) {
  (void)state;
  brume_err *err = NULL;
  assert_int_equal(brume_libvirt_destroy_by_prefix(conn, name_prefix, &err), 0);
  virDomainPtr a = create("sb-a", BRUME_ACCEL_TCG, BRUME_LIBVIRT_AUTODESTROY);
  virDomainPtr b =
      create("sb-b", BRUME_ACCEL_TCG, BRUME_LIBVIRT_AUTODESTROY | BRUME_LIBVIRT_PAUSED);
  expect_state(b, VIR_DOMAIN_PAUSED);
  /* Another worker's domain (host id t<pid>x) is not ours, though its name starts alike. */
  char other_host[40];
  snprintf(other_host, sizeof(other_host), "%sx", host_id);
  brume_domain_spec s = spec_for("sb-c", BRUME_ACCEL_TCG);
  s.host_id = other_host;
  char *xml = brume_domain_xml(&s, NULL);
  virDomainPtr c = brume_libvirt_create(conn, xml, BRUME_LIBVIRT_AUTODESTROY, &err);
  assert_non_null(c);
  free(xml);

  assert_int_equal(brume_libvirt_destroy_by_prefix(conn, name_prefix, &err), 2);
  assert_null(err);
  size_t n = 9;
  char **names = brume_libvirt_list_by_prefix(conn, name_prefix, &n, &err);
  assert_int_equal(n, 0);
  brume_libvirt_names_free(names);
  expect_state(c, VIR_DOMAIN_RUNNING);
  assert_int_equal(brume_libvirt_destroy(c, &err), 0);
  virDomainFree(a);
  virDomainFree(b);
  virDomainFree(c);
}

/* A worker that dies takes its domains with it: libvirtd destroys auto-destroy domains when
 * their connection closes. */
static void test_autodestroy(void **state) {
  (void)state;
  brume_err *err = NULL;
  virConnectPtr c2 = brume_libvirt_connect(NULL, &err);
  assert_non_null(c2);
  brume_domain_spec s = spec_for("auto", BRUME_ACCEL_TCG);
  char *xml = brume_domain_xml(&s, NULL);
  virDomainPtr d = brume_libvirt_create(c2, xml, BRUME_LIBVIRT_AUTODESTROY, &err);
  assert_non_null(d);
  free(xml);
  char *name = brume_domain_name(PREFIX, host_id, "auto", NULL);
  assert_true(qemu_running(name));
  virDomainFree(d);
  virConnectClose(c2);
  long long end = brume_test_now_ms() + 5000;
  virDomainPtr left;
  while ((left = virDomainLookupByName(conn, name)) && brume_test_now_ms() < end) {
    virDomainFree(left);
    usleep(20 * 1000);
  }
  virResetLastError();
  assert_null(left);
  assert_false(qemu_running(name));
  free(name);
}

/* libvirt and QEMU accept the optional devices and the KVM variant of the XML. */
static void test_options_accepted(void **state) {
  (void)state;
  brume_err *err = NULL;
  char *img = brume_xasprintf("%s/tmp.img", dir);
  FILE *f = fopen(img, "w");
  fclose(f);
  assert_int_equal(truncate(img, 512 << 20), 0);
  brume_domain_spec s = spec_for("opts", BRUME_ACCEL_TCG);
  s.network = true;
  s.scratch_disk = img;
  s.memory_mib = 2048;
  char *xml = brume_domain_xml(&s, NULL);
  virDomainPtr d = brume_libvirt_create(conn, xml, BRUME_LIBVIRT_AUTODESTROY, &err);
  if (!d) fail_msg("%s", err->msg);
  assert_true(wait_file_contains(s.console_log, "brume test kernel: up", 10000));
  assert_int_equal(brume_libvirt_destroy(d, &err), 0);
  virDomainFree(d);
  free(xml);
  free(img);

  /* libvirt takes the KVM variant too. Whether QEMU then runs it is the host's affair: on the
   * development machines (nested "PVM" KVM) QEMU aborts at once on the host CPU's MSR 0x10a,
   * which is a runtime failure, not a refusal of the XML. */
  if (access("/dev/kvm", F_OK) != 0) return;
  s = spec_for("kvm", BRUME_ACCEL_KVM);
  xml = brume_domain_xml(&s, NULL);
  d = brume_libvirt_create(conn, xml, BRUME_LIBVIRT_AUTODESTROY, &err);
  free(xml);
  if (d) {
    assert_int_equal(brume_libvirt_destroy(d, &err), 0);
    virDomainFree(d);
  } else {
    print_message("KVM domain: %s\n", err->msg);
    assert_null(strstr(err->msg, "XML"));
    assert_null(strstr(err->msg, "unsupported configuration"));
    assert_non_null(strstr(err->msg, "qemu"));
    brume_err_clear(&err);
  }
}

/* The probe's libvirt boot with a ready check that watches the console instead of the channel:
 * the stand-in kernel gets there whenever QEMU runs it. */
static int console_ready(int fd, int timeout_ms, void *user, brume_err **err) {
  (void)fd;
  const char *d = user;
  char kvm[256], tcg[256];
  snprintf(kvm, sizeof(kvm), "%s/accel-probe-kvm.console", d);
  snprintf(tcg, sizeof(tcg), "%s/accel-probe-tcg.console", d);
  if (wait_file_contains(kvm, "brume test kernel: up", timeout_ms / 2) ||
      wait_file_contains(tcg, "brume test kernel: up", timeout_ms / 2))
    return 0;
  return brume_err_set(err, BRUME_DEADLINE_EXCEEDED, "no console line yet");
}

static void test_probe_stand_in(void **state) {
  (void)state;
  brume_domain_spec tmpl = spec_for("unused", BRUME_ACCEL_TCG);
  brume_accel_libvirt_ctx ctx = {.conn = conn, .spec = &tmpl, .work_dir = dir};
  brume_accel_probe_opts o = {
      .timeout_ms = 1500, .boot = brume_accel_libvirt_boot, .boot_user = &ctx};
  brume_accel_result r;
  brume_err *err = NULL;

  /* The default ready check waits for brume-init's Ready, which this kernel never sends. */
  assert_int_equal(brume_accel_probe(&o, &r, &err), 0);
  assert_int_equal(r.accel, BRUME_ACCEL_TCG);
  print_message("probe: %s\n", r.reason);
  if (access("/dev/kvm", F_OK) == 0) {
    /* Either QEMU fails at once (here: the host CPU's MSR 0x10a under PVM) or the guest runs
     * and its agent never answers within the bound. */
    assert_non_null(strstr(r.reason, "KVM is present but did not boot a guest: "));
    assert_true(strstr(r.reason, "the guest agent did not answer") ||
                strstr(r.reason, "libvirt create domain: "));
    assert_non_null(strstr(r.reason, "; using TCG"));
    assert_null(strchr(r.reason, '\n'));
    assert_true(r.kvm_boot_ms >= 0 && r.kvm_boot_ms < 5000);
  }
  brume_accel_result_clear(&r);

  /* With check_tcg, a guest that boots under neither is the image's fault. */
  if (access("/dev/kvm", F_OK) == 0) {
    o.check_tcg = true;
    assert_int_equal(brume_accel_probe(&o, &r, &err), -1);
    assert_int_equal(err->code, BRUME_DEADLINE_EXCEEDED);
    assert_non_null(strstr(err->msg,
                           "the guest does not boot under TCG either: the guest agent "
                           "did not answer (domain running"));
    brume_err_clear(&err);
    brume_accel_result_clear(&r);
    o.check_tcg = false;
  }

  /* A guest that gets to its "agent" (here: its console line) under KVM makes it KVM: the
   * probe trusts the boot and nothing else. Under TCG the ready check passes too. */
  ctx.ready = console_ready;
  ctx.ready_user = dir;
  o.check_tcg = true;
  assert_int_equal(brume_accel_probe(&o, &r, &err), 0);
  print_message("probe with the console check: %s\n", r.reason);
  if (r.accel == BRUME_ACCEL_KVM)
    assert_non_null(strstr(r.reason, "KVM booted the guest to its agent in "));
  brume_accel_result_clear(&r);
  /* Nothing is left running. */
  size_t n = 9;
  char **names = brume_libvirt_list_by_prefix(conn, name_prefix, &n, NULL);
  assert_int_equal(n, 0);
  brume_libvirt_names_free(names);
}

/* The libvirt boot on its own, with guests that fail: one that never answers is cut off at the
 * deadline, one that dies during boot is reported at once, with the console's last line. */
static void test_libvirt_boot_failures(void **state) {
  (void)state;
  brume_domain_spec tmpl = spec_for("unused", BRUME_ACCEL_TCG);
  brume_accel_libvirt_ctx ctx = {.conn = conn, .spec = &tmpl, .work_dir = dir};
  brume_err *err = NULL;
  long long t0 = brume_test_now_ms();
  assert_int_equal(brume_accel_libvirt_boot(BRUME_ACCEL_TCG, 1000, &ctx, &err), -1);
  long long took = brume_test_now_ms() - t0;
  assert_int_equal(err->code, BRUME_DEADLINE_EXCEEDED);
  assert_non_null(strstr(err->msg, "the guest agent did not answer (domain running); console: "));
  assert_non_null(strstr(err->msg, " within 1000 ms"));
  assert_true(took >= 1000 && took < 10000);
  brume_err_clear(&err);

  tmpl.kernel = getenv("BRUME_TEST_PVH_KERNEL_CRASH");
  assert_non_null(tmpl.kernel);
  t0 = brume_test_now_ms();
  assert_int_equal(brume_accel_libvirt_boot(BRUME_ACCEL_TCG, 10000, &ctx, &err), -1);
  took = brume_test_now_ms() - t0;
  print_message("crashing guest: %s (%lld ms)\n", err->msg, took);
  /* Usually QEMU is up when the guest dies; sometimes the guest is quicker than libvirt's start
   * of QEMU, and the create itself fails. Both name the console's last line. */
  if (strstr(err->msg, "libvirt create domain: ")) {
    assert_int_equal(err->code, BRUME_INTERNAL);
  } else {
    assert_int_equal(err->code, BRUME_INTERNAL);
    assert_non_null(strstr(err->msg, "the guest stopped before its agent answered (domain "));
  }
  assert_non_null(strstr(err->msg, "; console: brume test kernel: up"));
  assert_true(took < 5000);
  brume_err_clear(&err);
  size_t n = 9;
  char **names = brume_libvirt_list_by_prefix(conn, name_prefix, &n, NULL);
  assert_int_equal(n, 0);
  brume_libvirt_names_free(names);
}

/* The real guest image, when the environment names it: brume-init answers Ready under TCG;
 * under KVM on these machines it does not, and the probe must say TCG. */
static void test_probe_real_guest(void **state) {
  (void)state;
  const char *k = getenv("BRUME_TEST_GUEST_KERNEL"), *i = getenv("BRUME_TEST_GUEST_INITRD");
  if (!k || !i || !*k || !*i) {
    print_message("BRUME_TEST_GUEST_KERNEL/INITRD unset: the real guest is not probed\n");
    skip();
  }
  brume_domain_spec tmpl = spec_for("unused", BRUME_ACCEL_TCG);
  tmpl.kernel = k;
  tmpl.initrd = i;
  brume_accel_libvirt_ctx ctx = {.conn = conn, .spec = &tmpl, .work_dir = dir};
  brume_accel_probe_opts o = {
      .timeout_ms = 10000, .check_tcg = true, .boot = brume_accel_libvirt_boot, .boot_user = &ctx};
  brume_accel_result r;
  brume_err *err = NULL;
  long long t0 = brume_test_now_ms();
  if (brume_accel_probe(&o, &r, &err) < 0) fail_msg("probe: %s", err->msg);
  print_message("real guest: %s (kvm boot %lld ms, probe %lld ms)\n", r.reason,
                (long long)r.kvm_boot_ms, brume_test_now_ms() - t0);
  brume_accel_result_clear(&r);
}

int main(void) {
  brume_log_init("test-libvirt", BRUME_LOG_WARN);
  if (geteuid() != 0) {
    fprintf(stderr, "test_libvirt: skipped: needs root for qemu:///system\n");
    return 77;
  }
  kernel = getenv("BRUME_TEST_PVH_KERNEL");
  if (!kernel || access(kernel, R_OK) != 0) {
    fprintf(stderr,
            "test_libvirt: BRUME_TEST_PVH_KERNEL does not name the stand-in kernel (run through "
            "ctest)\n");
    return 1;
  }
  brume_err *err = NULL;
  conn = brume_libvirt_connect(NULL, &err);
  if (!conn) {
    fprintf(stderr, "test_libvirt: skipped: %s\n", err->msg);
    brume_err_free(err);
    return 77;
  }
  snprintf(host_id, sizeof(host_id), "t%d", (int)getpid());
  name_prefix = brume_domain_name_prefix(PREFIX, host_id, NULL);
  dir = brume_test_tmpdir("libvirt");
  /* QEMU runs as libvirt-qemu: libvirt hands it the console and socket as descriptors and
   * relabels the image files, but the directory holding a disk image must be searchable. */
  chmod(dir, 0711);
  brume_libvirt_destroy_by_prefix(conn, name_prefix, NULL);

  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_connect_error),         cmocka_unit_test(test_lifecycle),
      cmocka_unit_test(test_destroy_by_prefix),     cmocka_unit_test(test_autodestroy),
      cmocka_unit_test(test_options_accepted),      cmocka_unit_test(test_probe_stand_in),
      cmocka_unit_test(test_libvirt_boot_failures), cmocka_unit_test(test_probe_real_guest),
  };
  int rc = cmocka_run_group_tests_name("worker_libvirt", tests, NULL, NULL);

  brume_libvirt_destroy_by_prefix(conn, name_prefix, NULL);
  virConnectClose(conn);
  /* libvirt keeps a QEMU log per domain name for ever; these names are not used again. */
  char *logs =
      brume_xasprintf("rm -f /var/log/libvirt/qemu/%s*.log /var/log/libvirt/qemu/%s-%sx-*.log",
                      name_prefix, PREFIX, host_id);
  if (system(logs) != 0) fprintf(stderr, "test_libvirt: could not remove %s\n", logs);
  free(logs);
  brume_test_rmtree(dir);
  free(dir);
  free(name_prefix);
  return rc;
}
