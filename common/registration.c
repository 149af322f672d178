#include "registration.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "mem.h"

struct brume_registration {
  brume_etcd *etcd;
  char *key;
  int ttl_s;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  bool stopping;
  bool renew_now; /* brume_registration_renew_now: renew without waiting out the period */
  /* under lock */
  char *value;
  int64_t lease;           /* 0 while lost */
  struct timespec renewed; /* CLOCK_MONOTONIC of the last success */
  /* Under lost_lock, which is held while lost_fn runs (brume_registration_on_lost). */
  pthread_mutex_t lost_lock;
  brume_registration_lost_fn lost_fn;
  void *lost_user;
};

static struct timespec mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts;
}

static int64_t ms_since(struct timespec t) {
  struct timespec now = mono_now();
  return (int64_t)(now.tv_sec - t.tv_sec) * 1000 + (now.tv_nsec - t.tv_nsec) / 1000000;
}

char *brume_registration_key(const char *prefix, const char *kind, const char *id) {
  return brume_xasprintf("%s/svc/%s/%s", prefix, kind, id);
}

/* Grants a lease and writes the key under it. Called without the lock held. */
static int put_under_new_lease(brume_registration *reg, const char *value, int64_t *lease,
                               brume_err **err) {
  if (brume_etcd_lease_grant(reg->etcd, reg->ttl_s, lease, NULL, err) < 0)
    return brume_err_wrap(err, "register %s", reg->key);
  if (brume_etcd_put(reg->etcd, reg->key, value, strlen(value), *lease, NULL, err) < 0) {
    brume_etcd_lease_revoke(reg->etcd, *lease, NULL);
    return brume_err_wrap(err, "register %s", reg->key);
  }
  return 0;
}

/* Renews the lease every TTL/3; re-registers when the lease is gone. */
static void *renew(void *arg) {
  brume_registration *reg = arg;
  pthread_mutex_lock(&reg->lock);
  while (!reg->stopping) {
    int64_t period_ms = reg->lease ? reg->ttl_s * 1000 / 3 : 500; /* retry sooner when lost */
    struct timespec until = brume_timespec_in(CLOCK_MONOTONIC, period_ms);
    while (!reg->stopping && !reg->renew_now &&
           pthread_cond_timedwait(&reg->wake, &reg->lock, &until) == 0) {
    }
    if (reg->stopping) break;
    reg->renew_now = false;
    int64_t lease = reg->lease;
    brume_autofree char *value = brume_xstrdup(reg->value);
    pthread_mutex_unlock(&reg->lock);

    brume_err *err = NULL;
    int rc = 0;
    if (lease) {
      rc = brume_etcd_lease_keepalive(reg->etcd, lease, NULL, &err);
      if (rc < 0 && err->code == BRUME_NOT_FOUND) {
        brume_warn("Registration lease expired; registering again.", "key=%s lease=%lld", reg->key,
                   (long long)lease);
        brume_err_clear(&err);
        pthread_mutex_lock(&reg->lost_lock);
        if (reg->lost_fn) reg->lost_fn(reg->lost_user, lease);
        pthread_mutex_unlock(&reg->lost_lock);
        lease = 0;
      }
    }
    if (!lease && (rc = put_under_new_lease(reg, value, &lease, &err)) == 0)
      brume_info("Registered again.", "key=%s lease=%lld", reg->key, (long long)lease);
    if (rc < 0 && err) {
      char q[512];
      brume_warn("Cannot renew the registration.", "key=%s err=%s", reg->key,
                 brume_log_quote(q, sizeof(q), err->msg));
    }
    brume_err_free(err);

    pthread_mutex_lock(&reg->lock);
    reg->lease = lease;
    if (rc == 0) reg->renewed = mono_now();
  }
  pthread_mutex_unlock(&reg->lock);
  return NULL;
}

brume_registration *brume_register(brume_etcd *etcd, const char *prefix, const char *kind,
                                   const char *id, const char *value, int ttl_s, brume_err **err) {
  if (ttl_s < 2) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "registration TTL must be at least 2 s, got %d",
                  ttl_s);
    return NULL;
  }
  brume_registration *reg = brume_xcalloc(1, sizeof(*reg));
  reg->etcd = etcd;
  reg->key = brume_registration_key(prefix, kind, id);
  reg->ttl_s = ttl_s;
  reg->value = brume_xstrdup(value);
  pthread_mutex_init(&reg->lock, NULL);
  pthread_mutex_init(&reg->lost_lock, NULL);
  brume_cond_init_monotonic(&reg->wake);
  if (put_under_new_lease(reg, value, &reg->lease, err) < 0) {
    reg->lease = 0;
    brume_registration_free(reg);
    return NULL;
  }
  reg->renewed = mono_now();
  if (pthread_create(&reg->thread, NULL, renew, reg) != 0)
    brume_fatal("cannot start the registration thread");
  brume_info("Registered in etcd.", "key=%s lease=%lld ttl_s=%d", reg->key, (long long)reg->lease,
             ttl_s);
  return reg;
}

int brume_registration_update(brume_registration *reg, const char *value, brume_err **err) {
  pthread_mutex_lock(&reg->lock);
  free(reg->value);
  reg->value = brume_xstrdup(value);
  int64_t lease = reg->lease;
  pthread_mutex_unlock(&reg->lock);
  /* Without a lease the renewal thread writes the new value when it registers again. */
  if (lease && brume_etcd_put(reg->etcd, reg->key, value, strlen(value), lease, NULL, err) < 0)
    return brume_err_wrap(err, "update registration %s", reg->key);
  return 0;
}

bool brume_registration_healthy(brume_registration *reg) {
  pthread_mutex_lock(&reg->lock);
  bool ok = reg->lease != 0 && ms_since(reg->renewed) < (int64_t)reg->ttl_s * 1000;
  pthread_mutex_unlock(&reg->lock);
  return ok;
}

int64_t brume_registration_age_ms(brume_registration *reg) {
  pthread_mutex_lock(&reg->lock);
  int64_t age = ms_since(reg->renewed);
  pthread_mutex_unlock(&reg->lock);
  return age;
}

void brume_registration_renew_now(brume_registration *reg) {
  pthread_mutex_lock(&reg->lock);
  reg->renew_now = true;
  pthread_cond_signal(&reg->wake);
  pthread_mutex_unlock(&reg->lock);
}

int64_t brume_registration_lease(brume_registration *reg) {
  pthread_mutex_lock(&reg->lock);
  int64_t lease = reg->lease;
  pthread_mutex_unlock(&reg->lock);
  return lease;
}

void brume_registration_on_lost(brume_registration *reg, brume_registration_lost_fn fn,
                                void *user) {
  pthread_mutex_lock(&reg->lost_lock);
  reg->lost_fn = fn;
  reg->lost_user = user;
  pthread_mutex_unlock(&reg->lost_lock);
}

void brume_registration_free(brume_registration *reg) {
  if (reg == NULL) return;
  if (reg->thread) {
    pthread_mutex_lock(&reg->lock);
    reg->stopping = true;
    pthread_cond_signal(&reg->wake);
    pthread_mutex_unlock(&reg->lock);
    pthread_join(reg->thread, NULL);
  }
  if (reg->lease) brume_etcd_lease_revoke(reg->etcd, reg->lease, NULL);
  pthread_mutex_destroy(&reg->lock);
  pthread_mutex_destroy(&reg->lost_lock);
  pthread_cond_destroy(&reg->wake);
  free(reg->key);
  free(reg->value);
  free(reg);
}

json_t *brume_registrations_list(brume_etcd *etcd, const char *prefix, const char *kind,
                                 brume_err **err) {
  brume_autofree char *dir =
      kind ? brume_xasprintf("%s/svc/%s/", prefix, kind) : brume_xasprintf("%s/svc/", prefix);
  brume_autoptr(brume_etcd_range) r = brume_etcd_get_prefix(etcd, dir, err);
  if (r == NULL) return NULL;
  size_t svc_len = strlen(prefix) + strlen("/svc/");
  json_t *out = json_array();
  for (size_t i = 0; i < r->n; i++) {
    const char *rest = r->kvs[i].key + svc_len; /* "<kind>/<id>" */
    const char *slash = strchr(rest, '/');
    json_t *v = json_loadb(r->kvs[i].value, r->kvs[i].value_len, 0, NULL);
    if (slash == NULL || !json_is_object(v)) {
      json_decref(v);
      continue;
    }
    json_object_set_new(v, "kind", json_stringn(rest, (size_t)(slash - rest)));
    json_object_set_new(v, "id", json_string(slash + 1));
    json_array_append_new(out, v);
  }
  return out;
}
