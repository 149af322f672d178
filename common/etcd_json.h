/* The JSON of etcd's gateway, both ways, with no network and no state.
 *
 * Kept apart from etcd.c so that the parsers can be fuzzed (tests/fuzz/fuzz_etcd_json.c): each
 * parser takes any bytes (not NUL-terminated, any length) from the network and either fills its
 * result or returns -1/NULL with BRUME_INTERNAL ("etcd sent a malformed ... response: ..."); none
 * crashes, aborts or leaks on bad input. A field the gateway left out reads as zero, false or an
 * empty string, because the gateway omits every such field.
 *
 * The request builders return a NUL-terminated JSON text the caller frees. */
#ifndef BRUME_ETCD_JSON_H
#define BRUME_ETCD_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "etcd.h"

/* ---- base64 and key ranges ---- */

/* Standard base64 with padding, as Go's encoding/json writes []byte. Caller frees. */
char *brume_etcd_json_b64_encode(const void *data, size_t len);
/* Decodes standard base64 (padding optional; like Go's decoder, stray low bits in the last
 * character are ignored). *out is NUL-terminated beyond *out_len; caller frees. -1 on an invalid
 * character or bad padding; *out is then untouched. */
int brume_etcd_json_b64_decode(const char *in, size_t in_len, char **out, size_t *out_len);
/* The smallest key greater than every key starting with prefix (etcd's range_end for a prefix
 * read): the prefix with its last byte below 0xff incremented and what follows dropped. For an
 * empty prefix, or one made only of 0xff bytes, "\0", which etcd reads as "to the end". */
char *brume_etcd_json_prefix_end(const char *prefix, size_t len, size_t *out_len);

/* ---- requests ---- */

char *brume_etcd_json_range_req(const char *key, bool prefix, bool count_only);
char *brume_etcd_json_put_req(const char *key, const void *value, size_t value_len, int64_t lease);
char *brume_etcd_json_delete_req(const char *key, bool prefix);
/* INVALID_ARGUMENT for a NULL key or an unknown target, result or op type. */
char *brume_etcd_json_txn_req(const brume_etcd_txn_req *req, brume_err **err);
char *brume_etcd_json_lease_grant_req(int64_t ttl_s);
/* {"ID": id}: the body of keepalive and revoke. */
char *brume_etcd_json_lease_id_req(int64_t id);
/* A watch create_request for every key under prefix, from start_revision (0: from now). */
char *brume_etcd_json_watch_req(const char *prefix, int64_t start_revision);

/* ---- responses ---- */

/* Recognises the gateway's error objects: {"error": "...", "code": N, "message": "..."} for unary
 * calls and {"error": {"grpc_code": N, "message": "..."}} inside a stream. Returns 1 and fills
 * *code (a gRPC code, UNKNOWN when out of range) and *message (caller frees) if body is one,
 * 0 otherwise (then nothing is allocated). */
int brume_etcd_json_parse_error(const char *body, size_t len, brume_status *code, char **message);

brume_etcd_range *brume_etcd_json_parse_range(const char *body, size_t len, brume_err **err);
int brume_etcd_json_parse_put(const char *body, size_t len, int64_t *revision, brume_err **err);
int brume_etcd_json_parse_delete(const char *body, size_t len, int64_t *deleted, int64_t *revision,
                                 brume_err **err);
brume_etcd_txn_result *brume_etcd_json_parse_txn(const char *body, size_t len, brume_err **err);
/* An ID of 0 is an error: etcd never grants lease 0. */
int brume_etcd_json_parse_lease_grant(const char *body, size_t len, int64_t *id, int64_t *ttl,
                                      brume_err **err);
/* Accepts the keepalive answer with or without its {"result": ...} wrapper (keepalive is a
 * stream in gRPC). *ttl is 0 when the lease is gone. */
int brume_etcd_json_parse_lease_keepalive(const char *body, size_t len, int64_t *ttl,
                                          brume_err **err);

/* One line of the POST /v3/watch stream: {"result": {header, created, canceled, events...}}. */
typedef struct brume_etcd_watch_chunk {
  int64_t revision; /* response header revision */
  bool created;
  bool canceled;
  int64_t compact_revision; /* set with canceled when start_revision was compacted away */
  char *cancel_reason;      /* NULL when absent */
  size_t n;
  brume_etcd_event *events;
} brume_etcd_watch_chunk;

/* Fills *out (zeroed first, so brume_etcd_json_watch_chunk_clear() is always safe afterwards).
 * An error line in the stream is not a chunk: check brume_etcd_json_parse_error() first. */
int brume_etcd_json_parse_watch_chunk(const char *body, size_t len, brume_etcd_watch_chunk *out,
                                      brume_err **err);
void brume_etcd_json_watch_chunk_clear(brume_etcd_watch_chunk *c);

#endif
