/* brume-test-echo-server: serves brume.test.Echo through the RPC layer, in its own process, for
 * tests/rpc/test_rpc.c.
 *
 *   brume-test-echo-server --listen=127.0.0.1:PORT [--threads N] [--max-message-size 1MiB]
 *       [--tls-cert F --tls-key F [--tls-ca F] [--tls-client-auth]] [--http-listen ADDR]
 *       [--config FILE]     (--help lists every option: it is a daemon's config table)
 *
 * Echo answers at once, or after EchoRequest.delay_ms from a timer thread (the handler parks the
 * call and returns). Gather parks every call until EchoRequest.reply_size of them have arrived,
 * then answers them all from the handler thread. Exits cleanly on SIGTERM/SIGINT. */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "brume/test/echo.pb-c.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "rpc.h"

struct parked {
  struct parked *next;
  brume_rpc_call *call;
  long long due_ms;
  ProtobufCBinaryData payload;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static struct parked *delayed;  /* Echo calls waiting for their delay */
static struct parked *gathered; /* Gather calls waiting for company */
static size_t ngathered;
static bool stop; /* under lock */

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void reply_echo(brume_rpc_call *call, ProtobufCBinaryData payload, uint32_t reply_size) {
  Brume__Test__EchoReply reply = BRUME__TEST__ECHO_REPLY__INIT;
  brume_autofree uint8_t *big = NULL;
  if (reply_size) {
    big = brume_xcalloc(reply_size, 1);
    reply.payload.data = big;
    reply.payload.len = reply_size;
  } else {
    reply.payload = payload;
  }
  const char *key = brume_rpc_call_metadata(call, BRUME_MD_API_KEY);
  const char *rid = brume_rpc_call_metadata(call, BRUME_MD_REQUEST_ID);
  reply.api_key = (char *)(key ? key : "");
  reply.request_id = (char *)(rid ? rid : "");
  reply.deadline_left_ms = brume_rpc_call_deadline_left_ms(call);
  brume_rpc_call_reply(call, &reply.base);
}

static void handle_echo(brume_rpc_call *call, const ProtobufCMessage *msg, void *user) {
  (void)user;
  const Brume__Test__EchoRequest *req = (const Brume__Test__EchoRequest *)msg;
  if (req->delay_ms == 0) {
    reply_echo(call, req->payload, req->reply_size);
    return;
  }
  struct parked *p = brume_xcalloc(1, sizeof(*p));
  p->call = call;
  p->due_ms = now_ms() + req->delay_ms;
  p->payload = req->payload; /* the request lives until the call is answered */
  pthread_mutex_lock(&lock);
  p->next = delayed;
  delayed = p;
  pthread_cond_signal(&wake);
  pthread_mutex_unlock(&lock);
}

static void handle_gather(brume_rpc_call *call, const ProtobufCMessage *msg, void *user) {
  (void)user;
  const Brume__Test__EchoRequest *req = (const Brume__Test__EchoRequest *)msg;
  struct parked *p = brume_xcalloc(1, sizeof(*p));
  p->call = call;
  p->payload = req->payload;
  pthread_mutex_lock(&lock);
  p->next = gathered;
  gathered = p;
  struct parked *all = NULL;
  if (++ngathered >= req->reply_size) {
    all = gathered;
    gathered = NULL;
    ngathered = 0;
  }
  pthread_mutex_unlock(&lock);
  for (struct parked *n; all; all = n) {
    n = all->next;
    reply_echo(all->call, all->payload, 0);
    free(all);
  }
}

/* Answers delayed Echo calls when they are due. */
static void *timer(void *arg) {
  (void)arg;
  pthread_mutex_lock(&lock);
  while (!stop) {
    long long now = now_ms();
    struct parked **pp = &delayed;
    while (*pp) {
      struct parked *p = *pp;
      if (p->due_ms <= now) {
        *pp = p->next;
        pthread_mutex_unlock(&lock);
        reply_echo(p->call, p->payload, 0);
        free(p);
        pthread_mutex_lock(&lock);
        pp = &delayed;
      } else {
        pp = &p->next;
      }
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 5 * 1000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&wake, &lock, &ts);
  }
  pthread_mutex_unlock(&lock);
  return NULL;
}

static struct {
  brume_common_config common;
  int64_t threads;
  int64_t max_message;
} cfg;

static const brume_opt echo_opts[] = {
    BRUME_OPT_INT("threads", &cfg.threads, 1, 64, "1", "Threads running handlers."),
    BRUME_OPT_SIZE("max_message_size", &cfg.max_message, BRUME_KIB, 64 * BRUME_MIB, "4MiB",
                   "Largest request accepted."),
};

static const brume_config_spec spec = {
    .name = "brume-test-echo-server",
    .summary = "Serves brume.test.Echo through the RPC layer, for the RPC tests.",
    .common = &cfg.common,
    .default_listen = "127.0.0.1:0",
    .opts = echo_opts,
    .n_opts = BRUME_ARRAY_LEN(echo_opts),
};

int main(int argc, char **argv) {
  brume_err *err = NULL;
  int rc = brume_config_load(&spec, argc, argv, &err);
  if (rc != 0) {
    if (rc < 0) fprintf(stderr, "%s\n", err->msg);
    brume_err_free(err);
    brume_config_free(&spec);
    return rc < 0 ? 2 : 0;
  }
  brume_log_init("echo-server", (brume_log_level)cfg.common.log_level);
  /* Blocked before any thread starts, so that every thread inherits the mask and main alone
   * takes the signal in sigwait(). */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);

  brume_rpc_server_opts opts = {
      .listen = cfg.common.listen,
      .tls = brume_rpc_server_tls(&cfg.common),
      .threads = (int)cfg.threads,
      .max_message_bytes = (size_t)cfg.max_message,
      .metrics = brume_metrics_default(),
  };
  static const brume_rpc_handler handlers[] = {handle_echo, handle_gather};
  BRUME_ENSURE(brume__test__echo__descriptor.n_methods == BRUME_ARRAY_LEN(handlers));
  brume_rpc_server *srv = brume_rpc_server_new(&opts, &err);
  if (srv == NULL || brume_rpc_server_add_service(srv, &brume__test__echo__descriptor, handlers,
                                                  NULL, &err) < 0 ||
      brume_rpc_server_start(srv, &err) < 0) {
    fprintf(stderr, "echo server: %s\n", err ? err->msg : "?");
    brume_err_free(err);
    brume_rpc_server_free(srv);
    brume_config_free(&spec);
    return 1;
  }
  brume_http *http = NULL;
  if (cfg.common.http_listen &&
      (http = brume_http_start(cfg.common.http_listen, brume_metrics_default(), &err)) == NULL) {
    fprintf(stderr, "echo server: %s\n", err->msg);
    return 1;
  }
  pthread_t t;
  pthread_create(&t, NULL, timer, NULL);
  int sig;
  sigwait(&sigs, &sig);
  pthread_mutex_lock(&lock);
  stop = 1;
  pthread_cond_signal(&wake);
  pthread_mutex_unlock(&lock);
  pthread_join(t, NULL);
  /* Parked calls that were never answered are freed by the server. */
  for (struct parked *p = delayed, *n; p; p = n) { n = p->next; free(p); }
  for (struct parked *p = gathered, *n; p; p = n) { n = p->next; free(p); }
  brume_rpc_server_free(srv);
  brume_http_stop(http);
  brume_config_free(&spec);
  return 0;
}
