/* The cluster's worker hosts, followed live from their registrations in etcd
 * (`<prefix>/svc/worker/<host_id>`, common/registration.h) into a brume_hosts table behind a
 * mutex: read once at start, then kept by a watch.
 *
 * A registration that cannot be read is logged and leaves the host as it was (absent if it is
 * new). When a host's key goes away (its lease expired: the worker died, was cut off or stopped),
 * the host leaves the table at once and on_gone is called, outside the lock, so that the caller
 * drops its sandboxes there and sends no more work. After a gap in the watch (etcd compacted
 * revisions it had not delivered) everything is read again, and the hosts no longer in etcd go
 * as above. */
#ifndef BRUME_PLACEMENT_HOST_WATCH_H
#define BRUME_PLACEMENT_HOST_WATCH_H

#include <stdint.h>

#include "err.h"
#include "etcd.h"
#include "hosts.h"

typedef struct brume_host_watch brume_host_watch;

/* Called on the watch's thread, for each host that went, without the table's lock. */
typedef void (*brume_host_gone_fn)(void *arg, const char *host_id);

/* Reads the registrations under prefix (e.g. "/brume") and starts following them. etcd must
 * answer now (NULL and err otherwise) and must outlive the watch. on_gone may be NULL. */
brume_host_watch *brume_host_watch_start(brume_etcd *etcd, const char *prefix,
                                         uint32_t cpu_overcommit, brume_host_gone_fn on_gone,
                                         void *arg, brume_err **err);
/* Stops following (no on_gone after it returns) and frees the table. NULL is allowed. */
void brume_host_watch_stop(brume_host_watch *w);

/* The table, locked: look up, choose and reserve between lock and unlock, and keep nothing of it
 * past the unlock. */
brume_hosts *brume_host_watch_lock(brume_host_watch *w);
void brume_host_watch_unlock(brume_host_watch *w);

#endif
