/* RPC over the gRPC C core, with protobuf-c messages.
 *
 * Server: register a service from its protobuf-c service descriptor and one handler per method.
 * A handler receives the decoded request and answers with brume_rpc_call_reply() or
 * brume_rpc_call_fail(), at once or later from any thread (asynchronous completion), so that a
 * daemon holds thousands of calls in flight without a thread each. Unknown methods are answered
 * UNIMPLEMENTED at once, requests over the size limit RESOURCE_EXHAUSTED, undecodable requests
 * INVALID_ARGUMENT; none of them reaches a handler.
 *
 * Client: one channel per target, kept open and reconnected by gRPC; unary calls with a deadline,
 * blocking (brume_rpc_unary) or with a completion callback (brume_rpc_unary_async).
 *
 * Both sides speak plaintext, TLS, or mutual TLS as brume_tls_config says. Every call may carry
 * the API key and request id as metadata (BRUME_MD_*). */
#ifndef BRUME_RPC_H
#define BRUME_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "metrics.h"

#define BRUME_MD_API_KEY "x-brume-api-key"
#define BRUME_MD_REQUEST_ID "x-request-id"

#define BRUME_RPC_DEFAULT_MAX_MESSAGE (4u << 20)
#define BRUME_RPC_DEFAULT_DEADLINE_MS 30000

/* PEM file paths. A server uses TLS when cert_file is set; it requires and verifies client
 * certificates against ca_file when require_client_cert is true (mutual TLS). A client uses TLS
 * when ca_file is set (the roots it trusts) and presents cert_file/key_file when set. */
typedef struct brume_tls_config {
  const char *ca_file;
  const char *cert_file;
  const char *key_file;
  bool require_client_cert;
  /* Client only: the name expected in the server's certificate when it differs from the
   * target's host (tests, or addressing a server by IP). NULL = the target's host. */
  const char *server_name;
} brume_tls_config;

/* TLS settings from a daemon's common options (tls_ca, tls_cert, tls_key, tls_client_auth): as a
 * server, and as a client of other daemons (presenting the same certificate, which mutual TLS
 * between daemons needs). The strings stay owned by cfg. */
brume_tls_config brume_rpc_server_tls(const brume_common_config *cfg);
brume_tls_config brume_rpc_client_tls(const brume_common_config *cfg);

/* ---- server ---- */

typedef struct brume_rpc_server brume_rpc_server;
typedef struct brume_rpc_call brume_rpc_call;

typedef struct brume_rpc_server_opts {
  const char *listen; /* "127.0.0.1:7000"; port 0 = any free port (see _port) */
  brume_tls_config tls;
  size_t max_message_bytes; /* largest request accepted; 0 = BRUME_RPC_DEFAULT_MAX_MESSAGE */
  int threads;              /* threads running handlers off the completion queue; 0 = 1 */
  int slots_per_method;     /* calls accepted ahead per method; 0 = 16 */
  /* When set, the server keeps brume_rpc_server_calls_total{method,code},
   * brume_rpc_server_call_duration_seconds{method} and brume_rpc_server_calls_in_flight there. */
  brume_metrics *metrics;
} brume_rpc_server_opts;

/* Called on a server thread with the decoded request, which stays valid until the call is
 * answered. Must not block: park the call and answer it later instead. */
typedef void (*brume_rpc_handler)(brume_rpc_call *call, const ProtobufCMessage *request,
                                  void *user);

/* Creates a server bound to opts->listen (not yet serving). NULL + err on a bad address,
 * unreadable certificates or a port in use. */
brume_rpc_server *brume_rpc_server_new(const brume_rpc_server_opts *opts, brume_err **err);
/* Registers every method of svc; handlers[i] serves svc->methods[i] (NULL = UNIMPLEMENTED).
 * The handlers array must stay valid while the server lives. Before _start only. */
int brume_rpc_server_add_service(brume_rpc_server *srv, const ProtobufCServiceDescriptor *svc,
                                 const brume_rpc_handler *handlers, void *user, brume_err **err);
int brume_rpc_server_start(brume_rpc_server *srv, brume_err **err);
/* The bound TCP port (useful with port 0). */
int brume_rpc_server_port(const brume_rpc_server *srv);
/* Stops accepting, cancels calls in flight, joins the threads and frees everything, including
 * calls that handlers parked and never answered (their pointers are dead afterwards). */
void brume_rpc_server_free(brume_rpc_server *srv);

/* "/brume.Counting/Acquire" */
const char *brume_rpc_call_method(const brume_rpc_call *call);
/* The value of a request metadata key (lowercase), or NULL. Owned by the call. */
const char *brume_rpc_call_metadata(brume_rpc_call *call, const char *key);
/* Milliseconds left before the client's deadline (may be <= 0), or -1 if it set none. */
int64_t brume_rpc_call_deadline_left_ms(const brume_rpc_call *call);
/* True once the client went away or the deadline passed: the answer would be dropped. */
bool brume_rpc_call_cancelled(const brume_rpc_call *call);

/* Answer a call exactly once, from any thread; the call pointer is dead afterwards. */
void brume_rpc_call_reply(brume_rpc_call *call, const ProtobufCMessage *reply);
void brume_rpc_call_fail(brume_rpc_call *call, brume_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void brume_rpc_call_fail_err(brume_rpc_call *call, const brume_err *err);

/* ---- client ---- */

typedef struct brume_rpc_client brume_rpc_client;

/* A completion loop: one queue and one thread on which asynchronous calls complete and their
 * callbacks run. By default each client has its own, started by its first async call; clients
 * given the same loop (brume_rpc_client_opts.loop) share one, so that a chain of calls to
 * several daemons (the frontend's Invoke: counting, placement, a worker) runs its callbacks on
 * one thread instead of waking a thread per hop. */
typedef struct brume_rpc_loop brume_rpc_loop;

brume_rpc_loop *brume_rpc_loop_new(void);
/* After every client that uses the loop has been freed. */
void brume_rpc_loop_free(brume_rpc_loop *loop);

/* How often a client pings its server while a call is under way, and how long it waits for the
 * answer before it fails the connection's calls (UNAVAILABLE): a peer cut off is known within
 * about the sum. The wait is not shorter because a host whose CPUs are starved answers late:
 * at 2 s, a worker among 50 running TCG microVMs on 2 cores missed one (a CreateSandbox failed
 * in tests/cluster/test_cluster_faults.sh). */
#define BRUME_RPC_KEEPALIVE_MS 2000
#define BRUME_RPC_KEEPALIVE_TIMEOUT_MS 6000

typedef struct brume_rpc_client_opts {
  brume_tls_config tls;
  brume_rpc_loop *loop;        /* where async calls complete; NULL = the client's own */
  size_t max_message_bytes;    /* largest reply accepted; 0 = BRUME_RPC_DEFAULT_MAX_MESSAGE */
  int64_t default_deadline_ms; /* 0 = BRUME_RPC_DEFAULT_DEADLINE_MS */
} brume_rpc_client_opts;

typedef struct brume_rpc_call_opts {
  int64_t deadline_ms;    /* 0 = the client's default */
  const char *api_key;    /* sent as BRUME_MD_API_KEY when set */
  const char *request_id; /* sent as BRUME_MD_REQUEST_ID when set */
  bool wait_for_ready;    /* wait (until the deadline) for a connection instead of failing fast */
} brume_rpc_call_opts;

/* Opens a channel to target ("127.0.0.1:7000", "dns:host:port", "unix:/path"). The channel
 * connects lazily and reconnects on its own (backoff 100 ms to 1 s). opts may be NULL. */
brume_rpc_client *brume_rpc_client_new(const char *target, const brume_rpc_client_opts *opts,
                                       brume_err **err);
/* Cancels outstanding async calls (their callbacks run with CANCELLED, before this returns) and
 * frees the client. No call may start meanwhile, from another thread or from a callback. */
void brume_rpc_client_free(brume_rpc_client *client);
const char *brume_rpc_client_target(const brume_rpc_client *client);

/* Blocking unary call of svc->methods[method]. On success *reply is a new message that the
 * caller frees with protobuf_c_message_free_unpacked(*reply, NULL). On failure err carries the
 * server's (or transport's) status code and message. opts may be NULL. */
int brume_rpc_unary(brume_rpc_client *client, const ProtobufCServiceDescriptor *svc,
                    unsigned method, const ProtobufCMessage *request, ProtobufCMessage **reply,
                    const brume_rpc_call_opts *opts, brume_err **err);

/* Completion of an async call, on the client's completion thread (must not block). reply is
 * NULL when err is set; the callback owns reply; err is freed after the callback returns. */
typedef void (*brume_rpc_done)(void *user, ProtobufCMessage *reply, const brume_err *err);

/* Starts a call and returns at once; done runs exactly once, unless this returns -1. The first
 * async call starts the client's completion thread; from then on blocking calls on the same
 * client cost about 12 us more (their replies are read by that thread): keep separate clients
 * for hot blocking and async traffic. */
int brume_rpc_unary_async(brume_rpc_client *client, const ProtobufCServiceDescriptor *svc,
                          unsigned method, const ProtobufCMessage *request,
                          const brume_rpc_call_opts *opts, brume_rpc_done done, void *user,
                          brume_err **err);

/* A set of clients, one per target, opened on first use and kept: what a daemon that talks to
 * many peers (placement to workers, frontend to counting daemons) holds. Thread-safe. */
typedef struct brume_rpc_pool brume_rpc_pool;

/* opts (copied, strings included) apply to every client of the pool; may be NULL. */
brume_rpc_pool *brume_rpc_pool_new(const brume_rpc_client_opts *opts);
/* The pool's client for target, created if needed. Owned by the pool: valid until _pool_free. */
brume_rpc_client *brume_rpc_pool_get(brume_rpc_pool *pool, const char *target, brume_err **err);
void brume_rpc_pool_free(brume_rpc_pool *pool);

/* `brume_autoptr(ProtobufCMessage) reply = NULL;` frees a decoded message at scope exit. */
static inline void brume_proto_free(ProtobufCMessage *msg) {
  protobuf_c_message_free_unpacked(msg, NULL);
}
BRUME_DEFINE_AUTOPTR(ProtobufCMessage, brume_proto_free)
BRUME_DEFINE_AUTOPTR(brume_rpc_client, brume_rpc_client_free)
BRUME_DEFINE_AUTOPTR(brume_rpc_server, brume_rpc_server_free)

/* ---- codec (shared by both sides; exposed for the fuzz target) ---- */

/* Decodes bytes as a message of type desc; NULL + INVALID_ARGUMENT when they are not one. */
ProtobufCMessage *brume_rpc_decode(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                   size_t len, brume_err **err);

#endif
