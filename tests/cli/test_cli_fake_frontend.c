/* The real brume binary (argv[1]) against a fake brume.Frontend served in this process on
 * 127.0.0.1:0. The fake records every request it receives (decoded, with its x-brume-api-key
 * and x-request-id metadata) and answers canned replies, failing the calls a test scripts
 * (RESOURCE_EXHAUSTED twice, then OK ...). Each test runs brume as a subprocess and checks what
 * the server received, the exit status, stdout and stderr. The lead's end-to-end tests run the
 * same binary against the real frontend. */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "brume/frontend.pb-c.h"
#include "client.h"
#include "message_json.h"
#include "proc.h"
#include "rpc.h"
#include "strbuf.h"
#include "testutil.h"

#define TEST_KEY "brume_0011223344556677_s3cr3tS3CR3Ts3cr3t"
#define NEW_KEY "brume_8899aabbccddeeff_fr3shS3CR3Tfr3sh"
#define MAX_CALLS 64

static const char *brume_bin;
static char *dir;
static char endpoint[64];

/* ---- the fake frontend ---- */

typedef struct recorded {
  enum brume_cli_method method;
  ProtobufCMessage *request;
  char *api_key;    /* NULL when absent */
  char *request_id; /* NULL when absent */
} recorded;

static struct {
  pthread_mutex_t lock;
  recorded calls[MAX_CALLS];
  size_t n_calls;
  /* The next fail_count calls of fail_method fail with fail_code and fail_msg. */
  enum brume_cli_method fail_method;
  int fail_count;
  brume_status fail_code;
  const char *fail_msg;
  bool function_error; /* Invoke answers a function error */
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

static brume_rpc_server *server;

static void fail_next(enum brume_cli_method m, int count, brume_status code, const char *msg) {
  pthread_mutex_lock(&fake.lock);
  fake.fail_method = m;
  fake.fail_count = count;
  fake.fail_code = code;
  fake.fail_msg = msg;
  pthread_mutex_unlock(&fake.lock);
}

static void reset_fake(void) {
  pthread_mutex_lock(&fake.lock);
  for (size_t i = 0; i < fake.n_calls; i++) {
    brume_proto_free(fake.calls[i].request);
    free(fake.calls[i].api_key);
    free(fake.calls[i].request_id);
  }
  fake.n_calls = 0;
  fake.fail_count = 0;
  fake.function_error = false;
  pthread_mutex_unlock(&fake.lock);
}

static size_t n_calls(void) {
  pthread_mutex_lock(&fake.lock);
  size_t n = fake.n_calls;
  pthread_mutex_unlock(&fake.lock);
  return n;
}

/* The i-th request received; the test checks its method. */
static const recorded *call_at(size_t i, enum brume_cli_method m) {
  pthread_mutex_lock(&fake.lock);
  const recorded *r = i < fake.n_calls ? &fake.calls[i] : NULL;
  pthread_mutex_unlock(&fake.lock);
  if (r == NULL) fail_msg("no call %zu (only %zu)", i, n_calls());
  if (r->method != m)
    fail_msg("call %zu is %s, not %s", i, brume_cli_method_name(r->method),
             brume_cli_method_name(m));
  return r;
}

static ProtobufCMessage *copy_message(const ProtobufCMessage *m) {
  size_t len = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = brume_xmalloc(len + 1);
  protobuf_c_message_pack(m, buf);
  ProtobufCMessage *copy = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
  free(buf);
  BRUME_ENSURE(copy != NULL);
  return copy;
}

static char *dup_or_null(const char *s) {
  return s ? brume_xstrdup(s) : NULL;
}

static Brume__FunctionConfiguration *config_for(Brume__FunctionConfiguration *c, const char *name,
                                                const char *version) {
  brume__function_configuration__init(c);
  c->function_name = (char *)name;
  c->function_arn = "arn:brume:lambda:local:a1:function:fake";
  c->version = (char *)version;
  c->handler = "bootstrap";
  c->handler_mode = BRUME__HANDLER_MODE__HANDLER_MODE_RUNTIME_API;
  c->runtime = "provided";
  c->memory_size_mib = 128;
  c->timeout_ms = 3000;
  c->ephemeral_storage_mib = 512;
  c->code_sha256 = "ab12";
  c->code_size_bytes = 4;
  c->last_modified_unix_ms = 1700000000000;
  c->revision_id = "rev-1";
  return c;
}

static void reply_invoke(brume_rpc_call *call, const Brume__InvokeRequest *req, bool fn_error) {
  Brume__InvokeResponse r = BRUME__INVOKE_RESPONSE__INIT;
  Brume__FunctionError fe = BRUME__FUNCTION_ERROR__INIT;
  const char *payload = "{\"answer\":42}";
  r.status_code = 200;
  if (req->invocation_type == BRUME__INVOCATION_TYPE__INVOCATION_TYPE_DRY_RUN) {
    r.status_code = 204;
    payload = "";
  } else if (fn_error) {
    payload = "{\"errorType\":\"Runtime.ExitError\",\"errorMessage\":\"exit status 3\"}";
    fe.kind = BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED;
    fe.type = "Runtime.ExitError";
    fe.message = "exit status 3";
    r.function_error = &fe;
  }
  r.payload = (ProtobufCBinaryData){strlen(payload), (uint8_t *)payload};
  r.executed_version = "$LATEST";
  r.duration_us = 1234;
  r.billed_duration_ms = 2;
  r.memory_size_mib = 128;
  if (req->log_type == BRUME__LOG_TYPE__LOG_TYPE_TAIL)
    r.log_tail = (ProtobufCBinaryData){17, (uint8_t *)"START\nhello log\nE"};
  const char *rid = brume_rpc_call_metadata(call, BRUME_MD_REQUEST_ID);
  r.request_id = (char *)(rid ? rid : "made-up-id");
  brume_rpc_call_reply(call, &r.base);
}

static void reply_list_functions(brume_rpc_call *call, const Brume__ListFunctionsRequest *req) {
  /* Three functions, at most two a page, so that every listing takes two pages. */
  static const char *const names[] = {"alpha", "beta", "gamma"};
  size_t from = *req->marker ? (size_t)atoi(req->marker) : 0;
  size_t page = req->max_items && req->max_items < 2 ? req->max_items : 2;
  Brume__FunctionConfiguration cfg[3], *ptrs[3];
  Brume__ListFunctionsResponse r = BRUME__LIST_FUNCTIONS_RESPONSE__INIT;
  for (size_t i = from; i < 3 && r.n_functions < page; i++)
    ptrs[r.n_functions++] = config_for(&cfg[i], names[i], "$LATEST");
  r.functions = ptrs;
  char next[16] = "";
  if (from + r.n_functions < 3) snprintf(next, sizeof(next), "%zu", from + r.n_functions);
  r.next_marker = next;
  brume_rpc_call_reply(call, &r.base);
}

static void reply_alias(brume_rpc_call *call, enum brume_cli_method m, const char *name,
                        const char *version, const Brume__AliasRoutingConfig *routing) {
  Brume__AliasConfiguration a = BRUME__ALIAS_CONFIGURATION__INIT;
  a.name = (char *)name;
  a.alias_arn = "arn:brume:lambda:local:a1:function:fake:live";
  a.function_version = (char *)(*version ? version : "1");
  a.routing_config = (Brume__AliasRoutingConfig *)routing;
  a.revision_id = "arev-1";
  Brume__CreateAliasResponse c = BRUME__CREATE_ALIAS_RESPONSE__INIT;
  Brume__UpdateAliasResponse u = BRUME__UPDATE_ALIAS_RESPONSE__INIT;
  Brume__GetAliasResponse g = BRUME__GET_ALIAS_RESPONSE__INIT;
  c.alias = u.alias = g.alias = &a;
  brume_rpc_call_reply(call, m == BRUME_CLI_CREATE_ALIAS   ? &c.base
                             : m == BRUME_CLI_UPDATE_ALIAS ? &u.base
                                                           : &g.base);
}

static void reply_ok(brume_rpc_call *call, enum brume_cli_method m, const ProtobufCMessage *msg) {
  Brume__FunctionConfiguration cfg;
  switch (m) {
    case BRUME_CLI_INVOKE:
      pthread_mutex_lock(&fake.lock);
      bool fn_error = fake.function_error;
      pthread_mutex_unlock(&fake.lock);
      reply_invoke(call, (const Brume__InvokeRequest *)msg, fn_error);
      return;
    case BRUME_CLI_CREATE_FUNCTION: {
      const Brume__CreateFunctionRequest *q = (const Brume__CreateFunctionRequest *)msg;
      Brume__CreateFunctionResponse r = BRUME__CREATE_FUNCTION_RESPONSE__INIT;
      r.configuration = config_for(&cfg, q->function_name, q->publish ? "1" : "$LATEST");
      brume_rpc_call_reply(call, &r.base);
      return;
    }
    case BRUME_CLI_UPDATE_FUNCTION_CONFIGURATION: {
      const Brume__UpdateFunctionConfigurationRequest *q =
          (const Brume__UpdateFunctionConfigurationRequest *)msg;
      Brume__UpdateFunctionConfigurationResponse r =
          BRUME__UPDATE_FUNCTION_CONFIGURATION_RESPONSE__INIT;
      r.configuration = config_for(&cfg, q->function_name, "$LATEST");
      brume_rpc_call_reply(call, &r.base);
      return;
    }
    case BRUME_CLI_GET_FUNCTION: {
      const Brume__GetFunctionRequest *q = (const Brume__GetFunctionRequest *)msg;
      Brume__FunctionConcurrency fc = BRUME__FUNCTION_CONCURRENCY__INIT;
      fc.reserved_concurrent_executions = 5;
      Brume__GetFunctionResponse r = BRUME__GET_FUNCTION_RESPONSE__INIT;
      r.configuration = config_for(&cfg, q->function_name, "$LATEST");
      r.code_url = "http://127.0.0.1:9040/code/ab12";
      r.concurrency = &fc;
      brume_rpc_call_reply(call, &r.base);
      return;
    }
    case BRUME_CLI_LIST_FUNCTIONS:
      reply_list_functions(call, (const Brume__ListFunctionsRequest *)msg);
      return;
    case BRUME_CLI_CREATE_ALIAS: {
      const Brume__CreateAliasRequest *q = (const Brume__CreateAliasRequest *)msg;
      reply_alias(call, m, q->name, q->function_version, q->routing_config);
      return;
    }
    case BRUME_CLI_UPDATE_ALIAS: {
      const Brume__UpdateAliasRequest *q = (const Brume__UpdateAliasRequest *)msg;
      reply_alias(call, m, q->name, q->function_version, NULL);
      return;
    }
    case BRUME_CLI_PUT_FUNCTION_CONCURRENCY: {
      const Brume__PutFunctionConcurrencyRequest *q =
          (const Brume__PutFunctionConcurrencyRequest *)msg;
      Brume__FunctionConcurrency fc = BRUME__FUNCTION_CONCURRENCY__INIT;
      fc.reserved_concurrent_executions = q->reserved_concurrent_executions;
      Brume__PutFunctionConcurrencyResponse r = BRUME__PUT_FUNCTION_CONCURRENCY_RESPONSE__INIT;
      r.concurrency = &fc;
      brume_rpc_call_reply(call, &r.base);
      return;
    }
    case BRUME_CLI_GET_FUNCTION_CONCURRENCY: {
      Brume__GetFunctionConcurrencyResponse r = BRUME__GET_FUNCTION_CONCURRENCY_RESPONSE__INIT;
      brume_rpc_call_reply(call, &r.base); /* none set */
      return;
    }
    case BRUME_CLI_PUT_PROVISIONED_CONCURRENCY_CONFIG: {
      const Brume__PutProvisionedConcurrencyConfigRequest *q =
          (const Brume__PutProvisionedConcurrencyConfigRequest *)msg;
      Brume__ProvisionedConcurrencyConfig pc = BRUME__PROVISIONED_CONCURRENCY_CONFIG__INIT;
      pc.function_name = q->function_name;
      pc.qualifier = q->qualifier;
      pc.requested_provisioned_concurrent_executions = q->provisioned_concurrent_executions;
      pc.status = BRUME__PROVISIONED_CONCURRENCY_STATUS__PROVISIONED_CONCURRENCY_STATUS_IN_PROGRESS;
      Brume__PutProvisionedConcurrencyConfigResponse r =
          BRUME__PUT_PROVISIONED_CONCURRENCY_CONFIG_RESPONSE__INIT;
      r.config = &pc;
      brume_rpc_call_reply(call, &r.base);
      return;
    }
    case BRUME_CLI_CREATE_API_KEY: {
      const Brume__CreateApiKeyRequest *q = (const Brume__CreateApiKeyRequest *)msg;
      Brume__ApiKeyInfo k = BRUME__API_KEY_INFO__INIT;
      k.key_id = "8899aabbccddeeff";
      k.account_id = q->account_id;
      k.n_scopes = q->n_scopes;
      k.scopes = q->scopes;
      k.created_unix_ms = 1700000000000;
      Brume__CreateApiKeyResponse r = BRUME__CREATE_API_KEY_RESPONSE__INIT;
      r.api_key = NEW_KEY;
      r.key = &k;
      brume_rpc_call_reply(call, &r.base);
      return;
    }
    case BRUME_CLI_DELETE_FUNCTION: {
      Brume__DeleteFunctionResponse r = BRUME__DELETE_FUNCTION_RESPONSE__INIT;
      brume_rpc_call_reply(call, &r.base);
      return;
    }
    case BRUME_CLI_INVOKE_EVENTS: {
      /* Every entry queued as evt-<payload>, but one whose payload starts with "bad". */
      const Brume__InvokeEventsRequest *q = (const Brume__InvokeEventsRequest *)msg;
      Brume__EventEntryResult res[100], *ptrs[100];
      char ids[100][48], rids[100][16];
      Brume__InvokeEventsResponse r = BRUME__INVOKE_EVENTS_RESPONSE__INIT;
      for (size_t i = 0; i < q->n_entries && i < 100; i++) {
        const ProtobufCBinaryData *pl = &q->entries[i]->payload;
        brume__event_entry_result__init(&res[i]);
        snprintf(rids[i], sizeof(rids[i]), "rid-%zu", i);
        res[i].request_id = rids[i];
        if (pl->len >= 3 && memcmp(pl->data, "bad", 3) == 0) {
          res[i].error_code = "INVALID_ARGUMENT";
          res[i].error_message = "RequestTooLargeException: too big";
          r.failed_count++;
        } else {
          snprintf(ids[i], sizeof(ids[i]), "evt-%.*s", (int)(pl->len < 40 ? pl->len : 40),
                   (const char *)pl->data);
          res[i].status_code = 202;
          res[i].event_id = ids[i];
        }
        ptrs[i] = &res[i];
      }
      r.results = ptrs;
      r.n_results = q->n_entries < 100 ? q->n_entries : 100;
      brume_rpc_call_reply(call, &r.base);
      return;
    }
    default:
      brume_rpc_call_fail(call, BRUME_UNIMPLEMENTED, "the fake has no canned %s",
                          brume_cli_method_name(m));
      return;
  }
}

static void handle(brume_rpc_call *call, const ProtobufCMessage *msg, void *user) {
  (void)user;
  const char *path = brume_rpc_call_method(call);
  enum brume_cli_method m = BRUME_CLI_N_METHODS;
  for (unsigned i = 0; i < BRUME_CLI_N_METHODS; i++) {
    const char *name = brume_cli_method_name((enum brume_cli_method)i);
    if (strcmp(path + strlen("/brume.Frontend/"), name) == 0) m = (enum brume_cli_method)i;
  }
  BRUME_ENSURE(m < BRUME_CLI_N_METHODS);
  pthread_mutex_lock(&fake.lock);
  BRUME_ENSURE(fake.n_calls < MAX_CALLS);
  fake.calls[fake.n_calls++] =
      (recorded){m, copy_message(msg), dup_or_null(brume_rpc_call_metadata(call, BRUME_MD_API_KEY)),
                 dup_or_null(brume_rpc_call_metadata(call, BRUME_MD_REQUEST_ID))};
  bool fail = fake.fail_count > 0 && fake.fail_method == m;
  if (fail) fake.fail_count--;
  brume_status code = fake.fail_code;
  const char *why = fake.fail_msg;
  pthread_mutex_unlock(&fake.lock);
  if (fail)
    brume_rpc_call_fail(call, code, "%s", why);
  else
    reply_ok(call, m, msg);
}

static brume_rpc_handler handlers[BRUME_CLI_N_METHODS];

static int start_fake(void **state) {
  (void)state;
  for (size_t i = 0; i < BRUME_CLI_N_METHODS; i++) handlers[i] = handle;
  brume_rpc_server_opts opts = {.listen = "127.0.0.1:0", .threads = 2};
  brume_err *err = NULL;
  server = brume_rpc_server_new(&opts, &err);
  if (server == NULL ||
      brume_rpc_server_add_service(server, &brume__frontend__descriptor, handlers, NULL, &err) <
          0 ||
      brume_rpc_server_start(server, &err) < 0) {
    fprintf(stderr, "fake frontend: %s\n", err ? err->msg : "?");
    return -1;
  }
  snprintf(endpoint, sizeof(endpoint), "127.0.0.1:%d", brume_rpc_server_port(server));
  dir = brume_test_tmpdir("cli-fake");
  return 0;
}

static int stop_fake(void **state) {
  (void)state;
  reset_fake();
  brume_rpc_server_free(server);
  brume_test_rmtree(dir);
  free(dir);
  return 0;
}

static int before_each(void **state) {
  (void)state;
  reset_fake();
  return 0;
}

/* ---- running brume ---- */

typedef struct run_opts {
  const char *env[8]; /* extra NAME=VALUE; HOME is the temp dir, BRUME_API_KEY TEST_KEY */
  bool no_key;        /* leave BRUME_API_KEY out */
  bool no_endpoint;   /* leave --endpoint out */
  const char *stdin_path;
} run_opts;

typedef struct run_result {
  int status; /* exit status, or -1 when brume did not exit normally */
  char *out;
  size_t out_len;
  char *err;
} run_result;

static void free_result(run_result *r) {
  free(r->out);
  free(r->err);
}

static char *write_file(const char *name, const void *data, size_t len) {
  char *path = brume_xasprintf("%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fwrite(data, 1, len, f);
  fclose(f);
  return path;
}

/* Runs brume --endpoint <fake> <words...> and collects its exit status, stdout and stderr. */
#define RUN(opts, ...) run(opts, (const char *[]){__VA_ARGS__, NULL})

static run_result run(const run_opts *o, const char **words) {
  static const run_opts none;
  if (o == NULL) o = &none;
  const char *argv[64];
  size_t n = 0;
  argv[n++] = brume_bin;
  if (!o->no_endpoint) {
    argv[n++] = "--endpoint";
    argv[n++] = endpoint;
  }
  for (size_t i = 0; words[i]; i++) argv[n++] = words[i];
  argv[n] = NULL;
  brume_autofree char *home = brume_xasprintf("HOME=%s", dir);
  const char *envp[16];
  size_t e = 0;
  envp[e++] = home;
  if (!o->no_key) envp[e++] = "BRUME_API_KEY=" TEST_KEY;
  for (size_t i = 0; i < 8 && o->env[i]; i++) envp[e++] = o->env[i];
  envp[e] = NULL;

  brume_autofree char *out_path = brume_xasprintf("%s/stdout", dir);
  brume_autofree char *err_path = brume_xasprintf("%s/stderr", dir);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, o->stdin_path ? o->stdin_path : "/dev/null", O_RDONLY,
                                   0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid;
  /* posix_spawn, not fork: gRPC's threads are running in this process. */
  int rc = posix_spawn(&pid, brume_bin, &fa, NULL, (char **)argv, (char **)envp);
  posix_spawn_file_actions_destroy(&fa);
  assert_int_equal(rc, 0);
  int ws;
  assert_int_equal(waitpid(pid, &ws, 0), pid);
  run_result r = {.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1};
  size_t len;
  r.out = (char *)brume_test_read_file(out_path, &r.out_len);
  r.err = (char *)brume_test_read_file(err_path, &len);
  assert_non_null(r.out);
  assert_non_null(r.err);
  return r;
}

#define assert_contains(hay, needle)                                                   \
  do {                                                                                 \
    if (strstr((hay), (needle)) == NULL) fail_msg("'%s' lacks '%s'", (hay), (needle)); \
  } while (0)

static size_t count_lines_with(const char *text, const char *needle) {
  size_t n = 0;
  for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
}

/* ---- invoke ---- */

static void test_invoke_retries_throttles(void **state) {
  (void)state;
  fail_next(BRUME_CLI_INVOKE, 2, BRUME_RESOURCE_EXHAUSTED,
            "ReservedFunctionConcurrentInvocationLimitExceeded: hello has 0 reserved");
  long long t0 = brume_test_now_ms();
  run_result r = RUN(NULL, "invoke", "hello", "--qualifier", "live", "--payload", "{\"x\":1}");
  long long took = brume_test_now_ms() - t0;
  assert_int_equal(r.status, 0);
  assert_string_equal(r.out, "{\"answer\":42}");
  assert_int_equal(count_lines_with(r.err, "throttled (ReservedFunctionConcurrentInvocation"), 2);
  assert_contains(r.err,
                  "brume: invoke hello: throttled (ReservedFunctionConcurrentInvocation"
                  "LimitExceeded: hello has 0 reserved); retry 1 of 5 in ");
  assert_contains(r.err, "retry 2 of 5 in ");
  assert_int_equal(n_calls(), 3);
  for (size_t i = 0; i < 3; i++) {
    const recorded *c = call_at(i, BRUME_CLI_INVOKE);
    const Brume__InvokeRequest *q = (const Brume__InvokeRequest *)c->request;
    assert_string_equal(q->function_name, "hello");
    assert_string_equal(q->qualifier, "live");
    assert_int_equal(q->payload.len, 7);
    assert_memory_equal(q->payload.data, "{\"x\":1}", 7);
    assert_int_equal(q->invocation_type, BRUME__INVOCATION_TYPE__INVOCATION_TYPE_REQUEST_RESPONSE);
    assert_int_equal(q->log_type, BRUME__LOG_TYPE__LOG_TYPE_NONE);
    assert_string_equal(c->api_key, TEST_KEY);
    assert_null(c->request_id); /* none given: the frontend makes one up */
  }
  /* Two retries wait at most 100 + 200 ms (full jitter below the ceilings). */
  assert_true(took < 5000);
  assert_null(strstr(r.err, TEST_KEY));
  free_result(&r);
}

static void test_invoke_no_retry(void **state) {
  (void)state;
  fail_next(BRUME_CLI_INVOKE, 1, BRUME_RESOURCE_EXHAUSTED,
            "ConcurrentInvocationLimitExceeded: account a1 is at its limit");
  run_result r = RUN(NULL, "invoke", "hello", "--no-retry");
  assert_int_equal(r.status, 1);
  assert_string_equal(r.out, "");
  assert_contains(r.err,
                  "brume: invoke hello: RESOURCE_EXHAUSTED: "
                  "ConcurrentInvocationLimitExceeded: account a1 is at its limit\n");
  assert_contains(r.err, "brume: hint: throttled");
  assert_null(strstr(r.err, "retry 1 of"));
  assert_int_equal(n_calls(), 1);
  free_result(&r);

  /* --max-retries 2 against endless throttling: three calls, then the error. */
  reset_fake();
  fail_next(BRUME_CLI_INVOKE, 100, BRUME_RESOURCE_EXHAUSTED, "ConcurrencyScalingRateExceeded: x");
  r = RUN(NULL, "invoke", "hello", "--max-retries", "2");
  assert_int_equal(r.status, 1);
  assert_int_equal(n_calls(), 3);
  assert_int_equal(count_lines_with(r.err, "; retry "), 2);
  assert_contains(r.err, "retry 2 of 2");
  assert_contains(r.err, "RESOURCE_EXHAUSTED: ConcurrencyScalingRateExceeded: x");
  free_result(&r);
}

static void test_invoke_other_codes_not_retried(void **state) {
  (void)state;
  fail_next(BRUME_CLI_INVOKE, 1, BRUME_UNAVAILABLE,
            "InsufficientCapacityException: no host has room");
  run_result r = RUN(NULL, "invoke", "hello");
  assert_int_equal(r.status, 1);
  assert_int_equal(n_calls(), 1);
  assert_contains(r.err,
                  "brume: invoke hello: UNAVAILABLE: InsufficientCapacityException: no "
                  "host has room\n");
  assert_contains(r.err, "brume: hint: is brume-frontend running at 127.0.0.1:");
  free_result(&r);

  reset_fake();
  fail_next(BRUME_CLI_INVOKE, 1, BRUME_UNAUTHENTICATED,
            "UnrecognizedClientException: unknown API key");
  r = RUN(NULL, "invoke", "hello");
  assert_int_equal(r.status, 1);
  assert_int_equal(n_calls(), 1);
  assert_contains(r.err, "UNAUTHENTICATED: UnrecognizedClientException: unknown API key");
  assert_contains(r.err, "brume: hint: check --api-key or BRUME_API_KEY");
  assert_null(strstr(r.err, TEST_KEY));
  free_result(&r);
}

static void test_invoke_function_error(void **state) {
  (void)state;
  fake.function_error = true;
  run_result r = RUN(NULL, "invoke", "hello");
  assert_int_equal(r.status, 1);
  assert_string_equal(r.out,
                      "{\"errorType\":\"Runtime.ExitError\",\"errorMessage\":\"exit status 3\"}");
  assert_contains(r.err,
                  "brume: invoke hello: function error (Unhandled): Runtime.ExitError: "
                  "exit status 3\n");
  free_result(&r);
}

static void test_invoke_json_log_tail_request_id(void **state) {
  (void)state;
  run_result r = RUN(NULL, "--json", "invoke", "hello", "--log-tail", "--request-id", "req-77");
  assert_int_equal(r.status, 0);
  json_error_t e;
  brume_autoptr(json_t) j = json_loads(r.out, 0, &e);
  if (j == NULL) fail_msg("not JSON: %s", r.out);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "payload"), "answer")),
                   42);
  assert_string_equal(json_string_value(json_object_get(j, "log_tail")), "START\nhello log\nE");
  assert_string_equal(json_string_value(json_object_get(j, "request_id")), "req-77");
  assert_string_equal(json_string_value(json_object_get(j, "executed_version")), "$LATEST");
  assert_int_equal(json_integer_value(json_object_get(j, "status_code")), 200);
  const recorded *c = call_at(0, BRUME_CLI_INVOKE);
  assert_int_equal(((const Brume__InvokeRequest *)c->request)->log_type,
                   BRUME__LOG_TYPE__LOG_TYPE_TAIL);
  assert_string_equal(c->request_id, "req-77");
  free_result(&r);

  /* Text: the payload on stdout, the log tail on stderr. */
  reset_fake();
  r = RUN(NULL, "invoke", "hello", "--log-tail");
  assert_int_equal(r.status, 0);
  assert_string_equal(r.out, "{\"answer\":42}");
  assert_string_equal(r.err, "START\nhello log\nE\n");
  free_result(&r);

  /* A dry run: 204 and nothing on stdout. */
  reset_fake();
  r = RUN(NULL, "invoke", "hello", "--dry-run");
  assert_int_equal(r.status, 0);
  assert_string_equal(r.out, "");
  assert_contains(r.err, "dry run passed (status 204)");
  assert_int_equal(
      ((const Brume__InvokeRequest *)call_at(0, BRUME_CLI_INVOKE)->request)->invocation_type,
      BRUME__INVOCATION_TYPE__INVOCATION_TYPE_DRY_RUN);
  free_result(&r);
}

static void test_invoke_payload_sources(void **state) {
  (void)state;
  brume_autofree char *file = write_file("event.json", "{\"from\":\"file\"}\n", 16);
  brume_autofree char *at = brume_xasprintf("@%s", file);
  run_result r = RUN(NULL, "invoke", "hello", "--payload", at);
  assert_int_equal(r.status, 0);
  const Brume__InvokeRequest *q =
      (const Brume__InvokeRequest *)call_at(0, BRUME_CLI_INVOKE)->request;
  assert_int_equal(q->payload.len, 16);
  assert_memory_equal(q->payload.data, "{\"from\":\"file\"}\n", 16);
  free_result(&r);

  reset_fake();
  run_opts o = {.stdin_path = file};
  r = RUN(&o, "invoke", "hello", "--payload", "-");
  assert_int_equal(r.status, 0);
  q = (const Brume__InvokeRequest *)call_at(0, BRUME_CLI_INVOKE)->request;
  assert_int_equal(q->payload.len, 16);
  free_result(&r);

  reset_fake();
  r = RUN(NULL, "invoke", "hello", "--payload", "@/nonexistent/event.json");
  assert_int_equal(r.status, 2);
  assert_contains(r.err, "brume invoke: --payload: cannot read /nonexistent/event.json");
  assert_int_equal(n_calls(), 0);
  free_result(&r);
}

/* --async --batch FILE: one event a line (blank ones skipped), 100 a call, each one's id or
 * error printed, exit 1 when one was refused; --batch without --async makes no call. */
static void test_invoke_batch(void **state) {
  (void)state;
  brume_strbuf lines = {0};
  for (int i = 0; i < 250; i++) {
    if (i == 7)
      brume_strbuf_printf(&lines, "\n"); /* skipped */
    else if (i == 120)
      brume_strbuf_printf(&lines, "bad-%d\r\n", i);
    else
      brume_strbuf_printf(&lines, "e%d\n", i);
  }
  brume_autofree char *file = write_file("events.txt", lines.s, lines.len);
  brume_strbuf_clear(&lines);
  run_result r = RUN(NULL, "invoke", "hello", "--async", "--batch", file);
  assert_int_equal(r.status, 1);
  assert_int_equal(n_calls(), 3);
  const Brume__InvokeEventsRequest *q =
      (const Brume__InvokeEventsRequest *)call_at(0, BRUME_CLI_INVOKE_EVENTS)->request;
  assert_string_equal(q->function_name, "hello");
  assert_int_equal(q->n_entries, 100);
  assert_int_equal(q->entries[0]->payload.len, 2);
  assert_memory_equal(q->entries[0]->payload.data, "e0", 2);
  assert_memory_equal(q->entries[7]->payload.data, "e8", 2); /* the blank line skipped */
  q = (const Brume__InvokeEventsRequest *)call_at(1, BRUME_CLI_INVOKE_EVENTS)->request;
  assert_int_equal(q->n_entries, 100);
  assert_int_equal(q->entries[19]->payload.len, 7); /* "bad-120", its \r dropped */
  q = (const Brume__InvokeEventsRequest *)call_at(2, BRUME_CLI_INVOKE_EVENTS)->request;
  assert_int_equal(q->n_entries, 49);
  assert_contains(r.out, "evt-e0");
  assert_contains(r.out, "evt-e249");
  assert_contains(r.out, "INVALID_ARGUMENT: RequestTooLargeException: too big");
  assert_contains(r.err, "248 of 249 events queued");
  free_result(&r);

  reset_fake();
  r = RUN(NULL, "invoke", "hello", "--batch", file);
  assert_int_equal(r.status, 2);
  assert_contains(r.err, "--batch needs --async");
  assert_int_equal(n_calls(), 0);
  free_result(&r);
}

/* ---- management ---- */

static void test_function_create(void **state) {
  (void)state;
  brume_autofree char *zip = write_file("code.zip", "PK\3\4zipdata", 11);
  run_result r =
      RUN(NULL, "function", "create", "hello", "--zip", zip, "--handler", "run.sh",
          "--handler-mode", "exec", "--memory", "256", "--timeout", "1m30s", "--ephemeral-storage",
          "1GiB", "--env", "A=1", "--env", "B=x=y", "--description", "my function", "--publish");
  assert_int_equal(r.status, 0);
  const Brume__CreateFunctionRequest *q =
      (const Brume__CreateFunctionRequest *)call_at(0, BRUME_CLI_CREATE_FUNCTION)->request;
  assert_string_equal(q->function_name, "hello");
  assert_int_equal(q->zip_file.len, 11);
  assert_memory_equal(q->zip_file.data, "PK\3\4zipdata", 11);
  assert_string_equal(q->handler, "run.sh");
  assert_int_equal(q->handler_mode, BRUME__HANDLER_MODE__HANDLER_MODE_EXEC);
  assert_int_equal(q->memory_size_mib, 256);
  assert_int_equal(q->timeout_ms, 90000);
  assert_int_equal(q->ephemeral_storage_mib, 1024);
  assert_non_null(q->environment);
  assert_int_equal(q->environment->n_variables, 2);
  /* A map's entries may come in any order. */
  for (size_t i = 0; i < 2; i++) {
    const Brume__Environment__VariablesEntry *v = q->environment->variables[i];
    assert_string_equal(v->value, strcmp(v->key, "A") == 0 ? "1" : "x=y");
  }
  assert_string_equal(q->description, "my function");
  assert_true(q->publish);
  assert_contains(r.out, "function_name:         hello\n");
  assert_contains(r.out, "version:               1\n");
  assert_contains(r.out, "last_modified_unix_ms: 1700000000000 (2023-11-14T22:13:20.000Z)\n");
  assert_null(strstr(r.out, TEST_KEY));
  assert_null(strstr(r.err, TEST_KEY));
  free_result(&r);

  /* The defaults: handler "bootstrap", no environment message, zeros for the server's defaults. */
  reset_fake();
  r = RUN(NULL, "function", "create", "hello", "--zip", zip);
  assert_int_equal(r.status, 0);
  q = (const Brume__CreateFunctionRequest *)call_at(0, BRUME_CLI_CREATE_FUNCTION)->request;
  assert_string_equal(q->handler, "bootstrap");
  assert_int_equal(q->handler_mode, BRUME__HANDLER_MODE__HANDLER_MODE_UNSPECIFIED);
  assert_int_equal(q->memory_size_mib, 0);
  assert_int_equal(q->timeout_ms, 0);
  assert_null(q->environment);
  assert_false(q->publish);
  free_result(&r);
}

static void test_usage_errors_make_no_call(void **state) {
  (void)state;
  brume_autofree char *zip = write_file("code2.zip", "PK", 2);
  static const struct {
    const char *args[12];
    const char *msg;
  } cases[] = {
      {{"function", "create", "f", "--zip", "ZIP", "--memory", "lots"},
       "brume function create: --memory: 'lots' is not a size in MiB"},
      {{"function", "create", "f", "--zip", "ZIP", "--timeout", "30"},
       "brume function create: --timeout: '30' needs a unit"},
      {{"function", "create", "f", "--zip", "ZIP", "--env", "NOEQUALS"},
       "--env: 'NOEQUALS' is not NAME=VALUE"},
      {{"function", "create", "f", "--zip", "ZIP", "--env", "A=1", "--env", "A=2"},
       "--env: A is given twice"},
      {{"function", "create", "f"}, "brume function create: --zip FILE is required"},
      {{"function", "create", "f", "--zip", "/nonexistent.zip"}, "cannot read /nonexistent.zip"},
      {{"function", "update-config", "f"}, "nothing to change"},
      {{"alias", "create", "f", "live", "--version", "1", "--routing", "2=2"},
       "--routing: weight '2' is not a number from 0 to 1"},
      {{"alias", "update", "f", "live", "--routing", "2=0.5", "--no-routing"},
       "--routing and --no-routing exclude each other"},
      {{"keys", "create", "acct", "--scopes", "invoke,root"}, "'root' is not a scope"},
      {{"concurrency", "put", "f", "many"}, "N: 'many' is not a whole number"},
      {{"invoke", "f", "--max-retries", "x"}, "--max-retries: 'x' is not a whole number"},
      {{"nosuch"}, "brume: unknown command 'nosuch'"},
      {{"function", "get"}, "brume function get: missing arguments"},
      {{"--timeout-ms", "0", "function", "list"}, "brume: --timeout-ms: 0 is out of range"},
  };
  for (size_t i = 0; i < BRUME_ARRAY_LEN(cases); i++) {
    const char *argv[16];
    size_t n = 0;
    argv[n++] = brume_bin;
    argv[n++] = "--endpoint";
    argv[n++] = endpoint;
    for (size_t k = 0; cases[i].args[k]; k++)
      argv[n++] = strcmp(cases[i].args[k], "ZIP") == 0 ? zip : cases[i].args[k];
    argv[n] = NULL;
    run_result r = run(NULL, argv + 3);
    if (r.status != 2) fail_msg("case %zu: status %d, stderr: %s", i, r.status, r.err);
    assert_contains(r.err, cases[i].msg);
    assert_string_equal(r.out, "");
    free_result(&r);
  }
  assert_int_equal(n_calls(), 0);
}

static void test_update_config(void **state) {
  (void)state;
  run_result r = RUN(NULL, "function", "update-config", "hello", "--description", "", "--no-env",
                     "--timeout", "900000ms", "--revision-id", "rev-9");
  assert_int_equal(r.status, 0);
  const Brume__UpdateFunctionConfigurationRequest *q =
      (const Brume__UpdateFunctionConfigurationRequest *)call_at(
          0, BRUME_CLI_UPDATE_FUNCTION_CONFIGURATION)
          ->request;
  assert_string_equal(q->function_name, "hello");
  assert_true(q->clear_description);
  assert_non_null(q->environment); /* present and empty: no variables */
  assert_int_equal(q->environment->n_variables, 0);
  assert_int_equal(q->timeout_ms, 900000);
  assert_int_equal(q->memory_size_mib, 0); /* unchanged */
  assert_string_equal(q->handler, "");
  assert_string_equal(q->revision_id, "rev-9");
  free_result(&r);

  reset_fake();
  r = RUN(NULL, "function", "update-config", "hello", "--memory", "512");
  assert_int_equal(r.status, 0);
  q = (const Brume__UpdateFunctionConfigurationRequest *)call_at(
          0, BRUME_CLI_UPDATE_FUNCTION_CONFIGURATION)
          ->request;
  assert_int_equal(q->memory_size_mib, 512);
  assert_false(q->clear_description);
  assert_null(q->environment); /* unchanged */
  free_result(&r);
}

static void test_function_list_pages(void **state) {
  (void)state;
  run_result r = RUN(NULL, "function", "list");
  assert_int_equal(r.status, 0);
  assert_int_equal(n_calls(), 2);
  const Brume__ListFunctionsRequest *q0 =
      (const Brume__ListFunctionsRequest *)call_at(0, BRUME_CLI_LIST_FUNCTIONS)->request;
  const Brume__ListFunctionsRequest *q1 =
      (const Brume__ListFunctionsRequest *)call_at(1, BRUME_CLI_LIST_FUNCTIONS)->request;
  assert_string_equal(q0->marker, "");
  assert_string_equal(q1->marker, "2");
  assert_int_equal(q0->max_items, 50);
  assert_contains(r.out, "NAME   MODE         MEMORY_MIB");
  assert_contains(r.out, "\nalpha  runtime-api  128 ");
  assert_contains(r.out, "\ngamma  ");
  assert_int_equal(count_lines_with(r.out, "\n"), 4); /* header and three rows */
  free_result(&r);

  reset_fake();
  r = RUN(NULL, "function", "list", "--max-items", "1", "--json");
  assert_int_equal(r.status, 0);
  assert_int_equal(n_calls(), 1);
  assert_int_equal(
      ((const Brume__ListFunctionsRequest *)call_at(0, BRUME_CLI_LIST_FUNCTIONS)->request)
          ->max_items,
      1);
  json_error_t e;
  brume_autoptr(json_t) j = json_loads(r.out, 0, &e);
  assert_true(json_is_array(j));
  assert_int_equal(json_array_size(j), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "function_name")),
                      "alpha");
  free_result(&r);
}

static void test_get_and_errors(void **state) {
  (void)state;
  run_result r = RUN(NULL, "function", "get", "hello", "--qualifier", "3");
  assert_int_equal(r.status, 0);
  const Brume__GetFunctionRequest *q =
      (const Brume__GetFunctionRequest *)call_at(0, BRUME_CLI_GET_FUNCTION)->request;
  assert_string_equal(q->qualifier, "3");
  assert_contains(r.out, "configuration:\n  function_name:         hello\n");
  assert_contains(r.out, "code_url:                       http://127.0.0.1:9040/code/ab12\n");
  assert_contains(r.out, "reserved_concurrent_executions: 5\n");
  free_result(&r);

  reset_fake();
  fail_next(BRUME_CLI_GET_FUNCTION, 1, BRUME_NOT_FOUND,
            "ResourceNotFoundException: function nope (account a1) not found");
  r = RUN(NULL, "function", "get", "nope");
  assert_int_equal(r.status, 1);
  assert_string_equal(r.out, "");
  assert_string_equal(r.err,
                      "brume: get function nope: NOT_FOUND: ResourceNotFoundException: "
                      "function nope (account a1) not found\n");
  free_result(&r);

  /* No key anywhere: sent without one, and the hint says so. */
  reset_fake();
  fail_next(BRUME_CLI_GET_FUNCTION, 1, BRUME_UNAUTHENTICATED,
            "UnrecognizedClientException: no API key");
  run_opts o = {.no_key = true};
  r = RUN(&o, "function", "get", "hello");
  assert_int_equal(r.status, 1);
  assert_null(call_at(0, BRUME_CLI_GET_FUNCTION)->api_key);
  assert_contains(r.err, "brume: hint: no API key was given");
  free_result(&r);

  /* Nobody listening. */
  int port = brume_test_free_port();
  char closed[32];
  snprintf(closed, sizeof(closed), "127.0.0.1:%d", port);
  o = (run_opts){.no_endpoint = true};
  r = RUN(&o, "--endpoint", closed, "function", "get", "hello");
  assert_int_equal(r.status, 1);
  assert_contains(r.err, "brume: get function hello: UNAVAILABLE: ");
  brume_autofree char *hint =
      brume_xasprintf("brume: hint: is brume-frontend running at %s?", closed);
  assert_contains(r.err, hint);
  free_result(&r);
}

static void test_key_sources(void **state) {
  (void)state;
  brume_autofree char *key_file = write_file("api.key", "brume_from_file_key\n", 20);
  brume_autofree char *flag = brume_xasprintf("--api-key-file=%s", key_file);
  run_result r = RUN(NULL, "function", "get", "hello", flag);
  assert_int_equal(r.status, 0);
  assert_string_equal(call_at(0, BRUME_CLI_GET_FUNCTION)->api_key, "brume_from_file_key");
  free_result(&r);

  /* The config file: endpoint and key file, no flags, no environment. */
  reset_fake();
  brume_autofree char *conf_text =
      brume_xasprintf("endpoint = %s\napi_key_file = %s\n", endpoint, key_file);
  brume_autofree char *conf = write_file("brume.conf", conf_text, strlen(conf_text));
  brume_autofree char *conf_env = brume_xasprintf("BRUME_CONFIG=%s", conf);
  run_opts o = {.env = {conf_env}, .no_key = true, .no_endpoint = true};
  r = RUN(&o, "function", "get", "hello");
  assert_int_equal(r.status, 0);
  assert_string_equal(call_at(0, BRUME_CLI_GET_FUNCTION)->api_key, "brume_from_file_key");
  free_result(&r);

  /* BRUME_API_KEY beats the file's key file. */
  reset_fake();
  o.no_key = false;
  r = RUN(&o, "function", "get", "hello");
  assert_int_equal(r.status, 0);
  assert_string_equal(call_at(0, BRUME_CLI_GET_FUNCTION)->api_key, TEST_KEY);
  free_result(&r);
}

static void test_alias_routing(void **state) {
  (void)state;
  run_result r = RUN(NULL, "alias", "create", "hello", "live", "--version", "1", "--routing",
                     "2=0.25", "--description", "prod");
  assert_int_equal(r.status, 0);
  const Brume__CreateAliasRequest *c =
      (const Brume__CreateAliasRequest *)call_at(0, BRUME_CLI_CREATE_ALIAS)->request;
  assert_string_equal(c->function_name, "hello");
  assert_string_equal(c->name, "live");
  assert_string_equal(c->function_version, "1");
  assert_string_equal(c->description, "prod");
  assert_non_null(c->routing_config);
  assert_string_equal(c->routing_config->additional_version, "2");
  assert_true(c->routing_config->additional_version_weight == 0.25);
  assert_contains(r.out, "routing_config:\n  additional_version:        2\n");
  free_result(&r);

  reset_fake();
  r = RUN(NULL, "alias", "update", "hello", "live", "--no-routing");
  assert_int_equal(r.status, 0);
  const Brume__UpdateAliasRequest *u =
      (const Brume__UpdateAliasRequest *)call_at(0, BRUME_CLI_UPDATE_ALIAS)->request;
  assert_non_null(u->routing_config); /* present with no version: routing removed */
  assert_string_equal(u->routing_config->additional_version, "");
  assert_string_equal(u->function_version, "");
  free_result(&r);

  reset_fake();
  r = RUN(NULL, "alias", "update", "hello", "live", "--version", "3");
  assert_int_equal(r.status, 0);
  u = (const Brume__UpdateAliasRequest *)call_at(0, BRUME_CLI_UPDATE_ALIAS)->request;
  assert_null(u->routing_config); /* unchanged */
  assert_string_equal(u->function_version, "3");
  free_result(&r);
}

static void test_concurrency(void **state) {
  (void)state;
  run_result r = RUN(NULL, "concurrency", "put", "hello", "0");
  assert_int_equal(r.status, 0);
  assert_int_equal(
      ((const Brume__PutFunctionConcurrencyRequest *)call_at(0, BRUME_CLI_PUT_FUNCTION_CONCURRENCY)
           ->request)
          ->reserved_concurrent_executions,
      0);
  assert_string_equal(r.out, "reserved_concurrent_executions: 0\n");
  free_result(&r);

  reset_fake();
  r = RUN(NULL, "concurrency", "get", "hello", "--json");
  assert_int_equal(r.status, 0);
  assert_string_equal(r.out, "{\n  \"reserved_concurrent_executions\": null\n}\n");
  free_result(&r);

  reset_fake();
  r = RUN(NULL, "provisioned", "put", "hello", "live", "4");
  assert_int_equal(r.status, 0);
  const Brume__PutProvisionedConcurrencyConfigRequest *p =
      (const Brume__PutProvisionedConcurrencyConfigRequest *)call_at(
          0, BRUME_CLI_PUT_PROVISIONED_CONCURRENCY_CONFIG)
          ->request;
  assert_string_equal(p->qualifier, "live");
  assert_int_equal(p->provisioned_concurrent_executions, 4);
  assert_contains(r.out, "status:                                      IN_PROGRESS\n");
  free_result(&r);

  reset_fake();
  r = RUN(NULL, "function", "delete", "hello", "--qualifier", "2");
  assert_int_equal(r.status, 0);
  assert_string_equal(
      ((const Brume__DeleteFunctionRequest *)call_at(0, BRUME_CLI_DELETE_FUNCTION)->request)
          ->qualifier,
      "2");
  assert_string_equal(r.out, "Deleted version 2 of function hello.\n");
  free_result(&r);
}

static void test_keys_create(void **state) {
  (void)state;
  run_result r =
      RUN(NULL, "keys", "create", "acct-1", "--scopes", "invoke,manage", "--description", "ci");
  assert_int_equal(r.status, 0);
  const Brume__CreateApiKeyRequest *q =
      (const Brume__CreateApiKeyRequest *)call_at(0, BRUME_CLI_CREATE_API_KEY)->request;
  assert_string_equal(q->account_id, "acct-1");
  assert_int_equal(q->n_scopes, 2);
  assert_string_equal(q->scopes[0], "invoke");
  assert_string_equal(q->scopes[1], "manage");
  assert_string_equal(q->description, "ci");
  assert_contains(r.out, "api_key:         " NEW_KEY "\n");
  assert_contains(r.out, "scopes:          invoke,manage\n");
  assert_contains(r.err, "only time the API key is shown");
  assert_null(strstr(r.out, TEST_KEY)); /* the caller's own key, never */
  free_result(&r);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PATH-TO-brume\n", argv[0]);
    return 2;
  }
  brume_bin = argv[1];
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_invoke_retries_throttles, before_each),
      cmocka_unit_test_setup(test_invoke_no_retry, before_each),
      cmocka_unit_test_setup(test_invoke_other_codes_not_retried, before_each),
      cmocka_unit_test_setup(test_invoke_function_error, before_each),
      cmocka_unit_test_setup(test_invoke_json_log_tail_request_id, before_each),
      cmocka_unit_test_setup(test_invoke_payload_sources, before_each),
      cmocka_unit_test_setup(test_invoke_batch, before_each),
      cmocka_unit_test_setup(test_function_create, before_each),
      cmocka_unit_test_setup(test_usage_errors_make_no_call, before_each),
      cmocka_unit_test_setup(test_update_config, before_each),
      cmocka_unit_test_setup(test_function_list_pages, before_each),
      cmocka_unit_test_setup(test_get_and_errors, before_each),
      cmocka_unit_test_setup(test_key_sources, before_each),
      cmocka_unit_test_setup(test_alias_routing, before_each),
      cmocka_unit_test_setup(test_concurrency, before_each),
      cmocka_unit_test_setup(test_keys_create, before_each),
  };
  return cmocka_run_group_tests(tests, start_fake, stop_fake);
}
