/* Service registration in etcd: how Brume's daemons find each other.
 *
 * Every daemon keeps `<prefix>/svc/<kind>/<id> = <value>` under an etcd lease of its own (the
 * value is the daemon's JSON description: address, and for workers their capacity). A thread
 * renews the lease every TTL/3. When the daemon dies, the lease expires and the key vanishes:
 * the rest of the cluster sees it gone within one TTL. When the lease is lost while the daemon
 * lives (etcd was down longer than the TTL, or the lease was revoked), the thread grants a new
 * one and writes the key again as soon as etcd answers.
 *
 * brume_registration_healthy() says whether the key is known to be in etcd right now (the last
 * renewal is younger than the TTL): a daemon whose registration is not healthy must assume the
 * cluster considers it dead (counting stops granting, for instance) and say so in /healthz. */
#ifndef BRUME_REGISTRATION_H
#define BRUME_REGISTRATION_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "etcd.h"

typedef struct brume_registration brume_registration;

/* The etcd key of a daemon: "<prefix>/svc/<kind>/<id>" (caller frees). */
char *brume_registration_key(const char *prefix, const char *kind, const char *id);

/* Registers the daemon and starts renewing. etcd must answer now (a daemon that cannot register
 * should not start serving): otherwise NULL and err. ttl_s >= 2. The etcd client must outlive
 * the registration. */
brume_registration *brume_register(brume_etcd *etcd, const char *prefix, const char *kind,
                                   const char *id, const char *value, int ttl_s, brume_err **err);
/* Replaces the value (a worker's free memory, say), under the same lease. */
int brume_registration_update(brume_registration *reg, const char *value, brume_err **err);
/* True while the last successful renewal (or registration) is younger than the TTL. */
bool brume_registration_healthy(brume_registration *reg);
/* The lease the key lives under now (it changes after a re-registration). */
int64_t brume_registration_lease(brume_registration *reg);
/* Stops renewing, revokes the lease (the key goes at once) and frees reg. NULL is allowed. */
void brume_registration_free(brume_registration *reg);

/* The daemons registered now under <prefix>/svc/<kind>/ (kind NULL: every kind), ordered by key:
 * a new JSON array of their values, objects each given "kind" and "id" ({"kind", "id", "addr",
 * and what else the daemon published}); a value that is not a JSON object is skipped. NULL with
 * *err when etcd cannot be read. */
json_t *brume_registrations_list(brume_etcd *etcd, const char *prefix, const char *kind,
                                 brume_err **err);

BRUME_DEFINE_AUTOPTR(brume_registration, brume_registration_free)

#endif
