/* The operator dashboard (docs/dashboard.md): on the frontend's HTTP listener, the page at `/`
 * with its script and style sheet (built in: frontend/dashboard_assets.h), the login that trades
 * an admin API key for a session cookie (frontend/sessions.h), and the read-only JSON API under
 * /api/ that the page polls: summary, hosts, functions, accounts, invocations, throttles, the
 * concurrency series and the event queue.
 *
 * Each answer gathers what this frontend knows (its catalog, its key store, its invocation
 * statistics: frontend/inv_stats.h) and asks the daemons that know the rest: etcd for the
 * registered daemons, counting (GetState) for limits and use, placement (ListHosts) for hosts,
 * NATS (JetStream) for the event queue's depth and the named queues.
 * A daemon that does not answer within BRUME_DASHBOARD_CALL_MS is named in the answer's "down"
 * list and the fields it would have filled are null: the dashboard keeps working and says which
 * daemon is missing. Within one answer a daemon that failed once is not asked again.
 *
 * A sampler thread closes one second of the concurrency series a second, after reading from
 * counting the limits of the accounts and functions that had invocations in the window. */
#ifndef BRUME_FRONTEND_DASHBOARD_H
#define BRUME_FRONTEND_DASHBOARD_H

#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "catalog.h"
#include "etcd.h"
#include "event_accept.h"
#include "event_delivery.h"
#include "http.h"
#include "inv_stats.h"
#include "key_store.h"
#include "rpc.h"

/* How long an answer waits for counting, placement or etcd. */
#define BRUME_DASHBOARD_CALL_MS 1000

typedef struct brume_dashboard brume_dashboard;

typedef struct brume_dashboard_opts {
  brume_http *http; /* where the routes go */
  brume_key_store *keys;
  brume_audit *audit; /* logins, granted and refused */
  brume_catalog *catalog;
  brume_inv_stats *stats;
  brume_etcd *etcd;
  const char *prefix;          /* Brume's etcd prefix: registrations are under <prefix>/svc/ */
  brume_rpc_client *counting;  /* for blocking GetState calls */
  brume_rpc_client *placement; /* for blocking ListHosts calls */
  brume_event_accept *events;  /* the event queue, or NULL when the frontend has none (no NATS) */
  brume_event_delivery *delivery; /* this frontend's delivery of events, or NULL */
  const char *frontend_id;        /* this daemon's id, shown on the page */
  const char *region;
  size_t max_sessions;
  int64_t session_ttl_ms;
  int64_t sample_period_ms; /* the sampler's period: 1000 */
} brume_dashboard_opts;

/* Adds the routes to opts->http and starts the sampler. Everything in opts must outlive the
 * dashboard; strings are copied. */
brume_dashboard *brume_dashboard_new(const brume_dashboard_opts *opts);
/* Stops the sampler (it calls counting): before counting's client is freed. */
void brume_dashboard_stop(brume_dashboard *d);
/* Frees the dashboard: after the HTTP listener has stopped (its routes point here). */
void brume_dashboard_free(brume_dashboard *d);

#endif
