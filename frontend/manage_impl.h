/* What the management calls' files (manage.c, manage_functions.c, manage_aliases.c,
 * manage_concurrency.c, manage_events.c) share: the module's state, reading and writing documents
 * with a compare-and-swap, and turning documents into replies. Not a public header. */
#ifndef BRUME_FRONTEND_MANAGE_IMPL_H
#define BRUME_FRONTEND_MANAGE_IMPL_H

#include <jansson.h>

#include "brume/frontend.pb-c.h"
#include "function_doc.h"
#include "manage.h"
#include "names.h"

/* How many times a call reads, changes and writes again when another writer got in between. */
#define MG_CAS_ATTEMPTS 5
/* How long a call waits for the catalog to apply its write before answering anyway. */
#define MG_CATALOG_WAIT_MS 5000
#define MG_PAGE_MAX 50

BRUME_DEFINE_AUTOPTR(json_t, json_decref)

struct brume_manage {
  brume_etcd *etcd;
  char *prefix; /* without a trailing '/' */
  char *region;
  brume_catalog *catalog;
  brume_code_store *code;
  brume_env_key env_key;
  bool has_env_key;
  brume_rpc_client *placement;
  char *caller_id;
};

/* A call's handler: answers call once and returns the status it answered with. */
typedef brume_status mg_handler(brume_manage *m, brume_rpc_call *call, const ProtobufCMessage *req,
                                const char *account);

/* Fails call with err and returns its code. */
brume_status mg_fail(brume_rpc_call *call, const brume_err *err);
/* Replies and returns BRUME_OK. */
brume_status mg_reply(brume_rpc_call *call, const ProtobufCMessage *reply);
/* Replies with a response of type desc that has at most one field, a message (most of them:
 * CreateAliasResponse's alias, PublishVersionResponse's configuration, DeleteAliasResponse has
 * none): field, or nothing when field is NULL. Returns BRUME_OK. */
brume_status mg_reply_with(brume_rpc_call *call, const ProtobufCMessageDescriptor *desc,
                           const void *field);

/* The function a request names: function_name (plain or ARN) and, when the request has a
 * qualifier field, qualifier (NULL when it has none). An ARN's qualifier counts as the request's
 * (INVALID_ARGUMENT when both are set and differ, or when the request has no qualifier field);
 * *qualifier_out gets it ("" for none). */
int mg_function(const brume_manage *m, const char *function_name, const char *qualifier,
                brume_function_name *out, const char **qualifier_out, brume_err **err);

char *mg_doc_key(const brume_manage *m, const char *account, const char *name);
char *mg_limits_key(const brume_manage *m, const char *account, const char *name);
char *mg_arn(const brume_manage *m, const char *account, const char *name, const char *qualifier);

/* Reads a function's document and its mod revision. NOT_FOUND "ResourceNotFoundException:
 * Function not found: <arn>" when there is none. */
int mg_load(brume_manage *m, const char *account, const char *name, brume_fn_doc **doc,
            int64_t *mod, brume_err **err);

/* Writes doc (NULL: deletes it) guarded by mod (0: the key must not exist), with extra compares
 * and ops in the same txn. Returns 1 and *revision when written, 0 when a compare failed
 * (somebody else wrote first: read again), -1 on error. */
int mg_store(brume_manage *m, const char *account, const char *name, const brume_fn_doc *doc,
             int64_t mod, const brume_etcd_cmp *cmps, size_t n_cmps, const brume_etcd_op *ops,
             size_t n_ops, int64_t *revision, brume_err **err);

/* Waits for the catalog to apply revision; a timeout is logged, not failed: the write is done. */
void mg_wait(brume_manage *m, int64_t revision);

/* ABORTED "PreconditionFailedException" after MG_CAS_ATTEMPTS lost races. */
int mg_too_busy(const char *account, const char *name, brume_err **err);

/* A change to a function's document as read: returns 1 to write doc, 0 to leave it as it is, or
 * -1 with *err to give up. It is applied again to a fresh read when another writer got in first,
 * so it checks the document again and keeps nothing from an earlier call but what it writes to
 * ctx last. */
typedef int mg_change(brume_fn_doc *doc, void *ctx, brume_err **err);
/* Reads name's document, changes it and writes it back guarded by the mod revision it was read
 * at, again while another writer gets in between (ABORTED, mg_too_busy, after MG_CAS_ATTEMPTS
 * lost races); then waits for the catalog to apply the write. Returns the document as changed
 * (the caller frees it), or NULL with *err from the read, the change or the write. */
brume_fn_doc *mg_update_doc(brume_manage *m, const char *account, const char *name,
                            mg_change *change, void *ctx, brume_err **err);

/* Allocations that a reply points to, freed after it is sent. */
typedef struct mg_pool {
  struct mg_kept {
    void *p;
    void (*free_fn)(void *);
  } * items;
  size_t n, cap;
} mg_pool;
void *mg_keep(mg_pool *pool, void *p, void (*free_fn)(void *));
void mg_pool_free(mg_pool *pool);

/* Fills out from cfg; strings it needs are kept in pool. The environment is opened (decrypted):
 * -1 with INTERNAL when it cannot be. */
int mg_config_proto(brume_manage *m, const char *account, const char *name,
                    const brume_fn_config *cfg, Brume__FunctionConfiguration *out, mg_pool *pool,
                    brume_err **err);
void mg_alias_proto(brume_manage *m, const char *account, const char *name, const brume_fn_alias *a,
                    Brume__AliasConfiguration *out, mg_pool *pool);

/* Seals a request's environment (checked first): *sealed NULL when env is absent or empty. */
int mg_seal_env(brume_manage *m, const Brume__Environment *env, char **sealed, brume_err **err);

/* ---- counting's limits key of a function (manage_concurrency.c) ---- */

/* The function's limits value as a JSON object (an empty one when the key is absent or not an
 * object), and the key's mod revision (0 when absent). */
int mg_limits_load(brume_manage *m, const char *account, const char *name, json_t **value,
                   int64_t *mod, brume_err **err);
/* The op that writes value to the limits key, or deletes it when value holds nothing. *text
 * gets the value written (caller frees; NULL for a delete). */
brume_etcd_op mg_limits_op(const char *key, json_t *value, char **text);
/* Removes qualifier from value's "provisioned" map; true if it was there. */
bool mg_limits_drop_provisioned(json_t *value, const char *qualifier);
/* Provisioned concurrency lives per qualifier (limits key) but placement keeps sandboxes per
 * version: after a change, each version concerned gets the sum over the qualifiers that resolve
 * to it. mg_prov_collect takes, before the change, a catalog reference to the version each
 * qualifier of provisioned's keys resolves to in doc (so that a spec is at hand even when the
 * change deletes the version); mg_prov_push then sends each of them its count as after and
 * after_limits say (after NULL: the function is gone, every count is 0). Best effort: a failure
 * is logged and returned, the first one in err. */
typedef struct mg_prov_sync {
  size_t n;
  const brume_fn_target **targets;
} mg_prov_sync;
void mg_prov_collect(brume_manage *m, const char *account, const char *name,
                     const brume_fn_doc *doc, json_t *provisioned, mg_prov_sync *out);
int mg_prov_push(brume_manage *m, const char *account, const char *name, const brume_fn_doc *after,
                 json_t *after_limits, mg_prov_sync *s, brume_err **err);
void mg_prov_sync_free(mg_prov_sync *s);

/* The handlers, by method. */
mg_handler mg_create_function, mg_update_function_code, mg_update_function_configuration,
    mg_get_function, mg_list_functions, mg_delete_function, mg_publish_version;
mg_handler mg_create_alias, mg_update_alias, mg_get_alias, mg_list_aliases, mg_delete_alias;
mg_handler mg_put_function_concurrency, mg_get_function_concurrency, mg_delete_function_concurrency,
    mg_put_provisioned, mg_get_provisioned, mg_delete_provisioned;
mg_handler mg_put_event_config, mg_get_event_config, mg_delete_event_config;

#endif
