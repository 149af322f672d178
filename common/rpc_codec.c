#include "rpc_codec.h"

#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

void brume_rpc_lib_ref(void) { grpc_init(); }
void brume_rpc_lib_unref(void) { grpc_shutdown(); }

grpc_byte_buffer *brume_rpc_pack(const ProtobufCMessage *msg) {
  size_t len = protobuf_c_message_get_packed_size(msg);
  grpc_slice slice = grpc_slice_malloc(len);
  protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
  grpc_slice_unref(slice);
  return bb;
}

/* protobuf-c keeps a field numbered 0 as an unknown field when its tag is written in an overlong
 * varint (0x82 0x00), although no valid message has one, and then packs it in a form it refuses
 * to unpack (found by fuzz_rpc_decode). Such a message is malformed: look for it at every level. */
static bool has_field_zero(const ProtobufCMessage *msg) {
  for (unsigned i = 0; i < msg->n_unknown_fields; i++)
    if (msg->unknown_fields[i].tag == 0) return true;
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
    const char *base = (const char *)msg;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)(base + f->quantifier_offset);
      ProtobufCMessage *const *items = *(ProtobufCMessage *const *const *)(base + f->offset);
      for (size_t j = 0; j < n; j++)
        if (items[j] && has_field_zero(items[j])) return true;
      continue;
    }
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
        *(const uint32_t *)(base + f->quantifier_offset) != f->id)
      continue;
    const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)(base + f->offset);
    if (sub && has_field_zero(sub)) return true;
  }
  return false;
}

ProtobufCMessage *brume_rpc_decode(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                   size_t len, brume_err **err) {
  ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, len, data);
  if (msg && has_field_zero(msg)) {
    protobuf_c_message_free_unpacked(msg, NULL);
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "the message is not a valid %s: it has a field 0",
                  desc->name);
    return NULL;
  }
  if (msg == NULL) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "the message is not a valid %s (%zu bytes)",
                  desc->name, len);
    return NULL;
  }
  return msg;
}

ProtobufCMessage *brume_rpc_unpack_buffer(const ProtobufCMessageDescriptor *desc,
                                          grpc_byte_buffer *bb, brume_err **err) {
  if (bb == NULL) return brume_rpc_decode(desc, (const uint8_t *)"", 0, err);
  grpc_byte_buffer_reader reader;
  if (!grpc_byte_buffer_reader_init(&reader, bb)) {
    brume_err_set(err, BRUME_INTERNAL, "cannot read a received %s message", desc->name);
    return NULL;
  }
  grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
  grpc_byte_buffer_reader_destroy(&reader);
  ProtobufCMessage *msg =
      brume_rpc_decode(desc, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all), err);
  grpc_slice_unref(all);
  return msg;
}

gpr_timespec brume_rpc_deadline_in(int64_t ms) {
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* Reads a whole PEM file into a NUL-terminated string. */
static char *read_pem(const char *what, const char *path, brume_err **err) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    brume_err_set(err, BRUME_FAILED_PRECONDITION, "cannot read the TLS %s %s: %s", what, path,
                  strerror(errno));
    return NULL;
  }
  size_t cap = 4096, len = 0;
  char *buf = brume_xmalloc(cap);
  size_t n;
  while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len - 1 == 0) buf = brume_xrealloc(buf, cap *= 2);
  }
  fclose(f);
  buf[len] = '\0';
  if (strstr(buf, "-----BEGIN ") == NULL) {
    free(buf);
    brume_err_set(err, BRUME_FAILED_PRECONDITION, "the TLS %s %s is not a PEM file", what, path);
    return NULL;
  }
  return buf;
}

grpc_server_credentials *brume_rpc_server_credentials(const brume_tls_config *tls,
                                                      brume_err **err) {
  if (tls == NULL || tls->cert_file == NULL || !*tls->cert_file)
    return grpc_insecure_server_credentials_create();
  if (tls->key_file == NULL || !*tls->key_file) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "TLS needs a key file beside the certificate %s",
                  tls->cert_file);
    return NULL;
  }
  if (tls->require_client_cert && (tls->ca_file == NULL || !*tls->ca_file)) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT,
                  "mutual TLS needs a CA file to verify client certificates");
    return NULL;
  }
  brume_autofree char *cert = read_pem("certificate", tls->cert_file, err);
  brume_autofree char *key = cert ? read_pem("key", tls->key_file, err) : NULL;
  brume_autofree char *ca =
      key && tls->ca_file && *tls->ca_file ? read_pem("CA", tls->ca_file, err) : NULL;
  if (key == NULL || (tls->ca_file && *tls->ca_file && ca == NULL)) return NULL;
  grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
  grpc_server_credentials *creds = grpc_ssl_server_credentials_create_ex(
      ca, &pair, 1,
      tls->require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                               : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
      NULL);
  if (creds == NULL)
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "gRPC refused the TLS certificate %s or key %s",
                  tls->cert_file, tls->key_file);
  return creds;
}

grpc_channel_credentials *brume_rpc_channel_credentials(const brume_tls_config *tls,
                                                        brume_err **err) {
  if (tls == NULL || tls->ca_file == NULL || !*tls->ca_file) {
    if (tls && tls->cert_file && *tls->cert_file) {
      brume_err_set(err, BRUME_INVALID_ARGUMENT,
                    "a client certificate needs a CA file to verify the server with");
      return NULL;
    }
    return grpc_insecure_credentials_create();
  }
  brume_autofree char *ca = read_pem("CA", tls->ca_file, err);
  if (ca == NULL) return NULL;
  brume_autofree char *cert = NULL;
  brume_autofree char *key = NULL;
  if (tls->cert_file && *tls->cert_file) {
    if (tls->key_file == NULL || !*tls->key_file) {
      brume_err_set(err, BRUME_INVALID_ARGUMENT,
                    "TLS needs a key file beside the client certificate %s", tls->cert_file);
      return NULL;
    }
    cert = read_pem("certificate", tls->cert_file, err);
    key = cert ? read_pem("key", tls->key_file, err) : NULL;
    if (key == NULL) return NULL;
  }
  grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
  grpc_channel_credentials *creds = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
  if (creds == NULL)
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "gRPC refused the TLS settings (CA %s)",
                  tls->ca_file);
  return creds;
}

brume_tls_config brume_rpc_server_tls(const brume_common_config *cfg) {
  return (brume_tls_config){.ca_file = cfg->tls_ca,
                            .cert_file = cfg->tls_cert,
                            .key_file = cfg->tls_key,
                            .require_client_cert = cfg->tls_client_auth};
}

brume_tls_config brume_rpc_client_tls(const brume_common_config *cfg) {
  /* A client trusts tls_ca only when the daemons speak TLS at all (tls_cert set). */
  if (cfg->tls_cert == NULL) return (brume_tls_config){0};
  return (brume_tls_config){
      .ca_file = cfg->tls_ca, .cert_file = cfg->tls_cert, .key_file = cfg->tls_key};
}
