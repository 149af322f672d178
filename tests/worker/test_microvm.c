/* The real thing: a sandbox's microVM through libvirt, driven over the guest link.
 *
 *   test_worker_microvm GUEST_DIR BRUME_INIT ECHO_RUNTIME_STATIC
 *
 * GUEST_DIR is worker-agent/guest; its build-kernel.sh and build-initramfs.sh (around the static
 * BRUME_INIT) give the guest image (both cache; the first kernel build takes minutes). The image
 * is copied to a directory libvirt-qemu can search, a domain is built with brume_domain_xml (TCG,
 * 128 MiB, no CPU cap) and created with auto-destroy, and then:
 *   - RUNTIME_API: Init with a zip holding the static echo runtime; 100 invocations with distinct
 *     payloads; suspend (libvirt says paused), resume, one more invocation whose count shows the
 *     runtime's memory survived; Shutdown, destroy, and no QEMU left for the domain;
 *   - EXEC: a second VM whose handler is a #!/bin/sh script using busybox tr.
 * Timings are printed as "# " lines. Exit 77 (skip) when not root, libvirtd does not answer, or
 * the guest image cannot be built. Domains are named brumetest-m<pid>-... and swept by prefix. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "domain.h"
#include "guest_link.h"
#include "libvirt.h"
#include "log.h"
#include "proc.h"
#include "testutil.h"

#define PREFIX "brumetest"
#define BOOT_MS 60000
#define CALL_MS 10000

static virConnectPtr conn;
static char host_id[32];
static char *name_prefix;
static char *dir; /* kernel, initrd, sockets, consoles, zips: searchable by libvirt-qemu */
static char kernel[512], initrd[512];
static const char *runtime_bin;

/* Runs a shell command; the test fails unless it exits 0. */
#define run(...) assert_int_equal(brume_test_run(__VA_ARGS__), 0)

/* One sandbox VM. */
typedef struct vm {
  const char *id;
  char *name;
  char sock[256], console[256];
  virDomainPtr dom;
  brume_guest_link *link;
} vm;

static void vm_boot(vm *v, const char *id) {
  v->id = id;
  v->name = brume_domain_name(PREFIX, host_id, id, NULL);
  snprintf(v->sock, sizeof(v->sock), "%s/%s.sock", dir, id);
  snprintf(v->console, sizeof(v->console), "%s/%s.console", dir, id);
  brume_domain_spec spec = {
      .name_prefix = PREFIX,
      .host_id = host_id,
      .sandbox_id = id,
      .accel = BRUME_ACCEL_TCG,
      .kernel = kernel,
      .initrd = initrd,
      .tsc_khz = brume_domain_host_tsc_khz(),
      .memory_mib = 128,
      .no_cpu_quota = true,
      .channel_path = v->sock,
      .console_log = v->console,
  };
  brume_err *err = NULL;
  brume_autofree char *xml = brume_domain_xml(&spec, &err);
  if (xml == NULL) fail_msg("domain xml: %s", err->msg);
  double t0 = brume_test_mono_ms();
  v->dom = brume_libvirt_create(conn, xml, BRUME_LIBVIRT_AUTODESTROY, &err);
  if (v->dom == NULL) fail_msg("create %s: %s", id, err->msg);
  double t1 = brume_test_mono_ms();
  v->link = brume_guest_link_connect(v->sock, BOOT_MS, &err);
  if (v->link == NULL) {
    brume_test_dump_file(v->console);
    fail_msg("guest link %s: %s", id, err->msg);
  }
  double t2 = brume_test_mono_ms();
  const Brume__GuestReady *r = brume_guest_link_ready(v->link);
  assert_false(r->initialised);
  print_message(
      "# %s: create %.0f ms, create-to-Ready %.0f ms (guest uptime at Ready %.0f ms, "
      "guest memory %llu MiB)\n",
      id, t1 - t0, t2 - t0, (double)r->uptime_us / 1000.0,
      (unsigned long long)(r->mem_total_bytes >> 20));
}

static void vm_init(vm *v, const char *zip, Brume__HandlerMode mode, const char *handler) {
  Brume__GuestInit in = BRUME__GUEST_INIT__INIT;
  in.code_zip.data = brume_test_read_file(zip, &in.code_zip.len);
  assert_non_null(in.code_zip.data);
  in.handler_mode = mode;
  in.handler = (char *)handler;
  in.function_name = "echo";
  in.function_version = "1";
  in.memory_mib = 128;
  in.function_arn = "arn:brume:lambda:local:acct1:function:echo";
  in.tmp_mib = 64;
  Brume__GuestInitDone *done = NULL;
  brume_err *err = NULL;
  double t0 = brume_test_mono_ms();
  int r = brume_guest_link_init(v->link, &in, &done, CALL_MS, &err);
  double t1 = brume_test_mono_ms();
  free(in.code_zip.data);
  if (r < 0) {
    brume_test_dump_file(v->console);
    fail_msg("init %s: %s", v->id, err->msg);
  }
  if (done->error) fail_msg("InitDone: %s: %s", done->error->type, done->error->message);
  print_message(
      "# %s: Init %.1f ms (zip %zu bytes; unpack %.1f ms, runtime init %.1f ms in the "
      "guest)\n",
      v->id, t1 - t0, in.code_zip.len, (double)done->unpack_us / 1000.0,
      (double)done->runtime_init_us / 1000.0);
  brume__guest_init_done__free_unpacked(done, NULL);
}

/* Invokes and checks the answer; returns the round trip in ms. */
static double vm_invoke(vm *v, const char *id, const char *payload, const char *want) {
  Brume__GuestInvoke inv = BRUME__GUEST_INVOKE__INIT;
  inv.request_id = (char *)id;
  inv.payload.data = (uint8_t *)payload;
  inv.payload.len = strlen(payload);
  inv.deadline_unix_ms = brume_test_wall_ms() + 5000;
  Brume__GuestInvokeDone *d = NULL;
  brume_err *err = NULL;
  double t0 = brume_test_mono_ms();
  if (brume_guest_link_invoke(v->link, &inv, &d, CALL_MS, &err) < 0) {
    brume_test_dump_file(v->console);
    fail_msg("invoke %s: %s", id, err->msg);
  }
  double rtt = brume_test_mono_ms() - t0;
  if (d->error) fail_msg("function error %s: %s", d->error->type, d->error->message);
  if (d->payload.len != strlen(want) || memcmp(d->payload.data, want, d->payload.len) != 0)
    fail_msg("payload %.*s, want %s", (int)d->payload.len, (const char *)d->payload.data, want);
  brume__guest_invoke_done__free_unpacked(d, NULL);
  return rtt;
}

/* Whether any process's command line names the domain (QEMU's "-name guest=<name>,..."). */
static bool qemu_process_exists(const char *name) {
  char needle[300];
  snprintf(needle, sizeof(needle), "guest=%s,", name);
  DIR *d = opendir("/proc");
  struct dirent *e;
  bool found = false;
  while (d && !found && (e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char path[300], buf[8192];
    snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) continue;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
      if (buf[i] == '\0') buf[i] = ' ';
    buf[n] = '\0';
    found = strstr(buf, needle) != NULL;
  }
  if (d) closedir(d);
  return found;
}

/* Shutdown through the link, destroy, and check nothing of the domain remains. */
static void vm_end(vm *v) {
  brume_err *err = NULL;
  bool clean = false;
  double t0 = brume_test_mono_ms();
  if (brume_guest_link_shutdown(v->link, 500, &clean, CALL_MS, &err) < 0)
    fail_msg("shutdown %s: %s", v->id, err->msg);
  double t1 = brume_test_mono_ms();
  assert_true(clean);
  brume_guest_link_close(v->link);
  v->link = NULL;
  assert_true(qemu_process_exists(v->name));
  assert_int_equal(brume_libvirt_destroy(v->dom, &err), 0);
  double t2 = brume_test_mono_ms();
  virDomainFree(v->dom);
  v->dom = NULL;
  print_message("# %s: Shutdown %.1f ms, destroy %.0f ms\n", v->id, t1 - t0, t2 - t1);
  virDomainPtr gone = brume_libvirt_lookup(conn, v->name, &err);
  assert_null(gone);
  assert_int_equal(err->code, BRUME_NOT_FOUND);
  brume_err_clear(&err);
  long long end = brume_test_now_ms() + 5000;
  while (qemu_process_exists(v->name) && brume_test_now_ms() < end) usleep(20 * 1000);
  if (qemu_process_exists(v->name)) fail_msg("a QEMU process for %s is still there", v->name);
  free(v->name);
}

static void test_runtime_api_vm(void **state) {
  (void)state;
  char zip[512];
  snprintf(zip, sizeof(zip), "%s/runtime.zip", dir);
  assert_int_equal(brume_test_zip_bootstrap(dir, runtime_bin, zip), 0);

  vm v = {0};
  vm_boot(&v, "rt");
  vm_init(&v, zip, BRUME__HANDLER_MODE__HANDLER_MODE_RUNTIME_API, "echo.handler");

  double rtt[100];
  char id[32], payload[64], want[96];
  for (int i = 1; i <= 100; i++) {
    snprintf(id, sizeof(id), "req-%d", i);
    snprintf(payload, sizeof(payload), "microvm event %d %08x", i, (unsigned)i * 2654435761u);
    snprintf(want, sizeof(want), "%s #%d", payload, i);
    rtt[i - 1] = vm_invoke(&v, id, payload, want);
  }
  print_message("# rt: warm invoke round trip p50 %.2f ms, p99 %.2f ms, max %.2f ms (100, TCG)\n",
                brume_test_percentile(rtt, 100, 50), brume_test_percentile(rtt, 100, 99),
                brume_test_percentile(rtt, 100, 100));

  /* Freeze: libvirt says paused; thaw; the runtime's counter carries on. */
  brume_err *err = NULL;
  double t0 = brume_test_mono_ms();
  assert_int_equal(brume_libvirt_suspend(v.dom, &err), 0);
  double t1 = brume_test_mono_ms();
  int st = -1;
  assert_int_equal(brume_libvirt_state(v.dom, &st, NULL, &err), 0);
  assert_int_equal(st, VIR_DOMAIN_PAUSED);
  /* A frozen guest does not answer: the ping times out, the link stays usable. */
  assert_int_equal(brume_guest_link_ping(v.link, 200, &err), -1);
  assert_int_equal(err->code, BRUME_DEADLINE_EXCEEDED);
  brume_err_clear(&err);
  double t2 = brume_test_mono_ms();
  assert_int_equal(brume_libvirt_resume(v.dom, &err), 0);
  double t3 = brume_test_mono_ms();
  assert_int_equal(brume_libvirt_state(v.dom, &st, NULL, &err), 0);
  assert_int_equal(st, VIR_DOMAIN_RUNNING);
  double after = vm_invoke(&v, "req-thawed", "after the thaw", "after the thaw #101");
  print_message("# rt: suspend %.1f ms, resume %.1f ms, first invoke after resume %.2f ms\n",
                t1 - t0, t3 - t2, after);
  assert_false(brume_guest_link_runtime_exited(v.link, NULL));

  /* A worker that reconnects finds the sandbox initialised and the counter where it was. */
  brume_guest_link_close(v.link);
  v.link = brume_guest_link_connect(v.sock, CALL_MS, &err);
  if (v.link == NULL) fail_msg("reconnect: %s", err->msg);
  assert_true(brume_guest_link_ready(v.link)->initialised);
  vm_invoke(&v, "req-reconnected", "reconnected", "reconnected #102");

  vm_end(&v);
}

static void test_exec_vm(void **state) {
  (void)state;
  char zip[512];
  snprintf(zip, sizeof(zip), "%s/exec.zip", dir);
  run("mkdir -p %s/ex/bin", dir);
  char script[512];
  snprintf(script, sizeof(script), "%s/ex/bin/upper.sh", dir);
  FILE *f = fopen(script, "w");
  assert_non_null(f);
  fputs("#!/bin/sh\nprintf '%s' \"$(cat)\" | tr a-z A-Z\n", f);
  fclose(f);
  run("chmod 755 %s && cd %s/ex && zip -q -r %s .", script, dir, zip);
  vm v = {0};
  vm_boot(&v, "exec");
  vm_init(&v, zip, BRUME__HANDLER_MODE__HANDLER_MODE_EXEC, "bin/upper.sh");
  double rtt[10];
  char id[32], payload[64], want[64];
  for (int i = 0; i < 10; i++) {
    snprintf(id, sizeof(id), "ex-%d", i);
    snprintf(payload, sizeof(payload), "shell event %d", i);
    snprintf(want, sizeof(want), "SHELL EVENT %d", i);
    rtt[i] = vm_invoke(&v, id, payload, want);
  }
  print_message("# exec: invoke round trip (a process per event) p50 %.1f ms, max %.1f ms (10)\n",
                brume_test_percentile(rtt, 10, 50), brume_test_percentile(rtt, 10, 100));
  vm_end(&v);
}

int main(int argc, char **argv) {
  brume_log_init("test-microvm", BRUME_LOG_WARN);
  if (argc != 4) {
    fprintf(stderr, "usage: %s GUEST_DIR BRUME_INIT ECHO_RUNTIME_STATIC (run it through ctest)\n",
            argv[0]);
    return 1;
  }
  runtime_bin = argv[3];
  if (geteuid() != 0) {
    fprintf(stderr, "test_microvm: skipped: needs root for qemu:///system and the initramfs\n");
    return 77;
  }
  brume_err *err = NULL;
  conn = brume_libvirt_connect(NULL, &err);
  if (!conn) {
    fprintf(stderr, "test_microvm: skipped: %s\n", err->msg);
    brume_err_free(err);
    return 77;
  }
  char cmd[4096];
  double t0 = brume_test_mono_ms();
  brume_autofree char *k = NULL, *i = NULL;
  if (brume_test_guest_image(argv[1], argv[2], &k, &i) < 0) {
    fprintf(stderr, "test_microvm: skipped: the guest image cannot be built (%s)\n",
            k ? "build-initramfs.sh failed" : "build-kernel.sh failed");
    virConnectClose(conn);
    return 77;
  }
  printf("# guest image ready in %.0f ms: %s, %s\n", brume_test_mono_ms() - t0, k, i);

  snprintf(host_id, sizeof(host_id), "m%d", (int)getpid());
  name_prefix = brume_domain_name_prefix(PREFIX, host_id, NULL);
  /* QEMU runs as libvirt-qemu: the image must not stay under /root (mode 0700). */
  dir = brume_test_tmpdir("microvm");
  chmod(dir, 0755);
  snprintf(kernel, sizeof(kernel), "%s/vmlinux", dir);
  snprintf(initrd, sizeof(initrd), "%s/initramfs.cpio.gz", dir);
  snprintf(cmd, sizeof(cmd), "cp %s %s && cp %s %s && chmod 644 %s %s", k, kernel, i, initrd,
           kernel, initrd);
  if (system(cmd) != 0) {
    fprintf(stderr, "test_microvm: %s failed\n", cmd);
    return 1;
  }
  brume_libvirt_destroy_by_prefix(conn, name_prefix, NULL);

  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_runtime_api_vm),
      cmocka_unit_test(test_exec_vm),
  };
  int rc = cmocka_run_group_tests_name("worker_microvm", tests, NULL, NULL);

  brume_libvirt_destroy_by_prefix(conn, name_prefix, NULL);
  virConnectClose(conn);
  /* libvirt keeps a QEMU log per domain name for ever; these names are not used again. */
  snprintf(cmd, sizeof(cmd), "rm -f /var/log/libvirt/qemu/%s*.log", name_prefix);
  if (system(cmd) != 0) fprintf(stderr, "test_microvm: could not remove the QEMU logs\n");
  brume_test_rmtree(dir);
  free(dir);
  free(name_prefix);
  return rc;
}
