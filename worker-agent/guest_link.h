/* The host side of a sandbox's control channel: brume-worker talking to brume-init (PID 1 of
 * the guest) over the virtio-serial port "brume.control", which QEMU exposes on the host as a
 * UNIX socket it listens on (proto/brume/guest.proto; docs/guest.md, "The channel").
 *
 * Framing: a 4-byte big-endian length N (at most BRUME_GUEST_LINK_MAX_FRAME) and N bytes of one
 * brume.GuestMessage, both ways.
 *
 * Threading: every call blocks, bounded by its timeout, and the link has no lock of its own.
 * The worker runs these calls from a small thread pool: one thread at a time per link (the
 * sandbox's state machine already serialises a sandbox's Init, Invoke, Ping and Shutdown);
 * different links are independent and can be used by different threads at once.
 *
 * Timeouts keep the link usable: what was read of a frame stays buffered, and the answer that
 * comes late is skipped by the next call (an InvokeDone for another request id, a Pong for
 * another nonce). A timeout while a message was only partly written, a closed channel, a frame
 * that does not decode and a GuestError from the guest break the link for good: every later
 * call fails with the same kind of error, and the worker destroys the VM.
 *
 * A link owns one connection. To resynchronise (a worker restart, a link that timed out),
 * close it and connect again: connect sends GuestHello with a fresh nonce and skips everything
 * until the GuestReady that carries it, so nothing an earlier connection left in the port is
 * mistaken for an answer. */
#ifndef BRUME_WORKER_GUEST_LINK_H
#define BRUME_WORKER_GUEST_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include "brume/guest.pb-c.h"
#include "err.h"

/* The longest frame either side sends or accepts (guest.proto). */
#define BRUME_GUEST_LINK_MAX_FRAME (64u * 1024 * 1024)
/* How often connect tries again while the socket is absent or refuses (QEMU is starting). */
#define BRUME_GUEST_LINK_RETRY_MS 10

typedef struct brume_guest_link brume_guest_link;

/* Connects to the channel's UNIX socket at socket_path, trying again every
 * BRUME_GUEST_LINK_RETRY_MS while it does not exist or refuses (it appears when QEMU starts),
 * sends GuestHello with a fresh non-zero nonce and reads until the GuestReady carrying it,
 * skipping every other frame (a RuntimeExited among them is recorded). All of it within
 * timeout_ms (negative: no limit). Returns the link (close with brume_guest_link_close), or NULL
 * with *err: INVALID_ARGUMENT for a path longer than sun_path, DEADLINE_EXCEEDED when the socket
 * did not accept or the guest did not answer in time, UNAVAILABLE when the channel closed. */
brume_guest_link *brume_guest_link_connect(const char *socket_path, int timeout_ms,
                                           brume_err **err);

/* The GuestReady that answered this link's Hello (owned by the link): initialised says whether
 * Init already happened (then Init must not be sent again), uptime_us the guest's uptime. */
const Brume__GuestReady *brume_guest_link_ready(const brume_guest_link *link);

/* Sends Init and waits for InitDone, at most timeout_ms. host_time_unix_ms is filled with the
 * host's clock when the caller left it 0 (init itself is not modified). Returns 0 with *done
 * (caller frees with brume__guest_init_done__free_unpacked(*done, NULL)); a function's init
 * error is a successful call with (*done)->error set. -1 with *err: INTERNAL with the guest's
 * message for a GuestError ("guest error: Init received twice"), DEADLINE_EXCEEDED,
 * UNAVAILABLE ("the guest's channel closed"), RESOURCE_EXHAUSTED for a message over the frame
 * limit. */
int brume_guest_link_init(brume_guest_link *link, const Brume__GuestInit *init,
                          Brume__GuestInitDone **done, int timeout_ms, brume_err **err);

/* Sends Invoke and waits for the InvokeDone with its request id, at most timeout_ms (give the
 * function's deadline some slack: the guest enforces the deadline itself and answers
 * Sandbox.Timedout). host_time_unix_ms is filled when the caller left it 0. Returns 0 with *done
 * (caller frees with brume__guest_invoke_done__free_unpacked); a function error is a successful
 * call with (*done)->error set. Errors as for brume_guest_link_init. */
int brume_guest_link_invoke(brume_guest_link *link, const Brume__GuestInvoke *inv,
                            Brume__GuestInvokeDone **done, int timeout_ms, brume_err **err);

/* Sends Ping with a fresh nonce and waits for its Pong. 0, or -1 as above. */
int brume_guest_link_ping(brume_guest_link *link, int timeout_ms, brume_err **err);

/* Sends Shutdown{grace_ms} (0: the guest's default, 500 ms) and waits for ShutdownDone; *clean
 * (may be NULL) says whether the runtime stopped within the grace period. Give timeout_ms more
 * than grace_ms. 0, or -1 as above. The VM is still there: the caller destroys it. */
int brume_guest_link_shutdown(brume_guest_link *link, uint32_t grace_ms, bool *clean,
                              int timeout_ms, brume_err **err);

/* Whether a GuestRuntimeExited arrived (during any call since connect), and its status (the
 * shell's: the exit code, or 128 + the signal) in *status when non-NULL. Not an error by itself:
 * the next Invoke answers Runtime.ExitError with sandbox_broken. */
bool brume_guest_link_runtime_exited(const brume_guest_link *link, int *status);

/* Closes the connection and frees the link; NULL is a no-op. The guest notices the hang-up and
 * waits for the next host; the VM keeps running. */
void brume_guest_link_close(brume_guest_link *link);

BRUME_DEFINE_AUTOPTR(brume_guest_link, brume_guest_link_close)

#endif
