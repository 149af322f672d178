#include "domain.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "resources.h"
#include "strbuf.h"

#define NAME_MAX_LEN 200

/* Escaped for both text and single- or double-quoted attributes. */
static void sb_escaped(brume_strbuf *b, const char *s) {
  for (; *s; s++) {
    switch (*s) {
      case '&':
        brume_strbuf_puts(b, "&amp;");
        break;
      case '<':
        brume_strbuf_puts(b, "&lt;");
        break;
      case '>':
        brume_strbuf_puts(b, "&gt;");
        break;
      case '\'':
        brume_strbuf_puts(b, "&apos;");
        break;
      case '"':
        brume_strbuf_puts(b, "&quot;");
        break;
      default:
        brume_strbuf_append(b, s, 1);
    }
  }
}

/* <tag>escaped</tag> on a line of its own. */
static void sb_elem(brume_strbuf *b, const char *indent, const char *tag, const char *value) {
  brume_strbuf_printf(b, "%s<%s>", indent, tag);
  sb_escaped(b, value);
  brume_strbuf_printf(b, "</%s>\n", tag);
}

static int check_part(const char *what, const char *v, brume_err **err) {
  if (!v || !*v)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "domain name: %s is empty", what);
  for (const char *p = v; *p; p++) {
    char c = *p;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_' || c == '.'))
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           "domain name: %s '%s' has a character outside [A-Za-z0-9_.-]", what, v);
  }
  return 0;
}

char *brume_domain_name_prefix(const char *prefix, const char *host_id, brume_err **err) {
  if (check_part("the name prefix", prefix, err) < 0 || check_part("the host id", host_id, err) < 0)
    return NULL;
  char *p = brume_xasprintf("%s-%s-", prefix, host_id);
  if (strlen(p) >= NAME_MAX_LEN) {
    free(p);
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "domain name: prefix and host id are too long");
    return NULL;
  }
  return p;
}

char *brume_domain_name(const char *prefix, const char *host_id, const char *sandbox_id,
                        brume_err **err) {
  brume_autofree char *p = brume_domain_name_prefix(prefix, host_id, err);
  if (!p || check_part("the sandbox id", sandbox_id, err) < 0) return NULL;
  char *name = brume_xasprintf("%s%s", p, sandbox_id);
  if (strlen(name) > NAME_MAX_LEN) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "domain name '%.40s...' is over %d bytes", name,
                  NAME_MAX_LEN);
    free(name);
    return NULL;
  }
  return name;
}

static int check_path(const char *what, const char *path, bool required, brume_err **err) {
  if (!path || !*path) {
    if (!required) return 0;
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "domain: no %s path", what);
  }
  if (path[0] != '/')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "domain: %s path '%s' is not absolute", what,
                         path);
  return 0;
}

/* One device address: microvm has no PCI bus, only virtio-mmio. */
#define MMIO "<address type='virtio-mmio'/>"

char *brume_domain_xml(const brume_domain_spec *spec, brume_err **err) {
  const char *type = brume_accel_domain_type(spec->accel);
  if (!type) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "domain: accelerator %d is neither KVM nor TCG",
                  (int)spec->accel);
    return NULL;
  }
  if (brume_resources_check_memory(spec->memory_mib, err) < 0) return NULL;
  uint32_t milli =
      spec->vcpu_milli ? spec->vcpu_milli : brume_resources_vcpu_milli(spec->memory_mib);
  if (milli > BRUME_VCPU_MILLI_MAX) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "vCPU share %u/1000 is out of range: at most 6,000",
                  milli);
    return NULL;
  }
  if (check_path("kernel", spec->kernel, true, err) < 0 ||
      check_path("initrd", spec->initrd, false, err) < 0 ||
      check_path("control channel", spec->channel_path, true, err) < 0 ||
      check_path("console log", spec->console_log, true, err) < 0 ||
      check_path("scratch disk", spec->scratch_disk, false, err) < 0)
    return NULL;
  if (strlen(spec->channel_path) > BRUME_DOMAIN_SOCKET_PATH_MAX) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT,
                  "domain: control channel path is %zu bytes, over the %d a UNIX socket takes",
                  strlen(spec->channel_path), BRUME_DOMAIN_SOCKET_PATH_MAX);
    return NULL;
  }
  brume_autofree char *name =
      brume_domain_name(spec->name_prefix, spec->host_id, spec->sandbox_id, err);
  if (!name) return NULL;

  bool tcg = spec->accel == BRUME_ACCEL_TCG;
  uint32_t vcpus = brume_resources_vcpus(milli);
  brume_strbuf b = {0};

  brume_strbuf_printf(&b, "<domain type='%s'>\n", type);
  sb_elem(&b, "  ", "name", name);
  brume_strbuf_puts(
      &b, "  <metadata>\n    <brume:sandbox xmlns:brume='" BRUME_DOMAIN_METADATA_NS "' host='");
  sb_escaped(&b, spec->host_id);
  brume_strbuf_puts(&b, "' id='");
  sb_escaped(&b, spec->sandbox_id);
  brume_strbuf_puts(&b, "'/>\n  </metadata>\n");
  brume_strbuf_printf(&b, "  <memory unit='MiB'>%u</memory>\n", spec->memory_mib);
  /* Guest RAM from a memfd (shmem) rather than anonymous memory: QEMU asks for transparent huge
   * pages on anonymous guest RAM, and a guest that touches a byte of a 2 MiB range then costs
   * the host 2 MiB (36 of 128 MiB resident after a boot here, 25 MiB with 4 KiB pages). */
  brume_strbuf_puts(&b, "  <memoryBacking>\n    <source type='memfd'/>\n  </memoryBacking>\n");
  brume_strbuf_printf(&b, "  <vcpu placement='static'>%u</vcpu>\n", vcpus);
  if (!spec->no_cpu_quota)
    brume_strbuf_printf(
        &b,
        "  <cputune>\n    <period>%d</period>\n    <quota>%lld</quota>\n"
        "  </cputune>\n",
        BRUME_CPU_PERIOD_US,
        (long long)brume_resources_vcpu_quota_us(milli, vcpus, BRUME_CPU_PERIOD_US));

  brume_strbuf_puts(&b, "  <os>\n    <type arch='x86_64' machine='microvm'>hvm</type>\n");
  sb_elem(&b, "    ", "kernel", spec->kernel);
  if (spec->initrd && *spec->initrd) sb_elem(&b, "    ", "initrd", spec->initrd);
  brume_autofree char *tsc =
      spec->tsc_khz ? brume_xasprintf(" tsc_early_khz=%u", spec->tsc_khz) : brume_xstrdup("");
  bool extra = spec->cmdline_extra && *spec->cmdline_extra;
  /* nr_cpus: the kernel sizes its per-CPU areas for the vCPUs the domain has, not for the 6 it
   * was built for (memory, and boot time under TCG). no_timer_check: without ACPI the kernel
   * would test the PIT's IO-APIC routes, with a delay per try, to find what QEMU already wired.
   * noapictimer, under TCG for one vCPU: TCG has no TSC-deadline timer, so the kernel would
   * calibrate the local APIC timer against the PIT, 130 ms of every boot; the PIT (and the TSC
   * as the clock) does the one CPU's timer events instead. virtio_mmio.max_queue_size (our
   * kernel patch, worker-agent/guest/kernel/virtio-mmio-max-queue-size.patch): QEMU's
   * virtio-mmio offers every queue at 1,024 entries, and the guest's virtio-serial driver
   * fills each receive queue with a page per entry: 8 MiB of every sandbox for the control
   * channel alone. QEMU's own virtio-serial queues have 128 entries. */
  bool pit_timer = tcg && vcpus == 1;
  brume_autofree char *cmdline = brume_xasprintf(
      "console=ttyS0 quiet reboot=t panic=-1 no_timer_check%s nr_cpus=%u"
      " virtio_mmio.max_queue_size=%u%s%s%s",
      pit_timer ? " noapictimer" : "", vcpus, BRUME_DOMAIN_VIRTQUEUE_MAX, tsc, extra ? " " : "",
      extra ? spec->cmdline_extra : "");
  sb_elem(&b, "    ", "cmdline", cmdline);
  brume_strbuf_puts(&b, "  </os>\n");

  /* No <acpi/>: microvm runs with acpi=off, and QEMU then lists the virtio-mmio devices on the
   * kernel command line and the interrupt routing in an MP table. The guest kernel has no ACPI
   * (worker-agent/guest/kernel/brume-guest.config): ACPICA was 15 % of the code a boot
   * translates under TCG, and its namespace about 3 MiB of every guest. */
  brume_strbuf_puts(&b, "  <features>\n");
  if (tcg)
    brume_strbuf_printf(&b, "    <tcg>\n      <tb-cache unit='MiB'>%u</tb-cache>\n    </tcg>\n",
                        spec->tb_cache_mib ? spec->tb_cache_mib : BRUME_DOMAIN_TB_CACHE_MIB);
  brume_strbuf_puts(&b, "  </features>\n");
  if (!tcg)
    brume_strbuf_puts(&b, "  <cpu mode='host-passthrough' check='none' migratable='off'/>\n");
  brume_strbuf_puts(&b, "  <clock offset='utc'/>\n");
  brume_strbuf_puts(&b,
                    "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>destroy</on_reboot>\n"
                    "  <on_crash>destroy</on_crash>\n");

  brume_strbuf_puts(&b, "  <devices>\n");
  brume_strbuf_puts(&b, "    <controller type='usb' model='none'/>\n");
  /* ports='2': port 0 (reserved for a console) and the control channel on port 1. The default
   * of 31 ports gives the guest 64 queues to set up, 1.9 MiB of its memory. */
  brume_strbuf_puts(
      &b, "    <controller type='virtio-serial' index='0' ports='2'>" MMIO "</controller>\n");
  brume_strbuf_puts(&b, "    <serial type='file'>\n      <source path='");
  sb_escaped(&b, spec->console_log);
  brume_strbuf_puts(&b, "'/>\n      <target port='0'/>\n    </serial>\n");
  brume_strbuf_puts(&b, "    <channel type='unix'>\n      <source mode='bind' path='");
  sb_escaped(&b, spec->channel_path);
  brume_strbuf_puts(&b, "'/>\n      <target type='virtio' name='" BRUME_DOMAIN_CHANNEL_NAME
                        "'/>\n"
                        "      <address type='virtio-serial' controller='0' bus='0' port='1'/>\n"
                        "    </channel>\n");
  brume_strbuf_puts(
      &b,
      "    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n"
      "      " MMIO "\n    </rng>\n");
  if (spec->scratch_disk && *spec->scratch_disk) {
    brume_strbuf_puts(&b,
                      "    <disk type='file' device='disk'>\n"
                      "      <driver name='qemu' type='raw' cache='unsafe' discard='unmap'/>\n"
                      "      <source file='");
    sb_escaped(&b, spec->scratch_disk);
    brume_strbuf_puts(&b,
                      "'/>\n      <target dev='vda' bus='virtio'/>\n      " MMIO "\n    </disk>\n");
  }
  if (spec->network)
    brume_strbuf_puts(&b, "    <interface type='user'>\n      <model type='virtio'/>\n      " MMIO
                          "\n    </interface>\n");
  /* A balloon that is never inflated, for its free page reporting: the guest hands back the
   * pages it frees (in 2 MiB blocks), and QEMU returns them to the host. */
  brume_strbuf_puts(&b, "    <memballoon model='virtio' freePageReporting='on'>\n      " MMIO
                        "\n    </memballoon>\n");
  brume_strbuf_puts(&b, "  </devices>\n</domain>\n");
  return brume_strbuf_steal(&b);
}

static uint32_t read_u32_file(const char *path) {
  FILE *f = fopen(path, "re");
  if (!f) return 0;
  unsigned long v = 0;
  if (fscanf(f, "%lu", &v) != 1) v = 0;
  fclose(f);
  return v > UINT32_MAX ? 0 : (uint32_t)v;
}

uint32_t brume_domain_host_tsc_khz(void) {
  uint32_t khz = read_u32_file("/sys/devices/system/cpu/cpu0/tsc_freq_khz");
  if (khz) return khz;
  /* Without tsc_freq_khz, "cpu MHz" is the kernel's boot-time calibration on a host with a
   * constant, non-stop TSC and no cpufreq driver (which would make the figure follow scaling).
   * worker-agent/guest/tsc-khz.sh applies the same rule after trying the kernel log. */
  if (access("/sys/devices/system/cpu/cpu0/cpufreq", F_OK) == 0) return 0;
  FILE *f = fopen("/proc/cpuinfo", "re");
  if (!f) return 0;
  char line[4096];
  bool constant = false;
  double mhz = 0;
  while (fgets(line, sizeof(line), f)) {
    if (!mhz && strncmp(line, "cpu MHz", 7) == 0) {
      const char *colon = strchr(line, ':');
      if (colon) mhz = strtod(colon + 1, NULL);
    } else if (strncmp(line, "flags", 5) == 0) {
      constant = strstr(line, " constant_tsc") && strstr(line, " nonstop_tsc");
      break; /* the first CPU says enough */
    }
  }
  fclose(f);
  if (!constant || mhz <= 0 || mhz > 100000) return 0;
  return (uint32_t)(mhz * 1000 + 0.5);
}
