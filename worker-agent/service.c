/* The Worker service's handlers and the jobs that carry them out (service.h). */
#include "service.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "brume/worker.pb-c.h"
#include "clock.h"
#include "domain.h"
#include "libvirt.h"
#include "log.h"
#include "resources.h"
#include "sandbox_spec.h"

/* How long a boot may take to reach brume-init (TCG under load included). */
/* Slack on top of the function's deadline for the guest's own Sandbox.Timedout answer. */
#define INVOKE_SLACK_MS 2000
/* Lambda's defaults when the spec leaves them 0. */
#define DEFAULT_TIMEOUT_MS 3000
#define DEFAULT_EPHEMERAL_MIB 512

/* The reason name that starts a failed call's message (common.proto, ErrorReason): the
 * worker's own for a sandbox in the wrong state and for code it could not fetch, else the
 * common one. */
static const char *reason_of(brume_status code) {
  if (code == BRUME_FAILED_PRECONDITION) return "InvalidSandboxStateException";
  if (code == BRUME_DATA_LOSS) return "CodeUnavailableException";
  return brume_status_reason(code);
}

static int reserve_boot(brume_worker_service *svc, uint32_t memory_mib, brume_err **err);
static void unreserve_boot(brume_worker_service *svc, uint32_t memory_mib);
static int destroy_sandbox(brume_worker_service *svc, brume_sbx *s, uint32_t grace_ms,
                           const char *request_id, const char *reason, brume_err **err);

/* A parked call and what its job needs. */
typedef struct job {
  brume_worker_service *svc;
  brume_rpc_call *call;
  const ProtobufCMessage *req;
  char *request_id;
  int64_t queued_us; /* when it was parked (debug logs: time spent waiting for a thread) */
} job;

static void job_free(job *j) {
  free(j->request_id);
  free(j);
}

/* Fails the call with err, the message starting with reason (NULL: from the code), logs it. */
static void job_fail(job *j, const char *reason, const brume_err *err) {
  if (reason == NULL) reason = reason_of(err->code);
  char q[512];
  brume_warn("Worker call failed.", "request_id=%s method=%s code=%d err=%s", j->request_id,
             brume_rpc_call_method(j->call), (int)err->code,
             brume_log_quote(q, sizeof(q), err->msg));
  brume_rpc_call_fail(j->call, err->code, "%s: %s", reason, err->msg);
}

/* The sandbox a request names, with a reference for the caller: INVALID_ARGUMENT for an empty
 * id, NOT_FOUND for an unknown one. */
static brume_sbx *named_sandbox(brume_worker_service *svc, const char *id, brume_err **err) {
  if (id[0] == '\0') {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "sandbox_id is missing");
    return NULL;
  }
  return brume_sandboxes_get(svc->table, id, err);
}

/* ---- CreateSandbox ---- */

/* Applies ev (INIT_FAILED or BROKEN) to s. True when the caller now owns the sandbox's
 * destruction; false when a Destroy had taken it first (it was TERMINATING) and carries it out. */
static bool claim_for_kill(brume_worker_service *svc, brume_sbx *s, brume_sandbox_event ev) {
  brume_sandbox_state before;
  return brume_sandboxes_apply(svc->table, s, ev, NULL, &before, NULL) >= 0 &&
         before != BRUME_SANDBOX_TERMINATING;
}

/* A sandbox taken from the pool holds the pool's refill boot back until its first invocation is
 * done (or it is gone): on 2 cores under TCG, a boot beside the cold start's first invocation
 * (right after CreateSandbox answers) costs it tens of milliseconds. The pool waits
 * BRUME_POOL_REFILL_DEFER_MS at most. */
static void release_pool_hold(brume_worker_service *svc, brume_sbx *s) {
  if (s && atomic_exchange(&s->holds_pool_refill, false)) brume_pool_taken_done(svc->pool);
}

/* Counts a sandbox destroyed (brume_worker_sandboxes_destroyed_total{reason}). */
static void count_destroyed(brume_worker_service *svc, const char *reason) {
  if (svc->destroyed) brume_counter_inc(svc->destroyed, 1, reason);
}

/* Destroys the domain of a sandbox claimed with ev, with no grace, and marks it GONE. */
static void destroy_claimed(brume_worker_service *svc, brume_sbx *s, brume_sandbox_event ev,
                            const char *request_id) {
  brume_err *err = NULL;
  if (s->dom && brume_libvirt_destroy(s->dom, &err) < 0) {
    char q[512];
    brume_error("Could not destroy a sandbox's domain.", "request_id=%s sandbox_id=%s err=%s",
                request_id, s->id, brume_log_quote(q, sizeof(q), err->msg));
    brume_err_clear(&err);
  }
  if (ev != BRUME_SANDBOX_EV_INIT_FAILED) /* INIT_FAILED is GONE already */
    brume_sandboxes_apply(svc->table, s, BRUME_SANDBOX_EV_DESTROYED, NULL, NULL, NULL);
  if (ev == BRUME_SANDBOX_EV_BROKEN) count_destroyed(svc, "broken");
  release_pool_hold(svc, s);
}

/* Kills a sandbox that never served or cannot serve again, unless a Destroy is at it already. */
static void kill_sandbox(brume_worker_service *svc, brume_sbx *s, brume_sandbox_event ev,
                         const char *request_id) {
  if (claim_for_kill(svc, s, ev)) destroy_claimed(svc, s, ev, request_id);
}

static void create_job(void *p) {
  job *j = p;
  brume_worker_service *svc = j->svc;
  const Brume__WorkerCreateSandboxRequest *req = (const void *)j->req;
  const Brume__SandboxSpec *spec = req->spec;
  int64_t t0 = brume_mono_us();
  brume_err *err = NULL;
  const char *reason = NULL;
  brume_sbx *s = NULL;
  Brume__GuestInitDone *done = NULL;
  brume_autoptr(brume_code) code = NULL;
  brume_autofree char *zip_path = NULL;
  brume_autofree char *function = NULL; /* "account/name version=V", for the log */
  /* A pool VM was taken: its refill waits for brume_pool_taken_done, which the sandbox's first
   * invocation calls once it is created (release_pool_hold), and this job if it is not. */
  bool pool_taken = false;
  brume_autofree Brume__GuestInit__EnvironmentEntry *envs = NULL;
  brume_autofree Brume__GuestInit__EnvironmentEntry **envp = NULL;

  if (brume_sandbox_spec_check(spec, &err) < 0) goto fail;
  if (atomic_load(&svc->draining)) {
    reason = "InsufficientCapacityException";
    brume_err_set(&err, BRUME_UNAVAILABLE, "this worker is draining: it takes no new sandboxes");
    goto fail;
  }

  bool cached = false;
  zip_path = brume_code_cache_get(svc->cache, spec->code->sha256, spec->code->url,
                                  spec->code->size_bytes, &cached, &err);
  if (zip_path == NULL) {
    reason = err->code == BRUME_INVALID_ARGUMENT ? "InvalidZipFileException"
                                                 : "CodeUnavailableException";
    if (err->code == BRUME_INTERNAL) reason = NULL;
    goto fail;
  }
  code = brume_code_cache_load(svc->cache, zip_path, &err);
  if (code == NULL) goto fail;
  int64_t code_fetch_us = brume_mono_us() - t0;

  /* A pooled VM of the same memory and vCPU count, already booted to its agent, else a boot. */
  uint32_t memory_mib = spec->resources->memory_mib;
  uint32_t vcpu_milli = spec->resources->vcpu_milli ? spec->resources->vcpu_milli
                                                    : brume_resources_vcpu_milli(memory_mib);
  uint32_t ephemeral_mib = spec->resources->ephemeral_storage_mib
                               ? spec->resources->ephemeral_storage_mib
                               : DEFAULT_EPHEMERAL_MIB;
  brume_pool_vm *vm =
      brume_pool_take(svc->pool, memory_mib, brume_resources_vcpus(vcpu_milli), ephemeral_mib);
  bool pool_hit = vm != NULL;
  pool_taken = pool_hit;
  int64_t vm_ready_us = 0;
  if (vm == NULL) {
    /* A miss: boot a VM of our own (full speed: the CPU cap comes after Init), if it fits. */
    if (reserve_boot(svc, memory_mib, &err) < 0) {
      reason = "InsufficientCapacityException";
      goto fail;
    }
    vm = brume_pool_boot(svc->pool, memory_mib, vcpu_milli, ephemeral_mib, &err);
    if (vm == NULL) {
      unreserve_boot(svc, memory_mib);
      goto fail;
    }
    vm_ready_us = brume_mono_us() - t0 - code_fetch_us;
  }
  /* The VM keeps the sandbox id it was booted for (its domain name and socket follow from it). */
  s = brume_sandboxes_add(svc->table, vm->id, spec, &err);
  if (!pool_hit) unreserve_boot(svc, memory_mib); /* the table counts it now */
  if (s == NULL) {
    brume_libvirt_destroy(vm->dom, NULL);
    unlink(vm->scratch);
    brume_pool_vm_free(vm);
    goto fail;
  }
  char *id = s->id;
  s->memory_mib = memory_mib;
  s->vcpu_milli = vcpu_milli;
  /* Hand the VM over to the sandbox: it is out of the pool, so nobody else has it. */
  s->name = vm->name;
  s->sock = vm->sock;
  s->console = vm->console;
  s->scratch = vm->scratch;
  s->dom = vm->dom;
  s->link = vm->link;
  vm->name = vm->sock = vm->console = vm->scratch = NULL;
  vm->dom = NULL;
  vm->link = NULL;
  brume_pool_vm_free(vm);

  Brume__GuestInit in = BRUME__GUEST_INIT__INIT;
  in.code = code->files;
  in.code_zip.data = code->zip;
  in.code_zip.len = code->zip_len;
  in.handler_mode = spec->handler_mode;
  in.handler = spec->handler;
  in.n_environment = spec->n_environment;
  envs = brume_xcalloc(spec->n_environment + 1, sizeof(*envs));
  envp = brume_xcalloc(spec->n_environment + 1, sizeof(*envp));
  for (size_t i = 0; i < spec->n_environment; i++) {
    brume__guest_init__environment_entry__init(&envs[i]);
    envs[i].key = spec->environment[i]->key;
    envs[i].value = spec->environment[i]->value;
    envp[i] = &envs[i];
  }
  in.environment = envp;
  in.function_name = spec->function->function_name;
  in.function_version = spec->function->version;
  in.memory_mib = s->memory_mib;
  in.function_arn = spec->function_arn;
  int64_t init_timeout = req->init_timeout_ms ? req->init_timeout_ms : svc->init_timeout_ms;
  in.init_timeout_ms = (uint32_t)init_timeout;
  in.tmp_mib = ephemeral_mib;
  int64_t ti = brume_mono_us();
  if (brume_guest_link_init(s->link, &in, &done, (int)init_timeout + 5000, &err) < 0) goto fail;
  int64_t init_rtt_us = brume_mono_us() - ti;

  Brume__WorkerCreateSandboxResponse resp = BRUME__WORKER_CREATE_SANDBOX_RESPONSE__INIT;
  resp.init_duration_us = (uint64_t)(brume_mono_us() - t0);
  resp.vm_ready_us = (uint64_t)vm_ready_us;
  resp.pool_hit = pool_hit;
  resp.runtime_init_us = done->runtime_init_us;
  int64_t sent_us = init_rtt_us - (int64_t)done->runtime_init_us;
  resp.code_load_us = (uint64_t)(code_fetch_us + (sent_us > 0 ? sent_us : 0));
  if (done->error) {
    kill_sandbox(svc, s, BRUME_SANDBOX_EV_INIT_FAILED, j->request_id);
    char q[512];
    brume_info("The function failed to initialise; its sandbox is destroyed.",
               "request_id=%s sandbox_id=%s type=%s message=%s", j->request_id, id,
               done->error->type, brume_log_quote(q, sizeof(q), done->error->message));
    resp.init_error = done->error;
    brume_rpc_call_reply(j->call, &resp.base);
    goto out;
  }
  s->init_duration_us = resp.init_duration_us; /* PROVISIONING: nobody else reads it yet */
  if (brume_sandboxes_apply(svc->table, s, BRUME_SANDBOX_EV_CREATED, NULL, NULL, &err) < 0) {
    /* The registration lease was lost during the creation (brume_worker_service_drop_stale):
     * placement dropped this host meanwhile, and may have it back by now. Answered as a success,
     * the sandbox would be handed out and destroyed under its caller. */
    if (brume_sandboxes_stale(svc->table, s)) {
      err->code = BRUME_UNAVAILABLE;
      count_destroyed(svc, "stale_lease");
    }
    goto fail;
  }
  atomic_fetch_add(&svc->created, 1);
  if (pool_hit) atomic_fetch_add(&svc->pool_hits, 1);
  if (pool_taken) {
    atomic_store(&s->holds_pool_refill, true);
    pool_taken = false;
  }
  resp.sandbox_id = id;
  /* The request (spec with it) is the call's: dead once answered. */
  function = brume_xasprintf("%s/%s version=%s", spec->function->account_id,
                             spec->function->function_name, spec->function->version);
  spec = NULL;
  brume_rpc_call_reply(j->call, &resp.base);

  /* The CPU cap comes after Init, which runs at full speed (a 128 MiB sandbox gets 7.2 % of a
   * CPU), and after the answer, as the freeze after an Invoke does: libvirt takes 3-13 ms to
   * set it (cgroups, then the domain's status file), a quarter of a pool hit. An Invoke that
   * comes in meanwhile runs uncapped for those milliseconds. A sandbox that cannot be capped is
   * destroyed: it must not run on without its share. The job holds the sandbox (and so its
   * domain handle) until it is done, even if a Destroy comes first. */
  uint32_t vcpus = brume_resources_vcpus(s->vcpu_milli);
  int64_t quota = brume_resources_vcpu_quota_us(
      brume_resources_host_vcpu_milli(s->vcpu_milli, svc->cpu_scale), vcpus, BRUME_CPU_PERIOD_US);
  int64_t tq = brume_mono_us();
  if (brume_libvirt_set_vcpu_quota(s->dom, BRUME_CPU_PERIOD_US, quota, &err) < 0) {
    /* Unless a Destroy took it first (then the failure is only that). */
    if (claim_for_kill(svc, s, BRUME_SANDBOX_EV_BROKEN)) {
      char q[512];
      brume_error("Could not cap a new sandbox's CPU; it is destroyed.",
                  "request_id=%s sandbox_id=%s err=%s", j->request_id, id,
                  brume_log_quote(q, sizeof(q), err->msg));
      destroy_claimed(svc, s, BRUME_SANDBOX_EV_BROKEN, j->request_id);
    }
    brume_err_clear(&err);
    goto out;
  }
  int64_t quota_us = brume_mono_us() - tq;
  brume_info(
      "Sandbox created.",
      "request_id=%s sandbox_id=%s function=%s memory_mib=%" PRIu32
      " pool_hit=%s init_ms=%.1f vm_ready_ms=%.1f code_ms=%.1f unpack_ms=%.1f runtime_ms=%.1f"
      " quota_ms=%.1f code_cached=%s",
      j->request_id, id, function, s->memory_mib, pool_hit ? "true" : "false",
      (double)resp.init_duration_us / 1000.0, (double)resp.vm_ready_us / 1000.0,
      (double)resp.code_load_us / 1000.0, (double)done->unpack_us / 1000.0,
      (double)done->runtime_init_us / 1000.0, (double)quota_us / 1000.0, cached ? "true" : "false");
  goto out;

fail:
  if (s) kill_sandbox(svc, s, BRUME_SANDBOX_EV_INIT_FAILED, j->request_id);
  job_fail(j, reason, err);
  brume_err_free(err);
out:
  if (pool_taken) brume_pool_taken_done(svc->pool);
  if (done) brume__guest_init_done__free_unpacked(done, NULL);
  brume_sandboxes_put(svc->table, s);
  job_free(j);
}

/* ---- Invoke ---- */

static void invoke_job(void *p) {
  job *j = p;
  brume_worker_service *svc = j->svc;
  const Brume__WorkerInvokeRequest *req = (const void *)j->req;
  brume_err *err = NULL;
  const char *reason = NULL;
  brume_sbx *s = NULL;
  Brume__GuestInvokeDone *done = NULL;

  if (req->payload.len > BRUME_WORKER_MAX_PAYLOAD) {
    reason = "RequestTooLargeException";
    brume_err_set(&err, BRUME_INVALID_ARGUMENT, "the payload (%zu bytes) is over %d bytes",
                  req->payload.len, BRUME_WORKER_MAX_PAYLOAD);
    goto fail;
  }
  s = named_sandbox(svc, req->sandbox_id, &err);
  if (s == NULL) goto fail;
  if (brume_sandboxes_apply(svc->table, s, BRUME_SANDBOX_EV_INVOKE_START, NULL, NULL, &err) < 0)
    goto fail;
  if (brume_sandboxes_sync_frozen(svc->table, s, NULL, &err) < 0) {
    kill_sandbox(svc, s, BRUME_SANDBOX_EV_BROKEN, j->request_id);
    brume_err_wrap(&err, "sandbox %s could not be thawed and is destroyed", s->id);
    goto fail;
  }

  int64_t now = brume_wall_ms();
  uint32_t timeout = s->spec->timeout_ms ? s->spec->timeout_ms : DEFAULT_TIMEOUT_MS;
  int64_t deadline = now + timeout;
  if (req->deadline_unix_ms > 0 && req->deadline_unix_ms < deadline)
    deadline = req->deadline_unix_ms;
  Brume__GuestInvoke inv = BRUME__GUEST_INVOKE__INIT;
  inv.request_id = req->request_id[0] ? req->request_id : j->request_id;
  inv.payload = req->payload;
  inv.deadline_unix_ms = deadline;
  int64_t left = deadline - now;
  int link_ms = (int)((left > 0 ? left : 0) + INVOKE_SLACK_MS);
  int64_t t0 = brume_mono_us();
  int rc = brume_guest_link_invoke(s->link, &inv, &done, link_ms, &err);
  int64_t took_us = brume_mono_us() - t0;
  if (rc < 0) {
    if (!claim_for_kill(svc, s, BRUME_SANDBOX_EV_BROKEN)) {
      /* Destroy cut the invocation off. */
      brume_err_clear(&err);
      brume_err_set(&err, BRUME_UNAVAILABLE, "sandbox %s was destroyed during the invocation",
                    s->id);
      goto fail;
    }
    destroy_claimed(svc, s, BRUME_SANDBOX_EV_BROKEN, j->request_id);
    /* The guest channel failed: ServiceException, and the sandbox is GONE. */
    err->code = BRUME_INTERNAL;
    brume_err_wrap(&err, "sandbox %s failed and is destroyed", s->id);
    goto fail;
  }
  atomic_fetch_add(&svc->invocations, 1);

  Brume__WorkerInvokeResponse resp = BRUME__WORKER_INVOKE_RESPONSE__INIT;
  resp.payload = done->payload;
  resp.function_error = done->error;
  if (req->want_log_tail) resp.log_tail = done->log_tail;
  resp.duration_us = done->duration_us ? done->duration_us : (uint64_t)took_us;
  resp.billed_duration_ms = (uint32_t)((resp.duration_us + 999) / 1000);
  resp.max_memory_used_mib = done->max_memory_used_mib;
  bool broken = done->sandbox_broken || brume_guest_link_runtime_exited(s->link, NULL);
  bool freeze = false, destroy = false, stale = false;
  if (broken) {
    /* TERMINATING now, destroyed after the answer: the caller learns of the timeout or the exit
     * without waiting for libvirt (0.2-0.9 s here). */
    destroy = claim_for_kill(svc, s, BRUME_SANDBOX_EV_BROKEN);
    resp.state = BRUME__SANDBOX_STATE__SANDBOX_STATE_TERMINATING;
    brume_info("The sandbox cannot serve again and is destroyed.",
               "request_id=%s sandbox_id=%s type=%s", j->request_id, s->id,
               done->error ? done->error->type : "-");
  } else {
    int st = brume_sandboxes_apply(svc->table, s, BRUME_SANDBOX_EV_INVOKE_END, NULL, NULL, &err);
    if (st < 0) {
      /* Destroy came while the function ran: the answer is lost with the sandbox. */
      brume_err_clear(&err);
      brume_err_set(&err, BRUME_UNAVAILABLE, "sandbox %s was destroyed during the invocation",
                    s->id);
      goto fail;
    }
    /* Placement dropped it while it ran (brume_worker_service_drop_stale): the answer still
     * goes back, then the sandbox goes. Nothing can invoke it meanwhile. */
    stale = brume_sandboxes_stale(svc->table, s);
    resp.state = stale ? BRUME__SANDBOX_STATE__SANDBOX_STATE_TERMINATING
                       : BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE;
    freeze = !stale && svc->freeze_after_ms == 0;
  }
  /* start_mono_us and end_mono_us (CLOCK_MONOTONIC, which every process of a machine shares)
   * bound the function's run: tests/cluster counts from them how many ran at once across
   * worker hosts that share one machine. */
  brume_debug("Invocation done.",
              "request_id=%s sandbox_id=%s duration_us=%" PRIu64 " link_us=%" PRId64
              " queued_us=%" PRId64 " start_mono_us=%" PRId64 " end_mono_us=%" PRId64 " error=%s",
              j->request_id, s->id, resp.duration_us, took_us, t0 - j->queued_us, t0, t0 + took_us,
              done->error ? done->error->type : "-");
  brume_rpc_call_reply(j->call, &resp.base);
  if (destroy) destroy_claimed(svc, s, BRUME_SANDBOX_EV_BROKEN, j->request_id);
  if (stale &&
      destroy_sandbox(svc, s, (uint32_t)svc->grace_ms, j->request_id, "stale_lease", &err) < 0) {
    char q[512];
    brume_error("Could not destroy a stale sandbox.", "request_id=%s sandbox_id=%s err=%s",
                j->request_id, s->id, brume_log_quote(q, sizeof(q), err->msg));
    brume_err_clear(&err);
  }
  /* Freeze after answering: the caller does not wait for the suspend. A request that took the
   * sandbox in between wins (FREEZE then fails on INVOKING, which is fine). */
  if (freeze &&
      brume_sandboxes_apply(svc->table, s, BRUME_SANDBOX_EV_FREEZE, NULL, NULL, NULL) >= 0 &&
      brume_sandboxes_sync_frozen(svc->table, s, NULL, &err) < 0) {
    char q[512];
    brume_warn("Could not freeze an idle sandbox.", "request_id=%s sandbox_id=%s err=%s",
               j->request_id, s->id, brume_log_quote(q, sizeof(q), err->msg));
    brume_err_clear(&err);
  }
  goto out;

fail:
  job_fail(j, reason, err);
  brume_err_free(err);
out:
  release_pool_hold(svc, s);
  if (done) brume__guest_invoke_done__free_unpacked(done, NULL);
  brume_sandboxes_put(svc->table, s);
  job_free(j);
}

/* ---- Freeze, Thaw ---- */

static void freeze_thaw(job *j, const char *sandbox_id, brume_sandbox_event ev) {
  brume_worker_service *svc = j->svc;
  brume_err *err = NULL;
  uint64_t us = 0;
  brume_sbx *s = NULL;
  s = named_sandbox(svc, sandbox_id, &err);
  if (s == NULL) goto fail;
  if (brume_sandboxes_apply(svc->table, s, ev, NULL, NULL, &err) < 0) goto fail;
  if (brume_sandboxes_sync_frozen(svc->table, s, &us, &err) < 0) goto fail;
  brume_debug(ev == BRUME_SANDBOX_EV_FREEZE ? "Sandbox frozen." : "Sandbox thawed.",
              "request_id=%s sandbox_id=%s duration_us=%" PRIu64, j->request_id, s->id, us);
  if (ev == BRUME_SANDBOX_EV_FREEZE) {
    Brume__WorkerFreezeResponse resp = BRUME__WORKER_FREEZE_RESPONSE__INIT;
    resp.duration_us = us;
    brume_rpc_call_reply(j->call, &resp.base);
  } else {
    Brume__WorkerThawResponse resp = BRUME__WORKER_THAW_RESPONSE__INIT;
    resp.duration_us = us;
    brume_rpc_call_reply(j->call, &resp.base);
  }
  goto out;
fail:
  job_fail(j, NULL, err);
  brume_err_free(err);
out:
  brume_sandboxes_put(svc->table, s);
  job_free(j);
}

static void freeze_job(void *p) {
  job *j = p;
  freeze_thaw(j, ((const Brume__WorkerFreezeRequest *)(const void *)j->req)->sandbox_id,
              BRUME_SANDBOX_EV_FREEZE);
}

static void thaw_job(void *p) {
  job *j = p;
  freeze_thaw(j, ((const Brume__WorkerThawRequest *)(const void *)j->req)->sandbox_id,
              BRUME_SANDBOX_EV_THAW);
}

/* ---- Destroy ---- */

/* Carries out DESTROY on s (graceful unless it is invoking) and counts it under reason (NULL: not
 * counted) unless another destroyer had it first. Returns the state it left. */
static int destroy_sandbox(brume_worker_service *svc, brume_sbx *s, uint32_t grace_ms,
                           const char *request_id, const char *reason, brume_err **err) {
  brume_sandbox_state before;
  unsigned act = 0;
  int st = brume_sandboxes_apply(svc->table, s, BRUME_SANDBOX_EV_DESTROY, &act, &before, err);
  if (st < 0) return -1;
  if (before == BRUME_SANDBOX_TERMINATING || before == BRUME_SANDBOX_GONE) return st;
  int64_t t0 = brume_mono_us();
  bool clean = false;
  if (before == BRUME_SANDBOX_IDLE) {
    /* The link is ours now (TERMINATING): thaw if needed, then a graceful shutdown. */
    brume_err *e = NULL;
    if (brume_sandboxes_sync_frozen(svc->table, s, NULL, &e) == 0 &&
        brume_guest_link_shutdown(s->link, grace_ms, &clean, (int)grace_ms + 2000, &e) == 0) {
    } else {
      char q[512];
      brume_warn("The sandbox did not shut down gracefully.", "request_id=%s sandbox_id=%s err=%s",
                 request_id, s->id, brume_log_quote(q, sizeof(q), e ? e->msg : "?"));
      brume_err_free(e);
    }
  }
  /* An invoking sandbox's link belongs to its invoker: destroying the domain cuts it off. */
  if (brume_libvirt_destroy(s->dom, err) < 0) return -1;
  release_pool_hold(svc, s);
  st = brume_sandboxes_apply(svc->table, s, BRUME_SANDBOX_EV_DESTROYED, NULL, NULL, err);
  if (reason) count_destroyed(svc, reason);
  brume_info("Sandbox destroyed.", "request_id=%s sandbox_id=%s was=%s clean=%s ms=%.1f",
             request_id, s->id, brume_sandbox_state_name(before), clean ? "true" : "false",
             (double)(brume_mono_us() - t0) / 1000.0);
  return st;
}

static void destroy_job(void *p) {
  job *j = p;
  brume_worker_service *svc = j->svc;
  const Brume__WorkerDestroyRequest *req = (const void *)j->req;
  brume_err *err = NULL;
  brume_sbx *s = NULL;
  s = named_sandbox(svc, req->sandbox_id, &err);
  if (s == NULL) goto fail;
  int st = destroy_sandbox(svc, s, req->grace_ms ? req->grace_ms : (uint32_t)svc->grace_ms,
                           j->request_id, "destroy", &err);
  if (st < 0) goto fail;
  Brume__WorkerDestroyResponse resp = BRUME__WORKER_DESTROY_RESPONSE__INIT;
  resp.state = (Brume__SandboxState)st;
  brume_rpc_call_reply(j->call, &resp.base);
  goto out;
fail:
  job_fail(j, NULL, err);
  brume_err_free(err);
out:
  brume_sandboxes_put(svc->table, s);
  job_free(j);
}

void brume_worker_service_destroy_all(brume_worker_service *svc) {
  size_t n = 0;
  char **ids = brume_sandboxes_ids(svc->table, &n);
  for (size_t i = 0; i < n; i++) {
    brume_sbx *s = brume_sandboxes_get(svc->table, ids[i], NULL);
    brume_err *err = NULL;
    if (s && destroy_sandbox(svc, s, (uint32_t)svc->grace_ms, "shutdown", NULL, &err) < 0) {
      /* A sandbox still PROVISIONING (cannot happen once the job pool stopped) or libvirt gone:
       * AUTODESTROY removes the domain when the connection closes. */
      char q[512];
      brume_warn("Could not destroy a sandbox at shutdown.", "sandbox_id=%s err=%s", ids[i],
                 brume_log_quote(q, sizeof(q), err->msg));
      brume_err_free(err);
    }
    brume_sandboxes_put(svc->table, s);
    free(ids[i]);
  }
  free(ids);
}

/* ---- stale sandboxes ---- */

typedef struct stale_job {
  brume_worker_service *svc;
  brume_sbx *s; /* a reference of the job's */
} stale_job;

/* Destroys one stale sandbox that was IDLE when it was marked: being stale, nobody can have
 * invoked it since (a Destroy may have come first: then this does nothing). */
static void stale_destroy_job(void *p) {
  stale_job *j = p;
  brume_err *err = NULL;
  if (destroy_sandbox(j->svc, j->s, (uint32_t)j->svc->grace_ms, "stale_lease", "stale_lease",
                      &err) < 0) {
    char q[512];
    brume_error("Could not destroy a stale sandbox.", "sandbox_id=%s err=%s", j->s->id,
                brume_log_quote(q, sizeof(q), err->msg));
    brume_err_free(err);
  }
  brume_sandboxes_put(j->svc->table, j->s);
  free(j);
}

void brume_worker_service_drop_stale(brume_worker_service *svc, int64_t lost_lease) {
  size_t n = 0, n_idle = 0;
  brume_sbx **idle = brume_sandboxes_mark_stale(svc->table, &n);
  while (idle[n_idle]) n_idle++;
  /* The count is a field: log messages stay fixed sentences to grep for. */
  brume_warn(
      "Registration lease expired while cut off from etcd; destroying the sandboxes "
      "placement has dropped.",
      "lease=%" PRId64 " sandboxes=%zu idle=%zu busy=%zu", lost_lease, n, n_idle, n - n_idle);
  for (size_t i = 0; i < n_idle; i++) {
    stale_job *j = brume_xmalloc(sizeof(*j));
    *j = (stale_job){.svc = svc, .s = idle[i]};
    brume_err *err = NULL;
    if (brume_workq_push(svc->wq, stale_destroy_job, j, &err) < 0) {
      /* The worker is stopping: brume_worker_service_destroy_all destroys it. */
      brume_err_free(err);
      brume_sandboxes_put(svc->table, idle[i]);
      free(j);
    }
  }
  free(idle);
}

/* ---- List, Stats (quick: answered on the server thread) ---- */

typedef struct list_ctx {
  const Brume__WorkerListRequest *req;
  const char *host_id;
  Brume__SandboxInfo **infos;
  size_t n, cap;
} list_ctx;

static void list_one(const brume_sbx *s, void *user) {
  list_ctx *c = user;
  const Brume__FunctionVersionRef *f = s->spec->function;
  /* A stale sandbox is on its way out, whatever it is doing: placement must not take it back
   * (its reconcile takes back or adopts the IDLE and INVOKING ones it has a record of). */
  brume_sandbox_state state = s->stale ? BRUME_SANDBOX_TERMINATING : s->fsm.state;
  if (c->req->account_id[0] && strcmp(c->req->account_id, f->account_id) != 0) return;
  if (c->req->function_name[0] && strcmp(c->req->function_name, f->function_name) != 0) return;
  if (c->req->state != BRUME__SANDBOX_STATE__SANDBOX_STATE_UNSPECIFIED &&
      (int)c->req->state != (int)state)
    return;
  if (c->n == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 16;
    c->infos = brume_xrealloc(c->infos, c->cap * sizeof(*c->infos));
  }
  Brume__SandboxInfo *i = brume_xcalloc(1, sizeof(*i));
  brume__sandbox_info__init(i);
  i->sandbox_id = brume_xstrdup(s->id);
  i->host_id = brume_xstrdup(c->host_id);
  Brume__FunctionVersionRef *fc = brume_xcalloc(1, sizeof(*fc));
  brume__function_version_ref__init(fc);
  fc->account_id = brume_xstrdup(f->account_id);
  fc->function_name = brume_xstrdup(f->function_name);
  fc->version = brume_xstrdup(f->version);
  fc->revision_id = brume_xstrdup(f->revision_id);
  i->function = fc;
  i->state = (Brume__SandboxState)state;
  i->frozen = s->fsm.frozen;
  Brume__ResourceSpec *r = brume_xcalloc(1, sizeof(*r));
  brume__resource_spec__init(r);
  r->memory_mib = s->memory_mib;
  r->ephemeral_storage_mib = s->spec->resources->ephemeral_storage_mib;
  r->vcpu_milli = s->vcpu_milli;
  i->resources = r;
  i->created_unix_ms = s->created_unix_ms;
  i->idle_since_unix_ms = s->idle_since_unix_ms;
  i->invocations = s->invocations;
  i->init_duration_us = s->init_duration_us;
  c->infos[c->n++] = i;
}

static void list_handler(brume_rpc_call *call, const ProtobufCMessage *request, void *user) {
  brume_worker_service *svc = user;
  list_ctx c = {.req = (const void *)request, .host_id = svc->host_id};
  brume_sandboxes_each(svc->table, list_one, &c);
  Brume__WorkerListResponse resp = BRUME__WORKER_LIST_RESPONSE__INIT;
  resp.n_sandboxes = c.n;
  resp.sandboxes = c.infos;
  brume_rpc_call_reply(call, &resp.base);
  for (size_t k = 0; k < c.n; k++) {
    Brume__SandboxInfo *i = c.infos[k];
    free(i->sandbox_id);
    free(i->host_id);
    free(i->function->account_id);
    free(i->function->function_name);
    free(i->function->version);
    free(i->function->revision_id);
    free(i->function);
    free(i->resources);
    free(i);
  }
  free(c.infos);
}

uint32_t brume_worker_host_vcpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (uint32_t)n : 1;
}

uint32_t brume_worker_host_memory_mib(void) {
  struct sysinfo si;
  if (sysinfo(&si) != 0) return 0;
  return (uint32_t)(((uint64_t)si.totalram * si.mem_unit) >> 20);
}

uint32_t brume_worker_host_available_mib(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (f == NULL) return 0;
  char line[256];
  unsigned long long kib = 0;
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) break;
  fclose(f);
  return (uint32_t)(kib >> 10);
}

typedef struct stats_ctx {
  uint32_t by_state[6];
  uint64_t memory, vcpu_milli;
  uint64_t provisioning_mib; /* of those, the sandboxes still being created */
  uint32_t n;
} stats_ctx;

static void stats_one(const brume_sbx *s, void *user) {
  stats_ctx *c = user;
  if (s->fsm.state >= 1 && s->fsm.state <= 5) c->by_state[s->fsm.state]++;
  c->memory += s->memory_mib;
  if (s->fsm.state == BRUME_SANDBOX_PROVISIONING) c->provisioning_mib += s->memory_mib;
  c->vcpu_milli += s->vcpu_milli;
  c->n++;
}

/* Host memory minus the reserve, the sandboxes, the pool and the boots under way (negative when
 * overcommitted). */
static int64_t headroom_mib(brume_worker_service *svc) {
  stats_ctx c = {0};
  brume_sandboxes_each(svc->table, stats_one, &c);
  int64_t used = (int64_t)svc->reserved_mib + (int64_t)c.memory +
                 (int64_t)brume_pool_memory_mib(svc->pool) +
                 (int64_t)atomic_load(&svc->booting_mib);
  return (int64_t)brume_worker_host_memory_mib() - used;
}

uint32_t brume_worker_free_memory_mib(brume_worker_service *svc) {
  int64_t h = headroom_mib(svc);
  return h <= 0 ? 0 : h > UINT32_MAX ? UINT32_MAX : (uint32_t)h;
}

uint32_t brume_worker_free_memory_published_mib(brume_worker_service *svc) {
  stats_ctx c = {0};
  brume_sandboxes_each(svc->table, stats_one, &c);
  int64_t h =
      headroom_mib(svc) + (int64_t)atomic_load(&svc->booting_mib) + (int64_t)c.provisioning_mib;
  return h <= 0 ? 0 : h > UINT32_MAX ? UINT32_MAX : (uint32_t)h;
}

uint32_t brume_worker_vcpu_milli_committed(brume_worker_service *svc) {
  stats_ctx c = {0};
  brume_sandboxes_each(svc->table, stats_one, &c);
  return c.vcpu_milli > UINT32_MAX ? UINT32_MAX : (uint32_t)c.vcpu_milli;
}

/* Counts memory_mib as booting if it fits in the free memory, so that two creations at once
 * cannot both take the last of it; release it with unreserve_boot once the VM is a sandbox (or
 * failed). UNAVAILABLE when it does not fit. */
static int reserve_boot(brume_worker_service *svc, uint32_t memory_mib, brume_err **err) {
  atomic_fetch_add(&svc->booting_mib, memory_mib);
  int64_t h = headroom_mib(svc); /* this boot included */
  if (h >= 0) return 0;
  atomic_fetch_sub(&svc->booting_mib, memory_mib);
  return brume_err_set(err, BRUME_UNAVAILABLE,
                       "this host has %" PRId64 " MiB free for sandboxes, %" PRIu32
                       " MiB asked (host %" PRIu32 " MiB, %" PRIu32 " MiB reserved)",
                       h + memory_mib > 0 ? h + memory_mib : 0, memory_mib,
                       brume_worker_host_memory_mib(), svc->reserved_mib);
}

static void unreserve_boot(brume_worker_service *svc, uint32_t memory_mib) {
  atomic_fetch_sub(&svc->booting_mib, memory_mib);
}

bool brume_worker_fits(void *svc, uint32_t memory_mib) {
  return headroom_mib(svc) >= (int64_t)memory_mib;
}

/* The host's figures now, as Stats answers them (but the counts by state, which stay in c). */
static void host_figures(brume_worker_service *svc, Brume__HostInfo *host, stats_ctx *c) {
  brume_sandboxes_each(svc->table, stats_one, c);
  brume__host_info__init(host);
  host->host_id = (char *)svc->host_id;
  host->address = (char *)svc->address;
  host->accelerator = (Brume__Accelerator)svc->accel;
  host->vcpus = brume_worker_host_vcpus();
  host->memory_mib = brume_worker_host_memory_mib();
  host->free_memory_mib = brume_worker_free_memory_mib(svc);
  host->host_memory_available_mib = brume_worker_host_available_mib();
  host->vcpu_milli_committed = (uint32_t)c->vcpu_milli;
  host->sandboxes = c->n;
  host->pool_ready = (uint32_t)brume_pool_ready(svc->pool);
  host->draining = atomic_load(&svc->draining);
  host->updated_unix_ms = brume_wall_ms();
}

static void stats_handler(brume_rpc_call *call, const ProtobufCMessage *request, void *user) {
  (void)request;
  brume_worker_service *svc = user;
  stats_ctx c = {0};
  Brume__HostInfo host;
  host_figures(svc, &host, &c);
  Brume__SandboxStateCount counts[5], *countp[5];
  size_t k = 0;
  for (int st = 1; st <= 5; st++) {
    if (c.by_state[st] == 0) continue;
    brume__sandbox_state_count__init(&counts[k]);
    counts[k].state = (Brume__SandboxState)st;
    counts[k].count = c.by_state[st];
    countp[k] = &counts[k];
    k++;
  }
  host.n_sandboxes_by_state = k;
  host.sandboxes_by_state = countp;
  Brume__WorkerStatsResponse resp = BRUME__WORKER_STATS_RESPONSE__INIT;
  resp.host = &host;
  resp.sandboxes_created = atomic_load(&svc->created);
  resp.pool_hits = atomic_load(&svc->pool_hits);
  resp.invocations = atomic_load(&svc->invocations);
  brume_rpc_call_reply(call, &resp.base);
}

/* ---- /metrics ---- */

enum {
  G_SANDBOXES,
  G_MEMORY,
  G_FREE,
  G_AVAILABLE,
  G_VCPUS,
  G_VCPU_COMMITTED,
  G_DRAINING,
  G_ACCELERATOR,
  G_COUNT
};

static const brume_gauge_spec gauge_specs[G_COUNT] = {
    [G_SANDBOXES] = {"brume_worker_sandboxes",
                     "Sandboxes on this host, by state: provisioning, idle, invoking, terminating.",
                     {"state"}},
    [G_MEMORY] = {"brume_worker_memory_bytes",
                  "The host's memory (reserved_memory, kept from the sandboxes, included).",
                  {NULL}},
    [G_FREE] = {"brume_worker_memory_free_bytes",
                "Memory for sandboxes left: the host's less the reserve, the sandboxes, the "
                "pool and the boots under way.",
                {NULL}},
    [G_AVAILABLE] = {"brume_worker_memory_available_bytes",
                     "The host's MemAvailable as the kernel reports it.",
                     {NULL}},
    [G_VCPUS] = {"brume_worker_vcpus", "Host CPUs for sandboxes.", {NULL}},
    [G_VCPU_COMMITTED] = {"brume_worker_vcpu_committed",
                          "Sum of the vCPU shares of the sandboxes, in CPUs.",
                          {NULL}},
    [G_DRAINING] = {"brume_worker_draining",
                    "1 while the worker takes no new sandboxes (Drain), 0 otherwise.",
                    {NULL}},
    [G_ACCELERATOR] = {"brume_worker_accelerator_info",
                       "Always 1; accelerator says what the microVMs run on: kvm or tcg.",
                       {"accelerator"}},
};

struct brume_worker_metrics {
  brume_metrics *reg;
  brume_gauge *g[G_COUNT];
};

#define MIB 1048576.0

/* The collector: Stats' figures, just before a scrape renders them. */
static void collect(void *user) {
  brume_worker_service *svc = user;
  brume_gauge **g = svc->metrics->g;
  stats_ctx c = {0};
  Brume__HostInfo host;
  host_figures(svc, &host, &c);
  /* Every state but GONE, which a sandbox leaves the table in, each with a series even at 0. */
  static const struct {
    brume_sandbox_state state;
    const char *name;
  } states[] = {{BRUME_SANDBOX_PROVISIONING, "provisioning"},
                {BRUME_SANDBOX_IDLE, "idle"},
                {BRUME_SANDBOX_INVOKING, "invoking"},
                {BRUME_SANDBOX_TERMINATING, "terminating"}};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(states); i++)
    brume_gauge_set(g[G_SANDBOXES], c.by_state[states[i].state], states[i].name);
  brume_gauge_set(g[G_MEMORY], host.memory_mib * MIB);
  brume_gauge_set(g[G_FREE], host.free_memory_mib * MIB);
  brume_gauge_set(g[G_AVAILABLE], host.host_memory_available_mib * MIB);
  brume_gauge_set(g[G_VCPUS], host.vcpus);
  brume_gauge_set(g[G_VCPU_COMMITTED], host.vcpu_milli_committed / 1000.0);
  brume_gauge_set(g[G_DRAINING], host.draining ? 1 : 0);
  brume_gauge_set(g[G_ACCELERATOR], 1, brume_accel_name(svc->accel));
}

void brume_worker_metrics_start(brume_worker_service *svc, brume_metrics *reg) {
  struct brume_worker_metrics *m = brume_xcalloc(1, sizeof(*m));
  m->reg = reg;
  brume_metrics_gauges(reg, gauge_specs, G_COUNT, m->g);
  svc->metrics = m;
  svc->destroyed = brume_metrics_counter(
      reg, "brume_worker_sandboxes_destroyed_total",
      "Sandboxes destroyed, by reason: destroy (the Destroy call), broken (timed out, runtime "
      "exited, failed channel), stale_lease (dropped by placement while the worker's "
      "registration lease was lost).",
      "reason", NULL);
  static const char *const reasons[] = {"destroy", "broken", "stale_lease"};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(reasons); i++)
    brume_counter_inc(svc->destroyed, 0, reasons[i]);
  brume_metrics_add_collect(reg, collect, svc);
}

void brume_worker_metrics_stop(brume_worker_service *svc) {
  if (svc->metrics == NULL) return;
  brume_metrics_remove_collect(svc->metrics->reg, collect, svc);
  brume_gauges_clear(svc->metrics->g, G_COUNT);
  free(svc->metrics);
  svc->metrics = NULL;
}

/* Answers at once: a flag, and a count of the table. */
static void drain_handler(brume_rpc_call *call, const ProtobufCMessage *request, void *user) {
  const Brume__WorkerDrainRequest *req = (const void *)request;
  brume_worker_service *svc = user;
  bool was = atomic_exchange(&svc->draining, req->draining);
  stats_ctx c = {0};
  brume_sandboxes_each(svc->table, stats_one, &c);
  if (was != req->draining)
    brume_info(req->draining ? "Draining: no new sandboxes." : "Draining ended.",
               "sandboxes=%" PRIu32, c.n);
  Brume__WorkerDrainResponse resp = BRUME__WORKER_DRAIN_RESPONSE__INIT;
  resp.sandboxes = c.n;
  brume_rpc_call_reply(call, &resp.base);
}

/* ---- the handler table ---- */

static void park(brume_rpc_call *call, const ProtobufCMessage *req, void *user, brume_workq_fn fn,
                 const char *request_id) {
  brume_worker_service *svc = user;
  job *j = brume_xcalloc(1, sizeof(*j));
  j->svc = svc;
  j->call = call;
  j->req = req;
  j->queued_us = brume_mono_us();
  const char *md = brume_rpc_call_metadata(call, BRUME_MD_REQUEST_ID);
  j->request_id = brume_xstrdup(request_id && request_id[0] ? request_id : md ? md : "-");
  brume_err *err = NULL;
  if (brume_workq_push(svc->wq, fn, j, &err) < 0) {
    job_fail(j, NULL, err);
    brume_err_free(err);
    job_free(j);
  }
}

static void create_handler(brume_rpc_call *call, const ProtobufCMessage *req, void *user) {
  park(call, req, user, create_job, NULL);
}
static void invoke_handler(brume_rpc_call *call, const ProtobufCMessage *req, void *user) {
  park(call, req, user, invoke_job,
       ((const Brume__WorkerInvokeRequest *)(const void *)req)->request_id);
}
static void freeze_handler(brume_rpc_call *call, const ProtobufCMessage *req, void *user) {
  park(call, req, user, freeze_job, NULL);
}
static void thaw_handler(brume_rpc_call *call, const ProtobufCMessage *req, void *user) {
  park(call, req, user, thaw_job, NULL);
}
static void destroy_handler(brume_rpc_call *call, const ProtobufCMessage *req, void *user) {
  park(call, req, user, destroy_job, NULL);
}

static const char *const method_names[] = {"CreateSandbox", "Invoke", "Freeze", "Thaw",
                                           "Destroy",       "List",   "Stats",  "Drain"};
static const brume_rpc_handler handlers[] = {create_handler, invoke_handler,  freeze_handler,
                                             thaw_handler,   destroy_handler, list_handler,
                                             stats_handler,  drain_handler};

const brume_rpc_handler *brume_worker_service_handlers(void) {
  BRUME_ENSURE(brume__worker__descriptor.n_methods == BRUME_ARRAY_LEN(handlers));
  for (size_t i = 0; i < BRUME_ARRAY_LEN(handlers); i++)
    BRUME_ENSURE(strcmp(brume__worker__descriptor.methods[i].name, method_names[i]) == 0);
  return handlers;
}
