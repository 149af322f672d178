#include "hosts.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "mem.h"
#include "sorted.h"

typedef struct reservation {
  uint64_t id;
  uint32_t memory_mib;
  uint32_t vcpu_milli;
  bool ended;       /* the CreateSandbox call ended: goes with the next registration */
  int64_t ended_ms; /* when (the caller's clock), for brume_hosts_expire */
} reservation;

typedef struct entry {
  brume_host host;
  reservation *res;
  size_t n_res, cap_res;
} entry;

struct brume_hosts {
  uint32_t cpu_overcommit;
  entry **v; /* sorted by host id */
  size_t n, cap;
  uint64_t next_reservation;
};

brume_hosts *brume_hosts_new(uint32_t cpu_overcommit) {
  brume_hosts *h = brume_xcalloc(1, sizeof(*h));
  h->cpu_overcommit = cpu_overcommit ? cpu_overcommit : 1;
  h->next_reservation = 1;
  return h;
}

static void entry_free(entry *e) {
  free(e->host.id);
  free(e->host.addr);
  free(e->res);
  free(e);
}

void brume_hosts_free(brume_hosts *h) {
  if (h == NULL) return;
  for (size_t i = 0; i < h->n; i++) entry_free(h->v[i]);
  free(h->v);
  free(h);
}

static const char *entry_key(const void *item) {
  return ((const entry *)item)->host.id;
}

/* The index of host_id, or where it would go (*found false). */
static size_t find(const brume_hosts *h, const char *host_id, bool *found) {
  return brume_sorted_find((void *const *)h->v, h->n, entry_key, host_id, found);
}

static entry *lookup(const brume_hosts *h, const char *host_id) {
  bool found;
  size_t i = find(h, host_id, &found);
  return found ? h->v[i] : NULL;
}

/* A whole number in [0, UINT32_MAX] from obj[name]; absent is an error unless optional. */
static int get_u32(json_t *obj, const char *name, bool optional, uint32_t *out, brume_err **err) {
  json_t *v = json_object_get(obj, name);
  if (v == NULL && optional) {
    *out = 0;
    return 0;
  }
  if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "registration: \"%s\" is not a whole number in [0, 4294967295]", name);
  *out = (uint32_t)json_integer_value(v);
  return 0;
}

int brume_hosts_update(brume_hosts *h, const char *host_id, const char *json, brume_err **err) {
  if (host_id == NULL || *host_id == '\0')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "registration: empty host id");
  json_error_t jerr;
  json_t *o = json_loads(json ? json : "", JSON_REJECT_DUPLICATES, &jerr);
  int rc = -1;
  brume_host v = {0};
  if (!json_is_object(o)) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "registration of %s is not a JSON object: %s",
                  host_id, o ? "another JSON value" : jerr.text);
    goto out;
  }
  const char *addr = json_string_value(json_object_get(o, "addr"));
  const char *accel = json_string_value(json_object_get(o, "accelerator"));
  json_t *draining = json_object_get(o, "draining");
  if (addr == NULL || *addr == '\0') {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "registration of %s has no \"addr\"", host_id);
    goto out;
  }
  if (accel == NULL || (strcmp(accel, "KVM") != 0 && strcmp(accel, "TCG") != 0)) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT,
                  "registration of %s: \"accelerator\" is neither \"KVM\" nor \"TCG\"", host_id);
    goto out;
  }
  if (draining != NULL && !json_is_boolean(draining)) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT,
                  "registration of %s: \"draining\" is not true or false", host_id);
    goto out;
  }
  if (get_u32(o, "vcpus", false, &v.vcpus, err) < 0 ||
      get_u32(o, "memory_mib", false, &v.memory_mib, err) < 0 ||
      get_u32(o, "free_memory_mib", false, &v.free_memory_mib, err) < 0 ||
      get_u32(o, "vcpu_milli_committed", true, &v.vcpu_milli_committed, err) < 0 ||
      get_u32(o, "host_memory_available_mib", true, &v.host_memory_available_mib, err) < 0 ||
      get_u32(o, "pool_ready", true, &v.pool_ready, err) < 0)
    goto out;
  if (v.free_memory_mib > v.memory_mib) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT,
                  "registration of %s: free_memory_mib %u is over memory_mib %u", host_id,
                  v.free_memory_mib, v.memory_mib);
    goto out;
  }

  bool found;
  size_t i = find(h, host_id, &found);
  entry *e;
  if (found) {
    e = h->v[i];
    free(e->host.addr);
    /* The reservations whose call had ended are in this figure now. */
    size_t k = 0;
    for (size_t r = 0; r < e->n_res; r++)
      if (!e->res[r].ended) e->res[k++] = e->res[r];
    e->n_res = k;
  } else {
    e = brume_xcalloc(1, sizeof(*e));
    e->host.id = brume_xstrdup(host_id);
    if (h->n == h->cap) {
      h->cap = h->cap ? h->cap * 2 : 8;
      h->v = brume_xrealloc(h->v, h->cap * sizeof(*h->v));
    }
    memmove(&h->v[i + 1], &h->v[i], (h->n - i) * sizeof(*h->v));
    h->v[i] = e;
    h->n++;
  }
  e->host.addr = brume_xstrdup(addr);
  e->host.kvm = strcmp(accel, "KVM") == 0;
  e->host.vcpus = v.vcpus;
  e->host.memory_mib = v.memory_mib;
  e->host.free_memory_mib = v.free_memory_mib;
  e->host.vcpu_milli_committed = v.vcpu_milli_committed;
  e->host.host_memory_available_mib = v.host_memory_available_mib;
  e->host.pool_ready = v.pool_ready;
  e->host.draining = draining != NULL && json_is_true(draining);
  e->host.updates++;
  e->host.updated_unix_ms = brume_wall_ms();
  rc = 0;
out:
  json_decref(o);
  return rc;
}

void brume_hosts_remove(brume_hosts *h, const char *host_id) {
  bool found;
  size_t i = find(h, host_id, &found);
  if (!found) return;
  entry_free(h->v[i]);
  memmove(&h->v[i], &h->v[i + 1], (h->n - i - 1) * sizeof(*h->v));
  h->n--;
}

const brume_host *brume_hosts_get(const brume_hosts *h, const char *host_id) {
  entry *e = lookup(h, host_id);
  return e ? &e->host : NULL;
}

size_t brume_hosts_count(const brume_hosts *h) {
  return h->n;
}

const brume_host *brume_hosts_at(const brume_hosts *h, size_t i) {
  return i < h->n ? &h->v[i]->host : NULL;
}

/* What the host's reservations hold. */
static void reserved(const entry *e, uint64_t *mib, uint64_t *milli) {
  *mib = *milli = 0;
  for (size_t r = 0; r < e->n_res; r++) {
    *mib += e->res[r].memory_mib;
    *milli += e->res[r].vcpu_milli;
  }
}

/* Cold starts sent to the host whose CreateSandbox call is still under way: boots that the
 * host's CPUs (and its max_boots) must get through before a new one. */
static size_t boots_under_way(const entry *e) {
  size_t n = 0;
  for (size_t r = 0; r < e->n_res; r++) n += !e->res[r].ended;
  return n;
}

static uint32_t entry_free_mib(const entry *e) {
  uint64_t mib, milli;
  reserved(e, &mib, &milli);
  return mib >= e->host.free_memory_mib ? 0 : (uint32_t)(e->host.free_memory_mib - mib);
}

static uint32_t entry_free_milli(const brume_hosts *h, const entry *e) {
  uint64_t mib, milli;
  reserved(e, &mib, &milli);
  uint64_t cap = (uint64_t)e->host.vcpus * 1000u * h->cpu_overcommit;
  uint64_t used = (uint64_t)e->host.vcpu_milli_committed + milli;
  uint64_t left = used >= cap ? 0 : cap - used;
  return left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
}

uint32_t brume_hosts_reserved_mib(const brume_hosts *h, const char *host_id) {
  entry *e = lookup(h, host_id);
  if (e == NULL) return 0;
  uint64_t mib, milli;
  reserved(e, &mib, &milli);
  return mib > UINT32_MAX ? UINT32_MAX : (uint32_t)mib;
}

uint32_t brume_hosts_free_mib(const brume_hosts *h, const char *host_id) {
  entry *e = lookup(h, host_id);
  return e ? entry_free_mib(e) : 0;
}

uint32_t brume_hosts_free_vcpu_milli(const brume_hosts *h, const char *host_id) {
  entry *e = lookup(h, host_id);
  return e ? entry_free_milli(h, e) : 0;
}

const brume_host *brume_hosts_choose(const brume_hosts *h, uint32_t memory_mib, uint32_t vcpu_milli,
                                     brume_hosts_count_fn count, void *arg, brume_err **err) {
  const entry *best = NULL;
  size_t best_count = 0;
  uint32_t best_free = 0;
  size_t draining = 0, no_memory = 0, no_cpu = 0;
  for (size_t i = 0; i < h->n; i++) {
    const entry *e = h->v[i];
    if (e->host.draining) {
      draining++;
      continue;
    }
    uint32_t free_mib = entry_free_mib(e);
    if (free_mib < memory_mib) {
      no_memory++;
      continue;
    }
    if (entry_free_milli(h, e) < vcpu_milli) {
      no_cpu++;
      continue;
    }
    /* An ended reservation is in the table already (count has it); one under way is not. */
    size_t c = (count ? count(arg, e->host.id) : 0) + boots_under_way(e);
    /* Hosts are in id order, so a tie keeps the smaller id. */
    if (best == NULL || c < best_count || (c == best_count && free_mib > best_free)) {
      best = e;
      best_count = c;
      best_free = free_mib;
    }
  }
  if (best) return &best->host;
  brume_err_set(err, BRUME_UNAVAILABLE,
                "InsufficientCapacityException: no host has room for a sandbox of %u MiB and "
                "%u/1000 vCPU (%zu hosts: %zu draining, %zu short of memory, %zu short of vCPU "
                "share)",
                memory_mib, vcpu_milli, h->n, draining, no_memory, no_cpu);
  return NULL;
}

uint64_t brume_hosts_reserve(brume_hosts *h, const char *host_id, uint32_t memory_mib,
                             uint32_t vcpu_milli, brume_err **err) {
  entry *e = lookup(h, host_id);
  if (e == NULL) {
    brume_err_set(err, BRUME_NOT_FOUND, "host %s is not registered", host_id);
    return 0;
  }
  if (e->n_res == e->cap_res) {
    e->cap_res = e->cap_res ? e->cap_res * 2 : 4;
    e->res = brume_xrealloc(e->res, e->cap_res * sizeof(*e->res));
  }
  uint64_t id = h->next_reservation++;
  e->res[e->n_res++] = (reservation){.id = id, .memory_mib = memory_mib, .vcpu_milli = vcpu_milli};
  return id;
}

void brume_hosts_end_reservation(brume_hosts *h, const char *host_id, uint64_t reservation_id,
                                 bool created, int64_t now_ms) {
  entry *e = lookup(h, host_id);
  if (e == NULL) return;
  for (size_t r = 0; r < e->n_res; r++)
    if (e->res[r].id == reservation_id) {
      if (created) {
        e->res[r].ended = true;
        e->res[r].ended_ms = now_ms;
      } else {
        e->res[r] = e->res[e->n_res - 1];
        e->n_res--;
      }
      return;
    }
}

void brume_hosts_expire(brume_hosts *h, int64_t now_ms, int64_t after_ms) {
  for (size_t i = 0; i < h->n; i++) {
    entry *e = h->v[i];
    size_t k = 0;
    for (size_t r = 0; r < e->n_res; r++)
      if (!e->res[r].ended || now_ms - e->res[r].ended_ms < after_ms) e->res[k++] = e->res[r];
    e->n_res = k;
  }
}
