#include "dashboard.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "brume/counting.pb-c.h"
#include "brume/placement.pb-c.h"
#include "clock.h"
#include "dashboard_assets.h"
#include "log.h"
#include "mem.h"
#include "named_queue.h"
#include "proto_names.h"
#include "random.h"
#include "registration.h"
#include "sessions.h"
#include "ticker.h"

/* Method indexes, in the services' declaration order (proto/brume/). */
enum { COUNTING_GET_STATE = 2 };
enum { PLACEMENT_LIST_HOSTS = 2 };

struct brume_dashboard {
  brume_dashboard_opts o;
  char *prefix, *frontend_id, *region;
  brume_sessions *sessions;
  brume_ticker *sampler;
};

/* ---- answers ---- */

static void reply_json(brume_http_response *resp, int status, json_t *body) {
  char *text = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  brume_http_reply(resp, status, "application/json", text, strlen(text));
  free(text);
  brume_http_reply_header(resp, "Cache-Control", "no-store");
  brume_http_reply_header(resp, "X-Content-Type-Options", "nosniff");
}

static void reply_error(brume_http_response *resp, int status, const char *msg) {
  reply_json(resp, status, json_pack("{s:s}", "error", msg));
}

/* What one answer learnt about the daemons it asked: each one that failed is named once in
 * "down" and not asked again. */
typedef struct probe {
  json_t *down;
  bool counting_down, placement_down, etcd_down, nats_down;
} probe;

static void mark_down(probe *p, const char *daemon, bool *flag, const brume_err *err) {
  *flag = true;
  char msg[512];
  snprintf(msg, sizeof(msg), "%s: %s", brume_status_name(err->code), err->msg);
  json_array_append_new(p->down, json_pack("{s:s, s:s}", "daemon", daemon, "error", msg));
}

static int64_t now_ms(void) {
  return brume_wall_ms();
}

/* Counting's GetState for account (and function, if not NULL), or NULL when counting is down. */
static Brume__GetStateResponse *counting_state(brume_dashboard *d, probe *p, const char *account,
                                               const char *function) {
  if (p->counting_down) return NULL;
  Brume__GetStateRequest req = BRUME__GET_STATE_REQUEST__INIT;
  req.account_id = (char *)account;
  req.function_name = (char *)(function ? function : "");
  brume_rpc_call_opts co = {.deadline_ms = BRUME_DASHBOARD_CALL_MS};
  ProtobufCMessage *reply = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (brume_rpc_unary(d->o.counting, &brume__counting__descriptor, COUNTING_GET_STATE, &req.base,
                      &reply, &co, &err) < 0) {
    mark_down(p, "counting", &p->counting_down, err);
    return NULL;
  }
  return (Brume__GetStateResponse *)reply;
}

static Brume__ListHostsResponse *placement_hosts(brume_dashboard *d, probe *p) {
  if (p->placement_down) return NULL;
  Brume__ListHostsRequest req = BRUME__LIST_HOSTS_REQUEST__INIT;
  brume_rpc_call_opts co = {.deadline_ms = BRUME_DASHBOARD_CALL_MS};
  ProtobufCMessage *reply = NULL;
  brume_autoptr(brume_err) err = NULL;
  if (brume_rpc_unary(d->o.placement, &brume__placement__descriptor, PLACEMENT_LIST_HOSTS,
                      &req.base, &reply, &co, &err) < 0) {
    mark_down(p, "placement", &p->placement_down, err);
    return NULL;
  }
  return (Brume__ListHostsResponse *)reply;
}

/* ---- authentication ---- */

/* The principal of an admin key presented as "Authorization: Bearer <key>", or of the session
 * cookie, with the session's end in *expires (0 for a key); false (the answer then is 401) when
 * neither is valid. */
static bool authorize(brume_dashboard *d, const brume_http_request *req, brume_principal *who,
                      int64_t *expires) {
  *expires = 0;
  const char *auth = brume_http_request_header(req, "Authorization");
  if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
    brume_autoptr(brume_err) err = NULL;
    return brume_key_store_authenticate(d->o.keys, auth + 7, who, &err) == 0 &&
           brume_api_key_allows(who->scopes, BRUME_SCOPE_ADMIN);
  }
  char token[BRUME_SESSION_TOKEN_HEX + 1];
  if (!brume_sessions_cookie_token(brume_http_request_header(req, "Cookie"), token)) return false;
  bool ok = brume_sessions_find(d->sessions, token, now_ms(), who, expires);
  /* A key deleted since the login ends its sessions. */
  if (ok && !brume_key_store_has(d->o.keys, who->key_id)) {
    brume_sessions_end(d->sessions, token);
    ok = false;
  }
  explicit_bzero(token, sizeof(token));
  return ok;
}

static void refuse_unauthenticated(brume_http_response *resp) {
  reply_error(resp, 401,
              "log in with an admin API key (POST /api/login), or send it as "
              "Authorization: Bearer <key>");
  brume_http_reply_header(resp, "WWW-Authenticate", "Bearer realm=\"brume\"");
}

static void request_id(char out[24]) {
  snprintf(out, 24, "dash-%016" PRIx64, brume_random_u64());
}

static void login(const brume_http_request *req, brume_http_response *resp, void *user) {
  brume_dashboard *d = user;
  const char *type = brume_http_request_header(req, "Content-Type");
  if (type == NULL || strncasecmp(type, "application/json", 16) != 0) {
    reply_error(resp, 415, "send the key as JSON: Content-Type: application/json");
    return;
  }
  json_t *body = json_loadb(req->body, req->body_len, 0, NULL);
  const char *key = json_string_value(json_object_get(body, "api_key"));
  if (key == NULL) {
    json_decref(body);
    reply_error(resp, 400, "the body must be a JSON object with an \"api_key\" string");
    return;
  }
  char rid[24];
  request_id(rid);
  brume_principal who;
  brume_autoptr(brume_err) err = NULL;
  int rc = brume_key_store_authenticate(d->o.keys, key, &who, &err);
  json_decref(body); /* the key goes with it */
  if (rc < 0) {
    brume_audit_record(d->o.audit, rid, NULL, "DashboardLogin", NULL, BRUME_UNAUTHENTICATED,
                       err->msg);
    reply_error(resp, 401, err->msg);
    return;
  }
  if (!brume_api_key_allows(who.scopes, BRUME_SCOPE_ADMIN)) {
    const char *msg = "AccessDeniedException: the dashboard needs a key with the admin scope";
    brume_audit_record(d->o.audit, rid, &who, "DashboardLogin", NULL, BRUME_PERMISSION_DENIED, msg);
    reply_error(resp, 403, msg);
    return;
  }
  char token[BRUME_SESSION_TOKEN_HEX + 1];
  int64_t expires;
  brume_sessions_create(d->sessions, &who, now_ms(), token, &expires);
  brume_audit_record(d->o.audit, rid, &who, "DashboardLogin", NULL, BRUME_OK, NULL);
  char cookie[256];
  snprintf(cookie, sizeof(cookie),
           BRUME_SESSION_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%" PRId64, token,
           d->o.session_ttl_ms / 1000);
  explicit_bzero(token, sizeof(token));
  reply_json(resp, 200,
             json_pack("{s:s, s:s, s:I}", "account_id", who.account_id, "key_id", who.key_id,
                       "expires_unix_ms", (json_int_t)expires));
  brume_http_reply_header(resp, "Set-Cookie", cookie);
  explicit_bzero(cookie, sizeof(cookie));
}

static void logout(const brume_http_request *req, brume_http_response *resp, void *user) {
  brume_dashboard *d = user;
  char token[BRUME_SESSION_TOKEN_HEX + 1];
  if (brume_sessions_cookie_token(brume_http_request_header(req, "Cookie"), token))
    brume_sessions_end(d->sessions, token);
  explicit_bzero(token, sizeof(token));
  brume_http_reply(resp, 204, "text/plain", "", 0);
  brume_http_reply_header(resp, "Set-Cookie",
                          BRUME_SESSION_COOKIE "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
  brume_http_reply_header(resp, "Cache-Control", "no-store");
}

/* ---- the JSON API ---- */

static json_t *envelope(probe *p) {
  *p = (probe){.down = json_array()};
  return json_pack("{s:I}", "generated_unix_ms", (json_int_t)now_ms());
}

static json_t *finish(json_t *o, probe *p) {
  json_object_set_new(o, "down", p->down);
  return o;
}

/* "<prefix>/svc/<kind>/<id>" registrations: [{"kind", "id", "addr"}], or NULL (etcd down). */
static json_t *registered_daemons(brume_dashboard *d, probe *p) {
  brume_autoptr(brume_err) err = NULL;
  json_t *all = brume_registrations_list(d->o.etcd, d->prefix, NULL, &err);
  if (all == NULL) {
    mark_down(p, "etcd", &p->etcd_down, err);
    return json_null();
  }
  /* Only what says who and where: a worker's registration also carries its capacity. */
  json_t *out = json_array();
  size_t i;
  json_t *r;
  json_array_foreach(all, i, r) {
    json_t *addr = json_object_get(r, "addr");
    json_array_append_new(out, json_pack("{s:O, s:O, s:O}", "kind", json_object_get(r, "kind"),
                                         "id", json_object_get(r, "id"), "addr",
                                         json_is_string(addr) ? addr : json_null()));
  }
  json_decref(all);
  return out;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The accounts that have a key or a function, sorted, unique. */
static json_t *known_accounts(brume_dashboard *d, json_t *functions) {
  size_t n_keys = 0;
  brume_api_key_record *keys = brume_key_store_list(d->o.keys, NULL, &n_keys);
  json_t *set = json_object();
  for (size_t i = 0; i < n_keys; i++) json_object_set_new(set, keys[i].account_id, json_true());
  free(keys);
  size_t i;
  json_t *f;
  json_array_foreach(functions, i, f) {
    json_object_set_new(set, json_string_value(json_object_get(f, "account_id")), json_true());
  }
  /* jansson keeps insertion order; sort the names. */
  size_t n = json_object_size(set);
  const char **names = brume_xcalloc(n ? n : 1, sizeof(char *));
  size_t k = 0;
  const char *name;
  json_t *v;
  json_object_foreach(set, name, v) names[k++] = name;
  qsort(names, n, sizeof(char *), cmp_str);
  json_t *out = json_array();
  for (k = 0; k < n; k++) json_array_append_new(out, json_string(names[k]));
  free(names);
  json_decref(set);
  return out;
}

static json_t *host_json(const Brume__HostInfo *h) {
  json_t *states = json_object();
  for (size_t i = 0; i < h->n_sandboxes_by_state; i++)
    json_object_set_new(states, brume_sandbox_state_name(h->sandboxes_by_state[i]->state),
                        json_integer(h->sandboxes_by_state[i]->count));
  return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:b, s:I}", "host_id",
                   h->host_id, "address", h->address, "accelerator",
                   brume_accelerator_name(h->accelerator), "vcpus", (json_int_t)h->vcpus,
                   "vcpu_milli_committed", (json_int_t)h->vcpu_milli_committed, "memory_mib",
                   (json_int_t)h->memory_mib, "free_memory_mib", (json_int_t)h->free_memory_mib,
                   "host_memory_available_mib", (json_int_t)h->host_memory_available_mib,
                   "sandboxes", (json_int_t)h->sandboxes, "sandboxes_by_state", states,
                   "pool_ready", (json_int_t)h->pool_ready, "draining", h->draining,
                   "updated_unix_ms", (json_int_t)h->updated_unix_ms);
}

static json_t *api_summary(brume_dashboard *d) {
  probe p;
  json_t *o = envelope(&p);
  json_t *functions = brume_catalog_list_json(d->o.catalog);
  json_t *accounts = known_accounts(d, functions);
  json_t *hosts = json_null(), *sandboxes = json_null();
  Brume__ListHostsResponse *lh = placement_hosts(d, &p);
  if (lh) {
    json_int_t n = 0;
    for (size_t i = 0; i < lh->n_hosts; i++) n += lh->hosts[i]->sandboxes;
    hosts = json_integer((json_int_t)lh->n_hosts);
    sandboxes = json_integer(n);
    protobuf_c_message_free_unpacked(&lh->base, NULL);
  }
  json_t *totals = brume_inv_stats_totals_json(d->o.stats);
  json_object_set_new(o, "frontend_id", json_string(d->frontend_id));
  json_object_set_new(o, "region", json_string(d->region));
  json_object_set_new(o, "daemons", registered_daemons(d, &p));
  json_object_set_new(o, "hosts", hosts);
  json_object_set_new(o, "sandboxes", sandboxes);
  json_object_set_new(o, "functions", json_integer((json_int_t)json_array_size(functions)));
  json_object_set_new(o, "accounts", json_integer((json_int_t)json_array_size(accounts)));
  json_object_update(o, totals);
  json_decref(totals);
  json_decref(functions);
  json_decref(accounts);
  return finish(o, &p);
}

static json_t *api_hosts(brume_dashboard *d) {
  probe p;
  json_t *o = envelope(&p);
  Brume__ListHostsResponse *lh = placement_hosts(d, &p);
  json_t *hosts = json_null();
  if (lh) {
    hosts = json_array();
    for (size_t i = 0; i < lh->n_hosts; i++) json_array_append_new(hosts, host_json(lh->hosts[i]));
    protobuf_c_message_free_unpacked(&lh->base, NULL);
  }
  json_object_set_new(o, "hosts", hosts);
  return finish(o, &p);
}

static json_t *scaling_json(const Brume__ScalingBucketState *b) {
  if (b == NULL) return json_null();
  return json_pack("{s:I, s:I, s:I, s:I}", "level", (json_int_t)b->level, "capacity",
                   (json_int_t)b->capacity, "refill_tokens", (json_int_t)b->refill_tokens,
                   "refill_interval_ms", (json_int_t)b->refill_interval_ms);
}

static json_t *api_functions(brume_dashboard *d) {
  probe p;
  json_t *o = envelope(&p);
  json_t *functions = brume_catalog_list_json(d->o.catalog);
  size_t i;
  json_t *f;
  json_array_foreach(functions, i, f) {
    const char *account = json_string_value(json_object_get(f, "account_id"));
    const char *name = json_string_value(json_object_get(f, "function_name"));
    Brume__GetStateResponse *st = counting_state(d, &p, account, name);
    json_t *conc = json_null();
    if (st && st->function) {
      const Brume__FunctionConcurrencyState *fs = st->function;
      conc =
          json_pack("{s:b, s:o, s:I, s:I, s:I}", "reserved", fs->reserved, "reserved_concurrency",
                    fs->reserved ? json_integer(fs->reserved_concurrency) : json_null(),
                    "provisioned", (json_int_t)fs->provisioned, "in_use", (json_int_t)fs->in_use,
                    "cluster_held", (json_int_t)fs->cluster_held);
    }
    if (st) protobuf_c_message_free_unpacked(&st->base, NULL);
    json_object_set_new(f, "concurrency", conc);
    json_t *figures = brume_inv_stats_function_json(d->o.stats, account, name);
    json_object_update(f, figures);
    json_decref(figures);
  }
  json_object_set_new(o, "functions", functions);
  return finish(o, &p);
}

static json_t *api_accounts(brume_dashboard *d) {
  probe p;
  json_t *o = envelope(&p);
  json_t *functions = brume_catalog_list_json(d->o.catalog);
  json_t *accounts = known_accounts(d, functions);
  json_t *out = json_array();
  size_t i;
  json_t *a;
  json_array_foreach(accounts, i, a) {
    const char *account = json_string_value(a);
    json_int_t n_functions = 0;
    size_t k;
    json_t *f;
    json_array_foreach(functions, k, f) {
      n_functions += strcmp(json_string_value(json_object_get(f, "account_id")), account) == 0;
    }
    Brume__GetStateResponse *st = counting_state(d, &p, account, NULL);
    json_t *conc = json_null();
    if (st && st->account) {
      const Brume__AccountConcurrencyState *as = st->account;
      conc = json_pack(
          "{s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "concurrency_limit",
          (json_int_t)as->concurrency_limit, "unreserved_limit", (json_int_t)as->unreserved_limit,
          "reserved_total", (json_int_t)as->reserved_total, "provisioned_total",
          (json_int_t)as->provisioned_total, "in_use", (json_int_t)as->in_use, "cluster_held",
          (json_int_t)as->cluster_held, "scaling", scaling_json(as->scaling));
    }
    if (st) protobuf_c_message_free_unpacked(&st->base, NULL);
    json_array_append_new(
        out,
        json_pack("{s:s, s:I, s:I, s:o}", "account_id", account, "functions", n_functions,
                  "in_flight", (json_int_t)brume_inv_stats_account_in_flight(d->o.stats, account),
                  "concurrency", conc));
  }
  json_decref(functions);
  json_decref(accounts);
  json_object_set_new(o, "accounts", out);
  return finish(o, &p);
}

/* Every known account's named queues that hold records: [{"account_id", "name", "records"}]. */
static json_t *named_queues(brume_dashboard *d, probe *p, brume_event_queue *q) {
  json_t *functions = brume_catalog_list_json(d->o.catalog);
  json_t *accounts = known_accounts(d, functions);
  json_decref(functions);
  json_t *out = json_array();
  size_t i;
  json_t *a;
  json_array_foreach(accounts, i, a) {
    brume_named_queue_info *info = NULL;
    size_t n = 0;
    brume_autoptr(brume_err) err = NULL;
    if (brume_named_queue_list(q, json_string_value(a), &info, &n, &err) < 0) {
      mark_down(p, "nats", &p->nats_down, err);
      json_decref(out);
      out = json_null();
      break;
    }
    for (size_t k = 0; k < n; k++)
      json_array_append_new(out, json_pack("{s:O, s:s, s:I}", "account_id", a, "name", info[k].name,
                                           "records", (json_int_t)info[k].messages));
    free(info);
  }
  json_decref(accounts);
  return out;
}

/* The event queue (docs/async.md): its depth and oldest event from JetStream, the named queues,
 * and what this frontend accepted and delivered. */
static json_t *api_events(brume_dashboard *d) {
  probe p;
  json_t *o = envelope(&p);
  json_t *queue = json_null(), *named = json_null();
  brume_event_queue *q = d->o.events ? brume_event_accept_queue(d->o.events) : NULL;
  brume_autoptr(brume_err) err = NULL;
  if (d->o.events && q == NULL) {
    brume_err_set(&err, BRUME_UNAVAILABLE,
                  "the event queue is not open: NATS could not be reached yet");
    mark_down(&p, "nats", &p.nats_down, err);
  }
  uint64_t depth = 0;
  int64_t oldest = 0;
  if (q && brume_event_queue_stats(q, &depth, &oldest, &err) < 0)
    mark_down(&p, "nats", &p.nats_down, err);
  if (q && !p.nats_down) {
    int64_t age = oldest ? now_ms() - oldest : 0;
    queue = json_pack("{s:I, s:I}", "depth", (json_int_t)depth, "oldest_age_ms",
                      (json_int_t)(age > 0 ? age : 0));
    named = named_queues(d, &p, q);
  }
  json_object_set_new(o, "enabled", json_boolean(d->o.events != NULL));
  json_object_set_new(o, "queue", queue);
  json_object_set_new(o, "named_queues", named);
  json_object_set_new(o, "accepted",
                      d->o.events ? brume_event_accept_figures_json(d->o.events) : json_null());
  json_object_set_new(
      o, "delivery",
      d->o.delivery ? brume_event_delivery_figures_json(d->o.delivery) : json_null());
  return finish(o, &p);
}

/* A query parameter as a number in [lo, hi], else def. */
static long query_long(const brume_http_request *req, const char *key, long def, long lo, long hi) {
  const char *v = brume_http_query(req, key);
  if (v == NULL || *v == '\0') return def;
  char *end;
  long n = strtol(v, &end, 10);
  if (*end != '\0') return def;
  return n < lo ? lo : n > hi ? hi : n;
}

/* An answer made of this frontend's own figures: no daemon to ask, nothing down. */
static json_t *local_answer(json_t *figures) {
  json_t *o = json_pack("{s:I, s:[]}", "generated_unix_ms", (json_int_t)now_ms(), "down");
  json_object_update(o, figures);
  json_decref(figures);
  return o;
}

static json_t *api_invocations(brume_dashboard *d, const brume_http_request *req) {
  return local_answer(brume_inv_stats_invocations_json(
      d->o.stats, (size_t)query_long(req, "limit", 50, 1, BRUME_INV_STATS_RECENT)));
}

static json_t *api_throttles(brume_dashboard *d) {
  return local_answer(json_pack("{s:o}", "throttles", brume_inv_stats_throttles_json(d->o.stats)));
}

static json_t *api_series(brume_dashboard *d, const brume_http_request *req) {
  return local_answer(brume_inv_stats_series_json(
      d->o.stats, (int)query_long(req, "seconds", 300, 1, BRUME_INV_STATS_WINDOW_S)));
}

static void api(const brume_http_request *req, brume_http_response *resp, void *user) {
  brume_dashboard *d = user;
  brume_principal who;
  int64_t expires;
  const char *path = req->path;
  if (!authorize(d, req, &who, &expires)) {
    refuse_unauthenticated(resp);
    return;
  }
  json_t *body = NULL;
  if (strcmp(path, "/api/session") == 0) {
    body = json_pack("{s:s, s:s, s:o}", "account_id", who.account_id, "key_id", who.key_id,
                     "expires_unix_ms", expires ? json_integer(expires) : json_null());
  } else if (strcmp(path, "/api/summary") == 0) {
    body = api_summary(d);
  } else if (strcmp(path, "/api/hosts") == 0) {
    body = api_hosts(d);
  } else if (strcmp(path, "/api/functions") == 0) {
    body = api_functions(d);
  } else if (strcmp(path, "/api/accounts") == 0) {
    body = api_accounts(d);
  } else if (strcmp(path, "/api/invocations") == 0) {
    body = api_invocations(d, req);
  } else if (strcmp(path, "/api/throttles") == 0) {
    body = api_throttles(d);
  } else if (strcmp(path, "/api/series") == 0) {
    body = api_series(d, req);
  } else if (strcmp(path, "/api/events") == 0) {
    body = api_events(d);
  } else {
    reply_error(resp, 404, "no such endpoint: see docs/dashboard.md");
    return;
  }
  reply_json(resp, 200, body);
}

/* ---- the page ---- */

static void page(const brume_http_request *req, brume_http_response *resp, void *user) {
  (void)user;
  for (const brume_dashboard_asset *a = brume_dashboard_assets; a->path; a++) {
    if (strcmp(a->path, req->path) != 0) continue;
    brume_http_reply(resp, 200, a->content_type, a->data, a->len);
    brume_http_reply_header(resp, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                            "base-uri 'none'; form-action 'self'");
    brume_http_reply_header(resp, "X-Frame-Options", "DENY");
    brume_http_reply_header(resp, "X-Content-Type-Options", "nosniff");
    brume_http_reply_header(resp, "Referrer-Policy", "no-referrer");
    brume_http_reply_header(resp, "Cache-Control", "no-cache");
    return;
  }
  brume_http_reply(resp, 404, "text/plain", "not found\n", 10);
}

/* ---- the sampler ---- */

/* Once a second: the limits of what was active, from counting, then the second closes. */
static void sample(void *user) {
  brume_dashboard *d = user;
  probe p = {.down = json_array()};
  json_t *active = brume_inv_stats_active(d->o.stats);
  size_t i;
  json_t *a;
  json_array_foreach(active, i, a) {
    const char *account = json_string_value(json_object_get(a, "account_id"));
    const char *function = json_string_value(json_object_get(a, "function_name"));
    Brume__GetStateResponse *st = counting_state(d, &p, account, function);
    if (st == NULL) break;
    if (function && st->function) {
      const Brume__FunctionConcurrencyState *fs = st->function;
      brume_inv_stats_set_function_reserved(d->o.stats, account, function,
                                            fs->reserved ? (int64_t)fs->reserved_concurrency : -1);
    } else if (!function && st->account) {
      const Brume__AccountConcurrencyState *as = st->account;
      int64_t limit = as->concurrency_limit, ceiling = limit;
      if (as->scaling) {
        int64_t reach = (int64_t)as->in_use + as->scaling->level;
        if (reach < ceiling) ceiling = reach;
      }
      brume_inv_stats_set_account_limits(d->o.stats, account, limit, ceiling);
    }
    protobuf_c_message_free_unpacked(&st->base, NULL);
  }
  json_decref(active);
  json_decref(p.down);
  brume_inv_stats_sample(d->o.stats, now_ms());
}

/* ---- life ---- */

brume_dashboard *brume_dashboard_new(const brume_dashboard_opts *opts) {
  brume_dashboard *d = brume_xcalloc(1, sizeof(*d));
  d->o = *opts;
  d->prefix = brume_xstrdup(opts->prefix);
  d->frontend_id = brume_xstrdup(opts->frontend_id);
  d->region = brume_xstrdup(opts->region);
  d->sessions = brume_sessions_new(opts->max_sessions, opts->session_ttl_ms);
  brume_http_route(opts->http, "GET", "/", page, d);
  brume_http_route(opts->http, "POST", "/api/login", login, d);
  brume_http_route(opts->http, "POST", "/api/logout", logout, d);
  brume_http_route(opts->http, "GET", "/api/", api, d);
  d->sampler = brume_ticker_start(opts->sample_period_ms, sample, d);
  return d;
}

void brume_dashboard_stop(brume_dashboard *d) {
  if (d == NULL) return;
  brume_ticker_stop(d->sampler);
  d->sampler = NULL;
}

void brume_dashboard_free(brume_dashboard *d) {
  if (d == NULL) return;
  brume_dashboard_stop(d);
  brume_sessions_free(d->sessions);
  free(d->prefix);
  free(d->frontend_id);
  free(d->region);
  free(d);
}
