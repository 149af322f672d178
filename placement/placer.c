/* The placer (placer.h). Table of contents: small helpers; destroying sandboxes (on the work
 * queue); recording a new sandbox; choosing a host; AcquireSandbox (warm, then cold: choose and
 * reserve a host, CreateSandbox asynchronously, record, hand out); ReleaseSandbox; the reaper;
 * hosts that go; the queries; new and free. The reconcile loop and provisioned concurrency are in
 * reconcile.c; what both files share is in placer_internal.h. */
#include "placer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brume/worker.pb-c.h"
#include "clock.h"
#include "log.h"
#include "mem.h"
#include "placer_internal.h"
#include "resources.h"
#include "sandbox_store.h"

char *brume_placer_function_key(const Brume__FunctionVersionRef *f, brume_err **err) {
  if (f == NULL) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "spec.function is missing");
    return NULL;
  }
  const char *parts[] = {f->account_id, f->function_name, f->version, f->revision_id};
  const char *names[] = {"account_id", "function_name", "version", "revision_id"};
  for (size_t i = 0; i < 4; i++) {
    if (parts[i][0] == '\0' && i < 3) {
      brume_err_set(err, BRUME_INVALID_ARGUMENT, "spec.function.%s is missing", names[i]);
      return NULL;
    }
    if (strchr(parts[i], '/')) {
      brume_err_set(err, BRUME_INVALID_ARGUMENT, "spec.function.%s holds a '/'", names[i]);
      return NULL;
    }
  }
  return brume_xasprintf("%s/%s/%s/%s", f->account_id, f->function_name, f->version,
                         f->revision_id);
}

uint32_t placer_vcpu_milli(const Brume__ResourceSpec *r) {
  return r->vcpu_milli ? r->vcpu_milli : brume_resources_vcpu_milli(r->memory_mib);
}

/* How long a sandbox of spec may stay held before placement takes it back. */
static int64_t hold_ms(const brume_placer *p, const Brume__SandboxSpec *spec) {
  return (spec->timeout_ms ? spec->timeout_ms : TIMEOUT_MAX_MS) + p->o.hold_margin_ms;
}

/* Copies host_id's address into addr; false when the host is not registered (any more). */
bool placer_host_addr(brume_placer *p, const char *host_id, char addr[ID_MAX]) {
  brume_hosts *h = brume_host_watch_lock(p->hosts);
  const brume_host *host = brume_hosts_get(h, host_id);
  if (host) snprintf(addr, ID_MAX, "%s", host->addr);
  brume_host_watch_unlock(p->hosts);
  return host != NULL;
}

void placer_log_err(const char *what, const char *fields, const char *a, const char *b,
                    const brume_err *err) {
  char q[512];
  char line[ID_MAX * 3];
  snprintf(line, sizeof(line), fields, a, b);
  brume_warn(what, "%s err=%s", line, brume_log_quote(q, sizeof(q), err->msg));
}

/* ---- destroying sandboxes ---- */

/* Destroys sandbox id on host_id (blocking) and deletes its record; NOT_FOUND on the worker is
 * fine (it lost the sandbox already). A host that is gone is not called. */
void placer_destroy_now(brume_placer *p, const char *host_id, const char *id,
                        int64_t mod_revision) {
  char addr[ID_MAX];
  brume_autoptr(brume_err) err = NULL;
  if (placer_host_addr(p, host_id, addr)) {
    brume_rpc_client *c = brume_rpc_pool_get(p->workers, addr, &err);
    Brume__WorkerDestroyRequest req = BRUME__WORKER_DESTROY_REQUEST__INIT;
    req.sandbox_id = (char *)id;
    brume_autoptr(ProtobufCMessage) reply = NULL;
    brume_rpc_call_opts co = {.deadline_ms = WORKER_CALL_MS};
    if (c == NULL || brume_rpc_unary(c, &brume__worker__descriptor, W_DESTROY, &req.base, &reply,
                                     &co, &err) < 0) {
      if (err->code != BRUME_NOT_FOUND)
        placer_log_err("Could not destroy a sandbox on its worker.", "host_id=%s sandbox_id=%s",
                       host_id, id, err);
      brume_err_clear(&err);
    }
  }
  if (brume_sandbox_store_delete(p->o.etcd, p->prefix, id, mod_revision, &err) < 0)
    placer_log_err("Could not delete a sandbox's record in etcd.", "host_id=%s sandbox_id=%s",
                   host_id, id, err);
}

/* The leaving set, under p->mu. */
bool placer_leaving_has(const brume_placer *p, const char *id) {
  for (size_t i = 0; i < p->n_leaving; i++)
    if (strcmp(p->leaving[i], id) == 0) return true;
  return false;
}

static void leaving_add(brume_placer *p, const char *id) {
  p->leaving = brume_xrealloc(p->leaving, (p->n_leaving + 1) * sizeof(*p->leaving));
  p->leaving[p->n_leaving++] = brume_xstrdup(id);
}

static void leaving_remove(brume_placer *p, const char *id) {
  for (size_t i = 0; i < p->n_leaving; i++)
    if (strcmp(p->leaving[i], id) == 0) {
      free(p->leaving[i]);
      p->leaving[i] = p->leaving[--p->n_leaving];
      return;
    }
}

typedef struct destroy_job {
  brume_placer *p;
  char *host_id, *id;
  bool host_gone; /* only the record to delete */
} destroy_job;

static void destroy_job_run(void *arg) {
  destroy_job *j = arg;
  if (j->host_gone) {
    brume_autoptr(brume_err) err = NULL;
    if (brume_sandbox_store_delete(j->p->o.etcd, j->p->prefix, j->id, 0, &err) < 0)
      placer_log_err("Could not delete a sandbox's record in etcd.", "host_id=%s sandbox_id=%s",
                     j->host_id, j->id, err);
  } else {
    placer_destroy_now(j->p, j->host_id, j->id, 0);
  }
  pthread_mutex_lock(&j->p->mu);
  leaving_remove(j->p, j->id);
  pthread_mutex_unlock(&j->p->mu);
  free(j->host_id);
  free(j->id);
  free(j);
}

/* A sandbox that has left the table: destroyed (and its record deleted) on the work queue. */
static void destroy_later(brume_placer *p, const char *host_id, const char *id, const char *reason,
                          bool host_gone) {
  brume_counter_inc(p->destroyed, 1, reason);
  destroy_job *j = brume_xmalloc(sizeof(*j));
  *j = (destroy_job){
      .p = p, .host_id = brume_xstrdup(host_id), .id = brume_xstrdup(id), .host_gone = host_gone};
  brume_autoptr(brume_err) err = NULL;
  pthread_mutex_lock(&p->mu);
  leaving_add(p, id);
  pthread_mutex_unlock(&p->mu);
  if (brume_workq_push(p->o.wq, destroy_job_run, j, &err) < 0) {
    pthread_mutex_lock(&p->mu);
    leaving_remove(p, id);
    pthread_mutex_unlock(&p->mu);
    /* Stopping: the reconcile of the next start destroys it (an orphan once idle). */
    brume_info("A sandbox is left to the next start: this daemon is stopping.",
               "host_id=%s sandbox_id=%s reason=%s", host_id, id, reason);
    free(j->host_id);
    free(j->id);
    free(j);
  }
}

/* Takes the sandboxes of ids out of the table (those still in it) and destroys them. */
void placer_remove_and_destroy(brume_placer *p, char **ids, const char *reason) {
  size_t n = 0;
  for (char **id = ids; *id; id++) n++;
  char **hosts = brume_xcalloc(n + 1, sizeof(*hosts));
  pthread_mutex_lock(&p->mu);
  for (size_t i = 0; i < n; i++) {
    const brume_placed *s = brume_table_get(p->table, ids[i]);
    if (s == NULL) continue;
    hosts[i] = brume_xstrdup(s->host_id);
    brume_table_remove(p->table, ids[i]);
  }
  pthread_mutex_unlock(&p->mu);
  for (size_t i = 0; i < n; i++) {
    if (hosts[i] == NULL) continue;
    brume_info("A sandbox leaves placement.", "host_id=%s sandbox_id=%s reason=%s", hosts[i],
               ids[i], reason);
    destroy_later(p, hosts[i], ids[i], reason, false);
    free(hosts[i]);
  }
  free(hosts);
}

/* ---- recording a new sandbox ---- */

/* Adds s to the table, unless its host went meanwhile, then records it in etcd (in that order:
 * a reconcile that sees the record finds the sandbox in the table already, and does not take it
 * for one to take back). On failure the sandbox is destroyed and err says why (UNAVAILABLE). */
int placer_record_and_add(brume_placer *p, const placer_new_sandbox *s, brume_err **err) {
  /* Under the hosts' lock: a host that goes after this is dropped with the sandbox in it. */
  brume_hosts *h = brume_host_watch_lock(p->hosts);
  bool host_there = brume_hosts_get(h, s->host_id) != NULL;
  if (host_there) {
    brume_table_entry e = {.id = s->id,
                           .host_id = s->host_id,
                           .function = s->function,
                           .memory_mib = s->memory_mib,
                           .vcpu_milli = s->vcpu_milli,
                           .provisioned = s->provisioned,
                           .caller = s->caller,
                           .held_until_ms = s->held_until_ms};
    pthread_mutex_lock(&p->mu);
    int rc = brume_table_add(p->table, &e, brume_mono_ms(), err);
    pthread_mutex_unlock(&p->mu);
    if (rc < 0) {
      brume_host_watch_unlock(p->hosts);
      return brume_err_wrap(err, "ServiceException: the new sandbox");
    }
  }
  brume_host_watch_unlock(p->hosts);
  if (!host_there) {
    placer_destroy_now(p, s->host_id, s->id, 0);
    return brume_err_set(err, BRUME_UNAVAILABLE,
                         "ServiceUnavailableException: host %s went away during the cold start",
                         s->host_id);
  }
  brume_sandbox_record rec = {
      .id = (char *)s->id,
      .owner = p->daemon_id,
      .host_id = (char *)s->host_id,
      .function = (char *)s->function,
      .memory_mib = s->memory_mib,
      .vcpu_milli = s->vcpu_milli,
      .provisioned = s->provisioned,
      .created_unix_ms = brume_wall_ms(),
  };
  if (brume_sandbox_store_put(p->o.etcd, p->prefix, &rec, err) < 0) {
    /* Out of the table again, unless an idle one was taken meanwhile (its caller keeps it; it
     * has no record, which only a restart would miss). */
    pthread_mutex_lock(&p->mu);
    const brume_placed *t = brume_table_get(p->table, s->id);
    bool ours = t && (s->caller ? t->held && strcmp(t->caller, s->caller) == 0 : !t->held);
    if (ours) brume_table_remove(p->table, s->id);
    pthread_mutex_unlock(&p->mu);
    if (ours) placer_destroy_now(p, s->host_id, s->id, 0);
    return brume_err_wrap(err,
                          "ServiceUnavailableException: the new sandbox could not be recorded in "
                          "etcd%s",
                          ours ? " (it was destroyed)" : "");
  }
  return 0;
}

/* ---- choosing a host ---- */

/* How long a reservation outlives its ended call when no registration follows (see
 * brume_hosts_expire): three times the worker's publishing interval. */
#define RESERVATION_AFTER_MS 3000

typedef struct count_arg {
  brume_placer *p;
  const char *function;
  const char *avoid; /* a host that refused this cold start: chosen only if no other fits */
} count_arg;

/* Called by brume_hosts_choose under the hosts' lock: the table's mutex comes second. */
static size_t count_on_host(void *arg, const char *host_id) {
  count_arg *c = arg;
  if (c->avoid && strcmp(c->avoid, host_id) == 0) return SIZE_MAX / 2;
  pthread_mutex_lock(&c->p->mu);
  size_t n = brume_table_count_on_host(c->p->table, c->function, host_id);
  pthread_mutex_unlock(&c->p->mu);
  return n;
}

/* A host for a new sandbox of function, its room reserved: host_id and addr filled, the
 * reservation returned (0 and err when no host has room). */
uint64_t placer_pick_host(brume_placer *p, const char *function, uint32_t memory_mib,
                          uint32_t vcpu_milli, const char *avoid, char host_id[ID_MAX],
                          char addr[ID_MAX], brume_err **err) {
  count_arg ca = {.p = p, .function = function, .avoid = avoid};
  brume_hosts *h = brume_host_watch_lock(p->hosts);
  brume_hosts_expire(h, brume_mono_ms(), RESERVATION_AFTER_MS);
  uint64_t r = 0;
  const brume_host *host = brume_hosts_choose(h, memory_mib, vcpu_milli, count_on_host, &ca, err);
  if (host) {
    snprintf(host_id, ID_MAX, "%s", host->id);
    snprintf(addr, ID_MAX, "%s", host->addr);
    r = brume_hosts_reserve(h, host_id, memory_mib, vcpu_milli, err);
    brume_debug("Room reserved for a cold start.",
                "host_id=%s reservation=%" PRIu64 " memory_mib=%u free_after_mib=%u", host_id, r,
                memory_mib, brume_hosts_free_mib(h, host_id));
  }
  brume_host_watch_unlock(p->hosts);
  return r;
}

/* created: the worker made a sandbox (see brume_hosts_end_reservation). */
void placer_end_reservation(brume_placer *p, const char *host_id, uint64_t r, bool created) {
  brume_hosts *h = brume_host_watch_lock(p->hosts);
  brume_hosts_end_reservation(h, host_id, r, created, brume_mono_ms());
  brume_debug("A cold start's reservation ended.",
              "host_id=%s reservation=%" PRIu64 " created=%s free_after_mib=%u", host_id, r,
              created ? "true" : "false", brume_hosts_free_mib(h, host_id));
  brume_host_watch_unlock(p->hosts);
}

/* A worker's error, with the host named. The worker's message leads with its reason, after the
 * rpc client's "<target> <method>: ": the reason leads here too. */
void placer_worker_error(brume_err **err, const brume_err *werr, const char *host_id) {
  const char *msg = werr->msg, *ex = strstr(msg, "Exception: ");
  if (ex) {
    while (ex > msg && ex[-1] != ' ') ex--;
    msg = ex;
  }
  brume_err_set(err, werr->code, "%s (host %s)", msg, host_id);
}

/* ---- AcquireSandbox ---- */

/* CreateSandbox calls one cold start may make: a host that refuses for capacity is followed by
 * one try on another. */
#define COLD_ATTEMPTS 2

/* A cold start under way. */
typedef struct cold {
  brume_placer *p;
  const Brume__AcquireSandboxRequest *req;
  char *function;
  char host_id[ID_MAX], addr[ID_MAX];
  uint64_t reservation;
  int attempts;         /* CreateSandbox calls made */
  char refused[ID_MAX]; /* the host that last refused for capacity, "" if none */
  int64_t deadline_ms;  /* monotonic: when the caller's deadline passes */
  int64_t t0_us;
  char *request_id;
  brume_placer_done done;
  brume_placer_gone gone;
  void *user;
  Brume__WorkerCreateSandboxResponse *resp;
} cold;

static void cold_send(cold *c);

static void cold_free(cold *c) {
  if (c->resp) protobuf_c_message_free_unpacked(&c->resp->base, NULL);
  free(c->function);
  free(c->request_id);
  free(c);
}

static void cold_fail(cold *c, const brume_err *err) {
  brume_counter_inc(c->p->acquires, 1, "error");
  c->done(c->user, NULL, err);
  cold_free(c);
}

/* On a work-queue thread: the worker made the sandbox; record it, hand it out. */
static void cold_record(void *arg) {
  cold *c = arg;
  brume_placer *p = c->p;
  const Brume__SandboxSpec *spec = c->req->spec;
  bool gone = c->gone && c->gone(c->user);
  int64_t held_ms = hold_ms(p, spec);
  placer_new_sandbox s = {.id = c->resp->sandbox_id,
                          .host_id = c->host_id,
                          .function = c->function,
                          .memory_mib = spec->resources->memory_mib,
                          .vcpu_milli = placer_vcpu_milli(spec->resources),
                          .caller = gone ? NULL : c->req->caller_id,
                          .held_until_ms = brume_mono_ms() + held_ms};
  brume_autoptr(brume_err) err = NULL;
  if (placer_record_and_add(p, &s, &err) < 0) {
    cold_fail(c, err);
    return;
  }
  brume_counter_inc(p->acquires, 1, "cold");
  brume_histogram_observe(p->cold_seconds, (double)(brume_mono_us() - c->t0_us) / 1e6,
                          c->resp->pool_hit ? "true" : "false");
  brume_info(gone ? "Sandbox created; its caller had gone, so it is idle." : "Sandbox created.",
             "request_id=%s function=%s host_id=%s sandbox_id=%s pool_hit=%s init_us=%" PRIu64,
             c->request_id ? c->request_id : "-", c->function, c->host_id, s.id,
             c->resp->pool_hit ? "true" : "false", c->resp->init_duration_us);
  brume_placer_acquired a = {.worker_address = c->addr,
                             .host_id = c->host_id,
                             .sandbox_id = s.id,
                             .cold = true,
                             .pool_hit = c->resp->pool_hit,
                             .init_duration_us = c->resp->init_duration_us,
                             .lease_deadline_unix_ms = brume_wall_ms() + held_ms};
  c->done(c->user, &a, NULL);
  cold_free(c);
}

/* On the worker client's completion thread: must not block. */
static void cold_created(void *user, ProtobufCMessage *reply, const brume_err *werr) {
  cold *c = user;
  brume_placer *p = c->p;
  const Brume__WorkerCreateSandboxResponse *made = (const void *)reply;
  placer_end_reservation(p, c->host_id, c->reservation, made && made->init_error == NULL);
  brume_autoptr(brume_err) err = NULL;
  if (reply == NULL) {
    placer_worker_error(&err, werr, c->host_id);
    placer_log_err("A cold start failed.", "function=%s host_id=%s", c->function, c->host_id, err);
    /* The worker had no room (or began draining) before its registration said so: once more,
     * on another host if one fits. */
    if (werr->code == BRUME_UNAVAILABLE && strstr(werr->msg, "InsufficientCapacityException") &&
        c->attempts < COLD_ATTEMPTS && !atomic_load(&p->stopping)) {
      snprintf(c->refused, sizeof(c->refused), "%s", c->host_id);
      brume_counter_inc(p->cold_retries, 1);
      cold_send(c);
      return;
    }
    cold_fail(c, err);
    return;
  }
  c->resp = (Brume__WorkerCreateSandboxResponse *)reply;
  if (c->resp->init_error) {
    brume_counter_inc(p->acquires, 1, "init_error");
    brume_info("A cold start's function failed to initialise.",
               "request_id=%s function=%s host_id=%s type=%s", c->request_id ? c->request_id : "-",
               c->function, c->host_id, c->resp->init_error->type);
    brume_placer_acquired a = {.worker_address = c->addr,
                               .host_id = c->host_id,
                               .cold = true,
                               .pool_hit = c->resp->pool_hit,
                               .init_duration_us = c->resp->init_duration_us,
                               .init_error = c->resp->init_error};
    c->done(c->user, &a, NULL);
    cold_free(c);
    return;
  }
  if (brume_workq_push(p->o.wq, cold_record, c, &err) < 0) {
    /* Stopping: the sandbox is an orphan for the next start's reconcile. */
    brume_err_clear(&err);
    brume_err_set(&err, BRUME_UNAVAILABLE,
                  "ServiceUnavailableException: this placement daemon is shutting down");
    cold_fail(c, err);
  }
}

/* Chooses a host (avoiding one that refused) and sends CreateSandbox there; fails c when no
 * host has room or the call cannot start. */
static void cold_send(cold *c) {
  brume_placer *p = c->p;
  const Brume__SandboxSpec *spec = c->req->spec;
  brume_autoptr(brume_err) err = NULL;
  int64_t left = c->deadline_ms - brume_mono_ms();
  if (left <= 0) {
    brume_err_set(&err, BRUME_DEADLINE_EXCEEDED, "the cold start ran out of time (host %s refused)",
                  c->refused);
    cold_fail(c, err);
    return;
  }
  c->reservation = placer_pick_host(p, c->function, spec->resources->memory_mib,
                                    placer_vcpu_milli(spec->resources),
                                    c->refused[0] ? c->refused : NULL, c->host_id, c->addr, &err);
  if (c->reservation == 0) {
    cold_fail(c, err);
    return;
  }
  c->attempts++;
  brume_rpc_client *client = brume_rpc_pool_get(p->workers, c->addr, &err);
  Brume__WorkerCreateSandboxRequest wreq = BRUME__WORKER_CREATE_SANDBOX_REQUEST__INIT;
  wreq.spec = (Brume__SandboxSpec *)spec;
  wreq.caller_id = p->caller_id;
  brume_rpc_call_opts co = {.deadline_ms = left, .request_id = c->request_id};
  if (client == NULL || brume_rpc_unary_async(client, &brume__worker__descriptor, W_CREATE,
                                              &wreq.base, &co, cold_created, c, &err) < 0) {
    placer_end_reservation(p, c->host_id, c->reservation, false);
    cold_fail(c, err);
  }
}

static void cold_start(brume_placer *p, const Brume__AcquireSandboxRequest *req, char *function,
                       int64_t deadline_ms, const char *request_id, brume_placer_done done,
                       brume_placer_gone gone, void *user) {
  cold *c = brume_xcalloc(1, sizeof(*c));
  *c = (cold){
      .p = p,
      .req = req,
      .function = function,
      .deadline_ms = brume_mono_ms() + (deadline_ms > 0 ? deadline_ms : p->o.create_timeout_ms),
      .t0_us = brume_mono_us(),
      .request_id = request_id ? brume_xstrdup(request_id) : NULL,
      .done = done,
      .gone = gone,
      .user = user};
  cold_send(c);
}

void brume_placer_acquire(brume_placer *p, const Brume__AcquireSandboxRequest *req,
                          int64_t deadline_ms, const char *request_id, brume_placer_done done,
                          brume_placer_gone gone, void *user) {
  brume_autoptr(brume_err) err = NULL;
  char *function = brume_placer_function_key(req->spec->function, &err);
  if (function == NULL) {
    done(user, NULL, err);
    return;
  }
  if (atomic_load(&p->stopping)) {
    free(function);
    brume_err_set(&err, BRUME_UNAVAILABLE,
                  "ServiceUnavailableException: this placement daemon is shutting down");
    done(user, NULL, err);
    return;
  }
  int64_t held_ms = hold_ms(p, req->spec);
  /* A warm sandbox whose host went in between is being dropped with it: take another. */
  for (;;) {
    char id[ID_MAX], host_id[ID_MAX], addr[ID_MAX];
    pthread_mutex_lock(&p->mu);
    const brume_placed *s =
        brume_table_take(p->table, function, req->caller_id, brume_mono_ms() + held_ms);
    if (s) {
      snprintf(id, sizeof(id), "%s", s->id);
      snprintf(host_id, sizeof(host_id), "%s", s->host_id);
    }
    pthread_mutex_unlock(&p->mu);
    if (s == NULL) break;
    if (!placer_host_addr(p, host_id, addr)) continue;
    brume_counter_inc(p->acquires, 1, "warm");
    brume_placer_acquired a = {.worker_address = addr,
                               .host_id = host_id,
                               .sandbox_id = id,
                               .lease_deadline_unix_ms = brume_wall_ms() + held_ms};
    free(function);
    done(user, &a, NULL);
    return;
  }
  if (req->warm_only) {
    free(function);
    brume_counter_inc(p->acquires, 1, "no_idle");
    brume_placer_acquired a = {.no_idle_sandbox = true};
    done(user, &a, NULL);
    return;
  }
  cold_start(p, req, function, deadline_ms, request_id, done, gone, user);
}

/* ---- ReleaseSandbox ---- */

int brume_placer_release(brume_placer *p, const char *id, const char *caller, bool reusable,
                         Brume__SandboxState *state, brume_err **err) {
  char host_id[ID_MAX] = "";
  pthread_mutex_lock(&p->mu);
  const brume_placed *s = brume_table_get(p->table, id);
  if (s) {
    snprintf(host_id, sizeof(host_id), "%s", s->host_id);
    if (s->held && s->caller && strcmp(s->caller, CALLER_UNKNOWN) == 0) caller = CALLER_UNKNOWN;
  }
  int rc = brume_table_give_back(p->table, id, caller, reusable, brume_mono_ms(), err);
  pthread_mutex_unlock(&p->mu);
  if (rc < 0) return -1;
  brume_counter_inc(p->releases, 1, reusable ? "idle" : "destroyed");
  if (reusable) {
    *state = BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE;
    return 0;
  }
  destroy_later(p, host_id, id, "released", false);
  *state = BRUME__SANDBOX_STATE__SANDBOX_STATE_TERMINATING;
  return 0;
}

/* ---- the reaper ---- */

void placer_update_gauges(brume_placer *p) {
  size_t held = 0, n;
  pthread_mutex_lock(&p->mu);
  n = brume_table_count(p->table);
  for (size_t i = 0; i < n; i++) held += brume_table_at(p->table, i)->held;
  pthread_mutex_unlock(&p->mu);
  brume_gauge_set(p->sandboxes, (double)(n - held), "idle");
  brume_gauge_set(p->sandboxes, (double)held, "held");
}

static void reap(void *arg) {
  brume_placer *p = arg;
  int64_t now = brume_mono_ms();
  pthread_mutex_lock(&p->mu);
  char **idle = brume_table_idle_over(p->table, now, p->o.keep_warm_ms);
  char **overdue = brume_table_overdue(p->table, now);
  pthread_mutex_unlock(&p->mu);
  /* Between the two locks a sandbox may have been taken: placer_remove_and_destroy looks again. */
  if (idle[0]) {
    char **fresh = idle;
    pthread_mutex_lock(&p->mu);
    size_t k = 0;
    for (size_t i = 0; fresh[i]; i++) {
      const brume_placed *s = brume_table_get(p->table, fresh[i]);
      if (s && !s->held && now - s->idle_since_ms >= p->o.keep_warm_ms)
        fresh[k++] = fresh[i];
      else
        free(fresh[i]);
    }
    fresh[k] = NULL;
    pthread_mutex_unlock(&p->mu);
    placer_remove_and_destroy(p, fresh, "keep_warm");
  }
  if (overdue[0]) placer_remove_and_destroy(p, overdue, "overdue");
  brume_table_ids_free(idle);
  brume_table_ids_free(overdue);
  placer_update_gauges(p);
}

/* ---- hosts that go ---- */

static void host_gone(void *arg, const char *host_id) {
  brume_placer *p = arg;
  pthread_mutex_lock(&p->mu);
  char **ids = brume_table_drop_host(p->table, host_id);
  pthread_mutex_unlock(&p->mu);
  size_t n = 0;
  for (char **id = ids; *id; id++, n++) destroy_later(p, host_id, *id, "host_gone", true);
  brume_warn("A host went away: its sandboxes are dropped and no work goes there.",
             "host_id=%s sandboxes=%zu", host_id, n);
  brume_table_ids_free(ids);
}

/* ---- the reconcile loop (reconcile.c) ---- */

static void reconcile_tick(void *arg) {
  brume_placer_reconcile(arg);
}

/* ---- queries ---- */

Brume__HostInfo **brume_placer_hosts(brume_placer *p, const char *host_id, size_t *n) {
  brume_hosts *h = brume_host_watch_lock(p->hosts);
  size_t nh = brume_hosts_count(h), k = 0;
  Brume__HostInfo **v = brume_xcalloc(nh + 1, sizeof(*v));
  pthread_mutex_lock(&p->mu);
  for (size_t i = 0; i < nh; i++) {
    const brume_host *host = brume_hosts_at(h, i);
    if (host_id && host_id[0] && strcmp(host_id, host->id) != 0) continue;
    Brume__HostInfo *hi = brume_xmalloc(sizeof(*hi));
    brume__host_info__init(hi);
    hi->host_id = brume_xstrdup(host->id);
    hi->address = brume_xstrdup(host->addr);
    hi->accelerator =
        host->kvm ? BRUME__ACCELERATOR__ACCELERATOR_KVM : BRUME__ACCELERATOR__ACCELERATOR_TCG;
    hi->vcpus = host->vcpus;
    hi->memory_mib = host->memory_mib;
    hi->free_memory_mib = host->free_memory_mib;
    hi->reserved_memory_mib = brume_hosts_reserved_mib(h, host->id);
    hi->vcpu_milli_committed = host->vcpu_milli_committed;
    hi->host_memory_available_mib = host->host_memory_available_mib;
    hi->pool_ready = host->pool_ready;
    hi->draining = host->draining;
    hi->updated_unix_ms = host->updated_unix_ms;
    uint32_t idle = 0, held = 0;
    for (size_t s = 0; s < brume_table_count(p->table); s++) {
      const brume_placed *sb = brume_table_at(p->table, s);
      if (strcmp(sb->host_id, host->id) != 0) continue;
      held += sb->held;
      idle += !sb->held;
    }
    hi->sandboxes = idle + held;
    hi->n_sandboxes_by_state = 2;
    hi->sandboxes_by_state = brume_xcalloc(2, sizeof(*hi->sandboxes_by_state));
    for (size_t s = 0; s < 2; s++) {
      Brume__SandboxStateCount *c = brume_xmalloc(sizeof(*c));
      brume__sandbox_state_count__init(c);
      c->state = s == 0 ? BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE
                        : BRUME__SANDBOX_STATE__SANDBOX_STATE_INVOKING;
      c->count = s == 0 ? idle : held;
      hi->sandboxes_by_state[s] = c;
    }
    v[k++] = hi;
  }
  pthread_mutex_unlock(&p->mu);
  brume_host_watch_unlock(p->hosts);
  *n = k;
  return v;
}

void brume_placer_hosts_free(Brume__HostInfo **v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    for (size_t s = 0; s < v[i]->n_sandboxes_by_state; s++) free(v[i]->sandboxes_by_state[s]);
    free(v[i]->sandboxes_by_state);
    free(v[i]->host_id);
    free(v[i]->address);
    free(v[i]);
  }
  free(v);
}

/* The function key split back into a FunctionVersionRef whose strings point into a copy. */
static Brume__FunctionVersionRef *function_ref(const char *key) {
  Brume__FunctionVersionRef *f = brume_xmalloc(sizeof(*f));
  brume__function_version_ref__init(f);
  char *copy = brume_xstrdup(key);
  char **fields[] = {&f->account_id, &f->function_name, &f->version, &f->revision_id};
  char *s = copy;
  for (size_t i = 0; i < 4; i++) {
    *fields[i] = s;
    char *slash = s ? strchr(s, '/') : NULL;
    if (slash) *slash = '\0';
    s = slash ? slash + 1 : NULL;
    if (*fields[i] == NULL) *fields[i] = copy + strlen(key); /* "" past the copy's end */
  }
  return f;
}

static bool matches(const brume_placed *s, const Brume__ListSandboxesRequest *req,
                    const Brume__FunctionVersionRef *f) {
  if (req->account_id[0] && strcmp(req->account_id, f->account_id) != 0) return false;
  if (req->function_name[0] && strcmp(req->function_name, f->function_name) != 0) return false;
  if (req->version[0] && strcmp(req->version, f->version) != 0) return false;
  if (req->host_id[0] && strcmp(req->host_id, s->host_id) != 0) return false;
  Brume__SandboxState state = s->held ? BRUME__SANDBOX_STATE__SANDBOX_STATE_INVOKING
                                      : BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE;
  return req->state == BRUME__SANDBOX_STATE__SANDBOX_STATE_UNSPECIFIED || req->state == state;
}

static void function_ref_free(Brume__FunctionVersionRef *f) {
  free(f->account_id); /* the copy starts there */
  free(f);
}

static int by_host_then_id(const void *a, const void *b) {
  const Brume__SandboxInfo *x = *(Brume__SandboxInfo *const *)a;
  const Brume__SandboxInfo *y = *(Brume__SandboxInfo *const *)b;
  int c = strcmp(x->host_id, y->host_id);
  return c ? c : strcmp(x->sandbox_id, y->sandbox_id);
}

Brume__SandboxInfo **brume_placer_sandboxes(brume_placer *p, const Brume__ListSandboxesRequest *req,
                                            size_t *n) {
  int64_t mono = brume_mono_ms(), wall = brume_wall_ms();
  pthread_mutex_lock(&p->mu);
  size_t nt = brume_table_count(p->table), k = 0;
  Brume__SandboxInfo **v = brume_xcalloc(nt + 1, sizeof(*v));
  for (size_t i = 0; i < nt; i++) {
    const brume_placed *s = brume_table_at(p->table, i);
    Brume__FunctionVersionRef *f = function_ref(s->function);
    if (!matches(s, req, f)) {
      function_ref_free(f);
      continue;
    }
    Brume__SandboxInfo *si = brume_xmalloc(sizeof(*si));
    brume__sandbox_info__init(si);
    si->sandbox_id = brume_xstrdup(s->id);
    si->host_id = brume_xstrdup(s->host_id);
    si->function = f;
    si->state = s->held ? BRUME__SANDBOX_STATE__SANDBOX_STATE_INVOKING
                        : BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE;
    Brume__ResourceSpec *rs = brume_xmalloc(sizeof(*rs));
    brume__resource_spec__init(rs);
    rs->memory_mib = s->memory_mib;
    rs->vcpu_milli = s->vcpu_milli;
    si->resources = rs;
    si->created_unix_ms = wall - (mono - s->added_ms);
    if (!s->held) si->idle_since_unix_ms = wall - (mono - s->idle_since_ms);
    si->invocations = s->invocations;
    v[k++] = si;
  }
  pthread_mutex_unlock(&p->mu);
  qsort(v, k, sizeof(*v), by_host_then_id);
  *n = k;
  return v;
}

void brume_placer_sandboxes_free(Brume__SandboxInfo **v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    function_ref_free(v[i]->function);
    free(v[i]->resources);
    free(v[i]->sandbox_id);
    free(v[i]->host_id);
    free(v[i]);
  }
  free(v);
}

/* ---- new and free ---- */

brume_placer *brume_placer_new(const brume_placer_opts *opts, brume_err **err) {
  brume_placer *p = brume_xcalloc(1, sizeof(*p));
  p->o = *opts;
  p->prefix = brume_xstrdup(opts->prefix);
  p->daemon_id = brume_xstrdup(opts->daemon_id);
  p->caller_id = brume_xasprintf("placement/%s", opts->daemon_id);
  pthread_mutex_init(&p->mu, NULL);
  pthread_mutex_init(&p->reconcile_mu, NULL);
  atomic_init(&p->stopping, false);
  p->table = brume_table_new();
  brume_rpc_client_opts co = {.tls = opts->worker_tls};
  p->workers = brume_rpc_pool_new(&co);
  p->acquires = brume_metrics_counter(opts->metrics, "brume_placement_acquires_total",
                                      "AcquireSandbox calls by result: warm, cold, no_idle, "
                                      "init_error, error.",
                                      "result", NULL);
  p->releases =
      brume_metrics_counter(opts->metrics, "brume_placement_releases_total",
                            "ReleaseSandbox calls by result: idle or destroyed.", "result", NULL);
  p->destroyed = brume_metrics_counter(
      opts->metrics, "brume_placement_sandboxes_removed_total",
      "Sandboxes that left placement, by reason: keep_warm, overdue, released, host_gone, lost, "
      "orphan, provisioned_trim.",
      "reason", NULL);
  p->cold_retries = brume_metrics_counter(
      opts->metrics, "brume_placement_cold_start_retries_total",
      "Cold starts sent to a second host after the first refused for capacity (its registration "
      "was behind).",
      NULL);
  brume_counter_inc(p->cold_retries, 0);
  p->cold_seconds = brume_metrics_histogram(
      opts->metrics, "brume_placement_cold_start_seconds",
      "Cold starts from AcquireSandbox to the sandbox recorded, by pool hit.", NULL, 0, "pool_hit",
      NULL);
  p->sandboxes =
      brume_metrics_gauge(opts->metrics, "brume_placement_sandboxes",
                          "Sandboxes this daemon owns, by state: idle or held.", "state", NULL);
  static const char *const results[] = {"warm", "cold", "no_idle", "init_error", "error"};
  for (size_t i = 0; i < BRUME_ARRAY_LEN(results); i++)
    brume_counter_inc(p->acquires, 0, results[i]);
  brume_counter_inc(p->releases, 0, "idle");
  brume_counter_inc(p->releases, 0, "destroyed");
  p->hosts =
      brume_host_watch_start(opts->etcd, opts->prefix, opts->cpu_overcommit, host_gone, p, err);
  if (p->hosts == NULL) {
    brume_placer_free(p);
    return NULL;
  }
  brume_placer_reconcile(p);
  int64_t reap_ms = p->o.keep_warm_ms / 10;
  if (reap_ms > 1000) reap_ms = 1000;
  if (reap_ms < 10) reap_ms = 10;
  p->reaper = brume_ticker_start(reap_ms, reap, p);
  p->reconciler = brume_ticker_start(p->o.reconcile_ms, reconcile_tick, p);
  return p;
}

void brume_placer_stop(brume_placer *p) {
  if (p == NULL) return;
  atomic_store(&p->stopping, true);
  brume_ticker_stop(p->reaper);
  p->reaper = NULL;
  brume_ticker_stop(p->reconciler);
  p->reconciler = NULL;
}

void brume_placer_free(brume_placer *p) {
  if (p == NULL) return;
  brume_placer_stop(p);
  /* Cancels cold starts under way: their callbacks answer their calls (the queue is stopped). */
  brume_rpc_pool_free(p->workers);
  brume_host_watch_stop(p->hosts);
  brume_table_free(p->table);
  for (size_t i = 0; i < p->n_leaving; i++) free(p->leaving[i]);
  free(p->leaving);
  pthread_mutex_destroy(&p->mu);
  pthread_mutex_destroy(&p->reconcile_mu);
  free(p->prefix);
  free(p->daemon_id);
  free(p->caller_id);
  free(p);
}
