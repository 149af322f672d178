/* A thin layer over the libvirt C API for brume-worker: errors become brume_err, handles free
 * themselves, and the few calls the worker makes have one name each.
 *
 * Errors: libvirt keeps the last error per thread (virGetLastError); each function here turns
 * it into a brume_err at once, with the call that failed as context:
 *   "libvirt suspend brume-h1-sb-1: Requested operation is not valid: domain is not running"
 * Codes: no such domain -> NOT_FOUND; an operation wrong for the domain's state ->
 * FAILED_PRECONDITION; libvirtd unreachable or the connection lost -> UNAVAILABLE; a timeout
 * -> DEADLINE_EXCEEDED; anything else (including XML libvirt refuses: our bug) -> INTERNAL.
 * brume_libvirt_init() also stops libvirt from printing every error on stderr itself (its
 * default), since the caller reports the error once. Every libvirt API call (virDomainGetName()
 * too) clears the thread's last error on entry, so these wrappers take what they need for the
 * message before the call that may fail; a caller using brume_libvirt_err() must do the same.
 * Messages from QEMU that libvirt passes on may span several lines.
 *
 * Thread safety: as libvirt's; a virConnectPtr may be shared by threads. */
#ifndef BRUME_WORKER_LIBVIRT_H
#define BRUME_WORKER_LIBVIRT_H

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* virConnectClose and virDomainFree return int; the cleanup ignores it. */
static inline void brume_libvirt_conn_close(virConnectPtr c) {
  (void)virConnectClose(c);
}
static inline void brume_libvirt_dom_free(virDomainPtr d) {
  (void)virDomainFree(d);
}
BRUME_DEFINE_AUTOPTR(virConnect, brume_libvirt_conn_close)
BRUME_DEFINE_AUTOPTR(virDomain, brume_libvirt_dom_free)

#define BRUME_LIBVIRT_DEFAULT_URI "qemu:///system"

/* Initialises libvirt for a threaded process and silences its default error printer. Called by
 * brume_libvirt_connect(); idempotent and thread-safe. Aborts if libvirt cannot initialise. */
void brume_libvirt_init(void);

/* Opens a read-write connection to uri (NULL: BRUME_LIBVIRT_DEFAULT_URI). NULL with
 * UNAVAILABLE when libvirtd cannot be reached ("is libvirtd running? deploy/host-setup.sh
 * starts it"). Close with virConnectClose() or brume_autoptr(virConnect). */
virConnectPtr brume_libvirt_connect(const char *uri, brume_err **err);

/* Sets *err from libvirt's last error on this thread, with context (printf) in front, and
 * returns -1. For callers that use libvirt directly. */
int brume_libvirt_err(brume_err **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Flags for brume_libvirt_create. */
enum {
  /* libvirtd destroys the domain when this connection closes (the worker died or exited). */
  BRUME_LIBVIRT_AUTODESTROY = 1u << 0,
  /* Created with its vCPUs paused. */
  BRUME_LIBVIRT_PAUSED = 1u << 1,
};

/* Creates and starts a transient domain from xml. Returns the domain (caller frees) or NULL. */
virDomainPtr brume_libvirt_create(virConnectPtr conn, const char *xml, unsigned flags,
                                  brume_err **err);

/* The domain called name, or NULL (NOT_FOUND when there is none). */
virDomainPtr brume_libvirt_lookup(virConnectPtr conn, const char *name, brume_err **err);

/* virDomainSuspend / virDomainResume. */
int brume_libvirt_suspend(virDomainPtr dom, brume_err **err);
int brume_libvirt_resume(virDomainPtr dom, brume_err **err);

/* Stops the domain at once (SIGTERM to QEMU, then SIGKILL). A domain that is already gone
 * counts as destroyed: 0. */
int brume_libvirt_destroy(virDomainPtr dom, brume_err **err);

/* The domain's state (VIR_DOMAIN_RUNNING, _PAUSED, _SHUTOFF, _CRASHED ...) and its reason
 * (reason may be NULL). */
int brume_libvirt_state(virDomainPtr dom, int *state, int *reason, brume_err **err);

/* "running", "paused", "shut off", "crashed", ... for a virDomainState. */
const char *brume_libvirt_state_name(int state);

/* Sets the running domain's per-vCPU CPU cap (cputune period/quota); quota -1 removes it. */
int brume_libvirt_set_vcpu_quota(virDomainPtr dom, uint64_t period_us, int64_t quota_us,
                                 brume_err **err);

/* The names of the active domains whose name starts with prefix, sorted; *n gets their count.
 * Returns a NULL-terminated array (free with brume_libvirt_names_free) or NULL on error. */
char **brume_libvirt_list_by_prefix(virConnectPtr conn, const char *prefix, size_t *n,
                                    brume_err **err);
void brume_libvirt_names_free(char **names);

/* Destroys every active domain whose name starts with prefix (the restart cleanup). Returns how
 * many it destroyed, or -1 with *err when one could not be destroyed (it still tries the
 * others; the first error is kept). */
int brume_libvirt_destroy_by_prefix(virConnectPtr conn, const char *prefix, brume_err **err);

#endif
