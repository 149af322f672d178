#include "etcd.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "etcd_json.h"
#include "log.h"
#include "strbuf.h"

BRUME_DEFINE_AUTOPTR(CURL, curl_easy_cleanup)

enum {
  DEFAULT_TIMEOUT_MS = 5000,
  /* Idle handles kept for reuse, each with its keep-alive connection; more callers than this at
   * once still work, their extra handles are just not kept. */
  POOL_MAX = 16,
  /* The smallest share of the deadline given to connecting to one endpoint, so that a dead first
   * endpoint cannot use up the whole call. */
  MIN_CONNECT_MS = 100,
  WATCH_BACKOFF_MIN_MS = 100,
  WATCH_BACKOFF_MAX_MS = 5000,
};

/* etcd's largest request is 1.5 MiB by default; a range over many keys can be larger, but an
 * answer beyond this is a bug or an attack, not data. */
static const size_t MAX_RESPONSE = 256u << 20;

struct brume_etcd {
  char **endpoints;
  size_t n_endpoints;
  atomic_size_t current; /* index of the endpoint calls go to first */
  int timeout_ms;
  char *ca_path;
  char *cert_path;
  char *key_path;
  struct curl_slist *headers;
  pthread_mutex_t pool_lock;
  CURL *pool[POOL_MAX];
  size_t pool_n;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void) {
  curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- response buffer ---- */

/* A response body, refused once it would pass MAX_RESPONSE. */
typedef struct buf {
  brume_strbuf sb;
  bool too_big;
} buf;

static void buf_clear(buf *b) {
  brume_strbuf_clear(&b->sb);
  b->too_big = false;
}

static bool buf_append(buf *b, const char *p, size_t n) {
  if (n > MAX_RESPONSE - b->sb.len) {
    b->too_big = true;
    return false;
  }
  brume_strbuf_append(&b->sb, p, n);
  return true;
}

static size_t buf_write(char *ptr, size_t size, size_t nmemb, void *user) {
  return buf_append(user, ptr, size * nmemb) ? size * nmemb : 0;
}

/* ---- client ---- */

static char *trim(const char *s, size_t len) {
  while (len > 0 && (*s == ' ' || *s == '\t')) s++, len--;
  while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '/')) len--;
  return brume_xstrndup(s, len);
}

static int check_readable(const char *path, const char *what, brume_err **err) {
  if (path == NULL || access(path, R_OK) == 0) return 0;
  return brume_err_set(err, BRUME_INVALID_ARGUMENT, "etcd %s %s cannot be read: %s", what, path,
                       strerror(errno));
}

brume_etcd *brume_etcd_new(const char *endpoints, const brume_etcd_opts *opts, brume_err **err) {
  static const brume_etcd_opts no_opts = {0};
  if (opts == NULL) opts = &no_opts;
  if (endpoints == NULL || endpoints[strspn(endpoints, " \t,")] == '\0') {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "etcd: no endpoints given");
    return NULL;
  }
  if (opts->timeout_ms < 0) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "etcd: negative timeout %d ms", opts->timeout_ms);
    return NULL;
  }
  if (check_readable(opts->ca_path, "CA file", err) < 0 ||
      check_readable(opts->cert_path, "certificate", err) < 0 ||
      check_readable(opts->key_path, "key", err) < 0)
    return NULL;
  pthread_once(&curl_once, curl_init);
  if (curl_init_result != CURLE_OK) {
    brume_err_set(err, BRUME_INTERNAL, "etcd: libcurl failed to initialise: %s",
                  curl_easy_strerror(curl_init_result));
    return NULL;
  }

  brume_autoptr(brume_etcd) e = brume_xcalloc(1, sizeof(*e));
  pthread_mutex_init(&e->pool_lock, NULL);
  for (const char *p = endpoints; *p;) {
    size_t len = strcspn(p, ",");
    brume_autofree char *ep = trim(p, len);
    p += len + (p[len] == ',');
    if (*ep == '\0') continue;
    if (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0) {
      brume_err_set(err, BRUME_INVALID_ARGUMENT,
                    "etcd endpoint %s is not an http:// or https:// URL", ep);
      return NULL;
    }
    if (ep[strcspn(ep, "?#")] != '\0') {
      brume_err_set(err, BRUME_INVALID_ARGUMENT, "etcd endpoint %s must be a base URL", ep);
      return NULL;
    }
    e->endpoints = brume_xrealloc(e->endpoints, (e->n_endpoints + 1) * sizeof(char *));
    e->endpoints[e->n_endpoints++] = brume_steal(&ep);
  }
  if (e->n_endpoints == 0) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "etcd: no endpoints in \"%s\"", endpoints);
    return NULL;
  }
  e->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
  e->ca_path = brume_xstrdup(opts->ca_path);
  e->cert_path = brume_xstrdup(opts->cert_path);
  e->key_path = brume_xstrdup(opts->key_path);
  /* "Expect:" stops libcurl from waiting for a 100-continue on bodies over 1 KiB, which the
   * gateway never sends: every such txn would stall for a second. */
  e->headers = curl_slist_append(NULL, "Content-Type: application/json");
  struct curl_slist *h = e->headers ? curl_slist_append(e->headers, "Expect:") : NULL;
  if (h == NULL) brume_fatal("out of memory building etcd request headers");
  return brume_steal(&e);
}

void brume_etcd_free(brume_etcd *e) {
  if (e == NULL) return;
  for (size_t i = 0; i < e->pool_n; i++) curl_easy_cleanup(e->pool[i]);
  pthread_mutex_destroy(&e->pool_lock);
  for (size_t i = 0; i < e->n_endpoints; i++) free(e->endpoints[i]);
  free(e->endpoints);
  free(e->ca_path);
  free(e->cert_path);
  free(e->key_path);
  curl_slist_free_all(e->headers);
  free(e);
}

const char *brume_etcd_current_endpoint(brume_etcd *e) {
  return e->endpoints[atomic_load(&e->current) % e->n_endpoints];
}

/* A peer that vanished without closing (host down, partition) is noticed after
 * KEEPIDLE + 3 * KEEPINTVL = 25 s instead of the kernel's default 9 probes: a watch would
 * otherwise wait on a dead stream for a minute. */
static int set_sockopts(void *user, curl_socket_t fd, curlsocktype purpose) {
  (void)user;
  if (purpose == CURLSOCKTYPE_IPCXN) {
    int probes = 3;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof(probes));
  }
  return CURL_SOCKOPT_OK;
}

/* A new easy handle with the options every request shares. */
static CURL *handle_new(brume_etcd *e) {
  CURL *h = curl_easy_init();
  if (h == NULL) brume_fatal("out of memory creating a libcurl handle");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* timeouts without SIGALRM: we are threaded */
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, e->headers);
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(h, CURLOPT_PROXY, ""); /* etcd is never behind an $http_proxy */
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 10L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 5L);
  curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, set_sockopts);
  if (e->ca_path) curl_easy_setopt(h, CURLOPT_CAINFO, e->ca_path);
  if (e->cert_path) curl_easy_setopt(h, CURLOPT_SSLCERT, e->cert_path);
  if (e->key_path) curl_easy_setopt(h, CURLOPT_SSLKEY, e->key_path);
  return h;
}

static CURL *pool_get(brume_etcd *e) {
  CURL *h = NULL;
  pthread_mutex_lock(&e->pool_lock);
  if (e->pool_n > 0) h = e->pool[--e->pool_n];
  pthread_mutex_unlock(&e->pool_lock);
  return h ? h : handle_new(e);
}

static void pool_put(brume_etcd *e, CURL *h) {
  pthread_mutex_lock(&e->pool_lock);
  if (e->pool_n < POOL_MAX) {
    e->pool[e->pool_n++] = h;
    h = NULL;
  }
  pthread_mutex_unlock(&e->pool_lock);
  if (h) curl_easy_cleanup(h);
}

/* Makes idx the current endpoint if the current one is still `from` (another thread may have
 * moved on already), and says so once. */
static void fail_over(brume_etcd *e, size_t from, size_t idx) {
  size_t expected = from;
  if (from != idx && atomic_compare_exchange_strong(&e->current, &expected, idx))
    brume_warn("etcd endpoint failed; using the next one.", "from=%s to=%s", e->endpoints[from],
               e->endpoints[idx]);
}

static void append_failure(char **list, const char *endpoint, const char *why) {
  char *s = *list ? brume_xasprintf("%s; %s: %s", *list, endpoint, why)
                  : brume_xasprintf("%s: %s", endpoint, why);
  free(*list);
  *list = s;
}

/* The gateway's answer to a failed call: its error JSON when there is one, else the HTTP code. */
static int http_failure(long http, const buf *resp, brume_err **err) {
  brume_status code;
  brume_autofree char *msg = NULL;
  if (brume_etcd_json_parse_error(resp->sb.s, resp->sb.len, &code, &msg)) {
    if (strncmp(msg, "etcd", 4) == 0) return brume_err_set(err, code, "%s", msg);
    return brume_err_set(err, code, "etcd: %s", msg);
  }
  if (http == 404)
    return brume_err_set(err, BRUME_UNIMPLEMENTED,
                         "etcd answered HTTP 404: is this an etcd 3.4 or later client URL?");
  return brume_err_set(err, http >= 500 ? BRUME_UNAVAILABLE : BRUME_UNKNOWN,
                       "etcd answered HTTP %ld", http);
}

/* POSTs body to path on the current endpoint, failing over as etcd.h describes. retry_after_send
 * says whether the request may be repeated on another endpoint after it may have been applied.
 * On success the 200 answer is in *resp (caller clears it). */
/* curl's reason for a failed transfer to ep, with a hint when it is a TLS failure that the
 * configuration explains: etcd asking for a client certificate that none is set for, or a server
 * certificate that tls_ca does not vouch for. */
static char *curl_failure(const brume_etcd *e, const char *ep, CURLcode rc) {
  const char *hint = "";
  bool https = strncmp(ep, "https://", 8) == 0;
  if (https && rc == CURLE_PEER_FAILED_VERIFICATION)
    hint = " (etcd's certificate is not signed by the CA in tls_ca)";
  else if (https && e->cert_path == NULL &&
           (rc == CURLE_RECV_ERROR || rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_SEND_ERROR))
    hint = " (etcd may require a client certificate: set tls_cert and tls_key)";
  else if (!https && rc == CURLE_GOT_NOTHING)
    hint = " (is this endpoint https://?)";
  return brume_xasprintf("%s%s", curl_easy_strerror(rc), hint);
}

static int call(brume_etcd *e, const char *path, const char *body, bool retry_after_send, buf *resp,
                brume_err **err) {
  long long deadline = brume_mono_ms() + e->timeout_ms;
  size_t start = atomic_load(&e->current) % e->n_endpoints;
  brume_autofree char *failures = NULL;
  for (size_t k = 0; k < e->n_endpoints; k++) {
    size_t idx = (start + k) % e->n_endpoints;
    const char *ep = e->endpoints[idx];
    long long left = deadline - brume_mono_ms();
    if (left <= 0)
      return brume_err_set(err, BRUME_DEADLINE_EXCEEDED, "etcd did not answer within %d ms (%s)",
                           e->timeout_ms, failures ? failures : ep);
    /* Each endpoint still to try gets a share of what is left for connecting, and, when the
     * request may be repeated, for answering too: a dead or hung first endpoint must leave time
     * for the next. The last endpoint gets all that is left. */
    long share = (long)(left / (long long)(e->n_endpoints - k));
    if (share < MIN_CONNECT_MS) share = MIN_CONNECT_MS;
    long connect_ms = share < left ? share : (long)left;
    long total_ms = retry_after_send ? connect_ms : (long)left;
    brume_autofree char *url = brume_xasprintf("%s%s", ep, path);
    buf_clear(resp);
    CURL *h = pool_get(e);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, total_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    CURLcode rc = curl_easy_perform(h);
    long http = 0, sent = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
    curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &sent);
    pool_put(e, h);

    if (rc == CURLE_OK) {
      if (http == 200) {
        fail_over(e, start, idx);
        return 0;
      }
      brume_autoptr(brume_err) failed = NULL;
      http_failure(http, resp, &failed);
      /* "no leader" and the like: another member may well answer. */
      if (failed->code == BRUME_UNAVAILABLE && retry_after_send && k + 1 < e->n_endpoints) {
        append_failure(&failures, ep, failed->msg);
        continue;
      }
      fail_over(e, start, idx);
      return brume_err_set(err, failed->code, "%s", failed->msg);
    }
    if (rc == CURLE_WRITE_ERROR && resp->too_big)
      return brume_err_set(err, BRUME_RESOURCE_EXHAUSTED, "etcd answer from %s exceeds %zu bytes",
                           ep, MAX_RESPONSE);
    if (rc == CURLE_OPERATION_TIMEDOUT && sent > 0) {
      if (retry_after_send && k + 1 < e->n_endpoints) {
        brume_autofree char *why = brume_xasprintf("no answer within %ld ms", total_ms);
        append_failure(&failures, ep, why);
        continue;
      }
      return brume_err_set(err, BRUME_DEADLINE_EXCEEDED,
                           "etcd did not answer within %d ms (%s%s%s)%s", e->timeout_ms,
                           failures ? failures : "", failures ? "; " : "", ep,
                           retry_after_send ? "" : "; its outcome is unknown");
    }
    brume_autofree char *why = curl_failure(e, ep, rc);
    if (sent > 0 && !retry_after_send)
      return brume_err_set(err, BRUME_UNAVAILABLE,
                           "etcd unavailable: %s: %s after the request was sent; its outcome is "
                           "unknown",
                           ep, why);
    append_failure(&failures, ep, why);
  }
  return brume_err_set(err, BRUME_UNAVAILABLE, "etcd unavailable: %s", failures);
}

int brume_etcd_get(brume_etcd *e, const char *key, brume_etcd_kv **kv_out, int64_t *revision_out,
                   brume_err **err) {
  BRUME_ENSURE(key != NULL && kv_out != NULL);
  *kv_out = NULL;
  brume_autofree char *body = brume_etcd_json_range_req(key, false, false);
  buf resp = {0};
  if (call(e, "/v3/kv/range", body, true, &resp, err) < 0) {
    buf_clear(&resp);
    return brume_err_wrap(err, "get %s", key);
  }
  brume_autoptr(brume_etcd_range) r = brume_etcd_json_parse_range(resp.sb.s, resp.sb.len, err);
  buf_clear(&resp);
  if (r == NULL) return brume_err_wrap(err, "get %s", key);
  if (revision_out) *revision_out = r->revision;
  if (r->n > 0) {
    brume_etcd_kv *kv = brume_xmalloc(sizeof(*kv));
    *kv = r->kvs[0];
    memset(&r->kvs[0], 0, sizeof(r->kvs[0]));
    *kv_out = kv;
  }
  return 0;
}

brume_etcd_range *brume_etcd_get_prefix(brume_etcd *e, const char *prefix, brume_err **err) {
  BRUME_ENSURE(prefix != NULL);
  brume_autofree char *body = brume_etcd_json_range_req(prefix, true, false);
  buf resp = {0};
  brume_etcd_range *r = NULL;
  if (call(e, "/v3/kv/range", body, true, &resp, err) == 0)
    r = brume_etcd_json_parse_range(resp.sb.s, resp.sb.len, err);
  buf_clear(&resp);
  if (r == NULL) brume_err_wrap(err, "get prefix %s", prefix);
  return r;
}

int brume_etcd_put(brume_etcd *e, const char *key, const void *value, size_t value_len,
                   int64_t lease, int64_t *revision_out, brume_err **err) {
  BRUME_ENSURE(key != NULL && (value != NULL || value_len == 0));
  brume_autofree char *body = brume_etcd_json_put_req(key, value, value_len, lease);
  buf resp = {0};
  int64_t rev = 0;
  /* Repeating a put writes the same value again: harmless. */
  int r = call(e, "/v3/kv/put", body, true, &resp, err);
  if (r == 0) r = brume_etcd_json_parse_put(resp.sb.s, resp.sb.len, &rev, err);
  buf_clear(&resp);
  if (r < 0) return brume_err_wrap(err, "put %s", key);
  if (revision_out) *revision_out = rev;
  return 0;
}

int brume_etcd_delete(brume_etcd *e, const char *key, bool prefix, int64_t *deleted_out,
                      brume_err **err) {
  BRUME_ENSURE(key != NULL);
  brume_autofree char *body = brume_etcd_json_delete_req(key, prefix);
  buf resp = {0};
  int64_t deleted = 0, rev = 0;
  /* A repeated delete finds nothing left to delete; only the count can be off. */
  int r = call(e, "/v3/kv/deleterange", body, true, &resp, err);
  if (r == 0) r = brume_etcd_json_parse_delete(resp.sb.s, resp.sb.len, &deleted, &rev, err);
  buf_clear(&resp);
  if (r < 0) return brume_err_wrap(err, "delete %s%s", key, prefix ? "*" : "");
  if (deleted_out) *deleted_out = deleted;
  return 0;
}

brume_etcd_txn_result *brume_etcd_txn(brume_etcd *e, const brume_etcd_txn_req *req,
                                      brume_err **err) {
  BRUME_ENSURE(req != NULL);
  brume_autofree char *body = brume_etcd_json_txn_req(req, err);
  if (body == NULL) return NULL;
  buf resp = {0};
  brume_etcd_txn_result *t = NULL;
  /* Never repeated once sent: a compare-and-swap that went through would then fail its compare,
   * and the caller would wrongly believe it lost. */
  if (call(e, "/v3/kv/txn", body, false, &resp, err) == 0)
    t = brume_etcd_json_parse_txn(resp.sb.s, resp.sb.len, err);
  buf_clear(&resp);
  if (t == NULL) brume_err_wrap(err, "txn");
  return t;
}

int brume_etcd_lease_grant(brume_etcd *e, int64_t ttl_s, int64_t *id_out, int64_t *ttl_out,
                           brume_err **err) {
  if (ttl_s <= 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "lease grant: TTL %" PRId64 " s is not positive", ttl_s);
  brume_autofree char *body = brume_etcd_json_lease_grant_req(ttl_s);
  buf resp = {0};
  int64_t id = 0, ttl = 0;
  /* A repeated grant leaves an unused lease behind, which expires by itself. */
  int r = call(e, "/v3/lease/grant", body, true, &resp, err);
  if (r == 0) r = brume_etcd_json_parse_lease_grant(resp.sb.s, resp.sb.len, &id, &ttl, err);
  buf_clear(&resp);
  if (r < 0) return brume_err_wrap(err, "lease grant");
  *id_out = id;
  if (ttl_out) *ttl_out = ttl;
  return 0;
}

int brume_etcd_lease_keepalive(brume_etcd *e, int64_t id, int64_t *ttl_out, brume_err **err) {
  brume_autofree char *body = brume_etcd_json_lease_id_req(id);
  buf resp = {0};
  int64_t ttl = 0;
  int r = call(e, "/v3/lease/keepalive", body, true, &resp, err);
  if (r == 0) r = brume_etcd_json_parse_lease_keepalive(resp.sb.s, resp.sb.len, &ttl, err);
  buf_clear(&resp);
  /* A lease that is gone still gets a 200 answer, just without a TTL. */
  if (r == 0 && ttl <= 0) r = brume_err_set(err, BRUME_NOT_FOUND, "etcd: lease not found");
  if (r < 0) return brume_err_wrap(err, "lease keepalive %" PRId64, id);
  if (ttl_out) *ttl_out = ttl;
  return 0;
}

int brume_etcd_lease_revoke(brume_etcd *e, int64_t id, brume_err **err) {
  brume_autofree char *body = brume_etcd_json_lease_id_req(id);
  buf resp = {0};
  int r = call(e, "/v3/lease/revoke", body, true, &resp, err);
  buf_clear(&resp);
  if (r < 0) return brume_err_wrap(err, "lease revoke %" PRId64, id);
  return 0;
}

/* Whether a maintenance/status answer names a leader: "leader" is present and not 0 (the gateway
 * omits a zero field), and no "errors" are listed. */
static bool status_has_leader(const char *body, size_t len) {
  json_error_t jerr;
  json_t *root = json_loadb(body, len, 0, &jerr);
  if (root == NULL) return false;
  const char *leader = json_string_value(json_object_get(root, "leader"));
  json_t *errors = json_object_get(root, "errors");
  bool ok = leader && strcmp(leader, "0") != 0 && json_array_size(errors) == 0;
  json_decref(root);
  return ok;
}

void brume_etcd_probe_leader(brume_etcd *e, int timeout_ms, brume_etcd_leader_view *out) {
  memset(out, 0, sizeof(*out));
  buf resp = {0};
  for (size_t i = 0; i < e->n_endpoints; i++) {
    brume_autofree char *url = brume_xasprintf("%s/v3/maintenance/status", e->endpoints[i]);
    buf_clear(&resp);
    CURL *h = pool_get(e);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "{}");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 2L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    CURLcode rc = curl_easy_perform(h);
    long http = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
    pool_put(e, h);
    out->endpoints++;
    if (rc != CURLE_OK || http != 200) continue;
    out->reachable++;
    if (status_has_leader(resp.sb.s, resp.sb.len)) out->with_leader++;
  }
  buf_clear(&resp);
}

/* ---- watch ---- */

struct brume_etcd_watch {
  brume_etcd *e;
  char *prefix;
  brume_etcd_watch_fn fn;
  void *user;
  pthread_t thread;
  atomic_bool stop;
  atomic_int_least64_t next_rev; /* the first revision not yet delivered */
  pthread_mutex_t lock;          /* with cond: the backoff sleep that stop interrupts */
  pthread_cond_t cond;
  CURLM *multi; /* kept for curl_multi_wakeup() from brume_etcd_watch_stop() */

  /* State of the current stream, touched by the watch thread only. */
  buf line;
  const char *endpoint;
  bool created;
  bool reconnect_now; /* compaction: go on at once from the oldest revision kept */
  char *problem;      /* why the stream was abandoned, when it was the watch's decision */
  bool lost;          /* a stream broke and none has been created since */
  int backoff_ms;     /* wait before the next connection attempt */
};

/* Handles one line of the stream. Returns false to abandon the stream. */
static bool watch_line(brume_etcd_watch *w, const char *line, size_t len) {
  while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ')) len--;
  if (len == 0) return true;
  brume_status code;
  char *msg = NULL;
  if (brume_etcd_json_parse_error(line, len, &code, &msg)) {
    free(w->problem);
    w->problem = brume_xasprintf("etcd: %s (%s)", msg, brume_status_name(code));
    free(msg);
    return false;
  }
  brume_etcd_watch_chunk c;
  brume_err *perr = NULL;
  if (brume_etcd_json_parse_watch_chunk(line, len, &c, &perr) < 0) {
    free(w->problem);
    w->problem = brume_steal(&perr->msg);
    brume_err_free(perr);
    return false;
  }
  bool keep = true;
  int64_t next = atomic_load(&w->next_rev);
  if (c.created) {
    w->created = true;
    w->backoff_ms = 0;
    if (w->lost)
      brume_info("etcd watch resumed.", "prefix=%s endpoint=%s next_revision=%" PRId64, w->prefix,
                 w->endpoint, next);
    w->lost = false;
  }
  if (c.canceled) {
    if (c.compact_revision > 0) {
      brume_warn("etcd compacted revisions that the watch had not seen; their events are lost.",
                 "prefix=%s from_revision=%" PRId64 " compact_revision=%" PRId64, w->prefix, next,
                 c.compact_revision);
      if (c.compact_revision > next) atomic_store(&w->next_rev, c.compact_revision);
      w->reconnect_now = true;
      /* The receiver must re-read what it follows: changes it will never see were made. */
      w->fn(NULL, 0, w->user);
    } else {
      free(w->problem);
      w->problem = brume_xasprintf("etcd canceled the watch: %s",
                                   c.cancel_reason ? c.cancel_reason : "no reason given");
    }
    keep = false;
  } else if (c.n > 0) {
    /* Events come in revision order. Skipping the ones below next_rev is what makes a resumed
     * stream exactly-once even if etcd were to send a revision again. */
    size_t first = 0;
    while (first < c.n && c.events[first].kv.mod_revision < next) first++;
    if (first < c.n) {
      w->fn(c.events + first, c.n - first, w->user);
      atomic_store(&w->next_rev, c.events[c.n - 1].kv.mod_revision + 1);
    }
  }
  brume_etcd_json_watch_chunk_clear(&c);
  return keep;
}

/* Splits the stream into lines: the gateway writes one JSON object per line. */
static size_t watch_write(char *ptr, size_t size, size_t nmemb, void *user) {
  brume_etcd_watch *w = user;
  size_t n = size * nmemb;
  if (atomic_load(&w->stop)) return 0;
  if (!buf_append(&w->line, ptr, n)) {
    free(w->problem);
    w->problem = brume_xasprintf("etcd sent a watch line longer than %zu bytes", MAX_RESPONSE);
    return 0;
  }
  size_t start = 0;
  for (;;) {
    char *nl = memchr(w->line.sb.s + start, '\n', w->line.sb.len - start);
    if (nl == NULL) break;
    size_t len = (size_t)(nl - (w->line.sb.s + start));
    if (!watch_line(w, w->line.sb.s + start, len)) return 0;
    start += len + 1;
  }
  memmove(w->line.sb.s, w->line.sb.s + start, w->line.sb.len - start);
  w->line.sb.len -= start;
  w->line.sb.s[w->line.sb.len] = '\0';
  return n;
}

/* Sleeps ms unless stopped first. Returns false if the watch is stopping. */
static bool watch_sleep(brume_etcd_watch *w, int ms) {
  struct timespec ts = brume_timespec_in(CLOCK_MONOTONIC, ms);
  pthread_mutex_lock(&w->lock);
  while (!atomic_load(&w->stop) && pthread_cond_timedwait(&w->cond, &w->lock, &ts) == 0) {
  }
  pthread_mutex_unlock(&w->lock);
  return !atomic_load(&w->stop);
}

/* Runs one stream until it ends, fails or the watch stops. Returns the libcurl result. */
static CURLcode watch_stream(brume_etcd_watch *w, const char *endpoint, long *http) {
  brume_etcd *e = w->e;
  brume_autofree char *url = brume_xasprintf("%s/v3/watch", endpoint);
  brume_autofree char *body = brume_etcd_json_watch_req(w->prefix, atomic_load(&w->next_rev));
  brume_autoptr(CURL) h = handle_new(e);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, watch_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, w);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)e->timeout_ms);
  buf_clear(&w->line);
  w->created = false;
  w->reconnect_now = false;
  curl_multi_add_handle(w->multi, h);
  CURLcode rc = CURLE_OK;
  for (;;) {
    int running = 0;
    curl_multi_perform(w->multi, &running);
    int queued;
    CURLMsg *m;
    while ((m = curl_multi_info_read(w->multi, &queued)) != NULL)
      if (m->msg == CURLMSG_DONE) rc = m->data.result;
    if (running == 0 || atomic_load(&w->stop)) break;
    curl_multi_poll(w->multi, NULL, 0, 1000, NULL);
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, http);
  curl_multi_remove_handle(w->multi, h);
  if (rc == CURLE_OK && *http != 200 && w->problem == NULL) {
    /* An HTTP error carries its JSON without a final newline. */
    brume_status code;
    char *msg = NULL;
    if (brume_etcd_json_parse_error(w->line.sb.s, w->line.sb.len, &code, &msg)) {
      w->problem = brume_xasprintf("etcd: %s (%s)", msg, brume_status_name(code));
      free(msg);
    } else {
      w->problem = brume_xasprintf("etcd answered HTTP %ld", *http);
    }
  }
  buf_clear(&w->line);
  return rc;
}

static void *watch_main(void *arg) {
  brume_etcd_watch *w = arg;
  brume_etcd *e = w->e;
  while (!atomic_load(&w->stop)) {
    if (w->backoff_ms > 0 && !watch_sleep(w, w->backoff_ms)) break;
    size_t idx = atomic_load(&e->current) % e->n_endpoints;
    w->endpoint = e->endpoints[idx];
    long http = 0;
    CURLcode rc = watch_stream(w, w->endpoint, &http);
    if (atomic_load(&w->stop)) break;
    if (w->reconnect_now) {
      w->backoff_ms = 0;
      continue;
    }
    char why[512];
    brume_log_quote(why, sizeof(why),
                    w->problem       ? w->problem
                    : rc != CURLE_OK ? curl_easy_strerror(rc)
                                     : "the stream ended");
    if (w->created) {
      brume_warn("etcd watch lost its stream; reconnecting.",
                 "prefix=%s endpoint=%s error=%s next_revision=%" PRId64, w->prefix, w->endpoint,
                 why, atomic_load(&w->next_rev));
      w->lost = true;
    } else {
      brume_debug("etcd watch could not connect.", "prefix=%s endpoint=%s error=%s", w->prefix,
                  w->endpoint, why);
      if (!w->problem && e->n_endpoints > 1)
        fail_over(e, idx, (idx + 1) % e->n_endpoints); /* a connection failure: next endpoint */
    }
    free(w->problem);
    w->problem = NULL;
    w->backoff_ms = w->backoff_ms == 0 ? WATCH_BACKOFF_MIN_MS : w->backoff_ms * 2;
    if (w->backoff_ms > WATCH_BACKOFF_MAX_MS) w->backoff_ms = WATCH_BACKOFF_MAX_MS;
  }
  return NULL;
}

brume_etcd_watch *brume_etcd_watch_prefix(brume_etcd *e, const char *prefix, int64_t start_revision,
                                          brume_etcd_watch_fn fn, void *user, brume_err **err) {
  BRUME_ENSURE(prefix != NULL && fn != NULL);
  if (start_revision <= 0) {
    /* Resolve "from now" to a number at once, so that a reconnect before the first event
     * cannot turn into "from whenever the reconnect happened". */
    brume_autofree char *body = brume_etcd_json_range_req(prefix, true, true);
    buf resp = {0};
    brume_etcd_range *r = NULL;
    if (call(e, "/v3/kv/range", body, true, &resp, err) == 0)
      r = brume_etcd_json_parse_range(resp.sb.s, resp.sb.len, err);
    buf_clear(&resp);
    if (r == NULL) {
      brume_err_wrap(err, "watch %s", prefix);
      return NULL;
    }
    start_revision = r->revision + 1;
    brume_etcd_range_free(r);
  }
  brume_etcd_watch *w = brume_xcalloc(1, sizeof(*w));
  w->e = e;
  w->prefix = brume_xstrdup(prefix);
  w->fn = fn;
  w->user = user;
  atomic_init(&w->stop, false);
  atomic_init(&w->next_rev, start_revision);
  pthread_mutex_init(&w->lock, NULL);
  brume_cond_init_monotonic(&w->cond);
  w->multi = curl_multi_init();
  if (w->multi == NULL) brume_fatal("out of memory creating a libcurl multi handle");
  int rc = pthread_create(&w->thread, NULL, watch_main, w);
  if (rc != 0) {
    curl_multi_cleanup(w->multi);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w->prefix);
    free(w);
    brume_err_set(err, BRUME_RESOURCE_EXHAUSTED, "watch %s: cannot start a thread: %s", prefix,
                  strerror(rc));
    return NULL;
  }
  return w;
}

void brume_etcd_watch_stop(brume_etcd_watch *w) {
  if (w == NULL) return;
  atomic_store(&w->stop, true);
  pthread_mutex_lock(&w->lock);
  pthread_cond_broadcast(&w->cond);
  pthread_mutex_unlock(&w->lock);
  curl_multi_wakeup(w->multi);
  pthread_join(w->thread, NULL);
  curl_multi_cleanup(w->multi);
  pthread_cond_destroy(&w->cond);
  pthread_mutex_destroy(&w->lock);
  buf_clear(&w->line);
  free(w->problem);
  free(w->prefix);
  free(w);
}

int64_t brume_etcd_watch_next_revision(brume_etcd_watch *w) {
  return atomic_load(&w->next_rev);
}
