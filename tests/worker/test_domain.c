/* Unit tests for worker-agent/domain: the names, the domain XML a spec gives (checked element
 * by element, and against libvirt's own RelaxNG schema with virt-xml-validate when that tool is
 * installed), escaping, and the refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "domain.h"
#include "proc.h"

static brume_domain_spec base_spec(void) {
  return (brume_domain_spec){
      .name_prefix = "brume",
      .host_id = "h1",
      .sandbox_id = "sb-1",
      .accel = BRUME_ACCEL_TCG,
      .kernel = "/var/cache/brume/vmlinux",
      .initrd = "/var/cache/brume/initramfs.cpio.gz",
      .tsc_khz = 2596122,
      .memory_mib = 128,
      .channel_path = "/run/brume/sb-1/control.sock",
      .console_log = "/run/brume/sb-1/console.log",
  };
}

#define assert_contains(hay, needle)                                               \
  do {                                                                             \
    if (!strstr((hay), (needle))) fail_msg("missing %s in:\n%s", (needle), (hay)); \
  } while (0)
#define assert_lacks(hay, needle)                                                    \
  do {                                                                               \
    if (strstr((hay), (needle))) fail_msg("unexpected %s in:\n%s", (needle), (hay)); \
  } while (0)

/* Whether virt-xml-validate accepts xml as a domain; -1 when the tool is not installed. */
static int validate(const char *xml) {
  if (system("command -v virt-xml-validate >/dev/null 2>&1") != 0) return -1;
  char *dir = brume_test_tmpdir("domain");
  char *path = brume_xasprintf("%s/d.xml", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(xml, f);
  fclose(f);
  char *cmd = brume_xasprintf("virt-xml-validate %s domain >%s/out 2>&1", path, dir);
  int st = system(cmd);
  if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
    char *show = brume_xasprintf("cat %s/out >&2", dir);
    if (system(show) != 0) {
    }
    free(show);
  }
  brume_test_rmtree(dir);
  free(cmd);
  free(path);
  free(dir);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void test_names(void **state) {
  (void)state;
  brume_err *err = NULL;
  char *n = brume_domain_name("brume", "h1", "sb-1", &err);
  assert_string_equal(n, "brume-h1-sb-1");
  free(n);
  n = brume_domain_name_prefix("brume", "worker-a.local", &err);
  assert_string_equal(n, "brume-worker-a.local-");
  free(n);
  assert_null(err);
  assert_null(brume_domain_name("brume", "h1", "", &err));
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  assert_string_equal(err->msg, "domain name: the sandbox id is empty");
  brume_err_clear(&err);
  assert_null(brume_domain_name("brume", "h/1", "sb", &err));
  assert_string_equal(err->msg,
                      "domain name: the host id 'h/1' has a character outside [A-Za-z0-9_.-]");
  brume_err_clear(&err);
  assert_null(brume_domain_name(NULL, "h1", "sb", NULL));
  assert_null(brume_domain_name("brume", "h1", "sb'<", NULL));
  char long_id[300];
  memset(long_id, 'a', sizeof(long_id) - 1);
  long_id[sizeof(long_id) - 1] = '\0';
  assert_null(brume_domain_name("brume", "h1", long_id, &err));
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  brume_err_clear(&err);
}

static void test_tcg_xml(void **state) {
  (void)state;
  brume_domain_spec s = base_spec();
  brume_err *err = NULL;
  char *x = brume_domain_xml(&s, &err);
  assert_null(err);
  assert_non_null(x);
  assert_contains(x, "<domain type='qemu'>\n");
  assert_contains(x, "  <name>brume-h1-sb-1</name>\n");
  assert_contains(
      x, "<brume:sandbox xmlns:brume='" BRUME_DOMAIN_METADATA_NS "' host='h1' id='sb-1'/>");
  assert_contains(x, "<memory unit='MiB'>128</memory>");
  assert_contains(x, "<vcpu placement='static'>1</vcpu>");
  /* 128 MiB: 72 thousandths of a vCPU, 7.2 ms of every 100 ms. */
  assert_contains(x,
                  "<cputune>\n    <period>100000</period>\n    <quota>7200</quota>\n  </cputune>");
  /* Guest RAM from a memfd: no transparent huge pages. */
  assert_contains(x, "<memoryBacking>\n    <source type='memfd'/>\n  </memoryBacking>");
  assert_contains(x, "<type arch='x86_64' machine='microvm'>hvm</type>");
  assert_contains(x, "<kernel>/var/cache/brume/vmlinux</kernel>");
  assert_contains(x, "<initrd>/var/cache/brume/initramfs.cpio.gz</initrd>");
  assert_contains(
      x,
      "<cmdline>console=ttyS0 quiet reboot=t panic=-1 no_timer_check noapictimer nr_cpus=1 "
      "virtio_mmio.max_queue_size=128 tsc_early_khz=2596122</cmdline>");
  assert_contains(x,
                  "<features>\n    <tcg>\n      <tb-cache unit='MiB'>16</tb-cache>\n  "
                  "  </tcg>\n  </features>");
  assert_lacks(x, "<acpi");
  assert_lacks(x, "<cpu ");
  assert_contains(x, "<on_poweroff>destroy</on_poweroff>");
  assert_contains(x, "<on_reboot>destroy</on_reboot>");
  assert_contains(x, "<on_crash>destroy</on_crash>");
  assert_contains(x, "<controller type='usb' model='none'/>");
  assert_contains(x,
                  "<controller type='virtio-serial' index='0' ports='2'><address "
                  "type='virtio-mmio'/></controller>");
  assert_contains(x, "<serial type='file'>\n      <source path='/run/brume/sb-1/console.log'/>");
  assert_contains(
      x,
      "<channel type='unix'>\n      <source mode='bind' path='/run/brume/sb-1/control.sock'/>\n"
      "      <target type='virtio' name='brume.control'/>");
  assert_contains(x, "<rng model='virtio'>");
  /* The balloon is there for free page reporting only. */
  assert_contains(x,
                  "<memballoon model='virtio' freePageReporting='on'>\n"
                  "      <address type='virtio-mmio'/>\n    </memballoon>");
  /* Nothing that needs PCI, and no network or disk unless asked. */
  assert_lacks(x, "pci");
  assert_lacks(x, "<interface");
  assert_lacks(x, "<disk");
  /* Every device that has an address is on virtio-mmio. */
  for (const char *p = x; (p = strstr(p, "<address ")); p++)
    if (strncmp(p, "<address type='virtio-mmio'/>", 29) != 0 &&
        strncmp(p, "<address type='virtio-serial'", 29) != 0)
      fail_msg("an address that is not virtio-mmio: %.60s", p);
  int v = validate(x);
  if (v >= 0) assert_int_equal(v, 1);
  free(x);

  /* Under TCG with more than one vCPU each CPU keeps its local APIC timer: the PIT is one. */
  s.memory_mib = 4096;
  x = brume_domain_xml(&s, NULL);
  assert_non_null(x);
  assert_contains(x, "panic=-1 no_timer_check nr_cpus=3 virtio_mmio.max_queue_size=128");
  assert_lacks(x, "noapictimer");
  free(x);
}

static void test_kvm_and_options(void **state) {
  (void)state;
  brume_domain_spec s = base_spec();
  s.accel = BRUME_ACCEL_KVM;
  s.memory_mib = 4096;
  s.tsc_khz = 0;
  s.initrd = NULL;
  s.cmdline_extra = "brume.pool=1";
  s.network = true;
  s.scratch_disk = "/var/lib/brume/sb-1/tmp.img";
  char *x = brume_domain_xml(&s, NULL);
  assert_non_null(x);
  assert_contains(x, "<domain type='kvm'>");
  /* libvirt refuses TCG features in a KVM domain. */
  assert_lacks(x, "<tcg>");
  assert_contains(x, "<cpu mode='host-passthrough' check='none' migratable='off'/>");
  assert_lacks(x, "<initrd>");
  /* The local APIC timer stays under KVM (TSC deadline there: no calibration to skip). */
  assert_contains(x,
                  "<cmdline>console=ttyS0 quiet reboot=t panic=-1 no_timer_check nr_cpus=3 "
                  "virtio_mmio.max_queue_size=128 brume.pool=1</cmdline>");
  /* 4,096 MiB: 2.315 vCPUs as three vCPUs of 0.772 each. */
  assert_contains(x, "<vcpu placement='static'>3</vcpu>");
  assert_contains(x, "<quota>77167</quota>");
  assert_contains(
      x,
      "<interface type='user'>\n      <model type='virtio'/>\n      <address type='virtio-mmio'/>");
  assert_contains(
      x, "<source file='/var/lib/brume/sb-1/tmp.img'/>\n      <target dev='vda' bus='virtio'/>");
  int v = validate(x);
  if (v >= 0) assert_int_equal(v, 1);
  free(x);

  /* A pool VM boots without the cap; an explicit share overrides the one from memory. */
  s = base_spec();
  s.no_cpu_quota = true;
  x = brume_domain_xml(&s, NULL);
  assert_lacks(x, "<cputune>");
  free(x);
  s.no_cpu_quota = false;
  s.vcpu_milli = 1500;
  s.tb_cache_mib = 32;
  x = brume_domain_xml(&s, NULL);
  assert_contains(x, "<vcpu placement='static'>2</vcpu>");
  assert_contains(x, "<quota>75000</quota>");
  assert_contains(x, "<tb-cache unit='MiB'>32</tb-cache>");
  free(x);
}

static void test_escaping(void **state) {
  (void)state;
  brume_domain_spec s = base_spec();
  s.kernel = "/k&<x>'\"/vmlinux";
  s.console_log = "/run/a'b/console.log";
  s.cmdline_extra = "a=\"b c\" d<e";
  char *x = brume_domain_xml(&s, NULL);
  assert_non_null(x);
  assert_contains(x, "<kernel>/k&amp;&lt;x&gt;&apos;&quot;/vmlinux</kernel>");
  assert_contains(x, "<source path='/run/a&apos;b/console.log'/>");
  assert_contains(x,
                  "panic=-1 no_timer_check noapictimer nr_cpus=1 virtio_mmio.max_queue_size=128 "
                  "tsc_early_khz=2596122 a=&quot;b "
                  "c&quot; d&lt;e</cmdline>");
  int v = validate(x);
  if (v >= 0) assert_int_equal(v, 1);
  free(x);
}

static void expect_refused(brume_domain_spec s, const char *msg) {
  brume_err *err = NULL;
  char *x = brume_domain_xml(&s, &err);
  if (x) fail_msg("accepted a spec that should fail with: %s", msg);
  assert_non_null(err);
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  assert_string_equal(err->msg, msg);
  brume_err_free(err);
}

static void test_refusals(void **state) {
  (void)state;
  brume_domain_spec s = base_spec();
  s.memory_mib = 64;
  expect_refused(s, "memory 64 MiB is out of range: 128-10,240 MiB");
  s.memory_mib = 20000;
  expect_refused(s, "memory 20000 MiB is out of range: 128-10,240 MiB");
  s = base_spec();
  s.vcpu_milli = 6001;
  expect_refused(s, "vCPU share 6001/1000 is out of range: at most 6,000");
  s = base_spec();
  s.accel = BRUME_ACCEL_UNSPECIFIED;
  expect_refused(s, "domain: accelerator 0 is neither KVM nor TCG");
  s = base_spec();
  s.kernel = NULL;
  expect_refused(s, "domain: no kernel path");
  s = base_spec();
  s.kernel = "vmlinux";
  expect_refused(s, "domain: kernel path 'vmlinux' is not absolute");
  s = base_spec();
  s.channel_path = "";
  expect_refused(s, "domain: no control channel path");
  s = base_spec();
  s.console_log = NULL;
  expect_refused(s, "domain: no console log path");
  s = base_spec();
  s.scratch_disk = "tmp.img";
  expect_refused(s, "domain: scratch disk path 'tmp.img' is not absolute");
  s = base_spec();
  char sock[200] = "/";
  memset(sock + 1, 's', 107);
  s.channel_path = sock;
  expect_refused(s, "domain: control channel path is 108 bytes, over the 107 a UNIX socket takes");
  s = base_spec();
  s.sandbox_id = "a b";
  expect_refused(s, "domain name: the sandbox id 'a b' has a character outside [A-Za-z0-9_.-]");
}

static void test_tsc(void **state) {
  (void)state;
  uint32_t khz = brume_domain_host_tsc_khz();
  /* Not every machine reports it; when it does, it is a plausible x86 frequency. */
  if (khz) {
    assert_true(khz > 100000);
    assert_true(khz < 10000000);
  }
  print_message("host TSC: %u kHz\n", khz);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),           cmocka_unit_test(test_tcg_xml),
      cmocka_unit_test(test_kvm_and_options), cmocka_unit_test(test_escaping),
      cmocka_unit_test(test_refusals),        cmocka_unit_test(test_tsc),
  };
  return cmocka_run_group_tests_name("worker_domain", tests, NULL, NULL);
}
