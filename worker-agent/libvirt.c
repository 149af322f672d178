#include "libvirt.h"

#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void silent_error(void *user, virErrorPtr e) {
  (void)user;
  (void)e;
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init(void) {
  if (virInitialize() < 0) brume_fatal("libvirt: virInitialize failed");
  virSetErrorFunc(NULL, silent_error);
}

void brume_libvirt_init(void) {
  pthread_once(&init_once, init);
}

static brume_status status_of(const virError *e) {
  if (!e) return BRUME_INTERNAL;
  switch (e->code) {
    case VIR_ERR_NO_DOMAIN:
      return BRUME_NOT_FOUND;
    case VIR_ERR_OPERATION_INVALID:
      return BRUME_FAILED_PRECONDITION;
    case VIR_ERR_NO_CONNECT:
    case VIR_ERR_INVALID_CONN:
    case VIR_ERR_RPC:
    case VIR_ERR_SYSTEM_ERROR:
    case VIR_ERR_AUTH_FAILED:
    case VIR_ERR_AUTH_UNAVAILABLE:
    case VIR_ERR_AGENT_UNRESPONSIVE:
      return BRUME_UNAVAILABLE;
    case VIR_ERR_OPERATION_TIMEOUT:
      return BRUME_DEADLINE_EXCEEDED;
    default:
      return BRUME_INTERNAL;
  }
}

static int __attribute__((format(printf, 3, 0)))
err_from(brume_err **err, const virError *e, const char *fmt, va_list ap) {
  brume_autofree char *ctx = brume_xvasprintf(fmt, ap);
  return brume_err_set(err, status_of(e), "%s: %s", ctx,
                       e && e->message ? e->message : "unknown libvirt error");
}

int brume_libvirt_err(brume_err **err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = err_from(err, virGetLastError(), fmt, ap);
  va_end(ap);
  virResetLastError();
  return rc;
}

static int __attribute__((format(printf, 3, 4)))
err_saved(brume_err **err, const virError *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = err_from(err, e, fmt, ap);
  va_end(ap);
  return rc;
}

virConnectPtr brume_libvirt_connect(const char *uri, brume_err **err) {
  brume_libvirt_init();
  if (!uri) uri = BRUME_LIBVIRT_DEFAULT_URI;
  virConnectPtr c = virConnectOpen(uri);
  if (!c) {
    const virError *e = virGetLastError();
    brume_err_set(err, BRUME_UNAVAILABLE,
                  "libvirt connect %s: %s (is libvirtd running? deploy/host-setup.sh starts it)",
                  uri, e && e->message ? e->message : "unknown libvirt error");
    virResetLastError();
  }
  return c;
}

virDomainPtr brume_libvirt_create(virConnectPtr conn, const char *xml, unsigned flags,
                                  brume_err **err) {
  unsigned vflags = 0;
  if (flags & BRUME_LIBVIRT_AUTODESTROY) vflags |= VIR_DOMAIN_START_AUTODESTROY;
  if (flags & BRUME_LIBVIRT_PAUSED) vflags |= VIR_DOMAIN_START_PAUSED;
  virDomainPtr d = virDomainCreateXML(conn, xml, vflags);
  if (!d) brume_libvirt_err(err, "libvirt create domain");
  return d;
}

virDomainPtr brume_libvirt_lookup(virConnectPtr conn, const char *name, brume_err **err) {
  virDomainPtr d = virDomainLookupByName(conn, name);
  if (!d) brume_libvirt_err(err, "libvirt lookup %s", name);
  return d;
}

/* Every libvirt API call resets the thread's last error on entry, virDomainGetName() too: the
 * name for a message is taken before the call that may fail. */
static const char *dom_name(virDomainPtr dom) {
  const char *n = virDomainGetName(dom);
  return n ? n : "?";
}

int brume_libvirt_suspend(virDomainPtr dom, brume_err **err) {
  const char *name = dom_name(dom);
  if (virDomainSuspend(dom) < 0) return brume_libvirt_err(err, "libvirt suspend %s", name);
  return 0;
}

int brume_libvirt_resume(virDomainPtr dom, brume_err **err) {
  const char *name = dom_name(dom);
  if (virDomainResume(dom) < 0) return brume_libvirt_err(err, "libvirt resume %s", name);
  return 0;
}

int brume_libvirt_destroy(virDomainPtr dom, brume_err **err) {
  const char *name = dom_name(dom);
  if (virDomainDestroy(dom) == 0) return 0;
  virErrorPtr e = virSaveLastError();
  /* Already gone (it crashed, or someone else destroyed it): what the caller wanted. */
  bool gone = e && (e->code == VIR_ERR_NO_DOMAIN ||
                    (e->code == VIR_ERR_OPERATION_INVALID && virDomainIsActive(dom) == 0));
  int rc = gone ? 0 : err_saved(err, e, "libvirt destroy %s", name);
  virFreeError(e);
  virResetLastError();
  return rc;
}

int brume_libvirt_state(virDomainPtr dom, int *state, int *reason, brume_err **err) {
  int r = 0;
  const char *name = dom_name(dom);
  if (virDomainGetState(dom, state, &r, 0) < 0)
    return brume_libvirt_err(err, "libvirt state of %s", name);
  if (reason) *reason = r;
  return 0;
}

const char *brume_libvirt_state_name(int state) {
  switch (state) {
    case VIR_DOMAIN_NOSTATE:
      return "no state";
    case VIR_DOMAIN_RUNNING:
      return "running";
    case VIR_DOMAIN_BLOCKED:
      return "blocked";
    case VIR_DOMAIN_PAUSED:
      return "paused";
    case VIR_DOMAIN_SHUTDOWN:
      return "shutting down";
    case VIR_DOMAIN_SHUTOFF:
      return "shut off";
    case VIR_DOMAIN_CRASHED:
      return "crashed";
    case VIR_DOMAIN_PMSUSPENDED:
      return "suspended by guest power management";
    default:
      return "unknown";
  }
}

int brume_libvirt_set_vcpu_quota(virDomainPtr dom, uint64_t period_us, int64_t quota_us,
                                 brume_err **err) {
  virTypedParameter params[2];
  memset(params, 0, sizeof(params));
  snprintf(params[0].field, sizeof(params[0].field), "%s", VIR_DOMAIN_SCHEDULER_VCPU_PERIOD);
  params[0].type = VIR_TYPED_PARAM_ULLONG;
  params[0].value.ul = period_us;
  snprintf(params[1].field, sizeof(params[1].field), "%s", VIR_DOMAIN_SCHEDULER_VCPU_QUOTA);
  params[1].type = VIR_TYPED_PARAM_LLONG;
  params[1].value.l = quota_us;
  const char *name = dom_name(dom);
  if (virDomainSetSchedulerParametersFlags(dom, params, 2, VIR_DOMAIN_AFFECT_LIVE) < 0)
    return brume_libvirt_err(err, "libvirt set vCPU quota of %s to %lld/%llu us", name,
                             (long long)quota_us, (unsigned long long)period_us);
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void brume_libvirt_names_free(char **names) {
  if (!names) return;
  for (char **p = names; *p; p++) free(*p);
  free(names);
}

char **brume_libvirt_list_by_prefix(virConnectPtr conn, const char *prefix, size_t *n,
                                    brume_err **err) {
  virDomainPtr *doms = NULL;
  int count = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
  if (count < 0) {
    brume_libvirt_err(err, "libvirt list domains");
    return NULL;
  }
  size_t plen = strlen(prefix), k = 0;
  char **names = brume_xcalloc((size_t)count + 1, sizeof(char *));
  for (int i = 0; i < count; i++) {
    const char *name = virDomainGetName(doms[i]);
    if (name && strncmp(name, prefix, plen) == 0) names[k++] = brume_xstrdup(name);
    virDomainFree(doms[i]);
  }
  free(doms);
  qsort(names, k, sizeof(char *), cmp_str);
  if (n) *n = k;
  return names;
}

int brume_libvirt_destroy_by_prefix(virConnectPtr conn, const char *prefix, brume_err **err) {
  size_t n = 0;
  char **names = brume_libvirt_list_by_prefix(conn, prefix, &n, err);
  if (!names) return -1;
  int destroyed = 0, failed = 0;
  for (size_t i = 0; i < n; i++) {
    brume_err *e = NULL;
    brume_autoptr(virDomain) d = virDomainLookupByName(conn, names[i]);
    if (!d) {
      virResetLastError(); /* gone between the list and now */
      continue;
    }
    if (brume_libvirt_destroy(d, &e) < 0) {
      failed = 1;
      if (err && !*err) *err = brume_steal(&e);
      brume_err_free(e);
      continue;
    }
    destroyed++;
  }
  brume_libvirt_names_free(names);
  return failed ? -1 : destroyed;
}
