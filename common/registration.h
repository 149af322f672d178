/* Service registration in etcd: how Brume's daemons find each other.
 *
 * Every daemon keeps `<prefix>/svc/<kind>/<id> = <value>` under an etcd lease of its own (the
 * value is the daemon's JSON description: address, and for workers their capacity). A thread
 * renews the lease every TTL/3. When the daemon dies, the lease expires and the key vanishes:
 * the rest of the cluster sees it gone within one TTL. When the lease is lost while the daemon
 * lives (etcd was down longer than the TTL, or the lease was revoked), the thread grants a new
 * one and writes the key again as soon as etcd answers.
 *
 * A lost lease is not the same as failed renewals: while etcd cannot be reached (a network cut,
 * a lost quorum) the lease lives on in etcd until its TTL runs out there, and nobody else sees
 * the daemon go. Only a keepalive answered NOT_FOUND says the lease is gone, and with it the key:
 * whoever watched the key has taken the daemon for dead and dropped what it knew of it (placement
 * drops a worker's sandboxes). brume_registration_on_lost() lets the daemon act on that.
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
/* Milliseconds since the last successful renewal (or registration). */
int64_t brume_registration_age_ms(brume_registration *reg);
/* Renews as soon as the renewal thread is free, instead of at the end of its period (after etcd
 * came back, say). */
void brume_registration_renew_now(brume_registration *reg);
/* Called on the renewal thread with the lost lease when a keepalive answered NOT_FOUND (the lease
 * expired while the daemon could not renew it, or it was revoked), before the key is written
 * again under a new lease: so whatever the daemon does about it (a worker marks its sandboxes
 * stale) is done before anyone can see the daemon registered again. Never called for renewals
 * that merely fail. fn must not block for long: the re-registration waits for it. */
typedef void (*brume_registration_lost_fn)(void *user, int64_t lost_lease);
/* Sets fn (NULL: none), called once per lost lease from now on. When it returns, an earlier fn is
 * not running and will not run again, so a daemon can clear it before what user points to goes.
 * Set it right after brume_register. */
void brume_registration_on_lost(brume_registration *reg, brume_registration_lost_fn fn, void *user);
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
