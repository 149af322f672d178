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

#define PREFIX "brumetest"
#define BOOT_MS 60000
#define CALL_MS 10000

static virConnectPtr conn;
static char host_id[32];
static char *name_prefix;
static char *dir; /* kernel, initrd, sockets, consoles, zips: searchable by libvirt-qemu */
static char kernel[512], initrd[512];
static const char *runtime_bin;

static void run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  int rc = system(cmd);
  if (rc != 0) fail_msg("command failed (%d): %s", rc, cmd);
}

static double now_ms_f(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static uint8_t *read_whole(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) fail_msg("open %s: %s", path, strerror(errno));
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *data = malloc((size_t)n + 1);
  assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return data;
}

/* The last line a command prints on stdout, or NULL when it fails. */
static char *last_line_of(const char *cmd) {
  FILE *p = popen(cmd, "r");
  if (p == NULL) return NULL;
  char line[1024], last[1024] = "";
  while (fgets(line, sizeof(line), p)) snprintf(last, sizeof(last), "%s", line);
  if (pclose(p) != 0 || last[0] == '\0') return NULL;
  last[strcspn(last, "\n")] = '\0';
  return brume_xstrdup(last);
}

static void print_console(const char *console) {
  FILE *f = fopen(console, "r");
  if (f == NULL) return;
  char line[1024];
  fprintf(stderr, "---- %s\n", console);
  while (fgets(line, sizeof(line), f)) fputs(line, stderr);
  fclose(f);
}

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
  double t0 = now_ms_f();
  v->dom = brume_libvirt_create(conn, xml, BRUME_LIBVIRT_AUTODESTROY, &err);
  if (v->dom == NULL) fail_msg("create %s: %s", id, err->msg);
  double t1 = now_ms_f();
  v->link = brume_guest_link_connect(v->sock, BOOT_MS, &err);
  if (v->link == NULL) {
    print_console(v->console);
    fail_msg("guest link %s: %s", id, err->msg);
  }
  double t2 = now_ms_f();
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
  in.code_zip.data = read_whole(zip, &in.code_zip.len);
  in.handler_mode = mode;
  in.handler = (char *)handler;
  in.function_name = "echo";
  in.function_version = "1";
  in.memory_mib = 128;
  in.function_arn = "arn:brume:lambda:local:acct1:function:echo";
  in.tmp_mib = 64;
  Brume__GuestInitDone *done = NULL;
  brume_err *err = NULL;
  double t0 = now_ms_f();
  int r = brume_guest_link_init(v->link, &in, &done, CALL_MS, &err);
  double t1 = now_ms_f();
  free(in.code_zip.data);
  if (r < 0) {
    print_console(v->console);
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
  inv.deadline_unix_ms = wall_ms() + 5000;
  Brume__GuestInvokeDone *d = NULL;
  brume_err *err = NULL;
  double t0 = now_ms_f();
  if (brume_guest_link_invoke(v->link, &inv, &d, CALL_MS, &err) < 0) {
    print_console(v->console);
    fail_msg("invoke %s: %s", id, err->msg);
  }
  double rtt = now_ms_f() - t0;
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
  double t0 = now_ms_f();
  if (brume_guest_link_shutdown(v->link, 500, &clean, CALL_MS, &err) < 0)
    fail_msg("shutdown %s: %s", v->id, err->msg);
  double t1 = now_ms_f();
  assert_true(clean);
  brume_guest_link_close(v->link);
  v->link = NULL;
  assert_true(qemu_process_exists(v->name));
  assert_int_equal(brume_libvirt_destroy(v->dom, &err), 0);
  double t2 = now_ms_f();
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
  run("mkdir -p %s/rt && cp %s %s/rt/bootstrap && chmod 755 %s/rt/bootstrap && cd %s/rt && "
      "zip -q -r %s .",
      dir, runtime_bin, dir, dir, dir, zip);

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
  qsort(rtt, 100, sizeof(rtt[0]), cmp_double);
  print_message("# rt: warm invoke round trip p50 %.2f ms, p99 %.2f ms, max %.2f ms (100, TCG)\n",
                rtt[49], rtt[98], rtt[99]);

  /* Freeze: libvirt says paused; thaw; the runtime's counter carries on. */
  brume_err *err = NULL;
  double t0 = now_ms_f();
  assert_int_equal(brume_libvirt_suspend(v.dom, &err), 0);
  double t1 = now_ms_f();
  int st = -1;
  assert_int_equal(brume_libvirt_state(v.dom, &st, NULL, &err), 0);
  assert_int_equal(st, VIR_DOMAIN_PAUSED);
  /* A frozen guest does not answer: the ping times out, the link stays usable. */
  assert_int_equal(brume_guest_link_ping(v.link, 200, &err), -1);
  assert_int_equal(err->code, BRUME_DEADLINE_EXCEEDED);
  brume_err_clear(&err);
  double t2 = now_ms_f();
  assert_int_equal(brume_libvirt_resume(v.dom, &err), 0);
  double t3 = now_ms_f();
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
  qsort(rtt, 10, sizeof(rtt[0]), cmp_double);
  print_message("# exec: invoke round trip (a process per event) p50 %.1f ms, max %.1f ms (10)\n",
                rtt[4], rtt[9]);
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
  double t0 = now_ms_f();
  snprintf(cmd, sizeof(cmd), "%s/build-kernel.sh", argv[1]);
  brume_autofree char *k = last_line_of(cmd);
  snprintf(cmd, sizeof(cmd), "%s/build-initramfs.sh %s", argv[1], argv[2]);
  brume_autofree char *i = k ? last_line_of(cmd) : NULL;
  if (k == NULL || i == NULL) {
    fprintf(stderr, "test_microvm: skipped: the guest image cannot be built (%s)\n",
            k ? "build-initramfs.sh failed" : "build-kernel.sh failed");
    virConnectClose(conn);
    return 77;
  }
  printf("# guest image ready in %.0f ms: %s, %s\n", now_ms_f() - t0, k, i);

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
