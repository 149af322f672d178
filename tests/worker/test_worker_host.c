/* brume-worker and its host's resources, end to end: the daemon as its own process, a real etcd,
 * real microVMs.
 *
 *   test_worker_host GUEST_DIR BRUME_INIT ECHO_RUNTIME_STATIC BRUME_WORKER
 *
 * - the idle freezer (freeze_after 2s): a sandbox stays running right after an invocation, is
 *   paused by libvirt once it has been idle for freeze_after (not before), keeps its memory (the
 *   runtime's counter goes on) and runs again for the next invocation;
 * - /tmp is the sandbox's scratch disk: a 128 MiB function writes 200 MiB there, df shows the
 *   512 MiB asked, and the image goes with the sandbox;
 * - free page reporting: 48 MiB written to and deleted from the guest's /dev/shm come back to
 *   the host (the QEMU process's resident guest memory drops) within seconds;
 * - vCPUs: a 2,048 MiB sandbox's guest runs 2 CPUs (the SMP kernel), a 128 MiB one's 1, and
 *   libvirt shows each one's CPU quota (set after CreateSandbox answered) as resources.h says;
 * - capacity: with all but 200 MiB of the host reserved, one 128 MiB sandbox fits, a second is
 *   refused with UNAVAILABLE InsufficientCapacityException, the registration's free_memory_mib
 *   and vcpu_milli_committed follow, and after a Destroy a sandbox fits again;
 * - a guest that does not answer in time is booted again once (brume_worker_boot_retries_total).
 * Exit 77 (skip) when not root, libvirtd does not answer, etcd is absent or the guest image
 * cannot be built. */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "etcd.h"
#include "libvirt.h"
#include "log.h"
#include "resources.h"
#include "testutil.h"
#include "worker_calls.h"
#include "worker_fixture.h"

static brume_test_worker *w;
static const brume_test_code *shell_code;

/* EXEC mode: "tmp" fills /tmp with 200 MiB and reports its size; "shm" writes 48 MiB to /dev/shm
 * (guest memory) and deletes them; "cpus" counts the CPUs the guest runs; anything else is
 * echoed. */
static const char handler_sh[] =
    "#!/bin/sh\n"
    "read -r cmd\n"
    "case \"$cmd\" in\n"
    "  tmp)\n"
    "    dd if=/dev/zero of=/tmp/big bs=1048576 count=200 2>/dev/null || exit 3\n"
    "    used=$(du -m /tmp/big | cut -f1)\n"
    "    size=$(df -m /tmp | tail -n 1 | awk '{print $2}')\n"
    "    rm /tmp/big\n"
    "    echo \"wrote=$used size=$size\" ;;\n"
    "  shm)\n"
    "    dd if=/dev/zero of=/dev/shm/x bs=1048576 count=48 2>/dev/null || exit 4\n"
    "    rm /dev/shm/x\n"
    "    echo shm-done ;;\n"
    "  cpus) grep -c ^processor /proc/cpuinfo ;;\n"
    "  *) echo \"echo $cmd\" ;;\n"
    "esac\n";

/* The worker's tcg_cpu_scale here: not its default, so that test_vcpus shows the flag works. */
#define TCG_CPU_SCALE "3"

static void run_worker(const char *freeze_after, const char *reserved) {
  if (w->pid > 0) brume_test_worker_stop(w, SIGTERM, 30000);
  const char *flags[] = {"--pool-size",
                         "0",
                         "--freeze-after",
                         freeze_after,
                         "--reserved-memory",
                         reserved,
                         "--tcg-cpu-scale",
                         TCG_CPU_SCALE,
                         NULL};
  brume_test_worker_run(w, flags);
}

/* CreateSandbox of the shell function (EXEC) named name, of memory_mib (0: 128); fills id. */
static void create_shell(const char *name, uint32_t memory_mib, char *id, size_t idsize) {
  brume_test_fn fn = {.function_name = name,
                      .code = shell_code,
                      .memory_mib = memory_mib,
                      .mode = BRUME__HANDLER_MODE__HANDLER_MODE_EXEC,
                      .handler = "handler.sh",
                      .timeout_ms = 120000};
  brume_err *err = NULL;
  if (brume_test_worker_create(w, &fn, id, idsize, NULL, NULL, &err) != 0)
    fail_msg("CreateSandbox of %s (%u MiB): %s", name, memory_mib, err->msg);
}

static void test_idle_freezer(void **state) {
  (void)state;
  run_worker("2s", "1GiB");
  brume_test_fn fn = {.function_name = "freezer"};
  char id[80];
  brume_err *err = NULL;
  if (brume_test_worker_create(w, &fn, id, sizeof(id), NULL, NULL, &err) != 0)
    fail_msg("CreateSandbox: %s", err->msg);
  brume_test_worker_expect_reply(w, id, "f-1", "first", "first #1");
  double idle_from = brume_test_mono_ms();
  /* Right after the answer: still running (freeze_at_once would have paused it). */
  assert_int_equal(brume_test_worker_domain_state(w, id), VIR_DOMAIN_RUNNING);
  int st = VIR_DOMAIN_RUNNING;
  while ((st = brume_test_worker_domain_state(w, id)) == VIR_DOMAIN_RUNNING &&
         brume_test_mono_ms() - idle_from < 10000)
    usleep(20 * 1000);
  double frozen_after = brume_test_mono_ms() - idle_from;
  print_message("# idle sandbox paused after %.0f ms (freeze_after 2 s, tick 500 ms)\n",
                frozen_after);
  assert_int_equal(st, VIR_DOMAIN_PAUSED);
  assert_true(frozen_after >= 1900);
  assert_true(brume_test_worker_metric(w, "brume_worker_idle_freezes_total") >= 1);
  /* The next invocation thaws it; the runtime's memory is intact. */
  brume_test_worker_expect_reply(w, id, "f-2", "second", "second #2");
  assert_int_equal(brume_test_worker_domain_state(w, id), VIR_DOMAIN_RUNNING);
  brume_test_worker_destroy(w, id);
}

/* The files of w's run directory whose names end with suffix. */
static int run_dir_files(const char *suffix) {
  char dir[600];
  snprintf(dir, sizeof(dir), "%s/run", w->dir);
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  int n = 0;
  struct dirent *e;
  size_t sl = strlen(suffix);
  while ((e = readdir(d)) != NULL) {
    size_t l = strlen(e->d_name);
    if (l > sl && strcmp(e->d_name + l - sl, suffix) == 0) n++;
  }
  closedir(d);
  return n;
}

static void test_tmp_on_disk(void **state) {
  (void)state;
  char id[80];
  brume_err *err = NULL;
  create_shell("tmpwriter", 0, id, sizeof(id));
  assert_int_equal(run_dir_files(".tmp.img"), 1);
  Brume__WorkerInvokeResponse *r = NULL;
  double t0 = brume_test_mono_ms();
  if (brume_test_worker_invoke(w, id, "tmp-1", "tmp\n", 4, &r, &err) < 0)
    fail_msg("Invoke: %s", err->msg);
  if (r->function_error)
    fail_msg("function error %s: %s", r->function_error->type, r->function_error->message);
  char out[128];
  snprintf(out, sizeof(out), "%.*s", (int)r->payload.len, (const char *)r->payload.data);
  print_message("# 200 MiB into /tmp of a 128 MiB sandbox: %s in %.0f ms\n", out,
                brume_test_mono_ms() - t0);
  int wrote = 0, size = 0;
  assert_int_equal(sscanf(out, "wrote=%d size=%d", &wrote, &size), 2);
  assert_true(wrote >= 200 && wrote <= 202); /* du counts ext2's indirect blocks too */
  /* ext2 keeps a few MiB for its own tables. */
  assert_true(size >= 490 && size <= 512);
  brume__worker_invoke_response__free_unpacked(r, NULL);
  brume_test_worker_destroy(w, id);
  assert_int_equal(run_dir_files(".tmp.img"), 0);
}

/* The QEMU process's resident shared memory (the guest's RAM: a memfd), in KiB. */
static long long guest_ram_kib(const char *id) {
  brume_autofree char *name = brume_test_worker_domain_name(w, id);
  pid_t pid = brume_test_qemu_pid(name);
  if (pid <= 0) return -1;
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  long long kib = -1;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, "RssShmem:", 9) == 0) kib = atoll(line + 9);
  fclose(f);
  return kib;
}

static void test_memory_returned(void **state) {
  (void)state;
  run_worker("1h", "1GiB"); /* a frozen guest cannot report its free pages */
  char id[80];
  create_shell("shm", 0, id, sizeof(id));
  long long before = guest_ram_kib(id);
  brume_test_worker_expect_reply(w, id, "shm-1", "shm\n", "shm-done\n");
  long long peak = guest_ram_kib(id);
  long long now = peak;
  double t0 = brume_test_mono_ms();
  while ((now = guest_ram_kib(id)) > peak - 32 * 1024 && brume_test_mono_ms() - t0 < 20000)
    usleep(100 * 1000);
  print_message(
      "# guest RAM resident: %.1f MiB before, %.1f MiB after 48 MiB in /dev/shm, "
      "%.1f MiB %.1f s after deleting them (free page reporting)\n",
      before / 1024.0, peak / 1024.0, now / 1024.0, (brume_test_mono_ms() - t0) / 1000.0);
  assert_true(now <= peak - 32 * 1024);
  brume_test_worker_destroy(w, id);
}

/* A sandbox of 2,048 MiB has two vCPUs (ceil(1.158)) and its guest runs both: the worker boots
 * the SMP kernel for it; one of 128 MiB boots the uniprocessor kernel and has one. */
/* The domain's live vCPU quota (us per period), or -1. */
static long long vcpu_quota(const char *id) {
  brume_autofree char *name = brume_test_worker_domain_name(w, id);
  virDomainPtr d = virDomainLookupByName(w->conn, name);
  if (d == NULL) return -1;
  int nparams = 0;
  char *type = virDomainGetSchedulerType(d, &nparams);
  free(type);
  virTypedParameterPtr params = calloc((size_t)(nparams > 0 ? nparams : 1), sizeof(*params));
  long long quota = -1;
  if (virDomainGetSchedulerParametersFlags(d, params, &nparams, VIR_DOMAIN_AFFECT_LIVE) < 0 ||
      virTypedParamsGetLLong(params, nparams, VIR_DOMAIN_SCHEDULER_VCPU_QUOTA, &quota) != 1)
    quota = -1;
  virTypedParamsClear(params, nparams);
  free(params);
  virDomainFree(d);
  return quota;
}

/* What the worker's microVMs run on, as its Stats reports it. */
static Brume__Accelerator accelerator(void) {
  Brume__WorkerStatsRequest req = BRUME__WORKER_STATS_REQUEST__INIT;
  Brume__WorkerStatsResponse *resp = NULL;
  brume_err *err = NULL;
  if (brume_test_worker_call(w, BRUME_TEST_W_STATS, &req, &resp, &err) != 0)
    fail_msg("Stats: %s", err->msg);
  Brume__Accelerator a = resp->host->accelerator;
  protobuf_c_message_free_unpacked(&resp->base, NULL);
  return a;
}

static void test_vcpus(void **state) {
  (void)state;
  const uint32_t sizes[] = {128, 2048};
  const char *want[] = {"1\n", "2\n"};
  for (size_t i = 0; i < 2; i++) {
    char id[80];
    create_shell("cpus", sizes[i], id, sizeof(id));
    /* The cap follows the answer to CreateSandbox within milliseconds: the share, times
     * tcg_cpu_scale under TCG, at most a whole CPU per vCPU. */
    uint32_t milli = brume_resources_vcpu_milli(sizes[i]);
    uint32_t scale = accelerator() == BRUME__ACCELERATOR__ACCELERATOR_TCG ? atoi(TCG_CPU_SCALE) : 1;
    long long want_quota =
        brume_resources_vcpu_quota_us(brume_resources_host_vcpu_milli(milli, scale),
                                      brume_resources_vcpus(milli), BRUME_CPU_PERIOD_US);
    double t0 = brume_test_mono_ms();
    long long quota;
    while ((quota = vcpu_quota(id)) != want_quota && brume_test_mono_ms() - t0 < 5000)
      usleep(20 * 1000);
    assert_int_equal(quota, want_quota);
    brume_test_worker_expect_reply(w, id, "cpus-1", "cpus\n", want[i]);
    brume_test_worker_destroy(w, id);
  }
}

/* A whole-number field of the worker's registration in etcd, or -1. */
static long long registered(const char *field) {
  brume_err *err = NULL;
  brume_etcd *e = brume_etcd_new(w->etcd->endpoint, NULL, &err);
  if (e == NULL) fail_msg("etcd: %s", err->msg);
  char key[256], name[96];
  snprintf(key, sizeof(key), "/brume/svc/worker/%s", w->host_id);
  snprintf(name, sizeof(name), "\"%s\":", field);
  brume_etcd_kv *kv = NULL;
  if (brume_etcd_get(e, key, &kv, NULL, &err) < 0) fail_msg("etcd get: %s", err->msg);
  long long v = -1;
  const char *p = kv ? strstr(kv->value, name) : NULL;
  if (p) v = atoll(p + strlen(name));
  brume_etcd_kv_free(kv);
  brume_etcd_free(e);
  return v;
}

/* Waits up to 5 s for the registration to say field == want. */
static void expect_registered(const char *field, long long want) {
  double t0 = brume_test_mono_ms();
  long long v;
  while ((v = registered(field)) != want && brume_test_mono_ms() - t0 < 5000) usleep(100 * 1000);
  if (v != want) fail_msg("%s in etcd is %lld, want %lld", field, v, want);
}

static void test_capacity(void **state) {
  (void)state;
  struct sysinfo si;
  assert_int_equal(sysinfo(&si), 0);
  long long total = (long long)(((uint64_t)si.totalram * si.mem_unit) >> 20);
  char reserved[64];
  snprintf(reserved, sizeof(reserved), "%lldMiB", total - 200);
  run_worker("0", reserved);
  expect_registered("free_memory_mib", 200);
  expect_registered("vcpu_milli_committed", 0);
  brume_test_fn fn = {.function_name = "capacity"};
  char a[80], b[80];
  brume_err *err = NULL;
  if (brume_test_worker_create(w, &fn, a, sizeof(a), NULL, NULL, &err) != 0)
    fail_msg("CreateSandbox: %s", err->msg);
  expect_registered("free_memory_mib", 72);
  expect_registered("vcpu_milli_committed", brume_resources_vcpu_milli(128));
  int rc = brume_test_worker_create(w, &fn, b, sizeof(b), NULL, NULL, &err);
  brume_test_expect_code(rc, err, BRUME_UNAVAILABLE, "CreateSandbox on a full host");
  assert_non_null(strstr(err->msg, "InsufficientCapacityException: this host has 72 MiB free"));
  print_message("# %s\n", err->msg);
  brume_err_clear(&err);
  assert_int_equal(brume_test_worker_domains(w), 1); /* nothing was started for it */
  brume_test_worker_destroy(w, a);
  expect_registered("free_memory_mib", 200);
  expect_registered("vcpu_milli_committed", 0);
  if (brume_test_worker_create(w, &fn, b, sizeof(b), NULL, NULL, &err) != 0)
    fail_msg("CreateSandbox after a Destroy: %s", err->msg);
  brume_test_worker_expect_reply(w, b, "c-1", "fits again", "fits again #1");
  brume_test_worker_destroy(w, b);
}

/* A guest that has not answered within a quarter of boot_timeout is destroyed and booted again,
 * once. With boot_timeout 100ms no guest can answer (25 ms, then 75 ms: a boot takes over 300 ms
 * to its agent under TCG), so CreateSandbox fails with DEADLINE_EXCEEDED after both VMs, the
 * retry is counted, and neither VM is left. */
static void test_boot_retry(void **state) {
  (void)state;
  if (w->pid > 0) brume_test_worker_stop(w, SIGTERM, 30000);
  const char *flags[] = {"--pool-size", "0", "--boot-timeout", "100ms", NULL};
  brume_test_worker_run(w, flags);
  brume_test_fn fn = {.function_name = "no-answer"};
  char id[80];
  brume_err *err = NULL;
  int rc = brume_test_worker_create(w, &fn, id, sizeof(id), NULL, NULL, &err);
  brume_test_expect_code(rc, err, BRUME_DEADLINE_EXCEEDED, "CreateSandbox, boot_timeout 100ms");
  assert_non_null(strstr(err->msg, "did not boot to its agent"));
  brume_err_clear(&err);
  assert_int_equal(brume_test_worker_metric(w, "brume_worker_boot_retries_total"), 1);
  assert_int_equal(brume_test_worker_domains(w), 0);
  assert_int_equal(brume_test_qemu_count(w->name_prefix), 0);
}

int main(int argc, char **argv) {
  brume_log_init("test-worker-host", BRUME_LOG_WARN);
  int code = 0;
  w = brume_test_worker_prepare(argc, argv, "worker-host", "wh", &code);
  if (w == NULL) return code;
  const brume_test_file shell_files[] = {{"handler.sh", handler_sh, 0755}};
  shell_code = brume_test_worker_add_code(w, "shell", shell_files, 1);
  if (shell_code == NULL) {
    brume_test_worker_free(w);
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_idle_freezer),    cmocka_unit_test(test_tmp_on_disk),
      cmocka_unit_test(test_memory_returned), cmocka_unit_test(test_vcpus),
      cmocka_unit_test(test_capacity),        cmocka_unit_test(test_boot_retry),
  };
  int rc = cmocka_run_group_tests_name("worker_host", tests, NULL, NULL);
  if (rc != 0) brume_test_worker_dump_log(w);
  brume_test_worker_free(w);
  return rc;
}
