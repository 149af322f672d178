/* State metrics: what Counting.GetState answers (proto AccountConcurrencyState and
 * FunctionConcurrencyState), as Prometheus gauges on the daemon's /metrics, so that Prometheus
 * and Grafana see the figures the operator dashboard shows (docs/counting.md, "Metrics").
 *
 * A collector (common/metrics.h) sets them before each scrape, for the accounts and functions the
 * daemon knows: those with limits configured in etcd (the limits store), those the engine
 * remembers (named by a request within records_idle_ms, or holding tokens or blocks), and those
 * any counting daemon holds blocks of. Each set is bounded, by the configuration or by recent use,
 * and an account or function that leaves them leaves /metrics at the next scrape.
 *
 *   brume_counting_account_concurrency_limit{account}       the account's limit
 *   brume_counting_account_unreserved_limit{account}        the limit less every reserved R
 *   brume_counting_account_reserved_concurrency{account}    the sum of its functions' R
 *   brume_counting_account_provisioned_concurrency{account} the sum of its provisioned concurrency
 *   brume_counting_account_in_use{account}                  tokens this daemon granted, not back
 *   brume_counting_account_held{account}                    concurrency this daemon holds in etcd
 *   brume_counting_account_cluster_held{account}            what all counting daemons hold
 *   brume_counting_account_scaling_tokens{account}          the scaling bucket's level
 *   brume_counting_account_scaling_capacity{account}        its capacity (the burst)
 *   brume_counting_function_reserved_concurrency{account,function}  R, for functions that have one
 *   brume_counting_function_provisioned_concurrency{account,function}
 *   brume_counting_function_in_use{account,function}
 *   brume_counting_function_held{account,function}
 *   brume_counting_function_cluster_held{account,function}
 *   brume_counting_function_scaling_tokens{account,function}    (per-function scaling model)
 *   brume_counting_function_scaling_capacity{account,function}  (likewise)
 * The account's scaling gauges exist in the account model only, the function's in the function
 * model only, as GetState's scaling field.
 *
 * Where the figures come from, at each scrape:
 *   - the limits: the limits store, in memory;
 *   - in_use and held: the engine's records, in one pass under its mutex
 *     (brume_engine_each_use), so a scrape holds Acquire and Release back for that pass;
 *   - cluster_held and the buckets' levels: etcd, one range read of <root>count/ and one of the
 *     buckets' prefix (<root>scaling/account/ or <root>scaling/function/), on the scraping
 *     thread. When etcd does not answer, those series are left out of that scrape (a warning is
 *     logged once until etcd answers again); the others are still there.
 * cluster_held is the same on every counting daemon: aggregate it with max(), not sum(); the
 * other figures are each daemon's own (sum(held) over the daemons is cluster_held, give or take
 * the blocks of a daemon that died and whose lease has not expired yet).
 *
 * Thread safety: the collector runs on the rendering thread, one scrape at a time. */
#ifndef BRUME_COUNTING_STATE_METRICS_H
#define BRUME_COUNTING_STATE_METRICS_H

#include "engine.h"
#include "etcd.h"
#include "limits_store.h"
#include "metrics.h"

typedef struct brume_state_metrics brume_state_metrics;

typedef struct brume_state_metrics_opts {
  brume_metrics *metrics; /* where the gauges and the collector go */
  brume_engine *engine;
  brume_limits_store *limits;
  brume_etcd *etcd;
  const char *root; /* the engine's root, "/brume/": ends with '/' */
} brume_state_metrics_opts;

/* Registers the gauges and their collector. The engine, the store and the etcd client must
 * outlive the result: stop it before freeing them. */
brume_state_metrics *brume_state_metrics_start(const brume_state_metrics_opts *opts);

/* Removes the collector (waiting for a scrape under way), empties the gauges and frees m. NULL is
 * fine. */
void brume_state_metrics_stop(brume_state_metrics *m);

#endif
