/* The pool of booted microVMs (pool.h): a small array under a mutex, one refill thread. */
#include "pool.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "domain.h"
#include "libvirt.h"
#include "log.h"
#include "resources.h"

/* Pause after a failed boot before the next try (libvirt down, image unreadable...). */
#define RETRY_PAUSE_MS 2000

struct brume_pool {
  brume_pool_opts o;
  uint32_t vcpu_milli, vcpus;
  brume_gauge *gauge;

  pthread_mutex_t mu;
  pthread_cond_t cv; /* a take, or stop */
  brume_pool_vm **v; /* ready VMs, oldest first; cap o.size */
  size_t n;
  bool stopping;
  pthread_t thread;
  bool started;
};

static int64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void brume_pool_vm_free(brume_pool_vm *vm) {
  if (vm == NULL) return;
  brume_guest_link_close(vm->link);
  if (vm->dom) virDomainFree(vm->dom);
  free(vm->id);
  free(vm->name);
  free(vm->sock);
  free(vm->console);
  free(vm);
}

/* Destroys the domain of a VM that will never serve, and frees it. */
static void vm_discard(brume_pool_vm *vm) {
  brume_err *err = NULL;
  if (vm->dom && brume_libvirt_destroy(vm->dom, &err) < 0) {
    char q[512];
    brume_warn("Could not destroy a pool VM.", "domain=%s err=%s", vm->name,
               brume_log_quote(q, sizeof(q), err->msg));
    brume_err_free(err);
  }
  brume_pool_vm_free(vm);
}

/* Boots one VM to its GuestReady. Slow: called without the mutex. */
static brume_pool_vm *boot(brume_pool *p, brume_err **err) {
  uint64_t r = 0;
  if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
    r = (uint64_t)mono_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)p;
  brume_autofree char *xml = NULL;
  brume_pool_vm *vm = brume_xcalloc(1, sizeof(*vm));
  vm->id = brume_xasprintf("sb-%016" PRIx64, r);
  vm->memory_mib = p->o.memory_mib;
  vm->vcpu_milli = p->vcpu_milli;
  vm->name = brume_domain_name(p->o.name_prefix, p->o.host_id, vm->id, err);
  if (vm->name == NULL) goto fail;
  vm->sock = brume_xasprintf("%s/%s.sock", p->o.run_dir, vm->id);
  vm->console = brume_xasprintf("%s/%s.console", p->o.run_dir, vm->id);
  brume_domain_spec ds = {
      .name_prefix = p->o.name_prefix,
      .host_id = p->o.host_id,
      .sandbox_id = vm->id,
      .accel = p->o.accel,
      .kernel = p->o.kernel,
      .initrd = p->o.initrd,
      .tsc_khz = p->o.tsc_khz,
      .memory_mib = vm->memory_mib,
      .vcpu_milli = vm->vcpu_milli,
      .no_cpu_quota = true, /* full speed until specialised */
      .channel_path = vm->sock,
      .console_log = vm->console,
  };
  xml = brume_domain_xml(&ds, err);
  if (xml == NULL) goto fail;
  vm->dom = brume_libvirt_create(p->o.conn, xml, BRUME_LIBVIRT_AUTODESTROY, err);
  if (vm->dom == NULL) goto fail;
  vm->link = brume_guest_link_connect(vm->sock, p->o.boot_timeout_ms, err);
  if (vm->link == NULL) {
    brume_err_wrap(err, "pool VM %s did not boot to its agent", vm->id);
    goto fail;
  }
  return vm;
fail:
  vm_discard(vm);
  return NULL;
}

static void *refill_main(void *arg) {
  brume_pool *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->stopping && p->n >= p->o.size) pthread_cond_wait(&p->cv, &p->mu);
    if (p->stopping) break;
    pthread_mutex_unlock(&p->mu);
    int64_t t0 = mono_us();
    brume_err *err = NULL;
    brume_pool_vm *vm = boot(p, &err);
    double ms = (double)(mono_us() - t0) / 1000.0;
    pthread_mutex_lock(&p->mu);
    if (vm == NULL) {
      char q[512];
      brume_warn("A pool VM did not boot; trying again.", "memory_mib=%" PRIu32 " ms=%.1f err=%s",
                 p->o.memory_mib, ms, brume_log_quote(q, sizeof(q), err->msg));
      brume_err_free(err);
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_sec += RETRY_PAUSE_MS / 1000;
      while (!p->stopping && pthread_cond_timedwait(&p->cv, &p->mu, &until) != ETIMEDOUT) {
      }
      continue;
    }
    if (p->stopping) {
      pthread_mutex_unlock(&p->mu);
      vm_discard(vm);
      pthread_mutex_lock(&p->mu);
      break;
    }
    p->v[p->n++] = vm;
    if (p->gauge) brume_gauge_set(p->gauge, (double)p->n);
    brume_info("Pool VM ready.", "domain=%s memory_mib=%" PRIu32 " boot_ms=%.1f ready=%zu/%zu",
               vm->name, vm->memory_mib, ms, p->n, p->o.size);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

brume_pool *brume_pool_start(const brume_pool_opts *opts) {
  brume_pool *p = brume_xcalloc(1, sizeof(*p));
  p->o = *opts;
  p->vcpu_milli = brume_resources_vcpu_milli(p->o.memory_mib);
  p->vcpus = brume_resources_vcpus(p->vcpu_milli);
  p->v = brume_xcalloc(p->o.size + 1, sizeof(*p->v));
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  if (p->o.metrics) {
    p->gauge = brume_metrics_gauge(p->o.metrics, "brume_worker_pool_vms",
                                   "Booted, not yet specialised microVMs ready in the pool.", NULL);
    brume_gauge_set(p->gauge, 0);
  }
  if (p->o.size > 0) {
    BRUME_ENSURE(pthread_create(&p->thread, NULL, refill_main, p) == 0);
    p->started = true;
  }
  brume_info("Pool started.", "size=%zu memory_mib=%" PRIu32, p->o.size, p->o.memory_mib);
  return p;
}

brume_pool_vm *brume_pool_take(brume_pool *p, uint32_t memory_mib, uint32_t vcpus) {
  if (p == NULL || memory_mib != p->o.memory_mib || vcpus != p->vcpus) return NULL;
  pthread_mutex_lock(&p->mu);
  brume_pool_vm *vm = NULL;
  if (p->n > 0 && !p->stopping) {
    vm = p->v[0];
    p->n--;
    for (size_t i = 0; i < p->n; i++) p->v[i] = p->v[i + 1];
    p->v[p->n] = NULL;
    if (p->gauge) brume_gauge_set(p->gauge, (double)p->n);
    pthread_cond_signal(&p->cv);
  }
  pthread_mutex_unlock(&p->mu);
  return vm;
}

size_t brume_pool_ready(brume_pool *p) {
  if (p == NULL) return 0;
  pthread_mutex_lock(&p->mu);
  size_t n = p->n;
  pthread_mutex_unlock(&p->mu);
  return n;
}

void brume_pool_stop(brume_pool *p) {
  if (p == NULL) return;
  pthread_mutex_lock(&p->mu);
  p->stopping = true;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  if (p->started) pthread_join(p->thread, NULL);
  size_t n = p->n;
  for (size_t i = 0; i < p->n; i++) vm_discard(p->v[i]);
  p->n = 0;
  if (p->gauge) brume_gauge_set(p->gauge, 0);
  brume_info("Pool stopped.", "destroyed=%zu", n);
  free(p->v);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p);
}
