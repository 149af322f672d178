/* The pool of booted microVMs (pool.h): a small array under a mutex, one refill thread. */
#include "pool.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "domain.h"
#include "libvirt.h"
#include "log.h"
#include "random.h"
#include "resources.h"
#include "scratch.h"

/* Pause after a failed boot before the next try (libvirt down, image unreadable...). */
#define RETRY_PAUSE_MS 2000

/* The VMs of one memory size. */
typedef struct pool_class {
  uint32_t memory_mib, vcpu_milli, vcpus;
  char label[16];    /* memory_mib as the gauge's label value */
  brume_pool_vm **v; /* ready VMs, oldest first; cap o.size */
  size_t n;
} pool_class;

struct brume_pool {
  brume_pool_opts o;
  brume_gauge *gauge;
  brume_counter *boot_retries;

  pthread_mutex_t mu;
  pthread_cond_t cv;     /* a take, or stop */
  pool_class *c;         /* one per o.memory_mib[] */
  uint32_t booting_mib;  /* the VM being booted for the pool, 0 if none */
  unsigned specialising; /* VMs taken and not yet brume_pool_taken_done: the refill defers */
  atomic_bool warned_no_smp;
  bool stopping;
  /* Boots under way (o.max_boots bounds them), under boot_mu. */
  pthread_mutex_t boot_mu;
  pthread_cond_t boot_cv;
  unsigned boots;
  /* Recent boots' duration (ms, a moving average of those that answered), for boot()'s first
   * wait. */
  atomic_int_fast64_t boot_avg_ms;
  pthread_t thread;
  bool started;
};

void brume_pool_vm_free(brume_pool_vm *vm) {
  if (vm == NULL) return;
  brume_guest_link_close(vm->link);
  if (vm->dom) virDomainFree(vm->dom);
  free(vm->id);
  free(vm->name);
  free(vm->sock);
  free(vm->console);
  free(vm->scratch);
  free(vm);
}

/* Destroys the domain of a VM that will never serve, removes its disk, and frees it. */
static void vm_discard(brume_pool_vm *vm) {
  brume_err *err = NULL;
  if (vm->dom && brume_libvirt_destroy(vm->dom, &err) < 0) {
    char q[512];
    brume_warn("Could not destroy a pool VM.", "domain=%s err=%s", vm->name,
               brume_log_quote(q, sizeof(q), err->msg));
    brume_err_free(err);
  }
  if (vm->scratch) unlink(vm->scratch);
  if (vm->console) unlink(vm->console);
  brume_pool_vm_free(vm);
}

/* Logs the end of a VM's console (kernel messages, brume-init's start-up lines): what an
 * operator needs when a guest does not boot. The console holds nothing of a function yet. */
static void log_console_tail(const brume_pool_vm *vm) {
  char tail[1024] = "";
  FILE *f = fopen(vm->console, "r");
  if (f != NULL) {
    if (fseek(f, 0, SEEK_END) == 0) {
      long size = ftell(f);
      long from = size > (long)sizeof(tail) - 1 ? size - (long)sizeof(tail) + 1 : 0;
      if (fseek(f, from, SEEK_SET) == 0) tail[fread(tail, 1, sizeof(tail) - 1, f)] = '\0';
    }
    fclose(f);
  }
  char q[2048];
  brume_warn("A VM did not boot to its agent; the end of its console follows.",
             "sandbox_id=%s console=%s", vm->id, brume_log_quote(q, sizeof(q), tail));
}

/* Boots one VM to its GuestReady, waiting at most ready_ms for it. Slow: called without the
 * mutex. */
static brume_pool_vm *boot_once(brume_pool *p, uint32_t memory_mib, uint32_t vcpu_milli,
                                uint32_t ephemeral_mib, int ready_ms, brume_err **err) {
  uint64_t r = brume_random_u64();
  brume_autofree char *xml = NULL;
  brume_pool_vm *vm = brume_xcalloc(1, sizeof(*vm));
  vm->id = brume_xasprintf("sb-%016" PRIx64, r);
  vm->memory_mib = memory_mib;
  vm->vcpu_milli = vcpu_milli;
  vm->ephemeral_mib = ephemeral_mib;
  vm->name = brume_domain_name(p->o.tmpl.name_prefix, p->o.tmpl.host_id, vm->id, err);
  if (vm->name == NULL) goto fail;
  vm->sock = brume_xasprintf("%s/%s.sock", p->o.run_dir, vm->id);
  vm->console = brume_xasprintf("%s/%s.console", p->o.run_dir, vm->id);
  vm->scratch = brume_xasprintf("%s/%s" BRUME_SCRATCH_SUFFIX, p->o.run_dir, vm->id);
  if (brume_scratch_create(vm->scratch, ephemeral_mib, err) < 0) {
    free(vm->scratch);
    vm->scratch = NULL;
    goto fail;
  }
  brume_domain_spec ds = p->o.tmpl;
  uint32_t vcpus = brume_resources_vcpus(vcpu_milli);
  if (vcpus > 1 && p->o.kernel_smp) {
    ds.kernel = p->o.kernel_smp;
  } else if (vcpus > 1 && !atomic_exchange(&p->warned_no_smp, true)) {
    brume_warn("No SMP guest kernel (guest_kernel_smp): sandboxes of more than one vCPU use one.",
               "vcpus=%" PRIu32, vcpus);
  }
  ds.sandbox_id = vm->id;
  ds.memory_mib = vm->memory_mib;
  ds.vcpu_milli = vm->vcpu_milli;
  ds.no_cpu_quota = true; /* full speed until specialised */
  ds.channel_path = vm->sock;
  ds.console_log = vm->console;
  ds.scratch_disk = vm->scratch;
  xml = brume_domain_xml(&ds, err);
  if (xml == NULL) goto fail;
  vm->dom = brume_libvirt_create(p->o.conn, xml, BRUME_LIBVIRT_AUTODESTROY, err);
  if (vm->dom == NULL) goto fail;
  vm->link = brume_guest_link_connect(vm->sock, ready_ms, err);
  if (vm->link == NULL) {
    log_console_tail(vm);
    brume_err_wrap(err, "VM %s did not boot to its agent", vm->id);
    goto fail;
  }
  return vm;
fail:
  vm_discard(vm);
  return NULL;
}

/* How long boot() waits for a first VM: a quarter of boot_timeout_ms, or three times what
 * recent boots took when that is longer (at most half of boot_timeout_ms). On a host so loaded
 * that boots take 15-40 s (50 TCG microVMs running on 2 cores), a fixed 15 s gave up on VMs
 * about to answer and booted them again, which loaded the host further. */
static int first_wait_ms(brume_pool *p) {
  int quarter = p->o.boot_timeout_ms / 4, half = p->o.boot_timeout_ms / 2;
  int64_t adaptive = 3 * atomic_load(&p->boot_avg_ms);
  if (adaptive <= quarter) return quarter;
  return adaptive < half ? (int)adaptive : half;
}

/* boot_once, and what a boot that answered took into boot_avg_ms. */
static brume_pool_vm *timed_boot_once(brume_pool *p, uint32_t memory_mib, uint32_t vcpu_milli,
                                      uint32_t ephemeral_mib, int timeout_ms, brume_err **err) {
  int64_t t0 = brume_mono_ms();
  brume_pool_vm *vm = boot_once(p, memory_mib, vcpu_milli, ephemeral_mib, timeout_ms, err);
  if (vm != NULL) {
    int64_t ms = brume_mono_ms() - t0, avg = atomic_load(&p->boot_avg_ms);
    atomic_store(&p->boot_avg_ms, avg == 0 ? ms : (7 * avg + 3 * ms) / 10);
  }
  return vm;
}

/* boot_once, and once more when the guest did not answer within first_wait_ms() (15 s of 60:
 * boots take 0.3-2 s here on an idle host). About one boot in a hundred under four parallel
 * boots reached brume-init ("waiting for the host") and then never saw the host connect, not
 * even after the host reconnected: the cause is not known yet (docs/worker.md, "Pool"). A fresh
 * VM is a way out that does not depend on it; the stuck one's console is logged, and
 * brume_worker_boot_retries_total counts them. */
static brume_pool_vm *boot(brume_pool *p, uint32_t memory_mib, uint32_t vcpu_milli,
                           uint32_t ephemeral_mib, brume_err **err) {
  int first_ms = first_wait_ms(p);
  brume_err *e = NULL;
  brume_pool_vm *vm = timed_boot_once(p, memory_mib, vcpu_milli, ephemeral_mib, first_ms, &e);
  if (vm != NULL || e->code != BRUME_DEADLINE_EXCEEDED) {
    if (e != NULL && err != NULL)
      *err = e;
    else
      brume_err_free(e);
    return vm;
  }
  char q[512];
  brume_warn("A VM did not answer in time; booting another one.",
             "memory_mib=%" PRIu32 " waited_ms=%d err=%s", memory_mib, first_ms,
             brume_log_quote(q, sizeof(q), e->msg));
  brume_err_free(e);
  if (p->boot_retries) brume_counter_inc(p->boot_retries, 1);
  return timed_boot_once(p, memory_mib, vcpu_milli, ephemeral_mib, p->o.boot_timeout_ms - first_ms,
                         err);
}

/* boot, once fewer than o.max_boots are under way. */
static brume_pool_vm *boot_in_turn(brume_pool *p, uint32_t memory_mib, uint32_t vcpu_milli,
                                   uint32_t ephemeral_mib, brume_err **err) {
  if (p->o.max_boots == 0) return boot(p, memory_mib, vcpu_milli, ephemeral_mib, err);
  pthread_mutex_lock(&p->boot_mu);
  while (p->boots >= p->o.max_boots) pthread_cond_wait(&p->boot_cv, &p->boot_mu);
  p->boots++;
  pthread_mutex_unlock(&p->boot_mu);
  brume_pool_vm *vm = boot(p, memory_mib, vcpu_milli, ephemeral_mib, err);
  pthread_mutex_lock(&p->boot_mu);
  p->boots--;
  pthread_cond_signal(&p->boot_cv);
  pthread_mutex_unlock(&p->boot_mu);
  return vm;
}

brume_pool_vm *brume_pool_boot(brume_pool *p, uint32_t memory_mib, uint32_t vcpu_milli,
                               uint32_t ephemeral_mib, brume_err **err) {
  return boot_in_turn(p, memory_mib, vcpu_milli, ephemeral_mib, err);
}

/* The class with the fewest ready VMs below size, or NULL when all are full. Under mu. */
static pool_class *emptiest(brume_pool *p) {
  pool_class *best = NULL;
  for (size_t i = 0; i < p->o.n_sizes; i++)
    if (p->c[i].n < p->o.size && (best == NULL || p->c[i].n < best->n)) best = &p->c[i];
  return best;
}

static void *refill_main(void *arg) {
  brume_pool *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    pool_class *c = NULL;
    while (!p->stopping && (c = emptiest(p)) == NULL) pthread_cond_wait(&p->cv, &p->mu);
    /* Not while a taken VM is being specialised (its caller waits), for a while at most. */
    struct timespec defer = brume_timespec_in(CLOCK_MONOTONIC, BRUME_POOL_REFILL_DEFER_MS);
    while (!p->stopping && p->specialising > 0 &&
           pthread_cond_timedwait(&p->cv, &p->mu, &defer) != ETIMEDOUT) {
    }
    if (p->stopping) break;
    pthread_mutex_unlock(&p->mu);
    brume_err *err = NULL;
    brume_pool_vm *vm = NULL;
    int64_t t0 = brume_mono_us();
    if (p->o.fits && !p->o.fits(p->o.fits_user, c->memory_mib)) {
      brume_err_set(&err, BRUME_UNAVAILABLE, "no free memory for a pool VM");
    } else {
      pthread_mutex_lock(&p->mu);
      p->booting_mib = c->memory_mib;
      pthread_mutex_unlock(&p->mu);
      vm = boot_in_turn(p, c->memory_mib, c->vcpu_milli, BRUME_POOL_EPHEMERAL_MIB, &err);
    }
    double ms = (double)(brume_mono_us() - t0) / 1000.0;
    pthread_mutex_lock(&p->mu);
    p->booting_mib = 0;
    if (vm == NULL) {
      char q[512];
      brume_warn("A pool VM did not boot; trying again.", "memory_mib=%" PRIu32 " ms=%.1f err=%s",
                 c->memory_mib, ms, brume_log_quote(q, sizeof(q), err->msg));
      brume_err_free(err);
      struct timespec until = brume_timespec_in(CLOCK_MONOTONIC, RETRY_PAUSE_MS);
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
    c->v[c->n++] = vm;
    if (p->gauge) brume_gauge_set(p->gauge, (double)c->n, c->label);
    brume_info("Pool VM ready.", "domain=%s memory_mib=%" PRIu32 " boot_ms=%.1f ready=%zu/%zu",
               vm->name, vm->memory_mib, ms, c->n, p->o.size);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

brume_pool *brume_pool_start(const brume_pool_opts *opts) {
  brume_pool *p = brume_xcalloc(1, sizeof(*p));
  p->o = *opts;
  if (p->o.size == 0) p->o.n_sizes = 0;
  p->c = brume_xcalloc(p->o.n_sizes + 1, sizeof(*p->c));
  pthread_mutex_init(&p->mu, NULL);
  brume_cond_init_monotonic(&p->cv);
  pthread_mutex_init(&p->boot_mu, NULL);
  pthread_cond_init(&p->boot_cv, NULL);
  if (p->o.metrics)
    p->gauge = brume_metrics_gauge(p->o.metrics, "brume_worker_pool_vms",
                                   "Booted, not yet specialised microVMs ready in the pool.",
                                   "memory_mib", NULL);
  if (p->o.metrics)
    p->boot_retries = brume_metrics_counter(
        p->o.metrics, "brume_worker_boot_retries_total",
        "microVMs destroyed and booted again because the guest did not answer in time.", NULL);
  char sizes[256] = "";
  size_t used = 0;
  for (size_t i = 0; i < p->o.n_sizes; i++) {
    pool_class *c = &p->c[i];
    c->memory_mib = p->o.memory_mib[i];
    c->vcpu_milli = brume_resources_vcpu_milli(c->memory_mib);
    c->vcpus = brume_resources_vcpus(c->vcpu_milli);
    snprintf(c->label, sizeof(c->label), "%" PRIu32, c->memory_mib);
    c->v = brume_xcalloc(p->o.size + 1, sizeof(*c->v));
    if (p->gauge) brume_gauge_set(p->gauge, 0, c->label);
    if (used < sizeof(sizes))
      used += (size_t)snprintf(sizes + used, sizeof(sizes) - used, "%s%s", i ? "," : "", c->label);
  }
  if (p->o.n_sizes > 0) {
    BRUME_ENSURE(pthread_create(&p->thread, NULL, refill_main, p) == 0);
    p->started = true;
  }
  brume_info("Pool started.", "size=%zu memory_mib=%s", p->o.size, p->o.n_sizes ? sizes : "-");
  return p;
}

brume_pool_vm *brume_pool_take(brume_pool *p, uint32_t memory_mib, uint32_t vcpus,
                               uint32_t ephemeral_mib) {
  if (p == NULL || ephemeral_mib != BRUME_POOL_EPHEMERAL_MIB) return NULL;
  pool_class *c = NULL;
  for (size_t i = 0; i < p->o.n_sizes && c == NULL; i++)
    if (p->c[i].memory_mib == memory_mib && p->c[i].vcpus == vcpus) c = &p->c[i];
  if (c == NULL) return NULL;
  pthread_mutex_lock(&p->mu);
  brume_pool_vm *vm = NULL;
  if (c->n > 0 && !p->stopping) {
    vm = c->v[0];
    c->n--;
    for (size_t i = 0; i < c->n; i++) c->v[i] = c->v[i + 1];
    c->v[c->n] = NULL;
    p->specialising++;
    if (p->gauge) brume_gauge_set(p->gauge, (double)c->n, c->label);
    pthread_cond_signal(&p->cv);
  }
  pthread_mutex_unlock(&p->mu);
  return vm;
}

void brume_pool_taken_done(brume_pool *p) {
  if (p == NULL) return;
  pthread_mutex_lock(&p->mu);
  BRUME_ENSURE(p->specialising > 0);
  p->specialising--;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

size_t brume_pool_ready(brume_pool *p) {
  if (p == NULL) return 0;
  pthread_mutex_lock(&p->mu);
  size_t n = 0;
  for (size_t i = 0; i < p->o.n_sizes; i++) n += p->c[i].n;
  pthread_mutex_unlock(&p->mu);
  return n;
}

uint64_t brume_pool_memory_mib(brume_pool *p) {
  if (p == NULL) return 0;
  pthread_mutex_lock(&p->mu);
  uint64_t mib = p->booting_mib;
  for (size_t i = 0; i < p->o.n_sizes; i++) mib += (uint64_t)p->c[i].n * p->c[i].memory_mib;
  pthread_mutex_unlock(&p->mu);
  return mib;
}

void brume_pool_stop(brume_pool *p) {
  if (p == NULL) return;
  pthread_mutex_lock(&p->mu);
  p->stopping = true;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  if (p->started) pthread_join(p->thread, NULL);
  size_t n = 0;
  for (size_t i = 0; i < p->o.n_sizes; i++) {
    pool_class *c = &p->c[i];
    for (size_t k = 0; k < c->n; k++) vm_discard(c->v[k]);
    n += c->n;
    c->n = 0;
    if (p->gauge) brume_gauge_set(p->gauge, 0, c->label);
    free(c->v);
  }
  brume_info("Pool stopped.", "destroyed=%zu", n);
  free(p->c);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->boot_cv);
  pthread_mutex_destroy(&p->boot_mu);
  free(p);
}
