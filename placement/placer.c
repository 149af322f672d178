/* The placer (placer.h). Table of contents: the struct and small helpers; destroying sandboxes
 * (on the work queue); AcquireSandbox (warm, then cold: choose and reserve a host, CreateSandbox
 * asynchronously, record, hand out); ReleaseSandbox; the reaper; hosts that go; reconcile (the
 * workers' List against the table and the records; provisioned concurrency); the queries; new
 * and free. */
#include "placer.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brume/worker.pb-c.h"
#include "clock.h"
#include "host_watch.h"
#include "log.h"
#include "mem.h"
#include "resources.h"
#include "sandbox_store.h"
#include "table.h"
#include "ticker.h"

/* The Worker service's methods, in worker.proto's order. */
enum { W_CREATE = 0, W_DESTROY = 4, W_LIST = 5 };

/* The caller of a sandbox found INVOKING on a worker at a reconcile (its real caller is not
 * known: the daemon restarted, or adopted it): any caller may release it. */
#define CALLER_UNKNOWN "placement/unknown-caller"

/* A held sandbox's longest life without a timeout in its spec: Lambda's largest timeout. */
#define TIMEOUT_MAX_MS 900000

/* Deadline of the calls to workers that are not cold starts (Destroy, List). */
#define WORKER_CALL_MS 10000

/* Room for a sandbox or host id, or an address, copied out of a lock. */
#define ID_MAX 256

struct brume_placer {
  brume_placer_opts o;
  char *prefix, *daemon_id, *caller_id; /* caller_id: "placement/<daemon_id>", to workers */
  brume_host_watch *hosts;
  brume_rpc_pool *workers;
  pthread_mutex_t mu; /* the table and leaving; after the hosts' lock when both are held */
  brume_table *table;
  /* Ids out of the table whose destruction is queued or under way: a reconcile must not take
   * them back (their record and VM still exist for a moment). */
  char **leaving;
  size_t n_leaving;
  pthread_mutex_t reconcile_mu; /* one reconcile at a time */
  brume_ticker *reaper, *reconciler;
  atomic_bool stopping;
  brume_counter *acquires;  /* {result} */
  brume_counter *releases;  /* {result}: idle, destroyed */
  brume_counter *destroyed; /* {reason} */
  brume_histogram *cold_seconds;
  brume_gauge *sandboxes; /* {state}: idle, held */
};

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

static uint32_t vcpu_milli_of(const Brume__ResourceSpec *r) {
  return r->vcpu_milli ? r->vcpu_milli : brume_resources_vcpu_milli(r->memory_mib);
}

/* How long a sandbox of spec may stay held before placement takes it back. */
static int64_t hold_ms(const brume_placer *p, const Brume__SandboxSpec *spec) {
  return (spec->timeout_ms ? spec->timeout_ms : TIMEOUT_MAX_MS) + p->o.hold_margin_ms;
}

/* Copies host_id's address into addr; false when the host is not registered (any more). */
static bool host_addr(brume_placer *p, const char *host_id, char addr[ID_MAX]) {
  brume_hosts *h = brume_host_watch_lock(p->hosts);
  const brume_host *host = brume_hosts_get(h, host_id);
  if (host) snprintf(addr, ID_MAX, "%s", host->addr);
  brume_host_watch_unlock(p->hosts);
  return host != NULL;
}

static void log_err(const char *what, const char *fields, const char *a, const char *b,
                    const brume_err *err) {
  char q[512];
  char line[ID_MAX * 3];
  snprintf(line, sizeof(line), fields, a, b);
  brume_warn(what, "%s err=%s", line, brume_log_quote(q, sizeof(q), err->msg));
}

/* ---- destroying sandboxes ---- */

/* Destroys sandbox id on host_id (blocking) and deletes its record; NOT_FOUND on the worker is
 * fine (it lost the sandbox already). A host that is gone is not called. */
static void destroy_now(brume_placer *p, const char *host_id, const char *id,
                        int64_t mod_revision) {
  char addr[ID_MAX];
  brume_autoptr(brume_err) err = NULL;
  if (host_addr(p, host_id, addr)) {
    brume_rpc_client *c = brume_rpc_pool_get(p->workers, addr, &err);
    Brume__WorkerDestroyRequest req = BRUME__WORKER_DESTROY_REQUEST__INIT;
    req.sandbox_id = (char *)id;
    brume_autoptr(ProtobufCMessage) reply = NULL;
    brume_rpc_call_opts co = {.deadline_ms = WORKER_CALL_MS};
    if (c == NULL || brume_rpc_unary(c, &brume__worker__descriptor, W_DESTROY, &req.base, &reply,
                                     &co, &err) < 0) {
      if (err->code != BRUME_NOT_FOUND)
        log_err("Could not destroy a sandbox on its worker.", "host_id=%s sandbox_id=%s", host_id,
                id, err);
      brume_err_clear(&err);
    }
  }
  if (brume_sandbox_store_delete(p->o.etcd, p->prefix, id, mod_revision, &err) < 0)
    log_err("Could not delete a sandbox's record in etcd.", "host_id=%s sandbox_id=%s", host_id, id,
            err);
}

/* The leaving set, under p->mu. */
static bool leaving_has(const brume_placer *p, const char *id) {
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
      log_err("Could not delete a sandbox's record in etcd.", "host_id=%s sandbox_id=%s",
              j->host_id, j->id, err);
  } else {
    destroy_now(j->p, j->host_id, j->id, 0);
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
static void remove_and_destroy(brume_placer *p, char **ids, const char *reason) {
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

/* What a new sandbox is: recorded in etcd, then added to the table (held for caller, or idle). */
typedef struct new_sandbox {
  const char *id, *host_id, *function;
  uint32_t memory_mib, vcpu_milli;
  bool provisioned;
  const char *caller; /* NULL: idle */
  int64_t held_until_ms;
} new_sandbox;

/* Adds s to the table, unless its host went meanwhile, then records it in etcd (in that order:
 * a reconcile that sees the record finds the sandbox in the table already, and does not take it
 * for one to take back). On failure the sandbox is destroyed and err says why (UNAVAILABLE). */
static int record_and_add(brume_placer *p, const new_sandbox *s, brume_err **err) {
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
    destroy_now(p, s->host_id, s->id, 0);
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
    if (ours) destroy_now(p, s->host_id, s->id, 0);
    return brume_err_wrap(err,
                          "ServiceUnavailableException: the new sandbox could not be recorded in "
                          "etcd%s",
                          ours ? " (it was destroyed)" : "");
  }
  return 0;
}

/* ---- choosing a host ---- */

typedef struct count_arg {
  brume_placer *p;
  const char *function;
} count_arg;

/* Called by brume_hosts_choose under the hosts' lock: the table's mutex comes second. */
static size_t count_on_host(void *arg, const char *host_id) {
  count_arg *c = arg;
  pthread_mutex_lock(&c->p->mu);
  size_t n = brume_table_count_on_host(c->p->table, c->function, host_id);
  pthread_mutex_unlock(&c->p->mu);
  return n;
}

/* A host for a new sandbox of function, its room reserved: host_id and addr filled, the
 * reservation returned (0 and err when no host has room). */
static uint64_t pick_host(brume_placer *p, const char *function, uint32_t memory_mib,
                          uint32_t vcpu_milli, char host_id[ID_MAX], char addr[ID_MAX],
                          brume_err **err) {
  count_arg ca = {.p = p, .function = function};
  brume_hosts *h = brume_host_watch_lock(p->hosts);
  uint64_t r = 0;
  const brume_host *host = brume_hosts_choose(h, memory_mib, vcpu_milli, count_on_host, &ca, err);
  if (host) {
    snprintf(host_id, ID_MAX, "%s", host->id);
    snprintf(addr, ID_MAX, "%s", host->addr);
    r = brume_hosts_reserve(h, host_id, memory_mib, vcpu_milli, err);
  }
  brume_host_watch_unlock(p->hosts);
  return r;
}

/* created: the worker made a sandbox (see brume_hosts_end_reservation). */
static void end_reservation(brume_placer *p, const char *host_id, uint64_t r, bool created) {
  brume_hosts *h = brume_host_watch_lock(p->hosts);
  brume_hosts_end_reservation(h, host_id, r, created);
  brume_host_watch_unlock(p->hosts);
}

/* A worker's error, with the host named. The worker's message leads with its reason, after the
 * rpc client's "<target> <method>: ": the reason leads here too. */
static void worker_error(brume_err **err, const brume_err *werr, const char *host_id) {
  const char *msg = werr->msg, *ex = strstr(msg, "Exception: ");
  if (ex) {
    while (ex > msg && ex[-1] != ' ') ex--;
    msg = ex;
  }
  brume_err_set(err, werr->code, "%s (host %s)", msg, host_id);
}

/* ---- AcquireSandbox ---- */

/* A cold start under way. */
typedef struct cold {
  brume_placer *p;
  const Brume__AcquireSandboxRequest *req;
  char *function;
  char host_id[ID_MAX], addr[ID_MAX];
  uint64_t reservation;
  int64_t t0_us;
  char *request_id;
  brume_placer_done done;
  brume_placer_gone gone;
  void *user;
  Brume__WorkerCreateSandboxResponse *resp;
} cold;

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
  new_sandbox s = {.id = c->resp->sandbox_id,
                   .host_id = c->host_id,
                   .function = c->function,
                   .memory_mib = spec->resources->memory_mib,
                   .vcpu_milli = vcpu_milli_of(spec->resources),
                   .caller = gone ? NULL : c->req->caller_id,
                   .held_until_ms = brume_mono_ms() + held_ms};
  brume_autoptr(brume_err) err = NULL;
  if (record_and_add(p, &s, &err) < 0) {
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
  end_reservation(p, c->host_id, c->reservation, made && made->init_error == NULL);
  brume_autoptr(brume_err) err = NULL;
  if (reply == NULL) {
    worker_error(&err, werr, c->host_id);
    log_err("A cold start failed.", "function=%s host_id=%s", c->function, c->host_id, err);
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

static void cold_start(brume_placer *p, const Brume__AcquireSandboxRequest *req, char *function,
                       int64_t deadline_ms, const char *request_id, brume_placer_done done,
                       brume_placer_gone gone, void *user) {
  const Brume__SandboxSpec *spec = req->spec;
  cold *c = brume_xcalloc(1, sizeof(*c));
  *c = (cold){.p = p,
              .req = req,
              .function = function,
              .t0_us = brume_mono_us(),
              .request_id = request_id ? brume_xstrdup(request_id) : NULL,
              .done = done,
              .gone = gone,
              .user = user};
  brume_autoptr(brume_err) err = NULL;
  c->reservation = pick_host(p, function, spec->resources->memory_mib,
                             vcpu_milli_of(spec->resources), c->host_id, c->addr, &err);
  if (c->reservation == 0) {
    cold_fail(c, err);
    return;
  }
  brume_rpc_client *client = brume_rpc_pool_get(p->workers, c->addr, &err);
  Brume__WorkerCreateSandboxRequest wreq = BRUME__WORKER_CREATE_SANDBOX_REQUEST__INIT;
  wreq.spec = (Brume__SandboxSpec *)spec;
  wreq.caller_id = p->caller_id;
  brume_rpc_call_opts co = {.deadline_ms = deadline_ms > 0 ? deadline_ms : p->o.create_timeout_ms,
                            .request_id = request_id};
  if (client == NULL || brume_rpc_unary_async(client, &brume__worker__descriptor, W_CREATE,
                                              &wreq.base, &co, cold_created, c, &err) < 0) {
    end_reservation(p, c->host_id, c->reservation, false);
    cold_fail(c, err);
  }
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
    if (!host_addr(p, host_id, addr)) continue;
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

static void update_gauges(brume_placer *p) {
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
  /* Between the two locks a sandbox may have been taken: remove_and_destroy looks again. */
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
    remove_and_destroy(p, fresh, "keep_warm");
  }
  if (overdue[0]) remove_and_destroy(p, overdue, "overdue");
  brume_table_ids_free(idle);
  brume_table_ids_free(overdue);
  update_gauges(p);
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

/* ---- reconcile ---- */

/* The placement daemons registered now (sorted ids), for adoption. */
typedef struct live_set {
  char **ids;
  size_t n;
} live_set;

static int live_read(brume_placer *p, live_set *l, brume_err **err) {
  brume_autofree char *dir = brume_xasprintf("%s/svc/placement/", p->prefix);
  brume_autoptr(brume_etcd_range) r = brume_etcd_get_prefix(p->o.etcd, dir, err);
  if (r == NULL) return -1;
  l->ids = brume_xcalloc(r->n, sizeof(*l->ids));
  l->n = r->n;
  for (size_t i = 0; i < r->n; i++) l->ids[i] = brume_xstrdup(r->kvs[i].key + strlen(dir));
  return 0;
}

static bool live_has(const live_set *l, const char *id) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->ids[i], id) == 0) return true;
  return false;
}

static void live_free(live_set *l) {
  for (size_t i = 0; i < l->n; i++) free(l->ids[i]);
  free(l->ids);
}

/* The records a reconcile read, each with whether a worker's List showed it. */
typedef struct records {
  brume_sandbox_record *v;
  size_t n;
  bool *seen;
} records;

static brume_sandbox_record *record_find(const records *r, const char *id, size_t *index) {
  size_t lo = 0, hi = r->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(r->v[mid].id, id);
    if (c == 0) {
      *index = mid;
      return &r->v[mid];
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

/* A record this daemon may act on: its own, or one whose owner is gone. */
static bool ours_or_orphaned(const brume_placer *p, const brume_sandbox_record *r,
                             const live_set *live) {
  return strcmp(r->owner, p->daemon_id) == 0 || !live_has(live, r->owner);
}

/* A sandbox a worker listed and this daemon owns: into the table if it is not there (a
 * restart, an adoption). True if it was added. */
static bool take_into_table(brume_placer *p, const Brume__SandboxInfo *s,
                            const brume_sandbox_record *r) {
  bool invoking = s->state == BRUME__SANDBOX_STATE__SANDBOX_STATE_INVOKING;
  brume_table_entry e = {.id = r->id,
                         .host_id = r->host_id,
                         .function = r->function,
                         .memory_mib = r->memory_mib,
                         .vcpu_milli = r->vcpu_milli,
                         .provisioned = r->provisioned,
                         .caller = invoking ? CALLER_UNKNOWN : NULL,
                         .held_until_ms = brume_mono_ms() + TIMEOUT_MAX_MS + p->o.hold_margin_ms};
  pthread_mutex_lock(&p->mu);
  bool added = brume_table_get(p->table, r->id) == NULL && !leaving_has(p, r->id) &&
               brume_table_add(p->table, &e, brume_mono_ms(), NULL) == 0;
  pthread_mutex_unlock(&p->mu);
  return added;
}

static bool listable(const Brume__SandboxInfo *s) {
  return s->state == BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE ||
         s->state == BRUME__SANDBOX_STATE__SANDBOX_STATE_INVOKING ||
         s->state == BRUME__SANDBOX_STATE__SANDBOX_STATE_PROVISIONING;
}

/* One host's sandboxes against the table and the records. t0_ms: when the reconcile began (a
 * sandbox added after it may be missing from the List). */
static void reconcile_host(brume_placer *p, const char *host_id, const char *addr, records *recs,
                           const live_set *live, int64_t t0_ms) {
  brume_autoptr(brume_err) err = NULL;
  brume_rpc_client *c = brume_rpc_pool_get(p->workers, addr, &err);
  Brume__WorkerListRequest req = BRUME__WORKER_LIST_REQUEST__INIT;
  brume_autoptr(ProtobufCMessage) reply = NULL;
  brume_rpc_call_opts co = {.deadline_ms = WORKER_CALL_MS};
  if (c == NULL ||
      brume_rpc_unary(c, &brume__worker__descriptor, W_LIST, &req.base, &reply, &co, &err) < 0) {
    log_err("Could not list a worker's sandboxes; its sandboxes stay as they are.",
            "host_id=%s addr=%s", host_id, addr, err);
    /* Its records must not be taken for lost ones. */
    for (size_t i = 0; i < recs->n; i++)
      if (strcmp(recs->v[i].host_id, host_id) == 0) recs->seen[i] = true;
    return;
  }
  const Brume__WorkerListResponse *list = (const void *)reply;
  size_t kept = 0, adopted = 0, orphans = 0;
  int64_t wall = brume_wall_ms();
  for (size_t i = 0; i < list->n_sandboxes; i++) {
    const Brume__SandboxInfo *s = list->sandboxes[i];
    size_t ri;
    brume_sandbox_record *r = record_find(recs, s->sandbox_id, &ri);
    if (r) recs->seen[ri] = true;
    if (!listable(s) || (r && strcmp(r->host_id, host_id) != 0)) continue;
    if (r && strcmp(r->owner, p->daemon_id) == 0) {
      kept += take_into_table(p, s, r);
    } else if (r && !live_has(live, r->owner)) {
      bool won = false;
      if (brume_sandbox_store_adopt(p->o.etcd, p->prefix, r, p->daemon_id, &won, &err) < 0) {
        log_err("Could not adopt a sandbox.", "host_id=%s sandbox_id=%s", host_id, r->id, err);
        brume_err_clear(&err);
      } else if (won) {
        adopted += take_into_table(p, s, r);
      }
    } else if (r == NULL && s->state == BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE &&
               wall - s->idle_since_unix_ms >= p->o.keep_warm_ms) {
      /* Nobody's: a cold start whose caller or daemon died before it was recorded. */
      pthread_mutex_lock(&p->mu);
      bool known =
          brume_table_get(p->table, s->sandbox_id) != NULL || leaving_has(p, s->sandbox_id);
      pthread_mutex_unlock(&p->mu);
      if (!known) {
        brume_counter_inc(p->destroyed, 1, "orphan");
        destroy_now(p, host_id, s->sandbox_id, 0);
        orphans++;
      }
    }
  }
  /* The table's sandboxes on this host that the worker no longer has: lost behind placement's
   * back (destroyed by hand, the function failed, the worker restarted). */
  size_t lost = 0;
  pthread_mutex_lock(&p->mu);
  for (size_t i = 0; i < brume_table_count(p->table);) {
    const brume_placed *t = brume_table_at(p->table, i);
    bool listed = false;
    for (size_t k = 0; k < list->n_sandboxes && !listed; k++)
      listed = listable(list->sandboxes[k]) && strcmp(list->sandboxes[k]->sandbox_id, t->id) == 0;
    if (!listed && t->added_ms < t0_ms && strcmp(t->host_id, host_id) == 0) {
      brume_info("A sandbox is gone from its worker; placement forgets it.",
                 "host_id=%s sandbox_id=%s", host_id, t->id);
      brume_table_remove(p->table, t->id);
      lost++;
      continue;
    }
    i++;
  }
  pthread_mutex_unlock(&p->mu);
  if (lost) brume_counter_inc(p->destroyed, (double)lost, "lost");
  /* Records of sandboxes the worker does not have (ours, or a gone daemon's). */
  for (size_t i = 0; i < recs->n; i++) {
    brume_sandbox_record *r = &recs->v[i];
    if (recs->seen[i] || strcmp(r->host_id, host_id) != 0 || !ours_or_orphaned(p, r, live))
      continue;
    recs->seen[i] = true;
    pthread_mutex_lock(&p->mu);
    const brume_placed *t = brume_table_get(p->table, r->id);
    bool fresh = t && t->added_ms >= t0_ms;
    pthread_mutex_unlock(&p->mu);
    if (!fresh &&
        brume_sandbox_store_delete(p->o.etcd, p->prefix, r->id, r->mod_revision, &err) < 0) {
      log_err("Could not delete a sandbox's record.", "host_id=%s sandbox_id=%s", host_id, r->id,
              err);
      brume_err_clear(&err);
    }
  }
  if (kept || adopted || orphans || lost)
    brume_info("Reconciled a worker's sandboxes.",
               "host_id=%s taken_back=%zu adopted=%zu orphans_destroyed=%zu lost=%zu", host_id,
               kept, adopted, orphans, lost);
}

/* ---- provisioned concurrency ---- */

static char *provisioned_dir(const brume_placer *p) {
  return brume_xasprintf("%s/placement/provisioned/", p->prefix);
}

/* Claims the keeping of function's provisioned sandboxes: the first daemon to write the owner key
 * keeps them while it is registered; another takes over once it is not. True if it is this one. */
static bool provisioned_claim(brume_placer *p, const char *vkey, const live_set *live) {
  brume_autofree char *key = brume_xasprintf("%s/placement/provisioned_owner/%s", p->prefix, vkey);
  brume_autoptr(brume_err) err = NULL;
  brume_autoptr(brume_etcd_kv) kv = NULL;
  if (brume_etcd_get(p->o.etcd, key, &kv, NULL, &err) < 0) {
    log_err("Could not read a provisioned setting's owner.", "key=%s%s", key, "", err);
    return false;
  }
  if (kv && strcmp(kv->value, p->daemon_id) == 0) return true;
  if (kv && live_has(live, kv->value)) return false;
  brume_etcd_cmp cmp = {.key = key,
                        .target = BRUME_ETCD_MOD,
                        .result = BRUME_ETCD_EQUAL,
                        .number = kv ? kv->mod_revision : 0};
  brume_etcd_op put = {.type = BRUME_ETCD_OP_PUT,
                       .key = key,
                       .value = p->daemon_id,
                       .value_len = strlen(p->daemon_id)};
  brume_etcd_txn_req req = {.compare = &cmp, .n_compare = 1, .success = &put, .n_success = 1};
  brume_autoptr(brume_etcd_txn_result) res = brume_etcd_txn(p->o.etcd, &req, &err);
  if (res == NULL) log_err("Could not claim a provisioned setting.", "key=%s%s", key, "", err);
  return res && res->succeeded;
}

/* Creates one provisioned sandbox of spec (blocking: the reconcile's thread). */
static int provisioned_create(brume_placer *p, const Brume__SandboxSpec *spec, const char *vkey,
                              brume_err **err) {
  char host_id[ID_MAX], addr[ID_MAX];
  uint32_t mem = spec->resources->memory_mib, vcpu = vcpu_milli_of(spec->resources);
  uint64_t r = pick_host(p, vkey, mem, vcpu, host_id, addr, err);
  if (r == 0) return -1;
  brume_rpc_client *c = brume_rpc_pool_get(p->workers, addr, err);
  Brume__WorkerCreateSandboxRequest wreq = BRUME__WORKER_CREATE_SANDBOX_REQUEST__INIT;
  wreq.spec = (Brume__SandboxSpec *)spec;
  wreq.caller_id = p->caller_id;
  brume_autoptr(ProtobufCMessage) reply = NULL;
  brume_rpc_call_opts co = {.deadline_ms = p->o.create_timeout_ms};
  brume_autoptr(brume_err) werr = NULL;
  int rc =
      c ? brume_rpc_unary(c, &brume__worker__descriptor, W_CREATE, &wreq.base, &reply, &co, &werr)
        : -1;
  const Brume__WorkerCreateSandboxResponse *resp = (const void *)reply;
  end_reservation(p, host_id, r, rc == 0 && resp->init_error == NULL);
  if (c == NULL) return -1;
  if (rc < 0) {
    worker_error(err, werr, host_id);
    return -1;
  }
  if (resp->init_error)
    return brume_err_set(err, BRUME_FAILED_PRECONDITION, "%s: %s (host %s)", resp->init_error->type,
                         resp->init_error->message, host_id);
  new_sandbox s = {.id = resp->sandbox_id,
                   .host_id = host_id,
                   .function = vkey,
                   .memory_mib = mem,
                   .vcpu_milli = vcpu,
                   .provisioned = true};
  if (record_and_add(p, &s, err) < 0) return -1;
  brume_counter_inc(p->acquires, 0, "cold");
  brume_info("Provisioned sandbox created.", "function=%s host_id=%s sandbox_id=%s pool_hit=%s",
             vkey, host_id, s.id, resp->pool_hit ? "true" : "false");
  return 0;
}

/* Destroys idle provisioned sandboxes of function beyond keep (keep 0: all of them). */
static void provisioned_trim(brume_placer *p, const char *function, size_t keep) {
  char **extra = brume_xcalloc(1, sizeof(*extra));
  size_t n = 0;
  pthread_mutex_lock(&p->mu);
  size_t have = brume_table_provisioned_count(p->table, function);
  for (size_t i = 0; i < brume_table_count(p->table) && have > keep; i++) {
    const brume_placed *s = brume_table_at(p->table, i);
    if (!s->provisioned || s->held || strcmp(s->function, function) != 0) continue;
    extra = brume_xrealloc(extra, (n + 2) * sizeof(*extra));
    extra[n++] = brume_xstrdup(s->id);
    extra[n] = NULL;
    have--;
  }
  pthread_mutex_unlock(&p->mu);
  remove_and_destroy(p, extra, "provisioned_trim");
  brume_table_ids_free(extra);
}

/* Every provisioned setting this daemon keeps: created up to its count, trimmed down to it. */
static void reconcile_provisioned(brume_placer *p, const live_set *live) {
  brume_autofree char *dir = provisioned_dir(p);
  brume_autoptr(brume_err) err = NULL;
  brume_autoptr(brume_etcd_range) r = brume_etcd_get_prefix(p->o.etcd, dir, &err);
  if (r == NULL) {
    log_err("Could not read the provisioned concurrency settings.", "dir=%s%s", dir, "", err);
    return;
  }
  char **kept = brume_xcalloc(r->n + 1, sizeof(*kept));
  for (size_t i = 0; i < r->n && !atomic_load(&p->stopping); i++) {
    Brume__PutProvisionedConcurrencyRequest *set =
        brume__put_provisioned_concurrency_request__unpack(NULL, r->kvs[i].value_len,
                                                           (const uint8_t *)r->kvs[i].value);
    char *vkey = set && set->spec && set->spec->resources
                     ? brume_placer_function_key(set->spec->function, NULL)
                     : NULL;
    if (vkey == NULL) {
      brume_warn("A provisioned concurrency setting cannot be read; it is ignored.", "key=%s",
                 r->kvs[i].key);
    } else if (provisioned_claim(p, vkey, live)) {
      kept[i] = brume_xstrdup(vkey);
      pthread_mutex_lock(&p->mu);
      size_t have = brume_table_provisioned_count(p->table, vkey);
      pthread_mutex_unlock(&p->mu);
      for (; have < set->count && !atomic_load(&p->stopping); have++)
        if (provisioned_create(p, set->spec, vkey, &err) < 0) {
          log_err("Could not create a provisioned sandbox; trying again at the next reconcile.",
                  "function=%s%s", vkey, "", err);
          brume_err_clear(&err);
          break;
        }
      if (have > set->count) provisioned_trim(p, vkey, set->count);
    }
    free(vkey);
    if (set) protobuf_c_message_free_unpacked(&set->base, NULL);
  }
  /* Provisioned sandboxes whose setting is gone (or kept by another daemon now). */
  char **orphaned = brume_xcalloc(1, sizeof(*orphaned));
  size_t n = 0;
  pthread_mutex_lock(&p->mu);
  for (size_t i = 0; i < brume_table_count(p->table); i++) {
    const brume_placed *s = brume_table_at(p->table, i);
    if (!s->provisioned) continue;
    bool wanted = false;
    for (size_t k = 0; k < r->n && !wanted; k++)
      wanted = kept[k] && strcmp(kept[k], s->function) == 0;
    bool listed = false;
    for (size_t k = 0; k < n && !listed; k++) listed = strcmp(orphaned[k], s->function) == 0;
    if (!wanted && !listed) {
      orphaned = brume_xrealloc(orphaned, (n + 2) * sizeof(*orphaned));
      orphaned[n++] = brume_xstrdup(s->function);
      orphaned[n] = NULL;
    }
  }
  pthread_mutex_unlock(&p->mu);
  for (size_t i = 0; i < n; i++) provisioned_trim(p, orphaned[i], 0);
  brume_table_ids_free(orphaned);
  for (size_t i = 0; i < r->n; i++) free(kept[i]);
  free(kept);
}

int brume_placer_put_provisioned(brume_placer *p,
                                 const Brume__PutProvisionedConcurrencyRequest *req,
                                 brume_err **err) {
  brume_autofree char *vkey = brume_placer_function_key(req->spec->function, err);
  if (vkey == NULL) return -1;
  const Brume__FunctionVersionRef *f = req->spec->function;
  brume_autofree char *key = brume_xasprintf("%s/placement/provisioned/%s/%s/%s", p->prefix,
                                             f->account_id, f->function_name, f->version);
  int rc;
  if (req->count == 0) {
    rc = brume_etcd_delete(p->o.etcd, key, false, NULL, err);
  } else {
    size_t len = protobuf_c_message_get_packed_size(&req->base);
    brume_autofree uint8_t *buf = brume_xmalloc(len ? len : 1);
    protobuf_c_message_pack(&req->base, buf);
    rc = brume_etcd_put(p->o.etcd, key, buf, len, 0, NULL, err);
  }
  if (rc < 0)
    return brume_err_wrap(err, "ServiceUnavailableException: storing the setting in etcd");
  brume_info("Provisioned concurrency set.", "function=%s count=%" PRIu32, vkey, req->count);
  return 0;
}

void brume_placer_reconcile(brume_placer *p) {
  pthread_mutex_lock(&p->reconcile_mu);
  int64_t t0 = brume_mono_ms();
  brume_autoptr(brume_err) err = NULL;
  records recs = {0};
  live_set live = {0};
  recs.v = brume_sandbox_store_list(p->o.etcd, p->prefix, &recs.n, &err);
  if (recs.v == NULL || live_read(p, &live, &err) < 0) {
    log_err("Could not reconcile: etcd did not answer.", "prefix=%s%s", p->prefix, "", err);
    brume_sandbox_records_free(recs.v, recs.n);
    pthread_mutex_unlock(&p->reconcile_mu);
    return;
  }
  recs.seen = brume_xcalloc(recs.n, sizeof(*recs.seen));
  /* The hosts now, copied: the worker calls happen outside the lock. */
  brume_hosts *h = brume_host_watch_lock(p->hosts);
  size_t nh = brume_hosts_count(h);
  char **ids = brume_xcalloc(nh + 1, sizeof(*ids)), **addrs = brume_xcalloc(nh + 1, sizeof(*addrs));
  for (size_t i = 0; i < nh; i++) {
    ids[i] = brume_xstrdup(brume_hosts_at(h, i)->id);
    addrs[i] = brume_xstrdup(brume_hosts_at(h, i)->addr);
  }
  brume_host_watch_unlock(p->hosts);
  for (size_t i = 0; i < nh && !atomic_load(&p->stopping); i++)
    reconcile_host(p, ids[i], addrs[i], &recs, &live, t0);
  /* Records on hosts that are not registered: those sandboxes went with their host. */
  for (size_t i = 0; i < recs.n && !atomic_load(&p->stopping); i++) {
    brume_sandbox_record *r = &recs.v[i];
    bool host_known = false;
    for (size_t k = 0; k < nh && !host_known; k++) host_known = strcmp(ids[k], r->host_id) == 0;
    if (host_known || recs.seen[i] || !ours_or_orphaned(p, r, &live)) continue;
    if (brume_sandbox_store_delete(p->o.etcd, p->prefix, r->id, r->mod_revision, &err) < 0) {
      log_err("Could not delete a sandbox's record.", "host_id=%s sandbox_id=%s", r->host_id, r->id,
              err);
      brume_err_clear(&err);
    }
  }
  if (!atomic_load(&p->stopping)) reconcile_provisioned(p, &live);
  brume_table_ids_free(ids);
  brume_table_ids_free(addrs);
  free(recs.seen);
  brume_sandbox_records_free(recs.v, recs.n);
  live_free(&live);
  update_gauges(p);
  pthread_mutex_unlock(&p->reconcile_mu);
}

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
    hi->vcpu_milli_committed = host->vcpu_milli_committed;
    hi->draining = host->draining;
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
