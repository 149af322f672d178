/* Brume's named queues (docs/async.md, "Destinations"): where the record of an ended event goes
 * when its function's on_success, on_failure or dead_letter_queue says "queue:<name>", for
 * `brume queue list|read|drain`. One JetStream stream, BRUME_QUEUES (limits retention, file
 * storage, the event queue's replicas, each message kept BRUME_QUEUE_RETENTION_MS), subjects
 * brume.queue.<account>.<name>: a queue exists once a record was put in it. Read by direct gets,
 * drained by purging what was read. Uses the event queue's connection (event_queue.h), which
 * makes sure of the stream when it opens. */
#ifndef BRUME_ASYNC_NAMED_QUEUE_H
#define BRUME_ASYNC_NAMED_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "event_queue.h"

#define BRUME_QUEUE_RETENTION_MS (14LL * 24 * 60 * 60 * 1000)
#define BRUME_QUEUE_NAME_LEN_MAX 64

/* Puts data (a record) into account's queue name, waiting for JetStream's acknowledgement.
 * msg_id names it: the same id again within the duplicate window is stored once (a delivery
 * that died after putting a record and puts it again). INVALID_ARGUMENT for a malformed name,
 * UNAVAILABLE when NATS did not acknowledge. */
int brume_named_queue_put(brume_event_queue *q, const char *account, const char *name,
                          const char *msg_id, const void *data, size_t len, brume_err **err);

typedef struct brume_named_queue_info {
  char name[BRUME_QUEUE_NAME_LEN_MAX + 1];
  uint64_t messages;
} brume_named_queue_info;

/* account's queues that hold messages, by name, into *out (caller frees). */
int brume_named_queue_list(brume_event_queue *q, const char *account, brume_named_queue_info **out,
                           size_t *n, brume_err **err);

typedef struct brume_queue_message {
  uint64_t seq; /* its place in the stream: read on from seq + 1 */
  char *data;   /* NUL-terminated copy */
  size_t len;
} brume_queue_message;

/* Reads at most max of the queue's messages from stream sequence from_seq on (1: the oldest),
 * oldest first, without removing them. *n 0 when there are none. */
int brume_named_queue_read(brume_event_queue *q, const char *account, const char *name,
                           uint64_t from_seq, size_t max, brume_queue_message **out, size_t *n,
                           brume_err **err);
void brume_queue_messages_free(brume_queue_message *m, size_t n);

/* Removes the queue's messages up to and including stream sequence up_to_seq. */
int brume_named_queue_remove(brume_event_queue *q, const char *account, const char *name,
                             uint64_t up_to_seq, brume_err **err);

#endif
