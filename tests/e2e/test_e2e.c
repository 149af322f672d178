/* Brume end to end: every daemon its own process (a real etcd, one brume-worker running real
 * microVMs, brume-placement, brume-counting, brume-frontend), driven only through the Frontend
 * gRPC API with API keys, as a client would.
 *
 *   test_e2e GUEST_DIR BRUME_INIT ECHO_RUNTIME_STATIC BRUME_WORKER BRUME_PLACEMENT BRUME_COUNTING
 *            BRUME_FRONTEND
 *
 * In order: create -> invoke answers right, the second invoke is warm (flag, no init, shorter),
 * a function error is a function error and not an RPC failure; versions 1 and 2 behind alias
 * live (10 % to 2): 1,000 invocations land 10 % +- 3 % on 2 and report the version each time;
 * reserved concurrency 5 with 20 concurrent slow invocations: 5 run, 15 are throttled with
 * ReservedFunctionConcurrentInvocationLimitExceeded; provisioned concurrency 2 on a version
 * becomes READY with 2 sandboxes and the version's first invocation is warm; authentication and
 * authorisation (no key, a wrong key, another account's key, a key without manage, a revoked key),
 * each refused with its status and audited; bad input (unknown function, invalid name, a 7 MiB
 * payload, a zip that is no zip, memory out of range), each a precise error with nothing
 * half-created, and the daemons still serving; a cold start that outlasts its token's hold gets
 * a new token before it runs. The function is the echo runtime
 * (tests/guest_init/echo_runtime.c). Exit 77 (skip) when not root, libvirtd does not answer, etcd
 * is absent or the guest image cannot be built. */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "brume/frontend.pb-c.h"
#include "cluster_fixture.h"
#include "etcd.h"
#include "log.h"
#include "testutil.h"

#define ACCOUNT_A "acct-a"
#define ACCOUNT_B "acct-b"

static brume_test_cluster *c;
static char admin_key[160], key_a[160], key_invoke_only[160], key_b[160];

/* ---- calls ---- */

/* A Frontend call with key (NULL: none). 0, or -1 with err. */
static int fe(const char *method, const char *key, const void *req, void *reply, brume_err **err) {
  return brume_test_cluster_frontend_call(c, method, key, "test-e2e", req, reply, err);
}

/* The server's message in a client's error: after the "<target> /brume.Frontend/<Method>: "
 * the rpc client puts first. */
static const char *server_msg(const brume_err *err) {
  const char *m = strstr(err->msg, "/brume.Frontend/");
  const char *colon = m ? strstr(m, ": ") : NULL;
  return colon ? colon + 2 : err->msg;
}

/* Asserts that err is code with a server message starting with reason. */
static void assert_err(brume_err *err, brume_status code, const char *reason) {
  if (err == NULL) fail_msg("the call succeeded; expected %s %s", brume_status_name(code), reason);
  if (err->code != code || strncmp(server_msg(err), reason, strlen(reason)) != 0)
    fail_msg("expected %s \"%s...\", got %s \"%s\"", brume_status_name(code), reason,
             brume_status_name(err->code), err->msg);
}

static Brume__InvokeResponse *invoke(const char *key, const char *fn, const char *qualifier,
                                     const char *payload, brume_err **err) {
  Brume__InvokeRequest req = BRUME__INVOKE_REQUEST__INIT;
  req.function_name = (char *)fn;
  req.qualifier = (char *)(qualifier ? qualifier : "");
  req.payload.data = (uint8_t *)payload;
  req.payload.len = strlen(payload);
  Brume__InvokeResponse *resp = NULL;
  if (fe("Invoke", key, &req, &resp, err) < 0) return NULL;
  return resp;
}

static void free_msg(void *m) {
  if (m) protobuf_c_message_free_unpacked(m, NULL);
}

static bool payload_is(const Brume__InvokeResponse *r, const char *want) {
  return r->payload.len == strlen(want) && memcmp(r->payload.data, want, r->payload.len) == 0;
}

/* Creates fn for key's account from the echo runtime's zip; 0 or -1 with err. */
static int create_echo(const char *key, const char *fn, uint32_t timeout_ms, brume_err **err) {
  return brume_test_cluster_create_echo(c, key, fn, timeout_ms, err);
}

static char *make_key(const char *account, const char *scope1, const char *scope2, char *out,
                      size_t size) {
  Brume__CreateApiKeyRequest req = BRUME__CREATE_API_KEY_REQUEST__INIT;
  char *scopes[] = {(char *)scope1, (char *)scope2};
  req.account_id = (char *)account;
  req.scopes = scopes;
  req.n_scopes = scope2 ? 2 : 1;
  req.description = "test_e2e";
  Brume__CreateApiKeyResponse *resp = NULL;
  brume_err *err = NULL;
  if (fe("CreateApiKey", admin_key, &req, &resp, &err) < 0) fail_msg("CreateApiKey: %s", err->msg);
  snprintf(out, size, "%s", resp->api_key);
  assert_string_equal(resp->key->account_id, account);
  free_msg(resp);
  return out;
}

/* ---- the tests ---- */

static void test_create_invoke_warm(void **state) {
  (void)state;
  brume_err *err = NULL;
  if (create_echo(key_a, "echo", 5000, &err) < 0) fail_msg("CreateFunction: %s", err->msg);

  double t0 = brume_test_mono_ms();
  Brume__InvokeResponse *r = invoke(key_a, "echo", NULL, "hello", &err);
  double cold_ms = brume_test_mono_ms() - t0;
  if (r == NULL) fail_msg("Invoke: %s", err->msg);
  assert_true(payload_is(r, "hello #1"));
  assert_true(r->cold_start);
  assert_true(r->init_duration_us > 0);
  assert_null(r->function_error);
  assert_string_equal(r->executed_version, "$LATEST");
  assert_int_equal(r->status_code, 200);
  assert_int_equal(r->memory_size_mib, 128);
  assert_true(r->request_id[0] != '\0');
  free_msg(r);

  t0 = brume_test_mono_ms();
  r = invoke(key_a, "echo", NULL, "hello", &err);
  double warm_ms = brume_test_mono_ms() - t0;
  if (r == NULL) fail_msg("Invoke: %s", err->msg);
  assert_true(payload_is(r, "hello #2"));
  assert_false(r->cold_start);
  assert_int_equal(r->init_duration_us, 0);
  assert_true(warm_ms < cold_ms);
  free_msg(r);
  printf("# cold invoke %.1f ms, warm invoke %.2f ms\n", cold_ms, warm_ms);

  /* A function error is an answer, not an RPC failure. */
  r = invoke(key_a, "echo", NULL, "fail", &err);
  if (r == NULL) fail_msg("Invoke fail: %s", err->msg);
  assert_non_null(r->function_error);
  assert_int_equal(r->function_error->kind,
                   BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_HANDLED);
  assert_true(r->payload.len > 0);
  free_msg(r);
  /* The sandbox still serves after a handled error. */
  r = invoke(key_a, "echo", NULL, "again", &err);
  if (r == NULL) fail_msg("Invoke: %s", err->msg);
  assert_false(r->cold_start);
  free_msg(r);

  /* The log tail, when asked. */
  Brume__InvokeRequest req = BRUME__INVOKE_REQUEST__INIT;
  req.function_name = "echo";
  req.log_type = BRUME__LOG_TYPE__LOG_TYPE_TAIL;
  req.payload.data = (uint8_t *)"tail";
  req.payload.len = 4;
  if (fe("Invoke", key_a, &req, &r, &err) < 0) fail_msg("Invoke: %s", err->msg);
  assert_non_null(memmem(r->log_tail.data, r->log_tail.len, "got tail", 8));
  free_msg(r);

  /* DryRun checks and runs nothing. */
  req.invocation_type = BRUME__INVOCATION_TYPE__INVOCATION_TYPE_DRY_RUN;
  req.log_type = BRUME__LOG_TYPE__LOG_TYPE_NONE;
  if (fe("Invoke", key_a, &req, &r, &err) < 0) fail_msg("DryRun: %s", err->msg);
  assert_int_equal(r->status_code, 204);
  assert_int_equal(r->payload.len, 0);
  free_msg(r);
}

static char *publish(const char *fn) {
  Brume__PublishVersionRequest req = BRUME__PUBLISH_VERSION_REQUEST__INIT;
  req.function_name = (char *)fn;
  Brume__PublishVersionResponse *resp = NULL;
  brume_err *err = NULL;
  if (fe("PublishVersion", key_a, &req, &resp, &err) < 0) fail_msg("PublishVersion: %s", err->msg);
  char *v = strdup(resp->configuration->version);
  free_msg(resp);
  return v;
}

typedef struct spray {
  const char *fn, *qualifier;
  int n;
  int on_v1, on_v2, other, failed;
} spray;

static void *spray_run(void *arg) {
  spray *s = arg;
  for (int i = 0; i < s->n; i++) {
    brume_err *err = NULL;
    Brume__InvokeResponse *r = invoke(key_a, s->fn, s->qualifier, "w", &err);
    if (r == NULL) {
      fprintf(stderr, "# invoke failed: %s\n", err->msg);
      brume_err_free(err);
      s->failed++;
      continue;
    }
    if (strcmp(r->executed_version, "1") == 0)
      s->on_v1++;
    else if (strcmp(r->executed_version, "2") == 0)
      s->on_v2++;
    else
      s->other++;
    free_msg(r);
  }
  return NULL;
}

static void test_alias_weights(void **state) {
  (void)state;
  brume_err *err = NULL;
  if (create_echo(key_a, "weighted", 5000, &err) < 0) fail_msg("CreateFunction: %s", err->msg);
  char *v1 = publish("weighted");
  assert_string_equal(v1, "1");
  Brume__UpdateFunctionConfigurationRequest up = BRUME__UPDATE_FUNCTION_CONFIGURATION_REQUEST__INIT;
  up.function_name = "weighted";
  up.timeout_ms = 6000;
  Brume__UpdateFunctionConfigurationResponse *upr = NULL;
  if (fe("UpdateFunctionConfiguration", key_a, &up, &upr, &err) < 0)
    fail_msg("UpdateFunctionConfiguration: %s", err->msg);
  free_msg(upr);
  char *v2 = publish("weighted");
  assert_string_equal(v2, "2");
  free(v1);
  free(v2);

  Brume__AliasRoutingConfig routing = BRUME__ALIAS_ROUTING_CONFIG__INIT;
  routing.additional_version = "2";
  routing.additional_version_weight = 0.1;
  Brume__CreateAliasRequest ar = BRUME__CREATE_ALIAS_REQUEST__INIT;
  ar.function_name = "weighted";
  ar.name = "live";
  ar.function_version = "1";
  ar.routing_config = &routing;
  Brume__CreateAliasResponse *arr = NULL;
  if (fe("CreateAlias", key_a, &ar, &arr, &err) < 0) fail_msg("CreateAlias: %s", err->msg);
  free_msg(arr);

  enum { THREADS = 4, EACH = 250 };
  spray s[THREADS];
  pthread_t th[THREADS];
  double t0 = brume_test_mono_ms();
  for (int i = 0; i < THREADS; i++) {
    s[i] = (spray){.fn = "weighted", .qualifier = "live", .n = EACH};
    pthread_create(&th[i], NULL, spray_run, &s[i]);
  }
  int v1n = 0, v2n = 0, other = 0, failed = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(th[i], NULL);
    v1n += s[i].on_v1;
    v2n += s[i].on_v2;
    other += s[i].other;
    failed += s[i].failed;
  }
  printf("# alias live (10 %% to 2): %d on 1, %d on 2, %d other, %d failed in %.0f ms\n", v1n, v2n,
         other, failed, brume_test_mono_ms() - t0);
  assert_int_equal(failed, 0);
  assert_int_equal(other, 0);
  assert_int_equal(v1n + v2n, THREADS * EACH);
  assert_in_range(v2n, 70, 130);
}

typedef struct slow_call {
  pthread_barrier_t *go;
  int ran, throttled, other;
  char other_msg[256];
} slow_call;

static void *slow_run(void *arg) {
  slow_call *s = arg;
  pthread_barrier_wait(s->go);
  brume_err *err = NULL;
  Brume__InvokeResponse *r = invoke(key_a, "slow", NULL, "sleep", &err);
  if (r) {
    /* "sleep" runs past the function's timeout: Sandbox.Timedout, an answer. */
    if (r->function_error && strcmp(r->function_error->type, "Sandbox.Timedout") == 0)
      s->ran = 1;
    else
      s->other = 1;
    free_msg(r);
  } else if (err->code == BRUME_RESOURCE_EXHAUSTED &&
             strncmp(server_msg(err), "ReservedFunctionConcurrentInvocationLimitExceeded: ", 51) ==
                 0) {
    s->throttled = 1;
  } else {
    s->other = 1;
    snprintf(s->other_msg, sizeof(s->other_msg), "%s", err->msg);
  }
  brume_err_free(err);
  return NULL;
}

static void test_reserved_concurrency(void **state) {
  (void)state;
  brume_err *err = NULL;
  if (create_echo(key_a, "slow", 3000, &err) < 0) fail_msg("CreateFunction: %s", err->msg);
  Brume__PutFunctionConcurrencyRequest pr = BRUME__PUT_FUNCTION_CONCURRENCY_REQUEST__INIT;
  pr.function_name = "slow";
  pr.reserved_concurrent_executions = 5;
  Brume__PutFunctionConcurrencyResponse *prr = NULL;
  if (fe("PutFunctionConcurrency", key_a, &pr, &prr, &err) < 0)
    fail_msg("PutFunctionConcurrency: %s", err->msg);
  assert_int_equal(prr->concurrency->reserved_concurrent_executions, 5);
  free_msg(prr);
  /* Counting follows its limits key by a watch: give it a moment to see the new limit. */
  usleep(300 * 1000);

  enum { N = 20 };
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, N);
  slow_call s[N];
  pthread_t th[N];
  for (int i = 0; i < N; i++) {
    s[i] = (slow_call){.go = &go};
    pthread_create(&th[i], NULL, slow_run, &s[i]);
  }
  int ran = 0, throttled = 0, other = 0;
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    ran += s[i].ran;
    throttled += s[i].throttled;
    other += s[i].other;
    if (s[i].other) fprintf(stderr, "# unexpected answer: %s\n", s[i].other_msg);
  }
  pthread_barrier_destroy(&go);
  printf(
      "# reserved concurrency 5, 20 concurrent slow invocations: %d ran, %d throttled, %d "
      "other\n",
      ran, throttled, other);
  assert_int_equal(other, 0);
  assert_int_equal(ran, 5);
  assert_int_equal(throttled, 15);
}

/* The value of etcd key (the cluster's etcd), or NULL when it is absent. */
static char *etcd_value(const char *key) {
  brume_autoptr(brume_etcd) e = brume_etcd_new(c->workers[0]->etcd->endpoint, NULL, NULL);
  assert_non_null(e);
  brume_etcd_kv *kv = NULL;
  assert_int_equal(brume_etcd_get(e, key, &kv, NULL, NULL), 0);
  char *v = kv ? brume_xstrdup(kv->value) : NULL;
  brume_etcd_kv_free(kv);
  return v;
}

static void test_provisioned(void **state) {
  (void)state;
  brume_err *err = NULL;
  if (create_echo(key_a, "prov", 5000, &err) < 0) fail_msg("CreateFunction: %s", err->msg);
  char *v1 = publish("prov");
  Brume__PutProvisionedConcurrencyConfigRequest put =
      BRUME__PUT_PROVISIONED_CONCURRENCY_CONFIG_REQUEST__INIT;
  put.function_name = "prov";
  put.qualifier = v1;
  put.provisioned_concurrent_executions = 2;
  Brume__PutProvisionedConcurrencyConfigResponse *pr = NULL;
  if (fe("PutProvisionedConcurrencyConfig", key_a, &put, &pr, &err) < 0)
    fail_msg("PutProvisionedConcurrencyConfig: %s", err->msg);
  assert_int_equal(pr->config->requested_provisioned_concurrent_executions, 2);
  int64_t put_ms = pr->config->last_modified_unix_ms;
  assert_true(put_ms > 0);
  free_msg(pr);
  /* The time is kept beside the count in the function's limits, which counting reads. */
  brume_autofree char *limits = etcd_value("/brume/limits/function/" ACCOUNT_A "/prov");
  assert_non_null(limits);
  char want[128];
  snprintf(want, sizeof(want), "\"provisioned_modified_unix_ms\":{\"%s\":%" PRId64 "}", v1, put_ms);
  assert_non_null(strstr(limits, want));

  /* Placement starts the sandboxes within its reconcile interval (5 s) plus two cold starts. */
  Brume__GetProvisionedConcurrencyConfigRequest get =
      BRUME__GET_PROVISIONED_CONCURRENCY_CONFIG_REQUEST__INIT;
  get.function_name = "prov";
  get.qualifier = v1;
  Brume__ProvisionedConcurrencyStatus status = 0;
  uint32_t allocated = 0;
  double t0 = brume_test_mono_ms();
  while (brume_test_mono_ms() - t0 < 60000) {
    Brume__GetProvisionedConcurrencyConfigResponse *gr = NULL;
    if (fe("GetProvisionedConcurrencyConfig", key_a, &get, &gr, &err) < 0)
      fail_msg("GetProvisionedConcurrencyConfig: %s", err->msg);
    status = gr->config->status;
    allocated = gr->config->allocated_provisioned_concurrent_executions;
    assert_int_equal(gr->config->last_modified_unix_ms, put_ms); /* the put's, kept in etcd */
    free_msg(gr);
    if (status == BRUME__PROVISIONED_CONCURRENCY_STATUS__PROVISIONED_CONCURRENCY_STATUS_READY)
      break;
    usleep(200 * 1000);
  }
  printf("# provisioned concurrency 2: READY after %.1f s\n", (brume_test_mono_ms() - t0) / 1000);
  assert_int_equal(status,
                   BRUME__PROVISIONED_CONCURRENCY_STATUS__PROVISIONED_CONCURRENCY_STATUS_READY);
  assert_int_equal(allocated, 2);

  /* The version's very first invocation finds a provisioned sandbox: warm. */
  Brume__InvokeResponse *r = invoke(key_a, "prov", v1, "p", &err);
  if (r == NULL) fail_msg("Invoke: %s", err->msg);
  assert_false(r->cold_start);
  assert_string_equal(r->executed_version, v1);
  free_msg(r);

  Brume__DeleteProvisionedConcurrencyConfigRequest del =
      BRUME__DELETE_PROVISIONED_CONCURRENCY_CONFIG_REQUEST__INIT;
  del.function_name = "prov";
  del.qualifier = v1;
  Brume__DeleteProvisionedConcurrencyConfigResponse *dr = NULL;
  if (fe("DeleteProvisionedConcurrencyConfig", key_a, &del, &dr, &err) < 0)
    fail_msg("DeleteProvisionedConcurrencyConfig: %s", err->msg);
  free_msg(dr);
  Brume__GetProvisionedConcurrencyConfigResponse *gr = NULL;
  assert_int_equal(fe("GetProvisionedConcurrencyConfig", key_a, &get, &gr, &err), -1);
  assert_err(err, BRUME_NOT_FOUND, "ResourceNotFoundException");
  brume_err_clear(&err);
  /* Nothing of it is left: the count, the time, and so the key. */
  brume_autofree char *after = etcd_value("/brume/limits/function/" ACCOUNT_A "/prov");
  assert_null(after);
  free(v1);
}

/* The number of audit log lines holding all of the given strings. */
static int audit_lines(const char *a, const char *b, const char *d) {
  char path[700];
  snprintf(path, sizeof(path), "%s/audit.log", c->frontend_dir);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  char line[4096];
  int n = 0;
  while (fgets(line, sizeof(line), f))
    if (strstr(line, a) && (b == NULL || strstr(line, b)) && (d == NULL || strstr(line, d))) n++;
  fclose(f);
  return n;
}

static void test_auth(void **state) {
  (void)state;
  brume_err *err = NULL;
  Brume__GetFunctionRequest g = BRUME__GET_FUNCTION_REQUEST__INIT;
  Brume__GetFunctionResponse *gr = NULL;
  g.function_name = "echo";

  /* No key. */
  assert_int_equal(fe("GetFunction", NULL, &g, &gr, &err), -1);
  assert_err(err, BRUME_UNAUTHENTICATED, "UnrecognizedClientException");
  brume_err_clear(&err);
  /* A well-formed key that does not exist, and a garbled one. */
  const char *wrong =
      "brume_0123456789abcdef_"
      "0000000000000000000000000000000000000000000000000000000000000000";
  assert_int_equal(fe("GetFunction", wrong, &g, &gr, &err), -1);
  assert_err(err, BRUME_UNAUTHENTICATED, "UnrecognizedClientException");
  brume_err_clear(&err);
  /* The right key id with a wrong secret. */
  char forged[160];
  snprintf(forged, sizeof(forged), "%.*s%s", 6 + 16 + 1, key_a,
           "1111111111111111111111111111111111111111111111111111111111111111");
  assert_null(invoke(forged, "echo", NULL, "x", &err));
  assert_err(err, BRUME_UNAUTHENTICATED, "UnrecognizedClientException");
  assert_null(strstr(err->msg, forged + 23));
  brume_err_clear(&err);

  /* Another account's key: account a's function does not exist for it by name, and its ARN is
   * refused. */
  assert_int_equal(fe("GetFunction", key_b, &g, &gr, &err), -1);
  assert_err(err, BRUME_NOT_FOUND, "ResourceNotFoundException");
  brume_err_clear(&err);
  g.function_name = "arn:brume:lambda:local:" ACCOUNT_A ":function:echo";
  assert_int_equal(fe("GetFunction", key_b, &g, &gr, &err), -1);
  assert_err(err, BRUME_PERMISSION_DENIED, "AccessDeniedException");
  brume_err_clear(&err);
  brume_err *ierr = NULL;
  Brume__InvokeResponse *r = invoke(key_b, g.function_name, NULL, "x", &ierr);
  assert_null(r);
  assert_err(ierr, BRUME_PERMISSION_DENIED, "AccessDeniedException");
  brume_err_clear(&ierr);
  /* ... while account a's own key may use the ARN, and the admin key may too. */
  if (fe("GetFunction", key_a, &g, &gr, &err) < 0) fail_msg("GetFunction by ARN: %s", err->msg);
  free_msg(gr);
  if (fe("GetFunction", admin_key, &g, &gr, &err) < 0) fail_msg("admin GetFunction: %s", err->msg);
  free_msg(gr);

  /* A key without the manage scope may invoke, not manage; nor make keys. */
  g.function_name = "echo";
  r = invoke(key_invoke_only, "echo", NULL, "scoped", &err);
  if (r == NULL) fail_msg("Invoke with an invoke key: %s", err->msg);
  free_msg(r);
  assert_int_equal(fe("GetFunction", key_invoke_only, &g, &gr, &err), -1);
  assert_err(err, BRUME_PERMISSION_DENIED, "AccessDeniedException");
  brume_err_clear(&err);
  Brume__DeleteFunctionRequest del = BRUME__DELETE_FUNCTION_REQUEST__INIT;
  del.function_name = "echo";
  Brume__DeleteFunctionResponse *delr = NULL;
  assert_int_equal(fe("DeleteFunction", key_invoke_only, &del, &delr, &err), -1);
  assert_err(err, BRUME_PERMISSION_DENIED, "AccessDeniedException");
  brume_err_clear(&err);
  Brume__CreateApiKeyRequest kr = BRUME__CREATE_API_KEY_REQUEST__INIT;
  char *admin_scope[] = {"admin"};
  kr.account_id = ACCOUNT_A;
  kr.scopes = admin_scope;
  kr.n_scopes = 1;
  Brume__CreateApiKeyResponse *krr = NULL;
  assert_int_equal(fe("CreateApiKey", key_a, &kr, &krr, &err), -1);
  assert_err(err, BRUME_PERMISSION_DENIED, "AccessDeniedException");
  brume_err_clear(&err);

  /* A revoked key is refused at once. */
  char revoked[160];
  make_key(ACCOUNT_A, "invoke", NULL, revoked, sizeof(revoked));
  r = invoke(revoked, "echo", NULL, "before", &err);
  if (r == NULL) fail_msg("Invoke before revocation: %s", err->msg);
  free_msg(r);
  Brume__DeleteApiKeyRequest dk = BRUME__DELETE_API_KEY_REQUEST__INIT;
  char key_id[17];
  snprintf(key_id, sizeof(key_id), "%.16s", revoked + 6);
  dk.key_id = key_id;
  Brume__DeleteApiKeyResponse *dkr = NULL;
  if (fe("DeleteApiKey", admin_key, &dk, &dkr, &err) < 0) fail_msg("DeleteApiKey: %s", err->msg);
  free_msg(dkr);
  assert_null(invoke(revoked, "echo", NULL, "after", &err));
  assert_err(err, BRUME_UNAUTHENTICATED, "UnrecognizedClientException");
  brume_err_clear(&err);

  /* Each refusal is in the audit log, with the key id where there was a valid key, and no
   * secret anywhere. */
  assert_true(audit_lines("\"UNAUTHENTICATED\"", "GetFunction", NULL) >= 2);
  assert_true(audit_lines("\"UNAUTHENTICATED\"", "Invoke", NULL) >= 2);
  char kid_a[40], kid_b[40], kid_io[40];
  snprintf(kid_a, sizeof(kid_a), "\"%.16s\"", key_a + 6);
  snprintf(kid_b, sizeof(kid_b), "\"%.16s\"", key_b + 6);
  snprintf(kid_io, sizeof(kid_io), "\"%.16s\"", key_invoke_only + 6);
  assert_true(audit_lines("\"PERMISSION_DENIED\"", kid_b, "GetFunction") >= 1);
  assert_true(audit_lines("\"PERMISSION_DENIED\"", kid_b, "Invoke") >= 1);
  assert_true(audit_lines("\"PERMISSION_DENIED\"", kid_io, "DeleteFunction") >= 1);
  assert_true(audit_lines("\"PERMISSION_DENIED\"", kid_a, "CreateApiKey") >= 1);
  const char *secrets[] = {key_a + 23, key_b + 23, key_invoke_only + 23, admin_key + 23,
                           revoked + 23};
  for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
    assert_int_equal(audit_lines(secrets[i], NULL, NULL), 0);
}

static void test_bad_input(void **state) {
  (void)state;
  brume_err *err = NULL;
  assert_null(invoke(key_a, "no-such-function", NULL, "x", &err));
  assert_err(err, BRUME_NOT_FOUND, "ResourceNotFoundException");
  brume_err_clear(&err);
  assert_null(invoke(key_a, "bad name!", NULL, "x", &err));
  assert_err(err, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
  brume_err_clear(&err);
  assert_null(invoke(key_a, "echo", "no-such-alias", "x", &err));
  assert_err(err, BRUME_NOT_FOUND, "ResourceNotFoundException");
  brume_err_clear(&err);

  size_t big = 7u << 20;
  char *payload = malloc(big + 1);
  memset(payload, 'a', big);
  payload[big] = '\0';
  assert_null(invoke(key_a, "echo", NULL, payload, &err));
  assert_err(err, BRUME_INVALID_ARGUMENT, "RequestTooLargeException");
  brume_err_clear(&err);
  free(payload);

  Brume__CreateFunctionRequest req = BRUME__CREATE_FUNCTION_REQUEST__INIT;
  req.function_name = "notzip";
  req.handler = "x";
  req.zip_file.data = (uint8_t *)"this is not a zip archive";
  req.zip_file.len = strlen("this is not a zip archive");
  Brume__CreateFunctionResponse *resp = NULL;
  assert_int_equal(fe("CreateFunction", key_a, &req, &resp, &err), -1);
  assert_err(err, BRUME_INVALID_ARGUMENT, "InvalidZipFileException");
  brume_err_clear(&err);
  req.function_name = "bigmem";
  req.zip_file.data = c->workers[0]->zip_data;
  req.zip_file.len = c->workers[0]->zip_len;
  req.memory_size_mib = 64;
  assert_int_equal(fe("CreateFunction", key_a, &req, &resp, &err), -1);
  assert_err(err, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
  assert_non_null(strstr(err->msg, "memory"));
  brume_err_clear(&err);
  req.memory_size_mib = 20000;
  assert_int_equal(fe("CreateFunction", key_a, &req, &resp, &err), -1);
  assert_err(err, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
  brume_err_clear(&err);

  /* Nothing of the refused functions exists. */
  const char *gone[] = {"notzip", "bigmem"};
  for (size_t i = 0; i < 2; i++) {
    Brume__GetFunctionRequest g = BRUME__GET_FUNCTION_REQUEST__INIT;
    g.function_name = (char *)gone[i];
    Brume__GetFunctionResponse *gr = NULL;
    assert_int_equal(fe("GetFunction", key_a, &g, &gr, &err), -1);
    assert_err(err, BRUME_NOT_FOUND, "ResourceNotFoundException");
    brume_err_clear(&err);
  }
  /* A name taken. */
  assert_int_equal(create_echo(key_a, "echo", 5000, &err), -1);
  assert_err(err, BRUME_ALREADY_EXISTS, "ResourceConflictException");
  brume_err_clear(&err);

  /* The daemons still serve. */
  Brume__InvokeResponse *r = invoke(key_a, "echo", NULL, "still", &err);
  if (r == NULL) fail_msg("Invoke after bad input: %s", err->msg);
  assert_null(r->function_error);
  free_msg(r);
}

/* frontend's /metrics series (name{labels}), 0 when absent. */
static long long frontend_metric(const char *series) {
  long long v = brume_test_metric(c->frontend.http_port, series);
  return v < 0 ? 0 : v;
}

/* A cold start that leaves its token too little room for the function's timeout gives the token
 * up for a new one before the function runs: counting takes a token back at its deadline whether
 * or not its invocation still runs, and its room would then be granted twice. With
 * token_hold_margin 0 every cold start is such a one (the token is held for the timeout alone,
 * from the first Acquire); a warm start is not. */
static void test_cold_start_outlasting_its_token(void **state) {
  (void)state;
  static const char *margin0[] = {"--token_hold_margin", "0s", NULL};
  brume_test_cluster_stop_daemon(&c->frontend, SIGTERM);
  if (brume_test_cluster_start_frontend(c, margin0) < 0) fail_msg("frontend restart");
  const char *deadline = "brume_frontend_tokens_reissued_total{reason=\"deadline\"}";
  assert_int_equal(frontend_metric(deadline), 0);

  brume_err *err = NULL;
  if (create_echo(key_a, "tokens", 3000, &err) < 0) fail_msg("CreateFunction: %s", err->msg);
  Brume__InvokeResponse *r = invoke(key_a, "tokens", NULL, "hello", &err);
  if (r == NULL) fail_msg("Invoke: %s", err->msg);
  assert_true(r->cold_start);
  assert_true(payload_is(r, "hello #1"));
  free_msg(r);
  assert_int_equal(frontend_metric(deadline), 1);

  r = invoke(key_a, "tokens", NULL, "hello", &err);
  if (r == NULL) fail_msg("Invoke: %s", err->msg);
  assert_false(r->cold_start);
  free_msg(r);
  assert_int_equal(frontend_metric(deadline), 1);
  assert_int_equal(frontend_metric("brume_frontend_tokens_reissued_total"), 1);

  brume_test_cluster_stop_daemon(&c->frontend, SIGTERM);
  if (brume_test_cluster_start_frontend(c, NULL) < 0) fail_msg("frontend restart");
}

static int group_setup(void **state) {
  (void)state;
  if (brume_test_cluster_start_placement(c, 0, NULL) < 0 ||
      brume_test_cluster_start_counting(c, NULL) < 0 ||
      brume_test_cluster_start_frontend(c, NULL) < 0 ||
      brume_test_cluster_bootstrap_key(c, "ops", admin_key, sizeof(admin_key)) < 0)
    return -1;
  make_key(ACCOUNT_A, "invoke", "manage", key_a, sizeof(key_a));
  make_key(ACCOUNT_A, "invoke", NULL, key_invoke_only, sizeof(key_invoke_only));
  make_key(ACCOUNT_B, "invoke", "manage", key_b, sizeof(key_b));
  return 0;
}

int main(int argc, char **argv) {
  brume_log_init("test-e2e", BRUME_LOG_WARN);
  int code = 0;
  c = brume_test_cluster_prepare(argc, argv, "e2e", "e2e", 1, &code);
  if (c == NULL) return code;
  if (c->frontend_bin == NULL) {
    fprintf(stderr, "%s: needs BRUME_COUNTING and BRUME_FRONTEND\n", argv[0]);
    brume_test_cluster_free(c);
    return 1;
  }
  if (brume_test_cluster_start_workers(c, NULL) < 0) {
    brume_test_cluster_dump_logs(c);
    brume_test_cluster_free(c);
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_invoke_warm),
      cmocka_unit_test(test_alias_weights),
      cmocka_unit_test(test_reserved_concurrency),
      cmocka_unit_test(test_provisioned),
      cmocka_unit_test(test_auth),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_cold_start_outlasting_its_token),
  };
  int rc = cmocka_run_group_tests_name("e2e", tests, group_setup, NULL);
  if (rc != 0) brume_test_cluster_dump_logs(c);
  brume_test_cluster_free(c);
  return rc;
}
