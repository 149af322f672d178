/* libFuzzer target: request decoding through the RPC layer.
 *
 * The first byte picks one method of one of Brume's services; the rest is the request body as
 * it would arrive in a gRPC message. It goes through the same path the server uses
 * (brume_rpc_unpack_buffer on a gRPC byte buffer); whatever decodes is packed again and must
 * decode to the same bytes. */
#include <grpc/grpc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "brume/counting.pb-c.h"
#include "brume/frontend.pb-c.h"
#include "brume/placement.pb-c.h"
#include "brume/worker.pb-c.h"
#include "rpc_codec.h"

static const ProtobufCServiceDescriptor *const services[] = {
    &brume__frontend__descriptor,
    &brume__counting__descriptor,
    &brume__placement__descriptor,
    &brume__worker__descriptor,
};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  grpc_init();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t total = 0;
  for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++) total += services[i]->n_methods;
  size_t pick = data[0] % total;
  const ProtobufCMethodDescriptor *method = NULL;
  for (size_t i = 0; method == NULL; i++) {
    if (pick < services[i]->n_methods) method = &services[i]->methods[pick];
    else pick -= services[i]->n_methods;
  }
  /* Use both the request and the response type, as server and client decode both. */
  const ProtobufCMessageDescriptor *desc = (data[0] & 0x80) ? method->output : method->input;

  grpc_slice slice = grpc_slice_from_copied_buffer((const char *)data + 1, size - 1);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
  grpc_slice_unref(slice);
  brume_err *err = NULL;
  ProtobufCMessage *msg = brume_rpc_unpack_buffer(desc, bb, &err);
  grpc_byte_buffer_destroy(bb);
  if (msg == NULL) {
    if (err == NULL || err->code != BRUME_INVALID_ARGUMENT) abort();
    brume_err_free(err);
    return 0;
  }
  size_t len = protobuf_c_message_get_packed_size(msg);
  uint8_t *packed = malloc(len ? len : 1);
  protobuf_c_message_pack(msg, packed);
  ProtobufCMessage *again = brume_rpc_decode(desc, packed, len, NULL);
  if (again == NULL) abort();
  size_t len2 = protobuf_c_message_get_packed_size(again);
  uint8_t *packed2 = malloc(len2 ? len2 : 1);
  protobuf_c_message_pack(again, packed2);
  if (len2 != len || memcmp(packed, packed2, len) != 0) abort();
  free(packed);
  free(packed2);
  protobuf_c_message_free_unpacked(again, NULL);
  protobuf_c_message_free_unpacked(msg, NULL);
  return 0;
}
