/* The libvirt domain XML of a sandbox's microVM: a pure function of a spec (docs/worker.md,
 * "The domain XML", says why each setting is there).
 *
 * The domain is transient (created with virDomainCreateXML, never defined), runs QEMU's
 * `microvm` machine (libvirt picks it from machine='microvm' plus no PCI: a USB controller of
 * model none and every device at a virtio-mmio address), boots the guest kernel and initramfs
 * directly, and has:
 *   - memory as asked (128-10,240 MiB) and ceil(share) vCPUs, each capped by <cputune> at an
 *     equal part of the share (resources.h), unless the spec turns the cap off;
 *   - one virtio-serial channel "brume.control", a UNIX socket that QEMU listens on and the
 *     worker connects to;
 *   - the serial console (ttyS0) written to a file the worker can read after a failed boot;
 *   - a virtio RNG fed from the host's /dev/urandom, so guest runtimes never wait for entropy;
 *   - no network device unless the spec asks for one (user-mode networking, no host set-up),
 *     no balloon, no USB, no PCI;
 *   - optionally a raw scratch disk for the function's /tmp (/dev/vda in the guest);
 *   - guest RAM backed by a memfd, so that it is resident 4 KiB page by 4 KiB page (QEMU asks
 *     for transparent huge pages on anonymous RAM);
 *   - under TCG, a small translation cache (QEMU's default is far larger: RSS) and the host's
 *     TSC frequency on the kernel command line (without it microvm hangs at boot in 25-40 % of
 *     runs here);
 *   - poweroff, reboot and crash all end the domain (a guest panic reboots: panic=-1).
 *
 * Names: "<prefix>-<host>-<sandbox>", e.g. "brume-h1-sb-1"; the worker's restart cleanup
 * destroys every domain whose name starts with brume_domain_name_prefix(prefix, host). Each part
 * is [A-Za-z0-9_.] and '-' only. Two workers on one libvirtd must not have host ids where one is
 * the other plus "-..." ("h1" and "h1-b"), or the first one's cleanup would match the second's
 * domains; the domain's <metadata> also carries the host and sandbox ids exactly. */
#ifndef BRUME_WORKER_DOMAIN_H
#define BRUME_WORKER_DOMAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "accel.h"
#include "err.h"

/* The XML namespace of the <metadata> element Brume adds to its domains. */
#define BRUME_DOMAIN_METADATA_NS "https://brume.dev/xmlns/libvirt/sandbox/1"

/* The guest-side name of the control channel (guest.proto). */
#define BRUME_DOMAIN_CHANNEL_NAME "brume.control"

/* The largest virtqueue the guest sets up (virtio_mmio.max_queue_size on its command line). */
#define BRUME_DOMAIN_VIRTQUEUE_MAX 128

/* TCG translation-block cache when the spec says 0 (docs/worker.md, Benchmark: with 14 MiB a pool
 * VM idle for a few seconds had no room left for a function's start, which then flushed the cache
 * and took 25-30 ms longer). */
#define BRUME_DOMAIN_TB_CACHE_MIB 16

/* The longest UNIX socket path (sun_path is 108 bytes with its NUL). */
#define BRUME_DOMAIN_SOCKET_PATH_MAX 107

typedef struct brume_domain_spec {
  const char *name_prefix; /* "brume" */
  const char *host_id;     /* the worker's id: "h1" */
  const char *sandbox_id;  /* "sb-1", or a pool VM's id */
  brume_accel accel;       /* KVM or TCG (from the probe) */

  const char *kernel;        /* absolute path of the guest kernel (uncompressed vmlinux, PVH) */
  const char *initrd;        /* absolute path of the initramfs; NULL: none */
  const char *cmdline_extra; /* appended to the kernel command line; NULL: nothing */
  uint32_t tsc_khz;          /* host TSC frequency for tsc_early_khz=; 0 leaves it out */

  uint32_t memory_mib; /* 128-10,240 */
  uint32_t vcpu_milli; /* vCPU share in thousandths; 0: brume_resources_vcpu_milli(memory) */
  bool no_cpu_quota;   /* true: no <cputune> cap (pool VMs boot at full speed, and get their
                          quota when specialised: brume_libvirt_set_vcpu_quota()) */

  const char *channel_path; /* absolute path of the control socket, at most 107 bytes */
  const char *console_log;  /* absolute path of the serial console's log file */
  const char *scratch_disk; /* absolute path of a raw image for /tmp; NULL: none */
  bool network;             /* one virtio-net NIC with user-mode networking */
  uint32_t tb_cache_mib;    /* TCG only; 0: BRUME_DOMAIN_TB_CACHE_MIB */
} brume_domain_spec;

/* "<prefix>-<host_id>-<sandbox_id>" (heap, caller frees), or NULL with INVALID_ARGUMENT when a
 * part is empty, has a character outside [A-Za-z0-9_.-], or the name is over 200 bytes. */
char *brume_domain_name(const char *prefix, const char *host_id, const char *sandbox_id,
                        brume_err **err);

/* "<prefix>-<host_id>-": what every domain of that worker's names starts with (heap), or NULL
 * with INVALID_ARGUMENT as above. */
char *brume_domain_name_prefix(const char *prefix, const char *host_id, brume_err **err);

/* The domain XML for spec (heap, caller frees), every value XML-escaped. NULL with
 * INVALID_ARGUMENT when the spec is incomplete or out of range: memory outside 128-10,240 MiB,
 * vcpu_milli over 6,000, accel neither KVM nor TCG, a missing or relative path, a socket path
 * over 107 bytes, a bad name part. */
char *brume_domain_xml(const brume_domain_spec *spec, brume_err **err);

/* The host's TSC frequency in kHz, for spec.tsc_khz: /sys/devices/system/cpu/cpu0/tsc_freq_khz
 * when the kernel exports it, else the "tsc: Detected N MHz" figure behind /proc/cpuinfo's
 * "cpu MHz" (constant_tsc hosts only). 0 when neither is known (then leave tsc_early_khz out). */
uint32_t brume_domain_host_tsc_khz(void);

#endif
