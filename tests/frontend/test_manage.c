/* frontend/manage through a real gRPC server (the Frontend service's management methods served
 * by brume_manage_serve on a work queue, as service.c does), a real etcd, a real code store and a
 * real gRPC client: functions created, read, listed a page at a time, updated (code, then
 * configuration with a revision_id precondition), published without duplicates, aliased with
 * routing, versions deleted only when no alias routes to them, reserved concurrency kept within
 * the account's rule (also by two concurrent puts), functions deleted with their limits; bad
 * inputs each refused with their exact code and reason, leaving nothing behind. Label "frontend"
 * (not "unit"); exit 77 when there is no etcd binary. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "brume/frontend.pb-c.h"
#include "catalog.h"
#include "code_store.h"
#include "etcd.h"
#include "etcd_server.h"
#include "manage.h"
#include "rpc.h"
#include "testutil.h"
#include "workq.h"

#define PREFIX "/mg"
#define ACCOUNT "acct1"
#define ARN_OF(name) "arn:brume:lambda:local:" ACCOUNT ":function:" name

static brume_test_etcd *server;
static brume_etcd *etcd;
static char dir[] = "/tmp/brume-manage-XXXXXX";
static brume_env_key env_key;
static brume_code_store *code;
static brume_catalog *catalog;
static brume_manage *manage;
static brume_workq *wq;
static brume_rpc_server *rpc;
static brume_rpc_client *client;
static uint8_t *zip_a, *zip_b;
static size_t zip_a_len, zip_b_len;

/* ---- The server: every call goes to brume_manage_serve on the work queue. ---- */

typedef struct job {
  brume_rpc_call *call;
  const ProtobufCMessage *req;
  unsigned method;
} job;

static void job_run(void *arg) {
  job *j = arg;
  brume_principal who = {
      .key_id = "0123456789abcdef", .account_id = ACCOUNT, .scopes = BRUME_SCOPE_MANAGE};
  brume_manage_serve(manage, j->call, j->method, j->req, ACCOUNT, &who);
  free(j);
}

static void handle(brume_rpc_call *call, const ProtobufCMessage *req, void *user) {
  (void)user;
  const char *path = brume_rpc_call_method(call);
  const char *slash = strrchr(path, '/');
  const ProtobufCMethodDescriptor *md =
      protobuf_c_service_descriptor_get_method_by_name(&brume__frontend__descriptor, slash + 1);
  job *j = malloc(sizeof(*j));
  *j = (job){call, req, (unsigned)(md - brume__frontend__descriptor.methods)};
  if (brume_workq_push(wq, job_run, j, NULL) < 0) {
    free(j);
    brume_rpc_call_fail(call, BRUME_UNAVAILABLE, "stopping");
  }
}

static brume_rpc_handler handlers[64];

static int group_setup(void **state) {
  (void)state;
  if (brume_test_etcd_open(&server, &etcd) < 0) return -1;
  if (mkdtemp(dir) == NULL) return -1;
  char path[512], zpath[512];
  snprintf(zpath, sizeof(zpath), "%s/a.zip", dir);
  snprintf(path, sizeof(path), "%s/wa", dir);
  if (brume_test_zip_bootstrap(path, "/bin/true", zpath) != 0) return -1;
  zip_a = brume_test_read_file(zpath, &zip_a_len);
  snprintf(zpath, sizeof(zpath), "%s/b.zip", dir);
  snprintf(path, sizeof(path), "%s/wb", dir);
  if (brume_test_zip_bootstrap(path, "/bin/false", zpath) != 0) return -1;
  zip_b = brume_test_read_file(zpath, &zip_b_len);
  if (zip_a == NULL || zip_b == NULL) return -1;
  memset(env_key.bytes, 0x5a, sizeof(env_key.bytes));
  brume_err *err = NULL;
  snprintf(path, sizeof(path), "%s/code", dir);
  code = brume_code_store_new(path, &err);
  brume_catalog_opts co = {.etcd = etcd,
                           .prefix = PREFIX,
                           .region = "local",
                           .env_key = &env_key,
                           .code_url_base = "http://127.0.0.1:1"};
  catalog = code ? brume_catalog_new(&co, &err) : NULL;
  if (catalog == NULL) {
    fprintf(stderr, "setup: %s\n", err->msg);
    return -1;
  }
  brume_manage_opts mo = {.etcd = etcd,
                          .prefix = PREFIX,
                          .region = "local",
                          .catalog = catalog,
                          .code = code,
                          .env_key = &env_key,
                          .placement = NULL,
                          .caller_id = "frontend/test"};
  manage = brume_manage_new(&mo);
  wq = brume_workq_new(2);
  for (size_t i = 0; i < brume__frontend__descriptor.n_methods; i++) handlers[i] = handle;
  brume_rpc_server_opts so = {.listen = "127.0.0.1:0", .max_message_bytes = 8u << 20};
  rpc = brume_rpc_server_new(&so, &err);
  if (rpc == NULL ||
      brume_rpc_server_add_service(rpc, &brume__frontend__descriptor, handlers, NULL, &err) < 0 ||
      brume_rpc_server_start(rpc, &err) < 0) {
    fprintf(stderr, "setup: %s\n", err->msg);
    return -1;
  }
  char target[64];
  snprintf(target, sizeof(target), "127.0.0.1:%d", brume_rpc_server_port(rpc));
  client = brume_rpc_client_new(target, NULL, &err);
  return client ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  brume_rpc_client_free(client);
  brume_rpc_server_free(rpc);
  brume_workq_free(wq);
  brume_manage_free(manage);
  brume_catalog_free(catalog);
  brume_code_store_free(code);
  brume_test_etcd_close(server, etcd);
  free(zip_a);
  free(zip_b);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* ---- Calls ---- */

/* Calls method; returns the reply (caller frees) or NULL with *err. */
static ProtobufCMessage *call_err(const char *method, const ProtobufCMessage *req,
                                  brume_err **err) {
  const ProtobufCMethodDescriptor *md =
      protobuf_c_service_descriptor_get_method_by_name(&brume__frontend__descriptor, method);
  assert_non_null(md);
  ProtobufCMessage *reply = NULL;
  brume_rpc_call_opts o = {.deadline_ms = 20000, .wait_for_ready = true};
  if (brume_rpc_unary(client, &brume__frontend__descriptor,
                      (unsigned)(md - brume__frontend__descriptor.methods), req, &reply, &o,
                      err) < 0)
    return NULL;
  return reply;
}

static ProtobufCMessage *call_ok(const char *method, const ProtobufCMessage *req) {
  brume_err *err = NULL;
  ProtobufCMessage *r = call_err(method, req, &err);
  if (r == NULL) fail_msg("%s: %s %s", method, brume_status_name(err->code), err->msg);
  return r;
}

/* Asserts that the call fails with code and a message that starts with start. */
static void call_fails(const char *method, const ProtobufCMessage *req, brume_status code,
                       const char *start) {
  brume_err *err = NULL;
  ProtobufCMessage *r = call_err(method, req, &err);
  if (r) fail_msg("%s succeeded; wanted %s %s", method, brume_status_name(code), start);
  /* The client leads the server's message with "<target> /brume.Frontend/<method>: ". */
  char lead[256];
  snprintf(lead, sizeof(lead), "/brume.Frontend/%s: ", method);
  const char *msg = strstr(err->msg, lead);
  msg = msg ? msg + strlen(lead) : err->msg;
  if (err->code != code || strncmp(msg, start, strlen(start)) != 0)
    fail_msg("%s: got %s \"%s\"; wanted %s \"%s...\"", method, brume_status_name(err->code),
             err->msg, brume_status_name(code), start);
  brume_err_free(err);
}

static Brume__CreateFunctionRequest create_req(const char *name) {
  Brume__CreateFunctionRequest r = BRUME__CREATE_FUNCTION_REQUEST__INIT;
  r.function_name = (char *)name;
  r.handler = "bootstrap";
  r.zip_file.data = zip_a;
  r.zip_file.len = zip_a_len;
  return r;
}

static Brume__FunctionConfiguration *create(const char *name, Brume__CreateFunctionResponse **out) {
  Brume__CreateFunctionRequest r = create_req(name);
  *out = (Brume__CreateFunctionResponse *)call_ok("CreateFunction", &r.base);
  return (*out)->configuration;
}

static void create_simple(const char *name) {
  Brume__CreateFunctionResponse *r;
  create(name, &r);
  brume__create_function_response__free_unpacked(r, NULL);
}

static Brume__GetFunctionResponse *get(const char *name, const char *qualifier) {
  Brume__GetFunctionRequest r = BRUME__GET_FUNCTION_REQUEST__INIT;
  r.function_name = (char *)name;
  r.qualifier = (char *)qualifier;
  return (Brume__GetFunctionResponse *)call_ok("GetFunction", &r.base);
}

static void get_fails(const char *name, const char *qualifier, brume_status code,
                      const char *start) {
  Brume__GetFunctionRequest r = BRUME__GET_FUNCTION_REQUEST__INIT;
  r.function_name = (char *)name;
  r.qualifier = (char *)qualifier;
  call_fails("GetFunction", &r.base, code, start);
}

static void delete_function(const char *name, const char *qualifier) {
  Brume__DeleteFunctionRequest r = BRUME__DELETE_FUNCTION_REQUEST__INIT;
  r.function_name = (char *)name;
  r.qualifier = (char *)qualifier;
  protobuf_c_message_free_unpacked(call_ok("DeleteFunction", &r.base), NULL);
}

/* Number of keys under prefix in etcd. */
static size_t keys_under(const char *prefix) {
  brume_etcd_range *r = brume_etcd_get_prefix(etcd, prefix, NULL);
  assert_non_null(r);
  size_t n = r->n;
  brume_etcd_range_free(r);
  return n;
}

static char *value_of(const char *key) {
  brume_etcd_kv *kv = NULL;
  assert_int_equal(brume_etcd_get(etcd, key, &kv, NULL, NULL), 0);
  char *v = kv ? strdup(kv->value) : NULL;
  brume_etcd_kv_free(kv);
  return v;
}

static void clean(void) {
  assert_int_equal(brume_etcd_delete(etcd, PREFIX "/", true, NULL, NULL), 0);
}

/* ---- Tests ---- */

static void test_create_get_list(void **state) {
  (void)state;
  Brume__CreateFunctionRequest req = create_req("hello");
  req.description = "says hello";
  req.memory_size_mib = 256;
  Brume__Environment env = BRUME__ENVIRONMENT__INIT;
  Brume__Environment__VariablesEntry e = BRUME__ENVIRONMENT__VARIABLES_ENTRY__INIT;
  Brume__Environment__VariablesEntry *ep = &e;
  e.key = "GREETING";
  e.value = "bonjour-secret";
  env.n_variables = 1;
  env.variables = &ep;
  req.environment = &env;
  Brume__CreateFunctionResponse *cr =
      (Brume__CreateFunctionResponse *)call_ok("CreateFunction", &req.base);
  Brume__FunctionConfiguration *c = cr->configuration;
  assert_string_equal(c->function_name, "hello");
  assert_string_equal(c->function_arn, ARN_OF("hello"));
  assert_string_equal(c->version, "$LATEST");
  assert_string_equal(c->description, "says hello");
  assert_int_equal(c->handler_mode, BRUME__HANDLER_MODE__HANDLER_MODE_RUNTIME_API);
  assert_string_equal(c->runtime, "provided");
  assert_int_equal(c->memory_size_mib, 256);
  assert_int_equal(c->timeout_ms, 3000);
  assert_int_equal(c->ephemeral_storage_mib, 512);
  assert_int_equal(strlen(c->code_sha256), 64);
  assert_int_equal(c->code_size_bytes, zip_a_len);
  assert_int_equal(strlen(c->revision_id), 32);
  assert_true(c->last_modified_unix_ms > 0);
  assert_int_equal(c->environment->n_variables, 1);
  /* The code is in the store; the environment is stored sealed only. */
  assert_true(brume_code_store_has(code, c->code_sha256, NULL));
  char *stored = value_of(PREFIX "/functions/" ACCOUNT "/hello");
  assert_non_null(stored);
  assert_null(strstr(stored, "bonjour-secret"));
  free(stored);
  /* Invoke's catalog has it as soon as the call answered. */
  const brume_fn_target *t = NULL;
  assert_int_equal(brume_catalog_resolve(catalog, ACCOUNT, "hello", "", 0.5, &t, NULL), 0);
  assert_string_equal(brume_fn_target_spec(t)->function->revision_id, c->revision_id);
  assert_string_equal(brume_fn_target_spec(t)->environment[0]->value, "bonjour-secret");
  brume_fn_target_unref(t);

  Brume__GetFunctionResponse *g = get("hello", "");
  assert_string_equal(g->configuration->revision_id, c->revision_id);
  assert_string_equal(g->configuration->environment->variables[0]->key, "GREETING");
  assert_string_equal(g->configuration->environment->variables[0]->value, "bonjour-secret");
  char url[200];
  snprintf(url, sizeof(url), "http://127.0.0.1:1/code/%s", c->code_sha256);
  assert_string_equal(g->code_url, url);
  assert_null(g->concurrency);
  brume__get_function_response__free_unpacked(g, NULL);
  /* By ARN too. */
  g = get(ARN_OF("hello"), "");
  assert_string_equal(g->configuration->function_name, "hello");
  brume__get_function_response__free_unpacked(g, NULL);
  brume__create_function_response__free_unpacked(cr, NULL);

  /* The same name again. */
  Brume__CreateFunctionRequest again = create_req("hello");
  call_fails("CreateFunction", &again.base, BRUME_ALREADY_EXISTS,
             "ResourceConflictException: Function already exist: hello");
  get_fails("nope", "", BRUME_NOT_FOUND,
            "ResourceNotFoundException: Function not found: " ARN_OF("nope"));
  get_fails("hello", "3", BRUME_NOT_FOUND,
            "ResourceNotFoundException: Function not found: " ARN_OF("hello") ":3");

  /* Paging: five functions, two at a time, in name order. */
  const char *more[] = {"e", "b", "d", "c"};
  for (size_t i = 0; i < 4; i++) create_simple(more[i]);
  const char *want[] = {"b", "c", "d", "e", "hello"};
  size_t seen = 0;
  char marker[80] = "";
  for (int page = 0; page < 4; page++) {
    Brume__ListFunctionsRequest lr = BRUME__LIST_FUNCTIONS_REQUEST__INIT;
    lr.max_items = 2;
    lr.marker = marker;
    Brume__ListFunctionsResponse *l =
        (Brume__ListFunctionsResponse *)call_ok("ListFunctions", &lr.base);
    for (size_t i = 0; i < l->n_functions; i++)
      assert_string_equal(l->functions[i]->function_name, want[seen++]);
    snprintf(marker, sizeof(marker), "%s", l->next_marker);
    brume__list_functions_response__free_unpacked(l, NULL);
    if (marker[0] == '\0') break;
  }
  assert_int_equal(seen, 5);
  Brume__ListFunctionsRequest lr = BRUME__LIST_FUNCTIONS_REQUEST__INIT;
  lr.max_items = 51;
  call_fails("ListFunctions", &lr.base, BRUME_INVALID_ARGUMENT,
             "InvalidParameterValueException: max_items 51 is out of range 1-50");
  lr.max_items = 0;
  Brume__ListFunctionsResponse *l =
      (Brume__ListFunctionsResponse *)call_ok("ListFunctions", &lr.base);
  assert_int_equal(l->n_functions, 5);
  assert_string_equal(l->next_marker, "");
  brume__list_functions_response__free_unpacked(l, NULL);
  clean();
}

typedef struct bad_case {
  Brume__CreateFunctionRequest req;
  brume_status code;
  const char *start;
} bad_case;

static void test_bad_inputs_leave_nothing(void **state) {
  (void)state;
  uint8_t not_zip[] = "this is no zip archive at all";
  bad_case cases[16];
  size_t n = 0;
  cases[n] = (bad_case){create_req("bad"), BRUME_INVALID_ARGUMENT,
                        "InvalidParameterValueException: zip_file is required"};
  cases[n++].req.zip_file.len = 0;
  cases[n] = (bad_case){create_req("bad"), BRUME_INVALID_ARGUMENT,
                        "InvalidParameterValueException: memory_size_mib 64 is out of "
                        "range 128-10240"};
  cases[n++].req.memory_size_mib = 64;
  cases[n] = (bad_case){create_req("bad"), BRUME_INVALID_ARGUMENT,
                        "InvalidParameterValueException: timeout_ms 900001 is out of "
                        "range 1-900000"};
  cases[n++].req.timeout_ms = 900001;
  cases[n] = (bad_case){create_req("bad"), BRUME_INVALID_ARGUMENT,
                        "InvalidParameterValueException: ephemeral_storage_mib 100 is "
                        "out of range 512-10240"};
  cases[n++].req.ephemeral_storage_mib = 100;
  cases[n] = (bad_case){create_req("bad"), BRUME_INVALID_ARGUMENT,
                        "InvalidParameterValueException: handler must be 1-128"};
  cases[n++].req.handler = "";
  cases[n] = (bad_case){create_req("bad"), BRUME_INVALID_ARGUMENT,
                        "InvalidParameterValueException: runtime"};
  cases[n++].req.runtime = "nodejs";
  cases[n] = (bad_case){create_req("bad name"), BRUME_INVALID_ARGUMENT,
                        "InvalidParameterValueException: function_name"};
  n++;
  cases[n] = (bad_case){create_req("arn:brume:lambda:elsewhere:acct1:function:bad"),
                        BRUME_INVALID_ARGUMENT, "InvalidParameterValueException: function_name"};
  n++;
  cases[n] = (bad_case){create_req(ARN_OF("bad") ":live"), BRUME_INVALID_ARGUMENT,
                        "InvalidParameterValueException: function_name"};
  n++;
  cases[n] = (bad_case){create_req("bad"), BRUME_INVALID_ARGUMENT, "InvalidZipFileException"};
  cases[n].req.zip_file.data = not_zip;
  cases[n++].req.zip_file.len = sizeof(not_zip);
  Brume__Environment env = BRUME__ENVIRONMENT__INIT;
  Brume__Environment__VariablesEntry e = BRUME__ENVIRONMENT__VARIABLES_ENTRY__INIT;
  Brume__Environment__VariablesEntry *ep = &e;
  e.key = "AWS_LAMBDA_FUNCTION_NAME";
  e.value = "x";
  env.n_variables = 1;
  env.variables = &ep;
  cases[n] = (bad_case){create_req("bad"), BRUME_INVALID_ARGUMENT,
                        "InvalidParameterValueException: environment variable "
                        "AWS_LAMBDA_FUNCTION_NAME is reserved"};
  cases[n++].req.environment = &env;
  for (size_t i = 0; i < n; i++) {
    call_fails("CreateFunction", &cases[i].req.base, cases[i].code, cases[i].start);
    get_fails("bad", "", BRUME_NOT_FOUND, "ResourceNotFoundException");
  }
  assert_int_equal(keys_under(PREFIX "/"), 0);
  /* Nothing of the failed requests reached the catalog either. */
  const brume_fn_target *t = NULL;
  assert_int_equal(brume_catalog_resolve(catalog, ACCOUNT, "bad", "", 0.5, &t, NULL), -1);
  /* Calls on a function that does not exist change nothing. */
  Brume__UpdateFunctionCodeRequest uc = BRUME__UPDATE_FUNCTION_CODE_REQUEST__INIT;
  uc.function_name = "bad";
  uc.zip_file.data = zip_a;
  uc.zip_file.len = zip_a_len;
  call_fails("UpdateFunctionCode", &uc.base, BRUME_NOT_FOUND,
             "ResourceNotFoundException: Function not found: " ARN_OF("bad"));
  Brume__PutFunctionConcurrencyRequest pc = BRUME__PUT_FUNCTION_CONCURRENCY_REQUEST__INIT;
  pc.function_name = "bad";
  pc.reserved_concurrent_executions = 10;
  call_fails("PutFunctionConcurrency", &pc.base, BRUME_NOT_FOUND, "ResourceNotFoundException");
  Brume__CreateAliasRequest ca = BRUME__CREATE_ALIAS_REQUEST__INIT;
  ca.function_name = "bad";
  ca.name = "live";
  ca.function_version = "$LATEST";
  call_fails("CreateAlias", &ca.base, BRUME_NOT_FOUND, "ResourceNotFoundException");
  assert_int_equal(keys_under(PREFIX "/"), 0);
}

static void test_updates_and_publish(void **state) {
  (void)state;
  Brume__CreateFunctionResponse *cr;
  Brume__FunctionConfiguration *c = create("fn", &cr);
  char rev0[40], sha_a[65];
  snprintf(rev0, sizeof(rev0), "%s", c->revision_id);
  snprintf(sha_a, sizeof(sha_a), "%s", c->code_sha256);
  brume__create_function_response__free_unpacked(cr, NULL);

  /* Configuration: only what is set changes; a stale revision_id is refused. */
  Brume__UpdateFunctionConfigurationRequest u = BRUME__UPDATE_FUNCTION_CONFIGURATION_REQUEST__INIT;
  u.function_name = "fn";
  u.memory_size_mib = 1024;
  u.revision_id = rev0;
  Brume__UpdateFunctionConfigurationResponse *ur =
      (Brume__UpdateFunctionConfigurationResponse *)call_ok("UpdateFunctionConfiguration", &u.base);
  assert_int_equal(ur->configuration->memory_size_mib, 1024);
  assert_int_equal(ur->configuration->timeout_ms, 3000);
  assert_string_equal(ur->configuration->handler, "bootstrap");
  assert_string_not_equal(ur->configuration->revision_id, rev0);
  char rev1[40];
  snprintf(rev1, sizeof(rev1), "%s", ur->configuration->revision_id);
  brume__update_function_configuration_response__free_unpacked(ur, NULL);
  /* The catalog already serves the new revision. */
  const brume_fn_target *t = NULL;
  assert_int_equal(brume_catalog_resolve(catalog, ACCOUNT, "fn", "", 0.5, &t, NULL), 0);
  assert_int_equal(brume_fn_target_spec(t)->resources->memory_mib, 1024);
  assert_string_equal(brume_fn_target_spec(t)->function->revision_id, rev1);
  brume_fn_target_unref(t);
  u.memory_size_mib = 2048;
  call_fails("UpdateFunctionConfiguration", &u.base, BRUME_ABORTED,
             "PreconditionFailedException: revision_id");
  u.revision_id = "";
  u.memory_size_mib = 20000;
  call_fails("UpdateFunctionConfiguration", &u.base, BRUME_INVALID_ARGUMENT,
             "InvalidParameterValueException: memory_size_mib 20000 is out of range 128-10240");
  Brume__GetFunctionResponse *g = get("fn", "");
  assert_int_equal(g->configuration->memory_size_mib, 1024);
  assert_string_equal(g->configuration->revision_id, rev1);
  brume__get_function_response__free_unpacked(g, NULL);

  /* Publish: version 1; again with $LATEST unchanged: still version 1. */
  Brume__PublishVersionRequest p = BRUME__PUBLISH_VERSION_REQUEST__INIT;
  p.function_name = "fn";
  Brume__PublishVersionResponse *pr =
      (Brume__PublishVersionResponse *)call_ok("PublishVersion", &p.base);
  assert_string_equal(pr->configuration->version, "1");
  assert_string_equal(pr->configuration->function_arn, ARN_OF("fn") ":1");
  assert_int_equal(pr->configuration->memory_size_mib, 1024);
  char v1rev[40];
  snprintf(v1rev, sizeof(v1rev), "%s", pr->configuration->revision_id);
  brume__publish_version_response__free_unpacked(pr, NULL);
  pr = (Brume__PublishVersionResponse *)call_ok("PublishVersion", &p.base);
  assert_string_equal(pr->configuration->version, "1");
  assert_string_equal(pr->configuration->revision_id, v1rev);
  brume__publish_version_response__free_unpacked(pr, NULL);
  /* Preconditions. */
  p.code_sha256 = "0000000000000000000000000000000000000000000000000000000000000000";
  call_fails("PublishVersion", &p.base, BRUME_ABORTED, "PreconditionFailedException: code_sha256");
  p.code_sha256 = "";
  p.revision_id = rev0;
  call_fails("PublishVersion", &p.base, BRUME_ABORTED, "PreconditionFailedException: revision_id");
  p.revision_id = "";

  /* New code (and publish in the same call): version 2 with code B; version 1 keeps code A. */
  Brume__UpdateFunctionCodeRequest uc = BRUME__UPDATE_FUNCTION_CODE_REQUEST__INIT;
  uc.function_name = "fn";
  uc.zip_file.data = zip_b;
  uc.zip_file.len = zip_b_len;
  uc.publish = true;
  Brume__UpdateFunctionCodeResponse *ucr =
      (Brume__UpdateFunctionCodeResponse *)call_ok("UpdateFunctionCode", &uc.base);
  assert_string_equal(ucr->configuration->version, "2");
  assert_string_not_equal(ucr->configuration->code_sha256, sha_a);
  brume__update_function_code_response__free_unpacked(ucr, NULL);
  uc.zip_file.len = 0;
  call_fails("UpdateFunctionCode", &uc.base, BRUME_INVALID_ARGUMENT,
             "InvalidParameterValueException: zip_file is required");
  uc.zip_file.len = zip_b_len;
  uc.revision_id = rev1;
  call_fails("UpdateFunctionCode", &uc.base, BRUME_ABORTED, "PreconditionFailedException");
  g = get("fn", "1");
  assert_string_equal(g->configuration->code_sha256, sha_a);
  assert_string_equal(g->configuration->version, "1");
  brume__get_function_response__free_unpacked(g, NULL);
  assert_int_equal(brume_catalog_resolve(catalog, ACCOUNT, "fn", "2", 0.5, &t, NULL), 0);
  assert_string_not_equal(brume_fn_target_spec(t)->code->sha256, sha_a);
  brume_fn_target_unref(t);
  clean();
}

static Brume__AliasConfiguration *alias_call(const char *method, ProtobufCMessage *req,
                                             ProtobufCMessage **reply) {
  *reply = call_ok(method, req);
  if (strcmp(method, "CreateAlias") == 0) return ((Brume__CreateAliasResponse *)*reply)->alias;
  if (strcmp(method, "UpdateAlias") == 0) return ((Brume__UpdateAliasResponse *)*reply)->alias;
  return ((Brume__GetAliasResponse *)*reply)->alias;
}

static void publish(const char *name, uint32_t memory) {
  Brume__UpdateFunctionConfigurationRequest u = BRUME__UPDATE_FUNCTION_CONFIGURATION_REQUEST__INIT;
  u.function_name = (char *)name;
  u.memory_size_mib = memory;
  protobuf_c_message_free_unpacked(call_ok("UpdateFunctionConfiguration", &u.base), NULL);
  Brume__PublishVersionRequest p = BRUME__PUBLISH_VERSION_REQUEST__INIT;
  p.function_name = (char *)name;
  protobuf_c_message_free_unpacked(call_ok("PublishVersion", &p.base), NULL);
}

static void test_aliases(void **state) {
  (void)state;
  create_simple("fa");
  publish("fa", 128); /* 1 */
  publish("fa", 256); /* 2 */
  publish("fa", 512); /* 3 */
  Brume__AliasRoutingConfig routing = BRUME__ALIAS_ROUTING_CONFIG__INIT;
  routing.additional_version = "2";
  routing.additional_version_weight = 0.3;
  Brume__CreateAliasRequest ca = BRUME__CREATE_ALIAS_REQUEST__INIT;
  ca.function_name = "fa";
  ca.name = "live";
  ca.function_version = "1";
  ca.description = "production";
  ca.routing_config = &routing;
  ProtobufCMessage *reply;
  Brume__AliasConfiguration *a = alias_call("CreateAlias", &ca.base, &reply);
  assert_string_equal(a->alias_arn, ARN_OF("fa") ":live");
  assert_string_equal(a->function_version, "1");
  assert_string_equal(a->routing_config->additional_version, "2");
  assert_true(a->routing_config->additional_version_weight == 0.3);
  char rev[40];
  snprintf(rev, sizeof(rev), "%s", a->revision_id);
  protobuf_c_message_free_unpacked(reply, NULL);
  call_fails("CreateAlias", &ca.base, BRUME_ALREADY_EXISTS, "ResourceConflictException");
  /* Routing to the alias's own version, to $LATEST, out of range, to nothing. */
  ca.name = "other";
  routing.additional_version = "1";
  call_fails("CreateAlias", &ca.base, BRUME_INVALID_ARGUMENT,
             "InvalidParameterValueException: routing_config.additional_version 1 is the alias's "
             "own version");
  routing.additional_version = "$LATEST";
  call_fails("CreateAlias", &ca.base, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
  routing.additional_version = "2";
  routing.additional_version_weight = 1.01;
  call_fails("CreateAlias", &ca.base, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
  routing.additional_version = "9";
  routing.additional_version_weight = 0.5;
  call_fails("CreateAlias", &ca.base, BRUME_NOT_FOUND, "ResourceNotFoundException");
  ca.routing_config = NULL;
  ca.function_version = "";
  call_fails("CreateAlias", &ca.base, BRUME_INVALID_ARGUMENT,
             "InvalidParameterValueException: function_version is required");
  ca.function_version = "$LATEST";
  ca.name = "12";
  call_fails("CreateAlias", &ca.base, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");
  ca.name = "dev";
  protobuf_c_message_free_unpacked(call_ok("CreateAlias", &ca.base), NULL);

  /* Invoke resolves the alias with its weights; GetFunction shows the alias's own version. */
  const brume_fn_target *t = NULL;
  assert_int_equal(brume_catalog_resolve(catalog, ACCOUNT, "fa", "live", 0.1, &t, NULL), 0);
  assert_string_equal(brume_fn_target_spec(t)->function->version, "2");
  brume_fn_target_unref(t);
  assert_int_equal(brume_catalog_resolve(catalog, ACCOUNT, "fa", "live", 0.9, &t, NULL), 0);
  assert_string_equal(brume_fn_target_spec(t)->function->version, "1");
  brume_fn_target_unref(t);
  Brume__GetFunctionResponse *g = get("fa", "live");
  assert_string_equal(g->configuration->version, "1");
  brume__get_function_response__free_unpacked(g, NULL);
  g = get(ARN_OF("fa") ":live", "");
  assert_string_equal(g->configuration->version, "1");
  brume__get_function_response__free_unpacked(g, NULL);

  /* Lists: all, then those that point or route to version 2, a page at a time. */
  Brume__ListAliasesRequest la = BRUME__LIST_ALIASES_REQUEST__INIT;
  la.function_name = "fa";
  la.max_items = 1;
  Brume__ListAliasesResponse *l = (Brume__ListAliasesResponse *)call_ok("ListAliases", &la.base);
  assert_int_equal(l->n_aliases, 1);
  assert_string_equal(l->aliases[0]->name, "dev");
  assert_string_equal(l->next_marker, "dev");
  la.marker = "dev";
  brume__list_aliases_response__free_unpacked(l, NULL);
  l = (Brume__ListAliasesResponse *)call_ok("ListAliases", &la.base);
  assert_int_equal(l->n_aliases, 1);
  assert_string_equal(l->aliases[0]->name, "live");
  assert_string_equal(l->next_marker, "");
  brume__list_aliases_response__free_unpacked(l, NULL);
  la.marker = "";
  la.max_items = 0;
  la.function_version = "2";
  l = (Brume__ListAliasesResponse *)call_ok("ListAliases", &la.base);
  assert_int_equal(l->n_aliases, 1);
  assert_string_equal(l->aliases[0]->name, "live");
  brume__list_aliases_response__free_unpacked(l, NULL);

  /* Versions an alias points or routes to cannot be deleted. */
  Brume__DeleteFunctionRequest dv = BRUME__DELETE_FUNCTION_REQUEST__INIT;
  dv.function_name = "fa";
  dv.qualifier = "1";
  call_fails("DeleteFunction", &dv.base, BRUME_FAILED_PRECONDITION,
             "ResourceConflictException: version 1 of " ARN_OF("fa") " cannot be deleted: alias "
             "live points to it");
  dv.qualifier = "2";
  call_fails("DeleteFunction", &dv.base, BRUME_FAILED_PRECONDITION,
             "ResourceConflictException: version 2 of " ARN_OF("fa") " cannot be deleted: alias "
             "live routes to it");
  dv.qualifier = "live";
  call_fails("DeleteFunction", &dv.base, BRUME_INVALID_ARGUMENT, "InvalidParameterValueException");

  /* Update: a stale revision_id is refused; routing removed; then version 2 may go. */
  Brume__UpdateAliasRequest ua = BRUME__UPDATE_ALIAS_REQUEST__INIT;
  Brume__AliasRoutingConfig none = BRUME__ALIAS_ROUTING_CONFIG__INIT;
  ua.function_name = "fa";
  ua.name = "live";
  ua.routing_config = &none;
  ua.revision_id = "0123456789abcdef0123456789abcdef";
  call_fails("UpdateAlias", &ua.base, BRUME_ABORTED, "PreconditionFailedException: revision_id");
  ua.revision_id = rev;
  a = alias_call("UpdateAlias", &ua.base, &reply);
  assert_null(a->routing_config);
  assert_string_equal(a->function_version, "1");
  assert_string_equal(a->description, "production"); /* unchanged */
  assert_string_not_equal(a->revision_id, rev);
  protobuf_c_message_free_unpacked(reply, NULL);
  delete_function("fa", "2");
  get_fails("fa", "2", BRUME_NOT_FOUND, "ResourceNotFoundException");
  assert_int_equal(brume_catalog_resolve(catalog, ACCOUNT, "fa", "2", 0.5, &t, NULL), -1);
  /* Repoint, clear the description. */
  ua.revision_id = "";
  ua.routing_config = NULL;
  ua.function_version = "3";
  ua.clear_description = true;
  a = alias_call("UpdateAlias", &ua.base, &reply);
  assert_string_equal(a->function_version, "3");
  assert_string_equal(a->description, "");
  protobuf_c_message_free_unpacked(reply, NULL);
  ua.name = "missing";
  call_fails("UpdateAlias", &ua.base, BRUME_NOT_FOUND,
             "ResourceNotFoundException: Alias not found: " ARN_OF("fa") ":missing");

  /* Delete an alias. */
  Brume__DeleteAliasRequest da = BRUME__DELETE_ALIAS_REQUEST__INIT;
  da.function_name = "fa";
  da.name = "live";
  protobuf_c_message_free_unpacked(call_ok("DeleteAlias", &da.base), NULL);
  call_fails("DeleteAlias", &da.base, BRUME_NOT_FOUND, "ResourceNotFoundException");
  Brume__GetAliasRequest ga = BRUME__GET_ALIAS_REQUEST__INIT;
  ga.function_name = "fa";
  ga.name = "live";
  call_fails("GetAlias", &ga.base, BRUME_NOT_FOUND, "ResourceNotFoundException");
  ga.name = "dev";
  a = alias_call("GetAlias", &ga.base, &reply);
  assert_string_equal(a->function_version, "$LATEST");
  protobuf_c_message_free_unpacked(reply, NULL);
  assert_int_equal(brume_catalog_resolve(catalog, ACCOUNT, "fa", "live", 0.5, &t, NULL), -1);
  /* Version 3 is free now. */
  delete_function("fa", "1");
  clean();
}

static uint32_t reserved_of(const char *name, bool *set) {
  Brume__GetFunctionConcurrencyRequest r = BRUME__GET_FUNCTION_CONCURRENCY_REQUEST__INIT;
  r.function_name = (char *)name;
  Brume__GetFunctionConcurrencyResponse *g =
      (Brume__GetFunctionConcurrencyResponse *)call_ok("GetFunctionConcurrency", &r.base);
  *set = g->concurrency != NULL;
  uint32_t n = g->concurrency ? g->concurrency->reserved_concurrent_executions : 0;
  brume__get_function_concurrency_response__free_unpacked(g, NULL);
  return n;
}

typedef struct put_arg {
  const char *name;
  uint32_t n;
  brume_status code;
} put_arg;

static void *put_thread(void *p) {
  put_arg *a = p;
  Brume__PutFunctionConcurrencyRequest r = BRUME__PUT_FUNCTION_CONCURRENCY_REQUEST__INIT;
  r.function_name = (char *)a->name;
  r.reserved_concurrent_executions = a->n;
  brume_err *err = NULL;
  ProtobufCMessage *reply = call_err("PutFunctionConcurrency", &r.base, &err);
  a->code = reply ? BRUME_OK : err->code;
  if (reply) protobuf_c_message_free_unpacked(reply, NULL);
  brume_err_free(err);
  return NULL;
}

static void test_reserved_concurrency(void **state) {
  (void)state;
  create_simple("ra");
  create_simple("rb");
  Brume__PutFunctionConcurrencyRequest p = BRUME__PUT_FUNCTION_CONCURRENCY_REQUEST__INIT;
  p.function_name = "ra";
  p.reserved_concurrent_executions = 800;
  Brume__PutFunctionConcurrencyResponse *pr =
      (Brume__PutFunctionConcurrencyResponse *)call_ok("PutFunctionConcurrency", &p.base);
  assert_int_equal(pr->concurrency->reserved_concurrent_executions, 800);
  brume__put_function_concurrency_response__free_unpacked(pr, NULL);
  char *v = value_of(PREFIX "/limits/function/" ACCOUNT "/ra");
  assert_string_equal(v, "{\"reserved_concurrency\":800}");
  free(v);
  /* 1000 - 800 - 150 leaves 50 unreserved, under the 100 that must stay. */
  p.function_name = "rb";
  p.reserved_concurrent_executions = 150;
  call_fails("PutFunctionConcurrency", &p.base, BRUME_FAILED_PRECONDITION,
             "ResourceConflictException: reserved concurrency 150 for rb would leave 50 "
             "unreserved");
  bool set;
  assert_int_equal(reserved_of("ra", &set), 800);
  assert_true(set);
  reserved_of("rb", &set);
  assert_false(set);
  assert_null(value_of(PREFIX "/limits/function/" ACCOUNT "/rb"));
  Brume__GetFunctionResponse *g = get("ra", "");
  assert_non_null(g->concurrency);
  assert_int_equal(g->concurrency->reserved_concurrent_executions, 800);
  brume__get_function_response__free_unpacked(g, NULL);
  /* A bigger account limit makes room. */
  assert_int_equal(brume_etcd_put(etcd, PREFIX "/limits/account/" ACCOUNT,
                                  "{\"concurrency_limit\":2000}", 26, 0, NULL, NULL),
                   0);
  protobuf_c_message_free_unpacked(call_ok("PutFunctionConcurrency", &p.base), NULL);
  assert_int_equal(reserved_of("rb", &set), 150);
  /* The provisioned map is kept when reserved concurrency changes, and the reverse. */
  const char *with_prov = "{\"provisioned\":{\"1\":5},\"reserved_concurrency\":800}";
  assert_int_equal(brume_etcd_put(etcd, PREFIX "/limits/function/" ACCOUNT "/ra", with_prov,
                                  strlen(with_prov), 0, NULL, NULL),
                   0);
  p.function_name = "ra";
  p.reserved_concurrent_executions = 700;
  protobuf_c_message_free_unpacked(call_ok("PutFunctionConcurrency", &p.base), NULL);
  v = value_of(PREFIX "/limits/function/" ACCOUNT "/ra");
  assert_string_equal(v, "{\"provisioned\":{\"1\":5},\"reserved_concurrency\":700}");
  free(v);
  /* Below its provisioned concurrency: refused. */
  p.reserved_concurrent_executions = 4;
  call_fails("PutFunctionConcurrency", &p.base, BRUME_FAILED_PRECONDITION,
             "ResourceConflictException: reserved concurrency 4 for ra is less than its "
             "provisioned concurrency 5");
  Brume__DeleteFunctionConcurrencyRequest d = BRUME__DELETE_FUNCTION_CONCURRENCY_REQUEST__INIT;
  d.function_name = "ra";
  protobuf_c_message_free_unpacked(call_ok("DeleteFunctionConcurrency", &d.base), NULL);
  reserved_of("ra", &set);
  assert_false(set);
  v = value_of(PREFIX "/limits/function/" ACCOUNT "/ra");
  assert_string_equal(v, "{\"provisioned\":{\"1\":5}}");
  free(v);

  /* Two puts at once that together would leave 0 of 2000 - 150: exactly one wins. */
  create_simple("rc");
  for (int round = 0; round < 3; round++) {
    put_arg a = {"ra", 900, BRUME_UNKNOWN}, b = {"rc", 900, BRUME_UNKNOWN};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, put_thread, &a);
    pthread_create(&tb, NULL, put_thread, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    if (!((a.code == BRUME_OK) ^ (b.code == BRUME_OK)))
      fail_msg("round %d: %s and %s", round, brume_status_name(a.code), brume_status_name(b.code));
    assert_true(a.code == BRUME_FAILED_PRECONDITION || b.code == BRUME_FAILED_PRECONDITION);
    /* Reset both. */
    d.function_name = "ra";
    protobuf_c_message_free_unpacked(call_ok("DeleteFunctionConcurrency", &d.base), NULL);
    d.function_name = "rc";
    protobuf_c_message_free_unpacked(call_ok("DeleteFunctionConcurrency", &d.base), NULL);
  }

  /* Deleting the function takes its limits key along. */
  delete_function("ra", "");
  assert_null(value_of(PREFIX "/limits/function/" ACCOUNT "/ra"));
  get_fails("ra", "", BRUME_NOT_FOUND, "ResourceNotFoundException");
  const brume_fn_target *t = NULL;
  assert_int_equal(brume_catalog_resolve(catalog, ACCOUNT, "ra", "", 0.5, &t, NULL), -1);
  Brume__DeleteFunctionRequest df = BRUME__DELETE_FUNCTION_REQUEST__INIT;
  df.function_name = "ra";
  call_fails("DeleteFunction", &df.base, BRUME_NOT_FOUND, "ResourceNotFoundException");
  clean();
}

static void test_provisioned_needs_placement(void **state) {
  (void)state;
  create_simple("pv");
  publish("pv", 256);
  Brume__PutProvisionedConcurrencyConfigRequest r =
      BRUME__PUT_PROVISIONED_CONCURRENCY_CONFIG_REQUEST__INIT;
  r.function_name = "pv";
  r.qualifier = "1";
  r.provisioned_concurrent_executions = 0;
  call_fails("PutProvisionedConcurrencyConfig", &r.base, BRUME_INVALID_ARGUMENT,
             "InvalidParameterValueException: provisioned_concurrent_executions 0");
  /* This frontend has no placement client: refused, nothing written. */
  r.provisioned_concurrent_executions = 2;
  call_fails("PutProvisionedConcurrencyConfig", &r.base, BRUME_UNAVAILABLE,
             "ServiceUnavailableException");
  assert_null(value_of(PREFIX "/limits/function/" ACCOUNT "/pv"));
  Brume__GetProvisionedConcurrencyConfigRequest g =
      BRUME__GET_PROVISIONED_CONCURRENCY_CONFIG_REQUEST__INIT;
  g.function_name = "pv";
  g.qualifier = "1";
  call_fails("GetProvisionedConcurrencyConfig", &g.base, BRUME_NOT_FOUND,
             "ResourceNotFoundException: No provisioned concurrency config for " ARN_OF("pv") ":1");
  g.qualifier = "$LATEST";
  call_fails("GetProvisionedConcurrencyConfig", &g.base, BRUME_INVALID_ARGUMENT,
             "InvalidParameterValueException");
  clean();
}

int main(void) {
  if (!brume_test_etcd_available()) {
    fprintf(stderr, "no etcd binary on PATH: skipping\n");
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_get_list),
      cmocka_unit_test(test_bad_inputs_leave_nothing),
      cmocka_unit_test(test_updates_and_publish),
      cmocka_unit_test(test_aliases),
      cmocka_unit_test(test_reserved_concurrency),
      cmocka_unit_test(test_provisioned_needs_placement),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
