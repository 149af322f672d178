/* The accelerator probe: KVM where it really boots a guest, TCG otherwise.
 *
 * A usable /dev/kvm is not proof: on the development machines KVM is nested "PVM" virtualisation
 * that opens, creates a VM and then fails inside the guest (KVM internal error, or a crawl
 * through the instruction emulator). So the probe boots the real guest kernel and initramfs
 * under KVM and accepts KVM only if brume-init answers on the control channel within a bound;
 * anything else (no /dev/kvm, no permission, a failed or slow boot) means TCG, and the reason is
 * logged:
 *   msg="KVM is present but did not boot a guest: ...; using TCG."
 *
 * The decision (brume_accel_probe) is separate from how a boot is done (a brume_accel_boot_fn),
 * so that tests can drive the decision with a fake boot, and the worker boots through libvirt
 * with the very domain XML its sandboxes use (brume_accel_libvirt_boot). */
#ifndef BRUME_WORKER_ACCEL_H
#define BRUME_WORKER_ACCEL_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* Values are proto/brume/common.proto's Accelerator. */
typedef enum brume_accel {
  BRUME_ACCEL_UNSPECIFIED = 0,
  BRUME_ACCEL_KVM = 1,
  BRUME_ACCEL_TCG = 2,
} brume_accel;

/* "kvm", "tcg", "unspecified". */
const char *brume_accel_name(brume_accel accel);
/* libvirt's <domain type=...>: "kvm" for KVM, "qemu" for TCG; NULL otherwise. */
const char *brume_accel_domain_type(brume_accel accel);

/* Boots the guest under accel and waits until its agent answers, at most timeout_ms. Returns 0
 * when it answered; -1 with *err saying what happened instead (the probe puts it in its log
 * line). Leaves nothing running either way. */
typedef int (*brume_accel_boot_fn)(brume_accel accel, int timeout_ms, void *user, brume_err **err);

typedef struct brume_accel_probe_opts {
  const char *kvm_device; /* NULL: "/dev/kvm" */
  int timeout_ms;         /* for each boot; 0: BRUME_ACCEL_PROBE_TIMEOUT_MS */
  /* When KVM fails, boot under TCG too: if that fails as well, the guest image is at fault,
   * not KVM, and the probe fails instead of answering TCG. */
  bool check_tcg;
  brume_accel_boot_fn boot; /* required */
  void *boot_user;
} brume_accel_probe_opts;

/* A guest boots to its agent in about 1.4 s under TCG here and well under 1 s with KVM; 10 s
 * leaves room for a loaded host without letting a crawling KVM guest hold the worker's start. */
#define BRUME_ACCEL_PROBE_TIMEOUT_MS 10000
/* The probe's guest: the smallest sandbox. */
#define BRUME_ACCEL_PROBE_MEMORY_MIB 128

typedef struct brume_accel_result {
  brume_accel accel;   /* KVM or TCG */
  char *reason;        /* why (heap; brume_accel_result_clear frees it) */
  int64_t kvm_boot_ms; /* how long the KVM boot took (or failed after); -1 if not tried */
} brume_accel_result;

/* Decides the accelerator and logs the decision (an info line for KVM or for a host without
 * /dev/kvm, a warn line when KVM is present but unusable). Returns 0 with *res filled. Returns
 * -1 with *err only when opts has no boot function (INVALID_ARGUMENT), or check_tcg is set and
 * the guest booted under neither accelerator (the TCG boot's error, prefixed "the guest does
 * not boot under TCG either"). */
int brume_accel_probe(const brume_accel_probe_opts *opts, brume_accel_result *res, brume_err **err);

void brume_accel_result_clear(brume_accel_result *res);

/* Waits until the guest's agent has answered on the connected channel fd, at most timeout_ms.
 * Returns 0, or -1 with *err: DEADLINE_EXCEEDED when nothing (whole) came in time, UNAVAILABLE
 * when the channel closed, INTERNAL for something that is not the agent. The libvirt boot calls
 * it again and again with short slices (checking the domain between them) until it returns 0
 * or another error than DEADLINE_EXCEEDED, so it must not consume part of an answer and then
 * time out: peek until the whole answer is there. */
typedef int (*brume_accel_ready_fn)(int fd, int timeout_ms, void *user, brume_err **err);

/* The default ready check: reads one frame of the control protocol (proto/brume/guest.proto: a
 * 4-byte big-endian length, then a GuestMessage) and accepts a GuestReady. It consumes the frame
 * only once it is whole (MSG_PEEK), so it can be called in slices. */
int brume_accel_ready_guest(int fd, int timeout_ms, void *user, brume_err **err);

/* What brume_accel_libvirt_boot needs: a libvirt connection and the sandbox domain settings.
 * spec is a template: the boot sets its accel, sandbox id ("accel-probe-kvm", "accel-probe-tcg"),
 * channel and console paths (under work_dir), 128 MiB, no CPU cap, no disk or network. The
 * kernel and initrd must lie in directories libvirt-qemu can search (not under /root). */
struct brume_domain_spec;
typedef struct brume_accel_libvirt_ctx {
  void *conn;                           /* virConnectPtr */
  const struct brume_domain_spec *spec; /* name prefix, host id, kernel, initrd, tsc */
  const char *work_dir;                 /* an existing directory for the socket and log */
  brume_accel_ready_fn ready;           /* NULL: brume_accel_ready_guest */
  void *ready_user;
  const char *qemu_log_dir; /* NULL: /var/log/libvirt/qemu (for the reason) */
} brume_accel_libvirt_ctx;

/* A brume_accel_boot_fn (user: a brume_accel_libvirt_ctx): creates a transient domain from the
 * sandbox XML (auto-destroyed if the worker dies), connects to its channel, runs the ready check
 * in 100 ms slices while watching the domain's state, and destroys it. A failure says what was
 * seen: libvirt's error when QEMU did not start; else the domain's state, the last error line
 * of this run in QEMU's log (the "KVM internal error") and the console's last line:
 *   INTERNAL           "the guest stopped before its agent answered (domain paused); QEMU: ..."
 *   DEADLINE_EXCEEDED  "the guest agent did not answer (domain running); console: ... within N ms"
 * or the ready check's own error (INTERNAL for a channel that sends something else). */
int brume_accel_libvirt_boot(brume_accel accel, int timeout_ms, void *user, brume_err **err);

#endif
