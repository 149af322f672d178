/* The placer's reconcile loop and provisioned concurrency (placer.h, placer_internal.h): every
 * worker's List against the table and the sandbox records in etcd. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brume/worker.pb-c.h"
#include "clock.h"
#include "log.h"
#include "mem.h"
#include "placer_internal.h"
#include "sandbox_store.h"
#include "sorted.h"

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

static const char *string_key(const void *item) {
  return item;
}

static int by_string(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* etcd lists keys in order, so the ids are sorted. */
static bool live_has(const live_set *l, const char *id) {
  bool found;
  brume_sorted_find((void *const *)l->ids, l->n, string_key, id, &found);
  return found;
}

static void live_free(live_set *l) {
  for (size_t i = 0; i < l->n; i++) free(l->ids[i]);
  free(l->ids);
}

/* The records a reconcile read (in key order, so by id), each with whether a worker's List
 * showed it. */
typedef struct records {
  brume_sandbox_record *v;
  brume_sandbox_record **by_id; /* &v[i], for brume_sorted_find */
  size_t n;
  bool *seen;
} records;

static const char *record_key(const void *item) {
  return ((const brume_sandbox_record *)item)->id;
}

static brume_sandbox_record *record_find(const records *r, const char *id, size_t *index) {
  bool found;
  *index = brume_sorted_find((void *const *)r->by_id, r->n, record_key, id, &found);
  return found ? r->v + *index : NULL;
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
  bool added = brume_table_get(p->table, r->id) == NULL && !placer_leaving_has(p, r->id) &&
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
    placer_log_err("Could not list a worker's sandboxes; its sandboxes stay as they are.",
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
        placer_log_err("Could not adopt a sandbox.", "host_id=%s sandbox_id=%s", host_id, r->id,
                       err);
        brume_err_clear(&err);
      } else if (won) {
        adopted += take_into_table(p, s, r);
      }
    } else if (r == NULL && s->state == BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE &&
               wall - s->idle_since_unix_ms >= p->o.keep_warm_ms) {
      /* Nobody's: a cold start whose caller or daemon died before it was recorded. */
      pthread_mutex_lock(&p->mu);
      bool known =
          brume_table_get(p->table, s->sandbox_id) != NULL || placer_leaving_has(p, s->sandbox_id);
      pthread_mutex_unlock(&p->mu);
      if (!known) {
        brume_counter_inc(p->destroyed, 1, "orphan");
        placer_destroy_now(p, host_id, s->sandbox_id, 0);
        orphans++;
      }
    }
  }
  /* The table's sandboxes on this host that the worker no longer has: lost behind placement's
   * back (destroyed by hand, the function failed, the worker restarted). The listed ids are
   * sorted first, outside the table's mutex, so that the walk under it is n log n. */
  char **listed = brume_xcalloc(list->n_sandboxes + 1, sizeof(*listed));
  size_t n_listed = 0;
  for (size_t k = 0; k < list->n_sandboxes; k++)
    if (listable(list->sandboxes[k])) listed[n_listed++] = list->sandboxes[k]->sandbox_id;
  qsort(listed, n_listed, sizeof(*listed), by_string);
  size_t lost = 0;
  pthread_mutex_lock(&p->mu);
  for (size_t i = 0; i < brume_table_count(p->table);) {
    const brume_placed *t = brume_table_at(p->table, i);
    bool found = false;
    if (strcmp(t->host_id, host_id) == 0)
      brume_sorted_find((void *const *)listed, n_listed, string_key, t->id, &found);
    if (!found && t->added_ms < t0_ms && strcmp(t->host_id, host_id) == 0) {
      brume_info("A sandbox is gone from its worker; placement forgets it.",
                 "host_id=%s sandbox_id=%s", host_id, t->id);
      brume_table_remove(p->table, t->id);
      lost++;
      continue;
    }
    i++;
  }
  pthread_mutex_unlock(&p->mu);
  free(listed);
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
      placer_log_err("Could not delete a sandbox's record.", "host_id=%s sandbox_id=%s", host_id,
                     r->id, err);
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
    placer_log_err("Could not read a provisioned setting's owner.", "key=%s%s", key, "", err);
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
  if (res == NULL)
    placer_log_err("Could not claim a provisioned setting.", "key=%s%s", key, "", err);
  return res && res->succeeded;
}

/* Creates one provisioned sandbox of spec (blocking: the reconcile's thread). */
static int provisioned_create(brume_placer *p, const Brume__SandboxSpec *spec, const char *vkey,
                              brume_err **err) {
  char host_id[ID_MAX], addr[ID_MAX];
  uint32_t mem = spec->resources->memory_mib, vcpu = placer_vcpu_milli(spec->resources);
  uint64_t r = placer_pick_host(p, vkey, mem, vcpu, NULL, host_id, addr, err);
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
  placer_end_reservation(p, host_id, r, rc == 0 && resp->init_error == NULL);
  if (c == NULL) return -1;
  if (rc < 0) {
    placer_worker_error(err, werr, host_id);
    return -1;
  }
  if (resp->init_error)
    return brume_err_set(err, BRUME_FAILED_PRECONDITION, "%s: %s (host %s)", resp->init_error->type,
                         resp->init_error->message, host_id);
  placer_new_sandbox s = {.id = resp->sandbox_id,
                          .host_id = host_id,
                          .function = vkey,
                          .memory_mib = mem,
                          .vcpu_milli = vcpu,
                          .provisioned = true};
  if (placer_record_and_add(p, &s, err) < 0) return -1;
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
  placer_remove_and_destroy(p, extra, "provisioned_trim");
  brume_table_ids_free(extra);
}

/* Every provisioned setting this daemon keeps: created up to its count, trimmed down to it. */
static void reconcile_provisioned(brume_placer *p, const live_set *live) {
  brume_autofree char *dir = provisioned_dir(p);
  brume_autoptr(brume_err) err = NULL;
  brume_autoptr(brume_etcd_range) r = brume_etcd_get_prefix(p->o.etcd, dir, &err);
  if (r == NULL) {
    placer_log_err("Could not read the provisioned concurrency settings.", "dir=%s%s", dir, "",
                   err);
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
          placer_log_err(
              "Could not create a provisioned sandbox; trying again at the next reconcile.",
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
    placer_log_err("Could not reconcile: etcd did not answer.", "prefix=%s%s", p->prefix, "", err);
    brume_sandbox_records_free(recs.v, recs.n);
    pthread_mutex_unlock(&p->reconcile_mu);
    return;
  }
  recs.seen = brume_xcalloc(recs.n, sizeof(*recs.seen));
  recs.by_id = brume_xcalloc(recs.n, sizeof(*recs.by_id));
  for (size_t i = 0; i < recs.n; i++) recs.by_id[i] = &recs.v[i];
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
      placer_log_err("Could not delete a sandbox's record.", "host_id=%s sandbox_id=%s", r->host_id,
                     r->id, err);
      brume_err_clear(&err);
    }
  }
  if (!atomic_load(&p->stopping)) reconcile_provisioned(p, &live);
  brume_table_ids_free(ids);
  brume_table_ids_free(addrs);
  free(recs.seen);
  free(recs.by_id);
  brume_sandbox_records_free(recs.v, recs.n);
  live_free(&live);
  placer_update_gauges(p);
  pthread_mutex_unlock(&p->reconcile_mu);
}
