/* The control channel to the host: framed GuestMessages over a virtio-serial port (in the guest)
 * or a UNIX socket (brume-init on the host, for tests).
 *
 * Framing: a 4-byte big-endian length N (at most INIT_CHANNEL_MAX_FRAME) and N bytes of one
 * brume.GuestMessage. The channel sends Ready through ops->connected whenever a host connects,
 * hands each decoded message to ops->message, and answers a bad frame (too long, undecodable)
 * itself with a GuestError before dropping the connection.
 *
 * Connections come and go: a virtio port reads 0 and polls POLLHUP while no host client is
 * connected to its UNIX socket, so the channel checks again every INIT_CHANNEL_RETRY_MS until
 * one is; a UNIX socket listener accepts the next host (a new one replaces the old). Messages
 * sent while no host is connected are dropped: the host resynchronises from the next Ready. */
#ifndef BRUME_INIT_CHANNEL_H
#define BRUME_INIT_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "brume/guest.pb-c.h"
#include "err.h"
#include "loop.h"

#define INIT_CHANNEL_MAX_FRAME (64u * 1024 * 1024)
#define INIT_CHANNEL_RETRY_MS 10
/* The name of the control port, as libvirt's <target type='virtio' name='...'/> sets it. */
#define INIT_CHANNEL_PORT_NAME "brume.control"

typedef struct init_channel init_channel;

typedef struct init_channel_ops {
  /* A host connected (or reconnected): the time to send GuestReady. */
  void (*connected)(void *arg);
  /* A message arrived; the callee owns msg (brume__guest_message__free_unpacked). */
  void (*message)(void *arg, Brume__GuestMessage *msg);
} init_channel_ops;

/* Finds the virtio port named name under /sys/class/virtio-ports and returns "/dev/vportNpM"
 * (malloc'ed), waiting up to timeout_ms for it to appear. NOT_FOUND when it does not. */
char *init_channel_find_port(const char *name, int timeout_ms, brume_err **err);

/* Opens the character device at path (a virtio port). */
init_channel *init_channel_open_device(init_loop *loop, const char *path,
                                       const init_channel_ops *ops, void *arg, brume_err **err);
/* Listens on a UNIX socket at path (replacing a stale socket file) for one host at a time. */
init_channel *init_channel_listen_unix(init_loop *loop, const char *path,
                                       const init_channel_ops *ops, void *arg, brume_err **err);
/* Starts watching for a host. Separate from opening so that callbacks never run before the
 * caller has stored the channel. */
void init_channel_start(init_channel *c);

/* Queues msg for the host and writes what it can now. Returns -1 (and drops msg) when no host
 * is connected. */
int init_channel_send(init_channel *c, const Brume__GuestMessage *msg);
/* Sends GuestError{message} and then drops the connection: the protocol's answer to anything
 * wrong for the state. A virtio port is closed and reopened; a socket connection is closed. */
void init_channel_fail(init_channel *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void init_channel_free(init_channel *c);

/* Decodes the frame length at the start of buf[0..len): 0 and *frame_len when the 4-byte header
 * is there, 1 when more bytes are needed, -1 when the length is over INIT_CHANNEL_MAX_FRAME. */
int init_channel_frame_len(const uint8_t *buf, size_t len, uint32_t *frame_len);

#endif
