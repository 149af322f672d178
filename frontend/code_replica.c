#include "code_replica.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "registration.h"
#include "ticker.h"

struct brume_code_replica {
  brume_code_replica_opts o;
  char *prefix, *self_id;
  pthread_mutex_t pass; /* one pass at a time */
  brume_ticker *ticker;
  brume_counter *replicated;
  brume_gauge *missing;
};

typedef struct download {
  unsigned char *p;
  size_t len, cap;
} download;

static size_t on_data(char *data, size_t size, size_t n, void *user) {
  download *d = user;
  size_t add = size * n;
  if (d->len + add > BRUME_CODE_ZIP_MAX) return 0; /* too big for an archive: abort */
  if (d->len + add > d->cap) {
    d->cap = (d->len + add) * 2;
    d->p = brume_xrealloc(d->p, d->cap);
  }
  memcpy(d->p + d->len, data, add);
  d->len += add;
  return add;
}

static void sha256_hex(const unsigned char *p, size_t len, char out[65]) {
  unsigned char md[32];
  unsigned int mdlen = 0;
  if (EVP_Digest(p, len, md, &mdlen, EVP_sha256(), NULL) != 1) brume_fatal("SHA-256 failed");
  for (size_t i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Downloads sha256 from the peer at http_addr and stores it: 0, or -1 with *err. */
static int fetch_from(brume_code_replica *r, const char *http_addr, const char *sha256,
                      brume_err **err) {
  brume_autofree char *url = brume_xasprintf("http://%s/code/%s", http_addr, sha256);
  download d = {0};
  CURL *h = curl_easy_init();
  if (h == NULL) brume_fatal("curl_easy_init failed");
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)r->o.fetch_timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &d);
  CURLcode rc = curl_easy_perform(h);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(h);
  int ret = -1;
  char got[65];
  if (rc != CURLE_OK) {
    brume_err_set(err, BRUME_UNAVAILABLE, "GET %s: %s", url, curl_easy_strerror(rc));
  } else if (status != 200) {
    brume_err_set(err, BRUME_NOT_FOUND, "GET %s: HTTP %ld", url, status);
  } else if (sha256_hex(d.p, d.len, got), strcmp(got, sha256) != 0) {
    brume_err_set(err, BRUME_DATA_LOSS, "GET %s: the %zu bytes hash to %s", url, d.len, got);
  } else {
    char stored[65];
    ret = brume_code_store_put(r->o.store, d.p, d.len, stored, err);
  }
  free(d.p);
  return ret;
}

/* The other frontends' HTTP addresses, from their registrations: a JSON array, or NULL. */
static json_t *peers(brume_code_replica *r, brume_err **err) {
  json_t *all = brume_registrations_list(r->o.etcd, r->prefix, "frontend", err);
  if (all == NULL) return NULL;
  json_t *out = json_array();
  size_t i;
  json_t *v;
  json_array_foreach(all, i, v) {
    const char *addr = json_string_value(json_object_get(v, "http_addr"));
    if (addr && strcmp(json_string_value(json_object_get(v, "id")), r->self_id) != 0)
      json_array_append_new(out, json_string(addr));
  }
  json_decref(all);
  return out;
}

int brume_code_replica_sync(brume_code_replica *r, brume_err **err) {
  pthread_mutex_lock(&r->pass);
  json_t *needs = r->o.needs(r->o.needs_user);
  json_t *from = NULL;
  int missing = 0;
  size_t i;
  json_t *v;
  json_array_foreach(needs, i, v) {
    const char *sha = json_string_value(v);
    if (sha == NULL || brume_code_store_has(r->o.store, sha, NULL)) continue;
    if (from == NULL && (from = peers(r, err)) == NULL) {
      missing = -1;
      break;
    }
    bool got = false;
    size_t k;
    json_t *peer;
    json_array_foreach(from, k, peer) {
      brume_autoptr(brume_err) ferr = NULL;
      if (fetch_from(r, json_string_value(peer), sha, &ferr) == 0) {
        got = true;
        brume_info("Copied function code from another frontend.", "sha256=%s peer=%s", sha,
                   json_string_value(peer));
        break;
      }
      /* Debug only: a pass every few seconds would repeat it; brume_frontend_code_missing
       * and the failed count say it for operators. */
      brume_debug("A frontend could not give function code.", "sha256=%s err=\"%s\"", sha,
                  ferr->msg);
    }
    if (r->replicated) brume_counter_inc(r->replicated, 1, got ? "ok" : "failed");
    missing += !got;
  }
  if (r->missing && missing >= 0) brume_gauge_set(r->missing, missing);
  json_decref(from);
  json_decref(needs);
  pthread_mutex_unlock(&r->pass);
  return missing;
}

static void tick(void *user) {
  brume_autoptr(brume_err) err = NULL;
  if (brume_code_replica_sync(user, &err) < 0)
    brume_warn("Could not list the other frontends to copy function code from.", "err=\"%s\"",
               err->msg);
}

brume_code_replica *brume_code_replica_new(const brume_code_replica_opts *opts) {
  brume_code_replica *r = brume_xcalloc(1, sizeof(*r));
  r->o = *opts;
  r->prefix = brume_xstrdup(opts->prefix);
  r->self_id = brume_xstrdup(opts->self_id);
  if (r->o.fetch_timeout_ms <= 0) r->o.fetch_timeout_ms = 60000;
  pthread_mutex_init(&r->pass, NULL);
  if (opts->metrics) {
    r->replicated = brume_metrics_counter(
        opts->metrics, "brume_frontend_code_replicated_total",
        "Function code archives this frontend tried to copy from another frontend, by result.",
        "result", NULL);
    r->missing = brume_metrics_gauge(
        opts->metrics, "brume_frontend_code_missing",
        "Code archives the catalog needs that this frontend's store lacked after the last pass.",
        NULL);
  }
  if (opts->period_ms > 0) r->ticker = brume_ticker_start(opts->period_ms, tick, r);
  return r;
}

void brume_code_replica_free(brume_code_replica *r) {
  if (r == NULL) return;
  brume_ticker_stop(r->ticker);
  pthread_mutex_destroy(&r->pass);
  free(r->prefix);
  free(r->self_id);
  free(r);
}
